/* st_text.c — text helpers of the safetensors reader and writer (st_internal.h): names and shapes
 * made printable for one-line messages, and the UTF-8 check that names a bad byte. */
#include "st_internal.h"

#include <stdio.h>

const char *cd_st_printable(const char *s, char *buf, size_t cap) {
    if (cap == 0) return buf;
    if (!s) s = "(null)";
    size_t i = 0, n = strlen(s);
    const size_t keep = n < cap ? n : (cap > 4 ? cap - 4 : cap - 1); /* room for "..." */
    for (; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c; /* keep messages on one line */
    }
    if (keep < n && cap > 4) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = 0;
    return buf;
}

const char *cd_st_json_near(const char *text, char *buf, size_t cap) {
    const char *q = strstr(text, "near '"), *end = q ? strrchr(q + 6, '\'') : NULL;
    if (!q || !end) return cd_st_printable("?", buf, cap);
    char tok[CD_ST_PRINT_MAX];
    size_t n = (size_t)(end - (q + 6));
    if (n >= sizeof tok) n = sizeof tok - 1;
    memcpy(tok, q + 6, n);
    tok[n] = 0;
    return cd_st_printable(tok, buf, cap);
}

cd_st_size_result cd_st_size(cd_dtype dt, int32_t ndim, const int64_t *shape, uint64_t *numel, uint64_t *nbytes) {
    uint64_t n = 1, bits;
    for (int32_t i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return CD_ST_SIZE_OVERFLOW;
    if (__builtin_mul_overflow(n, (uint64_t)cd_dtype_bits(dt), &bits)) return CD_ST_SIZE_OVERFLOW;
    *numel = n;
    *nbytes = bits / 8;
    return bits % 8 ? CD_ST_SIZE_PARTIAL : CD_ST_SIZE_OK;
}

/* Jansson checks UTF-8 too, but checking the header first gives a message that says what is
 * wrong, and the writer uses this to reject names before it builds anything. */
int cd_st_utf8_valid_at(const char *str, size_t n, size_t *bad) {
    const uint8_t *s = (const uint8_t *)str;
    size_t dummy;
    if (!bad) bad = &dummy;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            *bad = i;
            return 0;
        }
        if (n - i < len) {
            *bad = i;
            return 0;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                *bad = i;
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            *bad = i;
            return 0;
        }
        i += len;
    }
    return 1;
}
