/* test_cli_ckpt.c — `cleardit inspect` and `cleardit convert` run as separate processes (path
 * from $CLEARDIT_BIN, default build/cleardit): text and JSON reports, conversions end to end
 * (checked against the library), progress and summary lines, --help, and every bad-input case
 * (exit 2, one "cleardit <cmd>: error: ..." line, no output file and no temp file left). */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_gen.h"
#include "cleardit.h"
#include "test_files.h"
#include "test_spawn.h"

/* A scratch directory `dir` with the inputs (bfl, ae, clear, bad-hidden clear) and the output
 * path. */
typedef struct {
    char dir[64];
    char bfl[128], ae[128], clear[128], clear_bad[128], out[128];
} env;

static const gen_flux_cfg k_cfg = {64, 16, 2, 2, 16, 16, 32, 24, 256, 1};

static int env_init(env *e) {
    if (!tmp_dir_tag(e->dir, sizeof e->dir, "ckpt")) return 0;
    snprintf(e->bfl, sizeof e->bfl, "%s/flux.safetensors", e->dir);
    snprintf(e->ae, sizeof e->ae, "%s/ae.safetensors", e->dir);
    snprintf(e->clear, sizeof e->clear, "%s/clear.safetensors", e->dir);
    snprintf(e->clear_bad, sizeof e->clear_bad, "%s/clear128.safetensors", e->dir);
    snprintf(e->out, sizeof e->out, "%s/out.safetensors", e->dir);
    gen_list l;
    int ok = 1;
    gen_init(&l, 1);
    gen_flux_bfl(&l, &k_cfg);
    ok &= gen_write(&l, e->bfl) == 0;
    gen_free(&l);
    gen_init(&l, 2);
    const gen_ae_cfg a = {3, 3, 8, {1, 2}, 2, 1, 4, 1, 1};
    gen_ae_bfl(&l, &a);
    ok &= gen_write(&l, e->ae) == 0;
    gen_free(&l);
    gen_init(&l, 3);
    gen_clear(&l, 64, 2, 2, 2, 0);
    ok &= gen_write(&l, e->clear) == 0;
    gen_free(&l);
    gen_init(&l, 4);
    gen_clear(&l, 128, 2, 2, 0, 0);
    ok &= gen_write(&l, e->clear_bad) == 0;
    gen_free(&l);
    return ok;
}

static void env_free(env *e) { tmp_rm(e->dir); }

#define N_INPUTS 4

/* ---- inspect ------------------------------------------------------------------------------ */

TEST(cli_inspect_text) {
    env e;
    CHECK(env_init(&e), "env");
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    RUN(r, "inspect", e.bfl);
    EXPECT(r->code == 0 && !r->err[0], "exit %d: %s", r->code, r->err);
    EXPECT(strstr(r->out, "layout       flux-bfl\n") &&
               strstr(r->out, "hidden 64, 4 heads x head_dim 16, 2 double + 2 single blocks, mlp 256") &&
               strstr(r->out, "in 16, out 16, context 32, pooled 24, guidance embedder yes") &&
               strstr(r->out, "dtypes       F32 ") && strstr(r->out, "unknown      0\n") &&
               strstr(r->out, "missing      0\n") && strstr(r->out, "wrong shape  0\n"),
           "text report:\n%s", r->out);
    EXPECT(!strstr(r->out, "tensor list"), "no list without --tensors");

    RUN(r, "inspect", e.ae, "--tensors");
    EXPECT(r->code == 0 && strstr(r->out, "layout       ae-bfl\n") &&
               strstr(r->out, "ch 8, ch_mult [1, 2], num_res_blocks 1, z 4") && strstr(r->out, "tensor list\n") &&
               strstr(r->out, "decoder.mid.attn_1.q.weight") && strstr(r->out, "F32         [16, 16, 1, 1]"),
           "ae --tensors:\n%s", r->out);

    RUN(r, "inspect", e.clear);
    EXPECT(r->code == 0 && strstr(r->out, "layout       clear\n") &&
               strstr(r->out, "hidden 64, 2 double + 2 single blocks, spatial_weight 2x2"),
           "clear:\n%s", r->out);
    free(r);
    env_free(&e);
}

