/* test_ops_ae.c — the autoencoder's ops (ops.h: conv2d, group_norm, transpose) of the fast CPU
 * table against the reference table (plain loops, double accumulation), on random non-zero inputs
 * with odd shapes, for every SIMD path this machine runs; and the whole autoencoder on the
 * reference table against the fast one (it is written once against the table).
 *
 * One table of (op, shape) rows and one compare function (check_row), so that the rows can move
 * into a table-driven op harness as they are. Metric: relative L2 over the output. Tolerances
 * from f32 unit roundoff u = 2^-24: a conv output is a random-signed f32 sum of K = cin k k + 1
 * terms, relative error <= 8 u sqrt(K) in L2; GroupNorm rounds a few times per element (mean,
 * rstd, the affine, SiLU): 32 u; a transpose moves values: 0. */
#include "test.h"
#include "../src/ops/ops.h"
#include "../src/model/ae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double U = 1.0 / 16777216.0;

enum { OP_CONV, OP_GN, OP_T };

typedef struct {
    const char *name;
    int op;
    cd_conv_desc cd; /* OP_CONV */
    int acc, bias;   /* OP_CONV: accumulate into y; with a bias */
    int C, G, silu, inplace; /* OP_GN: x [C, n], n = H W (from cd.H, cd.W) */
    size_t rows, cols;       /* OP_T */
} op_row;

#define CONV(nm, ci, h, w, co, k, s, up, l, r, t, b, acc, bias) \
    {nm, OP_CONV, {ci, h, w, co, k, s, up, {l, r, t, b}}, acc, bias, 0, 0, 0, 0, 0, 0}
#define GN(nm, c, g, h, w, silu, inpl) {nm, OP_GN, {0, h, w, 0, 0, 1, 0, {0, 0, 0, 0}}, 0, 0, c, g, silu, inpl, 0, 0}
#define TR(nm, r, c) {nm, OP_T, {0, 0, 0, 0, 0, 1, 0, {0, 0, 0, 0}}, 0, 0, 0, 0, 0, 0, r, c}

static const op_row k_rows[] = {
    CONV("conv3x3 pad 1", 5, 7, 9, 11, 3, 1, 0, 1, 1, 1, 1, 0, 1),
    CONV("conv3x3 pad 1, 1 row", 3, 1, 13, 6, 3, 1, 0, 1, 1, 1, 1, 0, 1),
    CONV("conv3x3 upsample x2", 3, 5, 7, 6, 3, 1, 1, 1, 1, 1, 1, 0, 1),
    CONV("conv3x3 stride 2 pad (0,1,0,1) odd", 7, 9, 11, 5, 3, 2, 0, 0, 1, 0, 1, 0, 1),
    CONV("conv3x3 stride 2 pad (0,1,0,1) even", 6, 8, 6, 9, 3, 2, 0, 0, 1, 0, 1, 0, 1),
    CONV("conv3x3 no bias, accumulate", 4, 6, 5, 3, 3, 1, 0, 1, 1, 1, 1, 1, 0),
    CONV("conv1x1", 13, 5, 3, 7, 1, 1, 0, 0, 0, 0, 0, 0, 1),
    CONV("conv1x1 accumulate", 9, 7, 5, 12, 1, 1, 0, 0, 0, 0, 0, 1, 1),
    CONV("conv1x1 stride 2 pad", 3, 7, 9, 5, 1, 2, 0, 1, 0, 0, 1, 0, 1),
    /* K Ho Wo = 576 x 200 x 200 > 2^24: the im2col runs in bands of rows */
    CONV("conv3x3 im2col bands", 64, 200, 200, 1, 3, 1, 0, 1, 1, 1, 1, 0, 1),
    GN("group_norm", 12, 3, 7, 9, 0, 0),
    GN("group_norm + silu in place", 12, 4, 5, 3, 1, 1),
    GN("group_norm 1 channel a group", 10, 10, 3, 7, 1, 0),
    GN("group_norm one group", 6, 1, 11, 1, 0, 1),
    TR("transpose", 7, 13),
    TR("transpose 33 x 65", 33, 65),
    TR("transpose 1 row", 1, 5),
};

static cd_ctx *ctx_for(cd_isa isa) {
    cd_ctx *c = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = 2;
    p.isa = isa;
    return cd_ctx_create(&p, &c) == CD_OK ? c : NULL;
}

/* Runs row r on `fast` (with ctx) and on the reference; returns the relative L2 error (INFINITY
 * on a failure) and the tolerance in *tol. */
