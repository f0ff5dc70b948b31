/* test_clip_text.c — the CLIP text encoder (src/model/clip_text*.c) against transformers'
 * CLIPTextModel computed in float64 (tests/fixtures/clip_text/, written by
 * tests/oracle/clip_text_fixtures.py): every stored model (F32, BF16, F16, F8_E4M3 weights;
 * transformers' names in a diffusers folder with config.json, ComfyUI single files without one,
 * one under ComfyUI's "clip_l.transformer." prefix; the legacy eos_token_id = 2 argmax pooling)
 * on both CPU tables (cpu fast and cpu_ref). hidden and pooled must match to relative L2 <= 1e-5:
 * the reference uses exactly the stored (rounded) weights, so what remains is f32 arithmetic over
 * a few layers of width <= 64 (observed errors are ~1e-7).
 * Then bad input: missing tensor, wrong shape, unknown tensor, truncated file, hidden_act other
 * than quick_gelu, id >= vocab, n > max_pos — each a one-line error naming what is wrong — and
 * weights at odd file offsets; and the tiny FLUX pipeline's text_encoder/ against diffusers'
 * encode_prompt. */
#include "test.h"
#include "test_files.h"

#include <string.h>

#include "../src/model/clip_text.h"

#define CT_DIR "tests/fixtures/clip_text/"
#define CT_REGEN "run 'python3 tests/oracle/clip_text_fixtures.py'"
#define CT_TOL 1e-5

typedef struct {
    const char *model; /* path under CT_DIR passed to cd_clip_text_open */
    const char *ref;   /* <ref>.ref.safetensors */
    int32_t heads, hidden, layers, eos;
} ct_case;

static const ct_case k_cases[] = {
    {"hf_f32", "hf_f32", 2, 32, 2, 127},
    {"hf_bf16", "hf_bf16", 2, 32, 2, 127},
    {"hf_f16", "hf_f16", 2, 32, 2, 127},
    {"hf_f8", "hf_f8", 2, 32, 2, 127},
    {"hf_argmax", "hf_argmax", 2, 32, 2, 2},
    {"hf_f32/model.safetensors", "hf_f32", 1, 32, 2, 127}, /* no config beside a file: inferred */
    {"comfy_f16.safetensors", "comfy_f16", 1, 64, 1, 127},
    {"comfy_prefixed_f8.safetensors", "comfy_prefixed_f8", 1, 64, 1, 127},
};

static int one_line(const char *msg) { return msg[0] && !strchr(msg, '\n'); }

