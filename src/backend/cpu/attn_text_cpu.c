/* attn_text_cpu.c — attention of the text encoders (ops.h attention_bias) on the CPU: one OpenMP
 * task per (head, query) row; the row's scores live in a per-thread strip of n floats from the
 * context's work area, so memory is O(threads * (n + HD)), never n x n. A T5-XXL layer at n = 512
 * is 2 x 2 x 512^2 x 64 x 64 = 4.3 GFLOP against 2 x 512 x 1.6e8 = 1.6e11 FLOP of its linears, so
 * plain loops (written so that the compiler vectorizes the dot products and the P.V update) are
 * enough here. Tested against ops_ref.c through the op harness. */
#include "attn_text_cpu.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

size_t cd_attn_bias_cpu_scratch_floats(const cd_attn_bias_desc *d, int threads) {
    return (size_t)(threads > 0 ? threads : 1) * ((size_t)d->n + (size_t)d->head_dim);
}

/* q.k with 8 partial sums (a vectorizable reduction without -ffast-math). */
static float dot(const float *a, const float *b, size_t n) {
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

cd_status cd_cpu_attention_bias(cd_ctx *ctx, const cd_attn_bias_desc *d, const float *q, const float *k, const float *v,
                                const float *rel, float *o) {
    if (d->heads < 1 || d->n < 1 || d->head_dim < 1)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention_bias: heads, n and head_dim must be >= 1");
    const size_t n = (size_t)d->n, hd = (size_t)d->head_dim, rows = (size_t)d->heads * n;
    const size_t strip = n + hd;
    float *work = cd_ctx_work(ctx, cd_attn_bias_cpu_scratch_floats(d, ctx->threads));
    if (!work) return CD_ERR_OOM;
#pragma omp parallel num_threads(ctx->threads)
    {
#ifdef _OPENMP
        float *s = work + (size_t)omp_get_thread_num() * strip;
#else
        float *s = work; /* one thread: one strip */
        (void)strip;
#endif
        float *acc = s + n;
#pragma omp for schedule(dynamic, 16)
        for (size_t r = 0; r < rows; r++) {
            const size_t h = r / n, i = r % n;
            const float *qi = q + r * hd, *kh = k + h * n * hd, *vh = v + h * n * hd;
            const float *bias = rel ? rel + h * (2 * n - 1) + (n - 1 - i) : NULL; /* bias[j]: key j */
            const size_t nk = d->causal ? i + 1 : n;
            float mx = -INFINITY;
            for (size_t j = 0; j < nk; j++) {
                s[j] = d->scale * dot(qi, kh + j * hd, hd) + (bias ? bias[j] : 0.0f);
                mx = s[j] > mx ? s[j] : mx;
            }
            double sum = 0;
            for (size_t c = 0; c < hd; c++) acc[c] = 0;
            for (size_t j = 0; j < nk; j++) {
                const float p = expf(s[j] - mx);
                sum += p;
                const float *vj = vh + j * hd;
                for (size_t c = 0; c < hd; c++) acc[c] += p * vj[c];
            }
            const float inv = (float)(1.0 / sum);
            float *oi = o + r * hd;
            for (size_t c = 0; c < hd; c++) oi[c] = acc[c] * inv;
        }
    }
    return CD_OK;
}
