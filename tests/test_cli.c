/* test_cli.c — the `cleardit` command, run as a separate process (path from $CLEARDIT_BIN,
 * default build/cleardit): exit codes, usage and error lines, `flops` tables and JSON, and
 * `attention` end to end against cd_attention_reference run in this process, plus every
 * bad-input case (exit 2, a specific message, no output file and no temp file left behind). */
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleardit.h"
#include "test_files.h"
#include "test_spawn.h"
#include "../src/util/internal.h" /* cd_f32_to_bf16 */

/* ---- scratch directory --------------------------------------------------------------------- */

/* A scratch directory per test for inputs and outputs (the CLI's streams are captured apart,
 * test_spawn.h, so the directory holds only what a test and the CLI wrote). */
typedef struct {
    char dir[64];
} cli_env;

static int env_init(cli_env *e) { return tmp_dir_tag(e->dir, sizeof e->dir, "cli"); }
static void env_free(cli_env *e) { tmp_rm(e->dir); }

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- input files --------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    cd_dtype dtype;
    int32_t ndim;
    int64_t shape[3];
} spec_t;

/* Writes tensors with random contents: F32 uniform in [-1, 1), BF16 the rounded same, other
 * dtypes random bytes. Returns 1 on success. */
static int write_random(const char *path, const spec_t *s, size_t n, uint64_t seed) {
    test_rng rng = test_rng_seed(seed);
    cd_st_out out[8];
    void *bufs[8] = {0};
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < s[i].ndim; d++) numel *= (uint64_t)s[i].shape[d];
        size_t bytes = (size_t)(numel * (uint64_t)cd_dtype_bits(s[i].dtype) / 8);
        unsigned char *b = malloc(bytes ? bytes : 1);
        bufs[i] = b;
        for (uint64_t k = 0; k < numel; k++) {
            float f = test_rng_f(&rng);
            if (s[i].dtype == CD_DTYPE_F32)
                memcpy(b + 4 * k, &f, 4);
            else if (s[i].dtype == CD_DTYPE_BF16) {
                uint16_t h = cd_f32_to_bf16(f);
                memcpy(b + 2 * k, &h, 2);
            }
        }
        if (s[i].dtype != CD_DTYPE_F32 && s[i].dtype != CD_DTYPE_BF16)
            for (size_t k = 0; k < bytes; k++) b[k] = (unsigned char)(test_rng_u64(&rng) | 1);
        out[i] = (cd_st_out){s[i].name, s[i].dtype, s[i].ndim, {0}, b};
        for (int d = 0; d < s[i].ndim; d++) out[i].shape[d] = s[i].shape[d];
    }
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK)
        ok = 0;
    else {
        ok = cd_st_write(ctx, path, out, n, NULL, 0) == CD_OK;
        cd_ctx_free(ctx);
    }
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    return ok;
}

/* q, k, v [heads, T+H*W, hd] of one dtype, plus spatial_weight [df, df] (F32) when df >= 2. */
static int write_qkv(const char *path, cd_dtype dt, int heads, int ntok, int hd, int df, uint64_t seed) {
    spec_t s[4] = {
        {"q", dt, 3, {heads, ntok, hd}},
        {"k", dt, 3, {heads, ntok, hd}},
        {"v", dt, 3, {heads, ntok, hd}},
        {"spatial_weight", CD_DTYPE_F32, 2, {df, df}},
    };
    return write_random(path, s, df >= 2 ? 4 : 3, seed);
}

/* ---- main and help ------------------------------------------------------------------------- */

