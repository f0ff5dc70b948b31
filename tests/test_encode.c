/* test_encode.c — the public text-encoder API (cd_encoder_*, include/cleardit.h) end to end on the
 * tiny diffusers FLUX pipeline (tests/fixtures/pipeline/, tests/oracle/pipeline_fixtures.py):
 * the folder's encoders and tokenizers found from its root, the ids both tokenizers give and the
 * txt / pooled embeddings equal diffusers' FluxPipeline.encode_prompt (float64) for six prompts in
 * both T5 semantics, and the image generated from our own embeddings and FluxPipeline's noise
 * equals FluxPipeline's image for that prompt. Then the embedding cache and bad input. */
#include "test.h"
#include "test_files.h"
#include "cleardit.h"
#include "../src/pipeline/generate.h"
#include "../src/pipeline/model_dir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PIPE "tests/fixtures/pipeline/tiny_dev"
#define EXPECT_FILE PIPE "_expect.safetensors"
#define REGEN "run 'python3 tests/oracle/pipeline_fixtures.py' from the repository root"
#define N_PROMPTS 6
/* f32 activations with bf16 weights against the float64 pipeline on the same weights: relative L2
 * of a few 1e-7 is measured (docs/text_encoders.md); the bound is 1e-5. */
#define TOL_EMB 1e-5
#define TOL_IMG 1e-4 /* as tests/test_pipeline_dir_oracle.c: 3 Euler steps and the autoencoder */

static cd_ctx *mkctx(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 2;
    return cd_ctx_create(&cp, &ctx) == CD_OK ? ctx : NULL;
}

static float *tensor_f32(cd_ctx *ctx, const cd_st_file *f, const char *name, uint64_t *n) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) return NULL;
    *n = cd_st_numel(t);
    float *p = malloc(*n * sizeof(float));
    if (p && cd_st_to_f32(ctx, t, p) != CD_OK) {
        free(p);
        return NULL;
    }
    return p;
}

/* I32 ids of tensor name into out[n]; 0 if absent or mis-sized. */
static int tensor_ids(const cd_st_file *f, const char *name, int32_t *out, size_t n) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t || t->dtype != CD_DTYPE_I32 || cd_st_numel(t) != n) return 0;
    memcpy(out, t->data, n * sizeof(int32_t));
    return 1;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static int meta_int(const cd_st_file *f, const char *key) {
    const char *v = cd_st_meta(f, key);
    return v ? atoi(v) : -1;
}

static cd_encoder *open_pipe(cd_ctx *ctx, cd_tok_semantics sem) {
    cd_encoder_params p = cd_encoder_params_default();
    p.model_dir = PIPE;
    p.semantics = sem;
    cd_encoder *e = NULL;
    if (cd_encoder_open(ctx, &p, &e) != CD_OK) test_fail(__FILE__, __LINE__, "open: %s", cd_ctx_error(ctx));
    return e;
}

