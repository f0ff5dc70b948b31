/* distill.c — CLEAR distillation (distill.h): the teacher's self-distillation set, then the
 * engine (train.h) on the CLEAR subset of a student that starts as the teacher. */
#include "distill.h"
#include "../model/flux_load.h"
#include "../pipeline/prompts.h"
#include "../pipeline/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The set: x0 [n, L, C] packed latents, txt [n, T, ctx], pooled [n, P]. */
typedef struct {
    float *x0, *txt, *pooled;
    int64_t n;
    int32_t T, L, C, gh, gw;
} dset;

static void dset_free(dset *d) {
    free(d->x0);
    free(d->txt);
    free(d->pooled);
    memset(d, 0, sizeof *d);
}

/* ---- the self-distillation set ---------------------------------------------------------------- */

/* Samples the set with the teacher (weights w, f32), workers in parallel over samples. */
static cd_status make_set(cd_ctx *ctx, const cd_flux_weights *w, const cd_distill_params *dp, uint64_t seed,
                          int workers, int nprompts, dset *d) {
    const cd_flux_config *c = &w->cfg;
    const size_t LC = (size_t)d->L * (size_t)d->C, lh = (size_t)d->gh * 2, lw = (size_t)d->gw * 2;
    const size_t zc = (size_t)d->C / 4;
    float *sched = malloc(((size_t)dp->sample_steps + 1) * sizeof(float));
    if (!sched) return cd_set_error(ctx, CD_ERR_OOM, "distill: out of memory");
    cd_status st = cd_flux_schedule(ctx, dp->sample_steps, (size_t)d->L, c->guidance != 0, CD_FLUX_BASE_SHIFT,
                                    CD_FLUX_MAX_SHIFT, sched);
    for (int64_t i = 0; i < d->n && !st; i++) { /* conditioning: one-hot prompt i mod K */
        float *t = d->txt + (size_t)i * d->T * c->context_dim, *p = d->pooled + (size_t)i * c->pooled_dim;
        cd_prompts_onehot(c, (int)(i % nprompts), t, p); /* d->T is 1 */
    }
    cd_status *wst = calloc((size_t)workers, sizeof *wst);
    if (!wst) st = cd_set_error(ctx, CD_ERR_OOM, "distill: out of memory");
#pragma omp parallel for num_threads(workers) schedule(static, 1)
    for (int wi = 0; wi < workers; wi++) {
        if (st) continue;
        cd_ctx *wc = NULL;
        cd_ctx_params cp = cd_ctx_params_default();
        cp.threads = 1;
        cd_flux_arena a;
        memset(&a, 0, sizeof a);
        float *x = malloc(LC * sizeof(float)), *v = malloc(LC * sizeof(float)), *lat = malloc(LC * sizeof(float));
        float *ids = malloc((size_t)d->L * 3 * sizeof(float)), *tids = calloc((size_t)d->T * 3 + 1, sizeof(float));
        cd_status s = cd_ctx_create(&cp, &wc);
        if (!s && (!x || !v || !lat || !ids || !tids)) s = CD_ERR_OOM;
        if (!s) s = cd_flux_arena_init(wc, c, (size_t)(d->T + d->L), &a);
        if (!s) s = cd_flux_img_ids(wc, (size_t)d->gh, (size_t)d->gw, ids);
        for (int64_t i = wi; i < d->n && !s; i += workers) {
            s = cd_noise_normal(wc, seed + (uint64_t)i, 0, LC, lat, 1);
            if (!s) s = cd_latent_pack(wc, lat, zc, lh, lw, x);
            const float *txt = d->txt + (size_t)i * d->T * c->context_dim,
                        *pooled = d->pooled + (size_t)i * c->pooled_dim;
            for (int k = 0; k < dp->sample_steps && !s; k++) {
                const cd_flux_run_params in = {x,    txt,   pooled, ids, tids, sched[k], 3.5f, d->L,
                                               d->T, d->gh, d->gw,  0,   0,    NULL,     0.0f, 0.0};
                s = cd_flux_forward(wc, cd_ops_cpu(), w, &in, &a, v, NULL, NULL); /* dense */
                if (!s) cd_euler_step(x, v, LC, sched[k], sched[k + 1]);
            }
            if (!s) memcpy(d->x0 + (size_t)i * LC, x, LC * sizeof(float));
        }
        wst[wi] = s;
        cd_flux_arena_free(&a);
        free(x);
        free(v);
        free(lat);
        free(ids);
        free(tids);
        cd_ctx_free(wc);
    }
    for (int wi = 0; wst && wi < workers && !st; wi++)
        if (wst[wi]) st = cd_set_error(ctx, wst[wi], "distill: sampling the teacher failed (worker %d)", wi);
    free(wst);
    free(sched);
    return st;
}

