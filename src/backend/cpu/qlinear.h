/* qlinear.h — the CPU linear on quantized weights of the 32-element families (Q8_0, Q4_0):
 * y [n, out] = x [n, in] . W^T + b, W as stored in a GGUF file (rows of in/32 blocks), computed
 * with the weights still quantized. The activations are quantized per 32-element block to int8
 * with one f32 scale (d = max|x| / 127, q = round-half-even(x / d)), each (weight block,
 * activation block) pair gives an exact int32 dot product, and the output accumulates
 * d_w * d_x * sumi in f32. Not wired into the ops table yet (docs/qlinear.md). */
#ifndef CD_QLINEAR_H
#define CD_QLINEAR_H

#include "../../util/internal.h"

#include <stddef.h>
#include <stdint.h>

/* One quantized activation block: 32 int8 values (|q| <= 127) and their f32 scale. 36 bytes, so
 * a block is 9 floats of the context's work area. */
typedef struct {
    float d;
    int8_t q[32];
} cd_qx_block;

#define CD_QX_FLOATS 9 /* sizeof(cd_qx_block) / sizeof(float) */

/* Floats of ctx work area cd_qlinear_cpu needs (0 if the size overflows; threads does not
 * change it: the only scratch is the quantized activations, shared by every thread). */
size_t cd_qlinear_cpu_scratch_floats(size_t n, int32_t in, int threads);

/* y [n, out] = x [n, in] . W^T (+ b [out] when b is not NULL). w: `out` rows of in/32 blocks of
 * wtype (CD_GGML_Q8_0 or CD_GGML_Q4_0, src/quant/ggml_types.h), no alignment needed. The ISA path
 * is ctx's (generic, or AVX2 for the AVX2 and AVX-512 paths); OpenMP over output-row tiles.
 * Errors: CD_ERR_SHAPE (in not a positive multiple of 32, out < 1), CD_ERR_UNSUPPORTED (another
 * wtype), CD_ERR_INVALID_ARG (NULL pointers), CD_ERR_OOM (scratch). */
cd_status cd_qlinear_cpu(cd_ctx *ctx, const float *x, size_t n, const void *w, uint32_t wtype, int32_t out, int32_t in,
                         const float *b, float *y);

/* The reference: the same activation quantization (cd_qlinear_quantize_x), each weight block
 * dequantized exactly, products and sums in double. Single-threaded, slow; for tests. Same
 * errors as cd_qlinear_cpu, plus CD_ERR_OOM for its own buffer. */
cd_status cd_qlinear_ref(cd_ctx *ctx, const float *x, size_t n, const void *w, uint32_t wtype, int32_t out, int32_t in,
                         const float *b, float *y);

/* Quantizes n rows of in (a multiple of 32) floats into n * in/32 blocks, row-major. */
void cd_qlinear_quantize_x(const float *x, size_t n, size_t in, cd_qx_block *xq);

/* Dequantizes one row of nb blocks of wtype (Q8_0 or Q4_0) to f32, exactly (d * q in f32 is exact:
 * an 11-bit significand times a value of at most 8 bits). */
void cd_qlinear_dequant_row(const void *w, uint32_t wtype, size_t nb, float *dst);

/* IEEE half to f32, exact (subnormals, inf and NaN kept). */
static inline float cd_qf16_to_f32(uint16_t h) {
    const uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t u;
    if (e == 0) {
        const float f = (float)m * (1.0f / 16777216.0f); /* m * 2^-24, exact */
        return s ? -f : f;
    }
    u = e == 31 ? s | 0x7f800000u | (m << 13) : s | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Per-ISA kernels: output rows [o0, o1) of y [n, ldy] for all n activation rows (y columns o0..o1,
 * bias added when b is not NULL). wrow: bytes of one weight row. */
typedef void (*cd_qlinear_kern)(const cd_qx_block *xq, size_t n, size_t nb, const uint8_t *w, size_t wrow,
                                uint32_t wtype, int32_t o0, int32_t o1, const float *b, float *y, size_t ldy);
void cd_qlinear_kern_generic(const cd_qx_block *xq, size_t n, size_t nb, const uint8_t *w, size_t wrow, uint32_t wtype,
                             int32_t o0, int32_t o1, const float *b, float *y, size_t ldy);
void cd_qlinear_kern_avx2(const cd_qx_block *xq, size_t n, size_t nb, const uint8_t *w, size_t wrow, uint32_t wtype,
                          int32_t o0, int32_t o1, const float *b, float *y, size_t ldy);

#endif
