/* ggml_types.c — the block geometry of GGUF's tensor types (ggml_types.h). Sizes as ggml's
 * ggml-common.h lays the blocks out (half = 2 bytes): Q4_0 {d, qs[16]}, Q4_1 {d, m, qs[16]},
 * Q5_0 {d, qh[4], qs[16]}, Q5_1 {d, m, qh[4], qs[16]}, Q8_0 {d, qs[32]}, Q8_1 {d, s, qs[32]},
 * Q2_K {scales[16], qs[64], d, dmin}, Q3_K {hmask[32], qs[64], scales[12], d},
 * Q4_K {d, dmin, scales[12], qs[128]}, Q5_K {d, dmin, scales[12], qh[32], qs[128]},
 * Q6_K {ql[128], qh[64], scales[16], d}, Q8_K {float d, qs[256], bsums[16] int16},
 * IQ4_NL {d, qs[16]}, IQ4_XS {d, scales_h, scales_l[4], qs[128]}. */
#include "ggml_types.h"

static const cd_ggml_type_info k_types[CD_GGML_TYPE_LIMIT] = {
    [CD_GGML_F32] = {"F32", 1, 4},           [CD_GGML_F16] = {"F16", 1, 2},       [CD_GGML_Q4_0] = {"Q4_0", 32, 18},
    [CD_GGML_Q4_1] = {"Q4_1", 32, 20},       [CD_GGML_Q5_0] = {"Q5_0", 32, 22},   [CD_GGML_Q5_1] = {"Q5_1", 32, 24},
    [CD_GGML_Q8_0] = {"Q8_0", 32, 34},       [CD_GGML_Q8_1] = {"Q8_1", 32, 36},   [CD_GGML_Q2_K] = {"Q2_K", 256, 84},
    [CD_GGML_Q3_K] = {"Q3_K", 256, 110},     [CD_GGML_Q4_K] = {"Q4_K", 256, 144}, [CD_GGML_Q5_K] = {"Q5_K", 256, 176},
    [CD_GGML_Q6_K] = {"Q6_K", 256, 210},     [CD_GGML_Q8_K] = {"Q8_K", 256, 292}, [CD_GGML_IQ4_NL] = {"IQ4_NL", 32, 18},
    [CD_GGML_IQ4_XS] = {"IQ4_XS", 256, 136}, [CD_GGML_I8] = {"I8", 1, 1},         [CD_GGML_I16] = {"I16", 1, 2},
    [CD_GGML_I32] = {"I32", 1, 4},           [CD_GGML_I64] = {"I64", 1, 8},       [CD_GGML_F64] = {"F64", 1, 8},
    [CD_GGML_BF16] = {"BF16", 1, 2},
};

const cd_ggml_type_info *cd_ggml_type_get(uint32_t type) {
    return type < CD_GGML_TYPE_LIMIT && k_types[type].name ? &k_types[type] : NULL;
}

size_t cd_ggml_row_bytes(uint32_t t, uint64_t n) {
    const cd_ggml_type_info *ti = cd_ggml_type_get(t);
    if (!ti || n % ti->block_elems) return 0;
    const uint64_t blocks = n / ti->block_elems;
    size_t b;
    if (blocks > SIZE_MAX || __builtin_mul_overflow((size_t)blocks, (size_t)ti->block_bytes, &b)) return 0;
    return b;
}
