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
 *
 * Tiled (cd_ae_decode_tiled / cd_ae_encode_tiled, src/model/ae_tile.c) against diffusers'
 * tiled_decode / _tiled_encode (NAME_tiled.safetensors: factors 2, 4 and 8, tiles of 8 and 32 px,
 * overlaps 0.25 and 0.5, several tiles with smaller last ones; ae2 tiles along the width only):
 * relative L2 < 1e-5 as untiled (the blend is a convex combination, so the f32 error stays that
 * of one tile), with guard floats after the output untouched, and 1 and 2 threads bit-identical.
 * A tile covering the input (and tile 0, and no tiling struct) gives cd_ae_decode / cd_ae_encode's
 * result bit for bit; a tile that is negative or not a multiple of the factor, an overlap outside
 * (0, 1), or a (tile, overlap) pair whose stride is not its crop is CD_ERR_INVALID_ARG.
 * The decoder on other ops tables (it is written once against the table): a tiny random decoder on
 * the reference table against the fast CPU table (relative L2 < 1e-4: double against f32 sums
 * through a few dozen layers), and on the CUDA table against the fast CPU one, untiled and tiled
 * (2e-2: the mid attention rounds q, k, v and P to bf16 on the GPU, 2^-9 each; without a GPU the
 * test checks that the device refuses with a reason). The ops themselves, on every table against
 * the reference: the op harness (tests/test_ops_harness.c).
 * CD_AE_VERBOSE=1 prints the errors. Run from the repository root (make test does). */
#include "test.h"
#include "../src/backend/cuda/cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/ae.h"

#define AE_DIR "tests/fixtures/ae"
#define AE_REGEN "run 'python3 tests/oracle/ae_fixtures.py' from the repository root"
#define AE_TOL 1e-5

static const char *const k_cases[] = {"ae2_g4_3x5", "ae3_g2_4x4", "ae4_g2_2x3"};

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
            test_fail(__FILE__, __LINE__, "%s: config (z %d, out %d, x%d) does not fit the fixture", path,
                      ae->cfg.z_channels, ae->cfg.out_channels, up);
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
        const double e = test_rel_l2(outs[l], img, nimg);
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
    EXPECT(cd_ae_decoder_load(ctx, AE_DIR "/ae2_g4_3x5_diffusers.safetensors", 0, &ae) == CD_ERR_INVALID_ARG && !ae,
           "default 32 groups on 4 channels accepted");
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
        test_fail(__FILE__, __LINE__, "%s: needs x [c,H,W], latent [z,h,w] and num_groups (%s)", path, AE_REGEN);
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
            test_fail(__FILE__, __LINE__, "%s: config (z %d, in %d, /%d) does not fit the fixture", path,
                      ae->cfg.z_channels, ae->cfg.in_channels, dn);
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
        const double e = test_rel_l2(outs[l], lat, nlat);
        if (getenv("CD_AE_VERBOSE")) printf("  %s: encode rel L2 %.3g\n", path, e);
        EXPECT(e < AE_TOL, "%s: encode relative L2 error %.3g >= %g", path, e, AE_TOL);
        /* sides that are not multiples of the downsampling factor, or not positive */
        const int bad[4][2] = {{H - 1, W}, {H, W + 1}, {0, W}, {H, -dn}};
        for (int i = 0; i < 4; i++) {
            s = cd_ae_encode(ctx, ae, x, bad[i][0], bad[i][1], outs[l]);
            EXPECT(s == CD_ERR_INVALID_ARG, "%s: %dx%d image accepted (%d)", path, bad[i][0], bad[i][1], (int)s);
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
    EXPECT(cd_ae_encoder_load(ctx, AE_DIR "/ae2_g4_3x5_bfl.safetensors", 0, &ae) == CD_ERR_INVALID_ARG && !ae,
           "default 32 groups on 4 channels accepted");
    EXPECT(strstr(cd_ctx_error(ctx), "GroupNorm"), "message: %s", cd_ctx_error(ctx));
    ae = (cd_ae_encoder *)1;
    EXPECT(cd_ae_encoder_load(ctx, "tests/fixtures/layout/flux_bfl.safetensors", 4, &ae) != CD_OK && !ae,
           "a FLUX transformer bound as an autoencoder encoder");
    cd_ctx_free(ctx);
}

