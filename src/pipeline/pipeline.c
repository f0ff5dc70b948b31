/* pipeline.c — the public pipeline (cleardit.h): open = device + transformer (+ CLEAR weights)
 * + patch parallelism + autoencoder in one call; generate = the defaults resolved, the prompt
 * table or embeddings turned into conditioning, the init image into [-1, 1] planes, then
 * cd_generate (generate.h). */
#include "generate.h"
#include "model_dir.h"
#include "prompts.h"
#include "sampler.h"
#include "../util/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cd_pipeline {
    cd_flux_model *m;
    cd_ae_decoder *ae;
    cd_ae_encoder *enc; /* NULL unless asked for */
    int rank;           /* of the comm, 0 without one */
    int fd[2];          /* staged embedded files (-1 = none), closed with the pipeline */
};

cd_pipeline_params cd_pipeline_params_default(void) {
    cd_pipeline_params p;
    memset(&p, 0, sizeof p);
    p.device = CD_DEVICE_CPU;
    p.text_attention = CD_TEXT_EXACT;
    return p;
}

void cd_pipeline_free(cd_pipeline *p) {
    if (!p) return;
    cd_ae_decoder_free(p->ae);
    cd_ae_encoder_free(p->enc);
    cd_flux_free(p->m);
    for (int i = 0; i < 2; i++)
        if (p->fd[i] >= 0) close(p->fd[i]);
    free(p);
}

/* A diffusers FLUX pipeline folder (model_index.json) rather than a transformer checkpoint. */
static int is_pipeline_root(const char *path) {
    char buf[4096];
    return path && snprintf(buf, sizeof buf, "%s/model_index.json", path) < (int)sizeof buf && access(buf, R_OK) == 0;
}

cd_status cd_pipeline_open(cd_ctx *ctx, const cd_pipeline_params *pp, cd_pipeline **out) {
    if (!out || !pp) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "pipeline: params and out are required");
    *out = NULL;
    cd_pipeline *p = calloc(1, sizeof *p);
    if (!p) return cd_set_error(ctx, CD_ERR_OOM, "pipeline: out of memory");
    p->fd[0] = p->fd[1] = -1;
    char mpath[32], cpath[32];
    const char *model = pp->model, *clear = pp->clear_weights, *ae = pp->ae;
    const int groups = pp->ae_groups > 0 ? pp->ae_groups : 32;
    cd_status st = CD_OK;
    if (!model && !(st = cd_embedded_open(ctx, CD_EMBEDDED_MODEL, mpath, sizeof mpath, &p->fd[0]))) model = mpath;
    if (!st && !pp->model && !clear && pp->embedded_clear &&
        !(st = cd_embedded_open(ctx, CD_EMBEDDED_CLEAR, cpath, sizeof cpath, &p->fd[1])))
        clear = cpath;
    /* a diffusers FLUX pipeline folder: its transformer/ and (unless given) vae/ */
    cd_model_dir md = {0};
    if (!st && is_pipeline_root(pp->model) && !(st = cd_model_dir_open(ctx, pp->model, &md))) {
        model = md.transformer;
        if (!ae) ae = md.vae;
    }
    cd_flux_load_params lp = {{pp->rope_axes[0], pp->rope_axes[1], pp->rope_axes[2]}, pp->rope_theta, clear};
    if (st || (st = cd_device_open(ctx, pp->device)) || (st = cd_flux_load(ctx, model, &lp, &p->m)) ||
        (st = cd_flux_set_device(ctx, p->m, pp->device)) ||
        (pp->comm && (st = cd_flux_set_parallel(ctx, p->m, pp->comm, pp->text_attention))) ||
        (ae && (st = cd_ae_decoder_load(ctx, ae, groups, &p->ae))) ||
        (ae && pp->encoder && (st = cd_ae_encoder_load(ctx, ae, groups, &p->enc)))) {
        cd_model_dir_free(&md);
        cd_pipeline_free(p);
        return st;
    }
    cd_model_dir_free(&md);
    p->rank = pp->comm ? cd_comm_rank(pp->comm) : 0;
    *out = p;
    return CD_OK;
}

cd_flux_model *cd_pipeline_model(const cd_pipeline *p) { return p ? p->m : NULL; }
int cd_pipeline_has_ae(const cd_pipeline *p) { return p && p->ae; }

