/* test_pipeline_dir_oracle.c — the tiny diffusers FLUX pipeline folder (tests/fixtures/pipeline/,
 * tests/oracle/pipeline_fixtures.py) run through cleardit from FluxPipeline's own prompt
 * embeddings: the folder's parts found by cd_model_dir_open, its transformer/ and vae/ loaded as
 * folders (config.json beside the bf16 weights), the recorded noise, and the image must be
 * FluxPipeline's for the same prompt. This checks the fixture and the folder path end to end
 * before the text encoders exist: with native encoders, only p0_txt / p0_pooled change hands. */
#include "test.h"
#include "cleardit.h"
#include "../src/pipeline/generate.h"
#include "../src/pipeline/model_dir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PIPE "tests/fixtures/pipeline/tiny_dev"
#define REGEN "run 'python3 tests/oracle/pipeline_fixtures.py' from the repository root"
#define AE_GROUPS 4 /* the fixture's norm_num_groups (vae/config.json) */

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

static double meta_num(const cd_st_file *f, const char *key) {
    const char *v = cd_st_meta(f, key);
    return v ? strtod(v, NULL) : NAN;
}

/* f32 with bf16 weights against the float64 pipeline (the same bf16 values), 3 Euler steps and
 * the autoencoder: the same accuracy argument and tolerance as tests/test_generate_oracle.c. */
#define TOL 1e-4

TEST(pipeline_dir_oracle_image_from_flux_embeddings) {
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 2;
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "context");
    cd_model_dir d;
    cd_st_file *f = NULL;
    cd_flux_model *m = NULL;
    cd_ae_decoder *dec = NULL;
    float *txt = NULL, *pooled = NULL, *noise = NULL, *want = NULL, *want_np = NULL, *got = NULL;
    memset(&d, 0, sizeof d);
    if (cd_model_dir_open(ctx, PIPE, &d) != CD_OK || cd_st_open(ctx, PIPE "_expect.safetensors", &f) != CD_OK) {
        test_fail(__FILE__, __LINE__, "%s (%s)", cd_ctx_error(ctx), REGEN);
        goto done;
    }
    if (cd_flux_load(ctx, d.transformer, NULL, &m) != CD_OK ||
        cd_ae_decoder_load(ctx, d.vae, AE_GROUPS, &dec) != CD_OK) {
        test_fail(__FILE__, __LINE__, "loading the pipeline's transformer/ and vae/: %s", cd_ctx_error(ctx));
        goto done;
    }
    const cd_flux_config *c = cd_flux_model_config(m);
    EXPECT(c->guidance == 1 && d.max_length_hint == 512, "dev-like: guidance %d, hint %d", c->guidance,
           d.max_length_hint);
    uint64_t nt = 0, np = 0, nn = 0, ni = 0, nj = 0;
    const int ip = (int)meta_num(f, "image_prompt");
    char key[32];
    snprintf(key, sizeof key, "p%d_txt", ip);
    txt = tensor_f32(ctx, f, key, &nt);
    snprintf(key, sizeof key, "p%d_pooled", ip);
    pooled = tensor_f32(ctx, f, key, &np);
    noise = tensor_f32(ctx, f, "noise", &nn);
    want = tensor_f32(ctx, f, "image", &ni);
    want_np = tensor_f32(ctx, f, "image_np", &nj);
    const int W = (int)meta_num(f, "width"), H = (int)meta_num(f, "height"),
              L = (int)meta_num(f, "max_sequence_length");
    if (!txt || !pooled || !noise || !want || !want_np || nt != (uint64_t)L * c->context_dim ||
        np != (uint64_t)c->pooled_dim || ni != (uint64_t)3 * W * H || nj != ni) {
        test_fail(__FILE__, __LINE__, "%s_expect.safetensors: missing or mis-sized tensors (%s)", PIPE, REGEN);
        goto done;
    }
    cd_generate_params p = {0};
    p.txt = txt;
    p.T = L;
    p.pooled = pooled;
    p.width = W;
    p.height = H;
    p.steps = (int32_t)meta_num(f, "steps");
    p.guidance = (float)meta_num(f, "guidance");
    p.shift = -1; /* by the model: dev-like, the resolution-dependent shift of FLUX.1-dev's scheduler */
    p.noise = noise;
    got = malloc(ni * sizeof(float));
    p.image = got;
    if (!got || cd_generate(ctx, m, dec, &p, NULL) != CD_OK) {
        test_fail(__FILE__, __LINE__, "generate failed: %s", cd_ctx_error(ctx));
        goto done;
    }
    /* the decoded image [3, H, W] before any clamp, and diffusers' output_type="np" [H, W, 3]
     * ((x / 2 + 0.5) clamped to [0, 1], handed back in float32) */
    double dmax = 0, vmax = 0, dnp = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const size_t i = ((size_t)ch * H + y) * W + x;
                dmax = fmax(dmax, fabs((double)got[i] - want[i]));
                vmax = fmax(vmax, fabs((double)want[i]));
                const double u = fmin(1.0, fmax(0.0, (double)got[i] / 2 + 0.5));
                dnp = fmax(dnp, fabs(u - want_np[((size_t)y * W + x) * 3 + ch]));
            }
    EXPECT(dmax / vmax < TOL, "image vs FluxPipeline from the same embeddings and noise: rel err %.2e", dmax / vmax);
    EXPECT(dnp < TOL, "output_type=\"np\" image: max abs err %.2e", dnp);
    /* another prompt's embeddings (the empty prompt's) must move the image far beyond TOL: the
     * comparison above depends on the prompt */
    snprintf(key, sizeof key, "p%d_txt", ip == 1 ? 0 : 1);
    float *txt2 = tensor_f32(ctx, f, key, &nt);
    p.txt = txt2;
    if (!txt2 || nt != (uint64_t)L * c->context_dim || cd_generate(ctx, m, dec, &p, NULL) != CD_OK) {
        free(txt2);
        test_fail(__FILE__, __LINE__, "generate with %s: %s", key, cd_ctx_error(ctx));
        goto done;
    }
    free(txt2);
    dmax = 0;
    for (uint64_t i = 0; i < ni; i++) dmax = fmax(dmax, fabs((double)got[i] - want[i]));
    EXPECT(dmax / vmax > 100 * TOL, "another prompt's embeddings give nearly the same image (rel %.2e)", dmax / vmax);
done:
    free(txt);
    free(pooled);
    free(noise);
    free(want);
    free(want_np);
    free(got);
    cd_ae_decoder_free(dec);
    cd_flux_free(m);
    cd_st_close(f);
    cd_model_dir_free(&d);
    cd_ctx_free(ctx);
}
