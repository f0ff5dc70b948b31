/* flux_load.c — binds a FLUX checkpoint (BFL or diffusers names) to cd_flux_weights: projections
 * point into the mapped tensors (row slices of BFL's fused qkv / linear1 / final adaLN), biases and
 * norm scales are converted to f32 in one arena, CLEAR attention weights re-point the trained
 * projections (docs/distillation.md). Canonical names are diffusers' (one tensor per projection); in a
 * BFL checkpoint each is found through the layout plan of io/layout_flux.c, the same table that
 * `cleardit convert` uses. */
#include "flux_load.h"
#include "../io/layout.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A row range of a checkpoint tensor. */
typedef struct {
    const cd_st_tensor *t;
    int64_t row0, rows, cols;
} view;

typedef struct {
    cd_ctx *ctx;
    const cd_ckpt *ck;
    int bfl;              /* 1: BFL names, 0: diffusers names */
    const lay_plan *plan; /* BFL <-> diffusers row segments (io/layout_flux.c), when bfl */
    int64_t D, F;
    char *arena; /* NULL in the sizing pass */
    size_t used, cap;
    cd_status err;
} binder;

static int64_t rows_of(const cd_st_tensor *t) { return t->ndim >= 1 ? t->shape[0] : 1; }
static int64_t cols_of(const cd_st_tensor *t) {
    int64_t c = 1;
    for (int i = 1; i < t->ndim; i++) c *= t->shape[i];
    return c;
}

/* Finds rows [drow0, drow0 + drows) (drows < 0: all) of a diffusers-named tensor; in a BFL
 * checkpoint, through the layout plan's segments (a row slice of a fused tensor such as
 * img_attn.qkv or linear1, or the other half of the final adaLN). Missing: error unless optional. */
static int resolve(binder *b, view *v, int optional, int64_t drow0, int64_t drows, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int resolve(binder *b, view *v, int optional, int64_t drow0, int64_t drows, const char *fmt, ...) {
    char dname[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dname, sizeof dname, fmt, ap);
    va_end(ap);
    const char *name = dname;
    int64_t row0 = drow0;
    v->t = NULL;
    if (b->bfl) {
        const long i1 = lay_set_find(&b->plan->side[LAY_DIF], dname);
        const lay_seg *seg = NULL;
        if (i1 >= 0) {
            const lay_tensor *dt = &b->plan->side[LAY_DIF].t[i1];
            if (drows < 0) drows = (dt->ndim >= 1 ? dt->shape[0] : 1) - drow0;
            for (size_t i = 0; i < b->plan->nseg && !seg; i++) {
                const lay_seg *sg = &b->plan->seg[i];
                if (sg->t[LAY_DIF] == (uint32_t)i1 && sg->row[LAY_DIF] <= drow0 &&
                    drow0 + drows <= sg->row[LAY_DIF] + sg->rows)
                    seg = sg;
            }
        }
        if (!seg) goto missing;
        name = b->plan->side[LAY_BFL].t[seg->t[LAY_BFL]].name;
        row0 = seg->row[LAY_BFL] + (drow0 - seg->row[LAY_DIF]);
    }
    v->t = cd_ckpt_find(b->ck, name);
    if (!v->t) goto missing;
    v->cols = cols_of(v->t);
    v->row0 = row0;
    v->rows = drows < 0 ? rows_of(v->t) - row0 : drows;
    if (v->row0 < 0 || v->row0 + v->rows > rows_of(v->t)) {
        if (!b->err)
            b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "flux: tensor '%s' has %lld rows, needs %lld", name,
                                  (long long)rows_of(v->t), (long long)(v->row0 + v->rows));
        return 0;
    }
    return 1;
missing:
    if (!optional && !b->err) {
        if (name != dname)
            b->err = cd_set_error(b->ctx, CD_ERR_NOT_FOUND, "flux: checkpoint has no tensor '%s' (diffusers name '%s')",
                                  name, dname);
        else
            b->err = cd_set_error(b->ctx, CD_ERR_NOT_FOUND, "flux: checkpoint has no tensor '%s'%s", dname,
                                  b->bfl ? " (nor its BFL counterpart)" : "");
    }
    v->t = NULL;
    return 0;
}

static void *arena_take(binder *b, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = b->arena ? b->arena + b->used : NULL;
    b->used += bytes;
    return p;
}

