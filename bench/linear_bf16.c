/* linear_bf16.c — linear y = x . W^T (+ b) three ways, side by side in one run:
 *   f32     cd_ops_cpu()->linear with F32 weights (OpenBLAS sgemm)
 *   tiles   cd_ops_cpu()->linear with BF16 weights (1024-row tiles converted to f32, then sgemm)
 *   dpbf16  cd_gemm_bf16_avx512 (x rounded to bf16, vdpbf16ps; src/backend/cpu/gemm_bf16_avx512.c)
 *
 *   make bench-linear                          # the default shapes below
 *   build/bench_linear_bf16 4608,3072,9216 ... # (n, in, out) triples
 *   build/bench_linear_bf16 --only-dpbf16 ...  # time the kernel alone (tuning; f32/tiles columns 0)
 *
 * Per shape and method: one warm-up call (grows the context's scratch), then the median of 3 timed
 * calls, printed as GFLOP/s = 2 n in out / time. x uniform in [-1, 1), W uniform in [-0.5, 0.5)
 * rounded to bf16 (the f32 weights hold the same values), bias uniform in [-1, 1). The accuracy
 * columns compare dpbf16 with tiles (same weights, f32 x): relative L2 error ||y_d - y_t|| /
 * ||y_t|| and the largest |y_d - y_t| over rms(y_t). Threads: the context default (OMP_NUM_THREADS
 * or all cores). Not a test: tests do not time things. */
#include "../src/backend/cpu/gemm_bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned long long s;
} rng;
static float rnd_f(rng *r) { /* xorshift64*, uniform in [-1, 1) */
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (float)((double)((r->s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef cd_status (*linear_fn)(cd_ctx *, const float *, size_t, const cd_weight *, const float *, float *);

/* Median seconds of 3 calls after one warm-up; < 0 on error. */
static double time_it(linear_fn f, cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b,
                      float *y) {
    if (f(ctx, x, n, w, b, y) != CD_OK) {
        fprintf(stderr, "error: %s\n", cd_ctx_error(ctx));
        return -1;
    }
    double t[3];
    for (int i = 0; i < 3; i++) {
        const double t0 = cd_now();
        f(ctx, x, n, w, b, y);
        t[i] = cd_now() - t0;
    }
    qsort(t, 3, sizeof t[0], cmp_double);
    return t[1];
}

static cd_status ops_linear(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    return cd_ops_cpu()->linear(ctx, x, n, w, b, y);
}

static int g_only_dpbf16;

static int run_shape(cd_ctx *ctx, size_t n, int in, int out) {
    const size_t nx = n * (size_t)in, nw = (size_t)out * in, ny = n * (size_t)out;
    float *x = malloc(nx * 4), *wf = malloc(nw * 4), *b = malloc((size_t)out * 4);
    float *yf = malloc(ny * 4), *yt = malloc(ny * 4), *yd = malloc(ny * 4);
    uint16_t *wb = malloc(nw * 2);
    int rc = 1;
    if (!x || !wf || !b || !yf || !yt || !yd || !wb) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    rng g = {0x9E3779B97F4A7C15ull ^ (n * 31 + (size_t)in * 7 + (size_t)out)};
    for (size_t i = 0; i < nx; i++) x[i] = rnd_f(&g);
    for (size_t i = 0; i < nw; i++) {
        wb[i] = cd_f32_to_bf16(0.5f * rnd_f(&g));
        wf[i] = cd_bf16_to_f32(wb[i]);
    }
    for (int i = 0; i < out; i++) b[i] = rnd_f(&g);
    const cd_weight w32 = {wf, CD_DTYPE_F32, out, in}, w16 = {wb, CD_DTYPE_BF16, out, in};
    const double tf = g_only_dpbf16 ? INFINITY : time_it(ops_linear, ctx, x, n, &w32, b, yf);
    const double tt = g_only_dpbf16 ? INFINITY : time_it(ops_linear, ctx, x, n, &w16, b, yt);
    if (g_only_dpbf16) memset(yt, 0, ny * 4);
    const double td = time_it(cd_gemm_bf16_avx512, ctx, x, n, &w16, b, yd);
    if (tf < 0 || tt < 0 || td < 0) goto done;
    double se = 0, sr = 0, emax = 0;
    for (size_t i = 0; i < ny; i++) {
        const double e = (double)yd[i] - yt[i];
        se += e * e;
        sr += (double)yt[i] * yt[i];
        if (fabs(e) > emax) emax = fabs(e);
    }
    const double fl = 2.0 * (double)n * in * out * 1e-9;
    printf("| %5zu | %5d | %5d | %7.1f | %7.1f | %7.1f | %6.3f | %8.2e | %8.2e |\n", n, in, out, fl / tf, fl / tt,
           fl / td, tt / td, sqrt(se / sr), emax / sqrt(sr / (double)ny));
    fflush(stdout);
    rc = 0;
done:
    free(x), free(wf), free(b), free(yf), free(yt), free(yd), free(wb);
    return rc;
}

int main(int argc, char **argv) {
    static const int def[][3] = {{1024, 3072, 3072},  {4608, 3072, 9216}, {4608, 3072, 12288},
                                 {4608, 12288, 3072}, {4096, 3072, 3072}, {1, 3072, 18432}};
    cd_ctx *ctx = NULL;
    cd_status s = cd_ctx_create(NULL, &ctx);
    if (s != CD_OK) {
        fprintf(stderr, "cd_ctx_create: %s\n", cd_status_str(s));
        return 1;
    }
    printf("threads %d, isa %s; GFLOP/s, median of 3 (after a warm-up); tiles/dpbf16 = speed-up of "
           "dpbf16 over tiles; err = dpbf16 vs tiles\n\n",
           cd_ctx_threads(ctx), cd_isa_name(cd_ctx_isa(ctx)));
    printf("| n | in | out | f32 sgemm | bf16 tiles | dpbf16 | dpbf16/tiles | rel L2 err | max err/rms |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    int rc = 0, first = 1;
    if (argc > 1 && strcmp(argv[1], "--only-dpbf16") == 0) g_only_dpbf16 = 1, first = 2;
    if (argc > first) {
        for (int i = first; i < argc; i++) {
            long long n, in, out;
            if (sscanf(argv[i], "%lld,%lld,%lld", &n, &in, &out) != 3 || n < 1 || in < 1 || out < 1 || in > 1 << 20 ||
                out > 1 << 20) {
                fprintf(stderr, "bad shape '%s' (want n,in,out)\n", argv[i]);
                rc = 1;
                break;
            }
            rc |= run_shape(ctx, (size_t)n, (int)in, (int)out);
        }
    } else {
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++)
            rc |= run_shape(ctx, (size_t)def[i][0], def[i][1], def[i][2]);
    }
    cd_ctx_free(ctx);
    return rc;
}
