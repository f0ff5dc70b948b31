/* flux_device.c — a copy of a FLUX model's weights in a backend's memory (the CUDA backend's
 * device): one allocation, linears as BF16 (the tensor-core GEMM's input type), everything else
 * f32. Sized first, filled tensor by tensor through one host staging buffer of the largest linear. */
#include "flux_load.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 256

static size_t up(size_t n) { return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

/* Every f32 vector of the weights other than biases: norm scales, spatial weights. */
typedef struct {
    const float **p;
    size_t n;
} vec_ref;

static size_t list_vectors(const cd_flux_config *c, cd_flux_weights *w, vec_ref *r) {
    size_t n = 0;
    const size_t hd = (size_t)c->head_dim;
    for (int i = 0; i < c->depth; i++) {
        const float **p[4] = {&w->dbl[i].img.norm_q, &w->dbl[i].img.norm_k, &w->dbl[i].txt.norm_q,
                              &w->dbl[i].txt.norm_k};
        for (int j = 0; j < 4; j++, n++)
            if (r) r[n] = (vec_ref){p[j], hd};
    }
    for (int i = 0; i < c->depth_single; i++) {
        if (r) r[n] = (vec_ref){&w->sgl[i].norm_q, hd};
        n++;
        if (r) r[n] = (vec_ref){&w->sgl[i].norm_k, hd};
        n++;
    }
    if (w->spatial_weight) {
        if (r)
            r[n] = (vec_ref){&w->spatial_weight,
                             (size_t)(c->depth + c->depth_single) * (size_t)w->spatial_down * (size_t)w->spatial_down};
        n++;
    }
    return n;
}

size_t cd_flux_list_linears(cd_flux_weights *w, cd_lin_ref *r) {
    const cd_flux_config *c = &w->cfg;
    const int32_t D = c->hidden, F = c->mlp_hidden;
    size_t n = 0;
#define ADD(L, O, I)                               \
    do {                                           \
        if (r) r[n] = (cd_lin_ref){(L), (O), (I)}; \
        n++;                                       \
    } while (0)
    ADD(&w->img_in, D, c->in_channels);
    ADD(&w->txt_in, D, c->context_dim);
    ADD(&w->time_in1, D, 256);
    ADD(&w->time_in2, D, D);
    ADD(&w->vec_in1, D, c->pooled_dim);
    ADD(&w->vec_in2, D, D);
    if (c->guidance) {
        ADD(&w->guid_in1, D, 256);
        ADD(&w->guid_in2, D, D);
    }
    for (int i = 0; i < c->depth; i++) {
        cd_flux_stream *s[2] = {r ? &w->dbl[i].img : NULL, r ? &w->dbl[i].txt : NULL};
        for (int j = 0; j < 2; j++) {
            ADD(s[j] ? &s[j]->mod : NULL, 6 * D, D);
            ADD(s[j] ? &s[j]->q : NULL, D, D);
            ADD(s[j] ? &s[j]->k : NULL, D, D);
            ADD(s[j] ? &s[j]->v : NULL, D, D);
            ADD(s[j] ? &s[j]->proj : NULL, D, D);
            ADD(s[j] ? &s[j]->mlp0 : NULL, F, D);
            ADD(s[j] ? &s[j]->mlp2 : NULL, D, F);
        }
    }
    for (int i = 0; i < c->depth_single; i++) {
        cd_flux_single *s = r ? &w->sgl[i] : NULL;
        ADD(s ? &s->mod : NULL, 3 * D, D);
        ADD(s ? &s->q : NULL, D, D);
        ADD(s ? &s->k : NULL, D, D);
        ADD(s ? &s->v : NULL, D, D);
        ADD(s ? &s->mlp_in : NULL, F, D);
        ADD(s ? &s->out : NULL, D, D + F);
    }
    ADD(&w->final_shift, D, D);
    ADD(&w->final_scale, D, D);
    ADD(&w->final_out, c->out_channels, D);
#undef ADD
    return n;
}

void cd_flux_dev_store_free(cd_flux_dev_store *st) {
    if (st->ops) st->ops->free(st->ctx, st->block);
    free(st->dbl);
    free(st->sgl);
    memset(st, 0, sizeof *st);
}

cd_status cd_flux_weights_to_backend(cd_ctx *ctx, const cd_ops *ops, const cd_flux_weights *hw, cd_flux_weights *dw,
                                     cd_flux_dev_store *st) {
    memset(st, 0, sizeof *st);
    const cd_flux_config *c = &hw->cfg;
    *dw = *hw;
    st->dbl = malloc(sizeof(cd_flux_double) * ((size_t)c->depth + 1));
    st->sgl = malloc(sizeof(cd_flux_single) * ((size_t)c->depth_single + 1));
    const size_t nlin = cd_flux_list_linears(dw, NULL);
    cd_lin_ref *lr = calloc(nlin, sizeof *lr);
    vec_ref *vr = NULL;
    uint16_t *stage = NULL;
    cd_status s = CD_OK;
    if (!st->dbl || !st->sgl || !lr) goto oom;
    memcpy(st->dbl, hw->dbl, sizeof(cd_flux_double) * (size_t)c->depth);
    memcpy(st->sgl, hw->sgl, sizeof(cd_flux_single) * (size_t)c->depth_single);
    dw->dbl = st->dbl;
    dw->sgl = st->sgl;
    cd_flux_list_linears(dw, lr);
    const size_t nvec = list_vectors(c, dw, NULL);
    vr = calloc(nvec + 1, sizeof *vr);
    if (!vr) goto oom;
    list_vectors(c, dw, vr);

    size_t total = 0, widest = 0;
    for (size_t i = 0; i < nlin; i++) {
        const cd_weight *w = &lr[i].l->w;
        if (w->dtype != CD_DTYPE_F32 && w->dtype != CD_DTYPE_BF16) {
            s = cd_set_error(ctx, CD_ERR_UNSUPPORTED, "flux: %s weights cannot go to %s (F32 or BF16 only)",
                             cd_dtype_name(w->dtype), ops->name);
            goto fail;
        }
        const size_t cnt = (size_t)w->out * (size_t)w->in;
        total += up(cnt * 2) + (lr[i].l->b ? up((size_t)w->out * 4) : 0);
        if (cnt > widest) widest = cnt;
    }
    for (size_t i = 0; i < nvec; i++) total += up(vr[i].n * 4);
    stage = malloc(widest * 2 + 1);
    if (!stage) goto oom;
    if ((s = ops->alloc(ctx, total, &st->block)))
        return cd_flux_dev_store_free(st), free(lr), free(vr), free(stage),
               cd_set_error(ctx, s, "flux: cannot hold the weights (%zu MiB as BF16) on %s: %s", total >> 20, ops->name,
                            cd_ctx_error(ctx));
    st->ops = ops;
    st->ctx = ctx;
    st->bytes = total;
    char *p = st->block;
    for (size_t i = 0; i < nlin && !s; i++) {
        cd_lin *l = lr[i].l;
        const size_t cnt = (size_t)l->w.out * (size_t)l->w.in;
        const void *src = l->w.data;
        if (l->w.dtype == CD_DTYPE_F32) {
            const float *f = l->w.data;
            for (size_t j = 0; j < cnt; j++) stage[j] = cd_f32_to_bf16(f[j]);
            src = stage;
        }
        s = ops->upload(ctx, p, src, cnt * 2);
        l->w.data = p;
        l->w.dtype = CD_DTYPE_BF16;
        p += up(cnt * 2);
        if (l->b && !s) {
            s = ops->upload(ctx, p, l->b, (size_t)l->w.out * 4);
            l->b = (const float *)p;
            p += up((size_t)l->w.out * 4);
        }
        /* the staging buffer is reused by the next F32 weight: pageable uploads return once the
         * source was read, and sync makes that explicit for any backend */
        if (!s && l->w.data && src == stage) s = ops->sync(ctx);
    }
    for (size_t i = 0; i < nvec && !s; i++) {
        s = ops->upload(ctx, p, *vr[i].p, vr[i].n * 4);
        *vr[i].p = (const float *)p;
        p += up(vr[i].n * 4);
    }
    if (!s) s = ops->sync(ctx);
    if (s) goto fail;
    free(lr);
    free(vr);
    free(stage);
    return CD_OK;
oom:
    s = cd_set_error(ctx, CD_ERR_OOM, "flux: out of host memory while preparing weights for %s", ops->name);
fail:
    cd_flux_dev_store_free(st);
    free(lr);
    free(vr);
    free(stage);
    return s;
}