/* A view's elements as f32 in the arena (biases, norm scales, spatial weights). */
static const float *to_f32(binder *b, const view *v) {
    const size_t n = (size_t)(v->rows * v->cols);
    float *dst = arena_take(b, n * sizeof(float));
    if (!dst || b->err) return dst;
    const size_t es = (size_t)cd_dtype_bits(v->t->dtype) / 8;
    cd_st_tensor sub = *v->t;
    sub.data = (const char *)v->t->data + (size_t)(v->row0 * v->cols) * es;
    sub.ndim = 1;
    sub.shape[0] = (int64_t)n;
    sub.nbytes = n * es;
    cd_status s = cd_st_to_f32(b->ctx, &sub, dst);
    if (s) b->err = s;
    return dst;
}

/* A linear layer from rows [drow0, drow0 + out) of diffusers tensor `base` (drow0 < 0: the whole
 * tensor, which must have `out` rows): weight [out, in] (kept in place unless misaligned), bias. */
static void bind_lin_rows(binder *b, cd_lin *l, int64_t out, int64_t in, int optional, const char *base,
                          int64_t drow0) {
    view w, bias;
    memset(l, 0, sizeof *l);
    const int64_t r0 = drow0 < 0 ? 0 : drow0, rows = drow0 < 0 ? -1 : out;
    if (!resolve(b, &w, optional, r0, rows, "%s.weight", base)) return;
    if (w.rows != out || w.cols != in) {
        if (!b->err)
            b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "flux: '%s.weight' is [%lld, %lld], expected [%lld, %lld]",
                                  base, (long long)w.rows, (long long)w.cols, (long long)out, (long long)in);
        return;
    }
    if (w.t->dtype != CD_DTYPE_F32 && w.t->dtype != CD_DTYPE_BF16) {
        /* other float types (F16, F8) are expanded once to f32 */
        view whole = w;
        l->w.data = to_f32(b, &whole);
        l->w.dtype = CD_DTYPE_F32;
    } else {
        const size_t es = w.t->dtype == CD_DTYPE_F32 ? 4 : 2;
        const char *p = (const char *)w.t->data + (size_t)(w.row0 * w.cols) * es;
        if ((uintptr_t)p % es) { /* never hand a misaligned pointer to BLAS: copy as f32 */
            l->w.data = to_f32(b, &w);
            l->w.dtype = CD_DTYPE_F32;
        } else {
            l->w.data = p;
            l->w.dtype = w.t->dtype;
        }
    }
    l->w.out = (int32_t)out;
    l->w.in = (int32_t)in;
    if (resolve(b, &bias, 1, r0, rows, "%s.bias", base)) {
        if (bias.rows * bias.cols != out) {
            if (!b->err)
                b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "flux: '%s.bias' has %lld elements, expected %lld", base,
                                      (long long)(bias.rows * bias.cols), (long long)out);
            return;
        }
        l->b = to_f32(b, &bias);
    }
}

static void bind_lin(binder *b, cd_lin *l, int64_t out, int64_t in, int optional, const char *base) {
    bind_lin_rows(b, l, out, in, optional, base, -1);
}

static const float *bind_vec(binder *b, int64_t n, const char *name) {
    view v;
    if (!resolve(b, &v, 0, 0, -1, "%s", name)) return NULL;
    if (v.rows * v.cols != n) {
        if (!b->err)
            b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "flux: '%s' has %lld elements, expected %lld", name,
                                  (long long)(v.rows * v.cols), (long long)n);
        return NULL;
    }
    return to_f32(b, &v);
}

