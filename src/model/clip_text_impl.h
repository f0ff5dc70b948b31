/* clip_text_impl.h — the CLIP text model's struct, shared by its binding (clip_text_load.c) and
 * its forward (clip_text.c); nothing else includes it. */
#ifndef CD_CLIP_TEXT_IMPL_H
#define CD_CLIP_TEXT_IMPL_H

#include "clip_text.h"

/* One encoder layer. LayerNorms are kept as ln_modulate's (shift, scale) = (bias, weight - 1). */
typedef struct {
    cd_weight q, k, v, o;                         /* [H, H] */
    cd_weight fc1;                                /* [I, H] */
    cd_weight fc2;                                /* [H, I] */
    const float *qb, *kb, *vb, *ob, *fc1b, *fc2b; /* [H] x4, [I], [H] */
    const float *ln1_s, *ln1_b, *ln2_s, *ln2_b;   /* [H]: weight - 1, bias */
} cd_clip_layer;

struct cd_clip_text {
    cd_clip_config cfg;
    cd_st_tensor tok;           /* token_embedding [V, H] (the mapped tensor, or the random arena's) */
    const float *pos;           /* position_embedding [max_pos, H] f32 */
    cd_clip_layer *lay;         /* [layers] */
    const float *lnf_s, *lnf_b; /* final LayerNorm [H]: weight - 1, bias */
    cd_ckpt *ck;                /* the open checkpoint the weights point into (NULL: random weights) */
    void *arena;                /* f32 parameters, the layer array, and (random) the weights themselves */
    char desc[320];
};

#endif
