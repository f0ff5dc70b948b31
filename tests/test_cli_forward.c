/* test_cli_forward.c — `cleardit forward` end to end against the diffusers oracle fixtures
 * (tests/fixtures/flux, made by tests/oracle/flux_fixtures.py), both checkpoint layouts, dense,
 * CLEAR and pooled CLEAR with CLEAR weights; and every bad input: exit code 2, one clear line,
 * no output file. */
#include "test.h"
#include "cleardit.h"
#include "test_spawn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FX "tests/fixtures/flux/"

/* Relative L2 distance of OUT's `out` from the fixture tensor `want` of io. */
static double rel_l2(const char *out, const char *io, const char *want) {
    cd_st_file *a = NULL, *b = NULL;
    double num = 0, den = 0, res = INFINITY;
    if (cd_st_open(NULL, out, &a) || cd_st_open(NULL, io, &b)) goto done;
    const cd_st_tensor *x = cd_st_find(a, "out"), *y = cd_st_find(b, want);
    if (!x || !y || cd_st_numel(x) != cd_st_numel(y)) goto done;
    const size_t n = cd_st_numel(x);
    float *fx = malloc(n * sizeof(float)), *fy = malloc(n * sizeof(float));
    if (fx && fy && !cd_st_to_f32(NULL, x, fx) && !cd_st_to_f32(NULL, y, fy)) {
        for (size_t i = 0; i < n; i++) {
            num += ((double)fx[i] - fy[i]) * ((double)fx[i] - fy[i]);
            den += (double)fy[i] * fy[i];
        }
        res = sqrt(num / den);
    }
    free(fx);
    free(fy);
done:
    cd_st_close(a);
    cd_st_close(b);
    return res;
}

TEST(cli_forward_matches_diffusers) {
    char dir[] = "/tmp/cdfwdXXXXXX", out[96];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    const struct {
        const char *model, *extra[8], *want;
    } cases[] = {
        {FX "dev_h32_sq4x4_bfl.safetensors", {NULL}, "out_dense"},
        {FX "dev_h32_sq4x4_diffusers.safetensors", {"--radius", "2", NULL}, "out_clear_r2"},
        {FX "dev_h32_sq4x4_bfl.safetensors",
         {"--radius", "2", "--down", "2", "--clear-weights", FX "dev_h32_sq4x4_clear.safetensors", NULL},
         "out_clear_r2_d2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[20] = {"forward", "--model", cases[i].model, "--inputs", FX "dev_h32_sq4x4_io.safetensors",
                                "--out",   out,       "--rope-axes",  "4,6,6",    "--quiet"};
        int n = 10;
        for (int j = 0; cases[i].extra[j]; j++) args[n++] = cases[i].extra[j];
        cli_run r;
        CHECK(run_cli(args, &r), "spawn");
        EXPECT(r.code == 0, "case %zu: exit %d: %s", i, r.code, r.err);
        const double e = rel_l2(out, FX "dev_h32_sq4x4_io.safetensors", cases[i].want);
        EXPECT(e < 1e-5, "case %zu (%s): relative L2 %g vs the diffusers oracle", i, cases[i].want, e);
        unlink(out);
    }
    rmdir(dir);
}

