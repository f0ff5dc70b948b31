/* test_patch_single.c — patch parallelism on one process with the single-process communicator
 * (cd_comm_init_single; no MPI, every build): the patch-parallel forward (the patch attention op,
 * pooled keys gathered, text partials merged) must equal the plain forward on the CPU to 1e-5
 * relative L2 in both text modes (one rank: the merge of one partial is the partial), and the
 * communicator's collectives are local copies. tests/mpi/test_patch.c covers several processes;
 * tests/test_cuda.c (cuda_patch_single_rank) the same comparison on a GPU. */
#include "patch_problem.h"
#include "../src/parallel/comm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(comm_single_collectives) {
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "context");
    cd_comm *c = NULL;
    CHECK(cd_comm_init_single(ctx, &c) == CD_OK && c, "init_single: %s", cd_ctx_error(ctx));
    EXPECT(cd_comm_rank(c) == 0 && cd_comm_size(c) == 1 && cd_comm_is_single(c), "rank %d size %d", cd_comm_rank(c),
           cd_comm_size(c));
    int a[3] = {1, 2, 3}, b[3] = {0, 0, 0};
    EXPECT(cd_comm_allgather(ctx, c, a, sizeof a, b, "t") == CD_OK && !memcmp(a, b, sizeof a), "allgather");
    const size_t n = 2 * sizeof(int);
    memset(b, 0, sizeof b);
    EXPECT(cd_comm_allgatherv(ctx, c, a, &n, b, "t") == CD_OK && b[0] == 1 && b[1] == 2 && b[2] == 0, "allgatherv");
    EXPECT(cd_comm_bcast(ctx, c, a, sizeof a, 0, "t") == CD_OK && a[0] == 1, "bcast");
    EXPECT(cd_comm_check_same(ctx, c, a, sizeof a, "t") == CD_OK, "check_same: %s", cd_ctx_error(ctx));
    EXPECT(cd_comm_start(ctx, c, NULL, 0, NULL, 0, "t") == CD_OK && cd_comm_wait(ctx, c) == CD_OK, "empty exchange: %s",
           cd_ctx_error(ctx));
    const cd_xfer x = {1, a, sizeof a};
    EXPECT(cd_comm_start(ctx, c, &x, 1, NULL, 0, "t") != CD_OK, "a message to rank 1 of 1 accepted");
    cd_comm_set_timeout(c, 2.5);
    EXPECT(cd_comm_timeout(c) == 2.5, "timeout %g", cd_comm_timeout(c));
    cd_comm_stats st;
    cd_comm_stats_get(c, &st);
    EXPECT(st.bytes_sent == 0 && st.messages == 0, "stats of local copies");
    cd_comm_free(c);
    cd_ctx_free(ctx);
}

/* plain vs single-communicator patch-parallel forward, exact and approx */
static void one_case(cd_ctx *ctx, cd_comm *comm, const patch_shape *c) {
    patch_problem pp;
    float *ref = NULL, *par = NULL;
    if (patch_problem_make(ctx, c, CD_DTYPE_F32, &pp) != CD_OK) {
        test_fail(__FILE__, __LINE__, "setup: %s", cd_ctx_error(ctx));
        return;
    }
    ref = malloc(pp.nout * sizeof(float));
    par = malloc(pp.nout * sizeof(float));
    if (!ref || !par || cd_flux_run(ctx, pp.m, &pp.p, ref) != CD_OK) {
        test_fail(__FILE__, __LINE__, "plain run: %s", cd_ctx_error(ctx));
        goto done;
    }
    for (int mode = 0; mode < 2; mode++) {
        const cd_text_attention tm = mode ? CD_TEXT_APPROX : CD_TEXT_EXACT;
        if (cd_flux_set_parallel(ctx, pp.m, comm, tm) != CD_OK) {
            test_fail(__FILE__, __LINE__, "set_parallel: %s", cd_ctx_error(ctx));
            goto done;
        }
        for (size_t i = 0; i < pp.nout; i++) par[i] = NAN;
        const cd_status s = cd_flux_run(ctx, pp.m, &pp.p, par);
        const double e = test_rel_l2(par, ref, pp.nout);
        EXPECT(s == CD_OK && e <= 1e-5, "%dx%d T=%d r=%d down=%d %s: status %d (%s), relative L2 %.3g", c->H, c->W,
               c->T, c->radius, c->down, mode ? "approx" : "exact", (int)s, s ? cd_ctx_error(ctx) : "", e);
    }
    EXPECT(cd_flux_set_parallel(ctx, pp.m, NULL, CD_TEXT_EXACT) == CD_OK, "back to one process");
done:
    patch_problem_free(&pp);
    free(ref);
    free(par);
}

TEST(patch_single_matches_plain) {
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "context");
    cd_comm *comm = NULL;
    CHECK(cd_comm_init_single(ctx, &comm) == CD_OK, "init_single: %s", cd_ctx_error(ctx));
    static const patch_shape cases[] = {
        {13, 7, 5, 2, 0}, {11, 9, 0, 4, 0}, {9, 8, 6, 100, 0}, {12, 8, 4, 3, 2}, {16, 8, 0, 5, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) one_case(ctx, comm, &cases[i]);
    /* dense attention is refused as on several processes */
    cd_comm_free(comm);
    cd_ctx_free(ctx);
}