static void check_model(const ct_case *tc) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    char path[256], refp[256];
    snprintf(path, sizeof path, CT_DIR "%s", tc->model);
    snprintf(refp, sizeof refp, CT_DIR "%s.ref.safetensors", tc->ref);
    cd_clip_text *m = NULL;
    cd_st_file *ref = NULL;
    cd_status s = cd_clip_text_open(ctx, path, &m);
    if (tc->hidden == 32 && tc->heads == 1) { /* hidden 32 is no multiple of CLIP's head_dim 64 */
        EXPECT(s == CD_ERR_UNSUPPORTED && strstr(cd_ctx_error(ctx), "config.json") && one_line(cd_ctx_error(ctx)),
               "%s: expected 'cannot infer the head count', got %d '%s'", tc->model, s, cd_ctx_error(ctx));
        cd_ctx_free(ctx);
        return;
    }
    if (s == CD_OK) s = cd_st_open(ctx, refp, &ref);
    if (s) {
        EXPECT(0, "%s: %s (%s)", tc->model, cd_ctx_error(ctx), CT_REGEN);
        cd_clip_text_free(m);
        cd_ctx_free(ctx);
        return;
    }
    const cd_clip_config *c = cd_clip_text_cfg(m);
    EXPECT(c->heads == tc->heads && c->hidden == tc->hidden && c->layers == tc->layers && c->eos_id == tc->eos &&
               c->max_pos == 77 && c->vocab == 128 && c->quick_gelu == 1 && c->eps == 1e-5f,
           "%s: config %d heads, hidden %d, %d layers, eos %d", tc->model, c->heads, c->hidden, c->layers, c->eos_id);
    EXPECT(strstr(cd_clip_text_describe(m), "CLIP text") != NULL, "describe: %s", cd_clip_text_describe(m));
    const char *cases = cd_st_meta(ref, "cases");
    CHECK(cases && *cases, "%s: no cases in the reference (%s)", refp, CT_REGEN);
    const cd_ops *tables[2] = {cd_ops_cpu(), cd_ops_cpu_ref()};
    char list[128];
    snprintf(list, sizeof list, "%s", cases);
    int ncase = 0;
    for (char *save = NULL, *cn = strtok_r(list, ",", &save); cn; cn = strtok_r(NULL, ",", &save)) {
        char nm[64];
        snprintf(nm, sizeof nm, "ids_%s", cn);
        const cd_st_tensor *ti = cd_st_find(ref, nm);
        snprintf(nm, sizeof nm, "hidden_%s", cn);
        const cd_st_tensor *th = cd_st_find(ref, nm);
        snprintf(nm, sizeof nm, "pooled_%s", cn);
        const cd_st_tensor *tp = cd_st_find(ref, nm);
        snprintf(nm, sizeof nm, "pos_%s", cn);
        const cd_st_tensor *tq = cd_st_find(ref, nm);
        if (!ti || !th || !tp || !tq || ti->dtype != CD_DTYPE_I32 || th->dtype != CD_DTYPE_F32) {
            EXPECT(0, "%s: case %s incomplete (%s)", refp, cn, CT_REGEN);
            continue;
        }
        const int32_t n = (int32_t)ti->shape[0], H = c->hidden;
        int32_t ids[77], pos;
        float want_h[77 * 64], want_p[64], got_h[77 * 64], got_p[64];
        if (n > 77 || H > 64 || th->nbytes != (uint64_t)n * H * 4) {
            EXPECT(0, "%s: case %s has unexpected shapes", refp, cn);
            continue;
        }
        memcpy(ids, ti->data, (size_t)n * 4);
        memcpy(want_h, th->data, (size_t)n * H * 4);
        memcpy(want_p, tp->data, (size_t)H * 4);
        memcpy(&pos, tq->data, 4);
        EXPECT(cd_clip_text_pool_pos(m, ids, n) == pos, "%s/%s: pooled position %d, transformers %d", tc->model, cn,
               cd_clip_text_pool_pos(m, ids, n), pos);
        for (int b = 0; b < 2; b++) {
            memset(got_h, 0xff, sizeof got_h);
            s = cd_clip_text_encode(ctx, m, tables[b], ids, n, got_h, got_p);
            if (s) {
                EXPECT(0, "%s/%s on %s: %s", tc->model, cn, tables[b]->name, cd_ctx_error(ctx));
                continue;
            }
            const double eh = test_rel_l2(got_h, want_h, (size_t)n * H), ep = test_rel_l2(got_p, want_p, (size_t)H);
            EXPECT(eh <= CT_TOL && ep <= CT_TOL, "%s/%s on %s: hidden rel L2 %.3g, pooled %.3g (tol %g)", tc->model, cn,
                   tables[b]->name, eh, ep, CT_TOL);
            if (getenv("CT_VERBOSE"))
                printf("  %-30s %-6s %-14s hidden %.2e pooled %.2e\n", tc->model, cn, tables[b]->name, eh, ep);
            /* pooled alone (hidden NULL) gives the same vector */
            float p2[64];
            s = cd_clip_text_encode(ctx, m, tables[b], ids, n, NULL, p2);
            EXPECT(s == CD_OK && !memcmp(p2, got_p, (size_t)H * 4), "%s/%s: pooled without hidden differs", tc->model,
                   cn);
        }
        ncase++;
    }
    EXPECT(ncase >= 1, "%s: no case checked", tc->model);
    cd_st_close(ref);
    cd_clip_text_free(m);
    cd_ctx_free(ctx);
}

