/* test_ops.c — the fast CPU ops against the reference ops (double accumulation) on random inputs,
 * for every SIMD path this machine runs. Tolerances follow from f32 unit roundoff u = 2^-24 and the
 * op's accumulation length; each is stated next to its check. Host helpers (timestep embedding,
 * RoPE table) are checked against their closed forms. */
#include "test.h"
#include "../src/ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double U = 1.0 / 16777216.0;

static float *rnd(size_t n, float amp, unsigned long long seed) {
    float *p = malloc(n * sizeof(float) + 64);
    test_rng g = test_rng_seed(seed);
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = amp * test_rng_f(&g);
    return p;
}

static cd_ctx *ctx_for(cd_isa isa) {
    cd_ctx *c = NULL;
    cd_ctx_params p = {2, isa};
    return cd_ctx_create(&p, &c) == CD_OK ? c : NULL;
}

static const cd_isa k_isas[] = {CD_ISA_GENERIC, CD_ISA_AVX2, CD_ISA_AVX512};

/* linear: |y - y_ref| <= 8 u sqrt(in) sum_i |x_i w_i| + 8 u |b| (random-signed f32 sums). */
static void linear_case(int n, int in, int out, int bf16, int bias, unsigned long long seed) {
    float *x = rnd((size_t)n * in, 1.0f, seed), *wf = rnd((size_t)out * in, 0.5f, seed + 1);
    float *b = rnd((size_t)out, 1.0f, seed + 2), *y = malloc(sizeof(float) * ((size_t)n * out + 16));
    float *yr = malloc(sizeof(float) * (size_t)n * out);
    uint16_t *wb = malloc(sizeof(uint16_t) * (size_t)out * in);
    cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
    if (!x || !wf || !b || !y || !yr || !wb || !ctx) { test_fail(__FILE__, __LINE__, "setup"); goto done; }
    for (size_t i = 0; i < (size_t)out * in; i++) {
        wb[i] = cd_f32_to_bf16(wf[i]);
        if (bf16) wf[i] = cd_bf16_to_f32(wb[i]); /* the values the bf16 weight represents */
    }
    for (int i = 0; i < 16; i++) y[(size_t)n * out + i] = 777.0f;
    cd_weight w = {bf16 ? (const void *)wb : (const void *)wf, bf16 ? CD_DTYPE_BF16 : CD_DTYPE_F32, out, in};
    cd_weight wr = {wf, CD_DTYPE_F32, out, in};
    EXPECT(cd_ops_cpu()->linear(ctx, x, (size_t)n, &w, bias ? b : NULL, y) == CD_OK, "linear: %s", cd_ctx_error(ctx));
    cd_ops_cpu_ref()->linear(ctx, x, (size_t)n, &wr, bias ? b : NULL, yr);
    for (int i = 0; i < 16; i++) EXPECT(y[(size_t)n * out + i] == 777.0f, "linear wrote past y");
    for (int r = 0; r < n && !test_failed(); r++)
        for (int o = 0; o < out; o++) {
            double mag = 0;
            for (int i = 0; i < in; i++) mag += fabs((double)x[(size_t)r * in + i] * wf[(size_t)o * in + i]);
            /* with AVX512_BF16 the BF16-weight linear rounds x to bf16 (gemm_bf16.h): each
             * product then carries up to 2^-9 relative error */
            const double xround = (bf16 && ctx->has_bf16) ? 1.0 / 512 : 0.0;
            const double tol = (8 * U * sqrt((double)in) + xround) * mag + 8 * U * (bias ? fabs(b[o]) : 0);
            const double e = fabs((double)y[(size_t)r * out + o] - yr[(size_t)r * out + o]);
            if (!(e <= tol)) {
                test_fail(__FILE__, __LINE__, "linear n=%d in=%d out=%d bf16=%d: y[%d][%d] %g vs %g (tol %g)",
                          n, in, out, bf16, r, o, y[(size_t)r * out + o], yr[(size_t)r * out + o], tol);
                break;
            }
        }
done:
    free(x); free(wf); free(b); free(y); free(yr); free(wb);
    cd_ctx_free(ctx);
}

TEST(ops_linear_f32_and_bf16) {
    const int shapes[][3] = {{1, 7, 5}, {13, 64, 48}, {37, 129, 300}, {5, 256, 513}, {64, 96, 260}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int bf = 0; bf < 2; bf++)
            linear_case(shapes[i][0], shapes[i][1], shapes[i][2], bf, (int)(i % 2 == 0), 10 + i);
}

TEST(ops_linear_rejects_other_dtypes) {
    cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
    CHECK(ctx, "ctx");
    float x[4] = {1, 2, 3, 4}, y[4];
    uint16_t h[4] = {0};
    cd_weight w = {h, CD_DTYPE_F16, 2, 2};
    EXPECT(cd_ops_cpu()->linear(ctx, x, 2, &w, NULL, y) == CD_ERR_UNSUPPORTED, "F16 weight accepted");
    EXPECT(strstr(cd_ctx_error(ctx), "F16") != NULL, "message: %s", cd_ctx_error(ctx));
    cd_ctx_free(ctx);
}