/* ---- tiled ---------------------------------------------------------------------------------- */

#define GUARD 64 /* floats after every tiled output that must stay untouched */
#define GUARD_VAL 12345.0f

static int guard_ok(const float *p) {
    for (int i = 0; i < GUARD; i++)
        if (p[i] != GUARD_VAL) return 0;
    return 1;
}

static float *alloc_guarded(size_t n) {
    float *p = malloc((n + GUARD) * sizeof(float));
    if (p)
        for (int i = 0; i < GUARD; i++) p[n + i] = GUARD_VAL;
    return p;
}

/* out [n + GUARD] (status s, 2 threads) vs the oracle ref [n]; out1 (status s1, 1 thread) equal. */
static void verdict(cd_ctx *ctx, const char *name, const char *what, const cd_ae_tiling *t, cd_status s, cd_status s1,
                    const float *out, const float *out1, const float *ref, size_t n) {
    EXPECT(s == CD_OK && s1 == CD_OK, "%s: tiled %s: %s", name, what, cd_ctx_error(ctx));
    if (s || s1) return;
    const double e = test_rel_l2(out, ref, n);
    if (getenv("CD_AE_VERBOSE"))
        printf("  %s tile %d overlap %g: %s rel L2 %.3g\n", name, t->tile, t->overlap, what, e);
    EXPECT(e < AE_TOL, "%s tile %d overlap %g: %s relative L2 %.3g >= %g", name, t->tile, t->overlap, what, e, AE_TOL);
    EXPECT(guard_ok(out + n) && guard_ok(out1 + n), "%s: tiled %s wrote past its output", name, what);
    EXPECT(!memcmp(out, out1, n * sizeof(float)), "%s: 1 and 2 threads %s differently", name, what);
}

/* One NAME_tiled.safetensors: every overlap, decode and encode, vs the oracle; with ctx1 (one
 * thread) too, bit-identical. */
