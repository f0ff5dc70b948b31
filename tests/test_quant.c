/* test_quant.c — src/quant (quant.h) against gguf-py: the dequantization of random blocks of every
 * supported type (edge f16 scales: +-65504, +-0, subnormals, +-inf, NaN) and the quantization of
 * random rows (scales 1e-30..1e30, zero/constant/one-hot/tie blocks; F16/BF16 with NaN, inf and
 * rounding edges) that tests/oracle/quant_fixtures.py wrote to tests/fixtures/quant/ must match bit
 * for bit (NaN compared as NaN). Also: quantize -> dequantize stays within each type's bound, the
 * sources may be unaligned, and unsupported types / partial blocks are refused. */
#include "test.h"
#include "cleardit.h"
#include "../src/quant/ggml_types.h"
#include "../src/quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/quant/quant.safetensors"
#define REGEN "run 'python3 tests/oracle/quant_fixtures.py' from the repository root"

static const uint32_t k_deq_types[] = {CD_GGML_F16,  CD_GGML_BF16, CD_GGML_Q4_0,   CD_GGML_Q4_1,  CD_GGML_Q5_0,
                                       CD_GGML_Q5_1, CD_GGML_Q8_0, CD_GGML_Q2_K,   CD_GGML_Q3_K,  CD_GGML_Q4_K,
                                       CD_GGML_Q5_K, CD_GGML_Q6_K, CD_GGML_IQ4_NL, CD_GGML_IQ4_XS};
static const uint32_t k_q_types[] = {CD_GGML_F16,  CD_GGML_BF16, CD_GGML_Q4_0, CD_GGML_Q4_1,
                                     CD_GGML_Q5_0, CD_GGML_Q5_1, CD_GGML_Q8_0};

static const cd_st_tensor *find(const cd_st_file *f, const char *kind, const char *type, const char *io) {
    char key[64];
    snprintf(key, sizeof key, "%s.%s.%s", kind, type, io);
    return cd_st_find(f, key);
}

/* Equal bits, or both NaN (the NaN's sign and payload follow from inf*0 and are not specified). */
static int same_f32(float a, float b) {
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y || (isnan(a) && isnan(b));
}

TEST(quant_dequant_matches_gguf_py) {
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, FIX, &f) == CD_OK, "cannot open %s: %s", FIX, REGEN);
    for (size_t t = 0; t < sizeof k_deq_types / sizeof k_deq_types[0]; t++) {
        const cd_ggml_type_info *ti = cd_ggml_type_get(k_deq_types[t]);
        const cd_st_tensor *in = find(f, "deq", ti->name, "in"), *out = find(f, "deq", ti->name, "out");
        if (!in || !out || in->dtype != CD_DTYPE_U8 || out->dtype != CD_DTYPE_F32) {
            cd_st_close(f);
            CHECK(0, "%s lacks deq.%s.in/out: %s", FIX, ti->name, REGEN);
        }
        const size_t n = (size_t)(out->nbytes / 4);
        EXPECT(cd_dequant_supported(k_deq_types[t]), "%s not supported", ti->name);
        EXPECT(cd_ggml_row_bytes(k_deq_types[t], n) == in->nbytes, "%s: %zu elements vs %llu bytes", ti->name, n,
               (unsigned long long)in->nbytes);
        /* +1: an odd address, as a mapped file gives */
        uint8_t *src = malloc((size_t)in->nbytes + 1);
        float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
        if (!src || !got || !want) {
            free(src), free(got), free(want), cd_st_close(f);
            CHECK(0, "out of memory");
        }
        memcpy(src + 1, in->data, (size_t)in->nbytes);
        memcpy(want, out->data, n * sizeof(float));
        cd_dequant_row(k_deq_types[t], src + 1, got, n);
        size_t bad = 0, first = n, nan = 0;
        for (size_t i = 0; i < n; i++) {
            nan += isnan(want[i]) != 0;
            if (!same_f32(got[i], want[i])) {
                bad++;
                if (first == n) first = i;
            }
        }
        EXPECT(bad == 0, "%s: %zu of %zu differ from gguf-py, first at %zu: %a vs %a", ti->name, bad, n, first,
               first < n ? (double)got[first] : 0.0, first < n ? (double)want[first] : 0.0);
        /* The fixtures do exercise NaN scales / NaN inputs for every type. */
        EXPECT(nan > 0, "%s: the fixture has no NaN case", ti->name);
        free(src), free(got), free(want);
    }
    cd_st_close(f);
}

