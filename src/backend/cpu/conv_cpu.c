/* conv_cpu.c — the fast CPU backend's autoencoder ops: conv2d as im2col (by bands of output rows,
 * in the context's work area) + OpenBLAS sgemm, a 1x1 stride-1 unpadded conv as one sgemm on the
 * input itself; GroupNorm with statistics in double and the affine (+ SiLU) in f32; a blocked
 * transpose. OpenMP over channels, groups and blocks. Tested against ops_ref.c
 * (tests/test_ops_harness.c).
 *
 * The sgemm calls keep OpenBLAS's own thread count (no cd_blas_threads_push): OpenBLAS sums in
 * another order on one thread (its small-matrix kernels) than on several, and the autoencoder's
 * results must not depend on the context's thread count (tests/test_ae.c). */
#include "conv_cpu.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Largest im2col band, in floats: 64 MB, or one output row's columns if that is more. */
#ifndef CD_COL_BUDGET
#define CD_COL_BUDGET ((size_t)1 << 24)
#endif

static int direct_1x1(const cd_conv_desc *d) {
    return d->k == 1 && d->stride == 1 && !d->up && !d->pad[0] && !d->pad[1] && !d->pad[2] && !d->pad[3];
}

/* The im2col band in floats: the whole K x Ho*Wo matrix if it fits the budget, else bands of
 * output rows (at least one). */
static size_t col_floats(const cd_conv_desc *d) {
    if (direct_1x1(d)) return 0;
    const size_t row = (size_t)d->cin * d->k * d->k * (size_t)cd_conv_out_w(d);
    const size_t all = row * (size_t)cd_conv_out_h(d);
    if (all <= CD_COL_BUDGET) return all;
    return row > CD_COL_BUDGET ? row : CD_COL_BUDGET / row * row;
}

size_t cd_cpu_conv2d_workspace_bytes(const cd_conv_desc *d) { return col_floats(d) * sizeof(float); }

/* col [K, rows * Wo] for output rows r0 .. r0 + rows of d (K = cin k k, tap-major as the weight's
 * [cout, cin, k, k] rows): the (upsampled, padded) input under every tap; zero in the padding.
 * The shape is copied into locals: with -fno-strict-aliasing the stores could alias *d. */
static void im2col(int threads, const cd_conv_desc *d, const float *x, int r0, int rows, float *col) {
    const int k = d->k, s = d->stride, up = d->up != 0, Wo = cd_conv_out_w(d);
    const int H = d->H, W = d->W, Hu = H << up, Wu = W << up, kk2 = k * k, pl = d->pad[0], pt = d->pad[2];
    const size_t K = (size_t)d->cin * kk2, np = (size_t)rows * Wo;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t kk = 0; kk < K; kk++) {
        const int ci = (int)(kk / kk2), ky = (int)(kk % kk2) / k, kx = (int)(kk % kk2) % k;
        const float *xc = x + (size_t)ci * H * W;
        float *dst = col + kk * np;
        /* output columns whose input column ix = ox s + kx - pl lies inside [0, Wu) */
        const int off = kx - pl;
        int lo = off >= 0 ? 0 : (-off + s - 1) / s, hi = Wu - 1 - off < 0 ? 0 : (Wu - 1 - off) / s + 1;
        if (hi > Wo) hi = Wo;
        if (lo > hi) lo = hi;
        for (int r = 0; r < rows; r++) {
            const int iy = (r0 + r) * s + ky - pt;
            float *o = dst + (size_t)r * Wo;
            if (iy < 0 || iy >= Hu) {
                memset(o, 0, (size_t)Wo * sizeof(float));
                continue;
            }
            const float *xr = xc + (size_t)(iy >> up) * W;
            for (int ox = 0; ox < lo; ox++) o[ox] = 0.0f;
            if (s == 1 && !up)
                memcpy(o + lo, xr + lo + off, (size_t)(hi - lo) * sizeof(float));
            else
                for (int ox = lo; ox < hi; ox++) o[ox] = xr[(ox * s + off) >> up];
            for (int ox = hi; ox < Wo; ox++) o[ox] = 0.0f;
        }
    }
}

/* y [cout, np] (row stride ld) = b (or += b when acc): the sgemm then accumulates onto it. One
 * thread: a fill is memory-bound, and waking the team per conv cost more than it saved. */
