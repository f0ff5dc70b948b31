/* attn_text_cpu.h — the fast CPU attention of the text encoders (attn_text_cpu.c). */
#ifndef CD_ATTN_TEXT_CPU_H
#define CD_ATTN_TEXT_CPU_H

#include "../../ops/ops.h"

/* Floats of ctx's work area the call needs: one score row and one output row per thread. */
size_t cd_attn_bias_cpu_scratch_floats(const cd_attn_bias_desc *d, int threads);
/* ops.h attention_bias on host memory. */
cd_status cd_cpu_attention_bias(cd_ctx *ctx, const cd_attn_bias_desc *d, const float *q, const float *k, const float *v,
                                const float *rel, float *o);

#endif
