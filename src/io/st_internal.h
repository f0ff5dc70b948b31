/* st_internal.h — helpers shared by the safetensors reader (safetensors.c), writer
 * (safetensors_write.c) and element conversion (convert.c). Library-private. */
#ifndef CD_ST_INTERNAL_H
#define CD_ST_INTERNAL_H

#include "../util/internal.h"

/* safetensors data is little-endian; the reader and writer copy it as host bytes. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cleardit's safetensors code assumes a little-endian host"
#endif

/* Limits of the format (docs/safetensors.md). The header cap is the reference reader's
 * MAX_HEADER_SIZE; the tensor-count and name caps bound the work a hostile header can cause. */
#define CD_ST_MAX_HEADER 100000000ull
#define CD_ST_MAX_TENSORS 1000000u
#define CD_ST_MAX_NAME 4096u

/* Result of cd_st_size(). */
typedef enum {
    CD_ST_SIZE_OK = 0,
    CD_ST_SIZE_OVERFLOW, /* numel * bits does not fit in 64 bits */
    CD_ST_SIZE_PARTIAL   /* numel * bits is not a whole number of bytes (sub-byte dtypes) */
} cd_st_size_result;

/* numel = prod(shape) (1 for rank 0) and nbytes = numel * bits / 8, overflow-checked.
 * shape entries must already be >= 0. */
cd_st_size_result cd_st_size(cd_dtype dt, int32_t ndim, const int64_t *shape, uint64_t *numel, uint64_t *nbytes);

/* 1 if s[0..n) is strict UTF-8 (RFC 3629: no overlong forms, surrogates or code points above
 * U+10FFFF), else 0 with *bad (if not NULL) = offset of the first offending byte. */
int cd_st_utf8_valid_at(const char *s, size_t n, size_t *bad);
static inline int cd_st_utf8_valid(const char *s, size_t n) { return cd_st_utf8_valid_at(s, n, NULL); }

/* Copies `s` into buf[cap] for use inside a one-line error message: control characters become
 * '?' and long strings are cut with "...". Returns buf. */
const char *cd_st_printable(const char *s, char *buf, size_t cap);

/* The token a Jansson error message quotes ("... near '<token>'"), printable, into buf[cap]
 * ("?" if there is none): names the key of a duplicate-key error. Returns buf. */
const char *cd_st_json_near(const char *text, char *buf, size_t cap);

/* Replaces control characters of s in place with '?': messages stay on one line whatever a
 * file or a parser's error text contains. */
static inline void cd_st_one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

/* Length of the printable copies used in messages (paths and tensor names). */
#define CD_ST_PRINT_MAX 160

/* fsync of the directory holding path, making a rename into it durable; failure is ignored (not an
 * error of the write itself). Used by the atomic writers (safetensors_write.c, png.c). */
void cd_fsync_dir_of(const char *path);

#endif
