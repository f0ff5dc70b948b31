/* params.c — the named f32 parameter buffer of a FLUX transformer (params.h). One walker visits
 * every tensor in a fixed order; it sizes the list, binds a cd_flux_weights to a buffer, and
 * copies a loaded model in. */
#include "params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { W_LIST, W_BIND, W_COPY } walk_mode;

typedef struct {
    walk_mode mode;
    cd_param_list *l;        /* W_LIST: appended to (l->p may be NULL: count only) */
    const cd_param_list *cl; /* W_BIND / W_COPY: the finished list */
    size_t i;                /* next param index */
    float *buf;
    const cd_flux_weights *src; /* W_COPY */
    cd_ctx *ctx;
    cd_status err;
} walker;

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

static void add(walker *k, const char *name, cd_param_kind kind, int ndim, const int64_t *shape, int clear, int pack) {
    if (k->mode != W_LIST) return;
    cd_param_list *l = k->l;
    if (l->p) {
        cd_param *p = &l->p[l->n];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", name);
        p->kind = kind;
        p->ndim = ndim;
        p->numel = 1;
        for (int d = 0; d < ndim; d++) {
            p->shape[d] = shape[d];
            p->numel *= (size_t)shape[d];
        }
        p->offset = l->total;
        p->clear = clear;
        l->total += pack ? p->numel : align16(p->numel);
    }
    l->n++;
}

/* The buffer address of the next param (W_BIND / W_COPY), advancing the index. */
static float *next(walker *k) {
    const cd_param *p = &k->cl->p[k->i++];
    return k->buf + p->offset;
}

/* A source tensor (F32 or BF16) into dst. */
static void copy_in(walker *k, float *dst, const void *src, cd_dtype dt, size_t n) {
    if (!src) {
        if (!k->err) k->err = cd_set_error(k->ctx, CD_ERR_INVALID_ARG, "params: the source model lacks a tensor");
        return;
    }
    if (dt == CD_DTYPE_BF16)
        for (size_t i = 0; i < n; i++) dst[i] = cd_bf16_to_f32(((const uint16_t *)src)[i]);
    else
        memcpy(dst, src, n * sizeof(float));
}

/* A linear "base" (weight [out, in] and bias [out]) bound to / copied from *lin. */
static void linear(walker *k, const char *base, cd_lin *lin, int32_t out, int32_t in, int clear) {
    char n[CD_PARAM_NAME_MAX];
    const int64_t ws[2] = {out, in}, bs[1] = {out};
    if (k->mode == W_LIST) {
        snprintf(n, sizeof n, "%s.weight", base);
        add(k, n, CD_PARAM_LINEAR_W, 2, ws, clear, 0);
        snprintf(n, sizeof n, "%s.bias", base);
        add(k, n, CD_PARAM_BIAS, 1, bs, clear, 0);
        return;
    }
    float *w = next(k), *b = next(k);
    const size_t nw = (size_t)out * (size_t)in;
    if (k->mode == W_BIND) {
        lin->w = (cd_weight){w, CD_DTYPE_F32, out, in};
        lin->b = b;
    } else {
        copy_in(k, w, lin->w.data, lin->w.dtype, nw);
        if (lin->b)
            memcpy(b, lin->b, (size_t)out * sizeof(float));
        else
            memset(b, 0, (size_t)out * sizeof(float));
    }
}

static void norm(walker *k, const char *name, const float **ptr, int32_t hd) {
    const int64_t s[1] = {hd};
    if (k->mode == W_LIST) {
        add(k, name, CD_PARAM_NORM, 1, s, 0, 0);
        return;
    }
    float *p = next(k);
    if (k->mode == W_BIND)
        *ptr = p;
    else
        copy_in(k, p, *ptr, CD_DTYPE_F32, (size_t)hd);
}

/* The source linears of W_COPY are read through the same walk on a writable copy of the source
 * struct (the walker only reads them in that mode). */