static cd_status save_set(cd_ctx *ctx, const char *path, const dset *d, const cd_flux_config *c,
                          const char *const *meta, size_t nm) {
    const cd_st_out o[3] = {
        {"x0", CD_DTYPE_F32, 3, {d->n, d->L, d->C}, d->x0},
        {"txt", CD_DTYPE_F32, 3, {d->n, d->T, c->context_dim}, d->txt},
        {"pooled", CD_DTYPE_F32, 2, {d->n, c->pooled_dim}, d->pooled},
    };
    return cd_st_write(ctx, path, o, 3, meta, nm);
}

/* Reads the set when the file exists and its metadata matches; 1 = loaded, 0 = absent/stale. */
static int load_set(cd_ctx *ctx, const char *path, dset *d, const cd_flux_config *c, const char *const *meta,
                    size_t nm) {
    cd_st_file *f = NULL;
    if (cd_st_open(ctx, path, &f) != CD_OK) return 0;
    int ok = 1;
    for (size_t i = 0; i < nm && ok; i++) {
        const char *v = cd_st_meta(f, meta[2 * i]);
        ok = v && !strcmp(v, meta[2 * i + 1]);
    }
    const cd_st_tensor *tx = cd_st_find(f, "x0"), *tt = cd_st_find(f, "txt"), *tp = cd_st_find(f, "pooled");
    const size_t LC = (size_t)d->L * d->C;
    ok = ok && tx && tt && tp && cd_st_numel(tx) == (uint64_t)d->n * LC &&
         cd_st_numel(tt) == (uint64_t)d->n * d->T * c->context_dim && cd_st_numel(tp) == (uint64_t)d->n * c->pooled_dim;
    ok = ok && cd_st_to_f32(ctx, tx, d->x0) == CD_OK && cd_st_to_f32(ctx, tt, d->txt) == CD_OK &&
         cd_st_to_f32(ctx, tp, d->pooled) == CD_OK;
    cd_st_close(f);
    return ok;
}

/* ---- the distillation task --------------------------------------------------------------------- */

typedef struct {
    const dset *d;
    const cd_flux_weights *teacher;
    int32_t radius, down; /* the student's attention (the teacher's is dense) */
    int distill;
    int layers[64], nl; /* attention-distilled layers */
    uint64_t seed;
    int64_t batch;
} ds_task;

typedef struct {
    float *xt, *noise, *n, *vs, *vt, *dout, *ids, *tids;
    float *dattn[64];
} ds_scratch;

static cd_status ds_worker_init(void *task, cd_train_worker *w) {
    const ds_task *t = task;
    const size_t LC = (size_t)t->d->L * t->d->C, N = (size_t)(t->d->T + t->d->L);
    const size_t D = (size_t)t->teacher->cfg.hidden;
    ds_scratch *s = calloc(1, sizeof *s);
    if (!s) return CD_ERR_OOM;
    w->scratch = s;
    float **bufs[6] = {&s->xt, &s->noise, &s->n, &s->vs, &s->vt, &s->dout};
    for (int i = 0; i < 6; i++)
        if (!(*bufs[i] = malloc(LC * sizeof(float)))) return CD_ERR_OOM;
    s->ids = malloc((size_t)t->d->L * 3 * sizeof(float));
    s->tids = calloc((size_t)t->d->T * 3 + 1, sizeof(float));
    if (!s->ids || !s->tids) return CD_ERR_OOM;
    cd_flux_img_ids(NULL, (size_t)t->d->gh, (size_t)t->d->gw, s->ids);
    for (int i = 0; i < t->nl; i++)
        if (!(s->dattn[t->layers[i]] = malloc(N * D * sizeof(float)))) return CD_ERR_OOM;
    return CD_OK;
}

static void ds_worker_free(void *task, cd_train_worker *w) {
    ds_scratch *s = w->scratch;
    if (!s) return;
    free(s->xt);
    free(s->noise);
    free(s->n);
    free(s->vs);
    free(s->vt);
    free(s->dout);
    free(s->ids);
    free(s->tids);
    for (int i = 0; i < 64; i++) free(s->dattn[i]);
    free(s);
    w->scratch = NULL;
}