static void bind_all(binder *b, cd_flux_weights *w) {
    const cd_flux_config *c = &w->cfg;
    const int64_t D = c->hidden, F = c->mlp_hidden, HD = c->head_dim;
    char base[128];
    bind_lin(b, &w->img_in, D, c->in_channels, 0, "x_embedder");
    bind_lin(b, &w->txt_in, D, c->context_dim, 0, "context_embedder");
    bind_lin(b, &w->time_in1, D, 256, 0, "time_text_embed.timestep_embedder.linear_1");
    bind_lin(b, &w->time_in2, D, D, 0, "time_text_embed.timestep_embedder.linear_2");
    bind_lin(b, &w->vec_in1, D, c->pooled_dim, 0, "time_text_embed.text_embedder.linear_1");
    bind_lin(b, &w->vec_in2, D, D, 0, "time_text_embed.text_embedder.linear_2");
    if (c->guidance) {
        bind_lin(b, &w->guid_in1, D, 256, 0, "time_text_embed.guidance_embedder.linear_1");
        bind_lin(b, &w->guid_in2, D, D, 0, "time_text_embed.guidance_embedder.linear_2");
    }
    for (int i = 0; i < c->depth && !b->err; i++) {
        cd_flux_double *d = b->arena ? &w->dbl[i] : &(cd_flux_double){0};
        const struct {
            cd_flux_stream *s;
            const char *q, *k, *v, *out, *ff, *mod, *nq, *nk;
        } st[2] = {
            {&d->img, "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "ff", "norm1.linear",
             "attn.norm_q.weight", "attn.norm_k.weight"},
            {&d->txt, "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out", "ff_context",
             "norm1_context.linear", "attn.norm_added_q.weight", "attn.norm_added_k.weight"},
        };
        for (int s = 0; s < 2; s++) {
#define B(field, out, in, name)                                       \
    snprintf(base, sizeof base, "transformer_blocks.%d.%s", i, name); \
    bind_lin(b, &st[s].s->field, out, in, 0, base)
            B(mod, 6 * D, D, st[s].mod);
            B(q, D, D, st[s].q);
            B(k, D, D, st[s].k);
            B(v, D, D, st[s].v);
            B(proj, D, D, st[s].out);
            char ffn[64];
            snprintf(ffn, sizeof ffn, "%s.net.0.proj", st[s].ff);
            B(mlp0, F, D, ffn);
            snprintf(ffn, sizeof ffn, "%s.net.2", st[s].ff);
            B(mlp2, D, F, ffn);
#undef B
            snprintf(base, sizeof base, "transformer_blocks.%d.%s", i, st[s].nq);
            st[s].s->norm_q = bind_vec(b, HD, base);
            snprintf(base, sizeof base, "transformer_blocks.%d.%s", i, st[s].nk);
            st[s].s->norm_k = bind_vec(b, HD, base);
        }
    }
    for (int i = 0; i < c->depth_single && !b->err; i++) {
        cd_flux_single *s = b->arena ? &w->sgl[i] : &(cd_flux_single){0};
#define B(field, out, in, name)                                              \
    snprintf(base, sizeof base, "single_transformer_blocks.%d.%s", i, name); \
    bind_lin(b, &s->field, out, in, 0, base)
        B(mod, 3 * D, D, "norm.linear");
        B(q, D, D, "attn.to_q");
        B(k, D, D, "attn.to_k");
        B(v, D, D, "attn.to_v");
        B(mlp_in, F, D, "proj_mlp");
        B(out, D, D + F, "proj_out");
#undef B
        snprintf(base, sizeof base, "single_transformer_blocks.%d.attn.norm_q.weight", i);
        s->norm_q = bind_vec(b, HD, base);
        snprintf(base, sizeof base, "single_transformer_blocks.%d.attn.norm_k.weight", i);
        s->norm_k = bind_vec(b, HD, base);
    }
    /* final adaLN: diffusers norm_out.linear rows are (scale | shift); BFL's are (shift | scale),
     * which the plan's segments map */
    bind_lin_rows(b, &w->final_scale, D, D, 0, "norm_out.linear", 0);
    bind_lin_rows(b, &w->final_shift, D, D, 0, "norm_out.linear", D);
    bind_lin(b, &w->final_out, c->out_channels, D, 0, "proj_out");
}

cd_status cd_flux_bind(cd_ctx *ctx, const cd_ckpt *ck, const cd_flux_config *cfg, int bfl, cd_flux_weights *w,
                       cd_flux_store *store) {
    memset(w, 0, sizeof *w);
    memset(store, 0, sizeof *store);
    w->cfg = *cfg;
    lay_plan plan;
    lay_plan_init(&plan);
    if (bfl) {
        lay_flux_cfg lc;
        memset(&lc, 0, sizeof lc); /* no spatial weights: CLEAR files are bound separately */
        lc.c = *cfg;
        if (lay_flux_plan(&lc, (1 << LAY_BFL) | (1 << LAY_DIF), &plan)) {
            lay_plan_free(&plan);
            return cd_set_error(ctx, CD_ERR_OOM, "flux: out of memory");
        }
    }
    binder b = {ctx, ck, bfl, &plan, cfg->hidden, cfg->mlp_hidden, NULL, 0, 0, CD_OK};
    bind_all(&b, w); /* sizing pass: resolves and checks every tensor, allocates nothing */
    if (b.err) {
        lay_plan_free(&plan);
        return b.err;
    }
    const size_t blocks =
        sizeof(cd_flux_double) * (size_t)cfg->depth + sizeof(cd_flux_single) * (size_t)cfg->depth_single + 128;
    const size_t total = ((b.used + blocks + 63) & ~(size_t)63);
    char *arena = aligned_alloc(64, total);
    if (!arena) {
        lay_plan_free(&plan);
        return cd_set_error(ctx, CD_ERR_OOM, "flux: cannot allocate %zu bytes for weights", total);
    }
    memset(arena, 0, total);
    w->dbl = (cd_flux_double *)arena;
    w->sgl = (cd_flux_single *)(arena + sizeof(cd_flux_double) * (size_t)cfg->depth);
    b.arena = arena + ((blocks + 63) & ~(size_t)63);
    b.used = 0;
    b.cap = total;
    bind_all(&b, w);
    lay_plan_free(&plan);
    if (b.err) {
        free(arena);
        memset(w, 0, sizeof *w);
        return b.err;
    }
    store->arena = arena;
    store->bytes = total;
    return CD_OK;
}

