/* test_cuda_ae.c — the CUDA backend's autoencoder ops (conv_cuda.cu: conv2d, group_norm,
 * transpose; gemm_cuda.cu: linear with F32 weights) against the reference table on random
 * non-zero inputs with odd shapes, and a tiny decoder and encoder run on the CUDA table against
 * the fast CPU table. Without a usable GPU (or nvcc) the tests only check that the device refuses
 * with a reason, as tests/test_cuda.c does; scripts/gpu-check.sh runs them on a GPU machine
 * ("test_cleardit cuda").
 * Tolerances (f32 unit roundoff u = 2^-24): conv and linear outputs are f32 sums of K terms in
 * another order (8 u sqrt(K) relative L2, as on the CPU); GroupNorm 1e-5 (expf, a one-pass
 * variance in double); transpose exact; the whole autoencoder 2e-2 (the mid attention rounds q, k,
 * v and P to bf16 on the GPU, 2^-9 each). */
#include "test.h"
#include "../src/backend/cuda/cuda.h"
#include "../src/model/ae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double U = 1.0 / 16777216.0;

static cd_ctx *gpu(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    if (cd_ctx_create(&p, &ctx) != CD_OK) {
        test_fail(__FILE__, __LINE__, "context");
        return NULL;
    }
    const cd_status s = cd_device_open(ctx, CD_DEVICE_CUDA);
    if (s == CD_OK) return ctx;
    EXPECT(s == CD_ERR_UNSUPPORTED && strlen(cd_ctx_error(ctx)) > 0, "cuda open: status %d (%s)", (int)s,
           cd_ctx_error(ctx));
    cd_ctx_free(ctx);
    return NULL;
}

/* n floats of h in device memory (NULL on failure). */
static float *dev(cd_ctx *ctx, const float *h, size_t n) {
    void *d = NULL;
    if (cd_cuda_alloc(ctx, (n ? n : 1) * sizeof(float), &d) != CD_OK) return NULL;
    if (h && cd_cuda_h2d(ctx, d, h, n * sizeof(float)) != CD_OK) {
        cd_cuda_free(ctx, d);
        return NULL;
    }
    return d;
}

typedef struct {
    const char *name;
    cd_conv_desc d;
    int acc, bias;
} conv_row;

