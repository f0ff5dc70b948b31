/* gemm_bf16.h — y [n, out] = x [n, in] . W^T + b for BF16 weights W [out, in] through AVX512_BF16
 * (vdpbf16ps), gemm_bf16_avx512.c. x is rounded to bf16 (nearest even) once per call, so unlike the
 * f32-tile path (cpu_linear) the activations lose precision too: products are exact bf16 x bf16,
 * accumulated in f32. cpu_linear uses it for BF16 weights where the CPU has AVX512_BF16 (2.1-2.5x
 * the f32-tile path, bench/linear_bf16.c); activations are then rounded to bf16 (relative L2 error
 * ~1.5e-3 against f32 activations, as in bf16 PyTorch inference). */
#ifndef CD_GEMM_BF16_H
#define CD_GEMM_BF16_H

#include "../../ops/ops.h"

/* w->dtype must be BF16; b [out] f32 or NULL; x and y do not alias. Scratch from cd_ctx_work.
 * CD_ERR_UNSUPPORTED where ctx does not run AVX512_BF16 (ctx->has_bf16 == 0) or the library was
 * built without AVX512_BF16 support. */
cd_status cd_gemm_bf16_avx512(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y);
/* Floats of ctx work area it needs for n rows of `in` inputs on `threads` threads. */
size_t cd_gemm_bf16_scratch_floats(size_t n, int in, int threads);

#endif
