/* test_ae.c — the FLUX autoencoder decoder and encoder (src/model/ae.c) against diffusers'
 * AutoencoderKL: tiny random autoencoders written by tests/oracle/ae_fixtures.py into
 * tests/fixtures/ae/ (see that script: weights drawn BFL-named, converted by diffusers'
 * convert_ldm_vae_checkpoint, decoded in float64 from z / 0.3611 + 0.1159, and x encoded in
 * float64 as (latent_dist.mode() - 0.1159) * 0.3611).
 *
 * Per case: the BFL file and the diffusers file are each loaded (config from cd_ckpt_inspect,
 * GroupNorm groups from the fixture's metadata), the latent decoded, and the image must match the
 * oracle with relative L2 error < 1e-5; both layouts must give bit-identical images.
 * The encoder likewise: x encoded by each layout must match the oracle's latent (relative L2
 * < 1e-5), bit-identical across layouts; an image whose sides are not multiples of the
 * downsampling factor is refused.
 * Also: a group count that does not divide the channels, and a non-AE checkpoint, are refused.
 * CD_AE_VERBOSE=1 prints the errors. Run from the repository root (make test does). */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/ae.h"

#define AE_DIR "tests/fixtures/ae"
#define AE_REGEN "run 'python3 tests/oracle/ae_fixtures.py' from the repository root"
#define AE_TOL 1e-5

static const char *const k_cases[] = {"ae2_g4_3x5", "ae3_g2_4x4"};

/* A tensor of an open file as a malloc'ed f32 array (NULL if absent). */
static float *load(cd_ctx *ctx, cd_st_file *f, const char *name, const cd_st_tensor **tt) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) return NULL;
    float *p = malloc((size_t)cd_st_numel(t) * sizeof(float));
    if (p && cd_st_to_f32(ctx, t, p) != CD_OK) {
        free(p);
        return NULL;
    }
    *tt = t;
    return p;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - b[i];
        e += d * d;
        r += (double)b[i] * b[i];
    }
    return sqrt(e / (r > 0 ? r : 1));
}

static void one_case(cd_ctx *ctx, const char *name) {
    char path[256];
    snprintf(path, sizeof path, AE_DIR "/%s_io.safetensors", name);
    cd_st_file *f = NULL;
    CHECK(cd_st_open(ctx, path, &f) == CD_OK, "%s: %s (%s)", path, cd_ctx_error(ctx), AE_REGEN);
    const cd_st_tensor *tz = NULL, *ti = NULL;
    float *z = load(ctx, f, "z", &tz), *img = load(ctx, f, "image", &ti);
    const char *g = cd_st_meta(f, "num_groups");
    const int groups = g ? atoi(g) : 0;
    float *outs[2] = {NULL, NULL};
    if (!z || !img || !g || tz->ndim != 3 || ti->ndim != 3) {
        test_fail(__FILE__, __LINE__, "%s: needs z [c,h,w], image [c,H,W] and num_groups", path);
        goto done;
    }
    const int h = (int)tz->shape[1], w = (int)tz->shape[2];
    const size_t nimg = (size_t)cd_st_numel(ti);
    static const char *const lay[2] = {"bfl", "diffusers"};
    for (int l = 0; l < 2; l++) {
        snprintf(path, sizeof path, AE_DIR "/%s_%s.safetensors", name, lay[l]);
        cd_ae_decoder *ae = NULL;
        if (cd_ae_decoder_load(ctx, path, groups, &ae) != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s: %s", path, cd_ctx_error(ctx));
            goto done;
        }
        const int up = cd_ae_upscale(ae);
        if (ae->cfg.z_channels != tz->shape[0] || ae->cfg.out_channels != ti->shape[0] ||
            (int64_t)h * up != ti->shape[1] || (int64_t)w * up != ti->shape[2]) {
            test_fail(__FILE__, __LINE__, "%s: config (z %d, out %d, x%d) does not fit the fixture",
                      path, ae->cfg.z_channels, ae->cfg.out_channels, up);
            cd_ae_decoder_free(ae);
            goto done;
        }
        outs[l] = malloc(nimg * sizeof(float));
        const cd_status s = cd_ae_decode(ctx, ae, z, h, w, outs[l]);
        cd_ae_decoder_free(ae);
        if (s != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s: decode: %s", path, cd_ctx_error(ctx));
            goto done;
        }
        const double e = rel_l2(outs[l], img, nimg);
        if (getenv("CD_AE_VERBOSE")) printf("  %s: rel L2 %.3g\n", path, e);
        EXPECT(e < AE_TOL, "%s: relative L2 error %.3g >= %g", path, e, AE_TOL);
    }
    EXPECT(!memcmp(outs[0], outs[1], nimg * sizeof(float)), "%s: BFL and diffusers images differ", name);
done:
    free(outs[0]);
    free(outs[1]);
    free(z);
    free(img);
    cd_st_close(f);
}

TEST(ae_decode_vs_diffusers) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) one_case(ctx, k_cases[i]);
    cd_ctx_free(ctx);
}

