/* distill.h — CLEAR distillation (docs/distillation.md) with the training engine, library-private.
 *
 * 1. The self-distillation set: the teacher (dense attention) samples `samples` images from its
 *    own prompt table (class i mod K, seed + i; Euler over the model's schedule), kept as the final
 *    packed latents x0 [n, L, C] with their conditioning, cached in a safetensors file (reused when
 *    its metadata matches).
 * 2. The student starts as the teacher with every attention layer switched to CLEAR (radius, and
 *    pooled keys of side `down` with spatial weights 1/d^2) and trains only the CLEAR subset
 *    (image-stream q, k, v, out of double blocks, q, k, v of single blocks, spatial weights) with
 *        loss = MSE(v_s, n - x0) + 0.5 MSE(v_s, v_t) + 0.5 mean_l MSE(attn_s,l, attn_t,l)
 *    (t ~ U(0, 1), x_t = (1 - t) x0 + t n; l over the single-stream layers with index divisible by
 *    4, as the reference) or, with distill_terms = 0, the flow-matching term alone.
 * 3. The result is a CLEAR weights file in the released format (diffusers names of that subset),
 *    which `generate --clear-weights` (and cd_flux_load) reads.
 *
 * Only models with a built-in prompt table (metadata "cleardit_prompts", the pixel-space models
 * `cleardit train` makes) can make their own set; other models need one supplied in the cache
 * format. */
#ifndef CD_DISTILL_H
#define CD_DISTILL_H

#include "train.h"

typedef struct {
    const char *teacher;  /* model path */
    const char *cache;    /* self-distillation set file (made when missing) */
    int64_t samples;      /* size of the set */
    int32_t sample_steps; /* the teacher's Euler steps per sample */
    int32_t radius, down;
    int distill_terms; /* 1: + output and attention distillation (the paper); 0: flow matching only */
} cd_distill_params;

cd_status cd_distill(cd_ctx *ctx, const cd_distill_params *dp, const cd_train_params *p);

#endif