TEST(clip_text_oracle_hf_f32) { check_model(&k_cases[0]); }
TEST(clip_text_oracle_hf_bf16) { check_model(&k_cases[1]); }
TEST(clip_text_oracle_hf_f16) { check_model(&k_cases[2]); }
TEST(clip_text_oracle_hf_f8) { check_model(&k_cases[3]); }
TEST(clip_text_oracle_hf_argmax) { check_model(&k_cases[4]); }
TEST(clip_text_oracle_file_no_config) { check_model(&k_cases[5]); }
TEST(clip_text_oracle_comfy_f16) { check_model(&k_cases[6]); }
TEST(clip_text_oracle_comfy_prefixed_f8) { check_model(&k_cases[7]); }

/* ---- bad input ------------------------------------------------------------------------------ */

/* Writes comfy_f16's tensors to path, with `drop` left out and `reshape` given shape [2, 2]
 * (either may be NULL) and `extra` added as a [4] F32 tensor. */
static int write_variant(cd_ctx *ctx, const char *path, const char *drop, const char *reshape, const char *extra) {
    cd_st_file *f = NULL;
    if (cd_st_open(ctx, CT_DIR "comfy_f16.safetensors", &f)) return 0;
    const size_t n = cd_st_count(f);
    cd_st_out *o = calloc(n + 1, sizeof *o);
    static const float four[4] = {1, 2, 3, 4};
    size_t k = 0;
    for (size_t i = 0; o && i < n; i++) {
        const cd_st_tensor *t = cd_st_at(f, i);
        if (drop && !strcmp(t->name, drop)) continue;
        o[k] = (cd_st_out){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(o[k].shape, t->shape, sizeof t->shape);
        if (reshape && !strcmp(t->name, reshape)) o[k].ndim = 2, o[k].shape[0] = 2, o[k].shape[1] = 2;
        k++;
    }
    if (o && extra) o[k++] = (cd_st_out){extra, CD_DTYPE_F32, 1, {4}, four};
    int ok = o && cd_st_write(ctx, path, o, k, NULL, 0) == CD_OK;
    free(o);
    cd_st_close(f);
    return ok;
}

static void expect_open_error(cd_ctx *ctx, const char *path, cd_status want, const char *needle, const char *what) {
    cd_clip_text *m = NULL;
    cd_status s = cd_clip_text_open(ctx, path, &m);
    EXPECT(s == want && m == NULL && strstr(cd_ctx_error(ctx), needle) && one_line(cd_ctx_error(ctx)),
           "%s: got %d '%s', want %d mentioning '%s'", what, s, cd_ctx_error(ctx), want, needle);
    cd_clip_text_free(m);
}

TEST(clip_text_bad_files) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    char dir[64], p[160];
    CHECK(tmp_dir_tag(dir, sizeof dir, "clipbad"), "temp dir");
    snprintf(p, sizeof p, "%s/missing.safetensors", dir);
    CHECK(write_variant(ctx, p, "text_model.encoder.layers.0.mlp.fc2.bias", NULL, NULL), "write: %s",
          cd_ctx_error(ctx));
    expect_open_error(ctx, p, CD_ERR_NOT_FOUND, "text_model.encoder.layers.0.mlp.fc2.bias", "missing tensor");
    snprintf(p, sizeof p, "%s/shape.safetensors", dir);
    CHECK(write_variant(ctx, p, NULL, "text_model.encoder.layers.0.self_attn.k_proj.weight", NULL), "write");
    expect_open_error(ctx, p, CD_ERR_SHAPE, "k_proj.weight' is [2, 2], expected [64, 64]", "wrong shape");
    snprintf(p, sizeof p, "%s/unknown.safetensors", dir);
    CHECK(write_variant(ctx, p, NULL, NULL, "text_model.encoder.layers.1.mlp.fc1.bias"), "write");
    expect_open_error(ctx, p, CD_ERR_FORMAT, "unknown tensor 'text_model.encoder.layers.1.mlp.fc1.bias'",
                      "tensor of a layer beyond the count");
    snprintf(p, sizeof p, "%s/logit.safetensors", dir);
    CHECK(write_variant(ctx, p, NULL, NULL, "logit_scale"), "write");
    expect_open_error(ctx, p, CD_ERR_FORMAT, "unknown tensor 'logit_scale'", "unknown tensor");
    snprintf(p, sizeof p, "%s/nottext.safetensors", dir);
    CHECK(write_variant(ctx, p, "text_model.embeddings.token_embedding.weight", NULL, NULL), "write");
    expect_open_error(ctx, p, CD_ERR_NOT_FOUND, "not a CLIP text model", "no token embedding");

    /* truncated: the first half of a valid file */
    FILE *f = fopen(CT_DIR "comfy_f16.safetensors", "rb");
    CHECK(f, "open fixture");
    static char buf[1 << 17];
    const size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/trunc.safetensors", dir);
    CHECK(got > 1000 && write_bytes(p, buf, got / 2), "write truncated");
    expect_open_error(ctx, p, CD_ERR_FORMAT, "trunc.safetensors", "truncated file");

    /* a diffusers folder whose config.json asks for another activation */
    snprintf(p, sizeof p, "%s/gelu", dir);
    CHECK(mkdir(p, 0755) == 0, "mkdir");
    FILE *src = fopen(CT_DIR "hf_f8/model.safetensors", "rb");
    CHECK(src, "open fixture");
    const size_t nb = fread(buf, 1, sizeof buf, src);
    fclose(src);
    char q[200];
    snprintf(q, sizeof q, "%s/model.safetensors", p);
    CHECK(nb > 0 && nb < sizeof buf && write_bytes(q, buf, nb), "copy");
    static const char cfg[] = "{\"hidden_size\": 32, \"num_attention_heads\": 2, \"hidden_act\": \"gelu\"}";
    snprintf(q, sizeof q, "%s/config.json", p);
    CHECK(write_bytes(q, cfg, sizeof cfg - 1), "config");
    expect_open_error(ctx, p, CD_ERR_UNSUPPORTED, "hidden_act 'gelu' is not supported", "hidden_act gelu");
    /* ... or disagrees with the shapes */
    static const char cfg2[] = "{\"hidden_size\": 32, \"num_attention_heads\": 2, \"num_hidden_layers\": 3}";
    CHECK(write_bytes(q, cfg2, sizeof cfg2 - 1), "config");
    expect_open_error(ctx, p, CD_ERR_NOT_FOUND, "text_model.encoder.layers.2.", "config with more layers");
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

TEST(clip_text_bad_ids) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    cd_clip_text *m = NULL;
    CHECK(cd_clip_text_open(ctx, CT_DIR "hf_f32", &m) == CD_OK, "open: %s (%s)", cd_ctx_error(ctx), CT_REGEN);
    int32_t ids[78];
    for (int i = 0; i < 78; i++) ids[i] = i % 100;
    float pooled[32];
    ids[5] = 128;
    cd_status s = cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, 10, NULL, pooled);
    EXPECT(s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "id 128 at position 5") && one_line(cd_ctx_error(ctx)),
           "id >= vocab: %d '%s'", s, cd_ctx_error(ctx));
    ids[5] = -1;
    s = cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, 10, NULL, pooled);
    EXPECT(s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "id -1 at position 5"), "negative id: '%s'",
           cd_ctx_error(ctx));
    ids[5] = 5;
    s = cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, 78, NULL, pooled);
    EXPECT(s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "78 tokens (1 to 77"), "n > max_pos: %d '%s'", s,
           cd_ctx_error(ctx));
    s = cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, 0, NULL, pooled);
    EXPECT(s == CD_ERR_INVALID_ARG, "n = 0: %d", s);
    cd_clip_text_free(m);
    cd_ctx_free(ctx);
}

