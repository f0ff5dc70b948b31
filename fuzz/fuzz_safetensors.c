/* fuzz_safetensors.c — libFuzzer target for the safetensors reader and checkpoint indexes.
 *
 *   make fuzz-run FUZZ_SECONDS=60     # builds build-fuzz/fuzz_safetensors (clang, ASan, UBSan)
 *                                     # and runs it on a copy of fuzz/corpus/
 *
 * Every input is tried twice:
 *  1. as a .safetensors file (in a memfd, opened through /proc/self/fd/N): cd_st_open, then every
 *     tensor is looked up by name and the small ones (<= 64K elements) are converted to f32 and
 *     bf16 — a reader that accepted a bad header would read out of the map here;
 *  2. as a *.safetensors.index.json next to two valid shards (a.safetensors: x F32 [2], y BF16 [3];
 *     b.safetensors: z F16 [1]) written at start-up: cd_ckpt_open and a walk over the set.
 * Rejections are expected; the sanitizers, not return codes, decide what a bug is.
 *
 * This is a test harness, not library code: the fuzzer's process-wide state lives in globals. */
#include "cleardit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static cd_ctx *g_ctx;
static int g_memfd = -1;
static char g_memfd_path[64];
static char g_dir[64];
static char g_index[128];

static void remove_dir(void) {
    char p[192];
    const char *names[] = {"a.safetensors", "b.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
}

static void die(const char *what) {
    fprintf(stderr, "fuzz_safetensors: setup failed: %s: %s\n", what, cd_ctx_error(g_ctx));
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (cd_ctx_create(NULL, &g_ctx) != CD_OK) die("cd_ctx_create");
    g_memfd = memfd_create("fuzz_st", MFD_CLOEXEC);
    if (g_memfd < 0) die("memfd_create");
    snprintf(g_memfd_path, sizeof g_memfd_path, "/proc/self/fd/%d", g_memfd);

    struct stat st;
    snprintf(g_dir, sizeof g_dir, "%s/cd_fuzz_XXXXXX",
             stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g_dir)) die("mkdtemp");
    atexit(remove_dir);
    snprintf(g_index, sizeof g_index, "%s/model.safetensors.index.json", g_dir);
    char p[192];
    float x[2] = {1.5f, -2.0f};
    uint16_t y[3] = {0x3f80, 0x7fc0, 0x0001}, z[1] = {0x3c00};
    cd_st_out a[2] = {{"x", CD_DTYPE_F32, 1, {2}, x}, {"y", CD_DTYPE_BF16, 1, {3}, y}};
    cd_st_out b[1] = {{"z", CD_DTYPE_F16, 1, {1}, z}};
    snprintf(p, sizeof p, "%s/a.safetensors", g_dir);
    if (cd_st_write(g_ctx, p, a, 2, NULL, 0) != CD_OK) die("write a.safetensors");
    snprintf(p, sizeof p, "%s/b.safetensors", g_dir);
    if (cd_st_write(g_ctx, p, b, 1, NULL, 0) != CD_OK) die("write b.safetensors");
    return 0;
}

static int put(int fd, const uint8_t *data, size_t size) {
    if (ftruncate(fd, 0) != 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t k = pwrite(fd, data + off, size - off, (off_t)off);
        if (k <= 0) return 0;
        off += (size_t)k;
    }
    return 1;
}

/* Reads every byte of a tensor the way a consumer would (small ones only). */
static void touch(const cd_st_tensor *t) {
    const uint64_t n = cd_st_numel(t);
    if (n > (1u << 16)) return;
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    uint16_t *b = malloc((size_t)(n ? n : 1) * sizeof *b);
    if (f && b) {
        (void)cd_st_to_f32(g_ctx, t, f);
        (void)cd_st_to_bf16(g_ctx, t, b);
    }
    volatile uint8_t sink = 0;
    const uint8_t *raw = t->data;
    for (uint64_t i = 0; i < t->nbytes && i < (1u << 18); i++) sink ^= raw[i];
    (void)sink;
    free(f);
    free(b);
}

static void fuzz_file(const uint8_t *data, size_t size) {
    if (!put(g_memfd, data, size)) return;
    cd_st_file *f = NULL;
    if (cd_st_open(g_ctx, g_memfd_path, &f) != CD_OK) return;
    for (size_t i = 0; i < cd_st_count(f); i++) {
        const cd_st_tensor *t = cd_st_at(f, i);
        if (cd_st_find(f, t->name) != t) abort(); /* names are unique: find must agree with at */
        touch(t);
    }
    (void)cd_st_meta(f, "format");
    cd_st_close(f);
}

static void fuzz_index(const uint8_t *data, size_t size) {
    FILE *fp = fopen(g_index, "wb");
    if (!fp) return;
    size_t w = size ? fwrite(data, 1, size, fp) : 0;
    if (fclose(fp) != 0 || w != size) return;
    cd_ckpt *c = NULL;
    if (cd_ckpt_open(g_ctx, g_index, &c) != CD_OK) return;
    for (size_t i = 0; i < cd_ckpt_count(c); i++) {
        const cd_st_tensor *t = cd_ckpt_at(c, i);
        if (cd_ckpt_find(c, t->name) != t) abort();
        touch(t);
    }
    for (size_t i = 0; i < cd_ckpt_files(c); i++) (void)cd_ckpt_file(c, i);
    (void)cd_ckpt_prefix(c);
    (void)cd_ckpt_meta(c, "format");
    cd_ckpt_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file(data, size);
    fuzz_index(data, size);
    return 0;
}