static cd_status ds_item(void *task, cd_train_worker *w, const cd_flux_weights *weights, int64_t step, int64_t item) {
    const ds_task *t = task;
    const dset *d = t->d;
    ds_scratch *s = w->scratch;
    const cd_flux_config *c = &weights->cfg;
    const size_t LC = (size_t)d->L * d->C, N = (size_t)(d->T + d->L), D = (size_t)c->hidden;
    /* draws: sample index, t ~ U(0, 1), noise (Philox counters keyed by the seed) */
    const uint64_t base = ((uint64_t)step << 20 | (uint64_t)item) * (LC + 8);
    uint32_t ctr[4] = {(uint32_t)step, (uint32_t)item, 0xD157u, (uint32_t)(step >> 32)};
    const uint32_t key[2] = {(uint32_t)t->seed, (uint32_t)(t->seed >> 32)};
    uint32_t r[4];
    cd_philox4x32_10(ctr, key, r);
    const int64_t idx = (int64_t)(((uint64_t)r[0] << 32 | r[1]) % (uint64_t)d->n);
    float tt = (float)((double)(r[2] >> 8) * 0x1p-24);
    if (tt < 1e-4f) tt = 1e-4f;
    cd_status st = cd_noise_normal(NULL, t->seed, base, LC, s->n, 1);
    if (st) return st;
    const float *x0 = d->x0 + (size_t)idx * LC;
    for (size_t j = 0; j < LC; j++) s->xt[j] = (1.0f - tt) * x0[j] + tt * s->n[j];
    const cd_flux_run_params in_t = {s->xt,
                                     d->txt + (size_t)idx * d->T * c->context_dim,
                                     d->pooled + (size_t)idx * c->pooled_dim,
                                     s->ids,
                                     s->tids,
                                     tt,
                                     3.5f,
                                     d->L,
                                     d->T,
                                     d->gh,
                                     d->gw,
                                     0,
                                     0,
                                     NULL,
                                     0.0f,
                                     0.0};
    cd_flux_run_params in = in_t;
    in.radius = t->radius;
    in.down = t->down;
    const cd_grad_ops ops = cd_grad_ops_cpu();
    if (t->distill && (st = cd_flux_grad_forward(w->ctx, &ops, t->teacher, &in_t, &w->work2, s->vt))) return st;
    if ((st = cd_flux_grad_forward(w->ctx, &ops, weights, &in, &w->work, s->vs))) return st;
    const float inv = 1.0f / (float)(LC * (size_t)t->batch);
    double l_fm = 0, l_out = 0, l_att = 0;
    for (size_t j = 0; j < LC; j++) {
        const float e = s->vs[j] - (s->n[j] - x0[j]);
        l_fm += (double)e * e;
        float g = 2.0f * e * inv;
        if (t->distill) {
            const float e2 = s->vs[j] - s->vt[j];
            l_out += (double)e2 * e2;
            g += 0.5f * 2.0f * e2 * inv;
        }
        s->dout[j] = g;
    }
    double loss = l_fm / (double)LC + 0.5 * l_out / (double)LC;
    const float *const *dattn = NULL;
    if (t->distill && t->nl) {
        const float ainv = 1.0f / (float)(N * D * (size_t)t->nl * (size_t)t->batch);
        for (int i = 0; i < t->nl; i++) {
            const int l = t->layers[i];
            const float *as = w->work.tape.layer[l].attn, *ad = w->work2.tape.layer[l].attn;
            float *g = s->dattn[l];
            double e2 = 0;
            for (size_t j = 0; j < N * D; j++) {
                const float e = as[j] - ad[j];
                e2 += (double)e * e;
                g[j] = 0.5f * 2.0f * e * ainv;
            }
            l_att += e2 / (double)(N * D);
        }
        loss += 0.5 * l_att / t->nl;
        dattn = (const float *const *)s->dattn;
    }
    w->loss += loss;
    return cd_flux_grad_backward(w->ctx, &ops, weights, &in, &w->work, s->dout, dattn, &w->g);
}