/* Random weights (the benchmark's model) on a small config: both tables agree, outputs finite. */
TEST(clip_text_random_tables_agree) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    const cd_clip_config cfg = {.vocab = 300,
                                .hidden = 128,
                                .heads = 2,
                                .inter = 512,
                                .layers = 2,
                                .max_pos = 77,
                                .eps = 1e-5f,
                                .eos_id = 299,
                                .quick_gelu = 1};
    for (int d = 0; d < 2; d++) {
        cd_clip_text *m = NULL;
        const cd_dtype dt = d ? CD_DTYPE_BF16 : CD_DTYPE_F32;
        CHECK(cd_clip_text_random(ctx, &cfg, dt, 7, &m) == CD_OK, "random: %s", cd_ctx_error(ctx));
        int32_t ids[77];
        for (int i = 0; i < 77; i++) ids[i] = i < 30 ? (i * 37) % 298 : 299;
        static float h0[77 * 128], h1[77 * 128];
        float p0[128], p1[128];
        EXPECT(cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, 77, h0, p0) == CD_OK, "cpu: %s", cd_ctx_error(ctx));
        EXPECT(cd_clip_text_encode(ctx, m, cd_ops_cpu_ref(), ids, 77, h1, p1) == CD_OK, "cpu_ref: %s",
               cd_ctx_error(ctx));
        const double e = test_rel_l2(h0, h1, sizeof h0 / sizeof h0[0]);
        EXPECT(e <= 1e-5, "%s: cpu vs cpu_ref rel L2 %.3g", cd_dtype_name(dt), e);
        EXPECT(!memcmp(p0, h0 + 30 * 128, sizeof p0), "pooled = hidden at the first EOS (30)");
        cd_clip_text_free(m);
    }
    cd_clip_text *m = NULL;
    EXPECT(cd_clip_text_random(ctx, &cfg, CD_DTYPE_F16, 7, &m) == CD_ERR_UNSUPPORTED && !m, "F16 random refused");
    cd_ctx_free(ctx);
}

