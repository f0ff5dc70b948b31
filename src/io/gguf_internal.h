/* gguf_internal.h — the reader's state, shared by the parser (gguf.c) and the queries
 * (gguf_query.c). Library-private. */
#ifndef CD_GGUF_INTERNAL_H
#define CD_GGUF_INTERNAL_H

#include "../quant/ggml_types.h"
#include "gguf.h"
#include "st_internal.h" /* cd_st_printable, cd_st_utf8_valid_at, cd_st_one_line */

struct cd_gguf {
    const uint8_t *map; /* the whole file, PROT_READ; NULL when not mapped */
    size_t map_len;
    uint32_t version, alignment;
    size_t data_offset;
    cd_gguf_kv *kvs;              /* [n_kv], file order; keys malloc'd */
    const cd_gguf_kv **kv_sorted; /* [n_kv], by key */
    size_t n_kv;
    cd_gguf_tensor *tensors;        /* [n_tensors], file order; names malloc'd */
    const cd_gguf_tensor **by_name; /* [n_tensors], by name */
    size_t n_tensors;
};

/* Bytes of one value of a fixed-size type; 0 for strings, arrays and unknown ids. */
size_t cd_gguf_scalar_size(uint32_t t);

#endif