cd_status cd_distill(cd_ctx *ctx, const cd_distill_params *dp, const cd_train_params *p) {
    if (dp->radius < 1 || dp->down < 0 || dp->down == 1 || dp->samples < 1 || dp->sample_steps < 1)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "distill: needs radius >= 1, down 0 or >= 2, samples >= 1");
    cd_flux_model *m = NULL;
    cd_status st = cd_flux_load(ctx, dp->teacher, NULL, &m);
    if (st) return st;
    const cd_flux_config cfg = *cd_flux_model_config(m);
    const char *prompts = cd_prompts_table(m);
    int iw = 0, ih = 0;
    if (!prompts || !cd_prompts_image_size(m, &iw, &ih) || iw < 2 || ih < 2 || iw % 2 || ih % 2 ||
        (cfg.in_channels != 4 && cfg.in_channels != 12)) {
        cd_flux_free(m);
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "distill: %s has no built-in prompt table and pixel size (metadata cleardit_prompts, "
                            "cleardit_image): it cannot sample its own distillation set",
                            dp->teacher);
    }
    const int nprompts = cd_prompts_count(prompts);
    dset d = {0};
    d.n = dp->samples;
    d.T = 1;
    d.gh = ih / 2;
    d.gw = iw / 2;
    d.L = d.gh * d.gw;
    d.C = cfg.in_channels;
    if (!cd_prompts_fit(prompts, &cfg) || (dp->down >= 2 && (d.gh % dp->down || d.gw % dp->down))) {
        cd_flux_free(m);
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "distill: the prompt table or --down does not fit the model");
    }
    cd_param_list tl = {0}, sl = {0};
    float *tbuf = NULL, *sbuf = NULL;
    cd_flux_weights tw = {0};
    int axes[3];
    double theta;
    const char *src;
    cd_flux_model_rope(m, axes, &theta, &src);
    d.x0 = malloc((size_t)d.n * d.L * d.C * sizeof(float));
    d.txt = malloc((size_t)d.n * d.T * cfg.context_dim * sizeof(float));
    d.pooled = malloc((size_t)d.n * cfg.pooled_dim * sizeof(float));
    if (!d.x0 || !d.txt || !d.pooled) {
        st = cd_set_error(ctx, CD_ERR_OOM, "distill: out of memory for %lld samples", (long long)d.n);
        goto done;
    }
    /* the teacher as f32 parameters (dense), and the student's initial values (+ spatial weights) */
    if ((st = cd_params_list(ctx, &cfg, 0, &tl)) || (st = cd_params_list(ctx, &cfg, dp->down, &sl))) goto done;
    tbuf = calloc(tl.total, sizeof(float));
    sbuf = calloc(sl.total, sizeof(float));
    if (!tbuf || !sbuf) {
        st = cd_set_error(ctx, CD_ERR_OOM, "distill: out of memory");
        goto done;
    }
    if ((st = cd_params_copy_from(ctx, &tl, cd_flux_model_weights(m), tbuf))) goto done;
    cd_params_init(&sl, sbuf, 0);     /* sets the spatial weights to 1/d^2 ... */
    for (size_t i = 0; i < tl.n; i++) /* ... and everything else is the teacher's */
        memcpy(sbuf + sl.p[i].offset, tbuf + tl.p[i].offset, tl.p[i].numel * sizeof(float));
    if ((st = cd_params_bind(ctx, &tl, tbuf, &tw))) goto done;
    memcpy(tw.rope_axes, axes, sizeof axes);
    tw.rope_theta = theta;
    char nbuf[32], sbuf2[32], seedb[32];
    snprintf(nbuf, sizeof nbuf, "%lld", (long long)d.n);
    snprintf(sbuf2, sizeof sbuf2, "%d", (int)dp->sample_steps);
    snprintf(seedb, sizeof seedb, "%llu", (unsigned long long)p->seed);
    const char *cmeta[] = {"cleardit_distill_set", dp->teacher, "samples", nbuf, "sample_steps", sbuf2, "seed", seedb};
    if (!load_set(ctx, dp->cache, &d, &cfg, cmeta, 4)) {
        if (p->progress) p->progress(p->user, 0, p->steps, 0, 0, 0, 0); /* "making the set" */
        if ((st = make_set(ctx, &tw, dp, p->seed, p->workers, nprompts, &d)) ||
            (st = save_set(ctx, dp->cache, &d, &cfg, cmeta, 4)))
            goto done;
    }
    ds_task t = {&d, &tw, dp->radius, dp->down >= 2 ? dp->down : 0, dp->distill_terms, {0}, 0, p->seed, p->batch};
    for (int l = cfg.depth; l < cfg.depth + cfg.depth_single && t.nl < 64; l++)
        if ((l - cfg.depth) % 4 == 0) t.layers[t.nl++] = l;
    char rbuf[16], dbuf[16];
    snprintf(rbuf, sizeof rbuf, "%d", (int)dp->radius);
    snprintf(dbuf, sizeof dbuf, "%d", (int)dp->down);
    const char *meta[] = {"layout", "clear", "radius", rbuf, "down", dbuf, "teacher", dp->teacher};
    cd_train_task task = {"distill",
                          cfg,
                          dp->down >= 2 ? dp->down : 0,
                          {axes[0], axes[1], axes[2]},
                          theta,
                          sbuf,
                          1,
                          (size_t)(d.T + d.L),
                          2,
                          ds_worker_init,
                          ds_worker_free,
                          ds_item,
                          &t,
                          meta,
                          4};
    st = cd_train_run(ctx, &task, p);
done:
    cd_params_unbind(&tw);
    free(tbuf);
    free(sbuf);
    cd_params_free(&tl);
    cd_params_free(&sl);
    dset_free(&d);
    cd_flux_free(m);
    return st;
}
