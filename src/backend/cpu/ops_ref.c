/* ops_ref.c — the reference ops: plain loops, double accumulation, one thread. The oracle that
 * the fast CPU ops (ops_cpu.c) and later backends are tested against. */
#include "../../ops/ops.h"
#include "ops_host_mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double wget(const cd_weight *w, size_t i) { return (double)cd_elem_to_f32(w->dtype, w->data, i); }

static cd_status ref_linear(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    (void)ctx;
    for (size_t r = 0; r < n; r++)
        for (int o = 0; o < w->out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < w->in; i++) acc += (double)x[r * w->in + i] * wget(w, (size_t)o * w->in + i);
            y[r * w->out + o] = (float)acc;
        }
    return CD_OK;
}

static void ref_ln_modulate(cd_ctx *ctx, const float *x, size_t n, int dim, const float *shift, const float *scale,
                            float eps, float *y) {
    (void)ctx;
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= dim;
        const double inv = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++) y[r * dim + i] = (float)((1.0 + scale[i]) * ((xr[i] - mean) * inv) + shift[i]);
    }
}

static void ref_rmsnorm_heads(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *w, float eps) {
    (void)ctx;
    for (size_t r = 0; r < n * (size_t)nh; r++) {
        float *v = x + r * hd;
        double ss = 0;
        for (int i = 0; i < hd; i++) ss += (double)v[i] * v[i];
        const double inv = 1.0 / sqrt(ss / hd + eps);
        for (int i = 0; i < hd; i++) v[i] = (float)(v[i] * inv * w[i]);
    }
}

static void ref_gate_add(cd_ctx *ctx, float *x, const float *gate, const float *y, size_t n, int dim) {
    (void)ctx;
    for (size_t r = 0; r < n; r++)
        for (int i = 0; i < dim; i++) x[r * dim + i] = (float)(x[r * dim + i] + (double)gate[i] * y[r * dim + i]);
}

static void ref_gelu_tanh(cd_ctx *ctx, float *x, size_t n) {
    (void)ctx;
    const double k = sqrt(2.0 / M_PI);
    for (size_t i = 0; i < n; i++) {
        const double v = x[i];
        x[i] = (float)(0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v))));
    }
}

static void ref_silu(cd_ctx *ctx, float *x, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) x[i] = (float)((double)x[i] / (1.0 + exp(-(double)x[i])));
}

static void ref_rope(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *cs) {
    (void)ctx;
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            float *v = x + (t * nh + h) * (size_t)hd;
            const float *c = cs + t * (size_t)hd;
            for (int i = 0; i < hd / 2; i++) {
                const double x0 = v[2 * i], x1 = v[2 * i + 1], co = c[2 * i], si = c[2 * i + 1];
                v[2 * i] = (float)(co * x0 - si * x1);
                v[2 * i + 1] = (float)(si * x0 + co * x1);
            }
        }
}

static void ref_to_heads(cd_ctx *ctx, const float *rows, size_t n, int nh, int hd, float *dst, size_t ntot, size_t t0) {
    (void)ctx;
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            memcpy(dst + ((size_t)h * ntot + t0 + t) * hd, rows + (t * nh + h) * hd, sizeof(float) * hd);
}

static void ref_from_heads(cd_ctx *ctx, const float *src, size_t ntot, size_t t0, size_t n, int nh, int hd,
                           float *rows) {
    (void)ctx;
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            memcpy(rows + (t * nh + h) * hd, src + ((size_t)h * ntot + t0 + t) * hd, sizeof(float) * hd);
}

static cd_status ref_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                               const float *v, const float *sw, float *o, float *lse) {
    (void)self;
    return cd_attention_reference(ctx, d, CD_DTYPE_F32, q, k, v, sw, o, lse);
}

/* Direct convolution: every output a double sum over cin x k x k taps of the (upsampled, padded)
 * input; taps outside the input are the zero padding. */
static cd_status ref_conv2d(cd_ctx *ctx, const cd_conv_desc *d, const float *x, const float *w, const float *b, int acc,
                            float *y) {
    (void)ctx;
    const int Ho = cd_conv_out_h(d), Wo = cd_conv_out_w(d), k = d->k, up = d->up != 0;
    const int Hu = d->H << up, Wu = d->W << up;
    for (int co = 0; co < d->cout; co++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                double s = b ? b[co] : 0.0;
                for (int ci = 0; ci < d->cin; ci++)
                    for (int ky = 0; ky < k; ky++) {
                        const int iy = oy * d->stride + ky - d->pad[2];
                        if (iy < 0 || iy >= Hu) continue;
                        for (int kx = 0; kx < k; kx++) {
                            const int ix = ox * d->stride + kx - d->pad[0];
                            if (ix < 0 || ix >= Wu) continue;
                            s += (double)w[(((size_t)co * d->cin + ci) * k + ky) * k + kx] *
                                 x[((size_t)ci * d->H + (iy >> up)) * d->W + (ix >> up)];
                        }
                    }
                float *yo = y + ((size_t)co * Ho + oy) * Wo + ox;
                *yo = (float)(acc ? *yo + s : s);
            }
    return CD_OK;
}

