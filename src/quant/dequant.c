/* dequant.c — dequantization of GGUF block types into float32 (quant.h), bit for bit as gguf-py's
 * quants.py computes it with numpy: the f16 scales are widened exactly, every product and sum is one
 * float32 operation in numpy's order (this file is compiled without -ffp-contract=fast, so no FMA
 * fuses them), e.g. Q4_K is (d*sc)*q - (dmin*m), never d*(sc*q). Layouts: docs/quant.md. */
#include "quant.h"

#include <string.h>

#include "ggml_types.h"

/* Little-endian field reads from possibly unaligned bytes. */
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint32_t f32_bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float rdh(const uint8_t *p) { return cd_quant_f16_to_f32(rd16(p)); }

float cd_quant_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN with its payload */
    if (e) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));  /* rebias 15 -> 127 */
    /* zero or subnormal: m * 2^-24 is exact in float32 */
    const float v = (float)m * 0x1p-24f;
    return sign ? -v : v;
}

/* The same conversion branch-free (each case computed, the right one selected) for the F16 row
 * loop, where the branches of the scalar form cost more than the arithmetic. */
static inline float f16_fast(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = h & 0x7c00u, m = h & 0x3ffu;
    const uint32_t normal = sign | (((uint32_t)(h & 0x7fffu) << 13) + 0x38000000u);
    const uint32_t special = sign | 0x7f800000u | (m << 13);
    const uint32_t subbits = sign | f32_bits_of((float)m * 0x1p-24f); /* exact: m * 2^-24 */
    return bits_f32(e == 0x7c00u ? special : e ? normal : subbits);
}

/* The non-linear 4-bit codebook of IQ4_NL and IQ4_XS. */
static const int8_t k_iq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Q4_0 {d, qs[16]}: element j (j < 16) is the low nibble of qs[j], element 16+j the high one. */
static void deq_q4_0(const uint8_t *b, float *y) {
    const float d = rdh(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 15) - 8);
        y[16 + j] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    const float d = rdh(b), m = rdh(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 15) + m;
        y[16 + j] = d * (float)(b[4 + j] >> 4) + m;
    }
}

/* Q5_0 {d, qh (u32), qs[16]}: bit e of qh is the fifth bit of element e. */
static void deq_q5_0(const uint8_t *b, float *y) {
    const float d = rdh(b);
    const uint32_t qh = rd32(b + 2);
    for (int j = 0; j < 16; j++) {
        const int lo = (b[6 + j] & 15) | (int)(((qh >> j) & 1) << 4);
        const int hi = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)(lo - 16);
        y[16 + j] = d * (float)(hi - 16);
    }
}

static void deq_q5_1(const uint8_t *b, float *y) {
    const float d = rdh(b), m = rdh(b + 2);
    const uint32_t qh = rd32(b + 4);
    for (int j = 0; j < 16; j++) {
        const int lo = (b[8 + j] & 15) | (int)(((qh >> j) & 1) << 4);
        const int hi = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)lo + m;
        y[16 + j] = d * (float)hi + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y) {
    const float d = rdh(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void deq_iq4_nl(const uint8_t *b, float *y) {
    const float d = rdh(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)k_iq4[b[2 + j] & 15];
        y[16 + j] = d * (float)k_iq4[b[2 + j] >> 4];
    }
}

/* Q2_K {scales[16], qs[64], d, dmin}: element e = h*128 + s*32 + j takes bits 2s..2s+1 of qs[h*32+j];
 * its 16-element group g = e/16 has scale d*(scales[g]&15) and offset dmin*(scales[g]>>4). */
static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    const float d = rdh(b + 80), dmin = rdh(b + 82);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int half = 0; half < 2; half++) { /* 16 elements of group g */
                const int g = h * 8 + s * 2 + half;
                const float dl = d * (float)(sc[g] & 15), ml = dmin * (float)(sc[g] >> 4);
                const uint8_t *q = qs + h * 32 + half * 16;
                float *o = y + g * 16;
                for (int j = 0; j < 16; j++) o[j] = dl * (float)((q[j] >> (2 * s)) & 3) - ml;
            }
}

