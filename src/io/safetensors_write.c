/* safetensors_write.c — cd_st_write: writes a safetensors file atomically.
 *
 * Layout: u64 header length N (a multiple of 8: the JSON header is padded with spaces, as the
 * reference writer does), the header {"__metadata__": {...}, "NAME": {"dtype", "shape",
 * "data_offsets"}, ...}, then the tensors' bytes back to back in the order given (no padding
 * between tensors, so later tensors are not aligned in general; readers must not assume it).
 *
 * Atomicity: everything goes to PATH.tmp.XXXXXX in the same directory, which is fsynced and
 * then renamed over PATH. On any failure the temporary file is removed and PATH is untouched
 * (neither created nor changed). Everything that can be validated is validated before the
 * temporary file is created. */
#include "st_internal.h"

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

__attribute__((format(printf, 4, 5)))
static cd_status wr_fail(const st_writer *w, const char *tensor, cd_status s, const char *fmt, ...) {
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

/* Returns the first string that occurs twice in list[n] (NULL if none). Sorts a copy. */
static const char *find_duplicate(const char *const *list, size_t n, int *oom) {
    *oom = 0;
    if (n < 2) return NULL;
    const char **v = malloc(n * sizeof *v);
    if (!v) {
        *oom = 1;
        return NULL;
    }
    memcpy(v, list, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(v[i - 1], v[i])) dup = v[i];
    free(v);
    return dup;
}

/* Checks every tensor and fills bytes[i]; the total must fit the format's 64-bit offsets. */
static cd_status validate(const st_writer *w, const cd_st_out *t, size_t n, const char *const *meta,
                          size_t n_meta, uint64_t *bytes) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const cd_st_out *o = &t[i];
        if (!o->name || !o->name[0])
            return wr_fail(w, NULL, CD_ERR_INVALID_ARG, "tensor %zu has an empty name", i);
        if (!strcmp(o->name, "__metadata__"))
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "the name is reserved");
        if (strlen(o->name) > CD_ST_MAX_NAME)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "name longer than %u bytes",
                           CD_ST_MAX_NAME);
        if (!cd_st_utf8_valid(o->name, strlen(o->name)))
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "name is not valid UTF-8");
        if ((int)o->dtype < 0 || o->dtype >= CD_DTYPE_COUNT)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "unknown dtype %d", (int)o->dtype);
        if (o->ndim < 0 || o->ndim > CD_MAX_DIMS)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "rank %d is outside 0..%d", o->ndim,
                           CD_MAX_DIMS);
        for (int32_t d = 0; d < o->ndim; d++)
            if (o->shape[d] < 0)
                return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "shape[%d] = %lld is negative", d,
                               (long long)o->shape[d]);
        uint64_t numel;
        switch (cd_st_size(o->dtype, o->ndim, o->shape, &numel, &bytes[i])) {
        case CD_ST_SIZE_OVERFLOW:
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "shape overflows 64-bit sizes");
        case CD_ST_SIZE_PARTIAL:
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG,
                           "%llu elements of %s are not a whole number of bytes",
                           (unsigned long long)numel, cd_dtype_name(o->dtype));
        case CD_ST_SIZE_OK: break;
        }
        if (bytes[i] && !o->data)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "data is NULL");
        if (__builtin_add_overflow(total, bytes[i], &total) || total > (uint64_t)INT64_MAX)
            return wr_fail(w, o->name, CD_ERR_INVALID_ARG, "total size overflows 64-bit offsets");
    }
    for (size_t i = 0; i < 2 * n_meta; i++) {
        if (!meta[i])
            return wr_fail(w, NULL, CD_ERR_INVALID_ARG, "metadata %s %zu is NULL",
                           i % 2 ? "value" : "key", i / 2);
        if (!cd_st_utf8_valid(meta[i], strlen(meta[i])))
            return wr_fail(w, NULL, CD_ERR_INVALID_ARG, "metadata %s %zu is not valid UTF-8",
                           i % 2 ? "value" : "key", i / 2);
    }
    return CD_OK;
}

/* Builds the header JSON (compact, __metadata__ first, then tensors in the given order).
 * Names and strings were validated (UTF-8, unique), so every Jansson failure here is OOM. */
