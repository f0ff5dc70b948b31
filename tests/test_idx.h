/* test_idx.h — small Fashion-MNIST-style data sets for the training and eval tests: gzip'd IDX
 * files (the layout src/train/idx.c reads) written from bytes made by the test. Header-only. */
#ifndef CD_TEST_IDX_H
#define CD_TEST_IDX_H

#include <stdint.h>
#include <stdio.h>
#include <zlib.h>

/* One IDX file of unsigned bytes: magic 0 0 8 ndim, big-endian dims, then n data bytes. */
static inline int write_idx(const char *path, const uint8_t *data, const uint32_t *dims, int ndim, size_t n) {
    gzFile f = gzopen(path, "wb");
    if (!f) return 0;
    unsigned char h[4] = {0, 0, 8, (unsigned char)ndim};
    int ok = gzwrite(f, h, 4) == 4;
    for (int i = 0; i < ndim; i++) {
        unsigned char b[4] = {(unsigned char)(dims[i] >> 24), (unsigned char)(dims[i] >> 16),
                              (unsigned char)(dims[i] >> 8), (unsigned char)dims[i]};
        ok = ok && gzwrite(f, b, 4) == 4;
    }
    ok = ok && gzwrite(f, data, (unsigned)n) == (int)n;
    return gzclose(f) == Z_OK && ok;
}

/* The split's pair as Fashion-MNIST names it: dir/<split>-images-idx3-ubyte.gz with n 28x28
 * images and dir/<split>-labels-idx1-ubyte.gz with their n labels. */
static inline int write_idx_split(const char *dir, const char *split, const uint8_t *img, const uint8_t *lab,
                                  uint32_t n) {
    char p[512];
    const uint32_t di[3] = {n, 28, 28}, dl[1] = {n};
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, split);
    int ok = write_idx(p, img, di, 3, (size_t)n * 784);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    return ok && write_idx(p, lab, dl, 1, n);
}

#endif
