/* safetensors_write.c — the safetensors writer: the streaming writer of st_stream.h
 * (cd_st_stream_begin / write / commit / abort) and cd_st_write, which is begin + each tensor's
 * bytes + commit on top of it.
 *
 * Layout: u64 header length N (a multiple of 8: the JSON header is padded with spaces, as the
 * reference writer does), the header {"__metadata__": {...}, "NAME": {"dtype", "shape",
 * "data_offsets"}, ...}, then the tensors' bytes back to back in the order given (no padding
 * between tensors, so later tensors are not aligned in general; readers must not assume it).
 *
 * Atomicity: everything goes to PATH.tmp.XXXXXX in the same directory, which is fsynced and
 * then renamed over PATH. On any failure (or abort) the temporary file is removed and PATH is
 * untouched (neither created nor changed). Everything that can be validated (names, dtypes,
 * shapes, metadata, uniqueness, the header size and, for cd_st_write, the data pointers) is
 * validated before the temporary file is created; commit checks that exactly the announced
 * bytes arrived. */
#include "st_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where the error goes and how the file is called in it. */
typedef struct {
    cd_ctx *ctx;
    char path[CD_ST_PRINT_MAX];
} st_writer;

struct cd_st_stream {
    st_writer w;
    char *dest; /* destination path */
    char *tmp;  /* temporary file path (NULL: nothing to remove) */
    int fd;
    uint64_t total, written; /* data bytes announced / appended */
};

__attribute__((format(printf, 4, 5))) static cd_status wr_fail(const st_writer *w, const char *tensor, cd_status s,
                                                               const char *fmt, ...) {
    char reason[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (tensor) {
        char name[CD_ST_PRINT_MAX];
        return cd_set_error(w->ctx, s, "%s: cannot write tensor '%s': %s", w->path,
                            cd_st_printable(tensor, name, sizeof name), reason);
    }
    return cd_set_error(w->ctx, s, "%s: cannot write: %s", w->path, reason);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the first string that occurs twice in v[n] (NULL if none). Sorts v. */
static const char *find_duplicate(const char **v, size_t n) {
    qsort(v, n, sizeof *v, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(v[i - 1], v[i])) return v[i];
    return NULL;
}

/* Checks every tensor (and, with need_data, that each non-empty one has data) and the metadata,
 * fills bytes[i] and *total (which must fit the format's 64-bit offsets), then checks that tensor
 * names and metadata keys are unique (our reader rejects duplicate JSON keys). */
static cd_status validate(const st_writer *w, const cd_st_out *t, size_t n, const char *const *meta, size_t n_meta,
                          int need_data, uint64_t *bytes, uint64_t *total_out) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const cd_st_out *o = &t[i];
        if (!o->name || !o->name[0]) return wr_fail(w, NULL, CD_ERR_INVALID_ARG, "tensor %zu has an empty name", i);
        if (!strcmp(o->name, "__metadata__")) return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "the name is reserved");
        if (strlen(o->name) > CD_ST_MAX_NAME)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "name longer than %u bytes", CD_ST_MAX_NAME);
        if (!cd_st_utf8_valid(o->name, strlen(o->name)))
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "name is not valid UTF-8");
        if ((int)o->dtype < 0 || o->dtype >= CD_DTYPE_COUNT)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "unknown dtype %d", (int)o->dtype);
        if (o->ndim < 0 || o->ndim > CD_MAX_DIMS)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "rank %d is outside 0..%d", o->ndim, CD_MAX_DIMS);
        for (int32_t d = 0; d < o->ndim; d++)
            if (o->shape[d] < 0)
                return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "shape[%d] = %lld is negative", d,
                               (long long)o->shape[d]);
        uint64_t numel;
        switch (cd_st_size(o->dtype, o->ndim, o->shape, &numel, &bytes[i])) {
            case CD_ST_SIZE_OVERFLOW: return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "shape overflows 64-bit sizes");
            case CD_ST_SIZE_PARTIAL:
                return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "%llu elements of %s are not a whole number of bytes",
                               (unsigned long long)numel, cd_dtype_name(o->dtype));
            case CD_ST_SIZE_OK: break;
        }
        if (need_data && bytes[i] && !o->data) return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "data is NULL");
        if (__builtin_add_overflow(total, bytes[i], &total) || total > (uint64_t)INT64_MAX)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "total size overflows 64-bit offsets");
    }
    for (size_t i = 0; i < 2 * n_meta; i++) {
        if (!meta[i])
            return wr_fail(w, NULL, CD_ERR_INVALID_ARG, "metadata %s %zu is NULL", i % 2 ? "value" : "key", i / 2);
        if (!cd_st_utf8_valid(meta[i], strlen(meta[i])))
            return wr_fail(w, NULL, CD_ERR_INVALID_ARG, "metadata %s %zu is not valid UTF-8", i % 2 ? "value" : "key",
                           i / 2);
    }
    *total_out = total;

    const char **names = malloc((n ? n : 1) * sizeof *names);
    const char **keys = malloc((n_meta ? n_meta : 1) * sizeof *keys);
    const char *dup = NULL, *dupk = NULL;
    if (names && keys) {
        for (size_t i = 0; i < n; i++) names[i] = t[i].name;
        for (size_t i = 0; i < n_meta; i++) keys[i] = meta[2 * i];
        dup = find_duplicate(names, n);
        dupk = find_duplicate(keys, n_meta);
    }
    const int oom = !names || !keys;
    free(names);
    free(keys);
    if (oom) return wr_fail(w, NULL, CD_ERR_OOM, "out of memory");
    if (dup) return wr_fail(w, dup, CD_ERR_INVALID_ARG, "duplicate tensor name");
    if (dupk) {
        char k[CD_ST_PRINT_MAX];
        return wr_fail(w, NULL, CD_ERR_INVALID_ARG, "duplicate metadata key '%s'", cd_st_printable(dupk, k, sizeof k));
    }
    return CD_OK;
}

