/* test_t5.c — the T5 v1.1 encoder (src/model/t5*.c) against transformers' T5EncoderModel:
 * tests/fixtures/t5/ (written by tests/oracle/t5_fixtures.py) holds tiny random encoders stored as
 * F32, BF16 (a sharded diffusers folder with config.json), F16 (a full T5 with decoder tensors),
 * F8_E4M3 and ComfyUI scaled fp8, each with the float64 output computed from exactly the stored
 * weights; every variant on both CPU tables must be within relative L2 1e-5. Then the position
 * buckets against transformers', the config from shapes against config.json, and bad input. */
#include "test.h"
#include "test_files.h"

#include "../src/model/t5.h"
#include "../src/util/internal.h"

#include <stdint.h>
#include <string.h>

#define T5_DIR "tests/fixtures/t5/"
#define T5_REGEN "run 'python3 tests/oracle/t5_fixtures.py' (see that script)"
#define T5_TOL 1e-5

static cd_ctx *ctx_new(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = 2;
    return cd_ctx_create(&p, &ctx) == CD_OK ? ctx : NULL;
}

/* A fixture tensor as f32 / i32 (malloc'd; NULL if absent). */
static float *load_f32(cd_ctx *ctx, const cd_st_file *f, const char *name, size_t *n) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) return NULL;
    *n = (size_t)cd_st_numel(t);
    float *p = malloc(*n * sizeof(float) + 4);
    if (p && cd_st_to_f32(ctx, t, p)) free(p), p = NULL;
    return p;
}

static int meta_int(const cd_st_file *f, const char *key) {
    const char *v = cd_st_meta(f, key);
    return v ? atoi(v) : -1;
}

static int one_line(const char *msg) { return msg[0] && !strchr(msg, '\n'); }

TEST(test_t5_buckets_match_transformers) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    cd_st_file *f = NULL;
    CHECK(cd_st_open(ctx, T5_DIR "buckets.safetensors", &f) == CD_OK, "%s; %s", cd_ctx_error(ctx), T5_REGEN);
    const int cfgs[2][2] = {{32, 128}, {8, 20}};
    for (int c = 0; c < 2; c++) {
        char name[32];
        snprintf(name, sizeof name, "b_%d_%d", cfgs[c][0], cfgs[c][1]);
        const cd_st_tensor *t = cd_st_find(f, name);
        EXPECT(t && t->dtype == CD_DTYPE_I32 && cd_st_numel(t) == 2047, "%s missing or wrong", name);
        if (!t || cd_st_numel(t) != 2047) continue;
        int bad = 0;
        for (int r = -1023; r <= 1023; r++) {
            int32_t want;
            memcpy(&want, (const char *)t->data + (size_t)(r + 1023) * 4, 4);
            const int32_t got = cd_t5_bucket(r, cfgs[c][0], cfgs[c][1]);
            if (got != want && bad++ < 3) test_fail(__FILE__, __LINE__, "%s rel %d: %d, want %d", name, r, got, want);
        }
        EXPECT(!bad, "%s: %d buckets differ", name, bad);
    }
    cd_st_close(f);
    cd_ctx_free(ctx);
}

