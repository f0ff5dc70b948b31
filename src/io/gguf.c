/* gguf.c — the GGUF reader (gguf.h): maps a file read-only and validates it against every rule of
 * docs/gguf.md ("What the reader checks") before anything is handed out. The file is untrusted:
 * every read is bounds-checked against the map, every count is bounded by the bytes left before
 * anything is allocated for it (a header claiming 2^60 tensors fails without allocating), and
 * every size and offset is overflow-checked. The queries and the value rendering are in
 * gguf_query.c.
 *
 * Like the safetensors reader (safetensors.c) it does not protect against the file changing
 * while mapped. fuzz/fuzz_gguf.c fuzzes it. */
#include "gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Limits that bound the work a hostile file can cause without refusing real files. */
#define GG_MAX_NAME 65536u /* bytes of a key or tensor name */
#define GG_MAX_NEST 8      /* arrays of arrays of ... */

/* Smallest encodings: a key/value (u64 key length, u32 type, a 1-byte value) and a tensor info
 * (u64 name length, u32 n_dims, u32 type, u64 offset). Counts above bytes_left / these are lies. */
#define GG_MIN_KV 13u
#define GG_MIN_TI 24u

typedef struct {
    cd_ctx *ctx;
    char path[CD_ST_PRINT_MAX];
    const uint8_t *b; /* the map */
    size_t len, pos;  /* file size; read position */
} gg_parse;

