/* ops_kern_impl.h — elementwise activation kernels written once with GCC vector extensions and
 * compiled per ISA by ops_kern_{generic,avx2,avx512}.c (OK_VL = f32 lanes per vector). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef float okf __attribute__((vector_size(OK_VL * 4)));
typedef int32_t oki __attribute__((vector_size(OK_VL * 4)));

static inline okf ok_splat(float x) { return (okf){0} + x; }
static inline okf ok_sel(oki m, okf a, okf b) { return (okf)((m & (oki)a) | (~m & (oki)b)); }

/* 2^x, |x| clamped to 127 (so exp overflows to 2^127, not inf); relative error < 6e-9. */
static inline okf ok_exp2(okf x) {
    const okf lo = ok_splat(-127.0f), hi = ok_splat(127.0f), magic = ok_splat(12582912.0f);
    x = ok_sel(x < lo, lo, x);
    x = ok_sel(x > hi, hi, x);
    okf t = x + magic, n = t - magic, f = x - n;
    oki e = (((oki)t - (oki)magic) + 127) << 23;
    okf p = ok_splat(1.525273380405984e-05f);
    p = p * f + 1.5403530393381606e-04f;
    p = p * f + 1.3333558146428443e-03f;
    p = p * f + 9.618129107628477e-03f;
    p = p * f + 5.550410866482158e-02f;
    p = p * f + 2.402265069591007e-01f;
    p = p * f + 6.931471805599453e-01f;
    p = p * f + 1.0f;
    return p * (okf)e;
}

static inline okf ok_gelu(okf v) {
    const okf u = (v + 0.044715f * v * v * v) * 0.7978845608028654f; /* sqrt(2/pi) */
    const okf th = 1.0f - 2.0f / (ok_exp2(u * 2.8853900817779268f) + 1.0f); /* tanh via e^(2u) */
    return 0.5f * v * (1.0f + th);
}

static inline okf ok_silu(okf v) { return v / (1.0f + ok_exp2(v * -1.4426950408889634f)); }

#define OK_MAP(NAME, FN)                                                                        \
    void NAME(float *x, size_t n) {                                                             \
        size_t i = 0;                                                                           \
        for (; i + OK_VL <= n; i += OK_VL) {                                                    \
            okf v;                                                                              \
            memcpy(&v, x + i, sizeof v);                                                        \
            v = FN(v);                                                                          \
            memcpy(x + i, &v, sizeof v);                                                        \
        }                                                                                       \
        if (i < n) { /* tail through one zero-padded vector */                                  \
            okf v = ok_splat(0.0f);                                                             \
            memcpy(&v, x + i, (n - i) * sizeof(float));                                         \
            v = FN(v);                                                                          \
            memcpy(x + i, &v, (n - i) * sizeof(float));                                         \
        }                                                                                       \
    }

OK_MAP(OK_GELU_NAME, ok_gelu)
OK_MAP(OK_SILU_NAME, ok_silu)
