/* generate.c — text-to-image sampling: noise -> pack -> Euler over the FLUX schedule -> unpack ->
 * autoencoder decode -> RGB8 (generate.h, spec/flux.md section 5). */
#include "generate.h"
#include "sampler.h"
#include "../util/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

cd_status cd_generate_check(cd_ctx *ctx, const cd_flux_model *m, const cd_ae_decoder *ae,
                            const cd_generate_params *p) {
    if (!m || !ae || !p)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: model, autoencoder and params are required");
    const cd_flux_config *c = cd_flux_model_config(m);
    const int up = cd_ae_upscale(ae), mul = 2 * up;
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
    if (ae->cfg.out_channels != 3)
        return cd_set_error(ctx, CD_ERR_SHAPE, "generate: the autoencoder makes %d channels, not RGB",
                            (int)ae->cfg.out_channels);
    if (c->in_channels != 4 * ae->cfg.z_channels || c->out_channels != c->in_channels)
        return cd_set_error(ctx, CD_ERR_SHAPE,
                            "generate: the transformer takes %d channels in and %d out, the autoencoder's "
                            "latent packs to %d",
                            (int)c->in_channels, (int)c->out_channels, 4 * (int)ae->cfg.z_channels);
    if (p->radius < 0 || p->down < 0 || (p->down > 1 && p->radius < 1))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: bad attention (radius %d, down %d)",
                            (int)p->radius, (int)p->down);
    if (p->down > 1) {
        const int gh = p->height / mul, gw = p->width / mul;
        if (gh % p->down || gw % p->down)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                "generate: the %dx%d token grid is not divisible by down %d", gh, gw, (int)p->down);
    }
    return CD_OK;
}

cd_status cd_generate(cd_ctx *ctx, cd_flux_model *m, const cd_ae_decoder *ae,
                      const cd_generate_params *p, uint8_t *rgb) {
    cd_status st = cd_generate_check(ctx, m, ae, p);
    if (st != CD_OK) return st;
    if (!rgb) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: rgb is NULL");
    const cd_flux_config *c = cd_flux_model_config(m);
    const int up = cd_ae_upscale(ae);
    const size_t zc = (size_t)ae->cfg.z_channels, lh = (size_t)(p->height / up), lw = (size_t)(p->width / up);
    const size_t gh = lh / 2, gw = lw / 2, L = gh * gw, T = (size_t)p->T;
    const size_t n = zc * lh * lw; /* = L * in_channels */
    const int shift = p->shift < 0 ? (c->guidance != 0) : p->shift != 0;
    float *sched = malloc(((size_t)p->steps + 1) * sizeof(float));
    float *lat = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
    float *iid = malloc(L * 3 * sizeof(float)), *tid = malloc((T ? T : 1) * 3 * sizeof(float));
    float *img = malloc((size_t)3 * (size_t)p->width * (size_t)p->height * sizeof(float));
    if (!sched || !lat || !x || !v || !iid || !tid || !img) {
        st = cd_set_error(ctx, CD_ERR_OOM, "generate: out of memory for %zu latent values", n);
        goto done;
    }
    const double t0 = now_s();
    if ((st = cd_flux_schedule(ctx, p->steps, L, shift, CD_FLUX_BASE_SHIFT, CD_FLUX_MAX_SHIFT, sched)) ||
        (st = cd_noise_normal(ctx, p->seed, 0, n, lat, cd_ctx_threads(ctx))) ||
        (st = cd_latent_pack(ctx, lat, zc, lh, lw, x)) || (st = cd_flux_img_ids(ctx, gh, gw, iid)) ||
        (st = cd_flux_txt_ids(ctx, T, tid)) || (st = cd_flux_reserve(ctx, m, T + L)))
        goto done;
    for (int i = 0; i < p->steps; i++) {
        cd_flux_run_params rp = {x, p->txt, p->pooled, iid, tid, sched[i], p->guidance,
                                 (int32_t)L, (int32_t)T, (int32_t)gh, (int32_t)gw,
                                 p->radius, p->down > 1 ? p->down : 0, NULL};
        if ((st = cd_flux_run(ctx, m, &rp, v))) goto done;
        cd_euler_step(x, v, n, sched[i], sched[i + 1]);
        if (p->progress) p->progress(p->user, i + 1, p->steps, now_s() - t0);
    }
    if ((st = cd_latent_unpack(ctx, x, zc, lh, lw, lat)) ||
        (st = cd_ae_decode(ctx, ae, lat, (int)lh, (int)lw, img)))
        goto done;
    cd_image_to_rgb8(img, (uint32_t)p->width, (uint32_t)p->height, rgb);
    if (p->progress) p->progress(p->user, p->steps + 1, p->steps, now_s() - t0);
done:
    free(sched); free(lat); free(x); free(v); free(iid); free(tid); free(img);
    return st;
}
