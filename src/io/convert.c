/* convert.c — cd_st_to_f32: widens a tensor's elements (F32, BF16, F16, F8_E4M3, F8_E5M2) to
 * f32. Every read goes through memcpy because tensor data in a mapped safetensors file has no
 * alignment guarantee. Conversions are exact (every source value is representable in f32). */
#include "st_internal.h"

#include <math.h>

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in f32 */
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31) return f32_from_bits(sign | 0x7f800000u | (m << 13)); /* inf, NaN (payload kept) */
    return f32_from_bits(sign | ((e - 15 + 127) << 23) | (m << 13));
}

/* torch float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; only
 * S.1111.111 is NaN, so S.1111.110 = ±448 is the largest finite value. */
static float f8e4m3_to_f32(uint8_t b) {
    const int neg = b >> 7;
    const int e = (b >> 3) & 0xf, m = b & 0x7;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m, -9);            /* subnormal: m/8 * 2^(1-7) */
    else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return neg ? -v : v;
}

/* torch float8_e5m2 is exactly the upper byte of an IEEE binary16 (with inf and NaN). */
static float f8e5m2_to_f32(uint8_t b) { return f16_to_f32((uint16_t)((uint16_t)b << 8)); }

cd_status cd_st_to_f32(cd_ctx *ctx, const cd_st_tensor *t, float *dst) {
    if (!t || !dst) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "to_f32: tensor or dst is NULL");
    const char *name = t->name ? t->name : "(unnamed)";
    char pn[CD_ST_PRINT_MAX];
    if (t->ndim < 0 || t->ndim > CD_MAX_DIMS)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "to_f32: tensor '%s': rank %d out of range",
                            cd_st_printable(name, pn, sizeof pn), t->ndim);
    for (int32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "to_f32: tensor '%s': negative shape",
                                cd_st_printable(name, pn, sizeof pn));
    uint64_t n, nbytes;
    if (cd_st_size(t->dtype, t->ndim, t->shape, &n, &nbytes) != CD_ST_SIZE_OK ||
        nbytes != t->nbytes)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "to_f32: tensor '%s': nbytes %llu does not match its shape and dtype",
                            cd_st_printable(name, pn, sizeof pn), (unsigned long long)t->nbytes);
    if (n && !t->data)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "to_f32: tensor '%s' has no data",
                            cd_st_printable(name, pn, sizeof pn));
    const uint8_t *src = t->data;
    switch (t->dtype) {
    case CD_DTYPE_F32:
        memcpy(dst, src, (size_t)nbytes);
        break;
    case CD_DTYPE_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = cd_bf16_to_f32(h);
        }
        break;
    case CD_DTYPE_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = f16_to_f32(h);
        }
        break;
    case CD_DTYPE_F8_E4M3:
    case CD_DTYPE_F8_E5M2: {
        float lut[256]; /* 256 decodes once instead of one per element */
        for (int b = 0; b < 256; b++)
            lut[b] = t->dtype == CD_DTYPE_F8_E4M3 ? f8e4m3_to_f32((uint8_t)b)
                                                  : f8e5m2_to_f32((uint8_t)b);
        for (uint64_t i = 0; i < n; i++) dst[i] = lut[src[i]];
        break;
    }
    default:
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "to_f32: tensor '%s': cannot convert dtype %s to F32 (supported: F32, "
                            "BF16, F16, F8_E4M3, F8_E5M2)",
                            cd_st_printable(name, pn, sizeof pn), cd_dtype_name(t->dtype));
    }
    return CD_OK;
}