TEST(cli_inspect_json_and_damage) {
    env e;
    CHECK(env_init(&e), "env");
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    /* damage: an extra tensor, a missing one, a wrong shape */
    gen_list l;
    gen_init(&l, 1);
    gen_flux_bfl(&l, &k_cfg);
    gen_add(&l, "extra.weight", 1, 3, 0, 0, 0);
    gen_remove(&l, "txt_in.bias");
    gen_tensor *t = gen_find(&l, "double_blocks.1.img_mlp.2.weight"); /* [64, 256] */
    t->shape[0] = 128;
    t->shape[1] = 128;
    char path[160];
    snprintf(path, sizeof path, "%s/damaged.safetensors", e.dir);
    CHECK(gen_write(&l, path) == 0, "write");
    gen_free(&l);
    RUN(r, "inspect", "--json", path, "--tensors");
    EXPECT(r->code == 0 && !r->err[0], "exit %d: %s", r->code, r->err);
    json_error_t je;
    json_t *o = json_loads(r->out, 0, &je);
    CHECK(o, "JSON: %s\n%s", je.text, r->out);
    json_t *cfg = json_object_get(o, "config");
    EXPECT(!strcmp(json_string_value(json_object_get(o, "layout")), "flux-bfl"), "layout");
    EXPECT(json_integer_value(json_object_get(cfg, "hidden")) == 64 &&
               json_integer_value(json_object_get(cfg, "heads")) == 4 &&
               json_integer_value(json_object_get(cfg, "depth_single")) == 2 &&
               json_is_true(json_object_get(cfg, "guidance")),
           "config");
    EXPECT(json_integer_value(json_object_get(o, "n_unknown")) == 1 &&
               !strcmp(json_string_value(json_array_get(json_object_get(o, "unknown"), 0)), "extra.weight"),
           "unknown");
    EXPECT(json_integer_value(json_object_get(o, "n_missing")) == 1 &&
               !strcmp(json_string_value(json_array_get(json_object_get(o, "missing"), 0)), "txt_in.bias"),
           "missing");
    EXPECT(json_integer_value(json_object_get(o, "n_bad_shape")) == 1 &&
               !strcmp(json_string_value(json_array_get(json_object_get(o, "bad_shape"), 0)),
                       "double_blocks.1.img_mlp.2.weight: got [128, 128] want [64, 256]"),
           "bad shape: %s", json_string_value(json_array_get(json_object_get(o, "bad_shape"), 0)));
    json_t *ts = json_object_get(o, "tensors");
    EXPECT(json_array_size(ts) == (size_t)json_integer_value(json_object_get(o, "n_tensors")) &&
               json_integer_value(json_object_get(json_object_get(o, "dtypes"), "F32")) ==
                   json_integer_value(json_object_get(o, "n_tensors")),
           "tensor list");
    json_decref(o);

    /* the damaged file cannot be converted; the message says why */
    RUN(r, "convert", path, e.out, "--layout", "diffusers");
    EXPECT(r->code == 2 && one_error_line(r->err, "convert") && strstr(r->err, "1 missing (first 'txt_in.bias')") &&
               strstr(r->err, "1 unknown (first 'extra.weight')"),
           "exit %d: %s", r->code, r->err);
    EXPECT(dir_count(e.dir) == N_INPUTS + 1, "no output left");
    free(r);
    env_free(&e);
}

