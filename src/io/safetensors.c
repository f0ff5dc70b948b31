/* safetensors.c — the safetensors reader: maps a file read-only, validates the header against
 * every rule of docs/safetensors.md ("What the reader checks")
 * and answers queries (count, at, find, meta). The writer is safetensors_write.c, element
 * conversion is convert.c.
 *
 * What it is not: it does not protect against the file being truncated or modified while it is
 * mapped (a later truncation raises SIGBUS on access), and it reads one file: sharded checkpoints
 * (*.safetensors.index.json), directories and key prefixes are ckpt.c's. fuzz/fuzz_safetensors.c
 * fuzzes it; inputs that once crashed it live in tests/fuzz_regressions/.
 *
 * Tensor data pointers point into the map and are NOT aligned in general (odd-length tensors
 * shift everything after them); callers read them with memcpy or copy them into aligned
 * buffers. */
#include "st_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* One tensor while parsing: the public view plus its offsets in the data buffer. */
typedef struct {
    cd_st_tensor t;
    uint64_t begin, end; /* data_offsets, relative to the start of the data buffer */
} st_entry;

struct cd_st_file {
    const uint8_t *map; /* the whole file, PROT_READ; NULL when not mapped */
    size_t map_len;     /* file size in bytes */
    st_entry *entries;  /* [count], sorted by data offset (file data order) */
    size_t count;
    const cd_st_tensor **by_name; /* [count], sorted by name, for cd_st_find */
    char **meta;                  /* [2 * n_meta]: key, value, key, value, ... */
    size_t n_meta;
};

/* Parse state: the context that receives errors and the file name as it appears in them. */
typedef struct {
    cd_ctx *ctx;
    char path[CD_ST_PRINT_MAX];
} st_parse;

