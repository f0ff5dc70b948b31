/* ggml_types.h — the tensor types of GGUF files (ggml's numbering, as stored in a GGUF tensor
 * info), with their block geometry: a row of n elements of a block type is n / block_elems blocks
 * of block_bytes bytes each. Library-private; shared by the GGUF reader (src/io/gguf.c), the
 * (de)quantizers (src/quant/quant*.c) and the quantized linear. docs/gguf.md describes the
 * formats. */
#ifndef CD_GGML_TYPES_H
#define CD_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CD_GGML_F32 = 0,
    CD_GGML_F16 = 1,
    CD_GGML_Q4_0 = 2,
    CD_GGML_Q4_1 = 3,
    CD_GGML_Q5_0 = 6,
    CD_GGML_Q5_1 = 7,
    CD_GGML_Q8_0 = 8,
    CD_GGML_Q8_1 = 9,
    CD_GGML_Q2_K = 10,
    CD_GGML_Q3_K = 11,
    CD_GGML_Q4_K = 12,
    CD_GGML_Q5_K = 13,
    CD_GGML_Q6_K = 14,
    CD_GGML_Q8_K = 15,
    CD_GGML_IQ4_NL = 20,
    CD_GGML_IQ4_XS = 23,
    CD_GGML_I8 = 24,
    CD_GGML_I16 = 25,
    CD_GGML_I32 = 26,
    CD_GGML_I64 = 27,
    CD_GGML_F64 = 28,
    CD_GGML_BF16 = 30,
    CD_GGML_TYPE_LIMIT = 64 /* type ids are below this */
} cd_ggml_type;

typedef struct {
    const char *name;     /* "Q8_0", ... (NULL: an id this build does not know) */
    uint32_t block_elems; /* elements per block (1 for plain types) */
    uint32_t block_bytes; /* bytes per block */
} cd_ggml_type_info;

/* The type's geometry, or NULL for an id this build does not know (the error names the id). */
const cd_ggml_type_info *cd_ggml_type_get(uint32_t type);

/* Bytes of a row of n elements of type t: 0 when t is unknown or n is not a multiple of its block
 * (or the product overflows). */
size_t cd_ggml_row_bytes(uint32_t t, uint64_t n);

#endif