/* Builds the header JSON (compact, __metadata__ first, then tensors in the given order).
 * Names and strings were validated (UTF-8, unique), so every Jansson failure here is OOM. */
static cd_status build_header(const st_writer *w, const cd_st_out *t, size_t n, const uint64_t *bytes,
                              const char *const *meta, size_t n_meta, char **out) {
    *out = NULL;
    cd_status s = CD_OK;
    json_t *root = json_object();
    if (!root) return wr_fail(w, NULL, CD_ERR_OOM, "out of memory");
    if (n_meta) {
        json_t *md = json_object();
        if (!md || json_object_set_new(root, "__metadata__", md)) {
            s = wr_fail(w, NULL, CD_ERR_OOM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n_meta; i++)
            if (json_object_set_new(md, meta[2 * i], json_string(meta[2 * i + 1]))) {
                s = wr_fail(w, NULL, CD_ERR_OOM, "out of memory");
                goto done;
            }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array(), *offs = json_array(), *e = json_object();
        int bad = !shape || !offs || !e;
        for (int32_t d = 0; d < t[i].ndim && !bad; d++)
            bad = json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d]));
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)off)) ||
              json_array_append_new(offs, json_integer((json_int_t)(off + bytes[i])));
        bad = bad || json_object_set_new(e, "dtype", json_string(cd_dtype_name(t[i].dtype)));
        if (bad) {
            json_decref(shape);
            json_decref(offs);
            json_decref(e);
            s = wr_fail(w, t[i].name, CD_ERR_OOM, "out of memory");
            goto done;
        }
        /* json_object_set_new steals the value's reference even when it fails */
        bad = json_object_set_new(e, "shape", shape) | json_object_set_new(e, "data_offsets", offs);
        if (bad || json_object_set_new(root, t[i].name, e)) {
            if (bad) json_decref(e);
            s = wr_fail(w, t[i].name, CD_ERR_OOM, "out of memory");
            goto done;
        }
        off += bytes[i];
    }
    *out = json_dumps(root, JSON_COMPACT);
    if (!*out) s = wr_fail(w, NULL, CD_ERR_OOM, "cannot serialise the header");
done:
    json_decref(root);
    return s;
}

/* write(2) all of buf, retrying short writes and EINTR; chunks stay below 1 GiB. */
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

void cd_fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

static void stream_free(cd_st_stream *sw) {
    if (sw->fd >= 0) close(sw->fd);
    if (sw->tmp) unlink(sw->tmp);
    free(sw->tmp);
    free(sw->dest);
    free(sw);
}

