/* generate.h — text-to-image sampling (spec/flux.md section 5), library-private: Gaussian noise
 * from a seed in the latent layout [z, h, w] (cd_noise_normal), packed to tokens, `steps` Euler
 * steps of the FLUX transformer over the flow-matching schedule, unpacked and decoded by the
 * autoencoder to 8-bit RGB. The library never prints: progress goes through a callback.
 *
 * Sizes: the image is width x height pixels; the latent is (height / up) x (width / up) with
 * up = cd_ae_upscale(ae) (8 for FLUX), the token grid half that, so width and height must be
 * multiples of 2 * up (16 for FLUX). The result is a pure function of (model, ae, embeddings,
 * size, steps, guidance, seed, attention): the same for any thread count. */
#ifndef CD_GENERATE_H
#define CD_GENERATE_H

#include "cleardit.h"
#include "../model/ae.h"

#include <stdint.h>

/* Called after each step (step = 1..steps) with the seconds since sampling began; and once more
 * with step = steps + 1 after decoding. */
typedef void (*cd_generate_progress_fn)(void *user, int step, int steps, double elapsed_s);

typedef struct {
    const float *txt;      /* [T, context_dim] */
    int32_t T;             /* >= 0 */
    const float *pooled;   /* [pooled_dim] */
    int32_t width, height; /* pixels, multiples of 2 * cd_ae_upscale(ae) */
    int32_t steps;         /* >= 1 */
    float guidance;        /* guidance-embedded models only (ignored otherwise) */
    uint64_t seed;
    int32_t radius, down;  /* 0 = dense; CLEAR radius; pooled factor */
    int32_t shift;         /* -1: auto (on for guidance models, off otherwise); 0 off; 1 on */
    cd_generate_progress_fn progress;  /* may be NULL */
    void *user;
} cd_generate_params;

/* Checks p against the model and autoencoder without computing anything (sizes, channel counts,
 * steps, attention). CD_ERR_INVALID_ARG / CD_ERR_SHAPE with a message in ctx. */
cd_status cd_generate_check(cd_ctx *ctx, const cd_flux_model *m, const cd_ae_decoder *ae,
                            const cd_generate_params *p);

/* Runs the whole pipeline; rgb: [height, width, 3] (caller-allocated). */
cd_status cd_generate(cd_ctx *ctx, cd_flux_model *m, const cd_ae_decoder *ae,
                      const cd_generate_params *p, uint8_t *rgb);

#endif
