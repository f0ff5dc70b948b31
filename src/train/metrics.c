/* metrics.c — PSNR, SSIM (scikit-image's, Wang et al. 2004 settings) and set statistics
 * (metrics.h). Plain float64 loops: the images are small (28x28 in `cleardit eval`). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

double cd_psnr_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        se += d * d;
    }
    if (se == 0.0 || n == 0) return INFINITY;
    const double mse = se / (double)n;
    return 10.0 * log10(255.0 * 255.0 / mse);
}

/* scipy.ndimage 'reflect' (half-sample symmetric) index of i into [0, n), any i. */
static int reflect(int i, int n) {
    const int p = 2 * n;
    int m = i % p;
    if (m < 0) m += p;
    return m < n ? m : p - 1 - m;
}

/* Separable correlation of src [h, w] with the symmetric kernel g[-R..R] (g + R is the centre):
 * along axis 0 (rows) into tmp, then along axis 1 into dst, as scipy's gaussian_filter. */
static void gauss2d(const double *src, double *tmp, double *dst, int w, int h, const double *g) {
    const int R = CD_SSIM_RADIUS;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0.0;
            for (int k = -R; k <= R; k++) s += g[k] * src[(size_t)reflect(y + k, h) * w + x];
            tmp[(size_t)y * w + x] = s;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0.0;
            for (int k = -R; k <= R; k++) s += g[k] * tmp[(size_t)y * w + reflect(x + k, w)];
            dst[(size_t)y * w + x] = s;
        }
}

cd_status cd_ssim_u8(cd_ctx *ctx, const uint8_t *a, const uint8_t *b, int32_t w, int32_t h, double *out) {
    const int R = CD_SSIM_RADIUS, win = 2 * R + 1;
    *out = NAN;
    if (w < win || h < win)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "SSIM needs images of at least %dx%d pixels (got %dx%d)", win, win,
                            (int)w, (int)h);
    const size_t n = (size_t)w * (size_t)h;
    /* in: a, b, a*a, b*b, a*b; out: their filtered maps; one temporary */
    double *buf = malloc(11 * n * sizeof(double));
    if (!buf) return cd_set_error(ctx, CD_ERR_OOM, "out of memory for SSIM of %dx%d", (int)w, (int)h);
    double *in[5], *f[5], *tmp = buf + 10 * n;
    for (int i = 0; i < 5; i++) {
        in[i] = buf + (size_t)i * n;
        f[i] = buf + (size_t)(5 + i) * n;
    }
    for (size_t i = 0; i < n; i++) {
        const double x = a[i], y = b[i];
        in[0][i] = x;
        in[1][i] = y;
        in[2][i] = x * x;
        in[3][i] = y * y;
        in[4][i] = x * y;
    }
    /* scipy's _gaussian_kernel1d: exp(-0.5 / sigma^2 * x^2), normalized by its sum */
    const double sigma = 1.5;
    double kern[2 * CD_SSIM_RADIUS + 1], sum = 0.0;
    for (int k = -R; k <= R; k++) sum += kern[k + R] = exp(-0.5 / (sigma * sigma) * (double)(k * k));
    for (int k = 0; k < win; k++) kern[k] /= sum;
    for (int i = 0; i < 5; i++) gauss2d(in[i], tmp, f[i], w, h, kern + R);
    const double C1 = (0.01 * 255.0) * (0.01 * 255.0), C2 = (0.03 * 255.0) * (0.03 * 255.0);
    double acc = 0.0;
    for (int y = R; y < h - R; y++)
        for (int x = R; x < w - R; x++) {
            const size_t i = (size_t)y * w + x;
            const double ux = f[0][i], uy = f[1][i];
            const double vx = f[2][i] - ux * ux, vy = f[3][i] - uy * uy, vxy = f[4][i] - ux * uy;
            const double A1 = 2.0 * ux * uy + C1, A2 = 2.0 * vxy + C2;
            const double B1 = ux * ux + uy * uy + C1, B2 = vx + vy + C2;
            acc += (A1 * A2) / (B1 * B2);
        }
    *out = acc / ((double)(w - 2 * R) * (double)(h - 2 * R));
    free(buf);
    return CD_OK;
}

void cd_metric_stats(const double *v, size_t n, double cap, cd_metric_stat *s) {
    *s = (cd_metric_stat){0};
    s->n = n;
    if (!n) {
        s->mean = s->std = s->min = s->max = NAN;
        return;
    }
    double sum = 0.0;
    s->min = INFINITY;
    s->max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        if (x > cap) {
            x = cap;
            s->n_capped++;
        }
        sum += x;
        if (x < s->min) s->min = x;
        if (x > s->max) s->max = x;
    }
    s->mean = sum / (double)n;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (v[i] > cap ? cap : v[i]) - s->mean;
        ss += d * d;
    }
    s->std = sqrt(ss / (double)n);
}
