/* attn_time_cuda.cu — the CUDA table's time_attention (ops.h): the attention kernels alone on
 * random bf16 inputs in device memory, timed with device events (src/ops/attention_time.c takes
 * the median). Inputs come from one host block of at most 16 Mi values repeated to fill the
 * buffers (uploading gigabytes of fresh random numbers at 8192^2 would cost more than the
 * measurement). */
#include "cuda.h"
#include "../../ops/attn.h"

#include <stdlib.h>

/* Fills a device buffer of n bf16 values from a host block (repeated). */
static cd_status fill_dev(cd_ctx *ctx, uint16_t *d, size_t n, const uint16_t *blk, size_t nb) {
    cd_status s = CD_OK;
    for (size_t i = 0; i < n && !s; i += nb) s = cd_cuda_h2d(ctx, d + i, blk, (n - i < nb ? n - i : nb) * 2);
    return s;
}

extern "C" cd_status cd_cuda_time_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, int reps,
                                            double *t) {
    (void)self;
    cd_status s = CD_OK;
    const size_t N = cd_attn_tokens(d), nv = (size_t)d->heads * N * (size_t)d->head_dim;
    const int64_t E =
        d->radius > 0
            ? (int64_t)d->text_len + (cd_attn_pooled(d) ? (int64_t)(d->grid_h / d->down) * (d->grid_w / d->down) : 0)
            : 0;
    const size_t ne = (size_t)d->heads * (size_t)E * (size_t)d->head_dim;
    const size_t nb = nv < ((size_t)1 << 24) ? nv : ((size_t)1 << 24);
    uint16_t *blk = (uint16_t *)malloc(nb * 2);
    void *q = NULL, *k = NULL, *v = NULL, *ek = NULL, *ev = NULL, *o = NULL, *lse = NULL;
    if (!blk) return cd_set_error(ctx, CD_ERR_OOM, "attention timing: out of memory");
    cd_attn_fill_bf16(blk, nb, 7);
    if ((s = cd_cuda_alloc(ctx, nv * 2, &q)) || (s = cd_cuda_alloc(ctx, nv * 2, &k)) ||
        (s = cd_cuda_alloc(ctx, nv * 2, &v)) || (s = cd_cuda_alloc(ctx, ne * 2, &ek)) ||
        (s = cd_cuda_alloc(ctx, ne * 2, &ev)) || (s = cd_cuda_alloc(ctx, nv * 4, &o)) ||
        (s = cd_cuda_alloc(ctx, (size_t)d->heads * N * 4, &lse)))
        goto done;
    if ((s = fill_dev(ctx, (uint16_t *)q, nv, blk, nb)) || (s = fill_dev(ctx, (uint16_t *)k, nv, blk + 1, nb - 1)) ||
        (s = fill_dev(ctx, (uint16_t *)v, nv, blk + 2, nb - 2)) ||
        (s = fill_dev(ctx, (uint16_t *)ek, ne, blk + 3, nb - 3)) ||
        (s = fill_dev(ctx, (uint16_t *)ev, ne, blk + 4, nb - 4)))
        goto done;
    for (int r = -1; r < reps && !s; r++) {
        if ((s = cd_cuda_timer_start(ctx))) break;
        s = cd_cuda_attention_bf16(ctx, d, (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v,
                                   (const uint16_t *)ek, (const uint16_t *)ev, E, (float *)o, (float *)lse, 0);
        double sec = 0;
        cd_status s2 = cd_cuda_timer_stop(ctx, &sec);
        if (!s) s = s2;
        if (r >= 0) t[r] = sec;
    }
    if (!s) s = cd_cuda_sync(ctx);
done:
    cd_cuda_free(ctx, q);
    cd_cuda_free(ctx, k);
    cd_cuda_free(ctx, v);
    cd_cuda_free(ctx, ek);
    cd_cuda_free(ctx, ev);
    cd_cuda_free(ctx, o);
    cd_cuda_free(ctx, lse);
    free(blk);
    return s;
}