static void ref_group_norm(cd_ctx *ctx, const float *x, int C, size_t n, int G, const float *w, const float *b,
                           float eps, int silu, float *y) {
    (void)ctx;
    const int cg = C / G;
    const size_t m = (size_t)cg * n;
    for (int g = 0; g < G; g++) {
        const float *xg = x + (size_t)g * m;
        double mean = 0, var = 0;
        for (size_t i = 0; i < m; i++) mean += xg[i];
        mean /= (double)m;
        for (size_t i = 0; i < m; i++) var += (xg[i] - mean) * (xg[i] - mean);
        const double inv = 1.0 / sqrt(var / (double)m + eps);
        for (int c = g * cg; c < (g + 1) * cg; c++)
            for (size_t i = 0; i < n; i++) {
                double t = (x[(size_t)c * n + i] - mean) * inv * w[c] + b[c];
                if (silu) t = t / (1.0 + exp(-t));
                y[(size_t)c * n + i] = (float)t;
            }
    }
}

static void ref_transpose(cd_ctx *ctx, const float *x, size_t rows, size_t cols, float *y) {
    (void)ctx;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) y[c * rows + r] = x[r * cols + c];
}

/* The reference computes in place or with memory of its own: no scratch to reserve. */
static size_t ref_workspace(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d) {
    (void)self;
    (void)ctx;
    (void)d;
    return 0;
}

static void ref_quick_gelu(cd_ctx *ctx, float *x, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) x[i] = (float)((double)x[i] / (1.0 + exp(-1.702 * (double)x[i])));
}

/* Every (head, query) row: scores in double, the exact softmax, P.V. */
static cd_status ref_attention_bias(cd_ctx *ctx, const cd_attn_bias_desc *d, const float *q, const float *k,
                                    const float *v, const float *rel, float *o) {
    const size_t n = (size_t)d->n, hd = (size_t)d->head_dim;
    double *s = malloc(n * sizeof *s), *acc = malloc(hd * sizeof *acc);
    if (!s || !acc) {
        free(s);
        free(acc);
        return cd_set_error(ctx, CD_ERR_OOM, "attention_bias (reference): out of memory");
    }
    for (size_t h = 0; h < (size_t)d->heads; h++)
        for (size_t i = 0; i < n; i++) {
            const float *qi = q + (h * n + i) * hd;
            const size_t nk = d->causal ? i + 1 : n;
            double mx = -INFINITY, sum = 0;
            for (size_t j = 0; j < nk; j++) {
                const float *kj = k + (h * n + j) * hd;
                double dot = 0;
                for (size_t c = 0; c < hd; c++) dot += (double)qi[c] * kj[c];
                s[j] = (double)d->scale * dot + (rel ? rel[h * (2 * n - 1) + (j + n - 1 - i)] : 0.0);
                if (s[j] > mx) mx = s[j];
            }
            for (size_t c = 0; c < hd; c++) acc[c] = 0;
            for (size_t j = 0; j < nk; j++) {
                const double p = exp(s[j] - mx);
                sum += p;
                for (size_t c = 0; c < hd; c++) acc[c] += p * v[(h * n + j) * hd + c];
            }
            for (size_t c = 0; c < hd; c++) o[(h * n + i) * hd + c] = (float)(acc[c] / sum);
        }
    free(s);
    free(acc);
    return CD_OK;
}

static const cd_ops k_ref = {
    .name = "cpu-reference",
    .linear = ref_linear,
    .ln_modulate = ref_ln_modulate,
    .rmsnorm_heads = ref_rmsnorm_heads,
    .gate_add = ref_gate_add,
    .gelu_tanh = ref_gelu_tanh,
    .silu = ref_silu,
    .rope = ref_rope,
    .to_heads = ref_to_heads,
    .from_heads = ref_from_heads,
    .attention = ref_attention,
    .workspace = ref_workspace,
    .conv2d = ref_conv2d,
    .group_norm = ref_group_norm,
    .transpose = ref_transpose,
    .quick_gelu = ref_quick_gelu,
    .attention_bias = ref_attention_bias,
    CD_HOST_MEM_OPS,
};

const cd_ops *cd_ops_cpu_ref(void) { return &k_ref; }
