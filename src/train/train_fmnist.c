/* train_fmnist.c — the Fashion-MNIST pixel-space task of the training engine (train.h): the model
 * `cleardit train` ships as the default. */
#include "train.h"
#include "idx.h"
#include "../pipeline/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMG 28
#define GRID 14
#define TOKENS (GRID * GRID)
#define CH 4
#define TXT 1

void cd_train_rope_axes(int32_t hd, int axes[3]) {
    int a0 = (hd / 8) & ~1;
    if (a0 < 2) a0 = 2;
    const int rest = hd - a0, a1 = (rest / 2) & ~1;
    axes[0] = a0;
    axes[1] = a1;
    axes[2] = rest - a1;
}

cd_flux_config cd_train_fmnist_config(int32_t hidden, int32_t heads, int32_t depth, int32_t depth_single) {
    return (cd_flux_config){hidden,
                            heads,
                            heads ? hidden / heads : 0,
                            depth,
                            depth_single,
                            CH,
                            CH,
                            CD_FMNIST_CLASSES,
                            CD_FMNIST_CLASSES,
                            4 * hidden,
                            0};
}

void cd_fmnist_condition(int c, float *txt, float *pooled) {
    for (int i = 0; i < CD_FMNIST_CLASSES; i++) txt[i] = pooled[i] = i == c ? 1.0f : 0.0f;
}

typedef struct {
    const cd_dataset *ds;
    uint64_t seed;
    int64_t batch;
} fm_task;

typedef struct {
    float x0[TOKENS * CH], xt[TOKENS * CH], noise[TOKENS * CH], n[TOKENS * CH], out[TOKENS * CH], dout[TOKENS * CH];
    float lat[IMG * IMG], ids[TOKENS * 3], tids[TXT * 3], txt[CD_FMNIST_CLASSES], pooled[CD_FMNIST_CLASSES];
} fm_scratch;

static cd_status fm_worker_init(void *task, cd_train_worker *w) {
    fm_scratch *s = calloc(1, sizeof *s);
    if (!s) return CD_ERR_OOM;
    cd_flux_img_ids(NULL, GRID, GRID, s->ids);
    w->scratch = s;
    return CD_OK;
}

static void fm_worker_free(void *task, cd_train_worker *w) {
    free(w->scratch);
    w->scratch = NULL;
}

/* Item `item` of step `step`: a dataset index, t ~ logit-normal(0, 1) and the noise, all from
 * Philox counters keyed by the seed (1024 normals reserved per item). */
static void draws(uint64_t seed, int64_t step, int64_t item, uint32_t n, uint32_t *idx, float *t, float *noise) {
    const uint64_t base = ((uint64_t)step << 20 | (uint64_t)item) * 1024u;
    float z[2];
    cd_noise_normal(NULL, seed, base, 2, z, 1);
    uint32_t ctr[4] = {(uint32_t)step, (uint32_t)item, 0xC1EA7u, (uint32_t)(step >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t r[4];
    cd_philox4x32_10(ctr, key, r);
    *idx = (uint32_t)(((uint64_t)r[0] << 32 | r[1]) % n);
    *t = 1.0f / (1.0f + expf(-z[0]));
    if (*t < 1e-4f) *t = 1e-4f;
    if (*t > 1.0f - 1e-4f) *t = 1.0f - 1e-4f;
    cd_noise_normal(NULL, seed, base + 2, TOKENS * CH, noise, 1);
}

static cd_status fm_item(void *task, cd_train_worker *w, const cd_flux_weights *weights, int64_t step, int64_t item) {
    const fm_task *ft = task;
    fm_scratch *s = w->scratch;
    uint32_t idx;
    float t;
    draws(ft->seed, step, item, ft->ds->n, &idx, &t, s->noise);
    const uint8_t *px = ft->ds->images + (size_t)idx * IMG * IMG;
    for (int j = 0; j < IMG * IMG; j++) s->lat[j] = (float)px[j] / 127.5f - 1.0f;
    cd_latent_pack(NULL, s->lat, 1, IMG, IMG, s->x0);
    cd_latent_pack(NULL, s->noise, 1, IMG, IMG, s->n);
    for (int j = 0; j < TOKENS * CH; j++) s->xt[j] = (1.0f - t) * s->x0[j] + t * s->n[j];
    cd_fmnist_condition(ft->ds->labels[idx], s->txt, s->pooled);
    const cd_flux_run_params in = {s->xt, s->txt, s->pooled, s->ids, s->tids, t,    0.0f, TOKENS,
                                   TXT,   GRID,   GRID,      0,      0,       NULL, 0.0f, 0.0};
    const cd_grad_ops ops = cd_grad_ops_cpu();
    cd_status st = cd_flux_grad_forward(w->ctx, &ops, weights, &in, &w->work, s->out);
    if (st) return st;
    const float inv = 1.0f / (float)(TOKENS * CH * ft->batch);
    double l = 0;
    for (int j = 0; j < TOKENS * CH; j++) {
        const float e = s->out[j] - (s->n[j] - s->x0[j]);
        l += (double)e * e;
        s->dout[j] = 2.0f * e * inv;
    }
    w->loss += l / (TOKENS * CH);
    return cd_flux_grad_backward(w->ctx, &ops, weights, &in, &w->work, s->dout, NULL, &w->g);
}

cd_status cd_train_fmnist(cd_ctx *ctx, const cd_fmnist_params *fp, const cd_train_params *p) {
    if (fp->hidden < 8 || fp->heads < 1 || fp->hidden % fp->heads || (fp->hidden / fp->heads) % 2 ||
        fp->hidden / fp->heads < 8 || fp->depth < 0 || fp->depth_single < 0 || fp->depth + fp->depth_single < 1)
        return cd_set_error(
            ctx, CD_ERR_INVALID_ARG,
            "train: bad model shape (hidden %d, heads %d: head_dim must be even and >= 8; blocks %d + %d)", fp->hidden,
            fp->heads, fp->depth, fp->depth_single);
    cd_dataset ds;
    cd_status st = cd_fmnist_load(ctx, fp->data_dir, "train", &ds);
    if (st) return st;
    if (ds.rows != IMG || ds.cols != IMG) {
        cd_dataset_free(&ds);
        return cd_set_error(ctx, CD_ERR_FORMAT, "train: images are %ux%u, the task needs 28x28", ds.rows, ds.cols);
    }
    char prompts[256] = "";
    for (int k = 0; k < CD_FMNIST_CLASSES; k++) {
        strcat(prompts, cd_fmnist_class_name(k));
        if (k + 1 < CD_FMNIST_CLASSES) strcat(prompts, ",");
    }
    const char *meta[] = {"cleardit_task", "fmnist-pixel", "cleardit_prompts", prompts, "cleardit_image", "28x28x1"};
    fm_task ft = {&ds, p->seed, p->batch};
    cd_train_task task = {"fmnist",
                          cd_train_fmnist_config(fp->hidden, fp->heads, fp->depth, fp->depth_single),
                          0,
                          {0, 0, 0},
                          10000.0,
                          NULL,
                          0,
                          TOKENS + TXT,
                          1,
                          fm_worker_init,
                          fm_worker_free,
                          fm_item,
                          &ft,
                          meta,
                          3};
    cd_train_rope_axes(task.cfg.head_dim, task.rope_axes);
    st = cd_train_run(ctx, &task, p);
    cd_dataset_free(&ds);
    return st;
}
