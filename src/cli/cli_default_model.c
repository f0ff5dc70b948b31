/* cli_default_model.c — the embedded default model (the library carries it: cd_embedded_open) as
 * a path, for the commands that take a model path (distill). */
#include "cleardit.h"
#include "cli_common.h"

#include <stdio.h>

int cli_default_model(char *path, size_t n) {
    if (!cd_embedded_available(CD_EMBEDDED_MODEL)) {
        cli_error("generate", "this build has no default model (models/fmnist.safetensors was missing at build "
                              "time): pass --model");
        return 1;
    }
    int fd; /* stays open: the library maps the file */
    if (cd_embedded_open(NULL, CD_EMBEDDED_MODEL, path, n, &fd) != CD_OK) {
        cli_error("generate", "cannot stage the default model");
        return 1;
    }
    return 0;
}
