/* test_st_bf16.c — cd_st_to_bf16: known values (round-to-nearest-even ties, NaN, inf, overflow),
 * F32 against an independent rounding reference on random bit patterns, F16 exhaustively, and
 * the float8 dtypes exactly. The f32 conversions are in test_safetensors.c. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleardit.h"

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float bf16_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* Round-to-nearest-even of a finite or infinite f32 to bf16, by comparing distances to the two
 * neighbouring bf16 values in double (exact): an oracle that shares no code with the library. */
static uint16_t ref_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint16_t lo = (uint16_t)(u >> 16); /* truncation: toward zero */
    if (isinf(x) || (u & 0xffffu) == 0) return lo;
    const uint16_t hi = (uint16_t)(lo + 1); /* next away from zero (may be inf) */
    const double a = fabs((double)bf16_f32(lo));
    const double b = (hi & 0x7fffu) == 0x7f80u ? ldexp(1.0, 128) : fabs((double)bf16_f32(hi));
    const double v = fabs((double)x);
    if (v - a < b - v) return lo;
    if (v - a > b - v) return hi;
    return (lo & 1u) ? hi : lo;
}

/* Converts n raw elements of dtype dt through a misaligned buffer. */
static cd_status to_bf16(cd_dtype dt, const void *raw, size_t n, uint16_t *out) {
    const size_t elt = (size_t)cd_dtype_bits(dt) / 8;
    unsigned char *buf = malloc(n * elt + 1);
    if (!buf) return CD_ERR_OOM;
    memcpy(buf + 1, raw, n * elt);
    cd_st_tensor t = {"t", dt, 1, {(int64_t)n}, buf + 1, (uint64_t)(n * elt)};
    cd_ctx *ctx;
    cd_ctx_create(NULL, &ctx);
    cd_status s = cd_st_to_bf16(ctx, &t, out);
    cd_ctx_free(ctx);
    free(buf);
    return s;
}

static cd_status to_f32(cd_dtype dt, const void *raw, size_t n, float *out) {
    cd_st_tensor t = {"t", dt, 1, {(int64_t)n}, raw, (uint64_t)(n * (size_t)cd_dtype_bits(dt) / 8)};
    cd_ctx *ctx;
    cd_ctx_create(NULL, &ctx);
    cd_status s = cd_st_to_f32(ctx, &t, out);
    cd_ctx_free(ctx);
    return s;
}

static int is_nan16(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu); }

TEST(bf16_known_values) {
    /* F32 bit patterns and their bf16 */
    static const struct {
        uint32_t in;
        uint16_t want;
    } k[] = {
        {0x3f800000u, 0x3f80}, /* 1 */
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: tie, even stays */
        {0x3f818000u, 0x3f82}, /* 1 + 3*2^-8: tie, odd rounds up */
        {0x3f808001u, 0x3f81}, /* just above the tie */
        {0x3f807fffu, 0x3f80}, /* just below */
        {0xbf818000u, 0xbf82}, /* negative tie rounds away from zero to even */
        {0x80000000u, 0x8000}, /* -0 */
        {0x00000001u, 0x0000}, /* smallest subnormal rounds to 0 */
        {0x00008000u, 0x0000}, /* subnormal tie to even 0 */
        {0x00018000u, 0x0002}, /* subnormal tie to even 2 */
        {0x7f7fffffu, 0x7f80}, /* max f32 overflows to inf */
        {0x7f7f0000u, 0x7f7f}, /* max bf16 stays */
        {0x7f800000u, 0x7f80}, /* inf */
        {0xff800000u, 0xff80}, /* -inf */
    };
    const size_t n = sizeof k / sizeof k[0];
    uint32_t in[sizeof k / sizeof k[0]];
    uint16_t out[sizeof k / sizeof k[0]];
    for (size_t i = 0; i < n; i++) in[i] = k[i].in;
    CHECK(to_bf16(CD_DTYPE_F32, in, n, out) == CD_OK, "f32");
    for (size_t i = 0; i < n; i++)
        EXPECT(out[i] == k[i].want, "f32 0x%08x -> 0x%04x, want 0x%04x", k[i].in, out[i], k[i].want);

    /* NaN stays NaN: quiet, signalling with a payload only in the low half, negative */
    const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xffc00001u, 0x7fffffffu};
    uint16_t on[4];
    CHECK(to_bf16(CD_DTYPE_F32, nans, 4, on) == CD_OK, "nan");
    for (int i = 0; i < 4; i++) {
        EXPECT(is_nan16(on[i]), "NaN 0x%08x -> 0x%04x is not NaN", nans[i], on[i]);
        EXPECT((on[i] >> 15) == (nans[i] >> 31), "NaN 0x%08x lost its sign", nans[i]);
    }

    /* F16: 1 + 2^-8 (tie, even), 1 + 3*2^-8 (tie, up), 65504, inf, NaN, smallest subnormal */
    const uint16_t h[] = {0x3c04, 0x3c0c, 0x7bff, 0x7c00, 0x7e00, 0x0001, 0x8000};
    const uint16_t hw[] = {0x3f80, 0x3f82, 0x4780, 0x7f80, 0, 0x3380, 0x8000};
    uint16_t oh[7];
    CHECK(to_bf16(CD_DTYPE_F16, h, 7, oh) == CD_OK, "f16");
    for (int i = 0; i < 7; i++) {
        if (i == 4)
            EXPECT(is_nan16(oh[i]), "f16 NaN -> 0x%04x", oh[i]);
        else
            EXPECT(oh[i] == hw[i], "f16 0x%04x -> 0x%04x, want 0x%04x", h[i], oh[i], hw[i]);
    }

    /* BF16 passes through bit-exactly (NaN payloads included) */
    const uint16_t b[] = {0x3f80, 0x7fc1, 0xff81, 0x0001, 0x8000};
    uint16_t ob[5];
    CHECK(to_bf16(CD_DTYPE_BF16, b, 5, ob) == CD_OK, "bf16");
    EXPECT(!memcmp(ob, b, sizeof b), "bf16 pass-through");

    /* Unsupported sources are refused with the dtype named */
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    int32_t iv[2] = {1, 2};
    cd_st_tensor ti = {"ints", CD_DTYPE_I32, 1, {2}, iv, 8};
    EXPECT(cd_st_to_bf16(ctx, &ti, ob) == CD_ERR_UNSUPPORTED, "I32 must be unsupported");
    EXPECT(strstr(cd_ctx_error(ctx), "to_bf16") && strstr(cd_ctx_error(ctx), "I32"), "message: %s", cd_ctx_error(ctx));
    cd_st_tensor wrong = {"w", CD_DTYPE_F32, 1, {3}, iv, 8};
    EXPECT(cd_st_to_bf16(ctx, &wrong, ob) == CD_ERR_INVALID_ARG, "inconsistent nbytes");
    EXPECT(cd_st_to_bf16(ctx, &ti, NULL) == CD_ERR_INVALID_ARG, "NULL dst");
    cd_ctx_free(ctx);
}