/* ln_modulate: |y - y_ref| <= 64 u (|y_ref| + |shift| + 1) (a mean, a variance, a few products). */
TEST(ops_ln_modulate) {
    const int dims[] = {1, 7, 64, 3072 / 8, 1000};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        const int dim = dims[k], n = 9;
        float *x = rnd((size_t)n * dim, 3.0f, 40 + k), *sh = rnd(dim, 1.0f, 41 + k), *sc = rnd(dim, 1.0f, 42 + k);
        float *y = malloc(sizeof(float) * n * dim), *yr = malloc(sizeof(float) * n * dim);
        cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
        CHECK(x && sh && sc && y && yr && ctx, "setup");
        for (int i = 0; i < dim; i++) x[i] += 100.0f; /* a row with a large mean */
        cd_ops_cpu()->ln_modulate(ctx, x, n, dim, sh, sc, 1e-6f, y);
        cd_ops_cpu_ref()->ln_modulate(ctx, x, n, dim, sh, sc, 1e-6f, yr);
        for (int i = 0; i < n * dim; i++) {
            const double tol = 64 * U * (fabs(yr[i]) + fabs(sh[i % dim]) + 1) + (dim == 1 ? 1e-3 : 0);
            if (!(fabs(y[i] - yr[i]) <= tol)) {
                test_fail(__FILE__, __LINE__, "dim %d [%d]: %g vs %g", dim, i, y[i], yr[i]);
                break;
            }
        }
        free(x); free(sh); free(sc); free(y); free(yr);
        cd_ctx_free(ctx);
    }
}

/* rmsnorm per head: |y - y_ref| <= 16 u sqrt(hd) |y_ref| + tiny. */
TEST(ops_rmsnorm_heads) {
    const int n = 11, nh = 3, hds[] = {16, 128, 5};
    for (size_t k = 0; k < 3; k++) {
        const int hd = hds[k];
        const size_t cnt = (size_t)n * nh * hd;
        float *x = rnd(cnt, 2.0f, 50 + k), *x2 = malloc(cnt * sizeof(float)), *w = rnd(hd, 1.0f, 51 + k);
        cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
        CHECK(x && x2 && w && ctx, "setup");
        for (int i = 0; i < hd; i++) w[i] += 1.0f; /* scales around 1 */
        memcpy(x2, x, cnt * sizeof(float));
        cd_ops_cpu()->rmsnorm_heads(ctx, x, n, nh, hd, w, 1e-6f);
        cd_ops_cpu_ref()->rmsnorm_heads(ctx, x2, n, nh, hd, w, 1e-6f);
        for (size_t i = 0; i < cnt; i++)
            if (!(fabs(x[i] - x2[i]) <= 16 * U * sqrt((double)hd) * fabs(x2[i]) + 1e-30)) {
                test_fail(__FILE__, __LINE__, "hd %d [%zu]: %g vs %g", hd, i, x[i], x2[i]);
                break;
            }
        free(x); free(x2); free(w);
        cd_ctx_free(ctx);
    }
}

TEST(ops_gate_add) {
    const int n = 7, dim = 45;
    float *x = rnd(n * dim, 1.0f, 60), *x2 = malloc(sizeof(float) * n * dim), *g = rnd(dim, 2.0f, 61), *y = rnd(n * dim, 1.0f, 62);
    cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
    CHECK(x && x2 && g && y && ctx, "setup");
    memcpy(x2, x, sizeof(float) * n * dim);
    cd_ops_cpu()->gate_add(ctx, x, g, y, n, dim);
    cd_ops_cpu_ref()->gate_add(ctx, x2, g, y, n, dim);
    for (int i = 0; i < n * dim; i++) /* one FMA vs double then round: 2 u */
        EXPECT(fabs(x[i] - x2[i]) <= 2 * U * (fabs(x2[i]) + fabs(g[i % dim] * y[i])), "[%d] %g vs %g", i, x[i], x2[i]);
    free(x); free(x2); free(g); free(y);
    cd_ctx_free(ctx);
}

/* Activations on every ISA: gelu |e| <= 16 u (|x| + 1) (tanh from exp; the 1 + tanh absorbs its
 * error), silu |e| <= 16 u |y_ref| (a quotient of exact-ish terms). Sizes with ragged tails. */
