/* quantize.c — float32 rows to the GGUF types gguf-py quantizes (quant.h), giving the bytes its
 * quants.py writes: the scale is computed in float32 as numpy does (e.g. Q4_0: d = x[argmax|x|] / -8,
 * id = 1/d, q = trunc(x*id + 8.5) clipped to 0..15), the codes are derived from that float32 d, and d
 * is stored rounded to f16 (round to nearest even). No fused multiply-add (this file is compiled
 * without -ffp-contract=fast), so x*id + 8.5 rounds twice as numpy's does. Layouts: docs/quant.md. */
#include "quant.h"

#include <math.h>
#include <string.h>

#include "../util/internal.h"
#include "ggml_types.h"

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

uint16_t cd_quant_f32_to_f16(float f) {
    const uint32_t u = f32_bits(f), e = (u >> 23) & 0xffu, m = u & 0x7fffffu;
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (e == 0xff) { /* inf; NaN keeps its top payload bits and stays NaN */
        uint16_t h = (uint16_t)(0x7c00u | (m >> 13));
        if (m && h == 0x7c00u) h++;
        return (uint16_t)(sign | h);
    }
    if (e >= 143) return (uint16_t)(sign | 0x7c00u); /* >= 2^16: overflows to inf */
    if (e < 102) return sign;                        /* < 2^-25: rounds to zero */
    /* The 24-bit significand shifted right to the half's unit: by 13 for normals, more for
     * subnormals (half exponent field 0 below 2^-14); a carry out of the mantissa bumps the
     * exponent, which is the right rounding, up to inf. */
    const uint32_t sig = m | 0x800000u;
    uint32_t shift, base;
    if (e >= 113) {
        shift = 13;
        base = ((e - 112u) << 10);
    } else {
        shift = 126u - e; /* 14..24 */
        base = 0;
    }
    uint32_t q = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (e >= 113) q &= 0x3ffu; /* the implicit bit is in base */
    uint32_t h = base + q;
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

/* numpy's float -> (u)int8 cast on x86 (cvttss2si, then the low byte): in-range values truncate,
 * anything else (only reachable from non-finite inputs) gives 0. */
static inline int cast_int(float t) { return t > -2147483648.0f && t < 2147483648.0f ? (int)t : 0; }
static inline int clip(int v, int hi) { return v < 0 ? 0 : v > hi ? hi : v; }
static inline float inv(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

/* The element of largest magnitude, the first one on ties (numpy argmax). */
static float absmax_signed(const float *x, int n) {
    int im = 0;
    for (int i = 1; i < n; i++)
        if (fabsf(x[i]) > fabsf(x[im])) im = i;
    return x[im];
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float a = x[0], b = x[0];
    for (int i = 1; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *mn = a;
    *mx = b;
}

/* Q4_0 {d, qs[16]}: codes 0..15 around 8; element j in the low nibble of qs[j], 16+j in the high. */
static void q_q4_0(const float *x, uint8_t *b) {
    const float d = absmax_signed(x, 32) / -8.0f, id = inv(d);
    uint8_t q[32];
    for (int i = 0; i < 32; i++) q[i] = (uint8_t)clip((uint8_t)cast_int(truncf(x[i] * id + 8.5f)), 15);
    wr16(b, cd_quant_f32_to_f16(d));
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(q[j] | (q[16 + j] << 4));
}

static void q_q4_1(const float *x, uint8_t *b) {
    float mn, mx;
    minmax(x, 32, &mn, &mx);
    const float d = (mx - mn) / 15.0f, id = inv(d);
    uint8_t q[32];
    for (int i = 0; i < 32; i++) q[i] = (uint8_t)clip((uint8_t)cast_int(truncf((x[i] - mn) * id + 0.5f)), 15);
    wr16(b, cd_quant_f32_to_f16(d));
    wr16(b + 2, cd_quant_f32_to_f16(mn));
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(q[j] | (q[16 + j] << 4));
}

/* 5-bit codes: low nibbles as Q4_0, bit 4 of code e in bit e of the little-endian u32 qh. */
static void pack5(const uint8_t q[32], uint8_t *qh, uint8_t *qs) {
    uint32_t h = 0;
    for (int i = 0; i < 32; i++) h |= (uint32_t)(q[i] >> 4) << i;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | ((q[16 + j] & 15) << 4));
}

static void q_q5_0(const float *x, uint8_t *b) {
    const float d = absmax_signed(x, 32) / -16.0f, id = inv(d);
    uint8_t q[32];
    for (int i = 0; i < 32; i++) q[i] = (uint8_t)clip((uint8_t)cast_int(truncf(x[i] * id + 16.5f)), 31);
    wr16(b, cd_quant_f32_to_f16(d));
    pack5(q, b + 2, b + 6);
}

static void q_q5_1(const float *x, uint8_t *b) {
    float mn, mx;
    minmax(x, 32, &mn, &mx);
    const float d = (mx - mn) / 31.0f, id = inv(d);
    uint8_t q[32];
    for (int i = 0; i < 32; i++) q[i] = (uint8_t)clip((uint8_t)cast_int(truncf((x[i] - mn) * id + 0.5f)), 31);
    wr16(b, cd_quant_f32_to_f16(d));
    wr16(b + 2, cd_quant_f32_to_f16(mn));
    pack5(q, b + 4, b + 8);
}

/* Q8_0 {d, qs[32] int8}: d = max|x| / 127, codes round(x/d) half away from zero. */
static void q_q8_0(const float *x, uint8_t *b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    const float d = amax / 127.0f, id = inv(d);
    wr16(b, cd_quant_f32_to_f16(d));
    for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)cast_int(roundf(x[i] * id));
}

/* float -> bf16 round to nearest even, NaN forced quiet (as gguf-py and ggml do). */
static uint16_t f32_to_bf16(float f) {
    uint64_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) u = (u & 0xffff0000u) | 0x400000u;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

int cd_quant_supported(uint32_t type) {
    switch (type) {
        case CD_GGML_F32:
        case CD_GGML_F16:
        case CD_GGML_BF16:
        case CD_GGML_Q4_0:
        case CD_GGML_Q4_1:
        case CD_GGML_Q5_0:
        case CD_GGML_Q5_1:
        case CD_GGML_Q8_0: return 1;
        default: return 0;
    }
}

cd_status cd_quant_row(cd_ctx *ctx, uint32_t type, const float *src, void *dst, size_t n) {
    const cd_ggml_type_info *ti = cd_ggml_type_get(type);
    if (!ti || !cd_quant_supported(type))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "quantizing to %s is not implemented",
                            ti ? ti->name : "an unknown type");
    if (n % ti->block_elems)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "a row of %zu elements is not a whole number of %s blocks (%u)", n,
                            ti->name, (unsigned)ti->block_elems);
    uint8_t *o = (uint8_t *)dst;
    void (*fn)(const float *, uint8_t *) = NULL;
    switch (type) {
        case CD_GGML_F32: memcpy(dst, src, n * sizeof(float)); return CD_OK;
        case CD_GGML_F16:
            for (size_t i = 0; i < n; i++) wr16(o + 2 * i, cd_quant_f32_to_f16(src[i]));
            return CD_OK;
        case CD_GGML_BF16:
            for (size_t i = 0; i < n; i++) wr16(o + 2 * i, f32_to_bf16(src[i]));
            return CD_OK;
        case CD_GGML_Q4_0: fn = q_q4_0; break;
        case CD_GGML_Q4_1: fn = q_q4_1; break;
        case CD_GGML_Q5_0: fn = q_q5_0; break;
        case CD_GGML_Q5_1: fn = q_q5_1; break;
        default: fn = q_q8_0; break;
    }
    for (size_t i = 0; i < n / 32; i++) fn(src + i * 32, o + i * ti->block_bytes);
    return CD_OK;
}
