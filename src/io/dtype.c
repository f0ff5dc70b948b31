/* dtype.c — names and storage sizes of element types (safetensors spelling). */
#include "../util/internal.h"

static const struct {
    const char *name;
    int bits;
} k_dtypes[CD_DTYPE_COUNT] = {
    [CD_DTYPE_F32] = {"F32", 32},
    [CD_DTYPE_BF16] = {"BF16", 16},
    [CD_DTYPE_F16] = {"F16", 16},
    [CD_DTYPE_F64] = {"F64", 64},
    [CD_DTYPE_F8_E4M3] = {"F8_E4M3", 8},
    [CD_DTYPE_F8_E5M2] = {"F8_E5M2", 8},
    [CD_DTYPE_F8_E8M0] = {"F8_E8M0", 8},
    [CD_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [CD_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [CD_DTYPE_F6_E2M3] = {"F6_E2M3", 6},
    [CD_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
    [CD_DTYPE_F4] = {"F4", 4},
    [CD_DTYPE_BOOL] = {"BOOL", 8},
    [CD_DTYPE_U8] = {"U8", 8},
    [CD_DTYPE_I8] = {"I8", 8},
    [CD_DTYPE_I16] = {"I16", 16},
    [CD_DTYPE_U16] = {"U16", 16},
    [CD_DTYPE_I32] = {"I32", 32},
    [CD_DTYPE_U32] = {"U32", 32},
    [CD_DTYPE_I64] = {"I64", 64},
    [CD_DTYPE_U64] = {"U64", 64},
    [CD_DTYPE_C64] = {"C64", 64},
};

const char *cd_dtype_name(cd_dtype t) { return ((int)t >= 0 && t < CD_DTYPE_COUNT) ? k_dtypes[t].name : "?"; }
int cd_dtype_bits(cd_dtype t) { return ((int)t >= 0 && t < CD_DTYPE_COUNT) ? k_dtypes[t].bits : 0; }
