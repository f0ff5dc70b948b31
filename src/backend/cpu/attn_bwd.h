/* attn_bwd.h — private contract of the attention backward (src/ops/attention_bwd.c dispatches to
 * the two CPU backends below; inputs are validated there).
 *
 * Math (docs/clear.md masks; k', v' = the joint keys/values, pooled ones appended for image
 * queries when down >= 2):
 *   P_ij = exp(scale q_i.k'_j - lse_i)  (allowed pairs only)    D_i = dout_i . o_i
 *   dP_ij = dout_i . v'_j                dS_ij = P_ij (dP_ij - D_i)
 *   dq_i = scale sum_j dS_ij k'_j        dk'_j = scale sum_i dS_ij q_i     dv'_j = sum_i P_ij dout_i
 * and for a pooled key p = sum_{a,b} w[a][b] k_(cell p, a, b) (same for values):
 *   dk_(cell p, a, b) += w[a][b] dk'_p,   dw[a][b] += sum_p dk'_p . k_(p,a,b) + dv'_p . v_(p,a,b).
 *
 * Scratch: both backends are O(N * HD) beyond the outputs (the fast one from cd_ctx_work, so a
 * pointer obtained from cd_ctx_work before the call must not be an argument). */
#ifndef CD_ATTN_BWD_H
#define CD_ATTN_BWD_H

#include "../../ops/attn.h"

/* Plain loops, double accumulation: the oracle (attn_bwd_ref.c). */
cd_status cd_attn_bwd_reference_run(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                                    const float *sw, const float *o, const float *lse, const float *dout, float *dq,
                                    float *dk, float *dv, float *dsw);

/* OpenMP + SIMD (attn_bwd_cpu.c). */
cd_status cd_attn_bwd_cpu_run(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                              const float *sw, const float *o, const float *lse, const float *dout, float *dq,
                              float *dk, float *dv, float *dsw);

/* Floats of ctx work area cd_attn_bwd_cpu_run takes for d with `threads` threads (a trainer may
 * reserve it up front with cd_ctx_work so that the backward never allocates). */
size_t cd_attn_bwd_cpu_scratch_floats(const cd_attn_desc *d, int threads);

#endif
