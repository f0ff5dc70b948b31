/* optim.h — the training optimizer (library-private): AdamW as torch.optim.AdamW computes it,
 * the global gradient norm and clip_grad_norm_'s coefficient, an EMA of the weights, and name
 * globs for freezing parameters. Elementwise over flat f32 arrays; no allocation except a small
 * per-call array of block sums in cd_grad_norm. Every result is independent of the thread count.
 *
 * threads <= 0: the OpenMP default. Built without OpenMP, everything runs on one thread.
 *
 * AdamW, ref: torch/optim/adam.py _single_tensor_adam (torch 2.15; AdamW = Adam with
 * decoupled_weight_decay=True), foreach=False, maximize=False, amsgrad=False, capturable=False.
 * Per element, with t = step (1-based) and the hyperparameters as doubles (Python floats):
 *   scalars (double, once per call, as Python computes them):
 *     bc1 = 1 - pow(beta1, t)   bc2 = 1 - pow(beta2, t)   step_size = lr / bc1
 *     bc2_sqrt = pow(bc2, 0.5)
 *   then in f32 with the scalars rounded to f32 (as torch passes a Python scalar to an f32 op):
 *     g  = g * gscale                              (clip_grad_norm_'s g.mul_(clip_coef))
 *     p  = p * f32(1 - lr * weight_decay)          (param.mul_; skipped when weight_decay == 0)
 *     m  = fma(w, g - m, m)      w = f32(1 - beta1) (exp_avg.lerp_(g, 1 - beta1); for w >= 0.5
 *                                                   torch's lerp is fma(w - 1, g - m, g))
 *     v  = fma(f32(1 - beta2) * g, g, v * f32(beta2))   (mul_(beta2).addcmul_(g, g, 1 - beta2))
 *     d  = sqrt(v) / f32(bc2_sqrt) + f32(eps)
 *     p  = p + (f32(-step_size) * m) / d           (param.addcdiv_(m, d, value=-step_size))
 * Every operation above is correctly rounded, so the AVX2 and the portable path agree bit for
 * bit. The one difference from torch's CPU kernels: torch's vectorized sqrt is not correctly
 * rounded (measured up to 0.75 ulp on AVX-512), so d can differ by 1 ulp there; the effect on p
 * is a relative 2^-23 of the update, far below an ulp of p (tests/test_optim.c).
 * (The torch kernels fuse lerp and addcmul into fma, on vector and tail elements alike; measured
 * on torch 2.15 AVX-512: all other steps bit-identical to the formulas above.) */
#ifndef CD_TRAIN_OPTIM_H
#define CD_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

/* Doubles, not floats: torch's hyperparameters are Python floats, and f32(0.9) or f32(1e-3)
 * would change 1 - beta1 and lr / bc1 by an ulp or more. */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} cd_adamw_cfg;

/* torch.optim.AdamW's defaults. */
#define CD_ADAMW_DEFAULTS ((cd_adamw_cfg){1e-3, 0.9, 0.999, 1e-8, 1e-2})

/* One AdamW step (above) on n floats: p, m (exp_avg), v (exp_avg_sq) updated in place, both
 * moments zero before step 1; g is read only, scaled by gscale first (1 = no clipping). step >= 1
 * is the number of this step (torch's state["step"] after its increment). */
void cd_adamw_step(const cd_adamw_cfg *c, int64_t step, float *p, const float *g, float gscale, float *m, float *v,
                   size_t n, int threads);
/* The same on one thread without SIMD (the portable reference; bit-identical by construction,
 * exposed for the test that checks it). */
void cd_adamw_step_scalar(const cd_adamw_cfg *c, int64_t step, float *p, const float *g, float gscale, float *m,
                          float *v, size_t n);

/* Global L2 norm of `count` gradient ranges g[i][0 .. n[i]) (sqrt of the sum of squares). Each
 * range is cut into blocks of CD_NORM_BLOCK floats; a block's squares are summed in double by
 * four interleaved accumulators ((a0 + a1) + (a2 + a3)), then the block sums are added in order
 * (range by range). Exact squares, fixed order: the same bits for any thread count. */
#define CD_NORM_BLOCK 4096
double cd_grad_norm(const float *const *g, const size_t *n, size_t count, int threads);

/* torch.nn.utils.clip_grad_norm_'s coefficient clamp(max_norm / (norm + 1e-6), max=1), computed
 * as torch does in f32: (1 / (f32(norm) + f32(1e-6))) * max_norm (Python's max_norm / tensor is
 * tensor.reciprocal() * max_norm). max_norm <= 0 (or NaN): 1 (no clipping). A NaN norm gives NaN,
 * as in torch (error_if_nonfinite=False); an infinite norm gives 0. */
float cd_clip_coef(double norm, float max_norm);

/* EMA of weights: e = decay * e + (1 - decay) * p, in f32, (1 - decay) rounded to f32 first and
 * the two products rounded before the sum (no fma). */
void cd_ema_update(float *e, const float *p, size_t n, float decay, int threads);

/* 1 if name matches any of the comma-separated fnmatch(3) globs in patterns (flags 0: '*' also
 * matches '.'), e.g. "*.attn.to_q.*,*.attn.to_k.*". Blanks around a glob are ignored, empty
 * globs match nothing; NULL patterns or name: 0. */
int cd_name_matches(const char *patterns, const char *name);

#endif