TEST(cli_main_usage_and_version) {
    cli_run r;
    const char *const none[] = {NULL};
    CHECK(run_cli(none, &r), "cannot run %s", cli_bin());
    EXPECT(r.code == 2, "no args: exit %d", r.code);
    EXPECT(strstr(r.err, "usage: cleardit") && !r.out[0], "no args: usage on stderr only");

    RUN(&r, "frobnicate");
    EXPECT(r.code == 2 && strstr(r.err, "unknown command 'frobnicate'") && strstr(r.err, "usage: cleardit"),
           "unknown command: %d %s", r.code, r.err);
    RUN(&r, "--help");
    EXPECT(r.code == 0 && strstr(r.out, "usage: cleardit") && !r.err[0], "--help: %d", r.code);
    EXPECT(strstr(r.out, "flops") && strstr(r.out, "attention") && strstr(r.out, "bench"), "--help lists the commands");
    RUN(&r, "help");
    EXPECT(r.code == 0 && strstr(r.out, "usage: cleardit"), "help: %d", r.code);
    RUN(&r, "help", "flops");
    EXPECT(r.code == 0 && strstr(r.out, "usage: cleardit flops"), "help flops: %d", r.code);
    RUN(&r, "--version");
    EXPECT(r.code == 0 && !strcmp(r.out, "cleardit " CLEARDIT_VERSION "\n"), "--version: %s", r.out);

    /* every subcommand: --help on stdout, exit 0 */
    const char *cmds[] = {"flops", "attention", "bench"};
    for (int i = 0; i < 3; i++) {
        const char *const a[] = {cmds[i], "--help", NULL};
        CHECK(run_cli(a, &r), "run");
        EXPECT(r.code == 0 && strstr(r.out, "usage: cleardit") && strstr(r.out, cmds[i]),
               "%s --help: exit %d, stdout %s", cmds[i], r.code, r.out);
    }
}

/* ---- flops --------------------------------------------------------------------------------- */

