/* ckpt_open.c — how long cd_ckpt_open takes on a multi-GB checkpoint and how much resident
 * memory it costs: evidence that opening reads headers only (no tensor data).
 *
 *   make bench-ckpt                     # 4 GB and 40 GB
 *   build/bench_ckpt_open 4 40 100      # sizes in GB
 *
 * For each size it writes a SPARSE file under $TMPDIR (default /tmp): a valid header describing
 * BF16 [9216, 3072] tensors (FLUX's double-block MLP shape, 56.6 MB each) with FLUX/ComfyUI names,
 * extended with ftruncate, so it costs no disk space. It then opens and closes the checkpoint 5
 * times (the header is in the page cache: this times parsing and validation, not a cold disk)
 * and prints the median and minimum open time and the growth of the resident set over the open
 * (/proc/self/statm). The file is deleted afterwards. Not a test: tests do not time things. */
#include "cleardit.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, res = 0;
    int ok = fscanf(f, "%llu %llu", &size, &res) == 2;
    fclose(f);
    return ok ? res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Header for n tensors + ftruncate to the full size; returns the header length (0 on error). */
static size_t write_sparse(const char *path, int n, uint64_t *file_size) {
    const int64_t rows = 9216, cols = 3072;
    const uint64_t nb = (uint64_t)rows * cols * 2;
    size_t cap = (size_t)n * 200 + 64, len = 0;
    char *h = malloc(cap);
    if (!h) return 0;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(h + len, cap - len,
                                ",\"model.diffusion_model.double_blocks.%d.img_mlp.%d.weight\":"
                                "{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                i / 2, i % 2, (long long)rows, (long long)cols, (unsigned long long)(nb * (uint64_t)i),
                                (unsigned long long)(nb * (uint64_t)(i + 1)));
    len += (size_t)snprintf(h + len, cap - len, "}");
    *file_size = 8 + len + nb * (uint64_t)n;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fd >= 0 && write(fd, len8, 8) == 8 && write(fd, h, len) == (ssize_t)len &&
             ftruncate(fd, (off_t)*file_size) == 0;
    if (fd >= 0) ok = close(fd) == 0 && ok;
    free(h);
    return ok ? len : 0;
}

int main(int argc, char **argv) {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    double sizes[16] = {4, 40};
    int n_sizes = argc > 1 ? 0 : 2;
    for (int i = 1; i < argc && n_sizes < 16; i++) sizes[n_sizes++] = atof(argv[i]);
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) return 1;
    printf("%10s %8s %10s %12s %12s %14s\n", "file GB", "tensors", "header KB", "open ms med", "open ms min",
           "RSS growth KB");
    int rc = 0;
    for (int s = 0; s < n_sizes; s++) {
        char path[512];
        snprintf(path, sizeof path, "%s/cd_bench_ckpt_%d.safetensors", tmp, (int)getpid());
        const int n = (int)(sizes[s] * 1e9 / (9216.0 * 3072 * 2) + 0.5);
        uint64_t fsize = 0;
        size_t hlen = write_sparse(path, n > 0 ? n : 1, &fsize);
        if (!hlen) {
            fprintf(stderr, "bench_ckpt_open: cannot write %s\n", path);
            unlink(path);
            rc = 1;
            continue;
        }
        double t[5];
        uint64_t grow = 0;
        for (int r = 0; r < 5; r++) {
            cd_ckpt *c;
            const uint64_t r0 = rss_bytes();
            const double t0 = now_s();
            cd_status st = cd_ckpt_open(ctx, path, &c);
            t[r] = (now_s() - t0) * 1e3;
            const uint64_t r1 = rss_bytes();
            if (st != CD_OK) {
                fprintf(stderr, "bench_ckpt_open: %s\n", cd_ctx_error(ctx));
                rc = 1;
                break;
            }
            if (r1 > r0 && r1 - r0 > grow) grow = r1 - r0;
            cd_ckpt_close(c);
        }
        unlink(path);
        if (rc) break;
        qsort(t, 5, sizeof t[0], cmp_double);
        printf("%10.1f %8d %10.1f %12.2f %12.2f %14llu\n", (double)fsize / 1e9, n, hlen / 1024.0, t[2], t[0],
               (unsigned long long)(grow >> 10));
    }
    cd_ctx_free(ctx);
    return rc;
}
