/* fuzz_gguf.c — libFuzzer target for the GGUF reader (src/io/gguf.c).
 *
 *   make fuzz-run FUZZ_SECONDS=60     # builds build-fuzz/fuzz_gguf too and gives each target half
 *
 * Each input is written to a memfd and opened through /proc/self/fd/N with cd_gguf_open. When it
 * is accepted, everything a consumer would touch is touched: every tensor is looked up by name
 * and its bytes read, every key/value is looked up by key and rendered, string arrays are walked
 * with cd_gguf_str_next and the typed getters are called on every key (with right and wrong types).
 * A reader that accepted a bad header would read out of the map here; the sanitizers, not return
 * codes, decide what a bug is. Seeds: fuzz/corpus_gguf/ (fuzz/make_gguf_corpus.py).
 *
 * This is a test harness, not library code: the fuzzer's process-wide state lives in globals. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/io/gguf.h"
#include "cleardit.h"

static cd_ctx *g_ctx;
static int g_memfd = -1;
static char g_memfd_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (cd_ctx_create(NULL, &g_ctx) != CD_OK) abort();
    g_memfd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
    if (g_memfd < 0) abort();
    snprintf(g_memfd_path, sizeof g_memfd_path, "/proc/self/fd/%d", g_memfd);
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

static void touch_kv(const cd_gguf *g, const cd_gguf_kv *kv) {
    char buf[256];
    volatile uint8_t sink = 0;
    cd_gguf_kv_render(kv, buf, sizeof buf);
    cd_gguf_kv_render(kv, buf, 7);
    for (size_t i = 0; i < kv->val_bytes; i++) sink ^= kv->val[i];
    const uint8_t *data;
    uint64_t n;
    if (cd_gguf_get_arr(g_ctx, g, kv->key, CD_GGUF_STR, &data, &n) == CD_OK)
        for (uint64_t i = 0; i < n; i++) {
            const char *s;
            uint64_t len;
            data = cd_gguf_str_next(data, &s, &len);
            if (len) sink ^= (uint8_t)s[len - 1];
        }
    uint32_t u32;
    uint64_t u64;
    double f64;
    int b;
    const char *s;
    (void)cd_gguf_get_u32(g_ctx, g, kv->key, &u32);
    (void)cd_gguf_get_u64(g_ctx, g, kv->key, &u64);
    (void)cd_gguf_get_f64(g_ctx, g, kv->key, &f64);
    (void)cd_gguf_get_bool(g_ctx, g, kv->key, &b);
    if (cd_gguf_get_str(g_ctx, g, kv->key, &s, &u64) == CD_OK && u64) sink ^= (uint8_t)s[u64 - 1];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!put(g_memfd, data, size)) return 0;
    cd_gguf *g = NULL;
    if (cd_gguf_open(g_ctx, g_memfd_path, &g) != CD_OK) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < cd_gguf_n_tensors(g); i++) {
        const cd_gguf_tensor *t = cd_gguf_tensor_at(g, i);
        if (cd_gguf_find(g, t->name) != t) abort(); /* names are unique */
        const uint8_t *p = t->data;
        for (size_t j = 0; j < t->nbytes && j < (1u << 18); j++) sink ^= p[j];
        if (t->nbytes) sink ^= p[t->nbytes - 1];
    }
    for (size_t i = 0; i < cd_gguf_n_kv(g); i++) {
        const cd_gguf_kv *kv = cd_gguf_kv_at(g, i);
        if (cd_gguf_kv_find(g, kv->key) != kv) abort(); /* keys are unique */
        touch_kv(g, kv);
    }
    (void)sink;
    cd_gguf_close(g);
    return 0;
}