void cd_flux_store_free(cd_flux_store *s) {
    free(s->arena);
    memset(s, 0, sizeof *s);
}

/* ---- CLEAR overlay ------------------------------------------------------------------------- */

static const char *const k_clear_dbl[4] = {"to_q", "to_k", "to_v", "to_out.0"};
static const char *const k_clear_sgl[3] = {"to_q", "to_k", "to_v"};

/* 1 if name is a tensor a CLEAR file may hold for this config. */
static int clear_name_known(const cd_flux_config *c, const char *name) {
    int i = -1, n = 0, blocks = 0, nproj = 0;
    const char *const *proj = NULL;
    if (sscanf(name, "transformer_blocks.%d.%n", &i, &n) == 1 && n > 0) {
        blocks = c->depth;
        proj = k_clear_dbl;
        nproj = 4;
    } else if (n = 0, sscanf(name, "single_transformer_blocks.%d.%n", &i, &n) == 1 && n > 0) {
        blocks = c->depth_single;
        proj = k_clear_sgl;
        nproj = 3;
    } else {
        return 0;
    }
    if (i < 0 || i >= blocks) return 0;
    const char *rest = name + n;
    if (!strcmp(rest, "attn.processor.spatial_weight")) return 1;
    char want[64];
    for (int p = 0; p < nproj; p++)
        for (int s = 0; s < 2; s++) {
            snprintf(want, sizeof want, "attn.%s.%s", proj[p], s ? "bias" : "weight");
            if (!strcmp(rest, want)) return 1;
        }
    return 0;
}

/* A spatial weight holds d*d elements in a shape whose dimensions other than 1 are (d, d). */
static int spatial_shape_ok(const cd_st_tensor *t, int64_t d) {
    int big = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 1) continue;
        if (t->shape[i] != d) return 0;
        big++;
    }
    return big == 2 || (big == 0 && d == 1);
}

/* Binds the CLEAR projections into lins [depth * 4 + depth_single * 3] and, when the file has
 * them, the spatial weights into one [layers][d*d] f32 block (*sw, *down). */
