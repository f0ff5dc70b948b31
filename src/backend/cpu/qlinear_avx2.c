/* qlinear_avx2.c — the AVX2 quantized-linear kernel (qlinear.h; flags from the Makefile's *_avx2.o
 * rule, plus F16C for the weight scales: every AVX2 CPU has it). AVX2 has no signed x signed byte
 * multiply, so each pair uses the sign trick: vpmaddubsw(|w|, sign(x, w)) gives the same pairwise
 * sums as w * x (|w| <= 128 and |x| <= 127 keep each int16 pair sum below 2^15, so no saturation),
 * vpmaddwd with ones widens them to 8 int32 lanes, and the lanes go to f32 (exact: |sum| < 2^24)
 * scaled by d_w * d_x into the accumulator. Register block: 4 activation rows x 4 weight rows. */
#pragma GCC target("f16c")
#include "qlinear.h"

#include "../../quant/ggml_types.h"

#include <immintrin.h>

/* Weight block p (wtype) as 32 int8 values. */
static inline __attribute__((always_inline)) __m256i wload(const uint8_t *p, uint32_t wtype) {
    if (wtype == CD_GGML_Q8_0) return _mm256_loadu_si256((const __m256i *)(p + 2));
    /* Q4_0: low nibbles are elements 0..15, high nibbles 16..31, offset by 8 */
    const __m128i v = _mm_loadu_si128((const __m128i *)(p + 2)), m = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

static inline __attribute__((always_inline)) uint16_t f16at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

/* rx (<= 4) activation rows from xr (row stride nb blocks) times 4 weight rows w0..w3 (rows of
 * nb blocks of bs bytes): y[i][o + r] for r < rw. Per block and activation row the 4 pairs' int32
 * lanes are folded by unpacks and adds into one vector (lanes 0..3: rows 0..3 from the low 128 bits, 4..7
 * from the high), so one conversion and one FMA with [d_w0..d_w3, d_w0..d_w3] * d_x serve 4
 * pairs. Constant rx unrolls into registers. */
static inline __attribute__((always_inline)) void micro(int rx, int rw, const cd_qx_block *xr, size_t nb,
                                                        const uint8_t *const wr[4], size_t bs, uint32_t wtype,
                                                        const float *b, int32_t o, float *y, size_t ldy) {
    __m256 acc[4];
    for (int i = 0; i < rx; i++) acc[i] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t k = 0; k < nb; k++) {
        const size_t off = k * bs;
        const __m256i w0 = wload(wr[0] + off, wtype), w1 = wload(wr[1] + off, wtype);
        const __m256i w2 = wload(wr[2] + off, wtype), w3 = wload(wr[3] + off, wtype);
        /* |w|: -128 becomes 0x80, which vpmaddubsw reads as unsigned 128 */
        const __m256i a0 = _mm256_sign_epi8(w0, w0), a1 = _mm256_sign_epi8(w1, w1);
        const __m256i a2 = _mm256_sign_epi8(w2, w2), a3 = _mm256_sign_epi8(w3, w3);
        const __m128 d4 =
            _mm_cvtph_ps(_mm_setr_epi16((short)f16at(wr[0] + off), (short)f16at(wr[1] + off), (short)f16at(wr[2] + off),
                                        (short)f16at(wr[3] + off), 0, 0, 0, 0));
        const __m256 dw = _mm256_set_m128(d4, d4);
        for (int i = 0; i < rx; i++) {
            const cd_qx_block *q = xr + (size_t)i * nb + k;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)q->q);
            /* |w| * sign(x, w) = w * x; |x| <= 127 so sign(x, w) never overflows, and |w| <= 128
             * (unsigned) keeps each int16 pair sum below 2^15 */
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(xv, w0)), ones);
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(xv, w1)), ones);
            const __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(a2, _mm256_sign_epi8(xv, w2)), ones);
            const __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(a3, _mm256_sign_epi8(xv, w3)), ones);
            /* fold: per 128-bit half [p0 p1 p0 p1], [p2 p3 p2 p3], then [p0 p1 p2 p3] (unpacks and
             * adds: cheaper than vphaddd on Zen) */
            const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
            const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
            const __m256i h = _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, _mm256_set1_ps(q->d)), acc[i]);
        }
    }
    for (int i = 0; i < rx; i++) {
        float s[4];
        _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1)));
        for (int r = 0; r < rw; r++) y[(size_t)i * ldy + (size_t)(o + r)] = b ? s[r] + b[o + r] : s[r];
    }
}

void cd_qlinear_kern_avx2(const cd_qx_block *xq, size_t n, size_t nb, const uint8_t *w, size_t wrow, uint32_t wtype,
                          int32_t o0, int32_t o1, const float *b, float *y, size_t ldy) {
    const size_t bs = wtype == CD_GGML_Q8_0 ? 34 : 18;
    for (size_t i = 0; i < n; i += 4) {
        const size_t rx = n - i < 4 ? n - i : 4;
        const cd_qx_block *xr = xq + i * nb;
        float *yr = y + i * ldy;
        for (int32_t o = o0; o < o1; o += 4) {
            /* a short last group repeats its first row; only rw outputs are stored */
            const int rw = o1 - o < 4 ? o1 - o : 4;
            const uint8_t *wr[4];
            for (int r = 0; r < 4; r++) wr[r] = w + (size_t)(o + (r < rw ? r : 0)) * wrow;
            switch (rx) {
                case 4: micro(4, rw, xr, nb, wr, bs, wtype, b, o, yr, ldy); break;
                case 3: micro(3, rw, xr, nb, wr, bs, wtype, b, o, yr, ldy); break;
                case 2: micro(2, rw, xr, nb, wr, bs, wtype, b, o, yr, ldy); break;
                default: micro(1, rw, xr, nb, wr, bs, wtype, b, o, yr, ldy); break;
            }
        }
    }
}
