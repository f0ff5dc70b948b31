/* attention.c — the attention op's public entry points: validation, exact pair/FLOP counting
 * (docs/clear.md "Exact FLOP accounting") and dispatch to the reference or fast CPU kernels. */
#include "attn.h"

#include <math.h>

/* Keep every product of dimensions far from overflow and every radius squarable in int64. */
#define CD_MAX_SIDE (1 << 20)
#define CD_MAX_TOK ((int64_t)INT32_MAX) /* kernels index rows with int32; N^2 fits uint64 */
#define CD_MAX_HEADS 4096
#define CD_MAX_HD 4096

cd_status cd_attn_validate(cd_ctx *ctx, const cd_attn_desc *d) {
    if (!d) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: no descriptor");
    if (d->heads < 1 || d->heads > CD_MAX_HEADS)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: heads must be in 1..%d (got %d)", CD_MAX_HEADS,
                            d->heads);
    if (d->head_dim < 1 || d->head_dim > CD_MAX_HD)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: head_dim must be in 1..%d (got %d)", CD_MAX_HD,
                            d->head_dim);
    if (d->text_len < 0)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: text length must be >= 0 (got %d)", d->text_len);
    if (d->grid_h < 1 || d->grid_w < 1 || d->grid_h > CD_MAX_SIDE || d->grid_w > CD_MAX_SIDE)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: grid %dx%d must have sides in 1..%d", d->grid_h,
                            d->grid_w, CD_MAX_SIDE);
    if ((int64_t)d->text_len + (int64_t)d->grid_h * d->grid_w > CD_MAX_TOK)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: sequence too long");
    if (d->radius < 0)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: radius must be >= 1 for CLEAR or 0 for dense (got %d)",
                            d->radius);
    if (d->down < 0)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: down factor must be >= 1 (got %d)", d->down);
    if (d->down >= 2) {
        if (d->radius == 0)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: down-sampled keys (down=%d) need CLEAR (a radius)",
                                d->down);
        if (d->grid_h % d->down || d->grid_w % d->down)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: grid %dx%d is not divisible by down factor %d",
                                d->grid_h, d->grid_w, d->down);
    }
    if (!(d->scale >= 0.0f) || isinf(d->scale))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: scale must be finite and >= 0");
    return CD_OK;
}

uint64_t cd_attn_pairs(const cd_attn_desc *d) {
    uint64_t T = (uint64_t)d->text_len, H = (uint64_t)d->grid_h, W = (uint64_t)d->grid_w;
    uint64_t N = T + H * W;
    if (d->radius <= 0) return N * N;
    /* text rows: all N keys; image rows: T text keys + clipped disc (+ pooled keys). The disc is
     * separable by row offset: sum_dy (H-|dy|) * sum_{|dx|<=hw(dy)} (W-|dx|). */
    uint64_t pairs = T * N + H * W * T;
    int32_t r = cd_attn_eff_radius(d);
    for (int64_t dy = -(int64_t)(r - 1); dy <= r - 1; dy++) {
        uint64_t ady = (uint64_t)(dy < 0 ? -dy : dy);
        if (ady >= H) continue;
        int64_t hw = cd_disc_halfwidth(r, dy);
        if (hw >= (int64_t)W) hw = (int64_t)W - 1;
        /* sum_{dx=-hw..hw} (W - |dx|) = (2hw+1)W - hw(hw+1) */
        uint64_t row = (uint64_t)(2 * hw + 1) * W - (uint64_t)hw * (uint64_t)(hw + 1);
        pairs += (H - ady) * row;
    }
    if (cd_attn_pooled(d)) pairs += H * W * (H / (uint64_t)d->down) * (W / (uint64_t)d->down);
    return pairs;
}

double cd_attn_flops(const cd_attn_desc *d) {
    return 4.0 * (double)cd_attn_pairs(d) * (double)d->heads * (double)d->head_dim;
}

static cd_status check_call(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                            const void *v, const float *sw, float *o) {
    cd_status s = cd_attn_validate(ctx, d);
    if (s) return s;
    if (dt != CD_DTYPE_F32 && dt != CD_DTYPE_BF16)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "attention: inputs must be F32 or BF16 (got %s)",
                            cd_dtype_name(dt));
    if (!q || !k || !v || !o) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: q, k, v and o must be non-NULL");
    if (cd_attn_pooled(d) && !sw)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: down factor %d needs a spatial_weight [%d, %d]",
                            d->down, d->down, d->down);
    return CD_OK;
}

cd_status cd_attention_forward(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                               const void *v, const float *sw, float *o, float *lse) {
    cd_status s = check_call(ctx, d, dt, q, k, v, sw, o);
    return s ? s : cd_attn_cpu_run(ctx, d, dt, q, k, v, sw, o, lse);
}

cd_status cd_attention_reference(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                                 const void *v, const float *sw, float *o, float *lse) {
    cd_status s = check_call(ctx, d, dt, q, k, v, sw, o);
    return s ? s : cd_attn_reference_run(ctx, d, dt, q, k, v, sw, o, lse);
}
