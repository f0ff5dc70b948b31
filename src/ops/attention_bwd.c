/* attention_bwd.c — public entry points of the attention backward: argument checks and dispatch
 * to the reference (attn_bwd_ref.c) or fast (attn_bwd_cpu.c) CPU backends. */
#include "../backend/cpu/attn_bwd.h"

static cd_status check_call(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                            const float *sw, const float *o, const float *lse, const float *dout, float *dq, float *dk,
                            float *dv, float *dsw) {
    cd_status s = cd_attn_validate(ctx, d);
    if (s) return s;
    if (!q || !k || !v || !o || !lse || !dout)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention backward: q, k, v, o, lse and dout must be non-NULL");
    if (!dq || !dk || !dv)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention backward: dq, dk and dv must be non-NULL");
    if (cd_attn_pooled(d) && (!sw || !dsw))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "attention backward: down factor %d needs spatial_weight and "
                            "dspatial_weight [%d, %d]",
                            d->down, d->down, d->down);
    return CD_OK;
}

cd_status cd_attention_backward(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                                const float *sw, const float *o, const float *lse, const float *dout, float *dq,
                                float *dk, float *dv, float *dsw) {
    cd_status s = check_call(ctx, d, q, k, v, sw, o, lse, dout, dq, dk, dv, dsw);
    return s ? s : cd_attn_bwd_cpu_run(ctx, d, q, k, v, sw, o, lse, dout, dq, dk, dv, dsw);
}

cd_status cd_attention_backward_reference(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                                          const float *v, const float *sw, const float *o, const float *lse,
                                          const float *dout, float *dq, float *dk, float *dv, float *dsw) {
    cd_status s = check_call(ctx, d, q, k, v, sw, o, lse, dout, dq, dk, dv, dsw);
    return s ? s : cd_attn_bwd_reference_run(ctx, d, q, k, v, sw, o, lse, dout, dq, dk, dv, dsw);
}
