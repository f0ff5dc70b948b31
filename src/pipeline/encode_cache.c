/* encode_cache.c — the embedding cache (cd_encoder_encode_cached): the same prompt through the same
 * encoder files never runs T5 twice. A file DIR/<hash>.safetensors holds txt [L, D] and pooled [P]
 * (f32) in the --prompt-embeds format, with the whole key (cd_encoder_identity, L, prompt) in its
 * metadata: a hash collision or an edited file of another key is a miss, never wrong embeddings. */
#include "encode_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEY_META "cleardit_encode_key"

/* FNV-1a over the key with two offsets: 128 bits of name, printed as 32 hex digits. */
static void key_hash(const char *key, char hex[33]) {
    uint64_t h[2] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        for (int i = 0; i < 2; i++) h[i] = (h[i] ^ *p) * 0x100000001b3ull;
    snprintf(hex, 33, "%016llx%016llx", (unsigned long long)cd_mix64(h[0]), (unsigned long long)cd_mix64(h[1]));
}

static char *make_key(const cd_encoder *e, const char *prompt, int32_t L) {
    const size_t n = strlen(e->identity) + strlen(prompt) + 64;
    char *k = malloc(n);
    if (k) snprintf(k, n, "%s\nmax_length=%d\nprompt=%s", e->identity, (int)L, prompt);
    return k;
}

/* 1: hit (txt, pooled filled); 0: miss; -1: error (in ctx). */
static int cache_read(cd_ctx *ctx, const char *path, const char *key, int32_t L, int32_t D, int32_t P, float *txt,
                      float *pooled, cd_encode_info *info) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    cd_st_file *f = NULL;
    if (cd_st_open(ctx, path, &f) != CD_OK) return -1;
    const char *k = cd_st_meta(f, KEY_META);
    const cd_st_tensor *t = cd_st_find(f, "txt"), *p = cd_st_find(f, "pooled");
    int r = 0;
    if (k && strcmp(k, key) == 0 && t && p && t->dtype == CD_DTYPE_F32 && p->dtype == CD_DTYPE_F32 && t->ndim == 2 &&
        t->shape[0] == L && t->shape[1] == D && p->ndim == 1 && p->shape[0] == P)
        r = cd_st_to_f32(ctx, t, txt) == CD_OK && cd_st_to_f32(ctx, p, pooled) == CD_OK ? 1 : -1;
    const char *td = cd_st_meta(f, "t5_dropped"), *cdr = cd_st_meta(f, "clip_dropped");
    if (r == 1 && info) { /* the truncation warnings hold on a hit too */
        info->t5_dropped = td ? (int32_t)strtol(td, NULL, 10) : 0;
        info->clip_dropped = cdr ? (int32_t)strtol(cdr, NULL, 10) : 0;
    }
    cd_st_close(f);
    return r;
}

cd_status cd_encoder_encode_cached(cd_ctx *ctx, cd_encoder *e, const char *cache_dir, const char *prompt, int32_t L,
                                   float *txt, float *pooled, cd_encode_info *info, int *hit) {
    if (hit) *hit = 0;
    if (!cache_dir) return cd_encoder_encode(ctx, e, prompt, L, txt, pooled, info);
    if (!e || !prompt || !txt || !pooled)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "encode: encoder, prompt, txt and pooled are required");
    if (mkdir(cache_dir, 0777) != 0 && errno != EEXIST)
        return cd_set_error(ctx, CD_ERR_IO, "embedding cache: cannot create %s: %s", cache_dir, strerror(errno));
    char *key = make_key(e, prompt, L);
    const size_t pn = strlen(cache_dir) + 64;
    char *path = malloc(pn);
    if (!key || !path) {
        free(key);
        free(path);
        return cd_set_error(ctx, CD_ERR_OOM, "embedding cache: out of memory");
    }
    char hex[33];
    key_hash(key, hex);
    snprintf(path, pn, "%s/%s.safetensors", cache_dir, hex);
    const int32_t D = cd_encoder_txt_dim(e), P = cd_encoder_pooled_dim(e);
    cd_status s = CD_OK;
    cd_encode_info local = {0};
    if (!info) info = &local;
    const int r = cache_read(ctx, path, key, L, D, P, txt, pooled, info);
    if (r < 0) {
        s = cd_set_error(ctx, CD_ERR_FORMAT, "embedding cache: %s is unreadable (%s): delete it", path,
                         cd_ctx_error(ctx));
    } else if (r == 1) {
        if (hit) *hit = 1;
    } else if (!(s = cd_encoder_encode(ctx, e, prompt, L, txt, pooled, info))) {
        const cd_st_out outs[2] = {{"txt", CD_DTYPE_F32, 2, {L, D}, txt}, {"pooled", CD_DTYPE_F32, 1, {P}, pooled}};
        char lbuf[16], tbuf[16], cbuf[16];
        snprintf(lbuf, sizeof lbuf, "%d", (int)L);
        snprintf(tbuf, sizeof tbuf, "%d", (int)info->t5_dropped);
        snprintf(cbuf, sizeof cbuf, "%d", (int)info->clip_dropped);
        const char *meta[] = {KEY_META,   key,         "prompt",     prompt, "max_length",   lbuf,
                              "encoders", e->describe, "t5_dropped", tbuf,   "clip_dropped", cbuf};
        s = cd_st_write(ctx, path, outs, 2, meta, 6);
    }
    free(key);
    free(path);
    return s;
}
