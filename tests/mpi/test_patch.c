/* test_patch.c — patch parallelism under mpirun (scripts/test.sh runs it with -np 2 and -np 3).
 * Every rank builds the same random FLUX-shaped model and inputs, runs the forward on one process
 * (the reference, computed by each rank alone) and patch-parallel across all ranks, and compares:
 *  - exact text attention: relative L2 error <= 1e-5 (f32; only the summation order differs: the
 *    text softmax is merged from per-rank partials, pooled keys are gathered), on grids whose rows
 *    do not divide evenly, with and without text tokens and pooled keys, radii from 1 to huge;
 *  - approx text attention (the paper's Eq. 7): finite, within 0.5 relative, and its PSNR against
 *    the exact output is printed (it is an approximation: nothing tighter can be asserted);
 *  - errors: mismatched shapes across ranks fail on every rank with a message; dense attention and
 *    more ranks than rows are refused; a rank that never sends ends the wait after the timeout;
 *  - the broadcast helper, and a single-process communicator beside MPI's (freeing it keeps MPI).
 * Rank 0 prints one line per failure and "N passed, N failed" (the counts of all ranks' checks). */
#include "cleardit.h"
#include "../patch_problem.h"
#include "../../src/parallel/comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_pass, g_fail, g_rank;

#undef EXPECT /* test.h's (for its helpers); this program counts across ranks itself */
#define EXPECT(cond, ...)                                                          \
    do {                                                                           \
        if (cond)                                                                  \
            g_pass++;                                                              \
        else {                                                                     \
            g_fail++;                                                              \
            fprintf(stderr, "FAIL (rank %d) %s:%d: ", g_rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
        }                                                                          \
    } while (0)

/* One case: reference (single process) vs patch-parallel (exact and approx). */
static void run_case(cd_ctx *ctx, cd_comm *comm, const patch_shape *c) {
    patch_problem pp;
    if (patch_problem_make(ctx, c, CD_DTYPE_F32, &pp) != CD_OK) {
        EXPECT(0, "setup: %s", cd_ctx_error(ctx));
        return;
    }
    const size_t n = pp.nout;
    float *ref = malloc(n * sizeof(float)), *par = malloc(n * sizeof(float));
    if (!ref || !par) {
        EXPECT(0, "out of memory");
        goto done;
    }
    EXPECT(cd_flux_run(ctx, pp.m, &pp.p, ref) == CD_OK, "reference: %s", cd_ctx_error(ctx));
    EXPECT(cd_flux_set_parallel(ctx, pp.m, comm, CD_TEXT_EXACT) == CD_OK, "set_parallel: %s", cd_ctx_error(ctx));
    for (size_t i = 0; i < n; i++) par[i] = NAN;
    cd_status s = cd_flux_run(ctx, pp.m, &pp.p, par);
    EXPECT(s == CD_OK, "%dx%d T=%d r=%d down=%d exact: %s", c->H, c->W, c->T, c->radius, c->down, cd_ctx_error(ctx));
    const double e = test_rel_l2(par, ref, n);
    EXPECT(s == CD_OK && e <= 1e-5, "%dx%d T=%d r=%d down=%d exact: relative L2 %.3g > 1e-5", c->H, c->W, c->T,
           c->radius, c->down, e);
    if (c->T > 0) {
        EXPECT(cd_flux_set_parallel(ctx, pp.m, comm, CD_TEXT_APPROX) == CD_OK, "set_parallel approx");
        s = cd_flux_run(ctx, pp.m, &pp.p, par);
        const double ea = test_rel_l2(par, ref, n);
        double mse = 0, peak = 0;
        for (size_t i = 0; i < n; i++) {
            mse += ((double)par[i] - ref[i]) * ((double)par[i] - ref[i]);
            peak = fmax(peak, fabs(ref[i]));
        }
        mse /= (double)n;
        EXPECT(s == CD_OK && ea <= 0.5, "%dx%d T=%d r=%d approx: relative L2 %.3g", c->H, c->W, c->T, c->radius, ea);
        if (g_rank == 0 && cd_comm_size(comm) > 1)
            printf(
                "approx text attention, %dx%d T=%d r=%d down=%d, %d ranks: relative L2 %.3g, PSNR %.1f dB vs exact\n",
                c->H, c->W, c->T, c->radius, c->down, cd_comm_size(comm), ea,
                mse > 0 ? 10 * log10(peak * peak / mse) : INFINITY);
    }
done:
    patch_problem_free(&pp);
    free(ref);
    free(par);
}

/* Refusals and faults. */
static void run_faults(cd_ctx *ctx, cd_comm *comm) {
    const int P = cd_comm_size(comm);
    const cd_flux_config cfg = {64, 2, 32, 1, 1, 16, 16, 32, 24, 128, 0};
    const int axes[3] = {8, 12, 12};
    cd_flux_model *m = NULL;
    const int H = 6, W = 5, T = 3, L = H * W;
    float *img = test_rand_floats((size_t)L * 16, 1.0f, 5), *txt = test_rand_floats((size_t)T * 32, 1.0f, 6);
    float *pooled = test_rand_floats(24, 1.0f, 7);
    float *ids = malloc((size_t)L * 3 * sizeof(float)), *tids = calloc((size_t)T * 3, sizeof(float));
    float *out = malloc((size_t)L * 16 * sizeof(float));
    if (!img || !txt || !pooled || !ids || !tids || !out || cd_flux_random(ctx, &cfg, CD_DTYPE_F32, axes, 1e4, 3, &m) ||
        cd_flux_img_ids(ctx, H, W, ids) || cd_flux_set_parallel(ctx, m, comm, CD_TEXT_EXACT)) {
        EXPECT(0, "fault setup: %s", cd_ctx_error(ctx));
        goto done;
    }
    /* a different radius on the last rank: every rank must refuse, naming the mismatch */
    cd_flux_run_params p = {img, txt,  pooled, ids, tids, 0.5f, 0, L, T, H, W, g_rank == P - 1 && P > 1 ? 3 : 2,
                            0,   NULL, 0,      0};
    cd_status s = cd_flux_run(ctx, m, &p, out);
    if (P > 1)
        EXPECT(s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "differ"), "mismatch: %d %s", s, cd_ctx_error(ctx));
    p.radius = 0; /* dense: refused */
    EXPECT(cd_flux_run(ctx, m, &p, out) == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "CLEAR"),
           "dense accepted: %s", cd_ctx_error(ctx));
    p.radius = 2; /* more ranks than rows */
    p.grid_h = 1;
    p.grid_w = L;
    if (P > 1)
        EXPECT(cd_flux_run(ctx, m, &p, out) == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "rows"),
               "1-row image on %d ranks: %s", P, cd_ctx_error(ctx));
    /* a rank that never sends: the wait ends after the timeout, naming it */
    if (P > 1) {
        cd_comm_set_timeout(comm, 0.5);
        float x = 1;
        if (g_rank == 0) {
            const cd_xfer r = {1, &x, sizeof x};
            s = cd_comm_start(ctx, comm, NULL, 0, &r, 1, "test");
            if (!s) s = cd_comm_wait(ctx, comm);
            EXPECT(s == CD_ERR_IO && strstr(cd_ctx_error(ctx), "rank(s) 1"), "timeout: %d %s", s, cd_ctx_error(ctx));
        }
        cd_comm_set_timeout(comm, 300);
    }
