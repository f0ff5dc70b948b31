/* bwd_ref.c — the reference backward ops (ops_bwd.h): plain loops, double arithmetic throughout,
 * one rounding to f32 per output, one thread: the oracle of bwd_cpu.c. The norms keep their f64
 * column sums in the context scratch (cd_ctx_work). Each function reads a row's inputs before it
 * writes that row's outputs, which makes the documented aliasing (dx == dy) safe. */
#include "../../ops/ops_bwd.h"

#include <math.h>
#include <stdint.h>

static cd_status ref_linear_bwd(cd_ctx *ctx, const float *x, size_t n, const float *w, int in, int out, const float *dy,
                                float *dx, float *dw, float *db) {
    if (in < 1 || out < 1) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "linear_bwd: in %d, out %d", in, out);
    if (dx) /* dx [n, in] = dy [n, out] . w [out, in] */
        for (size_t r = 0; r < n; r++)
            for (int i = 0; i < in; i++) {
                double acc = 0;
                for (int o = 0; o < out; o++) acc += (double)dy[r * out + o] * w[(size_t)o * in + i];
                dx[r * in + i] = (float)acc;
            }
    if (dw) /* dw [out, in] += dy^T . x */
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                double acc = dw[(size_t)o * in + i];
                for (size_t r = 0; r < n; r++) acc += (double)dy[r * out + o] * x[r * in + i];
                dw[(size_t)o * in + i] = (float)acc;
            }
    if (db)
        for (int o = 0; o < out; o++) {
            double acc = db[o];
            for (size_t r = 0; r < n; r++) acc += dy[r * out + o];
            db[o] = (float)acc;
        }
    return CD_OK;
}

/* f64 column accumulators of `k` x `dim` from the context scratch, zeroed. */
static double *col_acc(cd_ctx *ctx, int k, int dim) {
    const size_t cnt = (size_t)k * (size_t)dim;
    double *acc = (double *)cd_ctx_work(ctx, 2 * cnt); /* 64-byte aligned, 2 floats per double */
    if (acc)
        for (size_t i = 0; i < cnt; i++) acc[i] = 0;
    return acc;
}

/* Per row: mean, inv = 1/sqrt(var + eps), g = (1 + scale) dy, then
 * dx = inv (g - mean(g) - xhat mean(g xhat)); dshift += dy, dscale += dy xhat. */
static cd_status ref_ln_modulate_bwd(cd_ctx *ctx, const float *x, size_t n, int dim, const float *scale, float eps,
                                     const float *dy, float *dx, float *dshift, float *dscale) {
    double *acc = col_acc(ctx, 2, dim); /* [2, dim]: dshift | dscale sums */
    if (!acc) return CD_ERR_OOM;
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * dim, *dyr = dy + r * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
        const double inv = 1.0 / sqrt(var / dim + eps);
        double sg = 0, sgx = 0;
        for (int i = 0; i < dim; i++) {
            const double xh = (xr[i] - mean) * inv, g = (1.0 + scale[i]) * dyr[i];
            sg += g;
            sgx += g * xh;
            acc[i] += dyr[i];
            acc[dim + i] += dyr[i] * xh;
        }
        sg /= dim;
        sgx /= dim;
        for (int i = 0; i < dim; i++) { /* dyr[i] is read before dx[i] is written (alias) */
            const double xh = (xr[i] - mean) * inv, g = (1.0 + scale[i]) * dyr[i];
            dx[r * dim + i] = (float)(inv * (g - sg - xh * sgx));
        }
    }
    for (int i = 0; i < dim; i++) {
        if (dshift) dshift[i] = (float)(dshift[i] + acc[i]);
        if (dscale) dscale[i] = (float)(dscale[i] + acc[dim + i]);
    }
    return CD_OK;
}

/* Per head row v: inv = 1/sqrt(mean(v^2) + eps); dx_j = inv w_j g_j - inv^3 v_j / HD *
 * sum_i g_i w_i v_i; dw_j += g_j v_j inv. */