static void bind_clear_all(binder *b, const cd_flux_config *c, cd_lin *lins, const float **sw, int32_t *down) {
    const int64_t D = c->hidden;
    const int layers = c->depth + c->depth_single;
    char base[128];
    size_t li = 0;
    for (int i = 0; i < c->depth; i++)
        for (int p = 0; p < 4; p++, li++) {
            snprintf(base, sizeof base, "transformer_blocks.%d.attn.%s", i, k_clear_dbl[p]);
            view bias;
            if (!resolve(b, &bias, 0, 0, -1, "%s.bias", base)) return; /* FLUX projections have biases */
            bind_lin(b, &lins[li], D, D, 0, base);
        }
    for (int i = 0; i < c->depth_single; i++)
        for (int p = 0; p < 3; p++, li++) {
            snprintf(base, sizeof base, "single_transformer_blocks.%d.attn.%s", i, k_clear_sgl[p]);
            view bias;
            if (!resolve(b, &bias, 0, 0, -1, "%s.bias", base)) return;
            bind_lin(b, &lins[li], D, D, 0, base);
        }
    if (b->err) return;
    /* spatial weights: all layers or none, one d */
    int have = 0;
    int64_t d = 0;
    for (int pass = 0; pass < 2; pass++) {
        float *dst = NULL;
        if (pass == 1) {
            *sw = NULL;
            *down = 0;
            if (!have) return;
            if (have != layers) {
                b->err =
                    cd_set_error(b->ctx, CD_ERR_NOT_FOUND,
                                 "flux: CLEAR file has spatial_weight for %d of %d attention layers", have, layers);
                return;
            }
            dst = arena_take(b, (size_t)layers * (size_t)(d * d) * sizeof(float));
            *down = (int32_t)d;
            *sw = dst;
            if (!dst) return; /* sizing pass of the binder */
        }
        for (int l = 0; l < layers; l++) {
            if (l < c->depth)
                snprintf(base, sizeof base, "transformer_blocks.%d.attn.processor.spatial_weight", l);
            else
                snprintf(base, sizeof base, "single_transformer_blocks.%d.attn.processor.spatial_weight", l - c->depth);
            const cd_st_tensor *t = cd_ckpt_find(b->ck, base);
            if (!t) continue;
            if (pass == 1) {
                cd_status s = cd_st_to_f32(b->ctx, t, dst + (size_t)l * (size_t)(d * d));
                if (s) {
                    b->err = s;
                    return;
                }
                continue;
            }
            have++;
            const uint64_t n = cd_st_numel(t);
            const int64_t r = (int64_t)llround(sqrt((double)n));
            if (!d) d = r;
            if ((uint64_t)(r * r) != n || r != d || d < 2 || !spatial_shape_ok(t, d)) {
                b->err = cd_set_error(b->ctx, CD_ERR_SHAPE,
                                      "flux: CLEAR '%s' must hold d x d elements with the same d >= 2 "
                                      "in every layer (shape [1,1,1,d,1,d,1] or [d,d]); got %llu elements",
                                      base, (unsigned long long)n);
                return;
            }
        }
    }
}

cd_status cd_flux_bind_clear(cd_ctx *ctx, const cd_ckpt *clear, cd_flux_weights *w, cd_flux_store *extra) {
    memset(extra, 0, sizeof *extra);
    const cd_flux_config *c = &w->cfg;
    if ((c->depth > 0 && !w->dbl) || (c->depth_single > 0 && !w->sgl))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "flux: CLEAR overlay needs bound base weights");
    for (size_t i = 0; i < cd_ckpt_count(clear); i++) {
        const cd_st_tensor *t = cd_ckpt_at(clear, i);
        if (!clear_name_known(c, t->name))
            return cd_set_error(ctx, CD_ERR_FORMAT,
                                "flux: CLEAR file has '%s', which is not a CLEAR tensor of this model "
                                "(%d double, %d single blocks)",
                                t->name, c->depth, c->depth_single);
    }
    const size_t nl = (size_t)c->depth * 4 + (size_t)c->depth_single * 3;
    cd_lin *lins = calloc(nl ? nl : 1, sizeof *lins);
    if (!lins) return cd_set_error(ctx, CD_ERR_OOM, "flux: out of memory");
    binder b = {ctx, clear, 0, NULL, c->hidden, c->mlp_hidden, NULL, 0, 0, CD_OK};
    const float *sw = NULL;
    int32_t down = 0;
    bind_clear_all(&b, c, lins, &sw, &down); /* sizing pass */
    if (b.err) {
        free(lins);
        return b.err;
    }
    const size_t total = (b.used + 63) & ~(size_t)63;
    char *arena = aligned_alloc(64, total ? total : 64);
    if (!arena) {
        free(lins);
        return cd_set_error(ctx, CD_ERR_OOM, "flux: cannot allocate %zu bytes for CLEAR weights", total);
    }
    b.arena = arena;
    b.used = 0;
    b.cap = total;
    memset(lins, 0, nl * sizeof *lins);
    bind_clear_all(&b, c, lins, &sw, &down);
    if (b.err) {
        free(arena);
        free(lins);
        return b.err;
    }
    size_t li = 0;
    for (int i = 0; i < c->depth; i++) {
        w->dbl[i].img.q = lins[li++];
        w->dbl[i].img.k = lins[li++];
        w->dbl[i].img.v = lins[li++];
        w->dbl[i].img.proj = lins[li++];
    }
    for (int i = 0; i < c->depth_single; i++) {
        w->sgl[i].q = lins[li++];
        w->sgl[i].k = lins[li++];
        w->sgl[i].v = lins[li++];
    }
    free(lins);
    if (sw) {
        w->spatial_weight = sw;
        w->spatial_down = down;
    }
    extra->arena = arena;
    extra->bytes = total;
    return CD_OK;
}