/* 200k random f32 bit patterns (every exponent, NaNs included) against the reference. */
TEST(bf16_f32_matches_reference) {
    enum { N = 200000 };
    uint32_t *in = malloc(N * sizeof *in);
    uint16_t *out = malloc(N * sizeof *out);
    CHECK(in && out, "alloc");
    test_rng r = test_rng_seed(2024);
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)test_rng_u64(&r);
        if (i % 4 == 1) u = (u & 0xffff0000u) | 0x8000u;                      /* exact ties */
        if (i % 4 == 2) u = (u & 0xffff0000u) | (u & 1u ? 0x7fffu : 0x8001u); /* next to ties */
        in[i] = u;
    }
    CHECK(to_bf16(CD_DTYPE_F32, in, N, out) == CD_OK, "convert");
    int bad = 0;
    for (int i = 0; i < N && bad < 5; i++) {
        const float x = bits_f32(in[i]);
        const int ok = isnan(x) ? is_nan16(out[i]) : out[i] == ref_bf16(x);
        if (!ok) {
            bad++;
            test_fail(__FILE__, __LINE__, "f32 0x%08x -> 0x%04x, want 0x%04x", in[i], out[i],
                      isnan(x) ? 0x7fc0 : ref_bf16(x));
        }
    }
    free(in);
    free(out);
}

/* Every F16 code: bf16 = RNE(exact f32 value); every float8 code: exact. */
TEST(bf16_f16_and_f8_exhaustive) {
    uint16_t *h = malloc(65536 * sizeof *h), *o = malloc(65536 * sizeof *o);
    float *f = malloc(65536 * sizeof *f);
    CHECK(h && o && f, "alloc");
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    if (to_f32(CD_DTYPE_F16, h, 65536, f) != CD_OK || to_bf16(CD_DTYPE_F16, h, 65536, o) != CD_OK) {
        free(h), free(o), free(f);
        CHECK(0, "convert f16");
    }
    int bad = 0;
    for (int i = 0; i < 65536 && bad < 5; i++) {
        const int ok = isnan(f[i]) ? is_nan16(o[i]) : o[i] == ref_bf16(f[i]);
        if (!ok) {
            bad++;
            test_fail(__FILE__, __LINE__, "f16 0x%04x -> 0x%04x, want 0x%04x", i, o[i], ref_bf16(f[i]));
        }
    }
    free(h), free(o), free(f);

    const cd_dtype f8[2] = {CD_DTYPE_F8_E4M3, CD_DTYPE_F8_E5M2};
    uint8_t all[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    for (int d = 0; d < 2; d++) {
        float v[256];
        uint16_t b[256];
        CHECK(to_f32(f8[d], all, 256, v) == CD_OK && to_bf16(f8[d], all, 256, b) == CD_OK, "f8");
        for (int i = 0; i < 256; i++) {
            const float back = bf16_f32(b[i]);
            EXPECT(isnan(v[i]) ? isnan(back) : (back == v[i] && signbit(back) == signbit(v[i])),
                   "%s 0x%02x -> bf16 %g, f32 %g", cd_dtype_name(f8[d]), i, back, v[i]);
        }
    }
}
