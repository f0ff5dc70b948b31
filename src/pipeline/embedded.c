/* embedded.c — the shipped default model and its distilled CLEAR weights (default_model.S, in
 * the library's read-only data) handed to the loaders as files: anonymous memory files (memfd),
 * so nothing is written to disk and a program linking the library works wherever it is copied. */
#include "cleardit.h"
#include "../util/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern const unsigned char cd_default_model_start[], cd_default_model_end[];
extern const unsigned char cd_default_clear_start[], cd_default_clear_end[];

static size_t embedded_bytes(cd_embedded which, const unsigned char **b) {
    *b = which == CD_EMBEDDED_CLEAR ? cd_default_clear_start : cd_default_model_start;
    return which == CD_EMBEDDED_CLEAR ? (size_t)(cd_default_clear_end - cd_default_clear_start)
                                      : (size_t)(cd_default_model_end - cd_default_model_start);
}

int cd_embedded_available(cd_embedded which) {
    const unsigned char *b;
    return embedded_bytes(which, &b) > 0;
}

cd_status cd_embedded_open(cd_ctx *ctx, cd_embedded which, char *path, size_t n, int *fd) {
    const char *what = which == CD_EMBEDDED_CLEAR ? "default CLEAR weights" : "default model";
    const unsigned char *b;
    const size_t len = embedded_bytes(which, &b);
    *fd = -1;
    if (!path || n < 32) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "embedded: the path buffer is too small");
    if (!len)
        return cd_set_error(ctx, CD_ERR_NOT_FOUND, "this build has no embedded %s (%s was missing at build time)", what,
                            which == CD_EMBEDDED_CLEAR ? "models/fmnist_clear.safetensors"
                                                       : "models/fmnist.safetensors");
    const int f = memfd_create(what, MFD_CLOEXEC);
    if (f < 0) return cd_set_error(ctx, CD_ERR_IO, "cannot create a memory file for the %s", what);
    for (size_t done = 0; done < len;) {
        const ssize_t w = write(f, b + done, len - done);
        if (w <= 0) {
            close(f);
            return cd_set_error(ctx, CD_ERR_IO, "cannot stage the %s", what);
        }
        done += (size_t)w;
    }
    snprintf(path, n, "/proc/self/fd/%d", f);
    *fd = f;
    return CD_OK;
}

cd_status cd_embedded_clear_attention(cd_ctx *ctx, int32_t *radius, int32_t *down) {
    char path[32];
    int fd;
    *radius = *down = 0;
    cd_status st = cd_embedded_open(ctx, CD_EMBEDDED_CLEAR, path, sizeof path, &fd);
    if (st) return st;
    cd_st_file *f = NULL;
    if (cd_st_open(NULL, path, &f) != CD_OK) {
        close(fd);
        return cd_set_error(ctx, CD_ERR_FORMAT, "the embedded CLEAR weights are unreadable");
    }
    const char *r = cd_st_meta(f, "radius"), *d = cd_st_meta(f, "down");
    const long long rv = r ? strtoll(r, NULL, 10) : 0, dv = d ? strtoll(d, NULL, 10) : 0;
    cd_st_close(f);
    close(fd);
    if (rv < 1 || rv > (1 << 20))
        return cd_set_error(ctx, CD_ERR_FORMAT, "the embedded CLEAR weights do not record their radius");
    *radius = (int32_t)rv;
    *down = dv >= 2 && dv <= 64 ? (int32_t)dv : 0;
    return CD_OK;
}
