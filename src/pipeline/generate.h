/* generate.h — sampling (docs/flux.md section 5), library-private.
 *
 * Text-to-image: Gaussian noise from a seed in the latent layout [z, h, w] (cd_noise_normal),
 * packed to tokens, `steps` Euler steps of the FLUX transformer over the flow-matching schedule,
 * unpacked and decoded by the autoencoder to 8-bit RGB.
 *
 * Image-to-image (SDEdit; also the paper's high-resolution path, where the init image is a
 * smaller generation upscaled to the target size): the init image is encoded (the latent's mode),
 * the schedule is cut at start = cd_img2img_start(steps, strength), the latent becomes
 * t[start] * noise + (1 - t[start]) * encoded, and steps start..steps-1 run. This is diffusers'
 * FluxImg2ImgPipeline (with the latent's mode instead of a sample).
 *
 * The CLEAR reference high-resolution extras: NTK RoPE (theta * rope_ntk), proportional attention
 * (cd_flux_proportional_scale) and a static schedule shift (time_shift; the dynamic rule
 * extrapolates to near-1 timesteps at 8K).
 *
 * Sizes: width x height pixels; the latent is (height / up) x (width / up) with up =
 * cd_ae_upscale(ae) (8 for FLUX), the token grid half that: width and height are multiples of
 * 2 * up (16 for FLUX). The result is a pure function of the inputs: the same for any thread
 * count. The library never prints: progress goes through a callback. */
#ifndef CD_GENERATE_H
#define CD_GENERATE_H

#include "cleardit.h"
#include "../model/ae.h"

#include <stdint.h>

/* After each Euler step (step = 1..steps run, which is fewer than the schedule's for img2img)
 * with the seconds since sampling began; once more with step = steps + 1 after decoding. */
typedef void (*cd_generate_progress_fn)(void *user, int step, int steps, double elapsed_s);

typedef struct {
    const float *txt;      /* [T, context_dim] */
    int32_t T;             /* >= 0 */
    const float *pooled;   /* [pooled_dim] */
    int32_t width, height; /* pixels, multiples of 2 * cd_ae_upscale(ae) */
    int32_t steps;         /* >= 1: the schedule's length */
    float guidance;        /* guidance-embedded models only (ignored otherwise) */
    uint64_t seed;
    int32_t radius, down; /* 0 = dense; CLEAR radius; pooled factor */
    int32_t shift;        /* -1: auto (on for guidance models, off otherwise); 0 off; 1 on */
    double time_shift;    /* > 0: static shift factor instead of `shift` (cd_flux_schedule_static) */
    /* image-to-image: enc and init both set, or both NULL */
    const cd_ae_encoder *enc;
    const float *init; /* [3, height, width] in [-1, 1] */
    double strength;   /* (0, 1] */
    /* high-resolution extras (0 = off) */
    double rope_ntk;      /* RoPE theta multiplier */
    int32_t proportional; /* proportional attention scale */
    /* autoencoder tiling (cd_ae_decode_tiled / cd_ae_encode_tiled: diffusers' tiled_decode and
     * tiled_encode, used when the image exceeds the tile): side in pixels (0 = never), overlap
     * fraction (0 = 0.25) */
    int32_t ae_tile;
    float ae_overlap;
    /* for parity tests: optional noise [z, h/up, w/up] replacing the seeded draw, and an optional
     * copy of the decoded image [3, height, width] f32 (before the 8-bit conversion) */
    const float *noise;
    float *image;
    float *latent;                    /* optional [z, h/up, w/up]: the final latent (before decoding) */
    cd_generate_progress_fn progress; /* may be NULL */
    void *user;
    const int *cancel; /* optional: nonzero after a progress call stops with CD_ERR_CANCELLED */
} cd_generate_params;

/* Checks p against the model and autoencoder(s) without computing anything (sizes, channel
 * counts, steps, strength, attention). CD_ERR_INVALID_ARG / CD_ERR_SHAPE with a message in ctx. */
cd_status cd_generate_check(cd_ctx *ctx, const cd_flux_model *m, const cd_ae_decoder *ae, const cd_generate_params *p);

/* The number of Euler steps p runs (steps, or fewer for img2img); -1 if p's strength is bad. */
int cd_generate_steps_run(const cd_generate_params *p);

/* Runs the whole pipeline; rgb: [height, width, 3] (caller-allocated; may be NULL when p->image
 * or p->latent is set; with neither rgb nor image the decoder does not run). ae == NULL: a
 * pixel-space model (in_channels 4 or 12: 2x2 patches of grey or RGB pixels; grey is replicated
 * to RGB); image-to-image needs an autoencoder. */
cd_status cd_generate(cd_ctx *ctx, cd_flux_model *m, const cd_ae_decoder *ae, const cd_generate_params *p,
                      uint8_t *rgb);

#endif
