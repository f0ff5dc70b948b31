/* test_sampler.c — src/pipeline/sampler.c: the FLUX schedule against BFL's get_schedule and
 * diffusers' FlowMatchEulerDiscreteScheduler, latent packing and img_ids against diffusers'
 * FluxPipeline static methods, and the Euler step against the scheduler's step (fixtures written
 * by tests/oracle/sampler_fixtures.py under tests/fixtures/sampler/); the Philox4x32-10 noise
 * against Random123's known answers, its thread/split invariance, and its moments.
 *
 * Schedule tolerances (u = 2^-24). Against the float64 reference: our value is the double result
 * rounded once to f32, so |c - ref| <= u |ref| (half an ulp) up to a negligible double error.
 * Against the f32 oracles: each of their ~6 f32 operations (linspace, 1/t, -1, e^mu, +, /) rounds
 * with relative error u, and the shift map s(t) = e/(e + 1/t - 1) has relative condition
 * |t s'(t)/s| = (1 - t)/(e t + 1 - t) <= 1, so the oracle is within ~6u |ref| of ref, except where
 * 1/t - 1 cancels (t near 1, s near 1), where the absolute error is <= ~u; the generator asserts
 * 8u max(|ref|, 2^-10) and we allow that plus our own u |ref|. Endpoints must be exactly 1 and 0.
 *
 * Noise moment bounds on N = 2^20 samples, each 6 standard errors of the estimator:
 * mean: 6/sqrt(N); variance: 6 sqrt(2/N); E z^4 = 3: 6 sqrt(96/N); lag-1 product: 6/sqrt(N);
 * P(|z| > 1.959964) = 0.05: 6 sqrt(0.0475/N). */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pipeline/sampler.h"
#include "cleardit.h"

#define FIX_DIR "tests/fixtures/sampler"
#define REGEN "run 'python3 tests/oracle/sampler_fixtures.py' from the repository root"
#define U24 (1.0 / 16777216.0)

/* F32 tensor `name` of f converted to a fresh array of exactly `numel` floats (NULL if absent or
 * of another size). */
static float *fix_f32(cd_st_file *f, const char *name, uint64_t numel) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t || cd_st_numel(t) != numel || t->dtype != CD_DTYPE_F32) return NULL;
    float *p = malloc(numel * sizeof(float) + 1);
    if (p && cd_st_to_f32(NULL, t, p) != CD_OK) {
        free(p);
        p = NULL;
    }
    return p;
}

static double *fix_f64(cd_st_file *f, const char *name, uint64_t numel) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t || cd_st_numel(t) != numel || t->dtype != CD_DTYPE_F64) return NULL;
    double *p = malloc(numel * sizeof(double) + 1);
    if (p) memcpy(p, t->data, numel * sizeof(double));
    return p;
}