static cd_status build_header(const st_writer *w, const cd_st_out *t, size_t n,
                              const uint64_t *bytes, const char *const *meta, size_t n_meta,
                              char **out) {
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

cd_status cd_st_write(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n,
                      const char *const *meta, size_t n_meta) {
    if (!path || !path[0]) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "safetensors: empty path");
    st_writer w = {ctx, {0}};
    cd_st_printable(path, w.path, sizeof w.path);
    if (n && !tensors) return wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "tensors is NULL");
    if (n_meta && !meta) return wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "metadata is NULL");
    if (n > CD_ST_MAX_TENSORS)
        return wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "%zu tensors exceed the limit of %u", n,
                       CD_ST_MAX_TENSORS);

    uint64_t *bytes = calloc(n ? n : 1, sizeof *bytes);
    const char **names = calloc(n ? n : 1, sizeof *names);
    const char **keys = calloc(n_meta ? n_meta : 1, sizeof *keys);
    char *header = NULL, *tmp = NULL;
    int fd = -1;
    cd_status s = CD_OK;
    if (!bytes || !names || !keys) {
        s = wr_fail(&w, NULL, CD_ERR_OOM, "out of memory");
        goto done;
    }
    s = validate(&w, tensors, n, meta, n_meta, bytes);
    if (s) goto done;

    /* Unique tensor names and metadata keys (our reader rejects duplicate JSON keys). */
    for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
    for (size_t i = 0; i < n_meta; i++) keys[i] = meta[2 * i];
    int oom1, oom2;
    const char *dup = find_duplicate(names, n, &oom1);
    const char *dupk = find_duplicate(keys, n_meta, &oom2);
    if (oom1 || oom2) {
        s = wr_fail(&w, NULL, CD_ERR_OOM, "out of memory");
        goto done;
    }
    if (dup) {
        s = wr_fail(&w, dup, CD_ERR_INVALID_ARG, "duplicate tensor name");
        goto done;
    }
    if (dupk) {
        char k[CD_ST_PRINT_MAX];
        s = wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "duplicate metadata key '%s'",
                    cd_st_printable(dupk, k, sizeof k));
        goto done;
    }

    s = build_header(&w, tensors, n, bytes, meta, n_meta, &header);
    if (s) goto done;
    const size_t hlen = strlen(header);
    const size_t padded = (hlen + 7) / 8 * 8; /* so that the data buffer starts 8-aligned */
    if (padded > CD_ST_MAX_HEADER) {
        s = wr_fail(&w, NULL, CD_ERR_INVALID_ARG, "header of %zu bytes exceeds the format limit",
                    padded);
        goto done;
    }

    /* Temporary file next to the destination, so that rename() is atomic. */
    size_t plen = strlen(path);
    tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) {
        s = wr_fail(&w, NULL, CD_ERR_OOM, "out of memory");
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        s = wr_fail(&w, NULL, CD_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
        free(tmp);
        tmp = NULL; /* nothing to remove */
        goto done;
    }

    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    char spaces[8] = "        ";
    int err = write_all(fd, len8, 8) || write_all(fd, header, hlen) ||
              write_all(fd, spaces, padded - hlen);
    for (size_t i = 0; i < n && !err; i++) err = write_all(fd, tensors[i].data, bytes[i]);
    if (err) {
        s = wr_fail(&w, NULL, CD_ERR_IO, "write failed: %s", strerror(errno));
        goto done;
    }
    /* mkstemp creates 0600; a model file is ordinarily world-readable. */
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        s = wr_fail(&w, NULL, CD_ERR_IO, "cannot sync the temporary file: %s", strerror(errno));
        goto done;
    }
    int c = close(fd);
    fd = -1;
    if (c != 0) {
        s = wr_fail(&w, NULL, CD_ERR_IO, "close failed: %s", strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = wr_fail(&w, NULL, CD_ERR_IO, "cannot rename the temporary file into place: %s",
                    strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing to remove */
    fsync_dir_of(path);
done:
    if (fd >= 0) close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(header);
    free(bytes);
    free(names);
    free(keys);
    return s;
}
