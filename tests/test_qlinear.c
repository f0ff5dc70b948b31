/* test_qlinear.c — the quantized linear (src/backend/cpu/qlinear.h) on every ISA path this CPU
 * runs, for Q8_0 and Q4_0 weights with random f16 scales:
 *   - against cd_qlinear_ref (same quantized activations, exact block products in double): only
 *     the f32 accumulation differs: at most nb block terms, the scale product, 3 lane-sum levels and
 *     the bias, so |y - ref| <= (nb + 8) * 2^-23 * (sum_k |d_x| sum_j |w_kj q_kj| + |b|);
 *   - against the f32 linear of the dequantized weights: the activation quantization error is
 *     |x - d_x q| <= d_x (1/2 + 1e-4) per element (round to nearest; the 1e-4 covers the f32
 *     rounding of x * (1/d_x), at most 127 * 2 ulp), so per block |error| <= sum |w| d_x (1/2 + 1e-4).
 * Shapes: n = 1, odd n, in = 32 and 4096, out not a multiple of any tile, blocks of zeros. */
#include "../src/backend/cpu/qlinear.h"
#include "../src/quant/ggml_types.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Random weights: out rows of in/32 blocks; scales random f16 with exponents 2^-10 .. 2^-1 and
 * random sign (never zero), quants uniform over every byte value. */
static uint8_t *rand_weights(uint32_t wtype, int32_t out, int32_t in, unsigned long long seed) {
    const size_t rb = cd_ggml_row_bytes(wtype, (uint64_t)in), bs = wtype == CD_GGML_Q8_0 ? 34 : 18;
    uint8_t *w = malloc(rb * (size_t)out);
    if (!w) return NULL;
    test_rng g = test_rng_seed(seed);
    for (size_t p = 0; p < rb * (size_t)out; p += bs) {
        const unsigned long long r = test_rng_u64(&g);
        const uint16_t h = (uint16_t)(((r & 1) << 15) | ((5 + (r >> 1) % 10) << 10) | ((r >> 8) & 0x3ff));
        memcpy(w + p, &h, 2);
        for (size_t j = 2; j < bs; j++) w[p + j] = (uint8_t)(test_rng_u64(&g) >> 56);
    }
    return w;
}

typedef struct {
    size_t n;
    int32_t in, out;
} shape;

static const shape k_shapes[] = {
    {1, 32, 1}, {7, 32, 33}, {1, 4096, 37}, {5, 4096, 19}, {13, 96, 129}, {4, 64, 1001}, {9, 4096, 35}, {2, 160, 3},
};

/* 1 if every output matches both bounds; msg says the first that does not. */
static int check(cd_isa isa, int threads, uint32_t wtype, const shape *s, unsigned long long seed, char *msg,
                 size_t ml) {
    const size_t n = s->n, in = (size_t)s->in, out = (size_t)s->out, nb = in / 32;
    float *x = test_rand_floats(n * in, 1.0f, seed), *b = test_rand_floats(out, 1.0f, seed + 1);
    float *y = malloc(n * out * 4), *yr = malloc(n * out * 4), *wd = malloc(out * in * 4);
    cd_qx_block *xq = malloc(n * nb * sizeof *xq);
    uint8_t *w = rand_weights(wtype, s->out, s->in, seed + 2);
    cd_ctx *ctx = NULL;
    cd_ctx_params p = {threads, isa};
    int ok = 0;
    if (!x || !b || !y || !yr || !wd || !xq || !w || cd_ctx_create(&p, &ctx) != CD_OK) {
        snprintf(msg, ml, "setup failed");
        goto done;
    }
    /* rows of varied magnitude, one block of zeros (d_x = 0) */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < in; j++) x[i * in + j] *= (float)(1u << (i % 5)) / 4.0f;
    if (n > 1 || nb > 1) memset(x + in * (n - 1), 0, 32 * 4);
    if (cd_qlinear_cpu(ctx, x, n, w, wtype, s->out, s->in, b, y) != CD_OK ||
        cd_qlinear_ref(ctx, x, n, w, wtype, s->out, s->in, b, yr) != CD_OK) {
        snprintf(msg, ml, "call failed: %s", cd_ctx_error(ctx));
        goto done;
    }
    cd_qlinear_quantize_x(x, n, in, xq);
    for (size_t o = 0; o < out; o++)
        cd_qlinear_dequant_row(w + o * cd_ggml_row_bytes(wtype, in), wtype, nb, wd + o * in);
    const double eps = 1.0 / 8388608.0;
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < out; o++) {
            double S = 0, E = 0, yd = b[o];
            for (size_t k = 0; k < nb; k++) {
                const cd_qx_block *q = xq + i * nb + k;
                double sumi = 0, sw = 0;
                for (int j = 0; j < 32; j++) {
                    const double wv = wd[o * in + k * 32 + j];
                    sumi += fabs(wv * q->q[j]);
                    sw += fabs(wv);
                    yd += wv * x[i * in + k * 32 + j];
                }
                S += fabs(sumi * q->d);
                E += sw * q->d * (0.5 + 1e-4);
            }
            const double r = yr[i * out + o], f = y[i * out + o];
            const double tol = (double)(nb + 8) * eps * (S + fabs(b[o])) + 1e-30;
            if (!(fabs(f - r) <= tol)) {
                snprintf(msg, ml, "row %zu out %zu: fast %.9g ref %.9g (|d| %.3g > %.3g)", i, o, f, r, fabs(f - r),
                         tol);
                goto done;
            }
            const double tol2 = E + 2 * eps * (fabs(r) + S + fabs(b[o]));
            if (!(fabs(r - yd) <= tol2)) {
                snprintf(msg, ml, "row %zu out %zu: ref %.9g vs dequantized f32 %.9g (|d| %.3g > bound %.3g)", i, o, r,
                         yd, fabs(r - yd), tol2);
                goto done;
            }
        }
    ok = 1;
