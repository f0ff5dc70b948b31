/* gguf_query.c — queries on an open GGUF file (gguf.h): tensors and key/values by index and by
 * name, typed getters, and the short value rendering `inspect` prints. The file was validated at
 * open (gguf.c), so nothing here re-checks bounds. */
#include "gguf_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const k_vtype_names[CD_GGUF_VTYPE_COUNT] = {
    "UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",   "FLOAT32",
    "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64",
};

const char *cd_gguf_vtype_name(uint32_t t) { return t < CD_GGUF_VTYPE_COUNT ? k_vtype_names[t] : "?"; }

uint32_t cd_gguf_version(const cd_gguf *g) { return g->version; }
uint32_t cd_gguf_alignment(const cd_gguf *g) { return g->alignment; }
size_t cd_gguf_data_offset(const cd_gguf *g) { return g->data_offset; }
size_t cd_gguf_file_size(const cd_gguf *g) { return g->map_len; }
size_t cd_gguf_n_tensors(const cd_gguf *g) { return g->n_tensors; }
size_t cd_gguf_n_kv(const cd_gguf *g) { return g->n_kv; }

const cd_gguf_tensor *cd_gguf_tensor_at(const cd_gguf *g, size_t i) { return i < g->n_tensors ? &g->tensors[i] : NULL; }

const cd_gguf_kv *cd_gguf_kv_at(const cd_gguf *g, size_t i) { return i < g->n_kv ? &g->kvs[i] : NULL; }