int cd_pipeline_native_size(const cd_pipeline *p, int32_t *w, int32_t *h) {
    int pw, ph;
    const int r = cd_prompts_image_size(p->m, &pw, &ph);
    *w = pw;
    *h = ph;
    return r;
}

int32_t cd_pipeline_default_steps(const cd_pipeline *p) {
    int w, h;
    return cd_prompts_image_size(p->m, &w, &h) ? 32 : cd_flux_model_config(p->m)->guidance ? 28 : 4;
}

const char *cd_pipeline_prompt_table(const cd_pipeline *p) { return cd_prompts_table(p->m); }
int cd_pipeline_prompt_count(const cd_pipeline *p) { return cd_prompts_count(cd_prompts_table(p->m)); }

int cd_pipeline_prompt_name(const cd_pipeline *p, int i, char *buf, size_t n) {
    size_t len;
    const char *s = cd_prompts_at(cd_prompts_table(p->m), i, &len);
    if (!s) return -1;
    if (n) snprintf(buf, n, "%.*s", (int)len, s);
    return (int)len;
}

int cd_pipeline_prompt_find(const cd_pipeline *p, const char *name) {
    return cd_prompts_find(cd_prompts_table(p->m), name, cd_flux_model_config(p->m));
}

cd_gen_params cd_gen_params_default(void) {
    cd_gen_params p;
    memset(&p, 0, sizeof p);
    p.prompt_index = -1;
    p.guidance = 3.5f;
    p.shift = -1;
    p.proportional = -1;
    p.ae_tile = 1024;
    p.ae_overlap = 0.25f;
    return p;
}

void cd_pipeline_resolve(const cd_pipeline *pl, cd_gen_params *p) {
    int32_t nw, nh;
    if (cd_pipeline_native_size(pl, &nw, &nh) && !pl->ae) {
        if (!p->width) p->width = nw;
        if (!p->height) p->height = nh;
    }
    if (p->init && !p->upscale) { /* image-to-image at the init image's size */
        if (!p->width) p->width = (int32_t)p->init_width;
        if (!p->height) p->height = (int32_t)p->init_height;
    }
    if (!p->steps) p->steps = cd_pipeline_default_steps(pl);
    const int up = p->init && p->upscale; /* the reference high-resolution settings */
    if (!p->strength) p->strength = up ? 0.7 : 0.6;
    if (!p->rope_ntk) p->rope_ntk = up ? 10.0 : 1.0;
    if (!p->time_shift && up) p->time_shift = 3.0;
    if (p->proportional < 0) p->proportional = up;
}

int cd_gen_steps_run(const cd_gen_params *p) {
    if (!p->init) return p->steps;
    const int start = cd_img2img_start(p->steps, p->strength);
    return start < 0 ? -1 : p->steps - start;
}

/* p (resolved) -> the sampler's parameters, conditioning and init image left to the caller;
 * checks what only the public form can get wrong (prompt, init size). */
static cd_status to_sampler(cd_ctx *ctx, const cd_pipeline *pl, const cd_gen_params *p, int *prompt,
                            cd_generate_params *g) {
    const cd_flux_config *c = cd_flux_model_config(pl->m);
    memset(g, 0, sizeof *g);
    *prompt = -1;
    if (p->prompt || p->prompt_index >= 0) {
        const char *table = cd_prompts_table(pl->m);
        if (!table) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: the model has no built-in prompts");
        *prompt = p->prompt ? cd_prompts_find(table, p->prompt, c) : p->prompt_index;
        if (*prompt < 0 || *prompt >= cd_prompts_count(table) || *prompt >= c->context_dim || *prompt >= c->pooled_dim)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: unknown prompt '%s'; the model knows: %s",
                                p->prompt ? p->prompt : "(index)", table);
    } else {
        g->txt = p->txt;
        g->T = p->T;
        g->pooled = p->pooled;
    }
    if (p->init && !p->upscale && (p->init_width != (uint32_t)p->width || p->init_height != (uint32_t)p->height))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "generate: the init image is %ux%u, not %dx%d (resize it: upscale)", p->init_width,
                            p->init_height, (int)p->width, (int)p->height);
    if (p->init && (!p->init_width || !p->init_height))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: the init image has no size");
    g->width = p->width;
    g->height = p->height;
    g->steps = p->steps;
    g->guidance = p->guidance;
    g->seed = p->seed;
    g->radius = p->radius;
    g->down = p->down;
    g->shift = p->shift;
    g->time_shift = p->time_shift;
    g->enc = p->init ? pl->enc : NULL;
    g->strength = p->strength;
    g->rope_ntk = p->rope_ntk;
    g->proportional = p->proportional;
    g->ae_tile = p->ae_tile;
    g->ae_overlap = p->ae_overlap;
    return CD_OK;
}

