/* attn_time_cpu.c — the CPU tables' time_attention (ops.h): the fast kernel on random bf16 q/k/v,
 * wall time per call after one warm-up call (src/ops/attention_time.c takes the median). */
#include "../../ops/attn.h"
#include "../../ops/ops.h"

#include <stdlib.h>

cd_status cd_cpu_time_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, int reps, double *t) {
    (void)self;
    const size_t nv = (size_t)d->heads * cd_attn_tokens(d) * (size_t)d->head_dim;
    const int df = cd_attn_pooled(d) ? d->down : 0;
    uint16_t *q = malloc(nv * 2), *k = malloc(nv * 2), *v = malloc(nv * 2);
    float *o = malloc(nv * 4), *lse = malloc((size_t)d->heads * cd_attn_tokens(d) * 4);
    float sw[64 * 64];
    cd_status s = CD_OK;
    if (!q || !k || !v || !o || !lse) {
        s = cd_set_error(ctx, CD_ERR_OOM, "attention timing: out of memory");
        goto done;
    }
    cd_attn_fill_bf16(q, nv, 1);
    cd_attn_fill_bf16(k, nv, 2);
    cd_attn_fill_bf16(v, nv, 3);
    for (int i = 0; i < df * df && i < 64 * 64; i++) sw[i] = 1.0f / (float)(df * df);
    for (int r = -1; r < reps && !s; r++) {
        const double t0 = cd_now();
        s = cd_attention_forward(ctx, d, CD_DTYPE_BF16, q, k, v, sw, o, lse);
        if (r >= 0) t[r] = cd_now() - t0;
    }
done:
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
    return s;
}
