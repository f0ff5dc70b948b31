/* test_gemm_bf16.c — cd_gemm_bf16_avx512 (vdpbf16ps linear) against a double-precision reference on
 * the same bf16-rounded x and W, odd shapes included. The kernel's products of bf16 values are exact
 * in f32, so its only error is f32 accumulation of `in` terms:
 *   |y - y_ref| <= 8 u sqrt(in) sum_i |x_i w_i| + 8 u |b|,  u = 2^-24.
 * The shape checks are registered only where the path runs (AVX-512 + AVX512_BF16); elsewhere the
 * registered test asserts that the kernel refuses with CD_ERR_UNSUPPORTED. */
#include "test.h"
#include "../src/backend/cpu/gemm_bf16.h"

#include <math.h>
#include <stdlib.h>

static const double U = 1.0 / 16777216.0;

static cd_ctx *ctx_for(cd_isa isa, int threads) {
    cd_ctx *c = NULL;
    cd_ctx_params p = {threads, isa};
    return cd_ctx_create(&p, &c) == CD_OK ? c : NULL;
}

static void gemm_case(cd_ctx *ctx, int n, int in, int out, int bias, unsigned long long seed) {
    const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = malloc(nx * sizeof(float)), *b = malloc((size_t)out * sizeof(float));
    float *y = malloc((ny + 16) * sizeof(float));
    uint16_t *wb = malloc(nw * sizeof(uint16_t));
    if (!x || !b || !y || !wb) {
        test_fail(__FILE__, __LINE__, "setup");
        goto done;
    }
    test_rng g = test_rng_seed(seed);
    for (size_t i = 0; i < nx; i++) x[i] = test_rng_f(&g);
    for (size_t i = 0; i < nw; i++) wb[i] = cd_f32_to_bf16(0.5f * test_rng_f(&g));
    for (int i = 0; i < out; i++) b[i] = test_rng_f(&g);
    for (size_t i = 0; i < ny + 16; i++) y[i] = 777.0f;
    const cd_weight w = {wb, CD_DTYPE_BF16, out, in};
    cd_status s = cd_gemm_bf16_avx512(ctx, x, (size_t)n, &w, bias ? b : NULL, y);
    CHECK(s == CD_OK, "gemm_bf16 n=%d in=%d out=%d: %s (%s)", n, in, out, cd_status_str(s), cd_ctx_error(ctx));
    for (int i = 0; i < 16; i++) EXPECT(y[ny + (size_t)i] == 777.0f, "gemm_bf16 wrote past y");
    for (int r = 0; r < n && !test_failed(); r++)
        for (int o = 0; o < out; o++) {
            double acc = bias ? b[o] : 0.0, mag = 0;
            for (int i = 0; i < in; i++) {
                const double p = (double)cd_bf16_to_f32(cd_f32_to_bf16(x[(size_t)r * in + i])) *
                                 cd_bf16_to_f32(wb[(size_t)o * in + i]);
                acc += p;
                mag += fabs(p);
            }
            const double tol = 8 * U * sqrt((double)in) * mag + 8 * U * (bias ? fabs(b[o]) : 0);
            const double e = fabs((double)y[(size_t)r * out + o] - acc);
            if (!(e <= tol)) {
                test_fail(__FILE__, __LINE__, "gemm_bf16 n=%d in=%d out=%d bias=%d: y[%d][%d] %.9g vs %.9g (tol %g)", n,
                          in, out, bias, r, o, y[(size_t)r * out + o], acc, tol);
                break;
            }
        }
done:
    free(x), free(b), free(y), free(wb);
}

/* Every branch: the small-n dot-product path (n <= 4), register tiles of 1..14 rows, partial
 * output panels (out % 32, out % 16), odd `in` (zero high half), several k blocks (in > 3072) and
 * several row groups (n x in beyond the ~8 MB group), with and without bias, 1 and 2 threads. */
