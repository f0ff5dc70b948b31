/* quant.h — row (de)quantization of GGUF's tensor types (ggml numbering, ggml_types.h), bit for bit
 * equal to the reference in the `gguf` PyPI package (gguf-py quants.py): the dequantizers compute
 * in float32 in the same operation order as its numpy code (no fused multiply-add), and the
 * quantizers produce the bytes its quantize() produces. docs/quant.md describes the block layouts.
 * Library-private. Rows are independent: callers thread over rows. Sources may be unaligned (mapped
 * files); they are read bytewise. */
#ifndef CD_QUANT_H
#define CD_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "cleardit.h"

/* 1 when cd_dequant_row serves `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS. */
int cd_dequant_supported(uint32_t type);

/* dst[n] = the values of the n elements at src. n must be a multiple of the type's block
 * (cd_ggml_type_get) and the type supported: the caller checks both (nothing is written otherwise). */
void cd_dequant_row(uint32_t type, const void *src, float *dst, size_t n);

/* 1 when cd_quant_row serves `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (the types
 * gguf-py quantizes; it has no K-quant or IQ quantizers). */
int cd_quant_supported(uint32_t type);

/* dst[cd_ggml_row_bytes(type, n)] = src[n] quantized to `type`, the bytes gguf-py's quantize() writes.
 * CD_ERR_UNSUPPORTED for other types, CD_ERR_INVALID_ARG when n is not a multiple of the block.
 * Inputs must be finite for the block types (gguf-py's results for NaN/inf there are undefined
 * casts); F16/BF16 convert NaN and inf as numpy does. */
cd_status cd_quant_row(cd_ctx *ctx, uint32_t type, const float *src, void *dst, size_t n);

/* Exact half -> float (NaN payloads kept, as numpy) and float -> half, round to nearest even
 * (overflow to inf, NaN stays NaN), as numpy's astype(np.float16). */
float cd_quant_f16_to_f32(uint16_t h);
uint16_t cd_quant_f32_to_f16(float f);

#endif
