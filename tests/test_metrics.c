/* test_metrics.c — PSNR and SSIM (src/train/metrics.c) against scikit-image: the pairs and values
 * tests/oracle/metrics_fixtures.py wrote to tests/fixtures/metrics/pairs.safetensors (random and
 * structured 28x28, 40x33, 11x11 and 11x17 images, three noise levels, inverted, constant,
 * one-level and identical pairs) must agree to 1e-6 relative (both sides compute in float64; the
 * observed differences are ~1e-15). Also: identical images are +inf dB, the set statistics cap
 * and count them, and SSIM refuses images under 11x11 as skimage does. */
#include "test.h"
#include "cleardit.h"
#include "../src/train/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/metrics/pairs.safetensors"
#define REGEN "run 'python3 tests/oracle/metrics_fixtures.py' from the repository root"

static double f64_at(const cd_st_tensor *t, size_t i) {
    double v;
    memcpy(&v, (const char *)t->data + i * sizeof v, sizeof v);
    return v;
}

static int rel_ok(double got, double want, double rel) {
    if (isinf(want)) return got == want;
    return fabs(got - want) <= rel * fmax(fabs(want), 1e-3);
}

TEST(metrics_skimage_fixtures) {
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, FIX, &f) == CD_OK, "cannot open %s: %s", FIX, REGEN);
    const cd_st_tensor *psnr = cd_st_find(f, "psnr"), *ssim = cd_st_find(f, "ssim");
    const char *cases = cd_st_meta(f, "cases");
    if (!psnr || !ssim || !cases || psnr->dtype != CD_DTYPE_F64 || ssim->dtype != CD_DTYPE_F64) {
        cd_st_close(f);
        CHECK(0, "%s lacks psnr/ssim (F64) or the case list: %s", FIX, REGEN);
    }
    size_t i = 0, n_inf = 0;
    for (const char *s = cases; *s; i++) {
        const char *e = strchr(s, ',');
        const size_t len = e ? (size_t)(e - s) : strlen(s);
        char name[96], key[112];
        snprintf(name, sizeof name, "%.*s", (int)len, s);
        s = e ? e + 1 : s + len;
        snprintf(key, sizeof key, "%s.a", name);
        const cd_st_tensor *a = cd_st_find(f, key);
        snprintf(key, sizeof key, "%s.b", name);
        const cd_st_tensor *b = cd_st_find(f, key);
        if (!a || !b || a->dtype != CD_DTYPE_U8 || a->ndim != 2 || b->ndim != 2 || a->shape[0] != b->shape[0] ||
            a->shape[1] != b->shape[1] || i >= (size_t)psnr->shape[0]) {
            EXPECT(0, "case %s: bad tensors (%s)", name, REGEN);
            continue;
        }
        const int32_t h = (int32_t)a->shape[0], w = (int32_t)a->shape[1];
        const double p = cd_psnr_u8(a->data, b->data, (size_t)w * h), wp = f64_at(psnr, i);
        double ss = 0;
        EXPECT(cd_ssim_u8(NULL, a->data, b->data, w, h, &ss) == CD_OK, "case %s: SSIM failed", name);
        const double ws = f64_at(ssim, i);
        EXPECT(rel_ok(p, wp, 1e-6), "case %s (%dx%d): PSNR %.12g, skimage %.12g", name, h, w, p, wp);
        EXPECT(rel_ok(ss, ws, 1e-6), "case %s (%dx%d): SSIM %.12g, skimage %.12g", name, h, w, ss, ws);
        n_inf += isinf(wp) != 0;
    }
    EXPECT(i == (size_t)psnr->shape[0] && i >= 10, "%zu cases listed, %lld values", i, (long long)psnr->shape[0]);
    EXPECT(n_inf == 1, "the fixture should hold one identical pair (got %zu)", n_inf);
    cd_st_close(f);
}

TEST(metrics_identical_and_stats) {
    uint8_t a[28 * 28], b[28 * 28];
    test_rng r = test_rng_seed(5);
    for (int i = 0; i < 28 * 28; i++) a[i] = b[i] = (uint8_t)(test_rng_u64(&r) >> 56);
    EXPECT(isinf(cd_psnr_u8(a, b, sizeof a)) && cd_psnr_u8(a, b, sizeof a) > 0, "identical: not +inf");
    double s = 0;
    CHECK(cd_ssim_u8(NULL, a, b, 28, 28, &s) == CD_OK && fabs(s - 1.0) < 1e-12, "identical SSIM %.17g", s);
    b[3] ^= 1;
    const double p = cd_psnr_u8(a, b, sizeof a);
    EXPECT(fabs(p - 10.0 * log10(65025.0 * 784.0)) < 1e-9, "one level off in one pixel: %.12g dB", p);
    const double v[4] = {INFINITY, 30.0, 40.0, 150.0};
    cd_metric_stat st;
    cd_metric_stats(v, 4, CD_PSNR_CAP, &st);
    EXPECT(st.n == 4 && st.n_capped == 2, "n %zu capped %zu", st.n, st.n_capped);
    EXPECT(fabs(st.mean - 67.5) < 1e-12 && st.min == 30.0 && st.max == 100.0, "mean %g min %g max %g", st.mean, st.min,
           st.max);
    /* population std of {100, 30, 40, 100}: sqrt(((32.5)^2 * 2 + 37.5^2 + 27.5^2) / 4) */
    EXPECT(fabs(st.std - sqrt((2 * 32.5 * 32.5 + 37.5 * 37.5 + 27.5 * 27.5) / 4)) < 1e-12, "std %g", st.std);
    cd_metric_stats(v + 1, 2, INFINITY, &st);
    EXPECT(st.mean == 35.0 && st.std == 5.0 && st.n_capped == 0, "uncapped: mean %g std %g", st.mean, st.std);
}

TEST(metrics_ssim_too_small) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    uint8_t a[10 * 30] = {0};
    double s = 0;
    EXPECT(cd_ssim_u8(ctx, a, a, 30, 10, &s) == CD_ERR_INVALID_ARG && isnan(s), "10 rows accepted");
    EXPECT(strstr(cd_ctx_error(ctx), "11x11"), "message: %s", cd_ctx_error(ctx));
    EXPECT(cd_ssim_u8(ctx, a, a, 11, 10, &s) == CD_ERR_INVALID_ARG, "11x10 accepted");
    cd_ctx_free(ctx);
}