done:
    cd_flux_free(m);
    free(img);
    free(txt);
    free(pooled);
    free(ids);
    free(tids);
    free(out);
}

int main(int argc, char **argv) {
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    cd_comm *comm = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK || cd_comm_init(ctx, &argc, &argv, &comm) != CD_OK) {
        fprintf(stderr, "test_patch: %s\n", ctx ? cd_ctx_error(ctx) : "no context");
        return 1;
    }
    g_rank = cd_comm_rank(comm);
    static const patch_shape cases[] = {
        {13, 7, 5, 2, 0},  {13, 7, 5, 3, 0}, {11, 9, 0, 4, 0}, {16, 6, 4, 1, 0},
        {9, 8, 6, 100, 0}, {12, 8, 4, 3, 2}, {16, 8, 0, 5, 4}, {17, 5, 7, 6, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(ctx, comm, &cases[i]);
    run_faults(ctx, comm);
    { /* the broadcast helper (NCCL's id travels with it): rank 0's bytes on every rank */
        unsigned char id[128];
        for (int i = 0; i < 128; i++) id[i] = (unsigned char)(g_rank == 0 ? i * 7 + 1 : 0);
        EXPECT(cd_comm_bcast(ctx, comm, id, sizeof id, 0, "test id") == CD_OK, "bcast: %s", cd_ctx_error(ctx));
        int same = 1;
        for (int i = 0; i < 128; i++) same &= id[i] == (unsigned char)(i * 7 + 1);
        EXPECT(same, "bcast: rank %d got other bytes", g_rank);
        EXPECT(cd_comm_bcast(ctx, comm, id, 1, cd_comm_size(comm), "bad root") != CD_OK,
               "bcast from a rank past the last");
    }
    { /* the single-process communicator beside MPI: a local run of one rank's whole image */
        cd_comm *one = NULL;
        EXPECT(cd_comm_init_single(ctx, &one) == CD_OK && cd_comm_size(one) == 1 && cd_comm_rank(one) == 0,
               "single comm under mpirun: %s", cd_ctx_error(ctx));
        cd_comm_free(one); /* must not finalize MPI */
    }
    int mine[2] = {g_pass, g_fail}, *all = calloc(2 * (size_t)cd_comm_size(comm), sizeof(int));
    int pass = 0, fail = 0;
    if (all && cd_comm_allgather(ctx, comm, mine, sizeof mine, all, "results") == CD_OK)
        for (int i = 0; i < cd_comm_size(comm); i++) {
            pass += all[2 * i];
            fail += all[2 * i + 1];
        }
    else
        fail++;
    if (g_rank == 0) printf("%d passed, %d failed\n", pass, fail);
    free(all);
    cd_comm_free(comm);
    cd_ctx_free(ctx);
    return fail ? 1 : 0;
}
