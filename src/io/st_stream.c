/* st_stream.c — the streaming safetensors writer (st_stream.h): header first, tensor bytes
 * appended afterwards, atomic commit. Peak memory is the header plus whatever the caller holds;
 * the file itself never lives in memory.
 *
 * File format as cd_st_write (safetensors_write.c) writes it: u64 header length N (a multiple of
 * 8, the JSON padded with spaces), the compact JSON header with __metadata__ first and tensors
 * in the given order with back-to-back data_offsets, then the data. */
#include "st_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct cd_st_stream {
    cd_ctx *ctx;
    char path[CD_ST_PRINT_MAX];   /* printable, for messages */
    char *dest;                   /* destination path */
    char *tmp;                    /* temporary file path */
    int fd;
    uint64_t total, written;      /* data bytes announced / appended */
};

__attribute__((format(printf, 4, 5)))
static cd_status sw_fail(cd_ctx *ctx, const char *path, cd_status s, const char *fmt, ...) {
    char reason[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return cd_set_error(ctx, s, "%s: cannot write: %s", path, reason);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks names, dtypes and shapes; total data bytes into *total. */
static cd_status validate(cd_ctx *ctx, const char *path, const cd_st_out *t, size_t n,
                          const char *const *meta, size_t n_meta, uint64_t *total) {
    char pn[CD_ST_PRINT_MAX];
    *total = 0;
    if (n > CD_ST_MAX_TENSORS)
        return sw_fail(ctx, path, CD_ERR_INVALID_ARG, "%zu tensors exceed the limit of %u", n,
                       CD_ST_MAX_TENSORS);
    for (size_t i = 0; i < n; i++) {
        const cd_st_out *o = &t[i];
        if (!o->name || !o->name[0] || !strcmp(o->name, "__metadata__") ||
            strlen(o->name) > CD_ST_MAX_NAME || !cd_st_utf8_valid(o->name, strlen(o->name)))
            return sw_fail(ctx, path, CD_ERR_INVALID_ARG, "tensor %zu: invalid name '%s'", i,
                           cd_st_printable(o->name, pn, sizeof pn));
        if ((int)o->dtype < 0 || o->dtype >= CD_DTYPE_COUNT || o->ndim < 0 ||
            o->ndim > CD_MAX_DIMS)
            return sw_fail(ctx, path, CD_ERR_INVALID_ARG, "tensor '%s': bad dtype or rank",
                           cd_st_printable(o->name, pn, sizeof pn));
        for (int32_t d = 0; d < o->ndim; d++)
            if (o->shape[d] < 0)
                return sw_fail(ctx, path, CD_ERR_INVALID_ARG, "tensor '%s': negative shape",
                               cd_st_printable(o->name, pn, sizeof pn));
        uint64_t numel, bytes;
        if (cd_st_size(o->dtype, o->ndim, o->shape, &numel, &bytes) != CD_ST_SIZE_OK ||
            __builtin_add_overflow(*total, bytes, total) || *total > (uint64_t)INT64_MAX)
            return sw_fail(ctx, path, CD_ERR_INVALID_ARG,
                           "tensor '%s': size overflows or is not a whole number of bytes",
                           cd_st_printable(o->name, pn, sizeof pn));
    }
    for (size_t i = 0; i < 2 * n_meta; i++)
        if (!meta[i] || !cd_st_utf8_valid(meta[i], strlen(meta[i])))
            return sw_fail(ctx, path, CD_ERR_INVALID_ARG, "metadata entry %zu is not UTF-8", i / 2);
    /* Unique names (a reader must reject duplicate keys). */
    const char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return sw_fail(ctx, path, CD_ERR_OOM, "out of memory");
    for (size_t i = 0; i < n; i++) v[i] = t[i].name;
    qsort(v, n, sizeof *v, cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(v[i - 1], v[i])) dup = v[i];
    cd_status s = dup ? sw_fail(ctx, path, CD_ERR_INVALID_ARG, "duplicate tensor name '%s'",
                                cd_st_printable(dup, pn, sizeof pn))
                      : CD_OK;
    free(v);
    return s;
}

/* The header JSON: __metadata__ first, then the tensors in order. NULL when out of memory
 * (everything was validated, so Jansson can fail for no other reason). */
static char *build_header(const cd_st_out *t, size_t n, const char *const *meta, size_t n_meta) {
    json_t *root = json_object();
    int bad = !root;
    if (!bad && n_meta) {
        json_t *md = json_object();
        bad = json_object_set_new(root, "__metadata__", md) || !md;
        for (size_t i = 0; i < n_meta && !bad; i++)
            bad = json_object_set_new(md, meta[2 * i], json_string(meta[2 * i + 1]));
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        uint64_t numel, bytes;
        cd_st_size(t[i].dtype, t[i].ndim, t[i].shape, &numel, &bytes);
        json_t *e = json_object(), *shape = json_array();
        if (!e || !shape) {
            json_decref(e);
            json_decref(shape);
            bad = 1;
            break;
        }
        bad = json_object_set_new(e, "dtype", json_string(cd_dtype_name(t[i].dtype)));
        for (int32_t d = 0; d < t[i].ndim && !bad; d++)
            bad = json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d]));
        /* json_object_set_new takes the value's reference even when it fails, so each value is
         * handed over exactly once and nothing is released by hand afterwards. */
        bad = json_object_set_new(e, "shape", shape) || bad;
        bad = bad || json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off,
                                                                      (json_int_t)(off + bytes)));
        bad = json_object_set_new(root, t[i].name, e) || bad;
        off += bytes;
    }
    char *s = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static int write_all(int fd, const void *buf, uint64_t len) {
    const uint8_t *p = buf;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        len -= (uint64_t)k;
    }
    return 0;
}