/* ---- schedule ------------------------------------------------------------------------------ */
TEST(sampler_schedule_oracle) {
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, FIX_DIR "/schedules.safetensors", &f) == CD_OK, "no fixture: %s", REGEN);
    const char *cases = cd_st_meta(f, "cases");
    CHECK(cases && *cases, "fixture lacks 'cases' metadata");
    char *list = strdup(cases);
    int n_cases = 0;
    double worst = 0; /* largest error / tolerance seen against the f32 oracles */
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && !test_failed();
         tok = strtok_r(NULL, ",", &save)) {
        char name[64];
        int steps, shift;
        unsigned long L;
        if (sscanf(tok, "%63[^:]:%d:%lu:%d", name, &steps, &L, &shift) != 4) {
            test_fail(__FILE__, __LINE__, "bad case '%s'", tok);
            break;
        }
        char nb[96], nd[96], nr[96];
        snprintf(nb, sizeof nb, "bfl_%s", name);
        snprintf(nd, sizeof nd, "diff_%s", name);
        snprintf(nr, sizeof nr, "ref_%s", name);
        float *bfl = fix_f32(f, nb, (uint64_t)steps + 1), *dif = fix_f32(f, nd, (uint64_t)steps + 1);
        double *ref = fix_f64(f, nr, (uint64_t)steps + 1);
        float *t = malloc(((size_t)steps + 1) * sizeof(float));
        if (!bfl || !dif || !ref || !t) {
            test_fail(__FILE__, __LINE__, "case %s: tensors missing or wrong size", name);
        } else if (cd_flux_schedule(NULL, steps, L, shift, CD_FLUX_BASE_SHIFT, CD_FLUX_MAX_SHIFT, t) != CD_OK) {
            test_fail(__FILE__, __LINE__, "case %s: cd_flux_schedule failed", name);
        } else {
            EXPECT(t[0] == 1.0f && t[steps] == 0.0f, "case %s: endpoints %g %g", name, t[0], t[steps]);
            for (int i = 0; i <= steps; i++) {
                const double r = ref[i];
                EXPECT(fabs(t[i] - r) <= U24 * fabs(r) * 1.0001, "case %s i=%d: %.9g vs ref %.17g", name, i, t[i], r);
                const double tol = 8 * U24 * fmax(fabs(r), 0x1p-10) + U24 * fabs(r);
                const double eb = fabs((double)t[i] - bfl[i]), ed = fabs((double)t[i] - dif[i]);
                EXPECT(eb <= tol, "case %s i=%d: %.9g vs BFL %.9g", name, i, t[i], bfl[i]);
                EXPECT(ed <= tol, "case %s i=%d: %.9g vs diffusers %.9g", name, i, t[i], dif[i]);
                if (fmax(eb, ed) / tol > worst) worst = fmax(eb, ed) / tol;
                if (i > 0) EXPECT(t[i] < t[i - 1], "case %s: not decreasing at %d", name, i);
            }
        }
        free(bfl);
        free(dif);
        free(ref);
        free(t);
        n_cases++;
    }
    free(list);
    cd_st_close(f);
    EXPECT(n_cases >= 40, "only %d schedule cases (%s)", n_cases, REGEN);
    EXPECT(worst <= 1.0, "worst error/tolerance %g", worst);
}

TEST(sampler_schedule_values_and_errors) {
    float t[5];
    /* mu: 256 tokens -> 0.5, 4096 -> 1.15 (docs/flux.md section 5) */
    EXPECT(fabs(cd_flux_schedule_mu(256, 0.5, 1.15) - 0.5) < 1e-15, "mu(256)");
    EXPECT(fabs(cd_flux_schedule_mu(4096, 0.5, 1.15) - 1.15) < 1e-15, "mu(4096)");
    CHECK(cd_flux_schedule(NULL, 4, 1, 0, 0.5, 1.15, t) == CD_OK, "linear schedule");
    for (int i = 0; i <= 4; i++) EXPECT(t[i] == 1.0f - 0.25f * (float)i, "linear t[%d] = %g", i, t[i]);
    CHECK(cd_flux_schedule(NULL, 1, 4096, 1, 0.5, 1.15, t) == CD_OK, "one step");
    EXPECT(t[0] == 1.0f && t[1] == 0.0f, "one step endpoints");
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    EXPECT(cd_flux_schedule(ctx, 0, 4096, 1, 0.5, 1.15, t) == CD_ERR_INVALID_ARG, "steps 0");
    EXPECT(strstr(cd_ctx_error(ctx), "steps") != NULL, "message: %s", cd_ctx_error(ctx));
    EXPECT(cd_flux_schedule(ctx, -3, 4096, 1, 0.5, 1.15, t) == CD_ERR_INVALID_ARG, "steps < 0");
    EXPECT(cd_flux_schedule(ctx, 4, 0, 1, 0.5, 1.15, t) == CD_ERR_INVALID_ARG, "seq_len 0");
    EXPECT(cd_flux_schedule(ctx, 4, 16, 1, NAN, 1.15, t) == CD_ERR_INVALID_ARG, "NaN shift");
    EXPECT(cd_flux_schedule(ctx, 4, 16, 1, 0.5, 1.15, NULL) == CD_ERR_INVALID_ARG, "NULL out");
    EXPECT(cd_flux_schedule(ctx, 4, (size_t)1 << 40, 1, 0.5, 1.15, t) == CD_ERR_INVALID_ARG, "huge mu");
    cd_ctx_free(ctx);
}