/* Weights at odd file offsets (safetensors does not align tensors): a 77-byte U8 position_ids
 * (ignored by the model) written first shifts every F16 tensor to an odd address; the binding must
 * copy those weights to f32 rather than hand a misaligned pointer to the linear, and the outputs
 * still match transformers. */
TEST(clip_text_misaligned_weights) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    char dir[64], p[160];
    CHECK(tmp_dir_tag(dir, sizeof dir, "clipmis"), "temp dir");
    snprintf(p, sizeof p, "%s/odd.safetensors", dir);
    cd_st_file *f = NULL, *ref = NULL;
    CHECK(cd_st_open(ctx, CT_DIR "comfy_f16.safetensors", &f) == CD_OK, "open: %s", cd_ctx_error(ctx));
    const size_t n = cd_st_count(f);
    cd_st_out o[64];
    static uint8_t pos_ids[77];
    size_t k = 0;
    o[k++] = (cd_st_out){"text_model.embeddings.position_ids", CD_DTYPE_U8, 2, {1, 77}, pos_ids};
    for (size_t i = 0; i < n && k < 64; i++) {
        const cd_st_tensor *t = cd_st_at(f, i);
        if (!strcmp(t->name, "text_model.embeddings.position_ids")) continue;
        o[k] = (cd_st_out){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(o[k].shape, t->shape, sizeof t->shape);
        k++;
    }
    cd_status s = cd_st_write(ctx, p, o, k, NULL, 0);
    cd_st_close(f);
    CHECK(s == CD_OK, "write: %s", cd_ctx_error(ctx));
    cd_clip_text *m = NULL;
    s = cd_clip_text_open(ctx, p, &m);
    if (s == CD_OK) s = cd_st_open(ctx, CT_DIR "comfy_f16.ref.safetensors", &ref);
    if (s == CD_OK) {
        EXPECT(strstr(cd_clip_text_describe(m), "F32 weights") != NULL, "misaligned F16 weights copied to f32: %s",
               cd_clip_text_describe(m));
        const cd_st_tensor *ti = cd_st_find(ref, "ids_flux"), *th = cd_st_find(ref, "hidden_flux");
        const cd_st_tensor *tp = cd_st_find(ref, "pooled_flux");
        if (ti && th && tp && ti->shape[0] == 77 && th->nbytes == 77 * 64 * 4) {
            int32_t ids[77];
            static float want_h[77 * 64], got_h[77 * 64];
            float want_p[64], got_p[64];
            memcpy(ids, ti->data, sizeof ids);
            memcpy(want_h, th->data, sizeof want_h);
            memcpy(want_p, tp->data, sizeof want_p);
            s = cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, 77, got_h, got_p);
            EXPECT(s == CD_OK, "encode: %s", cd_ctx_error(ctx));
            const double eh = test_rel_l2(got_h, want_h, 77 * 64), ep = test_rel_l2(got_p, want_p, 64);
            EXPECT(eh <= CT_TOL && ep <= CT_TOL, "misaligned: hidden rel L2 %.3g, pooled %.3g", eh, ep);
        } else {
            EXPECT(0, "comfy_f16 reference incomplete (%s)", CT_REGEN);
        }
    } else {
        EXPECT(0, "open: %s", cd_ctx_error(ctx));
    }
    cd_st_close(ref);
    cd_clip_text_free(m);
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* End to end with diffusers: the tiny FLUX pipeline's text_encoder/ (tests/fixtures/pipeline/,
 * written by tests/oracle/pipeline_fixtures.py) on the ids FluxPipeline fed it, against
 * encode_prompt's pooled_prompt_embeds for each of its prompts. */