/* cd_st_stream_begin, and for cd_st_write (need_data) also checks the data pointers. */
static cd_status stream_begin(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n,
                              const char *const *meta, size_t n_meta, int need_data, cd_st_stream **out) {
    *out = NULL;
    if (!path || !path[0]) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "safetensors: empty path");
    st_writer w = {ctx, {0}};
    cd_st_printable(path, w.path, sizeof w.path);
    if (n && !tensors) return wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "tensors is NULL");
    if (n_meta && !meta) return wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "metadata is NULL");
    if (n > CD_ST_MAX_TENSORS)
        return wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "%zu tensors exceed the limit of %u", n, CD_ST_MAX_TENSORS);

    uint64_t *bytes = calloc(n ? n : 1, sizeof *bytes), total = 0;
    char *header = NULL;
    cd_st_stream *sw = NULL;
    cd_status s = bytes ? validate(&w, tensors, n, meta, n_meta, need_data, bytes, &total)
                        : wr_fail(&w, NULL, CD_ERR_OOM, "out of memory");
    if (!s) s = build_header(&w, tensors, n, bytes, meta, n_meta, &header);
    if (s) goto done;
    const size_t hlen = strlen(header);
    const size_t padded = (hlen + 7) / 8 * 8; /* so that the data buffer starts 8-aligned */
    if (padded > CD_ST_MAX_HEADER) {
        s = wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "header of %zu bytes exceeds the format limit", padded);
        goto done;
    }

    /* Temporary file next to the destination, so that rename() is atomic. */
    const size_t plen = strlen(path);
    sw = calloc(1, sizeof *sw);
    if (sw) {
        sw->w = w;
        sw->fd = -1;
        sw->total = total;
        sw->dest = strdup(path);
        sw->tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    }
    if (!sw || !sw->dest || !sw->tmp) {
        s = wr_fail(&w, NULL, CD_ERR_OOM, "out of memory");
        goto done;
    }
    memcpy(sw->tmp, path, plen);
    memcpy(sw->tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    sw->fd = mkostemp(sw->tmp, O_CLOEXEC);
    if (sw->fd < 0) {
        s = wr_fail(&w, NULL, CD_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
        free(sw->tmp);
        sw->tmp = NULL; /* nothing to remove */
        goto done;
    }

    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    const char spaces[8] = "        ";
    if (write_all(sw->fd, len8, 8) || write_all(sw->fd, header, hlen) || write_all(sw->fd, spaces, padded - hlen))
        s = wr_fail(&w, NULL, CD_ERR_IO, "write failed: %s", strerror(errno));
done:
    free(header);
    free(bytes);
    if (!s) {
        *out = sw;
    } else if (sw) {
        stream_free(sw);
    }
    return s;
}

cd_status cd_st_stream_begin(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n, const char *const *meta,
                             size_t n_meta, cd_st_stream **out) {
    if (!out) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "safetensors: out is NULL");
    return stream_begin(ctx, path, tensors, n, meta, n_meta, 0, out);
}

/* cd_st_stream_write with a 64-bit length. */
static cd_status stream_put(cd_st_stream *sw, const void *data, uint64_t len) {
    if (len > sw->total - sw->written)
        return wr_fail(&sw->w, NULL, CD_ERR_INTERNAL, "%llu more bytes than the header announced",
                       (unsigned long long)(len - (sw->total - sw->written)));
    if (len && write_all(sw->fd, data, len))
        return wr_fail(&sw->w, NULL, CD_ERR_IO, "write failed: %s", strerror(errno));
    sw->written += len;
    return CD_OK;
}

cd_status cd_st_stream_write(cd_st_stream *sw, const void *data, size_t len) {
    if (!sw) return CD_ERR_INVALID_ARG;
    return stream_put(sw, data, len);
}

cd_status cd_st_stream_commit(cd_st_stream *sw) {
    if (!sw) return CD_ERR_INVALID_ARG;
    const st_writer *w = &sw->w;
    cd_status s = CD_OK;
    if (sw->written != sw->total) {
        s = wr_fail(w, NULL, CD_ERR_INTERNAL, "%llu of %llu data bytes written", (unsigned long long)sw->written,
                    (unsigned long long)sw->total);
    } else if (fchmod(sw->fd, 0644) != 0 || fsync(sw->fd) != 0) {
        /* mkstemp creates 0600; a model file is ordinarily world-readable. */
        s = wr_fail(w, NULL, CD_ERR_IO, "cannot sync the temporary file: %s", strerror(errno));
    } else {
        int c = close(sw->fd);
        sw->fd = -1;
        if (c != 0) {
            s = wr_fail(w, NULL, CD_ERR_IO, "close failed: %s", strerror(errno));
        } else if (rename(sw->tmp, sw->dest) != 0) {
            s = wr_fail(w, NULL, CD_ERR_IO, "cannot rename the temporary file into place: %s", strerror(errno));
        } else {
            free(sw->tmp);
            sw->tmp = NULL; /* renamed: nothing to remove */
            cd_fsync_dir_of(sw->dest);
        }
    }
    stream_free(sw);
    return s;
}

void cd_st_stream_abort(cd_st_stream *sw) {
    if (sw) stream_free(sw);
}

cd_status cd_st_write(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n, const char *const *meta,
                      size_t n_meta) {
    cd_st_stream *sw;
    cd_status s = stream_begin(ctx, path, tensors, n, meta, n_meta, 1, &sw);
    for (size_t i = 0; i < n && !s; i++) {
        uint64_t numel, bytes; /* validated by stream_begin */
        (void)cd_st_size(tensors[i].dtype, tensors[i].ndim, tensors[i].shape, &numel, &bytes);
        s = stream_put(sw, tensors[i].data, bytes);
    }
    if (s) {
        cd_st_stream_abort(sw);
        return s;
    }
    return cd_st_stream_commit(sw);
}
