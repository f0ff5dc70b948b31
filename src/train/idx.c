/* idx.c — IDX reader (gzip through zlib) and the Fashion-MNIST files (idx.h). */
#include "idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define IDX_MAX_BYTES (1ull << 32)

cd_status cd_idx_read(cd_ctx *ctx, const char *path, uint8_t **data, uint32_t dims[4], int *ndim) {
    *data = NULL;
    *ndim = 0;
    gzFile f = gzopen(path, "rb"); /* reads plain files too */
    if (!f)
        return cd_set_error(ctx, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO, "%s: %s", path,
                            strerror(errno ? errno : EIO));
    unsigned char h[4];
    cd_status st = CD_OK;
    if (gzread(f, h, 4) != 4 || h[0] || h[1] || h[2] != 0x08 || h[3] < 1 || h[3] > 4) {
        st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: not an unsigned-byte IDX file", path);
        goto done;
    }
    *ndim = h[3];
    uint64_t total = 1;
    for (int i = 0; i < *ndim; i++) {
        unsigned char b[4];
        if (gzread(f, b, 4) != 4) {
            st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: truncated IDX header", path);
            goto done;
        }
        dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        total *= dims[i];
        if (!dims[i] || total > IDX_MAX_BYTES) {
            st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: IDX size %u in dimension %d is invalid", path, dims[i], i);
            goto done;
        }
    }
    *data = malloc((size_t)total);
    if (!*data) {
        st = cd_set_error(ctx, CD_ERR_OOM, "%s: out of memory for %llu bytes", path, (unsigned long long)total);
        goto done;
    }
    for (uint64_t got = 0; got < total;) {
        const unsigned want = (unsigned)(total - got > (1u << 30) ? (1u << 30) : total - got);
        const int r = gzread(f, *data + got, want);
        if (r <= 0) {
            st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: truncated IDX data (%llu of %llu bytes)", path,
                              (unsigned long long)got, (unsigned long long)total);
            goto done;
        }
        got += (uint64_t)r;
    }
done:
    gzclose(f);
    if (st) {
        free(*data);
        *data = NULL;
    }
    return st;
}

/* dir/name, with ".gz" appended when only the compressed file exists. */
static void pick(const char *dir, const char *name, char *out, size_t n) {
    snprintf(out, n, "%s/%s.gz", dir, name);
    FILE *f = fopen(out, "rb");
    if (f) {
        fclose(f);
        return;
    }
    snprintf(out, n, "%s/%s", dir, name);
}

cd_status cd_fmnist_load(cd_ctx *ctx, const char *dir, const char *split, cd_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!dir) dir = CD_FMNIST_DIR;
    char ip[4096], lp[4096], in[64], ln[64];
    snprintf(in, sizeof in, "%s-images-idx3-ubyte", split);
    snprintf(ln, sizeof ln, "%s-labels-idx1-ubyte", split);
    pick(dir, in, ip, sizeof ip);
    pick(dir, ln, lp, sizeof lp);
    uint32_t di[4], dl[4];
    int ni, nl;
    cd_status st = cd_idx_read(ctx, ip, &out->images, di, &ni);
    if (st == CD_OK) st = cd_idx_read(ctx, lp, &out->labels, dl, &nl);
    if (st == CD_ERR_NOT_FOUND) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cd_ctx_error(ctx));
        cd_dataset_free(out);
        return cd_set_error(ctx, CD_ERR_NOT_FOUND,
                            "Fashion-MNIST not found (%s); install the Debian package %s "
                            "(apt-get install %s) or pass its directory",
                            msg, CD_FMNIST_PACKAGE, CD_FMNIST_PACKAGE);
    }
    if (st == CD_OK && (ni != 3 || nl != 1 || di[0] != dl[0]))
        st = cd_set_error(ctx, CD_ERR_FORMAT,
                          "%s, %s: expected images [n, rows, cols] and labels [n] (got %d and %d "
                          "dimensions, %u vs %u items)",
                          ip, lp, ni, nl, di[0], nl == 1 ? dl[0] : 0);
    for (uint32_t i = 0; st == CD_OK && i < di[0]; i++)
        if (out->labels[i] >= CD_FMNIST_CLASSES)
            st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: label %u of item %u is not a class 0..9", lp, out->labels[i], i);
    if (st) {
        cd_dataset_free(out);
        return st;
    }
    out->n = di[0];
    out->rows = di[1];
    out->cols = di[2];
    return CD_OK;
}

void cd_dataset_free(cd_dataset *d) {
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

static const char *const k_names[CD_FMNIST_CLASSES] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                                       "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};

const char *cd_fmnist_class_name(int c) { return c >= 0 && c < CD_FMNIST_CLASSES ? k_names[c] : NULL; }

int cd_fmnist_class_of(const char *prompt) {
    if (!prompt) return -1;
    for (int c = 0; c < CD_FMNIST_CLASSES; c++)
        if (!strcasecmp(prompt, k_names[c])) return c;
    if (!strcasecmp(prompt, "t-shirt/top") || !strcasecmp(prompt, "tshirt") || !strcasecmp(prompt, "top")) return 0;
    if (!strcasecmp(prompt, "ankle-boot") || !strcasecmp(prompt, "boot")) return 9;
    return -1;
}