static void one_tiled(cd_ctx *ctx, cd_ctx *ctx1, const char *name) {
    char path[256];
    snprintf(path, sizeof path, AE_DIR "/%s_tiled.safetensors", name);
    cd_st_file *f = NULL;
    CHECK(cd_st_open(ctx, path, &f) == CD_OK, "%s: %s (%s)", path, cd_ctx_error(ctx), AE_REGEN);
    const cd_st_tensor *tz = NULL, *tx = NULL;
    float *z = load(ctx, f, "z", &tz), *x = load(ctx, f, "x", &tx), *ref = NULL;
    const char *g = cd_st_meta(f, "num_groups"), *tile = cd_st_meta(f, "tile"), *ovs = cd_st_meta(f, "overlaps");
    cd_ae_decoder *dec = NULL;
    cd_ae_encoder *enc = NULL;
    float *img = NULL, *img1 = NULL, *lat = NULL, *lat1 = NULL;
    if (!z || !x || !g || !tile || !ovs || tz->ndim != 3 || tx->ndim != 3) {
        test_fail(__FILE__, __LINE__, "%s: needs z, x, num_groups, tile, overlaps (%s)", path, AE_REGEN);
        goto done;
    }
    snprintf(path, sizeof path, AE_DIR "/%s_bfl.safetensors", name);
    if (cd_ae_decoder_load(ctx, path, atoi(g), &dec) || cd_ae_encoder_load(ctx, path, atoi(g), &enc)) {
        test_fail(__FILE__, __LINE__, "%s: %s", path, cd_ctx_error(ctx));
        goto done;
    }
    const int h = (int)tz->shape[1], w = (int)tz->shape[2], H = (int)tx->shape[1], W = (int)tx->shape[2];
    const int up = cd_ae_upscale(dec);
    const size_t nimg = (size_t)dec->cfg.out_channels * h * up * w * up, nlat = (size_t)cd_st_numel(tz);
    if ((int64_t)H != (int64_t)h * up || (int64_t)W != (int64_t)w * up) {
        test_fail(__FILE__, __LINE__, "%s: x is not the image size of z", name);
        goto done;
    }
    img = alloc_guarded(nimg);
    img1 = alloc_guarded(nimg);
    lat = alloc_guarded(nlat);
    lat1 = alloc_guarded(nlat);
    CHECK(img && img1 && lat && lat1, "alloc");
    for (const char *o = ovs; *o; o = strchr(o, ',') ? strchr(o, ',') + 1 : o + strlen(o)) {
        const cd_ae_tiling t = {atoi(tile), strtof(o, NULL)};
        char key[32];
        const cd_st_tensor *tr = NULL;
        snprintf(key, sizeof key, "image_o%d", (int)lrintf(t.overlap * 100));
        ref = load(ctx, f, key, &tr);
        CHECK(ref && (size_t)cd_st_numel(tr) == nimg, "%s: %s missing or wrong size", name, key);
        verdict(ctx, name, "decode", &t, cd_ae_decode_tiled(ctx, dec, z, h, w, &t, img),
                cd_ae_decode_tiled(ctx1, dec, z, h, w, &t, img1), img, img1, ref, nimg);
        free(ref);
        snprintf(key, sizeof key, "latent_o%d", (int)lrintf(t.overlap * 100));
        ref = load(ctx, f, key, &tr);
        CHECK(ref && (size_t)cd_st_numel(tr) == nlat, "%s: %s missing or wrong size", name, key);
        verdict(ctx, name, "encode", &t, cd_ae_encode_tiled(ctx, enc, x, H, W, &t, lat),
                cd_ae_encode_tiled(ctx1, enc, x, H, W, &t, lat1), lat, lat1, ref, nlat);
        free(ref);
        ref = NULL;
    }
done:
    free(ref);
    free(img);
    free(img1);
    free(lat);
    free(lat1);
    free(z);
    free(x);
    cd_ae_decoder_free(dec);
    cd_ae_encoder_free(enc);
    cd_st_close(f);
}

TEST(ae_tiled_vs_diffusers) {
    cd_ctx *ctx = NULL, *ctx1 = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = 2;
    CHECK(cd_ctx_create(&p, &ctx) == CD_OK, "context");
    p.threads = 1;
    CHECK(cd_ctx_create(&p, &ctx1) == CD_OK, "context");
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) one_tiled(ctx, ctx1, k_cases[i]);
    cd_ctx_free(ctx);
    cd_ctx_free(ctx1);
}

/* Tiles that cover the input, no tiling: cd_ae_decode / cd_ae_encode bit for bit. Bad tilings:
 * refused, the output untouched. On ae3 (factor 4), z 4x4 / x 16x16 of its io fixture. */