static void gemm_bf16_shapes(void) {
    cd_ctx *c2 = ctx_for(CD_ISA_AVX512, 2), *c1 = ctx_for(CD_ISA_AVX512, 1);
    CHECK(c1 && c2, "context");
    static const int ns[] = {1, 2, 3, 4, 5, 13, 14, 15, 29, 47};
    static const int ins[] = {1, 2, 3, 31, 32, 33, 64, 255};
    static const int outs[] = {1, 15, 16, 17, 31, 32, 33, 50, 64};
    unsigned long long seed = 1;
    for (size_t a = 0; a < sizeof ns / sizeof *ns && !test_failed(); a++)
        for (size_t bb = 0; bb < sizeof ins / sizeof *ins && !test_failed(); bb++)
            for (size_t o = 0; o < sizeof outs / sizeof *outs && !test_failed(); o++, seed++)
                gemm_case(seed & 1 ? c2 : c1, ns[a], ins[bb], outs[o], (int)(seed % 3 != 0), seed);
    if (!test_failed()) gemm_case(c2, 3, 3075, 37, 1, 101);    /* gemv: odd in beyond 32-chunks */
    if (!test_failed()) gemm_case(c2, 33, 3073, 70, 1, 102);   /* two k blocks, the 2nd of 1 pair */
    if (!test_failed()) gemm_case(c1, 20, 6150, 33, 0, 103);   /* three k blocks, 1 thread */
    if (!test_failed()) gemm_case(c2, 1401, 3074, 19, 1, 104); /* two row groups, 1-row tail tile */
    cd_ctx_free(c1);
    cd_ctx_free(c2);
}

/* Refusals that hold on every machine: a context that does not run AVX512_BF16, F32 weights. */
static void gemm_bf16_refuses(void) {
    cd_ctx *c = ctx_for(CD_ISA_GENERIC, 1);
    CHECK(c, "context");
    float x[4] = {1, 2, 3, 4}, y[2] = {0, 0};
    uint16_t wb[4] = {0};
    const cd_weight w = {wb, CD_DTYPE_BF16, 2, 2};
    EXPECT(cd_gemm_bf16_avx512(c, x, 2, &w, NULL, y) == CD_ERR_UNSUPPORTED, "generic context accepted");
    cd_ctx_free(c);
    if (cd_isa_supported(CD_ISA_AVX512) && __builtin_cpu_supports("avx512bf16")) {
        cd_ctx *a = ctx_for(CD_ISA_AVX512, 1);
        CHECK(a, "context");
        const float wf[4] = {0};
        const cd_weight w32 = {wf, CD_DTYPE_F32, 2, 2};
        EXPECT(cd_gemm_bf16_avx512(a, x, 2, &w32, NULL, y) == CD_ERR_UNSUPPORTED, "F32 weights accepted");
        cd_ctx_free(a);
    }
}

/* Without AVX512_BF16 the kernel must refuse whatever context it gets (here: the default one). */
static void gemm_bf16_unsupported(void) {
    cd_ctx *c = ctx_for(CD_ISA_AUTO, 1);
    CHECK(c, "context");
    float x[4] = {1, 2, 3, 4}, y[2] = {0, 0};
    uint16_t wb[4] = {0};
    const cd_weight w = {wb, CD_DTYPE_BF16, 2, 2};
    EXPECT(cd_gemm_bf16_avx512(c, x, 2, &w, NULL, y) == CD_ERR_UNSUPPORTED, "accepted without AVX512_BF16");
    cd_ctx_free(c);
}

__attribute__((constructor)) static void reg_gemm_bf16(void) {
    __builtin_cpu_init();
    if (cd_isa_supported(CD_ISA_AVX512) && __builtin_cpu_supports("avx512bf16"))
        test_register("gemm_bf16_shapes", __FILE__, gemm_bf16_shapes);
    else
        test_register("gemm_bf16_unsupported", __FILE__, gemm_bf16_unsupported);
    test_register("gemm_bf16_refuses", __FILE__, gemm_bf16_refuses);
}