TEST(cli_inspect_bad_input) {
    env e;
    CHECK(env_init(&e), "env");
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    char junk[160];
    snprintf(junk, sizeof junk, "%s/junk.safetensors", e.dir);
    FILE *f = fopen(junk, "wb");
    CHECK(f, "junk");
    fputs("not a safetensors file at all", f);
    fclose(f);
    RUN(r, "inspect", junk);
    EXPECT(r->code == 2 && one_error_line(r->err, "inspect") && strstr(r->err, "junk.safetensors"), "junk: %d %s",
           r->code, r->err);
    RUN(r, "inspect", "/nonexistent/x.safetensors");
    EXPECT(r->code == 2 && one_error_line(r->err, "inspect"), "missing file: %d %s", r->code, r->err);
    RUN(r, "inspect");
    EXPECT(r->code == 2 && one_error_line(r->err, "inspect") && strstr(r->err, "expected a checkpoint path"),
           "no path: %s", r->err);
    RUN(r, "inspect", e.bfl, e.ae);
    EXPECT(r->code == 2 && one_error_line(r->err, "inspect") && strstr(r->err, "unexpected argument"), "two paths: %s",
           r->err);
    RUN(r, "inspect", e.bfl, "--bogus");
    EXPECT(r->code == 2 && one_error_line(r->err, "inspect") && strstr(r->err, "unknown option '--bogus'"), "bogus: %s",
           r->err);
    RUN(r, "inspect", "--help");
    EXPECT(r->code == 0 && !strncmp(r->out, "usage: cleardit inspect PATH [--json] [--tensors]", 49), "help: %s",
           r->out);
    RUN(r, "help", "inspect");
    EXPECT(r->code == 0 && strstr(r->out, "usage: cleardit inspect"), "help inspect");
    RUN(r, "inspect", "--", e.bfl); /* "--" ends the options */
    EXPECT(r->code == 0 && strstr(r->out, "flux-bfl"), "--: %s", r->err);
    free(r);
    env_free(&e);
}

/* ---- convert ------------------------------------------------------------------------------ */

TEST(cli_convert_matches_the_library) {
    env e;
    CHECK(env_init(&e), "env");
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    char lib[160];
    snprintf(lib, sizeof lib, "%s.lib", e.dir); /* outside e.dir: the file counts stay exact */
    static const struct {
        const char *layout, *dtype;
        int merge;
        cd_layout to;
        cd_dtype dt;
    } cases[] = {
        {"diffusers", NULL, 0, CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT},
        {"bfl", "bf16", 0, CD_LAYOUT_FLUX_BFL, CD_DTYPE_BF16},
        {"diffusers", "f32", 1, CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_F32},
        {"bfl", NULL, 1, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT},
    };
    cd_ckpt *in = gen_open(ctx, e.bfl), *cl = gen_open(ctx, e.clear);
    CHECK(in && cl, "open");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *args[12] = {"convert", e.bfl, e.out, "--layout", cases[k].layout, "--quiet"};
        int n = 6;
        if (cases[k].dtype) {
            args[n++] = "--dtype";
            args[n++] = cases[k].dtype;
        }
        if (cases[k].merge) {
            args[n++] = "--merge-clear";
            args[n++] = e.clear;
        }
        args[n] = NULL;
        CHECK(run_cli(args, r), "run");
        EXPECT(r->code == 0 && !r->err[0], "case %zu: exit %d: %s", k, r->code, r->err);
        EXPECT(!cd_ckpt_convert(ctx, in, lib, cases[k].to, cases[k].dt, cases[k].merge ? cl : NULL), "library: %s",
               cd_ctx_error(ctx));
        EXPECT(gen_files_equal(e.out, lib), "case %zu: CLI and library outputs differ", k);
    }
    unlink(lib);
    /* the autoencoder converts with the same --layout words */
    RUN(r, "convert", e.ae, e.out, "--layout=diffusers");
    EXPECT(r->code == 0, "ae: %s", r->err);
    EXPECT(strstr(r->err, "(ae-bfl) -> ") && strstr(r->err, "(ae-diffusers)") && !strchr(r->err, '%'),
           "summary without progress for a small file: %s", r->err);
    RUN(r, "inspect", e.out);
    EXPECT(strstr(r->out, "layout       ae-diffusers\n"), "ae output: %s", r->out);
    cd_ckpt_close(cl);
    cd_ckpt_close(in);
    cd_ctx_free(ctx);
    free(r);
    env_free(&e);
}