static cd_status ref_rmsnorm_heads_bwd(cd_ctx *ctx, const float *x, size_t n, int nh, int hd, const float *w, float eps,
                                       const float *dy, float *dx, float *dw) {
    double *acc = col_acc(ctx, 1, hd); /* [HD] dw sums */
    if (!acc) return CD_ERR_OOM;
    const size_t rows = n * (size_t)nh;
    for (size_t r = 0; r < rows; r++) {
        const float *v = x + r * hd, *g = dy + r * hd;
        double ss = 0, dot = 0;
        for (int i = 0; i < hd; i++) {
            ss += (double)v[i] * v[i];
            dot += (double)g[i] * w[i] * v[i];
        }
        const double inv = 1.0 / sqrt(ss / hd + eps), k = inv * inv * inv * dot / hd;
        for (int i = 0; i < hd; i++) {
            acc[i] += (double)g[i] * v[i] * inv;
            dx[r * hd + i] = (float)(inv * w[i] * (double)g[i] - k * v[i]);
        }
    }
    if (dw)
        for (int i = 0; i < hd; i++) dw[i] = (float)(dw[i] + acc[i]);
    return CD_OK;
}

static cd_status ref_gate_add_bwd(cd_ctx *ctx, const float *dx, const float *y, const float *gate, size_t n, int dim,
                                  float *dy, float *dgate) {
    (void)ctx;
    if (dgate)
        for (int c = 0; c < dim; c++) {
            double acc = dgate[c];
            for (size_t r = 0; r < n; r++) acc += (double)dx[r * dim + c] * y[r * dim + c];
            dgate[c] = (float)acc;
        }
    for (size_t r = 0; r < n; r++)
        for (int c = 0; c < dim; c++) dy[r * dim + c] = (float)((double)gate[c] * dx[r * dim + c]);
    return CD_OK;
}

/* f'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 a x^2), t = tanh(z/2), z = 2 k (x + a x^3),
 * written without the cancellation of 1 + t for x < 0 (it loses all digits below x ~ -7, as in
 * PyTorch's own formula): 0.5 (1 + t) = p = 1/(1 + e), e = exp(-z), and 0.25 (1 - t^2) =
 * p (1 - p) = q = 1/(2 + e + 1/e); e = inf or 0 give p, q = 0 or 1, 0 without NaN. */
static void ref_gelu_tanh_bwd(cd_ctx *ctx, const float *x, const float *dy, float *dx, size_t n) {
    (void)ctx;
    const double k = sqrt(2.0 / M_PI), a = 0.044715;
    for (size_t i = 0; i < n; i++) {
        const double v = x[i], e = exp(-2 * k * (v + a * v * v * v));
        const double p = 1 / (1 + e), q = 1 / (2 + e + 1 / e);
        const double d = p + (q > 0 ? 2 * k * v * (1 + 3 * a * v * v) * q : 0);
        dx[i] = (float)(d * dy[i]);
    }
}

/* f'(x) = s (1 + x (1 - s)), s = sigmoid(x) */
static void ref_silu_bwd(cd_ctx *ctx, const float *x, const float *dy, float *dx, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        const double v = x[i], s = 1.0 / (1.0 + exp(-v));
        dx[i] = (float)(s * (1.0 + v * (1.0 - s)) * dy[i]);
    }
}

static void ref_rope_bwd(cd_ctx *ctx, float *g, size_t n, int nh, int hd, const float *cs) {
    (void)ctx;
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            float *v = g + (t * nh + h) * (size_t)hd;
            const float *c = cs + t * (size_t)hd;
            for (int i = 0; i < hd / 2; i++) {
                const double g0 = v[2 * i], g1 = v[2 * i + 1], co = c[2 * i], si = c[2 * i + 1];
                v[2 * i] = (float)(co * g0 + si * g1);
                v[2 * i + 1] = (float)(co * g1 - si * g0);
            }
        }
}

static cd_status ref_sum_rows(cd_ctx *ctx, const float *dy, size_t n, int dim, float *out) {
    (void)ctx;
    for (int c = 0; c < dim; c++) {
        double acc = out[c];
        for (size_t r = 0; r < n; r++) acc += dy[r * dim + c];
        out[c] = (float)acc;
    }
    return CD_OK;
}

static const cd_ops_bwd k_bwd_ref = {
    "cpu-reference",   ref_linear_bwd, ref_ln_modulate_bwd, ref_rmsnorm_heads_bwd, ref_gate_add_bwd,
    ref_gelu_tanh_bwd, ref_silu_bwd,   ref_rope_bwd,        ref_sum_rows,
};

const cd_ops_bwd *cd_ops_bwd_cpu_ref(void) { return &k_bwd_ref; }