TEST(ops_activations_all_isas) {
    const size_t sizes[] = {1, 15, 16, 17, 1000, 40000};
    for (size_t ii = 0; ii < 3; ii++) {
        if (!cd_isa_supported(k_isas[ii])) continue;
        cd_ctx *ctx = ctx_for(k_isas[ii]);
        CHECK(ctx, "ctx");
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            const size_t n = sizes[k];
            float *a = rnd(n, 12.0f, 70 + k), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
            float *d = malloc(n * sizeof(float));
            CHECK(a && b && c && d, "alloc");
            a[0] = n > 1 ? 1e-4f : a[0];
            memcpy(b, a, n * sizeof(float)); memcpy(c, a, n * sizeof(float)); memcpy(d, a, n * sizeof(float));
            cd_ops_cpu()->gelu_tanh(ctx, a, n);
            cd_ops_cpu_ref()->gelu_tanh(ctx, b, n);
            cd_ops_cpu()->silu(ctx, c, n);
            cd_ops_cpu_ref()->silu(ctx, d, n);
            float *x0 = rnd(n, 12.0f, 70 + k);
            for (size_t i = 0; i < n && x0; i++) {
                if (!(fabs(a[i] - b[i]) <= 16 * U * (fabs(x0[i]) + 1))) {
                    test_fail(__FILE__, __LINE__, "%s gelu(%g) = %g vs %g", cd_isa_name(k_isas[ii]), x0[i], a[i], b[i]);
                    break;
                }
                if (!(fabs(c[i] - d[i]) <= 16 * U * fabs(d[i]) + 1e-37)) {
                    test_fail(__FILE__, __LINE__, "%s silu(%g) = %g vs %g", cd_isa_name(k_isas[ii]), x0[i], c[i], d[i]);
                    break;
                }
            }
            free(x0); free(a); free(b); free(c); free(d);
        }
        cd_ctx_free(ctx);
    }
}

/* rope: a rotation of each pair, |e| <= 4 u (|x0| + |x1|). */
TEST(ops_rope) {
    const int n = 6, nh = 2, hd = 16, axes[3] = {4, 6, 6};
    float ids[6 * 3];
    for (int t = 0; t < n; t++) { ids[t * 3] = 0; ids[t * 3 + 1] = (float)(t / 3); ids[t * 3 + 2] = (float)(t % 3 + 7); }
    float cs[6 * 16];
    cd_rope_table(ids, n, axes, 10000.0, cs);
    float *x = rnd(n * nh * hd, 1.0f, 80), *x2 = malloc(sizeof(float) * n * nh * hd);
    cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
    CHECK(x && x2 && ctx, "setup");
    memcpy(x2, x, sizeof(float) * n * nh * hd);
    float *x0 = rnd(n * nh * hd, 1.0f, 80);
    cd_ops_cpu()->rope(ctx, x, n, nh, hd, cs);
    cd_ops_cpu_ref()->rope(ctx, x2, n, nh, hd, cs);
    for (int i = 0; i < n * nh * hd; i++) {
        const int p = i & ~1;
        EXPECT(fabs(x[i] - x2[i]) <= 4 * U * (fabs(x0[p]) + fabs(x0[p + 1])), "[%d] %g vs %g", i, x[i], x2[i]);
    }
    /* the table itself: token 4 = (0, 1, 8); pair 0 is axis 0 (position 0: identity); pair 2 is
     * axis 1, j = 0 (omega 1): angle 1; pair 5 is axis 2, j = 0: angle 8; pair 6: 8 * 10000^(-1/3) */
    const float *c4 = cs + 4 * hd;
    EXPECT(c4[0] == 1.0f && c4[1] == 0.0f, "axis 0 must not rotate");
    EXPECT(fabs(c4[4] - cos(1.0)) < 1e-7 && fabs(c4[5] - sin(1.0)) < 1e-7, "axis 1 pair 0");
    EXPECT(fabs(c4[10] - cos(8.0)) < 1e-7 && fabs(c4[11] - sin(8.0)) < 1e-7, "axis 2 pair 0");
    const double a6 = 8.0 * pow(10000.0, -2.0 / 6.0);
    EXPECT(fabs(c4[12] - cos(a6)) < 1e-7 && fabs(c4[13] - sin(a6)) < 1e-7, "axis 2 pair 1");
    free(x); free(x2); free(x0);
    cd_ctx_free(ctx);
}

TEST(ops_timestep_embedding_closed_form) {
    float e[256];
    /* the argument t' f_i is a float32 product of float32 f_i (as in BFL and diffusers): within
     * t' f_i 2^-22 of the exact one (f_i within one ulp, then one rounding) */
    for (int half = 128; half >= 32; half /= 4) {
        cd_timestep_embedding(0.25f, 2 * half, e);
        for (int i = 0; i < half; i++) {
            const double f = exp(-log(10000.0) * i / half), tol = 250.0 * f * 0x1p-22 + 1e-6;
            EXPECT(fabs(e[i] - cos(250.0 * f)) < tol && fabs(e[half + i] - sin(250.0 * f)) < tol,
                   "half %d i=%d: %g %g", half, i, e[i], e[half + i]);
        }
    }
    /* t' = fl32(1000 t): t = 0.37f -> 370 exactly, so pair 0 (f = 1) is cos(370) */
    cd_timestep_embedding(0.37f, 256, e);
    EXPECT(fabs(e[0] - cos(370.0)) < 1e-7 && fabs(e[128] - sin(370.0)) < 1e-7, "t' must be rounded to f32");
    cd_timestep_embedding(0.0f, 256, e);
    EXPECT(e[0] == 1.0f && e[128] == 0.0f, "t = 0: cos first");
}
