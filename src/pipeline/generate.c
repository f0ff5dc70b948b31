/* generate.c — sampling: [encode init ->] noise -> pack -> Euler over the FLUX schedule ->
 * unpack -> autoencoder decode -> RGB8 (generate.h, docs/flux.md section 5). */
#include "generate.h"
#include "sampler.h"
#include "../util/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cd_generate_steps_run(const cd_generate_params *p) {
    if (!p->init) return p->steps;
    const int start = cd_img2img_start(p->steps, p->strength);
    return start < 0 ? -1 : p->steps - start;
}

cd_status cd_generate_check(cd_ctx *ctx, const cd_flux_model *m, const cd_ae_decoder *ae, const cd_generate_params *p) {
    if (!m || !p) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: model and params are required");
    const cd_flux_config *c = cd_flux_model_config(m);
    const int up = ae ? cd_ae_upscale(ae) : 1, mul = 2 * up;
    if (p->width < mul || p->height < mul || p->width % mul || p->height % mul)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "generate: width and height must be positive multiples of %d (got %dx%d)", mul,
                            (int)p->width, (int)p->height);
    if ((uint64_t)p->width * (uint64_t)p->height > CD_PNG_MAX_PIXELS)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: %dx%d is too many pixels", (int)p->width,
                            (int)p->height);
    if (p->steps < 1 || p->steps > 10000)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: steps must be 1..10000 (got %d)", (int)p->steps);
    if (p->T < 0 || (p->T > 0 && !p->txt) || !p->pooled)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: txt and pooled embeddings are required");
    if (ae && ae->cfg.out_channels != 3)
        return cd_set_error(ctx, CD_ERR_SHAPE, "generate: the autoencoder makes %d channels, not RGB",
                            (int)ae->cfg.out_channels);
    if (ae && (c->in_channels != 4 * ae->cfg.z_channels || c->out_channels != c->in_channels))
        return cd_set_error(ctx, CD_ERR_SHAPE,
                            "generate: the transformer takes %d channels in and %d out, the autoencoder's "
                            "latent packs to %d",
                            (int)c->in_channels, (int)c->out_channels, 4 * (int)ae->cfg.z_channels);
    if (!ae && ((c->in_channels != 4 && c->in_channels != 12) || c->out_channels != c->in_channels))
        return cd_set_error(ctx, CD_ERR_SHAPE,
                            "generate: without an autoencoder the model must work in pixel space (2x2 patches of "
                            "1 or 3 channels: 4 or 12 in and out), not %d in and %d out",
                            (int)c->in_channels, (int)c->out_channels);
    if (p->radius < 0 || p->down < 0 || (p->down > 1 && p->radius < 1))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: bad attention (radius %d, down %d)", (int)p->radius,
                            (int)p->down);
    if (p->down > 1) {
        const int gh = p->height / mul, gw = p->width / mul;
        if (gh % p->down || gw % p->down)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: the %dx%d token grid is not divisible by down %d",
                                gh, gw, (int)p->down);
    }
    if (!(p->time_shift >= 0 && isfinite(p->time_shift)) || !(p->rope_ntk >= 0 && isfinite(p->rope_ntk)))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: time shift and NTK factor must be finite and >= 0");
    if (p->ae_tile < 0 || !(p->ae_overlap >= 0 && p->ae_overlap < 1))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: bad autoencoder tiling (tile %d, overlap %g)",
                            (int)p->ae_tile, (double)p->ae_overlap);
    const cd_ae_tiling tiling = {p->ae_tile, p->ae_overlap};
    if (ae && cd_ae_tiling_check(ctx, &tiling, up)) return CD_ERR_INVALID_ARG;
    if (!p->init != !p->enc)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: img2img needs both the init image and the encoder");
    if (p->init) {
        if (!(p->strength > 0 && p->strength <= 1))
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: strength must be in (0, 1] (got %g)", p->strength);
        if (cd_generate_steps_run(p) < 1)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                "generate: strength %g leaves no step of %d (raise --strength or --steps)", p->strength,
                                (int)p->steps);
        if (!ae) return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "generate: image-to-image needs an autoencoder model");
        const cd_ae_config *ec = &p->enc->cfg;
        if (ec->z_channels != ae->cfg.z_channels || ec->in_channels != 3 || cd_ae_downscale(p->enc) != up)
            return cd_set_error(ctx, CD_ERR_SHAPE,
                                "generate: the encoder (%d channels in, %d latent channels, /%d) does not match "
                                "the decoder (%d latent channels, x%d) for RGB images",
                                (int)ec->in_channels, (int)ec->z_channels, cd_ae_downscale(p->enc),
                                (int)ae->cfg.z_channels, up);
    }
    return CD_OK;
}