/* ---- noise --------------------------------------------------------------------------------- */
TEST(sampler_philox_known_answers) {
    /* Random123 kat_vectors, philox4x32 10 rounds */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
        {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu,
         0xa20bc7c6u, 0x6d5451fdu},
        {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu,
         0x5001e420u, 0x24126ea1u},
    };
    for (int k = 0; k < 3; k++) {
        uint32_t out[4];
        cd_philox4x32_10(kat[k], kat[k] + 4, out);
        for (int j = 0; j < 4; j++)
            EXPECT(out[j] == kat[k][6 + j], "vector %d word %d: %08x want %08x", k, j, out[j], kat[k][6 + j]);
    }
}

/* Golden values of the documented algorithm (sampler.h), from an independent Python transcription
 * of it (integer Philox, math.log/cos/sin in double, rounded to f32): pins the stream, since a
 * changed algorithm would change every image made from a seed. Allowed: 1 f32 ulp (libm). */
TEST(sampler_noise_golden) {
    static const struct {
        uint64_t seed, index;
        float z;
    } g[] = {
        {0ull, 0ull, -0x1.f1bcd6p-4f},
        {0ull, 1ull, -0x1.599bbep+0f},
        {42ull, 0ull, 0x1.c5e3p-1f},
        {42ull, 1ull, 0x1.c1e68ep-2f},
        {42ull, 2ull, -0x1.40bc8cp-3f},
        {42ull, 99999ull, 0x1.aa776ep-3f},
        {9223372036854775813ull, 1099511627777ull, -0x1.9c70a8p-3f},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        float z = 0;
        CHECK(cd_noise_normal(NULL, g[i].seed, g[i].index, 1, &z, 1) == CD_OK, "noise");
        EXPECT(fabsf(z - g[i].z) <= nextafterf(fabsf(g[i].z), INFINITY) - fabsf(g[i].z),
               "seed %llu index %llu: %a want %a", (unsigned long long)g[i].seed, (unsigned long long)g[i].index, z,
               g[i].z);
    }
}

TEST(sampler_noise_deterministic_splits) {
    const size_t n = 100003;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    CHECK(a && b, "oom");
    CHECK(cd_noise_normal(NULL, 42, 0, n, a, 1) == CD_OK, "serial");
    for (int th = 2; th <= 4 && !test_failed(); th++) {
        memset(b, 0, n * sizeof(float));
        CHECK(cd_noise_normal(NULL, 42, 0, n, b, th) == CD_OK, "threads %d", th);
        EXPECT(!memcmp(a, b, n * sizeof(float)), "threads %d differ from serial", th);
    }
    /* uneven pieces, odd starts, one element at a time at the ends */
    const size_t cuts[] = {0, 1, 2, 7, 4096, 4097, 9000, 50001, n - 1, n};
    memset(b, 0, n * sizeof(float));
    for (size_t i = 0; i + 1 < sizeof cuts / sizeof cuts[0]; i++)
        CHECK(cd_noise_normal(NULL, 42, cuts[i], cuts[i + 1] - cuts[i], b + cuts[i], 3) == CD_OK, "piece %zu", i);
    EXPECT(!memcmp(a, b, n * sizeof(float)), "piecewise differs from serial");
    /* other seeds differ almost everywhere (two f32 normals collide with tiny probability) */
    const uint64_t seeds[] = {43, 42ull | (1ull << 32), 0};
    for (int s = 0; s < 3; s++) {
        CHECK(cd_noise_normal(NULL, seeds[s], 0, n, b, 2) == CD_OK, "seed");
        size_t same = 0;
        for (size_t i = 0; i < n; i++) same += a[i] == b[i];
        EXPECT(same < 10, "seed %llu: %zu equal values", (unsigned long long)seeds[s], same);
    }
    /* near the top of the index space */
    float z[3];
    CHECK(cd_noise_normal(NULL, 7, UINT64_MAX - 3, 3, z, 1) == CD_OK, "high indices");
    EXPECT(isfinite(z[0]) && isfinite(z[1]) && isfinite(z[2]), "high indices finite");
    EXPECT(cd_noise_normal(NULL, 7, UINT64_MAX - 1, 3, z, 1) == CD_ERR_INVALID_ARG, "overflow");
    EXPECT(cd_noise_normal(NULL, 7, 0, 3, NULL, 1) == CD_ERR_INVALID_ARG, "NULL out");
    EXPECT(cd_noise_normal(NULL, 7, 0, 0, NULL, 1) == CD_OK, "empty");
    free(a);
    free(b);
}