TEST(cli_convert_bad_input) {
    env e;
    CHECK(env_init(&e), "env");
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    char nodir[160], outdir[160];
    snprintf(nodir, sizeof nodir, "%s/missing-dir/out.safetensors", e.dir);
    snprintf(outdir, sizeof outdir, "%s", e.dir);
    static const char *const none = NULL;
    struct {
        const char *args[10];
        const char *frag;
    } cases[] = {
        {{"convert", e.bfl, e.out}, "missing required option --layout"},
        {{"convert", e.bfl, e.out, "--layout", "comfy"}, "unknown --layout 'comfy'"},
        {{"convert", e.bfl, e.out, "--layout", "bfl", "--dtype", "f16"}, "unknown --dtype 'f16'"},
        {{"convert", e.bfl, "--layout", "bfl"}, "expected IN and OUT"},
        {{"convert", e.bfl, e.out, e.ae, "--layout", "bfl"}, "unexpected argument"},
        {{"convert", "/nonexistent/x.safetensors", e.out, "--layout", "bfl"}, "x.safetensors"},
        {{"convert", e.bfl, nodir, "--layout", "bfl"}, "does not exist"},
        {{"convert", e.bfl, outdir, "--layout", "bfl"}, "is a directory"},
        {{"convert", e.bfl, e.out, "--layout", "bfl", "--merge-clear", e.clear_bad}, "hidden 128"},
        {{"convert", e.ae, e.out, "--layout", "bfl", "--merge-clear", e.clear}, "merges into a FLUX transformer"},
        {{"convert", e.clear, e.out, "--layout", "bfl"}, "is a CLEAR file"},
        {{"convert", e.bfl, e.out, "--layout", "bfl", "--merge-clear", e.ae}, "not a CLEAR file"},
        {{"convert", e.bfl, e.out, "--layout", "bfl", "--merge-clear", "/nonexistent/c.safetensors"}, "c.safetensors"},
        {{"convert", e.bfl, e.out, "--layout"}, "missing value for --layout"},
    };
    (void)none;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        CHECK(run_cli(cases[k].args, r), "run");
        EXPECT(r->code == 2 && one_error_line(r->err, "convert") && strstr(r->err, cases[k].frag),
               "case %zu: exit %d, stderr: %s", k, r->code, r->err);
        EXPECT(dir_count(e.dir) == N_INPUTS, "case %zu: a file was left behind", k);
    }
    RUN(r, "convert", "--help");
    EXPECT(r->code == 0 && !strncmp(r->out, "usage: cleardit convert IN OUT --layout bfl|diffusers", 53) &&
               strstr(r->out, "--merge-clear PATH") && strstr(r->out, "Exit status"),
           "help:\n%s", r->out);
    free(r);
    env_free(&e);
}

/* A transformer above the progress threshold (256 MiB) reports a line per 10%: one huge txt_in,
 * zero-filled (a sparse file), so the test costs little memory or time. */
TEST(cli_convert_progress_lines) {
    env e;
    CHECK(env_init(&e), "env");
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    gen_flux_cfg big = k_cfg;
    big.ctx = 1 << 20; /* txt_in.weight [64, 1M] F32 = 256 MiB */
    gen_list l;
    gen_init(&l, 5);
    l.no_data = 1;
    gen_flux_bfl(&l, &big);
    char path[160];
    snprintf(path, sizeof path, "%s/big.safetensors", e.dir);
    CHECK(gen_write_zeros(&l, path) == 0, "write");
    gen_free(&l);
    RUN(r, "convert", path, e.out, "--layout", "diffusers");
    EXPECT(r->code == 0, "exit %d: %s", r->code, r->err);
    EXPECT(strstr(r->err, "cleardit convert: 100%") && strstr(r->err, "GB") && strstr(r->err, "(flux-bfl) -> "),
           "progress:\n%s", r->err);
    free(r);
    env_free(&e);
}