/* Writes a copy of the fixture io file with tensor `drop` left out and `repl` (if any) added. */
static int write_io(const char *path, const char *drop, const cd_st_out *repl) {
    cd_st_file *f = NULL;
    if (cd_st_open(NULL, FX "dev_h32_sq4x4_io.safetensors", &f)) return 0;
    cd_st_out o[64];
    size_t n = 0;
    for (size_t i = 0; i < cd_st_count(f) && n < 63; i++) {
        const cd_st_tensor *t = cd_st_at(f, i);
        if ((drop && !strcmp(t->name, drop)) || (repl && !strcmp(t->name, repl->name))) continue;
        o[n] = (cd_st_out){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(o[n].shape, t->shape, sizeof o[n].shape);
        n++;
    }
    if (repl) o[n++] = *repl;
    const int ok = cd_st_write(NULL, path, o, n, NULL, 0) == CD_OK;
    cd_st_close(f);
    return ok;
}

TEST(cli_forward_bad_input) {
    char dir[] = "/tmp/cdfwbXXXXXX", out[96], io1[96], io2[96], io3[96];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    snprintf(io1, sizeof io1, "%s/no_pooled.safetensors", dir);
    snprintf(io2, sizeof io2, "%s/bad_img.safetensors", dir);
    snprintf(io3, sizeof io3, "%s/bad_ids.safetensors", dir);
    float img[16 * 15], ids[16 * 3];
    for (int i = 0; i < 16 * 15; i++) img[i] = 0.01f * i;
    for (int i = 0; i < 16; i++) {
        ids[i * 3] = 0;
        ids[i * 3 + 1] = (float)(i % 4);
        ids[i * 3 + 2] = (float)(i / 4) * 0;
    }
    cd_st_out bad_img = {"img", CD_DTYPE_F32, 2, {16, 15}, img}, bad_ids = {"img_ids", CD_DTYPE_F32, 2, {16, 3}, ids};
    CHECK(write_io(io1, "pooled", NULL) && write_io(io2, NULL, &bad_img) && write_io(io3, NULL, &bad_ids), "write");
    const char *M = FX "dev_h32_sq4x4_bfl.safetensors", *IN = FX "dev_h32_sq4x4_io.safetensors";
    const struct {
        const char *args[16];
        const char *phrase;
    } cases[] = {
        {{"forward", "--model", M, "--inputs", IN, "--out", out}, "RoPE axes"},
        {{"forward", "--model", M, "--inputs", io1, "--out", out, "--rope-axes", "4,6,6"}, "missing tensor 'pooled'"},
        {{"forward", "--model", M, "--inputs", io2, "--out", out, "--rope-axes", "4,6,6"}, "'img'"},
        {{"forward", "--model", M, "--inputs", io3, "--out", out, "--rope-axes", "4,6,6", "--radius", "2"},
         "not a full H x W grid"},
        {{"forward", "--model", M, "--inputs", IN, "--out", out, "--rope-axes", "4,6,6", "--radius", "2", "--down",
          "2"},
         "spatial"},
        {{"forward", "--model", M, "--inputs", IN, "--out", out, "--rope-axes", "4,6,6", "--radius", "2",
          "--clear-weights", FX "dev_h32x4_6x4_clear.safetensors"},
         "clear"},
        {{"forward", "--model", IN, "--inputs", IN, "--out", out, "--rope-axes", "4,6,6"}, "not a FLUX transformer"},
        {{"forward", "--model", "/nonexistent.safetensors", "--inputs", IN, "--out", out}, "nonexistent"},
        {{"forward", "--model", M, "--inputs", IN, "--out", out, "--rope-axes", "4,6,7"}, "sum to head_dim"},
        {{"forward", "--model", M, "--inputs", IN, "--out", out, "--attention", "clear"}, "needs --radius"},
        {{"forward", "--model", M, "--inputs", IN, "--out", out, "--attention", "sparse"}, "dense or clear"},
        {{"forward", "--model", M, "--inputs", IN, "--out", "/nonexistent/dir/o.safetensors"}, "does not exist"},
        {{"forward", "--model", M, "--inputs", IN}, "required"},
        {{"forward", "--model", M, "--inputs", IN, "--out", out, "--down", "2"}, "needs CLEAR"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_run r;
        CHECK(run_cli(cases[i].args, &r), "spawn");
        EXPECT(r.code == 2, "case %zu: exit %d (%s)", i, r.code, r.err);
        EXPECT(strcasestr(r.err, cases[i].phrase) != NULL, "case %zu: stderr lacks '%s': %s", i, cases[i].phrase,
               r.err);
        EXPECT(!strncmp(r.err, "cleardit forward: error: ", 25) && strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
               "case %zu: not one error line: %s", i, r.err);
        struct stat st;
        EXPECT(stat(out, &st) != 0, "case %zu left an output file", i);
        unlink(out);
    }
    unlink(io1);
    unlink(io2);
    unlink(io3);
    EXPECT(rmdir(dir) == 0, "temp files left in %s", dir);
}

/* A leading batch dimension runs a batch: two copies of the fixture inputs give two copies of the
 * oracle's output. */
TEST(cli_forward_batch) {
    char dir[] = "/tmp/cdfwcXXXXXX", out[96], io[96];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    snprintf(io, sizeof io, "%s/batch.safetensors", dir);
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, FX "dev_h32_sq4x4_io.safetensors", &f) == CD_OK, "open fixture");
    const char *batched[] = {"img", "txt", "pooled", "timestep", "guidance"};
    cd_st_out o[8];
    float *bufs[5] = {0};
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
        const cd_st_tensor *t = cd_st_find(f, batched[i]);
        CHECK(t, "fixture lacks %s", batched[i]);
        const size_t k = cd_st_numel(t);
        bufs[i] = malloc(2 * k * sizeof(float));
        CHECK(bufs[i] && cd_st_to_f32(NULL, t, bufs[i]) == CD_OK, "read %s", batched[i]);
        memcpy(bufs[i] + k, bufs[i], k * sizeof(float));
        o[n] = (cd_st_out){t->name, CD_DTYPE_F32, t->ndim + (i < 3), {2}, bufs[i]};
        if (i < 3)
            memcpy(o[n].shape + 1, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        else
            o[n].shape[0] = 2;
        n++;
    }
    for (int i = 0; i < 2; i++) {
        const cd_st_tensor *t = cd_st_find(f, i ? "txt_ids" : "img_ids");
        o[n] = (cd_st_out){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(o[n].shape, t->shape, sizeof o[n].shape);
        n++;
    }
    CHECK(cd_st_write(NULL, io, o, n, NULL, 0) == CD_OK, "write batch");
    const char *args[] = {
        "forward", "--model", FX "dev_h32_sq4x4_bfl.safetensors", "--inputs", io, "--out", out, "--rope-axes", "4,6,6",
        "--quiet", NULL};
    cli_run r;
    CHECK(run_cli(args, &r), "spawn");
    EXPECT(r.code == 0, "exit %d: %s", r.code, r.err);
    cd_st_file *g = NULL, *want = NULL;
    CHECK(cd_st_open(NULL, out, &g) == CD_OK && cd_st_open(NULL, FX "dev_h32_sq4x4_io.safetensors", &want) == CD_OK,
          "read out");
    const cd_st_tensor *y = cd_st_find(g, "out"), *w = cd_st_find(want, "out_dense");
    CHECK(y && w && y->ndim == 3 && y->shape[0] == 2 && cd_st_numel(y) == 2 * cd_st_numel(w), "out shape");
    const size_t k = cd_st_numel(w);
    float *fy = malloc(2 * k * sizeof(float)), *fw = malloc(k * sizeof(float));
    CHECK(fy && fw && !cd_st_to_f32(NULL, y, fy) && !cd_st_to_f32(NULL, w, fw), "convert");
    for (int b = 0; b < 2; b++) {
        double num = 0, den = 0;
        for (size_t i = 0; i < k; i++) {
            num += ((double)fy[b * k + i] - fw[i]) * ((double)fy[b * k + i] - fw[i]);
            den += (double)fw[i] * fw[i];
        }
        EXPECT(sqrt(num / den) < 1e-5, "batch item %d: relative L2 %g", b, sqrt(num / den));
    }
    free(fy);
    free(fw);
    for (int i = 0; i < 5; i++) free(bufs[i]);
    cd_st_close(f);
    cd_st_close(g);
    cd_st_close(want);
    unlink(out);
    unlink(io);
    rmdir(dir);
}