TEST(cli_flops_table_and_json) {
    cli_run r;
    RUN(&r, "flops", "--width", "1024", "--height", "1024");
    EXPECT(r.code == 0 && !r.err[0], "table: exit %d %s", r.code, r.err);
    EXPECT(strstr(r.out, "260.9"), "1024^2 dense must print 260.9: %s", r.out);
    EXPECT(strstr(r.out, "4608") && strstr(r.out, "4096") && strstr(r.out, "512"), "token counts: %s", r.out);
    EXPECT(!strstr(r.out, "CLEAR"), "no CLEAR row without --radius");

    RUN(&r, "flops", "--width=8192", "--height=8192", "--radius", "8");
    EXPECT(r.code == 0, "8K: exit %d", r.code);
    EXPECT(strstr(r.out, "847726.7") && strstr(r.out, "3915.4") && strstr(r.out, "99.5"),
           "8K r=8 must print 847726.7, 3915.4 and 99.5: %s", r.out);

    RUN(&r, "flops", "--width", "1024", "--height", "1024", "--json");
    CHECK(r.code == 0, "json: exit %d %s", r.code, r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    CHECK(j && json_is_object(j), "stdout is not one JSON object: %s (%s)", r.out, je.text);
    EXPECT(fabs(json_number_value(json_object_get(j, "dense_gflops")) - 260.9) < 0.05, "dense_gflops %g",
           json_number_value(json_object_get(j, "dense_gflops")));
    EXPECT(json_is_null(json_object_get(j, "clear_gflops")), "clear_gflops must be null");
    EXPECT(json_integer_value(json_object_get(j, "grid_h")) == 64 &&
               json_integer_value(json_object_get(j, "grid_w")) == 64 &&
               json_integer_value(json_object_get(j, "text_len")) == 512 &&
               json_integer_value(json_object_get(j, "width")) == 1024 &&
               json_integer_value(json_object_get(j, "dense_pairs")) == 4608ll * 4608,
           "json fields: %s", r.out);
    json_decref(j);

    /* non-square: grid_h from the height, grid_w from the width; custom text length */
    RUN(&r, "flops", "--width", "2048", "--height", "1024", "--radius", "16", "--down", "4", "--text-len", "256",
        "--json");
    CHECK(r.code == 0, "json clear: exit %d %s", r.code, r.err);
    j = json_loads(r.out, 0, &je);
    CHECK(j, "json: %s", je.text);
    cd_attn_desc d = {24, 128, 256, 64, 128, 16, 4, 0.0f};
    EXPECT(json_integer_value(json_object_get(j, "grid_h")) == 64 &&
               json_integer_value(json_object_get(j, "grid_w")) == 128,
           "grid from height x width");
    EXPECT((uint64_t)json_integer_value(json_object_get(j, "clear_pairs")) == cd_attn_pairs(&d), "clear_pairs");
    EXPECT(fabs(json_real_value(json_object_get(j, "clear_gflops")) - cd_attn_flops(&d) / 1e9) <
               1e-9 * cd_attn_flops(&d) / 1e9,
           "clear_gflops in full precision");
    EXPECT(json_integer_value(json_object_get(j, "radius")) == 16 &&
               json_integer_value(json_object_get(j, "down")) == 4,
           "radius/down");
    json_decref(j);
}

TEST(cli_flops_bad_input) {
    cli_run r;
    struct {
        const char *args[10];
        const char *phrase;
    } cases[] = {
        {{"flops", "--width", "1000", "--height", "1024"}, "width 1000 is not a multiple of 16"},
        {{"flops", "--width", "1024", "--height", "8"}, "height 8 is not a multiple of 16"},
        {{"flops", "--width", "1024"}, "--width and --height are required"},
        {{"flops", "--width", "12abc", "--height", "16"}, "invalid value '12abc' for --width"},
        {{"flops", "--width", "-16", "--height", "16"}, "out of range"},
        {{"flops", "--width", "0", "--height", "16"}, "out of range"},
        {{"flops", "--width", "99999999999999999999999", "--height", "16"}, "out of range"},
        {{"flops", "--width", "1024", "--height", "1024", "--down", "4"}, "need CLEAR"},
        {{"flops", "--width", "1024", "--height", "1024", "--radius", "8", "--down", "3"},
         "not divisible by down factor 3"},
        {{"flops", "--width", "1024", "--height", "1024", "--radius", "0"}, "out of range"},
        {{"flops", "--width", "1024", "--height", "1024", "--frob"}, "unknown option '--frob'"},
        {{"flops", "--width", "1024", "--height"}, "missing value for --height"},
        {{"flops", "--width", "1024", "--height", "1024", "extra"}, "unexpected argument 'extra'"},
        {{"flops", "--width", "1024", "--height", "1024", "--json=1"}, "takes no value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(run_cli(cases[i].args, &r), "run");
        EXPECT(r.code == 2, "case %zu: exit %d (%s)", i, r.code, r.err);
        EXPECT(strstr(r.err, cases[i].phrase), "case %zu: stderr lacks '%s': %s", i, cases[i].phrase, r.err);
        EXPECT(one_error_line(r.err, "flops"), "case %zu: not one error line: %s", i, r.err);
        EXPECT(!r.out[0], "case %zu: stdout not empty", i);
    }
}

/* ---- attention end to end ------------------------------------------------------------------ */

/* Runs the CLI on IN and compares OUT's o/lse with cd_attention_reference in this process:
 * exactly with --reference (same code, same inputs), else within atol 1e-5 + rtol 1e-4 (fast
 * f32 kernels vs the double-accumulating reference). */
static void check_attention_case(cd_dtype dt, int heads, int H, int W, int T, int hd, int radius, int down,
                                 const char *scale, int use_ref, int line) {
    cli_env e;
    if (!env_init(&e)) {
        test_fail(__FILE__, line, "mkdtemp");
        return;
    }
    char in[160], out[160], grid[32], tl[16], rad[16], dn[16];
    snprintf(in, sizeof in, "%s/in.safetensors", e.dir);
    snprintf(out, sizeof out, "%s/out.safetensors", e.dir);
    snprintf(grid, sizeof grid, "%dx%d", H, W);
    snprintf(tl, sizeof tl, "%d", T);
    snprintf(rad, sizeof rad, "%d", radius);
    snprintf(dn, sizeof dn, "%d", down);
    const int ntok = T + H * W;
    if (!write_qkv(in, dt, heads, ntok, hd, down, (uint64_t)(line * 31 + hd))) {
        test_fail(__FILE__, line, "cannot write the input");
        env_free(&e);
        return;
    }
    const char *args[24];
    int n = 0;
    args[n++] = "attention";
    args[n++] = "--in";
    args[n++] = in;
    args[n++] = "--out";
    args[n++] = out;
    args[n++] = "--grid";
    args[n++] = grid;
    args[n++] = "--text-len";
    args[n++] = tl;
    args[n++] = "--threads";
    args[n++] = "2";
    if (radius) {
        args[n++] = "--radius";
        args[n++] = rad;
    }
    if (down) {
        args[n++] = "--down";
        args[n++] = dn;
    }
    if (scale) {
        args[n++] = "--scale";
        args[n++] = scale;
    }
    if (use_ref) args[n++] = "--reference";
    args[n] = NULL;

    cli_run *r = malloc(sizeof *r);
    cd_ctx *ctx = NULL;
    cd_st_file *fin = NULL, *fout = NULL;
    float *o = NULL, *lse = NULL, *sw = NULL;
    void *q = NULL, *k = NULL, *v = NULL;
    if (!run_cli(args, r)) {
        test_fail(__FILE__, line, "cannot run %s", cli_bin());
        goto done;
    }
    if (r->code != 0) {
        test_fail(__FILE__, line, "exit %d: %s", r->code, r->err);
        goto done;
    }
    if (!strstr(r->err, "cleardit attention:") || !strstr(r->err, "GFLOP/s"))
        test_fail(__FILE__, line, "no summary on stderr: %s", r->err);
    if (dir_count(e.dir) != 2) test_fail(__FILE__, line, "files besides in/out in the directory");

    cd_ctx_create(NULL, &ctx);
    if (cd_st_open(ctx, in, &fin) || cd_st_open(ctx, out, &fout)) {
        test_fail(__FILE__, line, "open: %s", cd_ctx_error(ctx));
        goto done;
    }
    const cd_st_tensor *to = cd_st_find(fout, "o"), *tl_ = cd_st_find(fout, "lse");
    if (!to || !tl_ || to->dtype != CD_DTYPE_F32 || tl_->dtype != CD_DTYPE_F32 || to->ndim != 3 ||
        to->shape[0] != heads || to->shape[1] != ntok || to->shape[2] != hd || tl_->ndim != 2 ||
        tl_->shape[0] != heads || tl_->shape[1] != ntok) {
        test_fail(__FILE__, line, "output tensors o/lse missing or misshapen");
        goto done;
    }
    const char *mg = cd_st_meta(fout, "grid"), *mr = cd_st_meta(fout, "radius"), *mt = cd_st_meta(fout, "text_len"),
               *md = cd_st_meta(fout, "down");
    if (!mg || strcmp(mg, grid) || !mr || strcmp(mr, rad) || !mt || strcmp(mt, tl) || !md || strcmp(md, dn) ||
        !cd_st_meta(fout, "scale"))
        test_fail(__FILE__, line, "metadata grid/radius/text_len/down/scale wrong");

    /* the oracle, in process, on the same input bytes */
    const size_t elt = dt == CD_DTYPE_F32 ? 4 : 2;
    const size_t nin = (size_t)heads * ntok * hd;
    q = malloc(nin * elt);
    k = malloc(nin * elt);
    v = malloc(nin * elt);
    memcpy(q, cd_st_find(fin, "q")->data, nin * elt);
    memcpy(k, cd_st_find(fin, "k")->data, nin * elt);
    memcpy(v, cd_st_find(fin, "v")->data, nin * elt);
    if (down) {
        sw = malloc((size_t)down * down * sizeof *sw);
        cd_st_to_f32(ctx, cd_st_find(fin, "spatial_weight"), sw);
    }
    o = malloc(nin * sizeof *o);
    lse = malloc((size_t)heads * ntok * sizeof *lse);
    cd_attn_desc d = {heads, hd, T, H, W, radius, down, scale ? strtof(scale, NULL) : 0.0f};
    if (cd_attention_reference(ctx, &d, dt, q, k, v, sw, o, lse) != CD_OK) {
        test_fail(__FILE__, line, "reference: %s", cd_ctx_error(ctx));
        goto done;
    }
    float got;
    size_t bad = 0;
    double worst = 0;
    for (size_t i = 0; i < nin; i++) {
        memcpy(&got, (const char *)to->data + 4 * i, 4);
        const double err = fabs((double)got - o[i]);
        const double tol = use_ref ? 0.0 : 1e-5 + 1e-4 * fabs(o[i]);
        if (!(err <= tol)) bad++;
        if (err > worst) worst = err;
    }
    for (size_t i = 0; i < (size_t)heads * ntok; i++) {
        memcpy(&got, (const char *)tl_->data + 4 * i, 4);
        const double err = fabs((double)got - lse[i]);
        const double tol = use_ref ? 0.0 : 1e-5 + 1e-4 * fabs(lse[i]);
        if (!(err <= tol)) bad++;
        if (!isfinite(got)) bad++;
    }
    if (bad) test_fail(__FILE__, line, "%zu values differ from the reference (max |diff| of o %.3g)", bad, worst);
done:
    free(q);
    free(k);
    free(v);
    free(sw);
    free(o);
    free(lse);
    cd_st_close(fin);
    cd_st_close(fout);
    cd_ctx_free(ctx);
    free(r);
    env_free(&e);
}
#define ATTN_CASE(...) check_attention_case(__VA_ARGS__, __LINE__)

TEST(cli_attention_matches_reference) {
    /* dtype, heads, H, W, T, hd, radius, down, scale, --reference */
    ATTN_CASE(CD_DTYPE_F32, 2, 5, 7, 3, 16, 3, 0, NULL, 0);
    ATTN_CASE(CD_DTYPE_F32, 2, 5, 7, 3, 64, 0, 0, NULL, 0); /* dense */
    ATTN_CASE(CD_DTYPE_BF16, 2, 5, 7, 3, 16, 3, 0, NULL, 0);
    ATTN_CASE(CD_DTYPE_BF16, 2, 5, 7, 3, 64, 2, 0, "0.3", 0);
    ATTN_CASE(CD_DTYPE_F32, 2, 4, 8, 5, 64, 3, 2, NULL, 0);  /* pooled keys */
    ATTN_CASE(CD_DTYPE_BF16, 2, 4, 8, 0, 16, 2, 4, NULL, 0); /* no text, pooling */
    ATTN_CASE(CD_DTYPE_F32, 2, 5, 7, 3, 16, 3, 0, NULL, 1);  /* --reference: bit-exact */
    ATTN_CASE(CD_DTYPE_BF16, 2, 4, 8, 5, 64, 3, 2, NULL, 1);
}

/* Down-sampling weights in a non-F32 float dtype are converted. */
TEST(cli_attention_bf16_spatial_weight) {
    cli_env e;
    CHECK(env_init(&e), "mkdtemp");
    char in[160], out[160];
    snprintf(in, sizeof in, "%s/in.safetensors", e.dir);
    snprintf(out, sizeof out, "%s/out.safetensors", e.dir);
    spec_t s[4] = {{"q", CD_DTYPE_F32, 3, {1, 18, 8}},
                   {"k", CD_DTYPE_F32, 3, {1, 18, 8}},
                   {"v", CD_DTYPE_F32, 3, {1, 18, 8}},
                   {"spatial_weight", CD_DTYPE_BF16, 2, {2, 2}}};
    CHECK(write_random(in, s, 4, 3), "write");
    cli_run r;
    RUN(&r, "attention", "--in", in, "--out", out, "--grid", "4x4", "--text-len", "2", "--radius", "2", "--down", "2",
        "--quiet");
    EXPECT(r.code == 0 && !r.err[0], "exit %d: %s", r.code, r.err);
    EXPECT(exists(out), "no output");
    env_free(&e);
}

/* ---- attention bad input ------------------------------------------------------------------- */

TEST(cli_attention_bad_input) {
    cli_env e;
    CHECK(env_init(&e), "mkdtemp");
    char good[160], sw[160], out[160], p[16][160];
    snprintf(good, sizeof good, "%s/good.safetensors", e.dir); /* 2 x 38 x 16: grid 5x7 + 3 */
    snprintf(sw, sizeof sw, "%s/sw.safetensors", e.dir);       /* 2 x 37 x 16 + sw [2,2] */
    snprintf(out, sizeof out, "%s/out.safetensors", e.dir);
    CHECK(write_qkv(good, CD_DTYPE_F32, 2, 38, 16, 0, 1), "write good");
    CHECK(write_qkv(sw, CD_DTYPE_F32, 2, 37, 16, 2, 2), "write sw");
    const spec_t no_v[] = {{"q", CD_DTYPE_F32, 3, {2, 38, 16}}, {"k", CD_DTYPE_F32, 3, {2, 38, 16}}};
    const spec_t rank2[] = {
        {"q", CD_DTYPE_F32, 2, {76, 16}}, {"k", CD_DTYPE_F32, 3, {2, 38, 16}}, {"v", CD_DTYPE_F32, 3, {2, 38, 16}}};
    const spec_t kshape[] = {
        {"q", CD_DTYPE_F32, 3, {2, 38, 16}}, {"k", CD_DTYPE_F32, 3, {2, 38, 8}}, {"v", CD_DTYPE_F32, 3, {2, 38, 16}}};
    const spec_t f16[] = {
        {"q", CD_DTYPE_F16, 3, {2, 38, 16}}, {"k", CD_DTYPE_F16, 3, {2, 38, 16}}, {"v", CD_DTYPE_F16, 3, {2, 38, 16}}};
    const spec_t mixed[] = {
        {"q", CD_DTYPE_F32, 3, {2, 38, 16}}, {"k", CD_DTYPE_BF16, 3, {2, 38, 16}}, {"v", CD_DTYPE_F32, 3, {2, 38, 16}}};
    const spec_t t70[] = {
        {"q", CD_DTYPE_F32, 3, {2, 70, 16}}, {"k", CD_DTYPE_F32, 3, {2, 70, 16}}, {"v", CD_DTYPE_F32, 3, {2, 70, 16}}};
    const spec_t sw3[] = {{"q", CD_DTYPE_F32, 3, {2, 37, 16}},
                          {"k", CD_DTYPE_F32, 3, {2, 37, 16}},
                          {"v", CD_DTYPE_F32, 3, {2, 37, 16}},
                          {"spatial_weight", CD_DTYPE_F32, 2, {3, 3}}};
    const spec_t swint[] = {{"q", CD_DTYPE_F32, 3, {2, 37, 16}},
                            {"k", CD_DTYPE_F32, 3, {2, 37, 16}},
                            {"v", CD_DTYPE_F32, 3, {2, 37, 16}},
                            {"spatial_weight", CD_DTYPE_I32, 2, {2, 2}}};
    const spec_t heads0[] = {
        {"q", CD_DTYPE_F32, 3, {0, 38, 16}}, {"k", CD_DTYPE_F32, 3, {0, 38, 16}}, {"v", CD_DTYPE_F32, 3, {0, 38, 16}}};
    struct {
        const spec_t *s;
        size_t n;
    } files[] = {
        {no_v, 2}, {rank2, 3}, {kshape, 3}, {f16, 3}, {mixed, 3}, {t70, 3}, {sw3, 4}, {swint, 4}, {heads0, 3},
    };
    const size_t nfiles = sizeof files / sizeof files[0];
    for (size_t i = 0; i < nfiles; i++) {
        snprintf(p[i], sizeof p[i], "%s/bad%zu.safetensors", e.dir, i);
        CHECK(write_random(p[i], files[i].s, files[i].n, 10 + i), "write bad%zu", i);
    }
    snprintf(p[nfiles], sizeof p[nfiles], "%s/garbage.safetensors", e.dir);
    FILE *g = fopen(p[nfiles], "wb");
    CHECK(g, "garbage");
    fwrite("\x10\0\0\0\0\0\0\0not json at all!", 1, 8 + 16, g); /* contains NULs */
    fclose(g);
    const char *garbage = p[nfiles];
    char missing[160], nodir[160];
    snprintf(missing, sizeof missing, "%s/missing.safetensors", e.dir);
    snprintf(nodir, sizeof nodir, "%s/nodir/out.safetensors", e.dir);
    const int nin = dir_count(e.dir);

#define BASE(in) "attention", "--in", in, "--out", out
    struct {
        const char *args[20];
        const char *phrase;
    } cases[] = {
        {{BASE(p[0]), "--grid", "5x7", "--text-len", "3"}, "has no tensor 'v'"},
        {{BASE(p[1]), "--grid", "5x7", "--text-len", "3"}, "tensor 'q' has rank 2"},
        {{BASE(p[2]), "--grid", "5x7", "--text-len", "3"}, "must share one shape"},
        {{BASE(p[3]), "--grid", "5x7", "--text-len", "3"}, "dtype F16; need F32 or BF16"},
        {{BASE(p[4]), "--grid", "5x7", "--text-len", "3"}, "must share one dtype"},
        {{BASE(p[5]), "--grid", "8x8", "--text-len", "4"}, "grid 8x8 + text 4 = 68 tokens but q has 70"},
        {{BASE(good), "--grid", "5x7", "--text-len", "4"}, "grid 5x7 + text 4 = 39 tokens but q has 38"},
        {{BASE(p[6]), "--grid", "4x8", "--text-len", "5", "--radius", "3", "--down", "2"},
         "'spatial_weight' has shape [3, 3]"},
        {{BASE(p[7]), "--grid", "4x8", "--text-len", "5", "--radius", "3", "--down", "2"}, "cannot convert dtype I32"},
        {{BASE(p[8]), "--grid", "5x7", "--text-len", "3"}, "heads and head_dim must be >= 1"},
        {{BASE(garbage), "--grid", "5x7", "--text-len", "3"}, "garbage.safetensors: header"},
        {{BASE(missing), "--grid", "5x7", "--text-len", "3"}, "missing.safetensors: cannot open"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--radius", "0"}, "--radius must be >= 1"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--radius", "-2"}, "--radius must be >= 1"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--radius", "3", "--down", "2"},
         "not divisible by down factor 2"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--down", "2"}, "--down needs --radius"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--radius", "3", "--down", "0"}, "--down must be >= 1"},
        {{BASE(good), "--grid", "4x8", "--text-len", "6", "--radius", "3", "--down", "2"},
         "no tensor 'spatial_weight'"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--radius", "12abc"}, "invalid value '12abc' for --radius"},
        {{BASE(good), "--grid", "5x7", "--text-len", "-1"}, "out of range"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--threads", "99999999999999999999"}, "out of range"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--threads", "5000"}, "out of range"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--scale", "-1"}, "out of range"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--scale", "nan"}, "invalid value 'nan'"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--isa", "sse9"}, "unknown --isa 'sse9'"},
        {{BASE(good), "--grid", "35", "--text-len", "3"}, "invalid --grid '35'"},
        {{BASE(good), "--grid", "5x0", "--text-len", "3"}, "invalid --grid '5x0'"},
        {{BASE(good), "--grid", "5x7x1", "--text-len", "3"}, "invalid --grid"},
        {{BASE(good), "--grid", " 5x7", "--text-len", "3"}, "invalid --grid"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--radius"}, "missing value for --radius"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "--bogus", "1"}, "unknown option '--bogus'"},
        {{BASE(good), "--grid", "5x7", "--text-len", "3", "stray"}, "unexpected argument 'stray'"},
        {{"attention", "--in", good, "--grid", "5x7", "--text-len", "3"}, "missing required option --out"},
        {{"attention", "--in", good, "--out", out, "--text-len", "3"}, "missing required option --grid"},
        {{"attention", "--in", "--out", out, "--grid", "5x7", "--text-len", "3"}, "missing value for --in"},
        {{"attention", "--in", good, "--out", nodir, "--grid", "5x7", "--text-len", "3"}, "does not exist"},
        {{"attention", "--in", good, "--out", e.dir, "--grid", "5x7", "--text-len", "3"}, "is a directory"},
    };
#undef BASE
    cli_run *r = malloc(sizeof *r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!run_cli(cases[i].args, r)) {
            test_fail(__FILE__, __LINE__, "cannot run %s", cli_bin());
            break;
        }
        EXPECT(r->code == 2, "case %zu (%s): exit %d, stderr %s", i, cases[i].phrase, r->code, r->err);
        EXPECT(strstr(r->err, cases[i].phrase), "case %zu: stderr lacks '%s': %s", i, cases[i].phrase, r->err);
        EXPECT(one_error_line(r->err, "attention"), "case %zu: not one error line: %s", i, r->err);
        EXPECT(!exists(out), "case %zu (%s): output file exists", i, cases[i].phrase);
        EXPECT(dir_count(e.dir) == nin, "case %zu (%s): %d entries in the directory, want %d", i, cases[i].phrase,
               dir_count(e.dir), nin);
    }
    free(r);
    env_free(&e);
}