TEST(ae_decoder_refuses) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    cd_ae_decoder *ae = (cd_ae_decoder *)1;
    /* 32 groups (the default) do not divide the tiny decoder's 4 channels */
    EXPECT(cd_ae_decoder_load(ctx, AE_DIR "/ae2_g4_3x5_diffusers.safetensors", 0, &ae) ==
               CD_ERR_INVALID_ARG && !ae, "default 32 groups on 4 channels accepted");
    EXPECT(strstr(cd_ctx_error(ctx), "GroupNorm"), "message: %s", cd_ctx_error(ctx));
    ae = (cd_ae_decoder *)1;
    EXPECT(cd_ae_decoder_load(ctx, "tests/fixtures/layout/flux_bfl.safetensors", 4, &ae) != CD_OK && !ae,
           "a FLUX transformer bound as an autoencoder");
    cd_ctx_free(ctx);
}

static void one_encode(cd_ctx *ctx, const char *name) {
    char path[256];
    snprintf(path, sizeof path, AE_DIR "/%s_io.safetensors", name);
    cd_st_file *f = NULL;
    CHECK(cd_st_open(ctx, path, &f) == CD_OK, "%s: %s (%s)", path, cd_ctx_error(ctx), AE_REGEN);
    const cd_st_tensor *tx = NULL, *tl = NULL;
    float *x = load(ctx, f, "x", &tx), *lat = load(ctx, f, "latent", &tl);
    const char *g = cd_st_meta(f, "num_groups");
    const int groups = g ? atoi(g) : 0;
    float *outs[2] = {NULL, NULL};
    if (!x || !lat || !g || tx->ndim != 3 || tl->ndim != 3) {
        test_fail(__FILE__, __LINE__, "%s: needs x [c,H,W], latent [z,h,w] and num_groups (%s)", path,
                  AE_REGEN);
        goto done;
    }
    const int H = (int)tx->shape[1], W = (int)tx->shape[2];
    const size_t nlat = (size_t)cd_st_numel(tl);
    static const char *const lay[2] = {"bfl", "diffusers"};
    for (int l = 0; l < 2; l++) {
        snprintf(path, sizeof path, AE_DIR "/%s_%s.safetensors", name, lay[l]);
        cd_ae_encoder *ae = NULL;
        if (cd_ae_encoder_load(ctx, path, groups, &ae) != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s: %s", path, cd_ctx_error(ctx));
            goto done;
        }
        const int dn = cd_ae_downscale(ae);
        if (ae->cfg.z_channels != tl->shape[0] || ae->cfg.in_channels != tx->shape[0] ||
            (int64_t)H != tl->shape[1] * dn || (int64_t)W != tl->shape[2] * dn) {
            test_fail(__FILE__, __LINE__, "%s: config (z %d, in %d, /%d) does not fit the fixture",
                      path, ae->cfg.z_channels, ae->cfg.in_channels, dn);
            cd_ae_encoder_free(ae);
            goto done;
        }
        outs[l] = malloc(nlat * sizeof(float));
        cd_status s = cd_ae_encode(ctx, ae, x, H, W, outs[l]);
        if (s != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s: encode: %s", path, cd_ctx_error(ctx));
            cd_ae_encoder_free(ae);
            goto done;
        }
        const double e = rel_l2(outs[l], lat, nlat);
        if (getenv("CD_AE_VERBOSE")) printf("  %s: encode rel L2 %.3g\n", path, e);
        EXPECT(e < AE_TOL, "%s: encode relative L2 error %.3g >= %g", path, e, AE_TOL);
        /* sides that are not multiples of the downsampling factor, or not positive */
        const int bad[4][2] = {{H - 1, W}, {H, W + 1}, {0, W}, {H, -dn}};
        for (int i = 0; i < 4; i++) {
            s = cd_ae_encode(ctx, ae, x, bad[i][0], bad[i][1], outs[l]);
            EXPECT(s == CD_ERR_INVALID_ARG, "%s: %dx%d image accepted (%d)", path, bad[i][0], bad[i][1],
                   (int)s);
            EXPECT(strstr(cd_ctx_error(ctx), "multiples"), "message: %s", cd_ctx_error(ctx));
        }
        cd_ae_encoder_free(ae);
        /* outs[l] was not touched by the refused calls */
    }
    EXPECT(!memcmp(outs[0], outs[1], nlat * sizeof(float)), "%s: BFL and diffusers latents differ", name);
done:
    free(outs[0]);
    free(outs[1]);
    free(x);
    free(lat);
    cd_st_close(f);
}

TEST(ae_encode_vs_diffusers) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) one_encode(ctx, k_cases[i]);
    cd_ctx_free(ctx);
}

TEST(ae_encoder_refuses) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    cd_ae_encoder *ae = (cd_ae_encoder *)1;
    EXPECT(cd_ae_encoder_load(ctx, AE_DIR "/ae2_g4_3x5_bfl.safetensors", 0, &ae) == CD_ERR_INVALID_ARG &&
               !ae, "default 32 groups on 4 channels accepted");
    EXPECT(strstr(cd_ctx_error(ctx), "GroupNorm"), "message: %s", cd_ctx_error(ctx));
    ae = (cd_ae_encoder *)1;
    EXPECT(cd_ae_encoder_load(ctx, "tests/fixtures/layout/flux_bfl.safetensors", 4, &ae) != CD_OK && !ae,
           "a FLUX transformer bound as an autoencoder encoder");
    cd_ctx_free(ctx);
}