TEST(ae_tiled_untiled_and_refusals) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "context");
    cd_st_file *f = NULL;
    CHECK(cd_st_open(ctx, AE_DIR "/ae3_g2_4x4_io.safetensors", &f) == CD_OK, "%s (%s)", cd_ctx_error(ctx), AE_REGEN);
    const cd_st_tensor *tz = NULL, *tx = NULL;
    float *z = load(ctx, f, "z", &tz), *x = load(ctx, f, "x", &tx);
    cd_ae_decoder *dec = NULL;
    cd_ae_encoder *enc = NULL;
    const char *path = AE_DIR "/ae3_g2_4x4_diffusers.safetensors";
    EXPECT(z && x && !cd_ae_decoder_load(ctx, path, 2, &dec) && !cd_ae_encoder_load(ctx, path, 2, &enc), "%s: %s", path,
           cd_ctx_error(ctx));
    if (!dec || !enc || !z || !x) goto done;
    const int h = (int)tz->shape[1], w = (int)tz->shape[2], H = (int)tx->shape[1], W = (int)tx->shape[2];
    const size_t nimg = (size_t)3 * H * W, nlat = (size_t)cd_st_numel(tz);
    float *a = malloc(nimg * sizeof(float)), *b = malloc(nimg * sizeof(float));
    CHECK(a && b, "alloc");
    EXPECT(cd_ae_decode(ctx, dec, z, h, w, a) == CD_OK, "decode: %s", cd_ctx_error(ctx));
    /* 16 px = the image: not tiled (diffusers tiles only a larger input); 64 px; 0; NULL */
    const cd_ae_tiling cover[3] = {{16, 0.25f}, {64, 0.5f}, {0, 0.0f}};
    for (int i = 0; i < 4; i++) {
        memset(b, 0, nimg * sizeof(float));
        EXPECT(cd_ae_decode_tiled(ctx, dec, z, h, w, i < 3 ? &cover[i] : NULL, b) == CD_OK &&
                   !memcmp(a, b, nimg * sizeof(float)),
               "covering tiling %d: decode differs from untiled", i);
    }
    EXPECT(cd_ae_encode(ctx, enc, x, H, W, a) == CD_OK, "encode: %s", cd_ctx_error(ctx));
    for (int i = 0; i < 4; i++) {
        memset(b, 0, nlat * sizeof(float));
        EXPECT(cd_ae_encode_tiled(ctx, enc, x, H, W, i < 3 ? &cover[i] : NULL, b) == CD_OK &&
                   !memcmp(a, b, nlat * sizeof(float)),
               "covering tiling %d: encode differs from untiled", i);
    }
    /* refused, even where the input would not be tiled: not a multiple of 4, negative, overlap
     * out of (0, 1), and tile 24 = 6 latent cells at 0.25 (stride int(4.5) = 4 cells = 16 px,
     * crop 24 - 6 = 18 px; encoding: stride 18 px is no multiple of 4) */
    const struct {
        cd_ae_tiling t;
        const char *msg;
    } bad[] = {{{6, 0.25f}, "multiple"}, {{-8, 0.25f}, "multiple"}, {{8, 1.0f}, "overlap"},
               {{8, -0.25f}, "overlap"}, {{24, 0.0f}, "crop"},      {{8, NAN}, "overlap"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t k = 0; k < nimg; k++) b[k] = GUARD_VAL;
        cd_status s = cd_ae_decode_tiled(ctx, dec, z, h, w, &bad[i].t, b);
        EXPECT(s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), bad[i].msg), "decode tile %d overlap %g: %d (%s)",
               bad[i].t.tile, bad[i].t.overlap, (int)s, cd_ctx_error(ctx));
        s = cd_ae_encode_tiled(ctx, enc, x, H, W, &bad[i].t, b);
        EXPECT(s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), bad[i].msg), "encode tile %d overlap %g: %d (%s)",
               bad[i].t.tile, bad[i].t.overlap, (int)s, cd_ctx_error(ctx));
        EXPECT(guard_ok(b) && b[nimg - 1] == GUARD_VAL, "a refused tiling wrote the output");
        if (getenv("CD_AE_VERBOSE")) printf("  refused: %s\n", cd_ctx_error(ctx));
    }
    /* a tiled encode still requires sides that are multiples of 4 */
    const cd_ae_tiling t8 = {8, 0.25f};
    EXPECT(cd_ae_encode_tiled(ctx, enc, x, H - 2, W, &t8, b) == CD_ERR_INVALID_ARG, "%dx%d accepted", H - 2, W);
    free(a);
    free(b);
done:
    free(z);
    free(x);
    cd_ae_decoder_free(dec);
    cd_ae_encoder_free(enc);
    cd_st_close(f);
    cd_ctx_free(ctx);
}

