/* attention_time.c — cd_attention_time: one attention layer timed on a device, for benchmarks
 * (`cleardit bench attention --device`). Each backend times its own kernel (the table's
 * time_attention: src/backend/cpu/attn_time_cpu.c, src/backend/cuda/attn_time_cuda.cu) on random
 * bf16 inputs from cd_attn_fill_bf16; this file validates, dispatches and takes the median. */
#include "attn.h"
#include "ops.h"

#include <stdlib.h>

void cd_attn_fill_bf16(uint16_t *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        const float u =
            (float)((double)(cd_mix64(seed ^ cd_mix64(i)) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
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

cd_status cd_attention_time(cd_ctx *ctx, cd_device dev, const cd_attn_desc *d, int reps, double *seconds) {
    *seconds = 0;
    cd_status s = cd_attn_validate(ctx, d);
    if (s) return s;
    if (reps < 1 || reps > 1000) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention timing: reps must be 1..1000");
    double *t = calloc((size_t)reps, sizeof *t);
    if (!t) return cd_set_error(ctx, CD_ERR_OOM, "attention timing: out of memory");
    const cd_ops *ops = NULL;
    const cd_op_desc od = {.op = CD_OP_ATTENTION, .attn = d};
    s = cd_backend_ops(ctx, dev, &ops);
    if (!s) s = ops->supports(ops, ctx, &od);
    if (!s && !ops->time_attention)
        s = cd_set_error(ctx, CD_ERR_UNSUPPORTED, "attention timing: the %s backend has no timer", ops->name);
    if (!s) s = ops->time_attention(ops, ctx, d, reps, t);
    if (!s) *seconds = median(t, reps);
    free(t);
    return s;
}