/* ---- bench --------------------------------------------------------------------------------- */

TEST(cli_bench_small_case_json) {
    cli_run r;
    RUN(&r, "bench", "attention", "--grid", "8x12", "--radius", "3", "--heads", "2", "--head-dim", "16", "--text-len",
        "5", "--repeat", "1", "--json");
    EXPECT(r.code == 0, "exit %d: %s", r.code, r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    CHECK(j, "stdout is not JSON (%s): %s", je.text, r.out);
    json_t *rows = json_object_get(j, "rows");
    EXPECT(json_is_array(rows) && json_array_size(rows) == 2, "want 2 rows (dense, r=3)");
    cd_attn_desc d = {2, 16, 5, 8, 12, 3, 0, 0};
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        const int radius = (int)json_integer_value(json_object_get(row, "radius"));
        d.radius = radius;
        EXPECT(radius == (i ? 3 : 0), "row %zu radius %d", i, radius);
        EXPECT(json_real_value(json_object_get(row, "time_s")) > 0, "row %zu: no time", i);
        const double gflop = json_real_value(json_object_get(row, "gflop"));
        EXPECT(fabs(gflop - cd_attn_flops(&d) * 1e-9) < 1e-3, "row %zu: gflop %g vs %g", i, gflop,
               cd_attn_flops(&d) * 1e-9);
    }
    EXPECT(json_real_value(json_object_get(j, "fma_peak_gflops")) > 0, "no measured peak");
    json_decref(j);
}

TEST(cli_bench_bad_input) {
    cli_run r;
    struct {
        const char *args[10];
        const char *phrase;
    } cases[] = {
        {{"bench"}, "expected a benchmark name"},
        {{"bench", "sideways"}, "expected a benchmark name"},
        {{"bench", "attention", "--isa", "sse9"}, "--isa must be"},
        {{"bench", "attention", "--dtype", "f16"}, "--dtype must be"},
        {{"bench", "attention", "--radius", "8"}, "need --grid"},
        {{"bench", "attention", "--grid", "8x8", "--down", "2"}, "needs a CLEAR --radius"},
        {{"bench", "attention", "--grid", "8x"}, "--grid must be HxW"},
        {{"bench", "attention", "--grid", "6x6", "--radius", "2", "--down", "4"}, "not divisible"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(run_cli(cases[i].args, &r), "run");
        EXPECT(r.code == 2, "case %zu: exit %d (%s)", i, r.code, r.err);
        EXPECT(strstr(r.err, cases[i].phrase), "case %zu: stderr lacks '%s': %s", i, cases[i].phrase, r.err);
        EXPECT(one_error_line(r.err, "bench"), "case %zu: not one error line: %s", i, r.err);
    }
}
