/* simd_exp2.h — 2^x on GCC vector types, written once for the attention kernel
 * (attn_kern_impl.h: exponents of score - running max, all <= 0) and the activation kernels
 * (ops_kern_impl.h: GELU's tanh and SiLU's sigmoid, any sign).
 *
 * CD_SIMD_EXP2(NAME, VF, VI, CLAMP_HI) defines `static inline VF NAME(VF x)` (always inlined)
 * for a float vector type VF and the int32 vector type VI of the same size:
 *   x <= -127, -inf and NaN give exactly 0 (attention: masked scores and fully masked rows,
 *   where score - max is -inf or NaN, weigh nothing; activations: 2^-127 and below vanish in
 *   their sums anyway);
 *   with CLAMP_HI = 1, x >= 127 is clamped to 127 (exp overflows to 2^127, not inf). Callers
 *   whose arguments are never positive (attention) pass 0 and skip the compare and blend.
 * Round-to-nearest split x = n + f, |f| <= 1/2; degree-7 Taylor series of 2^f (relative error
 * < 6e-9, below f32 rounding); 2^n built in the exponent field. */
#ifndef CD_SIMD_EXP2_H
#define CD_SIMD_EXP2_H

#define CD_SIMD_EXP2(NAME, VF, VI, CLAMP_HI)                                            \
    static inline __attribute__((always_inline)) VF NAME(VF x) {                        \
        const VF lo = (VF){0} - 127.0f, hi = (VF){0} + 127.0f;                          \
        const VF magic = (VF){0} + 12582912.0f; /* 1.5 * 2^23 */                        \
        const VI keep = x > lo;                 /* false for x <= -127, -inf and NaN */ \
        x = (VF)((keep & (VI)x) | (~keep & (VI)lo));                                    \
        if (CLAMP_HI) {                                                                 \
            const VI big = x > hi;                                                      \
            x = (VF)((big & (VI)hi) | (~big & (VI)x));                                  \
        }                                                                               \
        const VF t = x + magic, n = t - magic, f = x - n;                               \
        const VI e = (((VI)t - (VI)magic) + 127) << 23;                                 \
        VF p = (VF){0} + 1.525273380405984e-05f;                                        \
        p = p * f + 1.5403530393381606e-04f;                                            \
        p = p * f + 1.3333558146428443e-03f;                                            \
        p = p * f + 9.618129107628477e-03f;                                             \
        p = p * f + 5.550410866482158e-02f;                                             \
        p = p * f + 2.402265069591007e-01f;                                             \
        p = p * f + 6.931471805599453e-01f;                                             \
        p = p * f + 1.0f;                                                               \
        return (VF)((VI)(p * (VF)e) & keep);                                            \
    }

#endif
