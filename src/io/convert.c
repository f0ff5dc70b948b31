/* convert.c — cd_st_to_f32 / cd_st_to_bf16: converts a tensor's elements (F32, BF16, F16,
 * F8_E4M3, F8_E5M2) to f32 or bf16. Every read goes through memcpy because tensor data in a
 * mapped safetensors file has no alignment guarantee.
 *
 * To f32 every conversion is exact (every source value is representable in f32). To bf16 the
 * float8 and bf16 sources are exact too; F32 and F16 round to nearest even (F16 goes through its
 * exact f32 value, so it is rounded once) and NaN stays NaN (quiet, sign kept).
 *
 * What it is not: no integer, F64 or sub-byte sources (they are refused with a message naming
 * the dtype), no threading (callers convert one tensor at a time). */
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
    if (e == 15 && m == 7)
        v = NAN;
    else if (e == 0)
        v = ldexpf((float)m, -9); /* subnormal: m/8 * 2^(1-7) */
    else
        v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return neg ? -v : v;
}

/* torch float8_e5m2 is exactly the upper byte of an IEEE binary16 (with inf and NaN). */
static float f8e5m2_to_f32(uint8_t b) { return f16_to_f32((uint16_t)((uint16_t)b << 8)); }

static int convertible(cd_dtype dt) {
    return dt == CD_DTYPE_F32 || dt == CD_DTYPE_BF16 || dt == CD_DTYPE_F16 || dt == CD_DTYPE_F8_E4M3 ||
           dt == CD_DTYPE_F8_E5M2;
}

/* Checks that t is self-consistent (rank, shape, nbytes, data) and of a convertible dtype;
 * *numel = its element count. `op` ("to_f32", "to_bf16") starts every message. */
static cd_status check_source(cd_ctx *ctx, const char *op, const cd_st_tensor *t, const void *dst, uint64_t *numel) {
    if (!t || !dst) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: tensor or dst is NULL", op);
    char pn[CD_ST_PRINT_MAX];
    const char *name = cd_st_printable(t->name ? t->name : "(unnamed)", pn, sizeof pn);
    if (t->ndim < 0 || t->ndim > CD_MAX_DIMS)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: tensor '%s': rank %d out of range", op, name, t->ndim);
    for (int32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: tensor '%s': negative shape", op, name);
    if ((int)t->dtype < 0 || t->dtype >= CD_DTYPE_COUNT)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: tensor '%s': invalid dtype %d", op, name, (int)t->dtype);
    uint64_t nbytes;
    if (cd_st_size(t->dtype, t->ndim, t->shape, numel, &nbytes) != CD_ST_SIZE_OK || nbytes != t->nbytes)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: tensor '%s': nbytes %llu does not match its shape and dtype",
                            op, name, (unsigned long long)t->nbytes);
    if (*numel && !t->data) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: tensor '%s' has no data", op, name);
    if (!convertible(t->dtype))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "%s: tensor '%s': cannot convert dtype %s (supported: F32, BF16, F16, "
                            "F8_E4M3, F8_E5M2)",
                            op, name, cd_dtype_name(t->dtype));
    return CD_OK;
}

/* The f32 value of each float8 code of dtype dt (256 decodes once instead of one per element). */
static void f8_table(cd_dtype dt, float lut[256]) {
    for (int b = 0; b < 256; b++)
        lut[b] = dt == CD_DTYPE_F8_E4M3 ? f8e4m3_to_f32((uint8_t)b) : f8e5m2_to_f32((uint8_t)b);
}

static uint16_t load_u16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

int cd_dtype_float_convertible(cd_dtype dt) { return convertible(dt); }

float cd_elem_to_f32(cd_dtype dt, const void *src, size_t i) {
    const uint8_t *p = src;
    switch (dt) {
        case CD_DTYPE_F32: {
            float f;
            memcpy(&f, p + 4 * i, 4);
            return f;
        }
        case CD_DTYPE_BF16: return cd_bf16_to_f32(load_u16(p + 2 * i));
        case CD_DTYPE_F16: return f16_to_f32(load_u16(p + 2 * i));
        case CD_DTYPE_F8_E4M3: return f8e4m3_to_f32(p[i]);
        case CD_DTYPE_F8_E5M2: return f8e5m2_to_f32(p[i]);
        default: return NAN;
    }
}

void cd_elems_to_f32(cd_dtype dt, const void *src, size_t n, float *dst) {
    const uint8_t *p = src;
    if (dt == CD_DTYPE_F8_E4M3 || dt == CD_DTYPE_F8_E5M2) {
        float lut[256];
        f8_table(dt, lut);
        for (size_t i = 0; i < n; i++) dst[i] = lut[p[i]];
    } else if (dt == CD_DTYPE_F32) {
        if (n) memcpy(dst, p, n * 4);
    } else if (dt == CD_DTYPE_BF16) {
        for (size_t i = 0; i < n; i++) dst[i] = cd_bf16_to_f32(load_u16(p + 2 * i));
    } else {
        for (size_t i = 0; i < n; i++) dst[i] = cd_elem_to_f32(dt, src, i);
    }
}

cd_status cd_st_to_f32(cd_ctx *ctx, const cd_st_tensor *t, float *dst) {
    uint64_t n = 0; /* set by check_source */
    cd_status s = check_source(ctx, "to_f32", t, dst, &n);
    if (s) return s;
    const uint8_t *src = t->data;
    switch (t->dtype) {
        case CD_DTYPE_F32:
            if (n) memcpy(dst, src, (size_t)n * 4);
            break;
        case CD_DTYPE_BF16:
            for (uint64_t i = 0; i < n; i++) dst[i] = cd_bf16_to_f32(load_u16(src + 2 * i));
            break;
        case CD_DTYPE_F16:
            for (uint64_t i = 0; i < n; i++) dst[i] = f16_to_f32(load_u16(src + 2 * i));
            break;
        default: { /* F8_E4M3, F8_E5M2 (check_source refused everything else) */
            float lut[256];
            f8_table(t->dtype, lut);
            for (uint64_t i = 0; i < n; i++) dst[i] = lut[src[i]];
            break;
        }
    }
    return CD_OK;
}

cd_status cd_st_to_bf16(cd_ctx *ctx, const cd_st_tensor *t, uint16_t *dst) {
    uint64_t n = 0; /* set by check_source */
    cd_status s = check_source(ctx, "to_bf16", t, dst, &n);
    if (s) return s;
    const uint8_t *src = t->data;
    switch (t->dtype) {
        case CD_DTYPE_F32:
            for (uint64_t i = 0; i < n; i++) {
                float f;
                memcpy(&f, src + 4 * i, 4);
                dst[i] = cd_f32_to_bf16(f);
            }
            break;
        case CD_DTYPE_BF16:
            if (n) memcpy(dst, src, (size_t)n * 2);
            break;
        case CD_DTYPE_F16: /* exact f32 first, then one rounding */
            for (uint64_t i = 0; i < n; i++) dst[i] = cd_f32_to_bf16(f16_to_f32(load_u16(src + 2 * i)));
            break;
        default: { /* F8_E4M3, F8_E5M2: every value fits bf16 exactly */
            float lut[256];
            uint16_t lut16[256];
            f8_table(t->dtype, lut);
            for (int b = 0; b < 256; b++) lut16[b] = cd_f32_to_bf16(lut[b]);
            for (uint64_t i = 0; i < n; i++) dst[i] = lut16[src[i]];
            break;
        }
    }
    return CD_OK;
}