/* Records "<file>: [tensor '<name>': ]<reason>" and returns s. */
__attribute__((format(printf, 4, 5))) static cd_status gg_fail(const gg_parse *p, const char *tensor, cd_status s,
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

static size_t left(const gg_parse *p) { return p->len - p->pos; }

static int rd_u32(gg_parse *p, uint32_t *v) {
    if (left(p) < 4) return 0;
    memcpy(v, p->b + p->pos, 4);
    p->pos += 4;
    return 1;
}

static int rd_u64(gg_parse *p, uint64_t *v) {
    if (left(p) < 8) return 0;
    memcpy(v, p->b + p->pos, 8);
    p->pos += 8;
    return 1;
}

size_t cd_gguf_scalar_size(uint32_t t) {
    switch (t) {
        case CD_GGUF_U8:
        case CD_GGUF_I8:
        case CD_GGUF_BOOL: return 1;
        case CD_GGUF_U16:
        case CD_GGUF_I16: return 2;
        case CD_GGUF_U32:
        case CD_GGUF_I32:
        case CD_GGUF_F32: return 4;
        case CD_GGUF_U64:
        case CD_GGUF_I64:
        case CD_GGUF_F64: return 8;
        default: return 0;
    }
}

/* Steps over one value of type t at p->pos. NULL on success, else the reason (a static string). */
static const char *skip_value(gg_parse *p, uint32_t t, int depth) {
    const size_t fs = cd_gguf_scalar_size(t);
    if (fs) {
        if (left(p) < fs) return "the file ends inside the value";
        p->pos += fs;
        return NULL;
    }
    if (t == CD_GGUF_STR) {
        uint64_t n;
        if (!rd_u64(p, &n)) return "the file ends inside a string length";
        if (n > left(p)) return "a string length runs past the end of the file";
        p->pos += (size_t)n;
        return NULL;
    }
    if (t != CD_GGUF_ARR) return "unknown value type";
    if (depth >= GG_MAX_NEST) return "arrays nested deeper than 8 levels";
    uint32_t et;
    uint64_t n;
    if (!rd_u32(p, &et) || !rd_u64(p, &n)) return "the file ends inside an array header";
    if (et >= CD_GGUF_VTYPE_COUNT) return "an array has an unknown element type";
    const size_t efs = cd_gguf_scalar_size(et);
    if (efs) {
        if (n > left(p) / efs) return "an array runs past the end of the file";
        p->pos += (size_t)n * efs;
        return NULL;
    }
    /* Strings take >= 8 bytes each, arrays >= 12: the count is bounded before the walk. */
    if (n > left(p) / (et == CD_GGUF_STR ? 8u : 12u)) return "an array runs past the end of the file";
    for (uint64_t i = 0; i < n; i++) {
        const char *why = skip_value(p, et, depth + 1);
        if (why) return why;
    }
    return NULL;
}

/* Reads a [u64 len][bytes] name (key or tensor name) into a malloc'd NUL-terminated copy.
 * what = "key" or "tensor name"; idx its number, for messages. */
static cd_status read_name(gg_parse *p, const char *what, size_t idx, char **out) {
    uint64_t n;
    if (!rd_u64(p, &n)) return gg_fail(p, NULL, CD_ERR_FORMAT, "the file ends inside the length of %s %zu", what, idx);
    if (n > left(p))
        return gg_fail(p, NULL, CD_ERR_FORMAT, "%s %zu: length %llu runs past the end of the file", what, idx,
                       (unsigned long long)n);
    if (n > GG_MAX_NAME)
        return gg_fail(p, NULL, CD_ERR_FORMAT, "%s %zu: length %llu is over the limit of %u bytes", what, idx,
                       (unsigned long long)n, GG_MAX_NAME);
    const char *s = (const char *)p->b + p->pos;
    char *c = malloc((size_t)n + 1);
    if (!c) return gg_fail(p, NULL, CD_ERR_OOM, "out of memory reading %s %zu", what, idx);
    memcpy(c, s, (size_t)n);
    c[n] = 0;
    p->pos += (size_t)n;
    *out = c;
    size_t bad;
    if (!cd_st_utf8_valid_at(s, (size_t)n, &bad)) {
        char pr[CD_ST_PRINT_MAX];
        for (char *q = c; *q; q++) /* the message itself stays valid UTF-8 */
            if ((unsigned char)*q >= 0x80) *q = '?';
        return gg_fail(p, NULL, CD_ERR_FORMAT, "%s %zu ('%s') is not valid UTF-8 (byte %zu)", what, idx,
                       cd_st_printable(c, pr, sizeof pr), bad);
    }
    if (memchr(s, 0, (size_t)n)) /* checked after UTF-8: the part printed (up to the NUL) is then valid */
        return gg_fail(p, NULL, CD_ERR_FORMAT, "%s %zu ('%s') contains a NUL byte", what, idx, c);
    return CD_OK;
}

/* ---- mapping ------------------------------------------------------------------------------- */

static cd_status map_file(gg_parse *p, const char *path, cd_gguf *g) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gg_fail(p, NULL, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return gg_fail(p, NULL, CD_ERR_IO, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gg_fail(p, NULL, CD_ERR_IO, "not a regular file");
    }
    /* magic, version, two counts; also keeps an empty file (which cannot be mapped) out */
    if (st.st_size < 24) {
        close(fd);
        return gg_fail(p, NULL, CD_ERR_FORMAT, "file is too short (%lld bytes; a GGUF header is 24)",
                       (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return gg_fail(p, NULL, CD_ERR_IO, "cannot map: %s", strerror(e));
    g->map = m;
    g->map_len = len;
    p->b = m;
    p->len = len;
    return CD_OK;
}

/* ---- parsing ------------------------------------------------------------------------------- */

static cd_status parse_header(gg_parse *p, cd_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    if (memcmp(p->b, "GGUF", 4)) {
        char m[5] = {0};
        for (int i = 0; i < 4; i++) m[i] = p->b[i] >= 0x20 && p->b[i] < 0x7f ? (char)p->b[i] : '?';
        return gg_fail(p, NULL, CD_ERR_FORMAT, "bad magic '%s' (not a GGUF file)", m);
    }
    p->pos = 4;
    uint32_t v = 0;
    rd_u32(p, &v);
    const uint32_t sw = __builtin_bswap32(v);
    if (v == 1)
        return gg_fail(p, NULL, CD_ERR_UNSUPPORTED, "GGUF version 1 is not supported (only versions 2 and 3 are)");
    if (v != 2 && v != 3) {
        if (sw >= 1 && sw <= 3)
            return gg_fail(p, NULL, CD_ERR_UNSUPPORTED,
                           "big-endian GGUF (version %u stored big-endian) is not supported: only little-endian files "
                           "are read",
                           sw);
        return gg_fail(p, NULL, CD_ERR_UNSUPPORTED, "GGUF version %u is not supported (only versions 2 and 3 are)", v);
    }
    g->version = v;
    rd_u64(p, n_tensors); /* 24 bytes are there (map_file) */
    rd_u64(p, n_kv);
    if (*n_kv > left(p) / GG_MIN_KV)
        return gg_fail(p, NULL, CD_ERR_FORMAT,
                       "the header claims %llu key/values, more than the %zu-byte file can hold",
                       (unsigned long long)*n_kv, p->len);
    if (*n_tensors > left(p) / GG_MIN_TI)
        return gg_fail(p, NULL, CD_ERR_FORMAT, "the header claims %llu tensors, more than the %zu-byte file can hold",
                       (unsigned long long)*n_tensors, p->len);
    return CD_OK;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(const cd_gguf_kv *const *)a)->key, (*(const cd_gguf_kv *const *)b)->key);
}

static cd_status parse_kvs(gg_parse *p, cd_gguf *g, uint64_t n) {
    g->kvs = calloc((size_t)n + 1, sizeof *g->kvs);
    g->kv_sorted = calloc((size_t)n + 1, sizeof *g->kv_sorted);
    if (!g->kvs || !g->kv_sorted)
        return gg_fail(p, NULL, CD_ERR_OOM, "out of memory for %llu key/values", (unsigned long long)n);
    for (size_t i = 0; i < n; i++) {
        cd_gguf_kv *kv = &g->kvs[i];
        char *key = NULL;
        cd_status s = read_name(p, "key", i, &key);
        kv->key = key;
        g->n_kv = i + 1; /* counted now so that close frees the key */
        if (s != CD_OK) return s;
        char pk[CD_ST_PRINT_MAX];
        cd_st_printable(key, pk, sizeof pk);
        if (!rd_u32(p, &kv->type))
            return gg_fail(p, NULL, CD_ERR_FORMAT, "key '%s': the file ends inside its value type", pk);
        if (kv->type >= CD_GGUF_VTYPE_COUNT)
            return gg_fail(p, NULL, CD_ERR_FORMAT, "key '%s': unknown value type %u", pk, kv->type);
        const size_t start = p->pos;
        const char *why = skip_value(p, kv->type, 0);
        if (why) return gg_fail(p, NULL, CD_ERR_FORMAT, "key '%s': %s", pk, why);
        kv->val = p->b + start;
        kv->val_bytes = p->pos - start;
        if (kv->type == CD_GGUF_ARR) {
            memcpy(&kv->arr_type, kv->val, 4);
            memcpy(&kv->arr_n, kv->val + 4, 8);
            kv->val += 12;
            kv->val_bytes -= 12;
        }
        g->kv_sorted[i] = kv;
    }
    qsort(g->kv_sorted, (size_t)n, sizeof *g->kv_sorted, cmp_kv_key);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(g->kv_sorted[i - 1]->key, g->kv_sorted[i]->key)) {
            char pk[CD_ST_PRINT_MAX];
            return gg_fail(p, NULL, CD_ERR_FORMAT, "key '%s' appears more than once",
                           cd_st_printable(g->kv_sorted[i]->key, pk, sizeof pk));
        }
    return CD_OK;
}

static cd_status parse_alignment(gg_parse *p, cd_gguf *g) {
    g->alignment = CD_GGUF_DEFAULT_ALIGN;
    const cd_gguf_kv *kv = cd_gguf_kv_find(g, "general.alignment");
    if (!kv) return CD_OK;
    if (kv->type != CD_GGUF_U32)
        return gg_fail(p, NULL, CD_ERR_FORMAT, "general.alignment is %s, not UINT32", cd_gguf_vtype_name(kv->type));
    uint32_t a;
    memcpy(&a, kv->val, 4);
    if (a == 0 || (a & (a - 1)))
        return gg_fail(p, NULL, CD_ERR_FORMAT, "general.alignment %u is not a power of two", a);
    g->alignment = a;
    return CD_OK;
}

/* One tensor info: name, dims, type, offset; ne and nbytes (the data checks come later). */
static cd_status parse_tensor_info(gg_parse *p, cd_gguf_tensor *t) {
    uint32_t nd;
    if (!rd_u32(p, &nd)) return gg_fail(p, t->name, CD_ERR_FORMAT, "the file ends inside the tensor info");
    if (nd > CD_GGUF_MAX_DIMS)
        return gg_fail(p, t->name, CD_ERR_FORMAT, "n_dims %u is over the maximum of %d", nd, CD_GGUF_MAX_DIMS);
    t->n_dims = nd;
    for (int d = 0; d < CD_GGUF_MAX_DIMS; d++) t->dims[d] = 1;
    uint64_t ne = 1;
    int ovf = 0;
    for (uint32_t d = 0; d < nd; d++) {
        if (!rd_u64(p, &t->dims[d])) return gg_fail(p, t->name, CD_ERR_FORMAT, "the file ends inside the tensor info");
        if (t->dims[d] > (uint64_t)INT64_MAX)
            return gg_fail(p, t->name, CD_ERR_FORMAT, "dims[%u] = %llu is negative as ggml's int64", d,
                           (unsigned long long)t->dims[d]);
        ovf |= __builtin_mul_overflow(ne, t->dims[d], &ne);
    }
    if (!rd_u32(p, &t->type) || !rd_u64(p, &t->offset))
        return gg_fail(p, t->name, CD_ERR_FORMAT, "the file ends inside the tensor info");
    const cd_ggml_type_info *ti = cd_ggml_type_get(t->type);
    if (!ti) return gg_fail(p, t->name, CD_ERR_FORMAT, "unknown ggml type %u", t->type);
    if (ovf || ne > (uint64_t)INT64_MAX)
        return gg_fail(p, t->name, CD_ERR_FORMAT, "element count overflows (dims %llu x %llu x %llu x %llu)",
                       (unsigned long long)t->dims[0], (unsigned long long)t->dims[1], (unsigned long long)t->dims[2],
                       (unsigned long long)t->dims[3]);
    t->ne = ne;
    if (t->dims[0] % ti->block_elems)
        return gg_fail(p, t->name, CD_ERR_FORMAT, "dims[0] = %llu is not a multiple of the %s block of %u",
                       (unsigned long long)t->dims[0], ti->name, ti->block_elems);
    /* nbytes = (ne / block_elems) * block_bytes: ne is a multiple of the block since dims[0] is */
    uint64_t nb;
    if (__builtin_mul_overflow(ne / ti->block_elems, (uint64_t)ti->block_bytes, &nb) || nb > SIZE_MAX)
        return gg_fail(p, t->name, CD_ERR_FORMAT, "byte size overflows");
    t->nbytes = (size_t)nb;
    return CD_OK;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const cd_gguf_tensor *const *)a)->name, (*(const cd_gguf_tensor *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const cd_gguf_tensor *x = *(const cd_gguf_tensor *const *)a, *y = *(const cd_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static cd_status parse_tensors(gg_parse *p, cd_gguf *g, uint64_t n) {
    g->tensors = calloc((size_t)n + 1, sizeof *g->tensors);
    g->by_name = calloc((size_t)n + 1, sizeof *g->by_name);
    if (!g->tensors || !g->by_name)
        return gg_fail(p, NULL, CD_ERR_OOM, "out of memory for %llu tensors", (unsigned long long)n);
    for (size_t i = 0; i < n; i++) {
        cd_gguf_tensor *t = &g->tensors[i];
        char *name = NULL;
        cd_status s = read_name(p, "tensor name", i, &name);
        t->name = name;
        g->n_tensors = i + 1;
        if (s != CD_OK) return s;
        if ((s = parse_tensor_info(p, t)) != CD_OK) return s;
        g->by_name[i] = t;
    }
    qsort(g->by_name, (size_t)n, sizeof *g->by_name, cmp_tensor_name);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(g->by_name[i - 1]->name, g->by_name[i]->name))
            return gg_fail(p, g->by_name[i]->name, CD_ERR_FORMAT, "name appears more than once");

    /* The data section starts at the next multiple of the alignment after the tensor infos. */
    const size_t a = g->alignment, pad = (a - p->pos % a) % a;
    if (n == 0) {
        g->data_offset = p->pos + pad > p->len ? p->len : p->pos + pad;
        return CD_OK;
    }
    if (pad > left(p))
        return gg_fail(p, NULL, CD_ERR_FORMAT,
                       "the data section (at byte %zu, alignment %zu) is past the end of the file", p->pos + pad, a);
    g->data_offset = p->pos + pad;
    const size_t data_len = p->len - g->data_offset;
    for (size_t i = 0; i < n; i++) {
        cd_gguf_tensor *t = &g->tensors[i];
        if (t->offset % a)
            return gg_fail(p, t->name, CD_ERR_FORMAT, "data offset %llu is not a multiple of the alignment %zu",
                           (unsigned long long)t->offset, a);
        if (t->offset > data_len || t->nbytes > data_len - t->offset)
            return gg_fail(p, t->name, CD_ERR_FORMAT,
                           "data [%llu, +%zu) runs past the end of the data section (%zu bytes)",
                           (unsigned long long)t->offset, t->nbytes, data_len);
        t->data = p->b + g->data_offset + t->offset;
    }
    /* Overlaps: sorted by offset, each tensor must end where or before the next begins. */
    const cd_gguf_tensor **o = malloc((size_t)n * sizeof *o);
    if (!o) return gg_fail(p, NULL, CD_ERR_OOM, "out of memory for %llu tensors", (unsigned long long)n);
    for (size_t i = 0; i < n; i++) o[i] = &g->tensors[i];
    qsort(o, (size_t)n, sizeof *o, cmp_tensor_offset);
    for (size_t i = 1; i < n; i++)
        if (o[i - 1]->offset + o[i - 1]->nbytes > o[i]->offset) {
            char other[CD_ST_PRINT_MAX];
            cd_st_printable(o[i - 1]->name, other, sizeof other);
            const char *name = o[i]->name;
            const uint64_t off = o[i]->offset;
            free(o);
            return gg_fail(p, name, CD_ERR_FORMAT, "data at offset %llu overlaps tensor '%s'", (unsigned long long)off,
                           other);
        }
    free(o);
    return CD_OK;
}

cd_status cd_gguf_open(cd_ctx *ctx, const char *path, cd_gguf **out) {
    *out = NULL;
    gg_parse p = {.ctx = ctx};
    cd_st_printable(path, p.path, sizeof p.path);
    cd_gguf *g = calloc(1, sizeof *g);
    if (!g) return gg_fail(&p, NULL, CD_ERR_OOM, "out of memory");
    uint64_t n_tensors = 0, n_kv = 0;
    cd_status s = map_file(&p, path, g);
    if (s == CD_OK) s = parse_header(&p, g, &n_tensors, &n_kv);
    if (s == CD_OK) s = parse_kvs(&p, g, n_kv);
    if (s == CD_OK) s = parse_alignment(&p, g);
    if (s == CD_OK) s = parse_tensors(&p, g, n_tensors);
    if (s != CD_OK) {
        cd_gguf_close(g);
        return s;
    }
    *out = g;
    return CD_OK;
}

void cd_gguf_close(cd_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) free((void *)g->kvs[i].key);
    for (size_t i = 0; i < g->n_tensors; i++) free((void *)g->tensors[i].name);
    free(g->kvs);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->by_name);
    if (g->map) munmap((void *)g->map, g->map_len);
    free(g);
}
