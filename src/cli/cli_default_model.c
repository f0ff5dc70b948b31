/* cli_default_model.c — hands the embedded default model and its CLEAR weights
 * (default_model.S) to the library as files: anonymous memory files (memfd), so nothing is
 * written to disk and the binary works wherever it is copied. */
#include "cleardit.h"
#include "cli_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern const unsigned char cd_default_model_start[], cd_default_model_end[];
extern const unsigned char cd_default_clear_start[], cd_default_clear_end[];

/* bytes -> "/proc/self/fd/N" (the descriptor stays open: the library maps it). */
static int stage(const char *cmd, const char *what, const unsigned char *b, size_t len, char *path, size_t n) {
    const int fd = memfd_create(what, MFD_CLOEXEC);
    if (fd < 0) {
        cli_error(cmd, "cannot create a memory file for the %s", what);
        return 1;
    }
    for (size_t done = 0; done < len;) {
        const ssize_t w = write(fd, b + done, len - done);
        if (w <= 0) {
            cli_error(cmd, "cannot stage the %s", what);
            close(fd);
            return 1;
        }
        done += (size_t)w;
    }
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return 0;
}

int cli_default_model(char *path, size_t n) {
    const size_t len = (size_t)(cd_default_model_end - cd_default_model_start);
    if (!len) {
        cli_error("generate", "this build has no default model (models/fmnist.safetensors was missing at build "
                              "time): pass --model");
        return 1;
    }
    return stage("generate", "default model", cd_default_model_start, len, path, n);
}

int cli_default_clear(char *path, size_t n, int64_t *radius, int64_t *down) {
    const size_t len = (size_t)(cd_default_clear_end - cd_default_clear_start);
    if (!len) {
        cli_error("generate", "this build has no CLEAR weights for the default model (models/fmnist_clear.safetensors "
                              "was missing at build time): pass --clear-weights and --radius");
        return 1;
    }
    if (stage("generate", "default CLEAR weights", cd_default_clear_start, len, path, n)) return 1;
    cd_st_file *f = NULL;
    if (cd_st_open(NULL, path, &f) != CD_OK) {
        cli_error("generate", "the embedded CLEAR weights are unreadable");
        return 1;
    }
    const char *r = cd_st_meta(f, "radius"), *d = cd_st_meta(f, "down");
    *radius = r ? strtoll(r, NULL, 10) : 0;
    *down = d ? strtoll(d, NULL, 10) : 0;
    cd_st_close(f);
    if (*radius < 1) {
        cli_error("generate", "the embedded CLEAR weights do not record their radius");
        return 1;
    }
    return 0;
}