static double check_row(cd_ctx *ctx, const cd_ops *fast, const op_row *r, unsigned long long seed, double *tol) {
    const cd_ops *ref = cd_ops_cpu_ref();
    size_t nin = 0, nout = 0, nw = 0, nb = 0;
    *tol = 0;
    const cd_conv_desc *d = &r->cd;
    switch (r->op) {
    case OP_CONV:
        nin = (size_t)d->cin * d->H * d->W;
        nout = (size_t)d->cout * cd_conv_out_h(d) * cd_conv_out_w(d);
        nw = (size_t)d->cout * d->cin * d->k * d->k;
        nb = (size_t)d->cout;
        *tol = 8 * U * sqrt((double)d->cin * d->k * d->k + 1);
        break;
    case OP_GN:
        nin = nout = (size_t)r->C * d->H * d->W;
        nw = nb = (size_t)r->C;
        *tol = 32 * U;
        break;
    case OP_T:
        nin = nout = r->rows * r->cols;
        *tol = 0;
        break;
    }
    float *x = test_rand_floats(nin, 1.5f, seed), *w = test_rand_floats(nw + 1, 0.5f, seed + 1);
    float *b = test_rand_floats(nb + 1, 1.0f, seed + 2), *y0 = test_rand_floats(nout, 1.0f, seed + 3);
    float *y = malloc(nout * sizeof(float) + 4), *yr = malloc(nout * sizeof(float) + 4);
    float *xr = malloc(nin * sizeof(float) + 4);
    double e = INFINITY;
    if (!x || !w || !b || !y0 || !y || !yr || !xr) goto done;
    memcpy(y, y0, nout * sizeof(float));
    memcpy(yr, y0, nout * sizeof(float));
    memcpy(xr, x, nin * sizeof(float));
    if (r->op == OP_GN)
        for (size_t i = 0; i < nw; i++) w[i] += 1.0f; /* scales around 1, as trained */
    switch (r->op) {
    case OP_CONV:
        if (fast->conv2d(ctx, d, x, w, r->bias ? b : NULL, r->acc, y) != CD_OK ||
            ref->conv2d(ctx, d, xr, w, r->bias ? b : NULL, r->acc, yr) != CD_OK)
            goto done;
        break;
    case OP_GN: {
        const size_t n = (size_t)d->H * d->W;
        fast->group_norm(ctx, x, r->C, n, r->G, w, b, CD_AE_EPS, r->silu, r->inplace ? x : y);
        ref->group_norm(ctx, xr, r->C, n, r->G, w, b, CD_AE_EPS, r->silu, r->inplace ? xr : yr);
        if (r->inplace) {
            memcpy(y, x, nout * sizeof(float));
            memcpy(yr, xr, nout * sizeof(float));
        }
        break;
    }
    case OP_T:
        fast->transpose(ctx, x, r->rows, r->cols, y);
        ref->transpose(ctx, xr, r->rows, r->cols, yr);
        break;
    }
    e = test_rel_l2(y, yr, nout);
done:
    free(x); free(w); free(b); free(y0); free(y); free(yr); free(xr);
    return e;
}

TEST(ops_ae_all_isas) {
    static const cd_isa isas[] = {CD_ISA_GENERIC, CD_ISA_AVX2, CD_ISA_AVX512};
    int ran = 0;
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        if (!cd_isa_supported(isas[ii])) continue;
        cd_ctx *ctx = ctx_for(isas[ii]);
        CHECK(ctx, "context for %s", cd_isa_name(isas[ii]));
        for (size_t i = 0; i < sizeof k_rows / sizeof k_rows[0]; i++) {
            double tol;
            const double e = check_row(ctx, cd_ops_cpu(), &k_rows[i], 100 + i, &tol);
            EXPECT(e <= tol, "%s: %s: relative L2 %.3g > %.3g", cd_isa_name(isas[ii]), k_rows[i].name, e, tol);
        }
        cd_ctx_free(ctx);
        ran++;
    }
    CHECK(ran >= 1, "no ISA path ran");
}

/* A tiny random decoder on the reference table against the fast CPU table: the forward runs on
 * any table. The reference accumulates in double, the fast path in f32 through a few dozen
 * layers: 1e-4. */
TEST(ops_ae_decoder_on_reference_table) {
    cd_ctx *ctx = ctx_for(CD_ISA_AUTO);
    CHECK(ctx, "context");
    const cd_ae_config cfg = {3, 3, 8, {1, 2}, 2, 1, 4, 0, 1};
    cd_ae_decoder *ae = NULL;
    CHECK(cd_ae_decoder_random(ctx, &cfg, 4, 9, &ae) == CD_OK, "%s", cd_ctx_error(ctx));
    const int h = 3, w = 5, n = 3 * h * 2 * w * 2;
    float *z = test_rand_floats((size_t)4 * h * w, 1.0f, 3), *a = malloc(n * sizeof(float)),
          *b = malloc(n * sizeof(float));
    CHECK(z && a && b, "alloc");
    EXPECT(cd_ae_decode(ctx, ae, z, h, w, a) == CD_OK, "fast: %s", cd_ctx_error(ctx));
    EXPECT(cd_ae_decoder_set_ops(ctx, ae, cd_ops_cpu_ref()) == CD_OK && ae->ops == cd_ops_cpu_ref(),
           "set_ops: %s", cd_ctx_error(ctx));
    EXPECT(cd_ae_decode(ctx, ae, z, h, w, b) == CD_OK, "reference: %s", cd_ctx_error(ctx));
    const double e = test_rel_l2(a, b, (size_t)n);
    EXPECT(e < 1e-4, "decoder on the reference table: relative L2 %.3g", e);
    free(z); free(a); free(b);
    cd_ae_decoder_free(ae);
    cd_ctx_free(ctx);
}
