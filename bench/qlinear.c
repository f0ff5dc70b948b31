/* qlinear.c — linear y = x . W^T + b on FLUX shapes, side by side in one run:
 *   f32   cd_ops_cpu()->linear with F32 weights (OpenBLAS sgemm)
 *   bf16  cd_ops_cpu()->linear with BF16 weights (weight tiles converted to f32, then sgemm)
 *   q8_0  cd_qlinear_cpu with Q8_0 weights (src/backend/cpu/qlinear.h), ctx's ISA path
 *   q4_0  the same with Q4_0 weights
 *
 *   make bench-qlinear                          # the default shapes below
 *   build/bench_qlinear 1024,3072,3072 ...      # (n, in, out) triples
 *
 * Per shape and method: one warm-up call, then the median of 3 timed calls, printed as GFLOP/s =
 * 2 n in out / time. Weights: random quants, scales 2^-8; x uniform in [-1, 1). Threads: the
 * context default (OMP_NUM_THREADS or all cores). Not a test: tests do not time things. */
#include "../src/backend/cpu/qlinear.h"
#include "../src/ops/ops.h"
#include "../src/quant/ggml_types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const cd_weight *w; /* ops linear, or NULL */
    const uint8_t *q;   /* qlinear weights */
    uint32_t wtype;
    int32_t in, out;
} method;

static cd_status call(cd_ctx *ctx, const method *m, const float *x, size_t n, const float *b, float *y) {
    if (m->w) return cd_ops_cpu()->linear(ctx, x, n, m->w, b, y);
    return cd_qlinear_cpu(ctx, x, n, m->q, m->wtype, m->out, m->in, b, y);
}

static double time_it(cd_ctx *ctx, const method *m, const float *x, size_t n, const float *b, float *y) {
    if (call(ctx, m, x, n, b, y) != CD_OK) {
        fprintf(stderr, "error: %s\n", cd_ctx_error(ctx));
        return -1;
    }
    double t[3];
    for (int i = 0; i < 3; i++) {
        const double t0 = cd_now();
        call(ctx, m, x, n, b, y);
        t[i] = cd_now() - t0;
    }
    qsort(t, 3, sizeof t[0], cmp_double);
    return t[1];
}

static uint8_t *qweights(uint32_t wtype, int out, int in, unsigned long long seed) {
    const size_t rb = cd_ggml_row_bytes(wtype, (uint64_t)in), bs = wtype == CD_GGML_Q8_0 ? 34 : 18;
    uint8_t *w = malloc(rb * (size_t)out);
    if (!w) return NULL;
    for (size_t p = 0; p < rb * (size_t)out; p += bs) {
        const uint16_t h = 0x1c00; /* 2^-8 */
        memcpy(w + p, &h, 2);
        for (size_t j = 2; j < bs; j++) w[p + j] = (uint8_t)(cd_mix64(seed + p + j) >> 56);
    }
    return w;
}

static int run_shape(cd_ctx *ctx, size_t n, int in, int out) {
    const size_t nx = n * (size_t)in, nw = (size_t)out * in, ny = n * (size_t)out;
    float *x = malloc(nx * 4), *wf = malloc(nw * 4), *b = malloc((size_t)out * 4), *y = malloc(ny * 4);
    uint16_t *wb = malloc(nw * 2);
    uint8_t *q8 = qweights(CD_GGML_Q8_0, out, in, 1), *q4 = qweights(CD_GGML_Q4_0, out, in, 2);
    int rc = 1;
    if (!x || !wf || !b || !y || !wb || !q8 || !q4) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < nx; i++) x[i] = (float)((double)(cd_mix64(i + 7) >> 11) * 0x1p-53 * 2.0 - 1.0);
    for (size_t i = 0; i < nw; i++) {
        wb[i] = cd_f32_to_bf16((float)((double)(cd_mix64(i + 99) >> 11) * 0x1p-53 - 0.5));
        wf[i] = cd_bf16_to_f32(wb[i]);
    }
    for (int i = 0; i < out; i++) b[i] = 0.01f * (float)(i % 7);
    const cd_weight w32 = {wf, CD_DTYPE_F32, out, in}, w16 = {wb, CD_DTYPE_BF16, out, in};
    const method ms[4] = {{&w32, NULL, 0, in, out},
                          {&w16, NULL, 0, in, out},
                          {NULL, q8, CD_GGML_Q8_0, in, out},
                          {NULL, q4, CD_GGML_Q4_0, in, out}};
    double t[4];
    for (int k = 0; k < 4; k++)
        if ((t[k] = time_it(ctx, &ms[k], x, n, b, y)) < 0) goto done;
    const double fl = 2.0 * (double)n * in * out * 1e-9;
    printf("| %5zu | %5d | %5d | %7.1f | %7.1f | %7.1f | %7.1f | %5.2f |\n", n, in, out, fl / t[0], fl / t[1],
           fl / t[2], fl / t[3], t[1] / t[2]);
    fflush(stdout);
    rc = 0;
done:
    free(x), free(wf), free(b), free(y), free(wb), free(q8), free(q4);
    return rc;
}

int main(int argc, char **argv) {
    static const int def[][3] = {{1024, 3072, 3072}, {1024, 3072, 12288}, {1024, 12288, 3072}, {1, 3072, 12288}};
    cd_ctx *ctx = NULL;
    cd_status s = cd_ctx_create(NULL, &ctx);
    if (s != CD_OK) {
        fprintf(stderr, "cd_ctx_create: %s\n", cd_status_str(s));
        return 1;
    }
    printf("threads %d, isa %s; GFLOP/s, median of 3 (after a warm-up); q8_0/bf16 = speed-up of q8_0 over the "
           "bf16 linear\n\n",
           cd_ctx_threads(ctx), cd_isa_name(cd_ctx_isa(ctx)));
    printf("| n | in | out | f32 sgemm | bf16 tiles | q8_0 | q4_0 | q8_0/bf16 |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            long long n, in, out;
            if (sscanf(argv[i], "%lld,%lld,%lld", &n, &in, &out) != 3 || n < 1 || in < 32 || in % 32 || out < 1 ||
                in > 1 << 20 || out > 1 << 20) {
                fprintf(stderr, "bad shape '%s' (want n,in,out; in a multiple of 32)\n", argv[i]);
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