/* Q3_K {hmask[32], qs[64], scales[12], d}: 2 low bits as Q2_K; bit e/32 of hmask[e%32] clear means
 * subtract 4. The 16 6-bit scales: low nibbles from bytes 0..7 (k < 8: low, k >= 8: high nibble of
 * byte k-8), high 2 bits from bits 2*(k/4) of byte 8 + k%4; signed by subtracting 32. */
static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32, *ss = b + 96;
    const float d = rdh(b + 108);
    float dl[16];
    for (int k = 0; k < 16; k++) {
        const int lo = k < 8 ? (ss[k] & 15) : (ss[k - 8] >> 4);
        const int hi = (ss[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
        dl[k] = d * (float)((lo | (hi << 4)) - 32);
    }
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int half = 0; half < 2; half++) { /* 16 elements of group g; e>>5 = h*4 + s */
                const int g = h * 8 + s * 2 + half;
                const uint8_t *q = qs + h * 32 + half * 16, *m = hm + half * 16;
                float *o = y + g * 16;
                for (int j = 0; j < 16; j++) {
                    const int ql = (q[j] >> (2 * s)) & 3, qh = (m[j] >> (h * 4 + s)) & 1;
                    o[j] = dl[g] * (float)(ql - ((qh ^ 1) << 2));
                }
            }
}

/* The 8 6-bit scales and mins of Q4_K/Q5_K packed in 12 bytes. */
static void kscale_min(const uint8_t *s, int sc[8], int mn[8]) {
    for (int i = 0; i < 4; i++) {
        sc[i] = s[i] & 63;
        mn[i] = s[4 + i] & 63;
        sc[4 + i] = (s[8 + i] & 15) | ((s[i] >> 2) & 48);
        mn[4 + i] = (s[8 + i] >> 4) | ((s[4 + i] >> 2) & 48);
    }
}

/* Q4_K {d, dmin, scales[12], qs[128]}: element e = c*64 + t*32 + j is nibble t of qs[c*32+j],
 * group e/32. */
static void deq_q4_k(const uint8_t *b, float *y) {
    const float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *qs = b + 16;
    int sc[8], mn[8];
    kscale_min(b + 4, sc, mn);
    for (int g = 0; g < 8; g++) {
        const float dl = d * (float)sc[g], ml = dmin * (float)mn[g];
        const uint8_t *q = qs + (g >> 1) * 32;
        const int sh = (g & 1) * 4;
        for (int j = 0; j < 32; j++) y[g * 32 + j] = dl * (float)((q[j] >> sh) & 15) - ml;
    }
}

/* Q5_K {d, dmin, scales[12], qh[32], qs[128]}: Q4_K's nibbles plus bit e/32 of qh[e%32] as bit 4. */
static void deq_q5_k(const uint8_t *b, float *y) {
    const float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    int sc[8], mn[8];
    kscale_min(b + 4, sc, mn);
    for (int g = 0; g < 8; g++) {
        const float dl = d * (float)sc[g], ml = dmin * (float)mn[g];
        const uint8_t *q = qs + (g >> 1) * 32;
        const int sh = (g & 1) * 4;
        for (int j = 0; j < 32; j++) y[g * 32 + j] = dl * (float)(((q[j] >> sh) & 15) | (((qh[j] >> g) & 1) << 4)) - ml;
    }
}

