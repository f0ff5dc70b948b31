/* t5_encode.c — T5 encoder time and memory with random weights (cd_t5_random: one block's weights
 * shared by every layer, so T5-XXL's FLOPs run in the memory of one block):
 *
 *   make bench-t5                                  # T5-XXL shapes, BF16, L = 512 and 256
 *   build/bench_t5_encode [f32|bf16] [layers] L... # other weights dtype / depth / lengths
 *
 * Per length: one warm-up encode, then the median of 3, as seconds and GFLOP/s over the exact
 * count (docs/t5.md): 2 L (3 D I + I D + 3 D F) per layer for the linears plus 4 L^2 I per layer
 * for attention (q.k^T and P.V). Next to it, the linear op's own rate on the same table and
 * weights dtype (the FFN's wi_0 shape, L x 4096 -> 10240, median of 3). Memory: VmHWM (peak
 * resident) and RssAnon (anonymous resident: not the weights' file pages) from /proc/self/status
 * right after the encodes of the first length (before the linear-alone test allocates). Threads: the context default (OMP_NUM_THREADS or all cores). */
#include "../src/model/t5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double median3(double *t) {
    double a = t[0], b = t[1], c = t[2];
    if (a > b) {
        double x = a;
        a = b;
        b = x;
    }
    if (b > c) b = c;
    return a > b ? a : b;
}

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key) + 1);
    if (f) fclose(f);
    return v;
}

int main(int argc, char **argv) {
    cd_dtype dt = CD_DTYPE_BF16;
    int a = 1, layers = 24;
    if (a < argc && (!strcmp(argv[a], "f32") || !strcmp(argv[a], "bf16")))
        dt = !strcmp(argv[a++], "f32") ? CD_DTYPE_F32 : CD_DTYPE_BF16;
    if (a < argc && atoi(argv[a]) > 0 && atoi(argv[a]) <= 24 && a + 1 < argc) layers = atoi(argv[a++]);
    int Ls[8] = {512, 256}, nL = 2;
    if (a < argc) nL = 0;
    for (; a < argc && nL < 8; a++) Ls[nL++] = atoi(argv[a]);
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    if (cd_ctx_create(&p, &ctx)) return 2;
    const cd_t5_config cfg = {.vocab = 32128,
                              .d_model = 4096,
                              .d_kv = 64,
                              .heads = 64,
                              .d_ff = 10240,
                              .layers = layers,
                              .buckets = 32,
                              .max_distance = 128,
                              .eps = 1e-6f};
    cd_t5 *m = NULL;
    if (cd_t5_random(ctx, &cfg, dt, 1, &m)) {
        fprintf(stderr, "%s\n", cd_ctx_error(ctx));
        return 2;
    }
    const cd_ops *ops = cd_ops_cpu();
    printf("%s; table %s, %d threads\n", cd_t5_describe(m), ops->name, cd_ctx_threads(ctx));
    const double D = cfg.d_model, I = (double)cfg.heads * cfg.d_kv, F = cfg.d_ff;
    for (int k = 0; k < nL; k++) {
        const int L = Ls[k];
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)L);
        float *out = malloc(sizeof(float) * (size_t)L * cfg.d_model);
        for (int i = 0; i < L; i++) ids[i] = (i * 7919 + 3) % cfg.vocab;
        double t[3];
        for (int r = -1; r < 3; r++) {
            const double t0 = cd_now();
            if (cd_t5_encode(ctx, m, ops, ids, L, out)) {
                fprintf(stderr, "%s\n", cd_ctx_error(ctx));
                return 2;
            }
            if (r >= 0) t[r] = cd_now() - t0;
        }
        const double lin = 2.0 * L * (3 * D * I + I * D + 3 * D * F) * cfg.layers;
        const double att = 4.0 * L * (double)L * I * cfg.layers;
        const double s = median3(t);
        /* memory now, before the linear-alone measurement below allocates its own weights */
        const long hwm = status_kb("VmHWM"), anon = status_kb("RssAnon");
        /* the linear op alone on the FFN's wi_0 shape, same dtype */
        const cd_t5_config *c = cd_t5_cfg(m);
        float *x = malloc(sizeof(float) * (size_t)L * c->d_model), *y = malloc(sizeof(float) * (size_t)L * c->d_ff);
        void *w = malloc((size_t)c->d_ff * c->d_model * (dt == CD_DTYPE_F32 ? 4 : 2));
        for (size_t i = 0; i < (size_t)L * c->d_model; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < (size_t)c->d_ff * c->d_model; i++) {
            const float v = (float)((i * 40503u) % 1000) / 50000.0f - 0.01f;
            if (dt == CD_DTYPE_F32)
                ((float *)w)[i] = v;
            else
                ((uint16_t *)w)[i] = cd_f32_to_bf16(v);
        }
        const cd_weight wt = {.data = w, .dtype = dt, .out = c->d_ff, .in = c->d_model};
        double tl[3];
        for (int r = -1; r < 3; r++) {
            const double t0 = cd_now();
            ops->linear(ctx, x, (size_t)L, &wt, NULL, y);
            if (r >= 0) tl[r] = cd_now() - t0;
        }
        const double lrate = 2.0 * L * D * F / median3(tl) / 1e9;
        printf("L %4d: %.2f s per encode (min %.2f), %.1f GFLOP (linears %.1f + attention %.1f), %.1f GFLOP/s; "
               "linear op alone %.1f GFLOP/s (%.0f%%)\n",
               L, s, t[0] < t[1] ? (t[0] < t[2] ? t[0] : t[2]) : (t[1] < t[2] ? t[1] : t[2]), (lin + att) / 1e9,
               lin / 1e9, att / 1e9, (lin + att) / s / 1e9, lrate, 100.0 * (lin + att) / s / 1e9 / lrate);
        printf("        after the encodes: VmHWM %ld MiB, RssAnon %ld MiB\n", hwm / 1024, anon / 1024);
        free(x);
        free(y);
        free(w);
        free(ids);
        free(out);
    }
    cd_t5_free(m);
    cd_ctx_free(ctx);
    return 0;
}