/* ---- the decoder on other ops tables ------------------------------------------------------- */
TEST(ae_decoder_reference_vs_fast_table) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = 2;
    CHECK(cd_ctx_create(&p, &ctx) == CD_OK, "context");
    const cd_ae_config cfg = {3, 3, 8, {1, 2}, 2, 1, 4, 0, 1};
    cd_ae_decoder *ae = NULL;
    CHECK(cd_ae_decoder_random(ctx, &cfg, 4, 9, &ae) == CD_OK, "%s", cd_ctx_error(ctx));
    const int h = 3, w = 5, n = 3 * h * 2 * w * 2;
    float *z = test_rand_floats((size_t)4 * h * w, 1.0f, 3), *a = malloc(n * sizeof(float)),
          *b = malloc(n * sizeof(float));
    CHECK(z && a && b, "alloc");
    EXPECT(cd_ae_decode(ctx, ae, z, h, w, a) == CD_OK, "fast: %s", cd_ctx_error(ctx));
    EXPECT(cd_ae_decoder_set_ops(ctx, ae, cd_ops_cpu_ref()) == CD_OK && ae->ops == cd_ops_cpu_ref(), "set_ops: %s",
           cd_ctx_error(ctx));
    EXPECT(cd_ae_decode(ctx, ae, z, h, w, b) == CD_OK, "reference: %s", cd_ctx_error(ctx));
    const double e = test_rel_l2(a, b, (size_t)n);
    EXPECT(e < 1e-4, "decoder on the reference table: relative L2 %.3g", e);
    free(z);
    free(a);
    free(b);
    cd_ae_decoder_free(ae);
    cd_ctx_free(ctx);
}

/* Mid attention head_dim 16 x 2 = 32, which the CUDA attention supports. */
TEST(cuda_ae_decoder_vs_cpu) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    CHECK(cd_ctx_create(&p, &ctx) == CD_OK, "context");
    const cd_ops *cuda = NULL;
    const cd_status s = cd_backend_ops(ctx, CD_DEVICE_CUDA, &cuda);
    if (s != CD_OK) { /* no GPU: the refusal must explain itself */
        const char *e = cd_ctx_error(ctx);
        EXPECT(s == CD_ERR_UNSUPPORTED, "cuda open: status %d (%s)", (int)s, e);
        EXPECT(cd_cuda_built() ? strstr(e, "CUDA") != NULL : strstr(e, "no CUDA support") != NULL,
               "unhelpful message: '%s'", e);
        cd_ctx_free(ctx);
        return;
    }
    const cd_ae_config cfg = {3, 3, 16, {1, 2}, 2, 1, 4, 0, 1};
    cd_ae_decoder *ae = NULL;
    CHECK(cd_ae_decoder_random(ctx, &cfg, 4, 9, &ae) == CD_OK, "%s", cd_ctx_error(ctx));
    const int h = 9, w = 7, n = 3 * h * 2 * w * 2;
    float *z = test_rand_floats((size_t)4 * h * w, 1.0f, 3), *a = malloc(n * sizeof(float)),
          *b = malloc(n * sizeof(float));
    CHECK(z && a && b, "alloc");
    const cd_ae_tiling t = {8, 0.5f};
    for (int tiled = 0; tiled < 2; tiled++) {
        EXPECT(cd_ae_decoder_set_ops(ctx, ae, cd_ops_cpu()) == CD_OK, "%s", cd_ctx_error(ctx));
        EXPECT(cd_ae_decode_tiled(ctx, ae, z, h, w, tiled ? &t : NULL, a) == CD_OK, "cpu: %s", cd_ctx_error(ctx));
        EXPECT(cd_ae_decoder_set_ops(ctx, ae, cuda) == CD_OK && ae->dev, "set_ops: %s", cd_ctx_error(ctx));
        EXPECT(cd_ae_decode_tiled(ctx, ae, z, h, w, tiled ? &t : NULL, b) == CD_OK, "cuda: %s", cd_ctx_error(ctx));
        const double e = test_rel_l2(b, a, (size_t)n);
        EXPECT(e < 2e-2, "decoder on CUDA (tiled %d): relative L2 %.3g", tiled, e);
    }
    free(z);
    free(a);
    free(b);
    cd_ae_decoder_free(ae);
    cd_ctx_free(ctx);
}
