/* peak_impl.h — a tight FMA loop for measuring the machine's fp32 peak, compiled per ISA by
 * peak_{generic,avx2,avx512}.c. Twelve independent accumulator chains (in registers) cover the
 * FMA latency on every x86 core we target; an empty asm that "modifies" them each iteration keeps
 * the compiler from merging or hoisting the chains. */
#include <stdint.h>

typedef float pvf __attribute__((vector_size(PEAK_VL * 4)));

double PEAK_NAME(int64_t iters) {
    const pvf b = (pvf){0} + 0.9999999f, c = (pvf){0} + 1e-7f;
    pvf a0 = b * 1e-3f, a1 = b * 2e-3f, a2 = b * 3e-3f, a3 = b * 4e-3f, a4 = b * 5e-3f, a5 = b * 6e-3f, a6 = b * 7e-3f,
        a7 = b * 8e-3f, a8 = b * 9e-3f, a9 = b * 1e-2f, a10 = b * 1.1e-2f, a11 = b * 1.2e-2f;
    for (int64_t i = 0; i < iters; i++) {
        a0 = a0 * b + c;
        a1 = a1 * b + c;
        a2 = a2 * b + c;
        a3 = a3 * b + c;
        a4 = a4 * b + c;
        a5 = a5 * b + c;
        a6 = a6 * b + c;
        a7 = a7 * b + c;
        a8 = a8 * b + c;
        a9 = a9 * b + c;
        a10 = a10 * b + c;
        a11 = a11 * b + c;
        __asm__ volatile(""
                         : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8),
                           "+x"(a9), "+x"(a10), "+x"(a11));
    }
    pvf s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    volatile float sink = s[0];
    (void)sink;
    return (double)iters * 12.0 * PEAK_VL * 2.0; /* flops */
}