static void put_bias(float *y, int cout, size_t np, size_t ld, const float *b, int acc) {
    for (int co = 0; co < cout; co++) {
        float *yc = y + (size_t)co * ld;
        const float v = b ? b[co] : 0.0f;
        if (acc) {
            if (b)
                for (size_t i = 0; i < np; i++) yc[i] += v;
        } else {
            for (size_t i = 0; i < np; i++) yc[i] = v;
        }
    }
}

cd_status cd_cpu_conv2d(cd_ctx *ctx, const cd_conv_desc *d, const float *x, const float *w, const float *b, int acc,
                        float *y) {
    const int Ho = cd_conv_out_h(d), Wo = cd_conv_out_w(d), cout = d->cout;
    if (Ho < 1 || Wo < 1 || d->cin < 1 || cout < 1) return CD_OK;
    const size_t K = (size_t)d->cin * d->k * d->k, ld = (size_t)Ho * Wo;
    const int threads = ctx->threads;
    if (direct_1x1(d)) {
        put_bias(y, cout, ld, ld, b, acc);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)ld, d->cin, 1.0f, w, d->cin, x, (int)ld, 1.0f,
                    y, (int)ld);
        return CD_OK;
    }
    const size_t cap = col_floats(d);
    float *col = cd_ctx_work(ctx, cap);
    if (!col) return CD_ERR_OOM; /* cd_ctx_work set the message */
    int band = (int)(cap / (K * (size_t)Wo));
    if (band < 1) band = 1;
    if (band > Ho) band = Ho;
    for (int r0 = 0; r0 < Ho; r0 += band) {
        const int rows = r0 + band <= Ho ? band : Ho - r0;
        const size_t np = (size_t)rows * Wo;
        im2col(threads, d, x, r0, rows, col);
        float *yb = y + (size_t)r0 * Wo;
        put_bias(yb, cout, np, ld, b, acc);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)np, (int)K, 1.0f, w, (int)K, col, (int)np,
                    1.0f, yb, (int)ld);
    }
    return CD_OK;
}

/* Statistics of each group in double (two passes), then y = x a + bb per channel in f32 with
 * a = w rstd, bb = b - mean a, and SiLU as t / (1 + expf(-t)). y may equal x. */
void cd_cpu_group_norm(cd_ctx *ctx, const float *x, int C, size_t n, int G, const float *gw, const float *gb, float eps,
                       int silu, float *y) {
    const int cg = C / G;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int g = 0; g < G; g++) {
        const float *xg = x + (size_t)g * cg * n;
        const size_t m = (size_t)cg * n;
        double s = 0;
        for (size_t i = 0; i < m; i++) s += xg[i];
        const double mean = s / (double)m;
        double v = 0;
        for (size_t i = 0; i < m; i++) {
            const double dd = xg[i] - mean;
            v += dd * dd;
        }
        const float rstd = (float)(1.0 / sqrt(v / (double)m + (double)eps));
        const float fm = (float)mean;
        for (int c = g * cg; c < (g + 1) * cg; c++) {
            const float a = gw[c] * rstd, bb = gb[c] - fm * a;
            const float *xc = x + (size_t)c * n;
            float *yc = y + (size_t)c * n;
            for (size_t i = 0; i < n; i++) {
                float t = xc[i] * a + bb;
                if (silu) t = t / (1.0f + expf(-t));
                yc[i] = t;
            }
        }
    }
}

/* 32 x 32 blocks: both sides stay in cache lines. */
void cd_cpu_transpose(cd_ctx *ctx, const float *x, size_t rows, size_t cols, float *y) {
    const size_t B = 32, nbr = (rows + B - 1) / B, nbc = (cols + B - 1) / B;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (rows * cols >= ((size_t)1 << 15))
    for (size_t t = 0; t < nbr * nbc; t++) {
        const size_t r0 = t / nbc * B, c0 = t % nbc * B;
        const size_t r1 = r0 + B < rows ? r0 + B : rows, c1 = c0 + B < cols ? c0 + B : cols;
        for (size_t c = c0; c < c1; c++)
            for (size_t r = r0; r < r1; r++) y[c * rows + r] = x[r * cols + c];
    }
}