TEST(sampler_noise_moments) {
    const size_t n = (size_t)1 << 20;
    float *z = malloc(n * sizeof(float));
    CHECK(z, "oom");
    CHECK(cd_noise_normal(NULL, 2024, 0, n, z, 0) == CD_OK, "noise");
    double s1 = 0, s2 = 0, s4 = 0, lag = 0, mx = 0;
    size_t tail = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double x = z[i];
        if (!isfinite(x)) {
            bad++;
            continue;
        }
        s1 += x;
        s2 += x * x;
        s4 += x * x * x * x;
        if (i + 1 < n) lag += x * (double)z[i + 1];
        if (fabs(x) > mx) mx = fabs(x);
        tail += fabs(x) > 1.959963984540054;
    }
    const double N = (double)n, mean = s1 / N, var = s2 / N - mean * mean;
    CHECK(bad == 0, "%zu non-finite values", bad);
    EXPECT(fabs(mean) <= 6 / sqrt(N), "mean %g", mean);
    EXPECT(fabs(var - 1) <= 6 * sqrt(2 / N), "variance %g", var);
    EXPECT(fabs(s4 / N - 3) <= 6 * sqrt(96 / N), "E z^4 %g", s4 / N);
    EXPECT(fabs(lag / (N - 1)) <= 6 / sqrt(N), "lag-1 correlation %g", lag / (N - 1));
    EXPECT(fabs(tail / N - 0.05) <= 6 * sqrt(0.0475 / N), "P(|z|>1.96) %g", tail / N);
    EXPECT(mx <= 8.58, "max |z| %g", mx);
    free(z);
}

/* ---- packing ------------------------------------------------------------------------------- */
TEST(sampler_pack_oracle) {
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, FIX_DIR "/pack.safetensors", &f) == CD_OK, "no fixture: %s", REGEN);
    const size_t C = 16, h = 3, w = 5, n = C * 4 * h * w;
    float *lat = fix_f32(f, "latents", n), *packed = fix_f32(f, "packed", n);
    float *ids = fix_f32(f, "img_ids", h * w * 3);
    float *tok = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
    float *myids = malloc(h * w * 3 * sizeof(float));
    if (!lat || !packed || !ids || !tok || !back || !myids) {
        test_fail(__FILE__, __LINE__, "fixture tensors missing (%s)", REGEN);
    } else {
        EXPECT(cd_latent_pack(NULL, lat, C, 2 * h, 2 * w, tok) == CD_OK, "pack");
        EXPECT(!memcmp(tok, packed, n * sizeof(float)), "pack differs from diffusers");
        EXPECT(cd_latent_unpack(NULL, packed, C, 2 * h, 2 * w, back) == CD_OK, "unpack");
        EXPECT(!memcmp(back, lat, n * sizeof(float)), "unpack differs from diffusers");
        EXPECT(cd_flux_img_ids(NULL, h, w, myids) == CD_OK, "img_ids");
        EXPECT(!memcmp(myids, ids, h * w * 3 * sizeof(float)), "img_ids differ from diffusers");
    }
    free(lat);
    free(packed);
    free(ids);
    free(tok);
    free(back);
    free(myids);
    cd_st_close(f);
}

