/* clip_text.c — seconds per CLIP-L text encode (src/model/clip_text.c) on the fast CPU table, with
 * random weights (cd_clip_text_random) in F32 and BF16, next to the linear op's own rate on the
 * encoder's three linear shapes (n x 768 -> 768, 768 -> 3072, 3072 -> 768) with the same weights.
 *
 *   make bench-clip                    # n = 77 (FLUX's CLIP length), 5 timed encodes per dtype
 *   build/bench_clip_text 77 10        # n, reps
 *
 * Per dtype: one warm-up encode (grows the context's scratch), then the median of `reps` encodes.
 * GFLOP/s = cd_clip_text_flops / time (linears 2 n (4 H^2 + 2 H I) per layer plus the causal
 * attention's q.k and P.v). Threads: the context default (OMP_NUM_THREADS or all cores). Not a
 * test: tests do not time things. docs/clip_text.md records the numbers. */
#include "../src/model/clip_text_impl.h"

#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of reps linear calls (one warm-up) of layer 0's weight w on n rows. */
static double time_linear(cd_ctx *ctx, const cd_weight *w, const float *bias, int32_t n, int reps) {
    float *x = calloc((size_t)n * (size_t)w->in, sizeof(float)), *y = malloc((size_t)n * (size_t)w->out * 4);
    double t[64] = {0};
    if (!x || !y || reps > 64) return -1;
    for (size_t i = 0; i < (size_t)n * (size_t)w->in; i++) x[i] = (float)((i * 7919u) % 1000) / 1000.0f - 0.5f;
    cd_ops_cpu()->linear(ctx, x, (size_t)n, w, bias, y);
    for (int r = 0; r < reps; r++) {
        const double t0 = cd_now();
        cd_ops_cpu()->linear(ctx, x, (size_t)n, w, bias, y);
        t[r] = cd_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    free(x);
    free(y);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    const int32_t n = argc > 1 ? atoi(argv[1]) : 77;
    const int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || n > 77 || reps < 1 || reps > 64) {
        fprintf(stderr, "usage: %s [n <= 77] [reps <= 64]\n", argv[0]);
        return 2;
    }
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(NULL, &ctx)) return 1;
    const cd_clip_config cfg = {.vocab = 49408,
                                .hidden = 768,
                                .heads = 12,
                                .inter = 3072,
                                .layers = 12,
                                .max_pos = 77,
                                .eps = 1e-5f,
                                .eos_id = 49407,
                                .quick_gelu = 1};
    int32_t ids[77];
    for (int i = 0; i < n; i++) ids[i] = i == 0 ? 49406 : i < 20 ? 320 + 13 * i : 49407;
    printf("CLIP-L text encode, n = %d, %d threads, cpu table\n", n, ctx->threads);
    const cd_dtype dts[2] = {CD_DTYPE_F32, CD_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        cd_clip_text *m = NULL;
        if (cd_clip_text_random(ctx, &cfg, dts[d], 1, &m)) {
            fprintf(stderr, "error: %s\n", cd_ctx_error(ctx));
            return 1;
        }
        static float hidden[77 * 768], pooled[768];
        double t[64];
        if (cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, n, hidden, pooled)) {
            fprintf(stderr, "error: %s\n", cd_ctx_error(ctx));
            return 1;
        }
        for (int r = 0; r < reps; r++) {
            const double t0 = cd_now();
            cd_clip_text_encode(ctx, m, cd_ops_cpu(), ids, n, hidden, pooled);
            t[r] = cd_now() - t0;
        }
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        const double sec = t[reps / 2], fl = cd_clip_text_flops(&cfg, n);
        const cd_clip_layer *L = &m->lay[0];
        const double tq = time_linear(ctx, &L->q, L->qb, n, reps), t1 = time_linear(ctx, &L->fc1, L->fc1b, n, reps),
                     t2 = time_linear(ctx, &L->fc2, L->fc2b, n, reps);
        const double lin_fl = 2.0 * n * (768.0 * 768 + 2.0 * 768 * 3072);
        printf("%-4s weights: %.3f s per encode (median of %d), %.1f GFLOP/s; linear op alone: %.1f GFLOP/s "
               "(768->768 %.2f ms, 768->3072 %.2f ms, 3072->768 %.2f ms)\n",
               cd_dtype_name(dts[d]), sec, reps, fl / sec * 1e-9, lin_fl / (tq + t1 + t2) * 1e-9, tq * 1e3, t1 * 1e3,
               t2 * 1e3);
        cd_clip_text_free(m);
    }
    cd_ctx_free(ctx);
    return 0;
}