TEST(clip_text_pipeline_pooled) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    cd_clip_text *m = NULL;
    cd_st_file *ex = NULL;
    cd_status s = cd_clip_text_open(ctx, "tests/fixtures/pipeline/tiny_dev/text_encoder", &m);
    if (s == CD_OK) s = cd_st_open(ctx, "tests/fixtures/pipeline/tiny_dev_expect.safetensors", &ex);
    if (s) {
        EXPECT(0, "%s", cd_ctx_error(ctx));
        cd_clip_text_free(m);
        cd_ctx_free(ctx);
        return;
    }
    const int32_t H = cd_clip_text_cfg(m)->hidden;
    int checked = 0;
    for (int p = 0; p < 16 && H <= 64; p++) {
        char nm[32];
        snprintf(nm, sizeof nm, "p%d_clip_ids", p);
        const cd_st_tensor *ti = cd_st_find(ex, nm);
        snprintf(nm, sizeof nm, "p%d_pooled", p);
        const cd_st_tensor *tp = cd_st_find(ex, nm);
        if (!ti || !tp) break;
        int32_t ids[77];
        float want[64], got[64];
        if (ti->dtype != CD_DTYPE_I32 || ti->shape[0] > 77 || tp->nbytes != (uint64_t)H * 4) {
            EXPECT(0, "prompt %d: unexpected shapes", p);
            break;
        }
        memcpy(ids, ti->data, (size_t)ti->shape[0] * 4);
        memcpy(want, tp->data, (size_t)H * 4);
        for (int b = 0; b < 2; b++) {
            const cd_ops *ops = b ? cd_ops_cpu_ref() : cd_ops_cpu();
            s = cd_clip_text_encode(ctx, m, ops, ids, (int32_t)ti->shape[0], NULL, got);
            const double e = s ? INFINITY : test_rel_l2(got, want, (size_t)H);
            if (getenv("CT_VERBOSE")) printf("  pipeline prompt %d %-14s pooled %.2e\n", p, ops->name, e);
            EXPECT(e <= CT_TOL, "prompt %d on %s: pooled rel L2 %.3g (%s)", p, ops->name, e, cd_ctx_error(ctx));
        }
        checked++;
    }
    EXPECT(checked >= 6, "%d prompts checked", checked);
    cd_st_close(ex);
    cd_clip_text_free(m);
    cd_ctx_free(ctx);
}