TEST(cuda_ae_ops) {
    cd_ctx *ctx = gpu();
    if (!ctx) return;
    const cd_ops *cu = cd_ops_cuda(), *ref = cd_ops_cpu_ref();
    static const conv_row rows[] = {
        {"conv3x3 pad 1", {5, 7, 9, 11, 3, 1, 0, {1, 1, 1, 1}}, 0, 1},
        {"conv3x3 upsample x2", {3, 5, 7, 6, 3, 1, 1, {1, 1, 1, 1}}, 0, 1},
        {"conv3x3 stride 2 pad (0,1,0,1) odd", {7, 9, 11, 5, 3, 2, 0, {0, 1, 0, 1}}, 0, 1},
        {"conv3x3 accumulate, no bias", {4, 6, 5, 3, 3, 1, 0, {1, 1, 1, 1}}, 1, 0},
        {"conv1x1 accumulate", {9, 7, 5, 12, 1, 1, 0, {0, 0, 0, 0}}, 1, 1},
        {"conv3x3 wide", {40, 33, 17, 37, 3, 1, 0, {1, 1, 1, 1}}, 0, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const cd_conv_desc *d = &rows[i].d;
        const size_t nin = (size_t)d->cin * d->H * d->W, nw = (size_t)d->cout * d->cin * d->k * d->k;
        const size_t nout = (size_t)d->cout * cd_conv_out_h(d) * cd_conv_out_w(d);
        float *x = test_rand_floats(nin, 1.5f, 10 + i), *w = test_rand_floats(nw, 0.5f, 20 + i);
        float *b = test_rand_floats((size_t)d->cout, 1.0f, 30 + i), *y = test_rand_floats(nout, 1.0f, 40 + i);
        float *got = malloc(nout * sizeof(float) + 4);
        float *dx = dev(ctx, x, nin), *dw = dev(ctx, w, nw), *db = dev(ctx, b, (size_t)d->cout), *dy = dev(ctx, y, nout);
        CHECK(x && w && b && y && got && dx && dw && db && dy, "setup");
        EXPECT(cu->conv2d(ctx, d, dx, dw, rows[i].bias ? db : NULL, rows[i].acc, dy) == CD_OK, "%s", cd_ctx_error(ctx));
        ref->conv2d(ctx, d, x, w, rows[i].bias ? b : NULL, rows[i].acc, y);
        CHECK(cd_cuda_d2h(ctx, got, dy, nout * sizeof(float)) == CD_OK, "%s: %s", rows[i].name, cd_ctx_error(ctx));
        const double e = test_rel_l2(got, y, nout), tol = 8 * U * sqrt((double)d->cin * d->k * d->k + 1);
        EXPECT(e <= tol, "%s: relative L2 %.3g > %.3g", rows[i].name, e, tol);
        free(x); free(w); free(b); free(y); free(got);
        cd_cuda_free(ctx, dx); cd_cuda_free(ctx, dw); cd_cuda_free(ctx, db); cd_cuda_free(ctx, dy);
    }
    /* group_norm (+ SiLU, in place), transpose, linear with F32 weights */
    const int C = 24, G = 6;
    const size_t n = 7 * 13, ne = (size_t)C * n;
    float *x = test_rand_floats(ne, 2.0f, 50), *w = test_rand_floats((size_t)C * C, 0.5f, 51);
    float *b = test_rand_floats((size_t)C, 1.0f, 52), *want = malloc(ne * sizeof(float)), *got = malloc(ne * sizeof(float));
    CHECK(x && w && b && want && got, "setup");
    for (int silu = 0; silu < 2; silu++) {
        float *dx = dev(ctx, x, ne), *dw = dev(ctx, w, (size_t)C), *db = dev(ctx, b, (size_t)C);
        CHECK(dx && dw && db, "setup");
        cu->group_norm(ctx, dx, C, n, G, dw, db, CD_AE_EPS, silu, dx);
        ref->group_norm(ctx, x, C, n, G, w, b, CD_AE_EPS, silu, want);
        CHECK(cd_cuda_d2h(ctx, got, dx, ne * sizeof(float)) == CD_OK, "group_norm: %s", cd_ctx_error(ctx));
        const double e = test_rel_l2(got, want, ne);
        EXPECT(e <= 1e-5, "group_norm silu=%d: relative L2 %.3g", silu, e);
        cd_cuda_free(ctx, dx); cd_cuda_free(ctx, dw); cd_cuda_free(ctx, db);
    }
    {
        float *dx = dev(ctx, x, ne), *dy = dev(ctx, NULL, ne);
        CHECK(dx && dy, "setup");
        cu->transpose(ctx, dx, (size_t)C, n, dy);
        ref->transpose(ctx, x, (size_t)C, n, want);
        CHECK(cd_cuda_d2h(ctx, got, dy, ne * sizeof(float)) == CD_OK, "transpose: %s", cd_ctx_error(ctx));
        EXPECT(!memcmp(got, want, ne * sizeof(float)), "transpose differs");
        /* linear y [n, C] = x [n, C] W^T + b, F32 weights */
        float *dw = dev(ctx, w, (size_t)C * C), *db = dev(ctx, b, (size_t)C);
        CHECK(dw && db, "setup");
        const cd_weight lw = {dw, CD_DTYPE_F32, C, C}, hw = {w, CD_DTYPE_F32, C, C};
        EXPECT(cu->linear(ctx, dx, n, &lw, db, dy) == CD_OK, "linear f32: %s", cd_ctx_error(ctx));
        ref->linear(ctx, x, n, &hw, b, want);
        CHECK(cd_cuda_d2h(ctx, got, dy, ne * sizeof(float)) == CD_OK, "linear: %s", cd_ctx_error(ctx));
        const double e = test_rel_l2(got, want, ne), tol = 8 * U * sqrt(C + 1.0);
        EXPECT(e <= tol, "linear f32: relative L2 %.3g > %.3g", e, tol);
        cd_cuda_free(ctx, dx); cd_cuda_free(ctx, dy); cd_cuda_free(ctx, dw); cd_cuda_free(ctx, db);
    }
    free(x); free(w); free(b); free(want); free(got);
    cd_ctx_free(ctx);
}

/* A tiny random decoder (mid attention head_dim 32, which the CUDA attention supports) on the
 * CUDA table against the fast CPU table, untiled and tiled. */
TEST(cuda_ae_decoder) {
    cd_ctx *ctx = gpu();
    if (!ctx) return;
    const cd_ae_config cfg = {3, 3, 16, {1, 2}, 2, 1, 4, 0, 1};
    cd_ae_decoder *ae = NULL;
    CHECK(cd_ae_decoder_random(ctx, &cfg, 4, 9, &ae) == CD_OK, "%s", cd_ctx_error(ctx));
    const int h = 9, w = 7, n = 3 * h * 2 * w * 2;
    float *z = test_rand_floats((size_t)4 * h * w, 1.0f, 3), *a = malloc(n * sizeof(float)),
          *b = malloc(n * sizeof(float));
    CHECK(z && a && b, "alloc");
    const cd_ae_tiling t = {8, 0.5f};
    for (int tiled = 0; tiled < 2; tiled++) {
        EXPECT(cd_ae_decoder_set_ops(ctx, ae, cd_ops_cpu()) == CD_OK, "%s", cd_ctx_error(ctx));
        EXPECT(cd_ae_decode_tiled(ctx, ae, z, h, w, tiled ? &t : NULL, a) == CD_OK, "cpu: %s", cd_ctx_error(ctx));
        EXPECT(cd_ae_decoder_set_ops(ctx, ae, cd_ops_cuda()) == CD_OK && ae->dev, "set_ops: %s", cd_ctx_error(ctx));
        EXPECT(cd_ae_decode_tiled(ctx, ae, z, h, w, tiled ? &t : NULL, b) == CD_OK, "cuda: %s", cd_ctx_error(ctx));
        const double e = test_rel_l2(b, a, (size_t)n);
        EXPECT(e < 2e-2, "decoder on CUDA (tiled %d): relative L2 %.3g", tiled, e);
    }
    free(z); free(a); free(b);
    cd_ae_decoder_free(ae);
    cd_ctx_free(ctx);
}
