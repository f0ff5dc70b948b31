/* attention_time.c — cd_attention_time: one attention layer timed on a device, for benchmarks
 * (`cleardit bench attention --device`). Inputs are random bf16, made on the host in one block of
 * at most 16 Mi values and repeated to fill the device buffers (uploading gigabytes of fresh
 * random numbers at 8192^2 would cost more than the measurement). */
#include "attn.h"
#include "../backend/cuda/cuda.h"

#include <stdlib.h>

static void fill(uint16_t *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        const float u = (float)((double)(cd_mix64(seed ^ cd_mix64(i)) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
        p[i] = cd_f32_to_bf16(u);
    }
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static cd_status time_cpu(cd_ctx *ctx, const cd_attn_desc *d, int reps, double *t) {
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
    fill(q, nv, 1); fill(k, nv, 2); fill(v, nv, 3);
    for (int i = 0; i < df * df && i < 64 * 64; i++) sw[i] = 1.0f / (float)(df * df);
    for (int r = -1; r < reps && !s; r++) {
        const double t0 = cd_now();
        s = cd_attention_forward(ctx, d, CD_DTYPE_BF16, q, k, v, sw, o, lse);
        if (r >= 0) t[r] = cd_now() - t0;
    }
done:
    free(q); free(k); free(v); free(o); free(lse);
    return s;
}

/* Fills a device buffer of n bf16 values from a host block (repeated). */
static cd_status fill_dev(cd_ctx *ctx, uint16_t *d, size_t n, const uint16_t *blk, size_t nb) {
    cd_status s = CD_OK;
    for (size_t i = 0; i < n && !s; i += nb) s = cd_cuda_h2d(ctx, d + i, blk, (n - i < nb ? n - i : nb) * 2);
    return s;
}

static cd_status time_cuda(cd_ctx *ctx, const cd_attn_desc *d, int reps, double *t) {
    cd_status s = cd_cuda_init(ctx);
    if (s) return s;
    if (!cd_cuda_attention_supports(d->head_dim))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "cuda attention: head_dim %d is not built (32, 64, 128)",
                            d->head_dim);
    const size_t N = cd_attn_tokens(d), nv = (size_t)d->heads * N * (size_t)d->head_dim;
    const int64_t E = d->radius > 0 ? (int64_t)d->text_len +
                      (cd_attn_pooled(d) ? (int64_t)(d->grid_h / d->down) * (d->grid_w / d->down) : 0) : 0;
    const size_t ne = (size_t)d->heads * (size_t)E * (size_t)d->head_dim;
    const size_t nb = nv < ((size_t)1 << 24) ? nv : ((size_t)1 << 24);
    uint16_t *blk = malloc(nb * 2);
    void *q = NULL, *k = NULL, *v = NULL, *ek = NULL, *ev = NULL, *o = NULL, *lse = NULL;
    if (!blk) return cd_set_error(ctx, CD_ERR_OOM, "attention timing: out of memory");
    fill(blk, nb, 7);
    if ((s = cd_cuda_alloc(ctx, nv * 2, &q)) || (s = cd_cuda_alloc(ctx, nv * 2, &k)) ||
        (s = cd_cuda_alloc(ctx, nv * 2, &v)) || (s = cd_cuda_alloc(ctx, ne * 2, &ek)) ||
        (s = cd_cuda_alloc(ctx, ne * 2, &ev)) || (s = cd_cuda_alloc(ctx, nv * 4, &o)) ||
        (s = cd_cuda_alloc(ctx, (size_t)d->heads * N * 4, &lse)))
        goto done;
    if ((s = fill_dev(ctx, q, nv, blk, nb)) || (s = fill_dev(ctx, k, nv, blk + 1, nb - 1)) ||
        (s = fill_dev(ctx, v, nv, blk + 2, nb - 2)) || (s = fill_dev(ctx, ek, ne, blk + 3, nb - 3)) ||
        (s = fill_dev(ctx, ev, ne, blk + 4, nb - 4)))
        goto done;
    for (int r = -1; r < reps && !s; r++) {
        if ((s = cd_cuda_timer_start(ctx))) break;
        s = cd_cuda_attention_bf16(ctx, d, q, k, v, ek, ev, E, o, lse, 0);
        double sec = 0;
        cd_status s2 = cd_cuda_timer_stop(ctx, &sec);
        if (!s) s = s2;
        if (r >= 0) t[r] = sec;
    }
    if (!s) s = cd_cuda_sync(ctx);
done:
    cd_cuda_free(ctx, q); cd_cuda_free(ctx, k); cd_cuda_free(ctx, v); cd_cuda_free(ctx, ek);
    cd_cuda_free(ctx, ev); cd_cuda_free(ctx, o); cd_cuda_free(ctx, lse);
    free(blk);
    return s;
}

cd_status cd_attention_time(cd_ctx *ctx, cd_device dev, const cd_attn_desc *d, int reps,
                            double *seconds) {
    *seconds = 0;
    cd_status s = cd_attn_validate(ctx, d);
    if (s) return s;
    if (reps < 1 || reps > 1000)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention timing: reps must be 1..1000");
    double *t = calloc((size_t)reps, sizeof *t);
    if (!t) return cd_set_error(ctx, CD_ERR_OOM, "attention timing: out of memory");
    if (dev == CD_DEVICE_CPU) s = time_cpu(ctx, d, reps, t);
    else if (dev == CD_DEVICE_CUDA) s = time_cuda(ctx, d, reps, t);
    else s = cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention timing: unknown device %d", (int)dev);
    if (!s) *seconds = median(t, reps);
    free(t);
    return s;
}
