/* attn_lab.h — the kernel lab's attention variants (attn_lab.cu; lab/attention/NOTES.md): every
 * kernel version by the variant number of the notes and BENCHMARKS.md, 0..12. The variants that
 * ship (0 default, 11 flash2p_2x32, 12 flash2p_4x16) run the library's own kernels through
 * cd_cuda_attention_bf16; the others are built here only. Same arguments and semantics as
 * cd_cuda_attention_bf16 (src/backend/cuda/cuda.h). */
#ifndef CD_LAB_ATTN_LAB_H
#define CD_LAB_ATTN_LAB_H

#include "../../src/backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Name of a variant for reports; NULL past the last one (and in builds without CUDA). */
const char *cd_lab_attention_variant_name(int variant);
cd_status cd_lab_attention_bf16(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q, const uint16_t *d_k,
                                const uint16_t *d_v, const uint16_t *d_ek, const uint16_t *d_ev, int64_t E, float *d_o,
                                float *d_lse, int variant);

#ifdef __cplusplus
}
#endif

#endif