/* Encodes the case's ids with the checkpoint at `path` on both CPU tables; compares with out_<v>. */
static void check_variant(cd_ctx *ctx, const char *cs, const char *variant, const char *path, const char *desc_has) {
    char io_path[128], key[64];
    snprintf(io_path, sizeof io_path, T5_DIR "%s_io.safetensors", cs);
    cd_st_file *io = NULL;
    CHECK(cd_st_open(ctx, io_path, &io) == CD_OK, "%s; %s", cd_ctx_error(ctx), T5_REGEN);
    snprintf(key, sizeof key, "out_%s", variant);
    size_t nid = 0, nout = 0;
    const cd_st_tensor *tid = cd_st_find(io, "ids");
    float *want = load_f32(ctx, io, key, &nout);
    cd_t5 *m = NULL;
    cd_status s = CD_OK;
    if (!tid || !want) {
        test_fail(__FILE__, __LINE__, "%s: ids or %s missing; %s", io_path, key, T5_REGEN);
        goto out;
    }
    nid = (size_t)cd_st_numel(tid);
    int32_t *ids = malloc(nid * sizeof(int32_t));
    if (ids) memcpy(ids, tid->data, nid * sizeof(int32_t));
    s = cd_t5_open(ctx, path, &m);
    if (s || !ids) {
        test_fail(__FILE__, __LINE__, "open %s: %s", path, cd_ctx_error(ctx));
        free(ids);
        goto out;
    }
    const cd_t5_config *c = cd_t5_cfg(m);
    EXPECT(c->vocab == meta_int(io, "vocab") && c->d_model == meta_int(io, "d_model") &&
               c->d_kv == meta_int(io, "d_kv") && c->heads == meta_int(io, "heads") &&
               c->d_ff == meta_int(io, "d_ff") && c->layers == meta_int(io, "layers") &&
               c->buckets == meta_int(io, "buckets") && c->max_distance == meta_int(io, "max_distance") &&
               c->eps == 1e-6f,
           "%s: config differs from the fixture's", path);
    EXPECT(!desc_has || strstr(cd_t5_describe(m), desc_has), "%s: describe '%s' lacks '%s'", path, cd_t5_describe(m),
           desc_has);
    EXPECT(nout == nid * (size_t)c->d_model, "%s: %s has %zu values", io_path, key, nout);
    float *got = malloc(nout * sizeof(float));
    const cd_ops *tables[2] = {cd_ops_cpu(), cd_ops_cpu_ref()};
    for (int k = 0; k < 2 && got && nout == nid * (size_t)c->d_model; k++) {
        memset(got, 0xff, nout * sizeof(float));
        s = cd_t5_encode(ctx, m, tables[k], ids, (int32_t)nid, got);
        EXPECT(s == CD_OK, "%s on %s: %s", path, tables[k]->name, cd_ctx_error(ctx));
        if (s) continue;
        const double e = test_rel_l2(got, want, nout);
        EXPECT(e <= T5_TOL, "%s (%s) on %s: relative L2 %.3g > %g", path, variant, tables[k]->name, e, T5_TOL);
    }
    free(got);
    free(ids);
out:
    cd_t5_free(m);
    free(want);
    cd_st_close(io);
}

/* Case a's max_distance (20) is not T5 v1.1's 128, and no tensor holds it: its single files are
 * read from a temporary folder that links them beside case a's config.json (as a diffusers
 * folder would have it). Case b's single file is read alone (config from the shapes). */
static void check_with_config(cd_ctx *ctx, const char *variant, const char *file, const char *desc_has) {
    char dir[64], cwd[512], src[1024], p[160];
    CHECK(tmp_dir_tag(dir, sizeof dir, "t5a") && getcwd(cwd, sizeof cwd), "mkdtemp");
    snprintf(src, sizeof src, "%s/" T5_DIR "%s", cwd, file);
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int ok = symlink(src, p) == 0;
    snprintf(src, sizeof src, "%s/" T5_DIR "a_config.json", cwd);
    snprintf(p, sizeof p, "%s/config.json", dir);
    ok = ok && symlink(src, p) == 0;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    EXPECT(ok, "symlink in %s", dir);
    if (ok) check_variant(ctx, "a", variant, p, desc_has);
    tmp_rm(dir);
}

TEST(test_t5_matches_transformers) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    check_with_config(ctx, "f32", "a_f32.safetensors", "weights F32");
    check_variant(ctx, "a", "bf16", T5_DIR "a_bf16", "weights BF16");
    check_variant(ctx, "a", "bf16", T5_DIR "a_bf16/model.safetensors.index.json", "shared.weight");
    check_with_config(ctx, "f16", "a_f16.safetensors", "decoder/lm_head tensors ignored");
    check_with_config(ctx, "fp8", "a_fp8.safetensors", "weights F8_E4M3");
    check_with_config(ctx, "fp8_scaled", "a_fp8_scaled.safetensors", "F8_E4M3 (scaled)");
    check_variant(ctx, "b", "f32", T5_DIR "b_f32.safetensors", NULL);
    cd_ctx_free(ctx);
}

