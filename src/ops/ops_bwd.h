/* ops_bwd.h — the backward ops table: the gradient of every op of ops.h except attention (which
 * has its own backward), for training. Backends: cpu reference (bwd_ref.c: plain loops, double
 * accumulation, the oracle) and cpu fast (bwd_cpu.c: OpenBLAS sgemm + OpenMP rows).
 * Letters as in ops.h: n rows (tokens), dim features, NH heads, HD head_dim, in/out linear sizes.
 *
 * Conventions:
 *  - Everything is f32. Weights are the f32 master copies used for training, so a linear weight
 *    is a plain `const float *` [out, in] row-major (PyTorch layout), not a cd_weight.
 *  - Forward inputs are passed as the forward saw them (before the op); "dy" is the gradient of
 *    the op's output, "dx" the gradient of its input.
 *  - Activation gradients (dx, and dy of gate_add) are OVERWRITTEN. Parameter gradients (dw, db,
 *    dshift, dscale, dgate, sum_rows' out) are ACCUMULATED (+=), so that a parameter used several
 *    times (or over micro-batches) sums its gradient in place; zero them once per step.
 *  - Any parameter-gradient pointer may be NULL (not wanted); so may linear's dx.
 *  - Functions returning cd_status may use the context scratch (cd_ctx_work): a pointer obtained
 *    from cd_ctx_work before the call must not be an argument. CD_ERR_OOM if it cannot grow.
 *  - to_heads / from_heads are permutations: the backward of one is the other (no entries here).
 *
 * Determinism (fast backend): every column reduction (dw of rmsnorm, db, dshift, dscale, dgate,
 * sum_rows) sums fixed row blocks whose size depends only on the row count, each block into its
 * own f64 partial, and adds the partials in block order: the result is bit-identical for any
 * thread count. Elementwise outputs are too. linear's dx and dw come from OpenBLAS sgemm:
 * reproducible for a fixed thread count; across thread counts as OpenBLAS partitions (it does not
 * split the summed dimension on the machines tested, but that is OpenBLAS's choice, not ours). */
#ifndef CD_OPS_BWD_H
#define CD_OPS_BWD_H

#include "../util/internal.h"

typedef struct cd_ops_bwd {
    const char *name;
    /* Forward y [n, out] = x [n, in] . w^T + b, w [out, in].
     * dx [n, in]   = dy [n, out] . w             (overwritten; NULL: not computed)
     * dw [out, in] += dy^T . x                   (accumulated; may be NULL)
     * db [out]     += sum over rows of dy        (accumulated; may be NULL)
     * x, w, dy are not modified and alias none of the outputs. in, out >= 1. */
    cd_status (*linear_bwd)(cd_ctx *ctx, const float *x, size_t n, const float *w, int in, int out, const float *dy,
                            float *dx, float *dw, float *db);
    /* Forward y [n, dim] = (1 + scale) * LN(x) + shift (LayerNorm without affine, biased
     * variance, eps; shift/scale [dim] broadcast over rows). x [n, dim] is the forward input.
     * dx [n, dim]  (overwritten; may alias dy)
     * dshift [dim] += sum over rows of dy; dscale [dim] += sum over rows of dy * LN(x)
     * (accumulated; either may be NULL). */
    cd_status (*ln_modulate_bwd)(cd_ctx *ctx, const float *x, size_t n, int dim, const float *scale, float eps,
                                 const float *dy, float *dx, float *dshift, float *dscale);
    /* Forward, per head of x [n, NH*HD]: v <- v / sqrt(mean(v^2) + eps) * w[HD]. x is the forward
     * input (before normalisation), dy [n, NH*HD].
     * dx [n, NH*HD] (overwritten; may alias dy); dw [HD] += sum over rows and heads of
     * dy * v / sqrt(mean(v^2) + eps) (accumulated; may be NULL). */
    cd_status (*rmsnorm_heads_bwd)(cd_ctx *ctx, const float *x, size_t n, int nh, int hd, const float *w, float eps,
                                   const float *dy, float *dx, float *dw);
    /* Forward x [n, dim] += gate [dim] * y [n, dim]. dx [n, dim] is the gradient of the output x
     * (it also flows unchanged to the input x: the caller keeps it), y the forward input.
     * dy [n, dim] = gate * dx (overwritten; may alias dx or y);
     * dgate [dim] += sum over rows of dx * y (accumulated; may be NULL). */
    cd_status (*gate_add_bwd)(cd_ctx *ctx, const float *dx, const float *y, const float *gate, size_t n, int dim,
                              float *dy, float *dgate);
    /* Elementwise, x [n] the forward input, dy [n]; dx [n] = f'(x) dy (overwritten; may alias dy).
     * gelu_tanh: f = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); silu: f = x sigmoid(x). */
    void (*gelu_tanh_bwd)(cd_ctx *ctx, const float *x, const float *dy, float *dx, size_t n);
    void (*silu_bwd)(cd_ctx *ctx, const float *x, const float *dy, float *dx, size_t n);
    /* g [n, NH, HD] in place: the transpose of the forward rotation (each interleaved pair
     * rotated by minus the token's angle: (c g0 + s g1, -s g0 + c g1)); cs [n, HD/2, 2] as in
     * ops.h. Applied to dy of rope, it gives dx. */
    void (*rope_bwd)(cd_ctx *ctx, float *g, size_t n, int nh, int hd, const float *cs);
    /* out [dim] += sum over rows of dy [n, dim] (a bias or modulation-shift gradient). */
    cd_status (*sum_rows)(cd_ctx *ctx, const float *dy, size_t n, int dim, float *out);
} cd_ops_bwd;

const cd_ops_bwd *cd_ops_bwd_cpu_ref(void); /* the oracle */
const cd_ops_bwd *cd_ops_bwd_cpu(void);     /* the fast CPU backend */

#endif