static void walk(walker *k, cd_flux_weights *w) {
    const cd_flux_config *c = k->mode == W_LIST ? &k->l->cfg : &k->cl->cfg;
    const int32_t D = c->hidden, F = c->mlp_hidden, HD = c->head_dim;
    char b[CD_PARAM_NAME_MAX];
    linear(k, "x_embedder", &w->img_in, D, c->in_channels, 0);
    linear(k, "context_embedder", &w->txt_in, D, c->context_dim, 0);
    linear(k, "time_text_embed.timestep_embedder.linear_1", &w->time_in1, D, 256, 0);
    linear(k, "time_text_embed.timestep_embedder.linear_2", &w->time_in2, D, D, 0);
    if (c->guidance) {
        linear(k, "time_text_embed.guidance_embedder.linear_1", &w->guid_in1, D, 256, 0);
        linear(k, "time_text_embed.guidance_embedder.linear_2", &w->guid_in2, D, D, 0);
    }
    linear(k, "time_text_embed.text_embedder.linear_1", &w->vec_in1, D, c->pooled_dim, 0);
    linear(k, "time_text_embed.text_embedder.linear_2", &w->vec_in2, D, D, 0);
    for (int i = 0; i < c->depth; i++) {
        cd_flux_double *db = &w->dbl[i];
#define B(s) (snprintf(b, sizeof b, "transformer_blocks.%d.%s", i, s), b)
        linear(k, B("norm1.linear"), &db->img.mod, 6 * D, D, 0);
        linear(k, B("norm1_context.linear"), &db->txt.mod, 6 * D, D, 0);
        linear(k, B("attn.to_q"), &db->img.q, D, D, 1);
        linear(k, B("attn.to_k"), &db->img.k, D, D, 1);
        linear(k, B("attn.to_v"), &db->img.v, D, D, 1);
        linear(k, B("attn.add_q_proj"), &db->txt.q, D, D, 0);
        linear(k, B("attn.add_k_proj"), &db->txt.k, D, D, 0);
        linear(k, B("attn.add_v_proj"), &db->txt.v, D, D, 0);
        norm(k, B("attn.norm_q.weight"), &db->img.norm_q, HD);
        norm(k, B("attn.norm_k.weight"), &db->img.norm_k, HD);
        norm(k, B("attn.norm_added_q.weight"), &db->txt.norm_q, HD);
        norm(k, B("attn.norm_added_k.weight"), &db->txt.norm_k, HD);
        linear(k, B("attn.to_out.0"), &db->img.proj, D, D, 1);
        linear(k, B("attn.to_add_out"), &db->txt.proj, D, D, 0);
        linear(k, B("ff.net.0.proj"), &db->img.mlp0, F, D, 0);
        linear(k, B("ff.net.2"), &db->img.mlp2, D, F, 0);
        linear(k, B("ff_context.net.0.proj"), &db->txt.mlp0, F, D, 0);
        linear(k, B("ff_context.net.2"), &db->txt.mlp2, D, F, 0);
#undef B
    }
    for (int i = 0; i < c->depth_single; i++) {
        cd_flux_single *s = &w->sgl[i];
#define B(x) (snprintf(b, sizeof b, "single_transformer_blocks.%d.%s", i, x), b)
        linear(k, B("norm.linear"), &s->mod, 3 * D, D, 0);
        linear(k, B("attn.to_q"), &s->q, D, D, 1);
        linear(k, B("attn.to_k"), &s->k, D, D, 1);
        linear(k, B("attn.to_v"), &s->v, D, D, 1);
        norm(k, B("attn.norm_q.weight"), &s->norm_q, HD);
        norm(k, B("attn.norm_k.weight"), &s->norm_k, HD);
        linear(k, B("proj_mlp"), &s->mlp_in, F, D, 0);
        linear(k, B("proj_out"), &s->out, D, D + F, 0);
#undef B
    }
    /* norm_out.linear [2D, D]: scale rows then shift rows (diffusers) */
    if (k->mode == W_LIST) {
        const int64_t ws[2] = {2 * D, D}, bs[1] = {2 * D};
        add(k, "norm_out.linear.weight", CD_PARAM_LINEAR_W, 2, ws, 0, 0);
        add(k, "norm_out.linear.bias", CD_PARAM_BIAS, 1, bs, 0, 0);
    } else {
        float *wt = next(k), *bs = next(k);
        const size_t dd = (size_t)D * (size_t)D;
        if (k->mode == W_BIND) {
            w->final_scale = (cd_lin){{wt, CD_DTYPE_F32, D, D}, bs};
            w->final_shift = (cd_lin){{wt + dd, CD_DTYPE_F32, D, D}, bs + D};
        } else {
            copy_in(k, wt, w->final_scale.w.data, w->final_scale.w.dtype, dd);
            copy_in(k, wt + dd, w->final_shift.w.data, w->final_shift.w.dtype, dd);
            copy_in(k, bs, w->final_scale.b, CD_DTYPE_F32, (size_t)D);
            copy_in(k, bs + D, w->final_shift.b, CD_DTYPE_F32, (size_t)D);
        }
    }
    linear(k, "proj_out", &w->final_out, c->out_channels, D, 0);
    /* CLEAR spatial weights: contiguous [layers][d*d] (the forward's layout) */
    const int32_t d = k->mode == W_LIST ? k->l->down : k->cl->down;
    if (d >= 2) {
        const int layers = c->depth + c->depth_single;
        if (k->mode == W_LIST && k->l->p) k->l->total = align16(k->l->total);
        float *first = NULL;
        for (int l = 0; l < layers; l++) {
            if (l < c->depth)
                snprintf(b, sizeof b, "transformer_blocks.%d.attn.processor.spatial_weight", l);
            else
                snprintf(b, sizeof b, "single_transformer_blocks.%d.attn.processor.spatial_weight", l - c->depth);
            const int64_t s[7] = {1, 1, 1, d, 1, d, 1};
            if (k->mode == W_LIST) {
                add(k, b, CD_PARAM_SPATIAL, 7, s, 1, 1);
                continue;
            }
            float *p = next(k);
            if (!first) first = p;
            if (k->mode == W_COPY) {
                if (!w->spatial_weight || w->spatial_down != d) {
                    if (!k->err)
                        k->err = cd_set_error(k->ctx, CD_ERR_INVALID_ARG,
                                              "params: the source has no spatial weights of side %d", d);
                } else {
                    memcpy(p, w->spatial_weight + (size_t)l * d * d, (size_t)d * d * sizeof(float));
                }
            }
        }
        if (k->mode == W_BIND) {
            w->spatial_weight = first;
            w->spatial_down = d;
        }
    }
}

