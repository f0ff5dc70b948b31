/* attn_lab_none.c — attn_lab.h in a build without CUDA (Makefile: CUDA=0): no variants, and a
 * call fails the way the library's CUDA stub does (src/backend/nocuda/cuda_stub.c). */
#include "attn_lab.h"

const char *cd_lab_attention_variant_name(int variant) {
    (void)variant;
    return NULL;
}

cd_status cd_lab_attention_bf16(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q, const uint16_t *d_k,
                                const uint16_t *d_v, const uint16_t *d_ek, const uint16_t *d_ev, int64_t E, float *d_o,
                                float *d_lse, int variant) {
    return cd_cuda_attention_bf16(ctx, d, d_q, d_k, d_v, d_ek, d_ev, E, d_o, d_lse, variant);
}