TEST(sampler_pack_roundtrip_and_errors) {
    const size_t C = 3, lh = 4, lw = 6, n = C * lh * lw;
    float lat[72], tok[72], back[72];
    for (size_t i = 0; i < n; i++) lat[i] = (float)i;
    CHECK(cd_latent_pack(NULL, lat, C, lh, lw, tok) == CD_OK, "pack");
    /* token (y=1, x=2), feature c=2, ph=1, pw=0 -> lat[2][3][4] */
    EXPECT(tok[(1 * 3 + 2) * 12 + 2 * 4 + 1 * 2 + 0] == lat[(2 * lh + 3) * lw + 4], "index map");
    CHECK(cd_latent_unpack(NULL, tok, C, lh, lw, back) == CD_OK, "unpack");
    EXPECT(!memcmp(lat, back, sizeof lat), "round trip");
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    EXPECT(cd_latent_pack(ctx, lat, C, 3, lw, tok) == CD_ERR_SHAPE, "odd height");
    EXPECT(strstr(cd_ctx_error(ctx), "even") != NULL, "message: %s", cd_ctx_error(ctx));
    EXPECT(cd_latent_unpack(ctx, tok, C, lh, 5, back) == CD_ERR_SHAPE, "odd width");
    EXPECT(cd_latent_pack(ctx, lat, C, 0, lw, tok) == CD_ERR_SHAPE, "zero height");
    EXPECT(cd_latent_pack(ctx, lat, 0, lh, lw, tok) == CD_ERR_INVALID_ARG, "zero channels");
    EXPECT(cd_latent_pack(ctx, NULL, C, lh, lw, tok) == CD_ERR_INVALID_ARG, "NULL");
    EXPECT(cd_latent_pack(ctx, lat, SIZE_MAX / 2, lh, lw, tok) == CD_ERR_SHAPE, "overflow");
    float ids[6 * 3];
    EXPECT(cd_flux_img_ids(ctx, 0, 3, ids) == CD_ERR_SHAPE, "img_ids 0 rows");
    for (size_t i = 0; i < 18; i++) ids[i] = 5.0f;
    EXPECT(cd_flux_txt_ids(ctx, 6, ids) == CD_OK, "txt_ids");
    for (size_t i = 0; i < 18; i++) EXPECT(ids[i] == 0.0f, "txt_ids[%zu] = %g", i, ids[i]);
    EXPECT(cd_flux_txt_ids(ctx, 0, NULL) == CD_OK, "empty txt_ids");
    EXPECT(cd_flux_txt_ids(ctx, 2, NULL) == CD_ERR_INVALID_ARG, "NULL txt_ids");
    cd_ctx_free(ctx);
}

/* ---- Euler --------------------------------------------------------------------------------- */
TEST(sampler_euler) {
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, FIX_DIR "/pack.safetensors", &f) == CD_OK, "no fixture: %s", REGEN);
    const size_t n = 15 * 64;
    float *x = fix_f32(f, "x", n), *v = fix_f32(f, "v", n), *x1 = fix_f32(f, "x1", n);
    float *x2 = fix_f32(f, "x2", n), *sig = fix_f32(f, "sigmas", 5);
    float t[5];
    if (!x || !v || !x1 || !x2 || !sig) {
        test_fail(__FILE__, __LINE__, "fixture tensors missing (%s)", REGEN);
    } else {
        /* the scheduler's own sigmas (bit exact) drive the comparison with its step */
        cd_euler_step(x, v, n, sig[0], sig[1]);
        EXPECT(!memcmp(x, x1, n * sizeof(float)), "step 1 differs from diffusers");
        cd_euler_step(x, v, n, sig[1], sig[2]);
        EXPECT(!memcmp(x, x2, n * sizeof(float)), "step 2 differs from diffusers");
        EXPECT(cd_flux_schedule(NULL, 4, 15, 1, 0.5, 1.15, t) == CD_OK, "schedule");
        for (int i = 0; i < 5; i++) EXPECT(fabs(t[i] - sig[i]) <= 9 * U24 * fmax(fabs(sig[i]), 0x1p-10), "sigma %d", i);
    }
    /* t 1 -> 0 in one step: x - v exactly */
    float a[3] = {1.5f, -2.0f, 0.25f}, b[3] = {0.5f, 1.0f, -0.75f};
    cd_euler_step(a, b, 3, 1.0f, 0.0f);
    EXPECT(a[0] == 1.0f && a[1] == -3.0f && a[2] == 1.0f, "x - v: %g %g %g", a[0], a[1], a[2]);
    cd_euler_step(a, b, 0, 1.0f, 0.0f); /* n = 0: nothing */
    free(x);
    free(v);
    free(x1);
    free(x2);
    free(sig);
    cd_st_close(f);
}
