/* peak.c — measures the fp32 FMA peak of this machine for the context's ISA and thread count:
 * every thread runs the FMA loop for about the requested time; GFLOP/s = total flops / wall time.
 * Used by the benchmarks to report kernels as a fraction of what the cores can do. */
#include "internal.h"

#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

double cd_fma_loop_generic(int64_t iters);
double cd_fma_loop_avx2(int64_t iters);
double cd_fma_loop_avx512(int64_t iters);

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double cd_measure_fma_peak(cd_ctx *ctx, double seconds) {
    double (*loop)(int64_t) = ctx->isa == CD_ISA_AVX512 ? cd_fma_loop_avx512
                              : ctx->isa == CD_ISA_AVX2 ? cd_fma_loop_avx2
                                                        : cd_fma_loop_generic;
    /* calibrate the iteration count on one thread, then run all threads at once */
    int64_t iters = 1 << 16;
    double t0 = now_s();
    loop(iters);
    double dt = now_s() - t0;
    while (dt < 0.02) {
        iters *= 4;
        t0 = now_s();
        loop(iters);
        dt = now_s() - t0;
    }
    iters = (int64_t)((double)iters * (seconds > 0 ? seconds : 0.3) / dt) + 1;
    double flops = 0.0;
    t0 = now_s();
#pragma omp parallel num_threads(ctx->threads) reduction(+ : flops)
    flops += loop(iters);
    dt = now_s() - t0;
    return flops / dt * 1e-9;
}