TEST(encode_tiny_pipeline_matches_flux_pipeline) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "context");
    cd_st_file *f = NULL;
    if (cd_st_open(ctx, EXPECT_FILE, &f) != CD_OK) {
        test_fail(__FILE__, __LINE__, "%s (%s)", cd_ctx_error(ctx), REGEN);
        cd_ctx_free(ctx);
        return;
    }
    const int L = meta_int(f, "max_sequence_length");
    for (int sem = 0; sem < 2; sem++) {
        cd_encoder *e = open_pipe(ctx, (cd_tok_semantics)sem);
        if (!e) break;
        const int D = cd_encoder_txt_dim(e), P = cd_encoder_pooled_dim(e);
        EXPECT(D == 24 && P == 20 && cd_encoder_default_length(e) == 512, "dims %d %d, default length %d", D, P,
               cd_encoder_default_length(e));
        float *txt = malloc((size_t)L * D * sizeof(float)), pooled[64];
        int32_t *t5 = malloc((size_t)L * sizeof(int32_t)), *t5w = malloc((size_t)L * sizeof(int32_t));
        int32_t clip[77], clipw[77];
        for (int i = 0; txt && t5 && t5w && i < N_PROMPTS; i++) {
            char key[32];
            snprintf(key, sizeof key, "prompt_%d", i);
            const char *prompt = cd_st_meta(f, key);
            uint64_t nt = 0, np = 0;
            snprintf(key, sizeof key, "p%d_txt", i);
            float *wt = tensor_f32(ctx, f, key, &nt);
            snprintf(key, sizeof key, "p%d_pooled", i);
            float *wp = tensor_f32(ctx, f, key, &np);
            char k1[32], k2[32];
            snprintf(k1, sizeof k1, "p%d_t5_ids", i);
            snprintf(k2, sizeof k2, "p%d_clip_ids", i);
            if (!prompt || !wt || !wp || nt != (uint64_t)L * D || np != (uint64_t)P ||
                !tensor_ids(f, k1, t5w, (size_t)L) || !tensor_ids(f, k2, clipw, 77)) {
                test_fail(__FILE__, __LINE__, "prompt %d: missing or mis-sized expectations (%s)", i, REGEN);
            } else {
                cd_encode_info info = {0, 0, t5, clip};
                const cd_status s = cd_encoder_encode(ctx, e, prompt, L, txt, pooled, &info);
                EXPECT(s == CD_OK, "prompt %d: %s", i, cd_ctx_error(ctx));
                if (s == CD_OK) {
                    EXPECT(!memcmp(t5, t5w, (size_t)L * sizeof(int32_t)), "prompt %d (%s semantics): T5 ids differ", i,
                           sem ? "diffusers" : "sentencepiece");
                    EXPECT(!memcmp(clip, clipw, sizeof clip), "prompt %d: CLIP ids differ", i);
                    const double et = rel_l2(txt, wt, nt), ep = rel_l2(pooled, wp, np);
                    EXPECT(et <= TOL_EMB && ep <= TOL_EMB, "prompt %d: txt rel L2 %.2e, pooled %.2e", i, et, ep);
                    EXPECT(i != 2 || (info.t5_dropped > 0 && info.clip_dropped > 0),
                           "the long prompt is truncated: dropped %d / %d", info.t5_dropped, info.clip_dropped);
                }
            }
            free(wt);
            free(wp);
        }
        free(txt);
        free(t5);
        free(t5w);
        cd_encoder_free(e);
    }
    cd_st_close(f);
    cd_ctx_free(ctx);
}

/* Our embeddings of the image prompt + FluxPipeline's noise -> FluxPipeline's image. */
TEST(encode_then_generate_matches_flux_image) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "context");
    cd_st_file *f = NULL;
    cd_encoder *e = NULL;
    cd_model_dir d = {0};
    cd_flux_model *m = NULL;
    cd_ae_decoder *dec = NULL;
    float *txt = NULL, *noise = NULL, *want = NULL, *got = NULL, pooled[64];
    if (cd_st_open(ctx, EXPECT_FILE, &f) != CD_OK || !(e = open_pipe(ctx, CD_TOK_SENTENCEPIECE)) ||
        cd_model_dir_open(ctx, PIPE, &d) != CD_OK || cd_flux_load(ctx, d.transformer, NULL, &m) != CD_OK ||
        cd_ae_decoder_load(ctx, d.vae, 4, &dec) != CD_OK) {
        test_fail(__FILE__, __LINE__, "%s (%s)", cd_ctx_error(ctx), REGEN);
        goto done;
    }
    const int L = meta_int(f, "max_sequence_length"), W = meta_int(f, "width"), H = meta_int(f, "height");
    char key[32];
    snprintf(key, sizeof key, "prompt_%d", meta_int(f, "image_prompt"));
    const char *prompt = cd_st_meta(f, key);
    uint64_t nn = 0, ni = 0;
    noise = tensor_f32(ctx, f, "noise", &nn);
    want = tensor_f32(ctx, f, "image", &ni);
    txt = malloc((size_t)L * cd_encoder_txt_dim(e) * sizeof(float));
    got = malloc((ni ? ni : 1) * sizeof(float));
    if (!prompt || !noise || !want || !txt || !got || ni != (uint64_t)3 * W * H) {
        test_fail(__FILE__, __LINE__, "expectations missing (%s)", REGEN);
        goto done;
    }
    if (cd_encoder_encode(ctx, e, prompt, L, txt, pooled, NULL) != CD_OK) {
        test_fail(__FILE__, __LINE__, "encode: %s", cd_ctx_error(ctx));
        goto done;
    }
    cd_encoder_free(e); /* as the CLI: the encoders go before the transformer runs */
    e = NULL;
    cd_generate_params p = {0};
    p.txt = txt;
    p.T = L;
    p.pooled = pooled;
    p.width = W;
    p.height = H;
    p.steps = meta_int(f, "steps");
    p.guidance = (float)strtod(cd_st_meta(f, "guidance"), NULL);
    p.shift = -1;
    p.noise = noise;
    p.image = got;
    if (cd_generate(ctx, m, dec, &p, NULL) != CD_OK) {
        test_fail(__FILE__, __LINE__, "generate: %s", cd_ctx_error(ctx));
        goto done;
    }
    double dmax = 0, vmax = 0;
    for (uint64_t i = 0; i < ni; i++) {
        dmax = fmax(dmax, fabs((double)got[i] - want[i]));
        vmax = fmax(vmax, fabs((double)want[i]));
    }
    EXPECT(dmax / vmax < TOL_IMG, "image from our embeddings vs FluxPipeline's: rel err %.2e", dmax / vmax);
