/* test_parallel_cli.c — `--parallel patch` through the CLI under scripts/mpirun.sh (OpenMPI): the
 * image of 2 ranks equals one process's (exact text attention; floats summed in another order move a
 * pixel by at most one level), only rank 0 writes, and the failure modes end the job with a message
 * instead of a hang or a half-written image: ranks started with different arguments, a rank that
 * dies, flag errors. In a build without MPI the flag must say so. (Library-level exactness for
 * P = 2, 3, 4 on uneven grids: tests/mpi/test_patch.c, run by scripts/test.sh under mpirun.) */
#include "test.h"
#include "test_spawn.h"
#include "cleardit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int mpirun_usable(void) {
    return cd_comm_available() && access("scripts/mpirun.sh", X_OK) == 0 &&
           system("command -v mpirun >/dev/null 2>&1") == 0;
}

static double mean_abs_diff(cd_ctx *ctx, const char *a, const char *b, int *ok) {
    uint8_t *x = NULL, *y = NULL;
    uint32_t wx, hx, wy, hy;
    double d = 0;
    *ok = cd_png_read(ctx, a, &x, &wx, &hx) == CD_OK && cd_png_read(ctx, b, &y, &wy, &hy) == CD_OK && wx == wy &&
          hx == hy;
    int mx = 0;
    if (*ok)
        for (size_t i = 0; i < (size_t)wx * hx * 3; i++) {
            const int e = abs((int)x[i] - (int)y[i]);
            d += e;
            if (e > mx) mx = e;
        }
    free(x);
    free(y);
    return *ok ? (mx > 1 ? 1e9 : d / ((double)wx * hx * 3)) : 0;
}

TEST(parallel_cli_patch) {
    static cli_run r;
    char dir[] = "/tmp/cd_par_XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char one[64], two[64], bad[64];
    snprintf(one, sizeof one, "%s/one.png", dir);
    snprintf(two, sizeof two, "%s/two.png", dir);
    snprintf(bad, sizeof bad, "%s/bad.png", dir);
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    CHECK(cd_ctx_create(&p, &ctx) == CD_OK, "ctx");
    /* flag errors, found before any process group exists */
    RUN(&r, "generate", "--prompt", "sneaker", "--text-attention", "approx", "-o", bad);
    EXPECT(r.code == 2 && one_error_line(r.err, "generate") && strstr(r.err, "--parallel"),
           "text without parallel: %d %s", r.code, r.err);
    RUN(&r, "generate", "--prompt", "sneaker", "--parallel", "patch", "-o", bad);
    EXPECT(r.code == 2 && strstr(r.err, "CLEAR"), "dense parallel: %d %s", r.code, r.err);
    RUN(&r, "generate", "--prompt", "sneaker", "--radius", "3", "--parallel", "rows", "-o", bad);
    EXPECT(r.code == 2 && strstr(r.err, "patch"), "--parallel rows: %d %s", r.code, r.err);
    if (!mpirun_usable()) {
        RUN(&r, "generate", "--prompt", "sneaker", "--radius", "3", "--parallel", "patch", "-o", bad);
        EXPECT(cd_comm_available() ? r.code == 0 : (r.code == 2 && strstr(r.err, "MPI")), "without mpirun: %d %s",
               r.code, r.err);
    } else {
        const char *bin = cli_bin();
        RUN(&r, "generate", "--prompt", "sneaker", "--radius", "3", "--seed", "5", "--quiet", "-o", one);
        EXPECT(r.code == 0, "one process: %d %s", r.code, r.err);
        const char *two_ranks[] = {
            "scripts/mpirun.sh", "-np", "2",      bin, "generate", "--parallel", "patch", "--prompt", "sneaker",
            "--radius",          "3",   "--seed", "5", "--quiet",  "-o",         two,     NULL};
        CHECK(run_argv(two_ranks, &r), "spawn mpirun");
        EXPECT(r.code == 0 && r.err[0] == 0, "2 ranks: exit %d, stderr '%s'", r.code, r.err);
        int ok;
        const double mad = mean_abs_diff(ctx, one, two, &ok);
        EXPECT(ok && mad <= 0.1, "2 ranks vs one: mean |diff| %.3f levels (max must be <= 1)", mad);
        /* different arguments on the two ranks: both refuse, nothing written */
        const char *mism[] = {"scripts/mpirun.sh",
                              "-np",
                              "1",
                              bin,
                              "generate",
                              "--parallel",
                              "patch",
                              "--prompt",
                              "sneaker",
                              "--radius",
                              "3",
                              "--seed",
                              "1",
                              "-o",
                              bad,
                              ":",
                              "-np",
                              "1",
                              bin,
                              "generate",
                              "--parallel",
                              "patch",
                              "--prompt",
                              "sneaker",
                              "--radius",
                              "3",
                              "--seed",
                              "2",
                              "-o",
                              bad,
                              NULL};
        CHECK(run_argv(mism, &r), "spawn mpirun");
        EXPECT(r.code != 0 && strstr(r.err, "differ in the command-line arguments"), "mismatch: %d %s", r.code, r.err);
        EXPECT(access(bad, F_OK) != 0, "an image was written after a mismatch");
        /* a rank that exits at once: the job ends (bounded by --comm-timeout), nothing written */
        const char *dies[] = {"scripts/mpirun.sh",
                              "-np",
                              "1",
                              bin,
                              "generate",
                              "--parallel",
                              "patch",
                              "--prompt",
                              "sneaker",
                              "--radius",
                              "3",
                              "--comm-timeout",
                              "5",
                              "-o",
                              bad,
                              ":",
                              "-np",
                              "1",
                              "/bin/false",
                              NULL};
        CHECK(run_argv(dies, &r), "spawn mpirun");
        EXPECT(r.code != 0, "a dead rank: exit %d", r.code);
        EXPECT(access(bad, F_OK) != 0, "an image was written with a dead rank");
    }
    unlink(one);
    unlink(two);
    unlink(bad);
    rmdir(dir);
    cd_ctx_free(ctx);
}
