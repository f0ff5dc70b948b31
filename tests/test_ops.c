/* test_ops.c — what the op harness (test_ops_harness.c) does not cover: the linear's refusal of
 * other weight dtypes, and the host helpers (timestep embedding, RoPE table) against their closed
 * forms. The backends against the reference tables: tests/test_ops_harness.c. */
#include "test.h"
#include "../src/ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static cd_ctx *ctx_for(cd_isa isa) {
    cd_ctx *c = NULL;
    cd_ctx_params p = {2, isa};
    return cd_ctx_create(&p, &c) == CD_OK ? c : NULL;
}

TEST(ops_linear_rejects_other_dtypes) {
    cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
    CHECK(ctx, "ctx");
    float x[4] = {1, 2, 3, 4}, y[4];
    int32_t h[4] = {0}; /* integer weights: no linear takes them (F16 and F8 are converted in tiles) */
    cd_weight w = {h, CD_DTYPE_I32, 2, 2};
    EXPECT(cd_ops_cpu()->linear(ctx, x, 2, &w, NULL, y) == CD_ERR_UNSUPPORTED, "I32 weight accepted");
    EXPECT(strstr(cd_ctx_error(ctx), "I32") != NULL, "message: %s", cd_ctx_error(ctx));
    const cd_op_desc d = {.op = CD_OP_LINEAR, .n = 2, .in = 2, .out = 2, .wdtype = CD_DTYPE_I32};
    EXPECT(cd_ops_cpu()->supports(cd_ops_cpu(), ctx, &d) == CD_ERR_UNSUPPORTED, "supports says yes to I32");
    cd_ctx_free(ctx);
}

/* the RoPE table: token 4 = (0, 1, 8); pair 0 is axis 0 (position 0: identity); pair 2 is axis 1,
 * j = 0 (omega 1): angle 1; pair 5 is axis 2, j = 0: angle 8; pair 6: 8 * 10000^(-1/3) */
TEST(ops_rope_table_closed_form) {
    const int n = 6, hd = 16, axes[3] = {4, 6, 6};
    float ids[6 * 3];
    for (int t = 0; t < n; t++) {
        ids[t * 3] = 0;
        ids[t * 3 + 1] = (float)(t / 3);
        ids[t * 3 + 2] = (float)(t % 3 + 7);
    }
    float cs[6 * 16];
    cd_rope_table(ids, n, axes, 10000.0, cs);
    const float *c4 = cs + 4 * hd;
    EXPECT(c4[0] == 1.0f && c4[1] == 0.0f, "axis 0 must not rotate");
    EXPECT(fabs(c4[4] - cos(1.0)) < 1e-7 && fabs(c4[5] - sin(1.0)) < 1e-7, "axis 1 pair 0");
    EXPECT(fabs(c4[10] - cos(8.0)) < 1e-7 && fabs(c4[11] - sin(8.0)) < 1e-7, "axis 2 pair 0");
    const double a6 = 8.0 * pow(10000.0, -2.0 / 6.0);
    EXPECT(fabs(c4[12] - cos(a6)) < 1e-7 && fabs(c4[13] - sin(a6)) < 1e-7, "axis 2 pair 1");
}

TEST(ops_timestep_embedding_closed_form) {
    float e[256];
    /* the argument t' f_i is a float32 product of float32 f_i (as in BFL and diffusers): within
     * t' f_i 2^-22 of the exact one (f_i within one ulp, then one rounding) */
    for (int half = 128; half >= 32; half /= 4) {
        cd_timestep_embedding(0.25f, 2 * half, e);
        for (int i = 0; i < half; i++) {
            const double f = exp(-log(10000.0) * i / half), tol = 250.0 * f * 0x1p-22 + 1e-6;
            EXPECT(fabs(e[i] - cos(250.0 * f)) < tol && fabs(e[half + i] - sin(250.0 * f)) < tol, "half %d i=%d: %g %g",
                   half, i, e[i], e[half + i]);
        }
    }
    /* t' = fl32(1000 t): t = 0.37f -> 370 exactly, so pair 0 (f = 1) is cos(370) */
    cd_timestep_embedding(0.37f, 256, e);
    EXPECT(fabs(e[0] - cos(370.0)) < 1e-7 && fabs(e[128] - sin(370.0)) < 1e-7, "t' must be rounded to f32");
    cd_timestep_embedding(0.0f, 256, e);
    EXPECT(e[0] == 1.0f && e[128] == 0.0f, "t = 0: cos first");
}
