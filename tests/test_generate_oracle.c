/* test_generate_oracle.c — whole pipelines against diffusers (tests/oracle/generate_fixtures.py):
 * FluxPipeline text-to-image (dev-like with the resolution shift, schnell-like without),
 * FluxImg2ImgPipeline image-to-image, and the CLEAR reference's high-resolution settings (static
 * shift 3, NTK RoPE x10, proportional attention). Tiny random diffusers-named checkpoints; the
 * noise is the recorded one (cd_generate_params.noise), everything else is computed here from the
 * same inputs, and the decoded image (before 8-bit conversion) must match the oracle's float64
 * result to f32 accuracy accumulated over a few steps. */
#include "test.h"
#include "cleardit.h"
#include "../src/pipeline/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GEN_DIR "tests/fixtures/generate"
#define GEN_REGEN "run 'python3 tests/oracle/generate_fixtures.py' from the repository root"
#define AE_GROUPS 4

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

/* Runs case `name`; *err = max |ours - oracle| / max |oracle| over the image. With `perturb`,
 * the proportional flag is flipped (the result must then differ). */
static void run_case(const char *name, int perturb, double *err) {
    *err = INFINITY;
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 2;
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "context");
    char path[256];
    snprintf(path, sizeof path, GEN_DIR "/%s.safetensors", name);
    cd_st_file *f = NULL;
    cd_flux_model *m = NULL;
    cd_ae_decoder *dec = NULL;
    cd_ae_encoder *enc = NULL;
    float *txt = NULL, *pooled = NULL, *noise = NULL, *want = NULL, *init = NULL, *got = NULL;
    if (cd_st_open(ctx, path, &f) != CD_OK) {
        test_fail(__FILE__, __LINE__, "%s: %s (%s)", path, cd_ctx_error(ctx), GEN_REGEN);
        goto done;
    }
    char mpath[256];
    snprintf(mpath, sizeof mpath, GEN_DIR "/tiny_%s.safetensors", cd_st_meta(f, "model"));
    if (cd_flux_load(ctx, mpath, NULL, &m) != CD_OK ||
        cd_ae_decoder_load(ctx, GEN_DIR "/tiny_ae.safetensors", AE_GROUPS, &dec) != CD_OK ||
        cd_ae_encoder_load(ctx, GEN_DIR "/tiny_ae.safetensors", AE_GROUPS, &enc) != CD_OK) {
        test_fail(__FILE__, __LINE__, "loading the tiny models: %s", cd_ctx_error(ctx));
        goto done;
    }
    uint64_t nt = 0, np = 0, nn = 0, ni = 0;
    txt = tensor_f32(ctx, f, "txt", &nt);
    pooled = tensor_f32(ctx, f, "pooled", &np);
    noise = tensor_f32(ctx, f, "noise", &nn);
    want = tensor_f32(ctx, f, "image", &ni);
    if (!txt || !pooled || !noise || !want) {
        test_fail(__FILE__, __LINE__, "%s: missing tensors (%s)", path, GEN_REGEN);
        goto done;
    }
    const cd_flux_config *c = cd_flux_model_config(m);
    const int W = (int)meta_num(f, "width"), H = (int)meta_num(f, "height");
    cd_generate_params p = {0};
    p.txt = txt;
    p.T = (int32_t)(nt / (uint64_t)c->context_dim);
    p.pooled = pooled;
    p.width = W;
    p.height = H;
    p.steps = (int32_t)meta_num(f, "steps");
    p.guidance = (float)meta_num(f, "guidance");
    p.shift = -1;
    p.time_shift = meta_num(f, "time_shift");
    p.rope_ntk = meta_num(f, "ntk");
    p.proportional = (int32_t)meta_num(f, "proportional") ^ (perturb != 0);
    p.noise = noise;
    got = malloc(ni * sizeof(float));
    const cd_st_tensor *iu = cd_st_find(f, "init_u8");
    if (iu) {
        const uint8_t *u8 = iu->dtype == CD_DTYPE_U8 ? iu->data : NULL;
        init = malloc((size_t)W * H * 3 * sizeof(float));
        if (!init || !u8 || cd_st_numel(iu) != (uint64_t)W * H * 3) {
            test_fail(__FILE__, __LINE__, "%s: bad init_u8", path);
            goto done;
        }
        cd_rgb8_to_image(u8, (uint32_t)W, (uint32_t)H, init);
        p.init = init;
        p.enc = enc;
        p.strength = meta_num(f, "strength");
    }
    p.image = got;
    if (!got || ni != (uint64_t)3 * W * H || cd_generate(ctx, m, dec, &p, NULL) != CD_OK) {
        test_fail(__FILE__, __LINE__, "%s: generate failed: %s", name, cd_ctx_error(ctx));
        goto done;
    }
    double dmax = 0, vmax = 0;
    for (uint64_t i = 0; i < ni; i++) {
        dmax = fmax(dmax, fabs((double)got[i] - want[i]));
        vmax = fmax(vmax, fabs((double)want[i]));
    }
    *err = dmax / vmax;
done:
    free(txt);
    free(pooled);
    free(noise);
    free(want);
    free(init);
    free(got);
    cd_ae_encoder_free(enc);
    cd_ae_decoder_free(dec);
    cd_flux_free(m);
    cd_st_close(f);
    cd_ctx_free(ctx);
}

/* f32 end to end vs a float64 oracle, through 2-3 Euler steps and the autoencoder: relative
 * errors measured 4e-7 .. 1.8e-6 (AVX-512); 1e-4 leaves room for other SIMD paths and summation orders while still
 * catching any semantic slip (a wrong timestep, sigma, scale or RoPE base moves it >= 1e-2). */
#define TOL 1e-4

TEST(generate_oracle_t2i_dev) {
    double e;
    run_case("t2i_dev", 0, &e);
    EXPECT(e < TOL, "txt2img (dev-like, shifted schedule) vs diffusers FluxPipeline: rel err %.2e", e);
}

TEST(generate_oracle_t2i_schnell) {
    double e;
    run_case("t2i_schnell", 0, &e);
    EXPECT(e < TOL, "txt2img (schnell-like, linear schedule) vs diffusers FluxPipeline: rel err %.2e", e);
}

TEST(generate_oracle_img2img) {
    double e;
    run_case("i2i_dev", 0, &e);
    EXPECT(e < TOL, "img2img (strength 0.6) vs diffusers FluxImg2ImgPipeline: rel err %.2e", e);
}

TEST(generate_oracle_highres) {
    double e, e_off;
    run_case("hires_dev", 0, &e);
    EXPECT(e < TOL, "high-res settings (static shift, NTK x10, proportional) vs diffusers: rel err %.2e", e);
    run_case("hires_dev", 1, &e_off);
    EXPECT(e_off > 100 * TOL, "without proportional attention the result should differ (rel %.2e)", e_off);
}