done:
    cd_ctx_free(ctx);
    free(x), free(b), free(y), free(yr), free(wd), free(xq), free(w);
    return ok;
}

static void run_all(cd_isa isa) {
    if (!cd_isa_supported(isa)) return; /* that path cannot run here; others cover the logic */
    char msg[512];
    static const uint32_t types[] = {CD_GGML_Q8_0, CD_GGML_Q4_0};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
            for (int th = 1; th <= 2; th++)
                EXPECT(check(isa, th, types[t], &k_shapes[i], 77 + i * 13 + (size_t)t, msg, sizeof msg),
                       "%s %s shape %zu threads %d: %s", cd_isa_name(isa), cd_ggml_type_get(types[t])->name, i, th,
                       msg);
}

TEST(qlinear_generic) { run_all(CD_ISA_GENERIC); }
TEST(qlinear_avx2) { run_all(CD_ISA_AVX2); }
TEST(qlinear_avx512) { run_all(CD_ISA_AVX512); }

/* The activation quantization: d = max|x| / 127, |q| <= 127, the max element maps to +-127, ties
 * round to even; the Q4_0 element order (low nibbles first) and the f16 scale on a hand-made block. */
TEST(qlinear_blocks) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f;
    x[5] = -8.0f; /* the max: d = 8/127 */
    cd_qx_block q;
    cd_qlinear_quantize_x(x, 1, 32, &q);
    CHECK(q.d == 8.0f / 127.0f, "d %.9g", q.d);
    CHECK(q.q[5] == -127, "q[5] %d", q.q[5]);
    for (int j = 0; j < 32; j++) CHECK(q.q[j] == (int8_t)nearbyintf(x[j] * (1.0f / q.d)), "q[%d] %d", j, q.q[j]);
    uint8_t blk[18] = {0x00, 0x3c}; /* d = 1.0 in f16 */
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    float d[32];
    cd_qlinear_dequant_row(blk, CD_GGML_Q4_0, 1, d);
    for (int j = 0; j < 16; j++) {
        CHECK(d[j] == (float)(j - 8), "lo %d: %g", j, d[j]);
        CHECK(d[j + 16] == (float)(7 - j), "hi %d: %g", j, d[j + 16]);
    }
    CHECK(cd_qf16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 subnormal");
    CHECK(cd_qf16_to_f32(0xc000) == -2.0f, "f16 -2");
    CHECK(isinf(cd_qf16_to_f32(0x7c00)) && isnan(cd_qf16_to_f32(0x7e00)), "f16 inf/nan");
}

TEST(qlinear_errors) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    float x[64] = {0}, y[4];
    uint8_t w[2 * 34] = {0};
    EXPECT(cd_qlinear_cpu(ctx, x, 1, w, CD_GGML_Q8_0, 1, 48, NULL, y) == CD_ERR_SHAPE, "in 48");
    EXPECT(cd_qlinear_cpu(ctx, x, 1, w, CD_GGML_Q8_0, 0, 32, NULL, y) == CD_ERR_SHAPE, "out 0");
    EXPECT(cd_qlinear_cpu(ctx, x, 1, w, CD_GGML_Q4_1, 1, 32, NULL, y) == CD_ERR_UNSUPPORTED, "Q4_1");
    EXPECT(strstr(cd_ctx_error(ctx), "Q4_1") != NULL, "message names the type: %s", cd_ctx_error(ctx));
    EXPECT(cd_qlinear_cpu(ctx, x, 1, NULL, CD_GGML_Q8_0, 1, 32, NULL, y) == CD_ERR_INVALID_ARG, "NULL w");
    EXPECT(cd_qlinear_cpu(ctx, x, 0, w, CD_GGML_Q8_0, 2, 64, NULL, y) == CD_OK, "n = 0");
    EXPECT(cd_qlinear_cpu_scratch_floats(3, 64, 2) == 3 * 2 * CD_QX_FLOATS, "scratch");
    EXPECT(cd_qlinear_cpu_scratch_floats(SIZE_MAX / 2, 4096, 2) == 0, "scratch overflow");
    cd_ctx_free(ctx);
}