done:
    free(txt);
    free(noise);
    free(want);
    free(got);
    cd_encoder_free(e);
    cd_ae_decoder_free(dec);
    cd_flux_free(m);
    cd_model_dir_free(&d);
    cd_st_close(f);
    cd_ctx_free(ctx);
}

TEST(encode_cache_hits_the_same_key_only) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "context");
    char dir[64];
    CHECK(tmp_dir_tag(dir, sizeof dir, "enc_cache"), "temp dir");
    cd_encoder *e = open_pipe(ctx, CD_TOK_SENTENCEPIECE);
    float a[16 * 24], b[16 * 24], pa[20], pb[20];
    int hit = -1;
    if (e) {
        EXPECT(cd_encoder_encode_cached(ctx, e, dir, "a red fox", 16, a, pa, NULL, &hit) == CD_OK && hit == 0,
               "first: %s (hit %d)", cd_ctx_error(ctx), hit);
        EXPECT(dir_count(dir) == 1, "one cache file, got %d", dir_count(dir));
        memset(b, 0, sizeof b);
        EXPECT(cd_encoder_encode_cached(ctx, e, dir, "a red fox", 16, b, pb, NULL, &hit) == CD_OK && hit == 1,
               "second: %s (hit %d)", cd_ctx_error(ctx), hit);
        EXPECT(!memcmp(a, b, sizeof a) && !memcmp(pa, pb, sizeof pa), "the hit returns the stored embeddings");
        /* another length, another prompt: misses, new files */
        EXPECT(cd_encoder_encode_cached(ctx, e, dir, "a red fox", 8, b, pb, NULL, &hit) == CD_OK && hit == 0,
               "L 8: hit %d", hit);
        EXPECT(cd_encoder_encode_cached(ctx, e, dir, "a red fox ", 16, b, pb, NULL, &hit) == CD_OK && hit == 0,
               "another prompt: hit %d", hit);
        EXPECT(dir_count(dir) == 3, "three cache files, got %d", dir_count(dir));
        /* a cache file that is not safetensors: an error naming it, not a silent recompute */
        DIR *dd = opendir(dir);
        struct dirent *de;
        char victim[600] = "";
        while (dd && (de = readdir(dd)))
            if (de->d_name[0] != '.') snprintf(victim, sizeof victim, "%s/%s", dir, de->d_name);
        if (dd) closedir(dd);
        EXPECT(victim[0] && write_bytes(victim, "garbage", 7), "corrupt %s", victim);
        int bad = 0;
        const char *ps[] = {"a red fox", "a red fox ", NULL};
        for (int i = 0; ps[i]; i++)
            for (int L = 8; L <= 16; L += 8)
                if (cd_encoder_encode_cached(ctx, e, dir, ps[i], L, b, pb, NULL, &hit) == CD_ERR_FORMAT) {
                    bad++;
                    EXPECT(strstr(cd_ctx_error(ctx), victim) != NULL, "message names the file: %s", cd_ctx_error(ctx));
                }
        EXPECT(bad == 1, "exactly the corrupted entry fails (%d)", bad);
        cd_encoder_free(e);
    }
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

