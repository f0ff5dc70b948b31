/* cli_default_model.c — hands the embedded default model (default_model.S) to the library as a
 * file: an anonymous memory file (memfd), so nothing is written to disk and the binary works
 * wherever it is copied. */
#include "cli_common.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

extern const unsigned char cd_default_model_start[], cd_default_model_end[];

int cli_default_model(char *path, size_t n) {
    const size_t len = (size_t)(cd_default_model_end - cd_default_model_start);
    if (!len) {
        cli_error("generate", "this build has no default model (models/fmnist.safetensors was missing at build "
                              "time): pass --model");
        return 1;
    }
    const int fd = memfd_create("cleardit-default-model", MFD_CLOEXEC);
    if (fd < 0) {
        cli_error("generate", "cannot create a memory file for the default model");
        return 1;
    }
    for (size_t done = 0; done < len;) {
        const ssize_t w = write(fd, cd_default_model_start + done, len - done);
        if (w <= 0) {
            cli_error("generate", "cannot stage the default model");
            close(fd);
            return 1;
        }
        done += (size_t)w;
    }
    snprintf(path, n, "/proc/self/fd/%d", fd); /* stays open: the model maps it */
    return 0;
}