cd_status cd_pipeline_check(cd_ctx *ctx, const cd_pipeline *pl, const cd_gen_params *p0) {
    if (!pl || !p0) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: pipeline and params are required");
    cd_gen_params p = *p0;
    cd_pipeline_resolve(pl, &p);
    cd_generate_params g;
    int prompt;
    static const float probe[1] = {0}; /* stands for buffers the check does not read */
    cd_status st = to_sampler(ctx, pl, &p, &prompt, &g);
    if (st) return st;
    if (prompt >= 0) {
        g.txt = g.pooled = probe;
        g.T = 1;
    }
    if (p.init) {
        if (!pl->enc)
            return cd_set_error(
                ctx, CD_ERR_UNSUPPORTED,
                "generate: image-to-image needs the encoder (open with an autoencoder and encoder = 1)");
        g.init = probe;
    }
    return cd_generate_check(ctx, pl->m, pl->ae, &g);
}

typedef struct {
    cd_gen_progress_fn fn;
    void *user;
    int cancel;
} progress_relay;

static void relay(void *user, int step, int steps, double el) {
    progress_relay *r = user;
    if (r->fn(r->user, step, steps, el)) r->cancel = 1;
}

cd_status cd_pipeline_generate(cd_ctx *ctx, cd_pipeline *pl, const cd_gen_params *p0, uint8_t *rgb) {
    cd_status st = cd_pipeline_check(ctx, pl, p0);
    if (st) return st;
    cd_gen_params p = *p0;
    cd_pipeline_resolve(pl, &p);
    cd_generate_params g;
    int prompt;
    if ((st = to_sampler(ctx, pl, &p, &prompt, &g))) return st;
    const cd_flux_config *c = cd_flux_model_config(pl->m);
    const size_t px = (size_t)p.width * (size_t)p.height;
    float *cond = NULL, *init = NULL, *lat = NULL;
    uint8_t *rs = NULL;
    if (!rgb && pl->rank == 0) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "generate: no output buffer");
    /* ranks other than 0 stop at the latent (at most 3 values per pixel for every autoencoder and
     * pixel model: z <= 3 x upscale^2) */
    if (!rgb && !(g.latent = lat = malloc(px * 3 * sizeof(float)))) goto oom;
    if (prompt >= 0) {
        if (!(cond = malloc(((size_t)c->context_dim + (size_t)c->pooled_dim) * sizeof(float)))) goto oom;
        cd_prompts_onehot(c, prompt, cond, cond + c->context_dim);
        g.txt = cond;
        g.pooled = cond + c->context_dim;
        g.T = 1;
    }
    if (p.init) {
        const uint8_t *src = p.init;
        if (!(init = malloc(px * 3 * sizeof(float)))) goto oom;
        if (p.init_width != (uint32_t)p.width || p.init_height != (uint32_t)p.height) {
            if (!(rs = malloc(px * 3))) goto oom;
            if ((st = cd_rgb8_resize(ctx, p.init, p.init_width, p.init_height, rs, (uint32_t)p.width,
                                     (uint32_t)p.height)))
                goto done;
            src = rs;
        }
        cd_rgb8_to_image(src, (uint32_t)p.width, (uint32_t)p.height, init);
        g.init = init;
    }
    progress_relay r = {p.progress, p.user, 0};
    if (p.progress) {
        g.progress = relay;
        g.user = &r;
        g.cancel = &r.cancel;
    }
    st = cd_generate(ctx, pl->m, pl->ae, &g, rgb);
    goto done;
oom:
    st = cd_set_error(ctx, CD_ERR_OOM, "generate: out of memory for a %dx%d image", (int)p.width, (int)p.height);
done:
    free(cond);
    free(init);
    free(lat);
    free(rs);
    return st;
}
