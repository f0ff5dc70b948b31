/* ops_kern_impl.h — elementwise activation kernels written once with GCC vector extensions and
 * compiled per ISA by ops_kern_{generic,avx2,avx512}.c (OK_VL = f32 lanes per vector). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "simd_exp2.h"

typedef float okf __attribute__((vector_size(OK_VL * 4)));
typedef int32_t oki __attribute__((vector_size(OK_VL * 4)));

static inline okf ok_splat(float x) { return (okf){0} + x; }

/* 2^x (simd_exp2.h): x >= 127 is clamped to 127 (exp overflows to 2^127, not inf); x <= -127
 * gives 0, which GELU and SiLU only ever add to 1 (where 2^-127 would vanish anyway). */
CD_SIMD_EXP2(ok_exp2, okf, oki, 1)

static inline okf ok_gelu(okf v) {
    const okf u = (v + 0.044715f * v * v * v) * 0.7978845608028654f; /* sqrt(2/pi) */
    /* 0.5 (1 + tanh u) = 1 / (1 + e^(-2u)): no cancellation in the negative tail, where
     * 1 + tanh u would lose every digit (x = -5: gelu = -6e-8) */
    return v / (1.0f + ok_exp2(u * -2.8853900817779268f));
}

static inline okf ok_silu(okf v) { return v / (1.0f + ok_exp2(v * -1.4426950408889634f)); }

#define OK_MAP(NAME, FN)                                       \
    void NAME(float *x, size_t n) {                            \
        size_t i = 0;                                          \
        for (; i + OK_VL <= n; i += OK_VL) {                   \
            okf v;                                             \
            memcpy(&v, x + i, sizeof v);                       \
            v = FN(v);                                         \
            memcpy(x + i, &v, sizeof v);                       \
        }                                                      \
        if (i < n) { /* tail through one zero-padded vector */ \
            okf v = ok_splat(0.0f);                            \
            memcpy(&v, x + i, (n - i) * sizeof(float));        \
            v = FN(v);                                         \
            memcpy(x + i, &v, (n - i) * sizeof(float));        \
        }                                                      \
    }

OK_MAP(OK_GELU_NAME, ok_gelu)
OK_MAP(OK_SILU_NAME, ok_silu)