static void stream_free(cd_st_stream *w) {
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->dest);
    free(w);
}

cd_status cd_st_stream_begin(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n,
                             const char *const *meta, size_t n_meta, cd_st_stream **out) {
    if (!out) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "safetensors: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "safetensors: empty path");
    char pn[CD_ST_PRINT_MAX];
    cd_st_printable(path, pn, sizeof pn);
    if ((n && !tensors) || (n_meta && !meta))
        return sw_fail(ctx, pn, CD_ERR_INVALID_ARG, "tensors or metadata is NULL");
    uint64_t total;
    cd_status s = validate(ctx, pn, tensors, n, meta, n_meta, &total);
    if (s) return s;
    char *header = build_header(tensors, n, meta, n_meta);
    if (!header) return sw_fail(ctx, pn, CD_ERR_OOM, "out of memory");
    const size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
    if (padded > CD_ST_MAX_HEADER) {
        free(header);
        return sw_fail(ctx, pn, CD_ERR_INVALID_ARG, "header of %zu bytes exceeds the format limit",
                       padded);
    }

    cd_st_stream *w = calloc(1, sizeof *w);
    const size_t plen = strlen(path);
    if (w) {
        w->fd = -1;
        w->dest = strdup(path);
        w->tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    }
    if (!w || !w->dest || !w->tmp) {
        free(header);
        if (w) stream_free(w);
        return sw_fail(ctx, pn, CD_ERR_OOM, "out of memory");
    }
    w->ctx = ctx;
    memcpy(w->path, pn, sizeof pn);
    w->total = total;
    memcpy(w->tmp, path, plen);
    memcpy(w->tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    w->fd = mkostemp(w->tmp, O_CLOEXEC);
    if (w->fd < 0) {
        s = sw_fail(ctx, pn, CD_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
        free(w->tmp);
        w->tmp = NULL; /* nothing to remove */
        free(header);
        stream_free(w);
        return s;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    const char spaces[8] = "        ";
    int err = write_all(w->fd, len8, 8) || write_all(w->fd, header, hlen) ||
              write_all(w->fd, spaces, padded - hlen);
    free(header);
    if (err) {
        s = sw_fail(ctx, pn, CD_ERR_IO, "write failed: %s", strerror(errno));
        stream_free(w);
        return s;
    }
    *out = w;
    return CD_OK;
}

cd_status cd_st_stream_write(cd_st_stream *w, const void *data, size_t len) {
    if (!w) return CD_ERR_INVALID_ARG;
    if (len > w->total - w->written)
        return sw_fail(w->ctx, w->path, CD_ERR_INTERNAL,
                       "%zu more bytes than the header announced",
                       len - (size_t)(w->total - w->written));
    if (len && write_all(w->fd, data, len))
        return sw_fail(w->ctx, w->path, CD_ERR_IO, "write failed: %s", strerror(errno));
    w->written += len;
    return CD_OK;
}

/* Makes the rename durable; failure here is not an error of the write itself. */
static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

cd_status cd_st_stream_commit(cd_st_stream *w) {
    if (!w) return CD_ERR_INVALID_ARG;
    cd_status s = CD_OK;
    if (w->written != w->total) {
        s = sw_fail(w->ctx, w->path, CD_ERR_INTERNAL, "%llu of %llu data bytes written",
                    (unsigned long long)w->written, (unsigned long long)w->total);
    } else if (fchmod(w->fd, 0644) != 0 || fsync(w->fd) != 0) { /* mkstemp creates 0600 */
        s = sw_fail(w->ctx, w->path, CD_ERR_IO, "cannot sync the temporary file: %s",
                    strerror(errno));
    } else {
        int c = close(w->fd);
        w->fd = -1;
        if (c != 0) {
            s = sw_fail(w->ctx, w->path, CD_ERR_IO, "close failed: %s", strerror(errno));
        } else if (rename(w->tmp, w->dest) != 0) {
            s = sw_fail(w->ctx, w->path, CD_ERR_IO,
                        "cannot rename the temporary file into place: %s", strerror(errno));
        } else {
            free(w->tmp);
            w->tmp = NULL; /* renamed: nothing to remove */
            fsync_dir_of(w->dest);
        }
    }
    stream_free(w);
    return s;
}

void cd_st_stream_abort(cd_st_stream *w) {
    if (w) stream_free(w);
}