cd_status cd_params_list(cd_ctx *ctx, const cd_flux_config *cfg, int32_t down, cd_param_list *out) {
    memset(out, 0, sizeof *out);
    out->cfg = *cfg;
    out->down = down >= 2 ? down : 0;
    /* the walk visits the struct's fields; listing writes nothing to them */
    cd_flux_weights none;
    memset(&none, 0, sizeof none);
    none.dbl = calloc((size_t)(cfg->depth > 0 ? cfg->depth : 1), sizeof *none.dbl);
    none.sgl = calloc((size_t)(cfg->depth_single > 0 ? cfg->depth_single : 1), sizeof *none.sgl);
    walker k = {W_LIST, out, NULL, 0, NULL, NULL, ctx, CD_OK};
    if (none.dbl && none.sgl) walk(&k, &none); /* count */
    const size_t n = out->n;
    out->p = none.dbl && none.sgl ? calloc(n ? n : 1, sizeof *out->p) : NULL;
    if (out->p) {
        out->n = 0;
        walk(&k, &none); /* fill */
    }
    cd_params_unbind(&none);
    if (!out->p) return cd_set_error(ctx, CD_ERR_OOM, "params: out of memory");
    out->total = align16(out->total);
    return CD_OK;
}

void cd_params_free(cd_param_list *l) {
    free(l->p);
    memset(l, 0, sizeof *l);
}

const cd_param *cd_params_find(const cd_param_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->p[i].name, name)) return &l->p[i];
    return NULL;
}

cd_status cd_params_bind(cd_ctx *ctx, const cd_param_list *l, float *buf, cd_flux_weights *w) {
    memset(w, 0, sizeof *w);
    w->cfg = l->cfg;
    w->dbl = calloc((size_t)(l->cfg.depth ? l->cfg.depth : 1), sizeof *w->dbl);
    w->sgl = calloc((size_t)(l->cfg.depth_single ? l->cfg.depth_single : 1), sizeof *w->sgl);
    if (!w->dbl || !w->sgl) {
        cd_params_unbind(w);
        return cd_set_error(ctx, CD_ERR_OOM, "params: out of memory");
    }
    walker k = {W_BIND, NULL, l, 0, buf, NULL, ctx, CD_OK};
    walk(&k, w);
    return CD_OK;
}

void cd_params_unbind(cd_flux_weights *w) {
    free(w->dbl);
    free(w->sgl);
    w->dbl = NULL;
    w->sgl = NULL;
}

cd_status cd_params_copy_from(cd_ctx *ctx, const cd_param_list *l, const cd_flux_weights *src, float *buf) {
    const cd_flux_config *a = &l->cfg, *b = &src->cfg;
    if (a->hidden != b->hidden || a->heads != b->heads || a->depth != b->depth || a->depth_single != b->depth_single ||
        a->in_channels != b->in_channels || a->out_channels != b->out_channels || a->context_dim != b->context_dim ||
        a->pooled_dim != b->pooled_dim || a->mlp_hidden != b->mlp_hidden || a->guidance != b->guidance)
        return cd_set_error(ctx, CD_ERR_SHAPE, "params: the source model has another configuration");
    cd_flux_weights tmp = *src; /* the walk reads the linears through a writable copy */
    walker k = {W_COPY, NULL, l, 0, buf, src, ctx, CD_OK};
    walk(&k, &tmp);
    return k.err;
}

static int is_zero_init(const char *name) {
    const char *zero[] = {"norm1.linear", "norm1_context.linear", "norm.linear", "norm_out.linear"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (strstr(name, zero[i])) return 1;
    return !strncmp(name, "proj_out.", 9);
}

void cd_params_init(const cd_param_list *l, float *buf, uint64_t seed) {
    memset(buf, 0, l->total * sizeof(float));
    for (size_t i = 0; i < l->n; i++) {
        const cd_param *p = &l->p[i];
        float *x = buf + p->offset;
        switch (p->kind) {
            case CD_PARAM_LINEAR_W: {
                if (is_zero_init(p->name)) break;
                const double a = sqrt(6.0 / (double)(p->shape[0] + p->shape[1]));
                for (size_t j = 0; j < p->numel; j++) {
                    const double u = (double)(cd_mix64(seed ^ cd_mix64(i * 0x9E3779B97F4A7C15ull + j)) >> 11) * 0x1p-53;
                    x[j] = (float)(a * (2.0 * u - 1.0));
                }
                break;
            }
            case CD_PARAM_NORM:
                for (size_t j = 0; j < p->numel; j++) x[j] = 1.0f;
                break;
            case CD_PARAM_SPATIAL:
                for (size_t j = 0; j < p->numel; j++) x[j] = 1.0f / (float)p->numel;
                break;
            case CD_PARAM_BIAS: break;
        }
    }
}
