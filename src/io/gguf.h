/* gguf.h — the GGUF reader (v2 and v3, little-endian): maps a file read-only, validates the header,
 * the metadata key/values and the tensor infos against every rule of docs/gguf.md ("What the reader
 * checks"), and answers queries: tensors by index or name, metadata by key with typed getters, and
 * an iterator over the key/values for `inspect`. Library-private (src/io/gguf.c).
 *
 * Everything a cd_gguf hands out (names, keys, data pointers) lives until cd_gguf_close. Data and
 * metadata pointers point into the map and are not aligned for their element type beyond what the
 * file's alignment gives (tensor data: `alignment` bytes; metadata values: no alignment): read
 * metadata with memcpy, as the getters do. */
#ifndef CD_GGUF_H
#define CD_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "cleardit.h"

#define CD_GGUF_MAX_DIMS 4        /* ggml's GGML_MAX_DIMS */
#define CD_GGUF_DEFAULT_ALIGN 32u /* when general.alignment is absent */

/* Metadata value types, numbered as stored in the file. */
typedef enum {
    CD_GGUF_U8 = 0,
    CD_GGUF_I8 = 1,
    CD_GGUF_U16 = 2,
    CD_GGUF_I16 = 3,
    CD_GGUF_U32 = 4,
    CD_GGUF_I32 = 5,
    CD_GGUF_F32 = 6,
    CD_GGUF_BOOL = 7,
    CD_GGUF_STR = 8,
    CD_GGUF_ARR = 9,
    CD_GGUF_U64 = 10,
    CD_GGUF_I64 = 11,
    CD_GGUF_F64 = 12,
    CD_GGUF_VTYPE_COUNT
} cd_gguf_vtype;

/* "UINT32", ... as gguf-py spells the value types; "?" for an id outside the enum. */
const char *cd_gguf_vtype_name(uint32_t t);

typedef struct cd_gguf cd_gguf;

/* One tensor. dims are as stored: fastest-varying first (dims[0] is the row length, the
 * reverse of a PyTorch shape); dims[n_dims..3] are 1. */
typedef struct {
    const char *name; /* NUL-terminated, valid UTF-8, unique in the file */
    uint32_t type;    /* cd_ggml_type (src/quant/ggml_types.h); always one the build knows */
    uint32_t n_dims;  /* 0..4 */
    uint64_t dims[CD_GGUF_MAX_DIMS];
    uint64_t ne;      /* elements: the product of dims */
    uint64_t offset;  /* from the start of the data section, as stored */
    const void *data; /* into the map, aligned to the file's alignment relative to the file start */
    size_t nbytes;    /* ne elements of `type` */
} cd_gguf_tensor;

/* One metadata key/value, for iteration. For an array, arr_type is the element type and arr_n the
 * count (arrays of arrays: arr_type = CD_GGUF_ARR); both 0 for a scalar. */
typedef struct {
    const char *key; /* NUL-terminated, valid UTF-8, unique in the file */
    uint32_t type;   /* cd_gguf_vtype */
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t *val; /* the value's bytes in the map: scalar; string = [u64 len][bytes];
                         * array = its first element */
    size_t val_bytes;   /* bytes of the whole value from val */
} cd_gguf_kv;

/* Maps and validates `path`. On failure *out = NULL and the context's message is one line that
 * names the file and the problem (CD_ERR_FORMAT a malformed file, CD_ERR_UNSUPPORTED a valid file
 * of a kind this reader refuses: v1, big-endian; CD_ERR_IO / CD_ERR_NOT_FOUND / CD_ERR_OOM). */
cd_status cd_gguf_open(cd_ctx *ctx, const char *path, cd_gguf **out);
void cd_gguf_close(cd_gguf *g); /* NULL is fine */

uint32_t cd_gguf_version(const cd_gguf *g);   /* 2 or 3 */
uint32_t cd_gguf_alignment(const cd_gguf *g); /* general.alignment or 32 */
size_t cd_gguf_data_offset(const cd_gguf *g); /* start of the data section in the file */
size_t cd_gguf_file_size(const cd_gguf *g);

size_t cd_gguf_n_tensors(const cd_gguf *g);
const cd_gguf_tensor *cd_gguf_tensor_at(const cd_gguf *g, size_t i);    /* file order; NULL past the end */
const cd_gguf_tensor *cd_gguf_find(const cd_gguf *g, const char *name); /* NULL if absent */

size_t cd_gguf_n_kv(const cd_gguf *g);
const cd_gguf_kv *cd_gguf_kv_at(const cd_gguf *g, size_t i); /* file order; NULL past the end */
const cd_gguf_kv *cd_gguf_kv_find(const cd_gguf *g, const char *key);

/* Typed getters: CD_OK and *out set when `key` exists with exactly that type; CD_ERR_NOT_FOUND
 * when it is absent; CD_ERR_FORMAT when it has another type (the message names both types).
 * Every outcome other than CD_OK sets the context's message. */
cd_status cd_gguf_get_u8(cd_ctx *ctx, const cd_gguf *g, const char *key, uint8_t *out);
cd_status cd_gguf_get_i8(cd_ctx *ctx, const cd_gguf *g, const char *key, int8_t *out);
cd_status cd_gguf_get_u16(cd_ctx *ctx, const cd_gguf *g, const char *key, uint16_t *out);
cd_status cd_gguf_get_i16(cd_ctx *ctx, const cd_gguf *g, const char *key, int16_t *out);
cd_status cd_gguf_get_u32(cd_ctx *ctx, const cd_gguf *g, const char *key, uint32_t *out);
cd_status cd_gguf_get_i32(cd_ctx *ctx, const cd_gguf *g, const char *key, int32_t *out);
cd_status cd_gguf_get_u64(cd_ctx *ctx, const cd_gguf *g, const char *key, uint64_t *out);
cd_status cd_gguf_get_i64(cd_ctx *ctx, const cd_gguf *g, const char *key, int64_t *out);
cd_status cd_gguf_get_f32(cd_ctx *ctx, const cd_gguf *g, const char *key, float *out);
cd_status cd_gguf_get_f64(cd_ctx *ctx, const cd_gguf *g, const char *key, double *out);
cd_status cd_gguf_get_bool(cd_ctx *ctx, const cd_gguf *g, const char *key, int *out);
/* A string value: *s points into the map, NOT NUL-terminated, *len bytes (not checked for UTF-8). */
cd_status cd_gguf_get_str(cd_ctx *ctx, const cd_gguf *g, const char *key, const char **s, uint64_t *len);
/* An array of elem_type: *n elements from *data (raw little-endian bytes, unaligned; for strings
 * the first [u64 len][bytes] record, walked with cd_gguf_str_next). */
cd_status cd_gguf_get_arr(cd_ctx *ctx, const cd_gguf *g, const char *key, uint32_t elem_type, const uint8_t **data,
                          uint64_t *n);

/* Reads the string record at p (inside a validated string array or value): *s, *len; returns the
 * next record. */
const uint8_t *cd_gguf_str_next(const uint8_t *p, const char **s, uint64_t *len);

/* A short printable rendering of a value for `inspect` into buf[cap] ("3", "\"flux\"",
 * "[UINT32 x 3: 1, 2, 3]", long ones cut with "..."); returns buf. */
const char *cd_gguf_kv_render(const cd_gguf_kv *kv, char *buf, size_t cap);

#endif