/* Q6_K {ql[128], qh[64], scales[16] (int8), d}: element e = h*128 + t*64 + j (j < 64) has low nibble
 * t of ql[h*64+j] and, writing e = h*128 + s*32 + i, high bits 2s..2s+1 of qh[h*32+i]; minus 32. */
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128, *ss = b + 192;
    const float d = rdh(b + 208);
    float dl[16];
    for (int k = 0; k < 16; k++) dl[k] = d * (float)(int8_t)ss[k];
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++) { /* 32 elements e = h*128 + s*32 + i */
            const uint8_t *l = ql + h * 64 + (s & 1) * 32, *hh = qh + h * 32;
            const int lsh = (s >> 1) * 4;
            float *o = y + h * 128 + s * 32;
            for (int half = 0; half < 2; half++) {
                const float dg = dl[h * 8 + s * 2 + half];
                for (int i = half * 16; i < half * 16 + 16; i++) {
                    const int q = ((l[i] >> lsh) & 15) | (((hh[i] >> (2 * s)) & 3) << 4);
                    o[i] = dg * (float)(q - 32);
                }
            }
        }
}

/* IQ4_XS {d, scales_h (u16), scales_l[4], qs[128]}: 8 groups of 32; group c's 6-bit scale is nibble
 * c%2 of scales_l[c/2] plus bits 2c..2c+1 of scales_h, minus 32; element c*32 + t*16 + j is codebook
 * entry nibble t of qs[c*16+j]. */
static void deq_iq4_xs(const uint8_t *b, float *y) {
    const float d = rdh(b);
    const uint16_t sh = rd16(b + 2);
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int c = 0; c < 8; c++) {
        const int s = (((sl[c >> 1] >> (4 * (c & 1))) & 15) | (((sh >> (2 * c)) & 3) << 4)) - 32;
        const float dl = d * (float)s;
        for (int j = 0; j < 16; j++) {
            y[c * 32 + j] = dl * (float)k_iq4[qs[c * 16 + j] & 15];
            y[c * 32 + 16 + j] = dl * (float)k_iq4[qs[c * 16 + j] >> 4];
        }
    }
}

typedef void (*deq_block_fn)(const uint8_t *b, float *y);

static deq_block_fn block_fn(uint32_t type) {
    switch (type) {
        case CD_GGML_Q4_0: return deq_q4_0;
        case CD_GGML_Q4_1: return deq_q4_1;
        case CD_GGML_Q5_0: return deq_q5_0;
        case CD_GGML_Q5_1: return deq_q5_1;
        case CD_GGML_Q8_0: return deq_q8_0;
        case CD_GGML_Q2_K: return deq_q2_k;
        case CD_GGML_Q3_K: return deq_q3_k;
        case CD_GGML_Q4_K: return deq_q4_k;
        case CD_GGML_Q5_K: return deq_q5_k;
        case CD_GGML_Q6_K: return deq_q6_k;
        case CD_GGML_IQ4_NL: return deq_iq4_nl;
        case CD_GGML_IQ4_XS: return deq_iq4_xs;
        default: return NULL;
    }
}

int cd_dequant_supported(uint32_t type) {
    return type == CD_GGML_F32 || type == CD_GGML_F16 || type == CD_GGML_BF16 || block_fn(type) != NULL;
}

void cd_dequant_row(uint32_t type, const void *src, float *dst, size_t n) {
    const uint8_t *s = (const uint8_t *)src;
    const cd_ggml_type_info *ti = cd_ggml_type_get(type);
    if (!ti || !cd_dequant_supported(type) || n % ti->block_elems) return;
    switch (type) {
        case CD_GGML_F32: memcpy(dst, src, n * sizeof(float)); return;
        case CD_GGML_F16:
            for (size_t i = 0; i < n; i++) dst[i] = f16_fast(rd16(s + 2 * i));
            return;
        case CD_GGML_BF16:
            for (size_t i = 0; i < n; i++) dst[i] = bits_f32((uint32_t)rd16(s + 2 * i) << 16);
            return;
        default: break;
    }
    const deq_block_fn fn = block_fn(type);
    const size_t nb = n / ti->block_elems;
    for (size_t i = 0; i < nb; i++) fn(s + i * ti->block_bytes, dst + i * ti->block_elems);
}