cd_status cd_generate(cd_ctx *ctx, cd_flux_model *m, const cd_ae_decoder *ae, const cd_generate_params *p,
                      uint8_t *rgb) {
    cd_status st = cd_generate_check(ctx, m, ae, p);
    if (st != CD_OK) return st;
    if (!rgb && !p->image && !p->latent) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: no output buffer");
    const cd_flux_config *c = cd_flux_model_config(m);
    const int up = ae ? cd_ae_upscale(ae) : 1;
    const size_t zc = ae ? (size_t)ae->cfg.z_channels : (size_t)c->in_channels / 4;
    const size_t lh = (size_t)(p->height / up), lw = (size_t)(p->width / up);
    const size_t gh = lh / 2, gw = lw / 2, L = gh * gw, T = (size_t)p->T;
    const size_t n = zc * lh * lw; /* = L * in_channels */
    const int shift = p->shift < 0 ? (c->guidance != 0) : p->shift != 0;
    const int start = p->init ? cd_img2img_start(p->steps, p->strength) : 0;
    const int down = p->down > 1 ? p->down : 0;
    const float scale = p->proportional ? cd_flux_proportional_scale(c->head_dim, T, L, down) : 0.0f;
    const cd_ae_tiling tiling = {p->ae_tile, p->ae_overlap};
    float *sched = malloc(((size_t)p->steps + 1) * sizeof(float));
    float *lat = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
    float *iid = malloc(L * 3 * sizeof(float)), *tid = malloc((T ? T : 1) * 3 * sizeof(float));
    const int decode = rgb || p->image;
    float *img = p->image ? p->image
                 : decode ? malloc((size_t)3 * (size_t)p->width * (size_t)p->height * sizeof(float))
                          : NULL;
    float *enc = p->init ? malloc(n * sizeof(float)) : NULL;
    if (!sched || !lat || !x || !v || !iid || !tid || (decode && !img) || (p->init && !enc)) {
        st = cd_set_error(ctx, CD_ERR_OOM, "generate: out of memory for %zu latent values", n);
        goto done;
    }
    double t0 = now_s();
    st = p->time_shift > 0 ? cd_flux_schedule_static(ctx, p->steps, p->time_shift, sched)
                           : cd_flux_schedule(ctx, p->steps, L, shift, CD_FLUX_BASE_SHIFT, CD_FLUX_MAX_SHIFT, sched);
    if (st) goto done;
    if (p->noise)
        memcpy(lat, p->noise, n * sizeof(float));
    else if ((st = cd_noise_normal(ctx, p->seed, 0, n, lat, cd_ctx_threads(ctx))))
        goto done;
    if (p->init) { /* SDEdit: re-noise the encoded image to the first timestep run */
        if ((st = cd_ae_encode_tiled(ctx, p->enc, p->init, p->height, p->width, &tiling, enc))) goto done;
        const float s = sched[start];
        for (size_t i = 0; i < n; i++) lat[i] = s * lat[i] + (1.0f - s) * enc[i];
        t0 = now_s(); /* progress rates count the steps only */
    }
    if ((st = cd_latent_pack(ctx, lat, zc, lh, lw, x)) || (st = cd_flux_img_ids(ctx, gh, gw, iid)) ||
        (st = cd_flux_txt_ids(ctx, T, tid)) || (st = cd_flux_reserve(ctx, m, T + L)))
        goto done;
    for (int i = start; i < p->steps; i++) {
        cd_flux_run_params rp = {x,           p->txt,     p->pooled,  iid,         tid,         sched[i],
                                 p->guidance, (int32_t)L, (int32_t)T, (int32_t)gh, (int32_t)gw, p->radius,
                                 down,        NULL,       scale,      p->rope_ntk};
        if ((st = cd_flux_run(ctx, m, &rp, v))) goto done;
        cd_euler_step(x, v, n, sched[i], sched[i + 1]);
        if (p->progress) p->progress(p->user, i + 1 - start, p->steps - start, now_s() - t0);
        if (p->cancel && *p->cancel) {
            st = cd_set_error(ctx, CD_ERR_CANCELLED, "generate: cancelled after step %d of %d", i + 1 - start,
                              p->steps - start);
            goto done;
        }
    }
    if ((st = cd_latent_unpack(ctx, x, zc, lh, lw, lat))) goto done;
    if (p->latent) memcpy(p->latent, lat, n * sizeof(float));
    if (decode && ae) {
        if ((st = cd_ae_decode_tiled(ctx, ae, lat, (int)lh, (int)lw, &tiling, img))) goto done;
    } else if (decode) { /* pixel space: the latent is the image (grey replicated to RGB) */
        const size_t plane = lh * lw;
        for (size_t ch = 0; ch < 3; ch++)
            memcpy(img + ch * plane, lat + (zc == 3 ? ch : 0) * plane, plane * sizeof(float));
    }
    if (rgb) cd_image_to_rgb8(img, (uint32_t)p->width, (uint32_t)p->height, rgb);
    if (p->progress) p->progress(p->user, p->steps - start + 1, p->steps - start, now_s() - t0);
    if (p->cancel && *p->cancel) st = cd_set_error(ctx, CD_ERR_CANCELLED, "generate: cancelled after decoding");
done:
    free(sched);
    free(lat);
    free(x);
    free(v);
    free(iid);
    free(tid);
    free(enc);
    if (img != p->image) free(img);
    return st;
}