const cd_gguf_tensor *cd_gguf_find(const cd_gguf *g, const char *name) {
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(g->by_name[mid]->name, name);
        if (!c) return g->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const cd_gguf_kv *cd_gguf_kv_find(const cd_gguf *g, const char *key) {
    size_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(g->kv_sorted[mid]->key, key);
        if (!c) return g->kv_sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The kv of `key` with type t, or NULL with the context's message set (*s = the status). */
static const cd_gguf_kv *get_typed(cd_ctx *ctx, const cd_gguf *g, const char *key, uint32_t t, cd_status *s) {
    char pk[CD_ST_PRINT_MAX];
    const cd_gguf_kv *kv = cd_gguf_kv_find(g, key);
    if (!kv) {
        *s = cd_set_error(ctx, CD_ERR_NOT_FOUND, "GGUF key '%s' not found", cd_st_printable(key, pk, sizeof pk));
        return NULL;
    }
    if (kv->type != t) {
        *s = cd_set_error(ctx, CD_ERR_FORMAT, "GGUF key '%s' is %s, expected %s", cd_st_printable(key, pk, sizeof pk),
                          cd_gguf_vtype_name(kv->type), cd_gguf_vtype_name(t));
        return NULL;
    }
    *s = CD_OK;
    return kv;
}

#define GETTER(suffix, T, VT)                                                                \
    cd_status cd_gguf_get_##suffix(cd_ctx *ctx, const cd_gguf *g, const char *key, T *out) { \
        cd_status s;                                                                         \
        const cd_gguf_kv *kv = get_typed(ctx, g, key, VT, &s);                               \
        if (kv) memcpy(out, kv->val, sizeof *out);                                           \
        return s;                                                                            \
    }
GETTER(u8, uint8_t, CD_GGUF_U8)
GETTER(i8, int8_t, CD_GGUF_I8)
GETTER(u16, uint16_t, CD_GGUF_U16)
GETTER(i16, int16_t, CD_GGUF_I16)
GETTER(u32, uint32_t, CD_GGUF_U32)
GETTER(i32, int32_t, CD_GGUF_I32)
GETTER(u64, uint64_t, CD_GGUF_U64)
GETTER(i64, int64_t, CD_GGUF_I64)
GETTER(f32, float, CD_GGUF_F32)
GETTER(f64, double, CD_GGUF_F64)
#undef GETTER

cd_status cd_gguf_get_bool(cd_ctx *ctx, const cd_gguf *g, const char *key, int *out) {
    cd_status s;
    const cd_gguf_kv *kv = get_typed(ctx, g, key, CD_GGUF_BOOL, &s);
    if (kv) *out = kv->val[0] != 0;
    return s;
}

const uint8_t *cd_gguf_str_next(const uint8_t *p, const char **s, uint64_t *len) {
    memcpy(len, p, 8);
    *s = (const char *)p + 8;
    return p + 8 + *len;
}

cd_status cd_gguf_get_str(cd_ctx *ctx, const cd_gguf *g, const char *key, const char **str, uint64_t *len) {
    cd_status s;
    const cd_gguf_kv *kv = get_typed(ctx, g, key, CD_GGUF_STR, &s);
    if (kv) cd_gguf_str_next(kv->val, str, len);
    return s;
}

cd_status cd_gguf_get_arr(cd_ctx *ctx, const cd_gguf *g, const char *key, uint32_t elem_type, const uint8_t **data,
                          uint64_t *n) {
    cd_status s;
    char pk[CD_ST_PRINT_MAX];
    const cd_gguf_kv *kv = get_typed(ctx, g, key, CD_GGUF_ARR, &s);
    if (!kv) return s;
    if (kv->arr_type != elem_type)
        return cd_set_error(ctx, CD_ERR_FORMAT, "GGUF key '%s' is an array of %s, expected %s",
                            cd_st_printable(key, pk, sizeof pk), cd_gguf_vtype_name(kv->arr_type),
                            cd_gguf_vtype_name(elem_type));
    *data = kv->val;
    *n = kv->arr_n;
    return CD_OK;
}

/* Appends one scalar or string at p of type t to buf (at *n < cap); returns the next value. */
static const uint8_t *render_one(const uint8_t *p, uint32_t t, char *buf, size_t cap, size_t *n) {
    char tmp[96];
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
    } v;
    const size_t fs = cd_gguf_scalar_size(t);
    if (fs) memcpy(&v, p, fs);
    switch (t) {
        case CD_GGUF_U8: snprintf(tmp, sizeof tmp, "%u", v.u8); break;
        case CD_GGUF_I8: snprintf(tmp, sizeof tmp, "%d", v.i8); break;
        case CD_GGUF_U16: snprintf(tmp, sizeof tmp, "%u", v.u16); break;
        case CD_GGUF_I16: snprintf(tmp, sizeof tmp, "%d", v.i16); break;
        case CD_GGUF_U32: snprintf(tmp, sizeof tmp, "%" PRIu32, v.u32); break;
        case CD_GGUF_I32: snprintf(tmp, sizeof tmp, "%" PRId32, v.i32); break;
        case CD_GGUF_U64: snprintf(tmp, sizeof tmp, "%" PRIu64, v.u64); break;
        case CD_GGUF_I64: snprintf(tmp, sizeof tmp, "%" PRId64, v.i64); break;
        case CD_GGUF_F32: snprintf(tmp, sizeof tmp, "%.9g", (double)v.f32); break;
        case CD_GGUF_F64: snprintf(tmp, sizeof tmp, "%.17g", v.f64); break;
        case CD_GGUF_BOOL: snprintf(tmp, sizeof tmp, "%s", p[0] ? "true" : "false"); break;
        case CD_GGUF_STR: {
            const char *s;
            uint64_t len;
            const uint8_t *next = cd_gguf_str_next(p, &s, &len);
            const size_t k = len < 64 ? (size_t)len : 64;
            char raw[65], pr[80];
            memcpy(raw, s, k);
            raw[k] = 0;
            snprintf(tmp, sizeof tmp, "\"%s%s\"", cd_st_printable(raw, pr, sizeof pr), len > 64 ? "..." : "");
            if (*n < cap) *n += (size_t)snprintf(buf + *n, cap - *n, "%s", tmp);
            return next;
        }
        default: snprintf(tmp, sizeof tmp, "?"); break;
    }
    if (*n < cap) *n += (size_t)snprintf(buf + *n, cap - *n, "%s", tmp);
    return p + fs;
}

const char *cd_gguf_kv_render(const cd_gguf_kv *kv, char *buf, size_t cap) {
    size_t n = 0;
    if (!cap) return buf;
    buf[0] = 0;
    if (kv->type != CD_GGUF_ARR) {
        render_one(kv->val, kv->type, buf, cap, &n);
        return buf;
    }
    n += (size_t)snprintf(buf, cap, "[%s x %" PRIu64, cd_gguf_vtype_name(kv->arr_type), kv->arr_n);
    if (kv->arr_type != CD_GGUF_ARR && kv->arr_n) {
        const uint8_t *p = kv->val;
        for (uint64_t i = 0; i < kv->arr_n && i < 8 && n < cap; i++) {
            n += (size_t)snprintf(buf + n, cap - n, "%s", i ? ", " : ": ");
            p = render_one(p, kv->arr_type, buf, cap, &n);
        }
        if (kv->arr_n > 8 && n < cap) n += (size_t)snprintf(buf + n, cap - n, ", ...");
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}
