/* idx.h — IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed, and the
 * Fashion-MNIST dataset as Debian's dataset-fashion-mnist installs it. Library-private.
 *
 * IDX: magic 0x00 0x00 type ndim, ndim big-endian uint32 sizes, then the data (type 0x08: u8).
 * Every size is checked against the bytes present: a truncated or inconsistent file is
 * CD_ERR_FORMAT, never a short read. */
#ifndef CD_IDX_H
#define CD_IDX_H

#include "../util/internal.h"

#define CD_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define CD_FMNIST_PACKAGE "dataset-fashion-mnist"
#define CD_FMNIST_CLASSES 10

typedef struct {
    uint8_t *images; /* [n, rows, cols] */
    uint8_t *labels; /* [n] in 0..9 */
    uint32_t n, rows, cols;
} cd_dataset;

/* Reads an u8 IDX file (".gz" or not) into *data (malloc'ed) with its dims (at most 4). */
cd_status cd_idx_read(cd_ctx *ctx, const char *path, uint8_t **data, uint32_t dims[4], int *ndim);

/* Fashion-MNIST's train (split = "train") or test ("t10k") split from dir (NULL = CD_FMNIST_DIR):
 * <split>-images-idx3-ubyte[.gz] and <split>-labels-idx1-ubyte[.gz]. A missing directory or file
 * is CD_ERR_NOT_FOUND with a message naming the Debian package. */
cd_status cd_fmnist_load(cd_ctx *ctx, const char *dir, const char *split, cd_dataset *out);
void cd_dataset_free(cd_dataset *d);

/* The class names, as the built-in prompt table: "t-shirt", "trouser", ..., "ankle boot". */
const char *cd_fmnist_class_name(int c);
/* The class of a prompt (case-insensitive, also "t-shirt/top" and "tshirt"), -1 if unknown. */
int cd_fmnist_class_of(const char *prompt);

#endif
