/* t5_internal.h — the bound T5 encoder, shared by its loader (t5_load.c) and forward (t5.c). */
#ifndef CD_T5_INTERNAL_H
#define CD_T5_INTERNAL_H

#include "t5.h"

/* A linear without bias; y = scale * (x . W^T) (scale != 1 only for ComfyUI's scaled fp8). */
typedef struct {
    cd_weight w; /* [out, in], in the mapped file (or the random block) */
    float scale;
} cd_t5_lin;

typedef struct {
    cd_t5_lin q, k, v, o;         /* [I, D] x3, [D, I] */
    cd_t5_lin wi0, wi1, wo;       /* [F, D] x2, [D, F] */
    const float *ln_attn, *ln_ff; /* [D] f32 */
} cd_t5_block;

struct cd_t5 {
    cd_t5_config cfg;
    cd_ckpt *ckpt;             /* the mapped checkpoint (NULL for cd_t5_random) */
    const cd_st_tensor *embed; /* [vocab, D] any readable dtype; NULL: random rows (embed_seed) */
    uint64_t embed_seed;
    const float *rel_bias; /* [buckets, NH] f32 (block 0's, shared by all layers) */
    const float *ln_final; /* [D] f32 */
    cd_t5_block *blocks;   /* [layers] */
    void *mem;             /* one allocation: blocks, the f32 vectors (and the random weights) */
    int scaled;            /* 1: ComfyUI scaled fp8 */
    char desc[256];
};

/* Random weights (cd_t5_random): element i of stream `seed`, uniform in [-a, a], never 0. */
static inline float cd_t5_rnd(uint64_t seed, uint64_t i, float a) {
    const uint64_t h = cd_mix64(seed ^ cd_mix64(i + 0x9e3779b97f4a7c15ull));
    const float u = (float)((double)(h >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
    return u == 0.0f ? a * 0.5f : a * u;
}

#endif