/* Copies src to dst (whole file). */
static int copy_file(const char *src, const char *dst) {
    FILE *f = fopen(src, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n > 0 ? malloc((size_t)n) : NULL;
    int ok = b && fread(b, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    ok = ok && write_bytes(dst, b, (size_t)n);
    free(b);
    return ok;
}

TEST(test_t5_config_from_shapes_equals_config_json) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    char dir[64], p[160];
    CHECK(tmp_dir_tag(dir, sizeof dir, "t5cfg"), "mkdtemp");
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(copy_file(T5_DIR "b_f32.safetensors", p), "copy");
    cd_t5 *a = NULL, *b = NULL;
    cd_status s = cd_t5_open(ctx, dir, &a); /* no config.json: from the shapes */
    EXPECT(s == CD_OK, "%s", cd_ctx_error(ctx));
    snprintf(p, sizeof p, "%s/config.json", dir);
    EXPECT(copy_file(T5_DIR "b_config.json", p), "copy config");
    s = cd_t5_open(ctx, dir, &b);
    EXPECT(s == CD_OK, "%s", cd_ctx_error(ctx));
    if (a && b) {
        const cd_t5_config *x = cd_t5_cfg(a), *y = cd_t5_cfg(b);
        EXPECT(!memcmp(x, y, sizeof *x),
               "inferred config differs from config.json's (d_model %d/%d, max_distance %d/%d)", x->d_model, y->d_model,
               x->max_distance, y->max_distance);
        EXPECT(x->vocab == 64 && x->d_model == 16 && x->d_kv == 8 && x->heads == 2 && x->d_ff == 24 && x->layers == 2 &&
                   x->buckets == 32 && x->max_distance == 128,
               "inferred config wrong");
    }
    cd_t5_free(a);
    cd_t5_free(b);
    /* a config.json that disagrees with the shapes */
    EXPECT(write_text(p, "{\"d_model\": 16, \"num_heads\": 4, \"d_kv\": 8}"), "write");
    b = NULL;
    s = cd_t5_open(ctx, dir, &b);
    EXPECT(s != CD_OK && !b && strstr(cd_ctx_error(ctx), "num_heads") && one_line(cd_ctx_error(ctx)),
           "disagreeing config.json: %d '%s'", s, cd_ctx_error(ctx));
    EXPECT(write_text(p, "{\"d_model\": 16, \"feed_forward_proj\": \"relu\"}"), "write");
    s = cd_t5_open(ctx, dir, &b);
    EXPECT(s != CD_OK && strstr(cd_ctx_error(ctx), "gated-gelu"), "relu config: '%s'", cd_ctx_error(ctx));
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* Rewrites a_f32 into dir/name with tensor `drop` left out, `reshape` given one row less, and
 * `add` (a [1] F32 tensor) added; returns the path in out. */
static int write_variant(cd_ctx *ctx, const char *dir, const char *name, const char *drop, const char *reshape,
                         const char *add, char *out, size_t cap) {
    cd_st_file *f = NULL;
    if (cd_st_open(ctx, T5_DIR "a_f32.safetensors", &f)) return 0;
    const size_t n = cd_st_count(f);
    cd_st_out *t = calloc(n + 1, sizeof *t);
    static const float one = 1.0f;
    size_t k = 0;
    for (size_t i = 0; t && i < n; i++) {
        const cd_st_tensor *s = cd_st_at(f, i);
        if (drop && !strcmp(s->name, drop)) continue;
        t[k] = (cd_st_out){.name = s->name, .dtype = s->dtype, .ndim = s->ndim, .data = s->data};
        memcpy(t[k].shape, s->shape, sizeof s->shape);
        if (reshape && !strcmp(s->name, reshape)) t[k].shape[0]--;
        k++;
    }
    if (t && add) t[k++] = (cd_st_out){.name = add, .dtype = CD_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &one};
    snprintf(out, cap, "%s/%s", dir, name);
    const int ok = t && cd_st_write(ctx, out, t, k, NULL, 0) == CD_OK;
    free(t);
    cd_st_close(f);
    return ok;
}

static void expect_open_fails(cd_ctx *ctx, const char *path, const char *has, int line) {
    cd_t5 *m = NULL;
    const cd_status s = cd_t5_open(ctx, path, &m);
    const char *e = cd_ctx_error(ctx);
    if (s == CD_OK || m || !strstr(e, has) || !one_line(e))
        test_fail(__FILE__, line, "%s: expected an error with '%s', got %d '%s'", path, has, s, e);
    cd_t5_free(m);
}

TEST(test_t5_bad_input) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    char dir[64], p[192];
    CHECK(tmp_dir_tag(dir, sizeof dir, "t5bad"), "mkdtemp");
    const char *ln = "encoder.block.1.layer.1.layer_norm.weight";
    const char *q1 = "encoder.block.1.layer.0.SelfAttention.q.weight";
    EXPECT(write_variant(ctx, dir, "missing.safetensors", ln, NULL, NULL, p, sizeof p), "write");
    expect_open_fails(ctx, p, ln, __LINE__);
    EXPECT(write_variant(ctx, dir, "shape.safetensors", NULL, q1, NULL, p, sizeof p), "write");
    expect_open_fails(ctx, p, q1, __LINE__);
    EXPECT(write_variant(ctx, dir, "unknown.safetensors", NULL, NULL, "encoder.extra.weight", p, sizeof p), "write");
    expect_open_fails(ctx, p, "unknown tensor 'encoder.extra.weight'", __LINE__);
    const char *rel1 = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight";
    EXPECT(write_variant(ctx, dir, "rel1.safetensors", NULL, NULL, rel1, p, sizeof p), "write");
    expect_open_fails(ctx, p, rel1, __LINE__); /* only block 0 holds the bias table */
    EXPECT(write_variant(ctx, dir, "scale.safetensors", NULL, NULL,
                         "encoder.block.0.layer.0.SelfAttention.q.scale_weight", p, sizeof p),
           "write");
    expect_open_fails(ctx, p, "scaled_fp8", __LINE__);
    EXPECT(write_variant(ctx, dir, "noemb.safetensors", "shared.weight", NULL, NULL, p, sizeof p), "write");
    expect_open_fails(ctx, p, "shared.weight", __LINE__);
    /* truncated: the last 100 bytes of the data cut off */
    snprintf(p, sizeof p, "%s/trunc.safetensors", dir);
    EXPECT(copy_file(T5_DIR "a_f32.safetensors", p) && truncate(p, file_size(p) - 100) == 0, "truncate");
    expect_open_fails(ctx, p, "trunc.safetensors", __LINE__);
    expect_open_fails(ctx, T5_DIR "nonexistent.safetensors", "nonexistent", __LINE__);

    /* ids outside the vocabulary */
    cd_t5 *m = NULL;
    CHECK(cd_t5_open(ctx, T5_DIR "a_f32.safetensors", &m) == CD_OK, "%s", cd_ctx_error(ctx));
    int32_t ids[5] = {3, 4, 64, 1, 0};
    float out[5 * 32];
    cd_status s = cd_t5_encode(ctx, m, cd_ops_cpu(), ids, 5, out);
    EXPECT(s != CD_OK && strstr(cd_ctx_error(ctx), "id 64") && strstr(cd_ctx_error(ctx), "position 2"),
           "id >= vocab: '%s'", cd_ctx_error(ctx));
    ids[2] = -1;
    EXPECT(cd_t5_encode(ctx, m, cd_ops_cpu(), ids, 5, out) != CD_OK, "negative id accepted");
    EXPECT(cd_t5_encode(ctx, m, cd_ops_cpu(), ids, 0, out) != CD_OK, "L = 0 accepted");
    cd_t5_free(m);
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* Random weights: the fast table against the reference on a small config with real T5 buckets,
 * both dtypes; describe says so. */
TEST(test_t5_random_tables_agree) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    const cd_t5_config cfg = {.vocab = 100,
                              .d_model = 64,
                              .d_kv = 16,
                              .heads = 4,
                              .d_ff = 96,
                              .layers = 3,
                              .buckets = 32,
                              .max_distance = 128,
                              .eps = 1e-6f};
    const cd_dtype dts[2] = {CD_DTYPE_F32, CD_DTYPE_BF16};
    enum { L = 140 };
    int32_t ids[L];
    for (int i = 0; i < L; i++) ids[i] = (i * 37 + 5) % cfg.vocab;
    float *a = malloc(sizeof(float) * L * 64), *b = malloc(sizeof(float) * L * 64);
    for (int d = 0; d < 2 && a && b; d++) {
        cd_t5 *m = NULL;
        cd_status s = cd_t5_random(ctx, &cfg, dts[d], 7, &m);
        EXPECT(s == CD_OK, "%s", cd_ctx_error(ctx));
        if (s) continue;
        EXPECT(strstr(cd_t5_describe(m), "random"), "describe: %s", cd_t5_describe(m));
        s = cd_t5_encode(ctx, m, cd_ops_cpu(), ids, L, a);
        if (!s) s = cd_t5_encode(ctx, m, cd_ops_cpu_ref(), ids, L, b);
        EXPECT(s == CD_OK, "%s", cd_ctx_error(ctx));
        const double e = s ? 1 : test_rel_l2(a, b, (size_t)L * 64);
        EXPECT(e <= T5_TOL, "%s random: fast vs reference %.3g", cd_dtype_name(dts[d]), e);
        cd_t5_free(m);
    }
    cd_t5 *m = NULL;
    EXPECT(cd_t5_random(ctx, &cfg, CD_DTYPE_F8_E4M3, 7, &m) != CD_OK && !m, "F8 random accepted");
    free(a);
    free(b);
    cd_ctx_free(ctx);
}