TEST(encode_bad_input) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "context");
    cd_encoder_params p = cd_encoder_params_default();
    cd_encoder *e = NULL;
    /* a transformer folder is no pipeline root: it has no encoders */
    p.model_dir = PIPE "/transformer";
    EXPECT(cd_encoder_open(ctx, &p, &e) != CD_OK && !e && strstr(cd_ctx_error(ctx), "--t5"), "transformer dir: %s",
           cd_ctx_error(ctx));
    /* nothing at all */
    p = cd_encoder_params_default();
    EXPECT(cd_encoder_open(ctx, &p, &e) == CD_ERR_NOT_FOUND && strstr(cd_ctx_error(ctx), "--t5"), "none: %s",
           cd_ctx_error(ctx));
    /* a single T5 file with no tokenizer beside it: the message says which flag, and where the
     * tokenizers live */
    char dir[64], path[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "enc_bad"), "temp dir");
    snprintf(path, sizeof path, "%s/t5.safetensors", dir);
    char real[4096];
    CHECK(realpath(PIPE "/text_encoder_2/model-00001-of-00002.safetensors", real), "realpath");
    CHECK(symlink(real, path) == 0, "symlink");
    p.t5 = path;
    p.clip = PIPE "/text_encoder";
    EXPECT(cd_encoder_open(ctx, &p, &e) != CD_OK && strstr(cd_ctx_error(ctx), "--t5-tokenizer") &&
               strstr(cd_ctx_error(ctx), "tokenizer_2/"),
           "no tokenizer: %s", cd_ctx_error(ctx));
    /* explicit tokenizer files override the folder's */
    p = cd_encoder_params_default();
    p.model_dir = PIPE;
    p.clip_tokenizer = PIPE "/tokenizer/vocab.json";
    p.t5_tokenizer = "tests/fixtures/spm/t5like.model";
    EXPECT(cd_encoder_open(ctx, &p, &e) == CD_OK, "explicit tokenizers: %s", cd_ctx_error(ctx));
    cd_encoder_free(e);
    e = NULL;
    /* diffusers semantics from a bare spiece.model: refused with the reason */
    p.semantics = CD_TOK_DIFFUSERS;
    EXPECT(cd_encoder_open(ctx, &p, &e) == CD_ERR_UNSUPPORTED && strstr(cd_ctx_error(ctx), "tokenizer.json"),
           "diffusers from spiece.model: %s", cd_ctx_error(ctx));
    p.semantics = CD_TOK_SENTENCEPIECE;
    p.t5_tokenizer = NULL;
    p.clip_tokenizer = NULL;
    e = open_pipe(ctx, CD_TOK_SENTENCEPIECE);
    if (e) {
        float txt[8 * 24], pooled[20];
        EXPECT(cd_encoder_encode(ctx, e, "caf\xc3\x28", 8, txt, pooled, NULL) == CD_ERR_INVALID_ARG &&
                   strstr(cd_ctx_error(ctx), "3"),
               "invalid UTF-8: %s", cd_ctx_error(ctx));
        EXPECT(cd_encoder_encode(ctx, e, "ok", 0, txt, pooled, NULL) == CD_ERR_INVALID_ARG, "L = 0 accepted");
        EXPECT(cd_encoder_encode(ctx, e, "", 8, txt, pooled, NULL) == CD_OK, "empty prompt: %s", cd_ctx_error(ctx));
        cd_encoder_free(e);
    }
    tmp_rm(dir);
    cd_ctx_free(ctx);
}