/* Records "<file>: [tensor '<name>': ]<reason>" in the context and returns s. */
__attribute__((format(printf, 4, 5))) static cd_status st_fail(const st_parse *p, const char *tensor, cd_status s,
                                                               const char *fmt, ...) {
    char reason[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    cd_st_one_line(reason);
    if (tensor) {
        char name[CD_ST_PRINT_MAX];
        return cd_set_error(p->ctx, s, "%s: tensor '%s': %s", p->path, cd_st_printable(tensor, name, sizeof name),
                            reason);
    }
    return cd_set_error(p->ctx, s, "%s: %s", p->path, reason);
}

/* "[2, 3, 4]" for messages (cut if it does not fit). */
static const char *shape_str(const int64_t *shape, int32_t ndim, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int32_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static int dtype_from_name(const char *s, cd_dtype *out) {
    for (int t = 0; t < CD_DTYPE_COUNT; t++)
        if (!strcmp(s, cd_dtype_name((cd_dtype)t))) {
            *out = (cd_dtype)t;
            return 1;
        }
    return 0;
}

/* A JSON value as a non-negative 64-bit integer (Jansson integers are long long, so values up
 * to 2^63-1 arrive intact; larger ones already failed to parse). On failure returns the reason
 * ("is negative", "is not an integer"); NULL on success. */
static const char *json_u63(const json_t *v, int64_t *out) {
    if (json_is_real(v)) return "is not an integer (a fractional or exponent number)";
    if (!json_is_integer(v)) return "is not an integer";
    json_int_t x = json_integer_value(v);
    if (x < 0) return "is negative";
    *out = (int64_t)x;
    return NULL;
}

/* ---- mapping ------------------------------------------------------------------------------- */

static cd_status map_file(const st_parse *p, const char *path, cd_st_file *f) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return st_fail(p, NULL, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return st_fail(p, NULL, CD_ERR_IO, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return st_fail(p, NULL, CD_ERR_IO, "not a regular file");
    }
    /* Check the size before mapping: an empty file cannot be mapped at all. */
    if (st.st_size < 8) {
        close(fd);
        return st_fail(p, NULL, CD_ERR_FORMAT, "file is too short (%lld bytes; the 8-byte header length is missing)",
                       (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (m == MAP_FAILED) return st_fail(p, NULL, CD_ERR_IO, "cannot map: %s", strerror(e));
    f->map = m;
    f->map_len = len;
    return CD_OK;
}

/* ---- header parsing ------------------------------------------------------------------------ */

static cd_status parse_metadata(const st_parse *p, json_t *obj, cd_st_file *f) {
    if (!json_is_object(obj)) return st_fail(p, NULL, CD_ERR_FORMAT, "__metadata__ is not a string->string object");
    size_t n = json_object_size(obj);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta) return st_fail(p, NULL, CD_ERR_OOM, "out of memory reading __metadata__");
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        if (!json_is_string(val)) {
            char k[CD_ST_PRINT_MAX];
            return st_fail(p, NULL, CD_ERR_FORMAT,
                           "__metadata__ value of key '%s' is not a string (must be string->string)",
                           cd_st_printable(key, k, sizeof k));
        }
        char *ks = strdup(key), *vs = strdup(json_string_value(val));
        f->meta[2 * f->n_meta] = ks;
        f->meta[2 * f->n_meta + 1] = vs;
        f->n_meta++; /* counted before the check so that cd_st_close frees a half pair */
        if (!ks || !vs) return st_fail(p, NULL, CD_ERR_OOM, "out of memory reading __metadata__");
    }
    return CD_OK;
}

/* Parses one "NAME": {"dtype", "shape", "data_offsets"} entry (extra fields are ignored, as the
 * reference reader does). Checks everything that concerns this entry alone, including that the
 * byte span matches shape x dtype. */
static cd_status parse_tensor(const st_parse *p, const char *name, json_t *obj, st_entry *e) {
    if (strlen(name) > CD_ST_MAX_NAME)
        return st_fail(p, name, CD_ERR_FORMAT, "name is longer than the limit of %u bytes", CD_ST_MAX_NAME);
    if (!json_is_object(obj)) return st_fail(p, name, CD_ERR_FORMAT, "entry is not a JSON object");

    /* dtype */
    json_t *jd = json_object_get(obj, "dtype");
    if (!jd) return st_fail(p, name, CD_ERR_FORMAT, "missing field 'dtype'");
    if (!json_is_string(jd)) return st_fail(p, name, CD_ERR_FORMAT, "dtype is not a string");
    if (!dtype_from_name(json_string_value(jd), &e->t.dtype)) {
        char d[64];
        return st_fail(p, name, CD_ERR_FORMAT, "unknown dtype '%s'",
                       cd_st_printable(json_string_value(jd), d, sizeof d));
    }

    /* shape */
    json_t *js = json_object_get(obj, "shape");
    if (!js) return st_fail(p, name, CD_ERR_FORMAT, "missing field 'shape'");
    if (!json_is_array(js)) return st_fail(p, name, CD_ERR_FORMAT, "shape is not an array");
    size_t rank = json_array_size(js);
    if (rank > CD_MAX_DIMS)
        return st_fail(p, name, CD_ERR_UNSUPPORTED, "shape has rank %zu; at most %d is supported", rank, CD_MAX_DIMS);
    e->t.ndim = (int32_t)rank;
    for (size_t i = 0; i < rank; i++) {
        const char *why = json_u63(json_array_get(js, i), &e->t.shape[i]);
        if (why) return st_fail(p, name, CD_ERR_FORMAT, "shape[%zu] %s", i, why);
    }

    /* data_offsets */
    json_t *jo = json_object_get(obj, "data_offsets");
    if (!jo) return st_fail(p, name, CD_ERR_FORMAT, "missing field 'data_offsets'");
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return st_fail(p, name, CD_ERR_FORMAT, "data_offsets is not an array of 2 integers");
    int64_t off[2];
    for (size_t i = 0; i < 2; i++) {
        const char *why = json_u63(json_array_get(jo, i), &off[i]);
        if (why) return st_fail(p, name, CD_ERR_FORMAT, "data_offsets[%zu] %s", i, why);
    }
    int64_t b = off[0], en = off[1];
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end < e->begin)
        return st_fail(p, name, CD_ERR_FORMAT, "data_offsets [%llu, %llu] are reversed (end < begin)",
                       (unsigned long long)e->begin, (unsigned long long)e->end);

    /* size: prod(shape) * bits / 8 must be exactly end - begin */
    uint64_t numel, nbytes;
    char sh[128];
    switch (cd_st_size(e->t.dtype, e->t.ndim, e->t.shape, &numel, &nbytes)) {
        case CD_ST_SIZE_OVERFLOW:
            return st_fail(p, name, CD_ERR_FORMAT, "shape %s of %s overflows 64-bit size arithmetic",
                           shape_str(e->t.shape, e->t.ndim, sh, sizeof sh), cd_dtype_name(e->t.dtype));
        case CD_ST_SIZE_PARTIAL:
            return st_fail(p, name, CD_ERR_FORMAT,
                           "shape %s of %s is not a whole number of bytes (misaligned sub-byte slice)",
                           shape_str(e->t.shape, e->t.ndim, sh, sizeof sh), cd_dtype_name(e->t.dtype));
        case CD_ST_SIZE_OK: break;
    }
    if (nbytes != e->end - e->begin)
        return st_fail(p, name, CD_ERR_FORMAT,
                       "size mismatch: data_offsets [%llu, %llu] hold %llu bytes but shape %s of "
                       "%s needs %llu",
                       (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin), shape_str(e->t.shape, e->t.ndim, sh, sizeof sh),
                       cd_dtype_name(e->t.dtype), (unsigned long long)nbytes);
    e->t.nbytes = nbytes;
    e->t.name = strdup(name);
    if (!e->t.name) return st_fail(p, name, CD_ERR_OOM, "out of memory");
    return CD_OK;
}

/* Data order; ties (empty tensors sharing an offset) broken by end, then name, so that the
 * order does not depend on the header's key order. */
static int cmp_offsets(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

static int cmp_names(const void *a, const void *b) {
    const cd_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* After sorting by offset the tensors must tile the data buffer exactly: the first begins at 0,
 * each begins where the previous ends (no gaps, no overlaps), and the last ends at end of file
 * (no truncation, no trailing bytes). */
static cd_status check_layout(const st_parse *p, const cd_st_file *f, uint64_t data_len) {
    uint64_t expect = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < f->count; i++) {
        const st_entry *e = &f->entries[i];
        if (e->begin > expect && !prev)
            return st_fail(p, e->t.name, CD_ERR_FORMAT, "gap: the first tensor's data begins at byte %llu, not 0",
                           (unsigned long long)e->begin);
        if (e->begin > expect)
            return st_fail(p, e->t.name, CD_ERR_FORMAT,
                           "gap: data begins at byte %llu but the previous tensor ends at %llu",
                           (unsigned long long)e->begin, (unsigned long long)expect);
        if (e->begin < expect) {
            char pn[CD_ST_PRINT_MAX];
            return st_fail(p, e->t.name, CD_ERR_FORMAT,
                           "overlap: data [%llu, %llu] overlaps tensor '%s' (which ends at %llu)",
                           (unsigned long long)e->begin, (unsigned long long)e->end,
                           cd_st_printable(prev, pn, sizeof pn), (unsigned long long)expect);
        }
        expect = e->end;
        prev = e->t.name;
    }
    if (expect > data_len)
        return st_fail(p, prev, CD_ERR_FORMAT,
                       "truncated: data ends at byte %llu of the data buffer but the file holds "
                       "only %llu data bytes",
                       (unsigned long long)expect, (unsigned long long)data_len);
    if (expect < data_len)
        return st_fail(p, NULL, CD_ERR_FORMAT, "trailing bytes: %llu bytes follow the last tensor's data",
                       (unsigned long long)(data_len - expect));
    return CD_OK;
}

static cd_status parse_header(const st_parse *p, cd_st_file *f) {
    const uint8_t *m = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | m[i]; /* u64 little-endian */
    if (n > CD_ST_MAX_HEADER)
        return st_fail(p, NULL, CD_ERR_FORMAT, "header length %llu exceeds the limit of %llu bytes",
                       (unsigned long long)n, CD_ST_MAX_HEADER);
    if (n > f->map_len - 8)
        return st_fail(p, NULL, CD_ERR_FORMAT, "header length %llu runs past the end of the file (%zu bytes)",
                       (unsigned long long)n, f->map_len);
    const char *hdr = (const char *)m + 8;
    size_t bad;
    if (!cd_st_utf8_valid_at(hdr, (size_t)n, &bad))
        return st_fail(p, NULL, CD_ERR_FORMAT, "header is not valid UTF-8 (at header byte %zu)", bad);

    json_error_t je;
    json_t *root = json_loadb(hdr, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root && json_error_code(&je) == json_error_duplicate_key) {
        /* The reference reader keeps the last of duplicate keys; the README forbids them, and
         * two parsers that disagree on which one wins are an attack (docs/safetensors.md). */
        char tok[CD_ST_PRINT_MAX];
        return st_fail(p, NULL, CD_ERR_FORMAT, "duplicate key %s in the header (at header byte %d)",
                       cd_st_json_near(je.text, tok, sizeof tok), je.position);
    }
    if (!root)
        return st_fail(p, NULL, CD_ERR_FORMAT, "header is not valid JSON: %s (at header byte %d)", je.text,
                       je.position);
    cd_status s = CD_OK;
    if (!json_is_object(root)) {
        s = st_fail(p, NULL, CD_ERR_FORMAT, "header is not a JSON object");
        goto done;
    }
    size_t total = json_object_size(root);
    if (total > CD_ST_MAX_TENSORS + 1) {
        s = st_fail(p, NULL, CD_ERR_FORMAT, "header lists %zu tensors; the limit is %u", total, CD_ST_MAX_TENSORS);
        goto done;
    }
    f->entries = calloc(total ? total : 1, sizeof *f->entries);
    if (!f->entries) {
        s = st_fail(p, NULL, CD_ERR_OOM, "out of memory for %zu tensors", total);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            s = parse_metadata(p, val, f);
        } else {
            s = parse_tensor(p, key, val, &f->entries[f->count]);
            if (f->entries[f->count].t.name) f->count++; /* owned from here on */
        }
        if (s) goto done;
    }
    /* Duplicate names were rejected by the JSON parser (JSON_REJECT_DUPLICATES). */
    qsort(f->entries, f->count, sizeof *f->entries, cmp_offsets);
    s = check_layout(p, f, (uint64_t)(f->map_len - 8 - n));
    if (s) goto done;

    const uint8_t *data = m + 8 + n;
    f->by_name = calloc(f->count ? f->count : 1, sizeof *f->by_name);
    if (!f->by_name) {
        s = st_fail(p, NULL, CD_ERR_OOM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < f->count; i++) {
        f->entries[i].t.data = data + f->entries[i].begin;
        f->by_name[i] = &f->entries[i].t;
    }
    qsort(f->by_name, f->count, sizeof *f->by_name, cmp_names);
done:
    json_decref(root);
    return s;
}

/* ---- public API ---------------------------------------------------------------------------- */

cd_status cd_st_open(cd_ctx *ctx, const char *path, cd_st_file **out) {
    if (!out) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "safetensors: out is NULL");
    *out = NULL;
    if (!path) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "safetensors: path is NULL");
    st_parse p = {ctx, {0}};
    cd_st_printable(path, p.path, sizeof p.path);
    cd_st_file *f = calloc(1, sizeof *f);
    if (!f) return st_fail(&p, NULL, CD_ERR_OOM, "out of memory");
    cd_status s = map_file(&p, path, f);
    if (!s) s = parse_header(&p, f);
    if (s) {
        cd_st_close(f);
        return s;
    }
    *out = f;
    return CD_OK;
}

void cd_st_close(cd_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->count; i++) free((char *)f->entries[i].t.name);
    for (size_t i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->entries);
    free(f->by_name);
    free(f->meta);
    if (f->map) munmap((void *)f->map, f->map_len);
    free(f);
}

size_t cd_st_count(const cd_st_file *f) { return f ? f->count : 0; }

const cd_st_tensor *cd_st_at(const cd_st_file *f, size_t i) { return (f && i < f->count) ? &f->entries[i].t : NULL; }

const cd_st_tensor *cd_st_find(const cd_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *cd_st_meta(const cd_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

uint64_t cd_st_numel(const cd_st_tensor *t) {
    if (!t) return 0;
    uint64_t n = 1;
    for (int32_t i = 0; i < t->ndim && i < CD_MAX_DIMS; i++) n *= t->shape[i] > 0 ? (uint64_t)t->shape[i] : 0;
    return n;
}