TEST(quant_quantize_matches_gguf_py) {
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, FIX, &f) == CD_OK, "cannot open %s: %s", FIX, REGEN);
    for (size_t t = 0; t < sizeof k_q_types / sizeof k_q_types[0]; t++) {
        const uint32_t type = k_q_types[t];
        const cd_ggml_type_info *ti = cd_ggml_type_get(type);
        const cd_st_tensor *in = ti->block_elems > 1 ? cd_st_find(f, "q.blocks.in") : find(f, "q", ti->name, "in");
        const cd_st_tensor *out = find(f, "q", ti->name, "out");
        if (!in || !out || in->dtype != CD_DTYPE_F32 || out->dtype != CD_DTYPE_U8) {
            cd_st_close(f);
            CHECK(0, "%s lacks the q.%s fixtures: %s", FIX, ti->name, REGEN);
        }
        const size_t n = (size_t)(in->nbytes / 4), nb = cd_ggml_row_bytes(type, n);
        EXPECT(cd_quant_supported(type), "%s not supported", ti->name);
        EXPECT(nb == out->nbytes, "%s: %zu bytes vs gguf-py's %llu", ti->name, nb, (unsigned long long)out->nbytes);
        float *x = malloc(n * sizeof(float));
        uint8_t *got = malloc(nb + 1);
        if (!x || !got || nb != out->nbytes) {
            free(x), free(got), cd_st_close(f);
            CHECK(0, "out of memory or size mismatch");
        }
        memcpy(x, in->data, n * sizeof(float));
        EXPECT(cd_quant_row(NULL, type, x, got + 1, n) == CD_OK, "%s: quantize failed", ti->name);
        const uint8_t *want = out->data;
        size_t bad = 0, first = nb;
        for (size_t i = 0; i < nb; i++)
            if (got[1 + i] != want[i]) {
                bad++;
                if (first == nb) first = i;
            }
        EXPECT(bad == 0, "%s: %zu of %zu bytes differ from gguf-py, first at byte %zu (block %zu): %02x vs %02x",
               ti->name, bad, nb, first, first / ti->block_bytes, first < nb ? got[1 + first] : 0,
               first < nb ? want[first] : 0);
        free(x), free(got);
    }
    cd_st_close(f);
}

/* Round trip bound per block, as a fraction of the block's max |x| (the f16 rounding of d and m adds
 * at most ~2^-11 relative per factor, hence the 0.004): Q8_0 half a step of amax/127; Q4_0 / Q5_0
 * one step (the code range is asymmetric: -amax maps to -8 (-16), +amax clips to 7 (15));
 * Q4_1 / Q5_1 half a step of (max-min)/15 (31) <= amax/15 (31). F16 / BF16: relative 2^-11 / 2^-8
 * (F16 relative to max(|x|, 1e-3): below 2^-14 its steps are absolute). */
static double bound(uint32_t type) {
    switch (type) {
        case CD_GGML_Q8_0: return 0.5 / 127 + 0.004;
        case CD_GGML_Q4_0: return 1.0 / 8 + 0.004;
        case CD_GGML_Q5_0: return 1.0 / 16 + 0.004;
        case CD_GGML_Q4_1: return 1.0 / 15 + 0.004;
        case CD_GGML_Q5_1: return 1.0 / 31 + 0.004;
        case CD_GGML_F16: return 0x1p-11;
        default: return 0x1p-8; /* BF16 */
    }
}

TEST(quant_round_trip_within_bound) {
    enum { N = 32 * 64 };
    float *x = test_rand_floats(N, 1.0f, 77), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4);
    if (!x || !y || !q) {
        free(x), free(y), free(q);
        CHECK(0, "out of memory");
    }
    /* blocks at scales 1e-3 .. 1e3 (F16 stays in its normal range) */
    for (size_t i = 0; i < N; i++) x[i] *= powf(10.0f, (float)((i / 32) % 7) - 3.0f);
    for (size_t t = 0; t < sizeof k_q_types / sizeof k_q_types[0]; t++) {
        const uint32_t type = k_q_types[t];
        CHECK(cd_quant_row(NULL, type, x, q, N) == CD_OK, "quantize %s", cd_ggml_type_get(type)->name);
        cd_dequant_row(type, q, y, N);
        double worst = 0;
        for (size_t b = 0; b < N / 32; b++) {
            double amax = 0;
            for (int i = 0; i < 32; i++) amax = fmax(amax, fabs(x[b * 32 + i]));
            for (int i = 0; i < 32; i++) {
                /* plain types: relative to |x|, floored where F16 turns subnormal */
                const double ref = cd_ggml_type_get(type)->block_elems == 1 ? fmax(fabs(x[b * 32 + i]), 1e-3) : amax;
                worst = fmax(worst, fabs((double)y[b * 32 + i] - x[b * 32 + i]) / ref);
            }
        }
        EXPECT(worst <= bound(type), "%s: round-trip error %.3g of the block max > %.3g", cd_ggml_type_get(type)->name,
               worst, bound(type));
    }
    free(x), free(y), free(q);
}

TEST(quant_refuses_unsupported) {
    float x[256] = {0};
    uint8_t q[1024];
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    EXPECT(cd_quant_row(ctx, CD_GGML_Q4_K, x, q, 256) == CD_ERR_UNSUPPORTED, "Q4_K quantize not refused");
    EXPECT(strstr(cd_ctx_error(ctx), "Q4_K") != NULL, "message does not name the type: %s", cd_ctx_error(ctx));
    EXPECT(cd_quant_row(ctx, 63, x, q, 32) == CD_ERR_UNSUPPORTED, "unknown type not refused");
    EXPECT(cd_quant_row(ctx, CD_GGML_Q8_0, x, q, 48) == CD_ERR_INVALID_ARG, "partial block not refused");
    EXPECT(!cd_dequant_supported(CD_GGML_Q8_K) && !cd_dequant_supported(CD_GGML_I8) && !cd_dequant_supported(63),
           "unsupported types claimed");
    EXPECT(cd_dequant_supported(CD_GGML_F32) && cd_quant_supported(CD_GGML_F32), "F32");
    cd_ctx_free(ctx);
}
