/* layout_inspect.c — what a checkpoint is: its layout from the tensor names (lay_detect), its
 * config from the tensor shapes (layout_flux.c / layout_ae.c / layout_clear.c), and how its
 * tensors compare with the ones that layout and config expect (cd_ckpt_inspect): unknown names,
 * missing names and wrong shapes, counted and listed separately, in the spirit of
 * stable-diffusion.cpp's load_tensors. Reads headers only, never tensor data. */
#include "layout.h"

#include <stdio.h>
#include <stdlib.h>

const char *cd_layout_name(cd_layout l) {
    switch (l) {
        case CD_LAYOUT_FLUX_BFL: return "flux-bfl";
        case CD_LAYOUT_FLUX_DIFFUSERS: return "flux-diffusers";
        case CD_LAYOUT_AE_BFL: return "ae-bfl";
        case CD_LAYOUT_AE_DIFFUSERS: return "ae-diffusers";
        case CD_LAYOUT_CLEAR: return "clear";
        case CD_LAYOUT_T5: return "t5-encoder";
        case CD_LAYOUT_CLIP_TEXT: return "clip-text";
        default: return "unknown";
    }
}

/* Name prefixes that only one layout uses. "encoder.down." is not a prefix of
 * "encoder.down_blocks." (dot vs underscore), so the AE pairs do not overlap. */
static const char *const k_markers[CD_LAYOUT_COUNT][9] = {
    [CD_LAYOUT_FLUX_BFL] = {"double_blocks.", "single_blocks.", "img_in.", "txt_in.", "time_in.", "vector_in.",
                            "guidance_in.", "final_layer.", NULL},
    [CD_LAYOUT_FLUX_DIFFUSERS] = {"transformer_blocks.", "single_transformer_blocks.", "x_embedder.",
                                  "context_embedder.", "time_text_embed.", "norm_out.", "proj_out.", NULL},
    [CD_LAYOUT_AE_BFL] = {"encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.", "encoder.norm_out.",
                          "decoder.norm_out.", NULL},
    [CD_LAYOUT_AE_DIFFUSERS] = {"encoder.down_blocks.", "decoder.up_blocks.", "encoder.mid_block.",
                                "decoder.mid_block.", "encoder.conv_norm_out.", "decoder.conv_norm_out.", NULL},
    /* transformers' names (layout_textenc.c); a CLIP file saved by transformers 5 lacks "text_model." */
    [CD_LAYOUT_T5] = {"encoder.block.", "encoder.final_layer_norm.", "encoder.embed_tokens.", "shared.", NULL},
    [CD_LAYOUT_CLIP_TEXT] = {"text_model.", "embeddings.token_embedding.", "embeddings.position_embedding.",
                             "encoder.layers.", "final_layer_norm.", NULL},
};

static int has_marker(const char *name, cd_layout l) {
    for (const char *const *m = k_markers[l]; *m; m++)
        if (!strncmp(name, *m, strlen(*m))) return 1;
    return 0;
}

cd_layout lay_detect(const cd_ckpt *c) {
    size_t score[CD_LAYOUT_COUNT] = {0}, spatial = 0, dif_not_clear = 0;
    for (size_t i = 0, n = cd_ckpt_count(c); i < n; i++) {
        const char *name = cd_ckpt_at(c, i)->name;
        /* spatial weights carry diffusers names in every FLUX layout: they prove nothing */
        if (lay_is_spatial_weight(name)) {
            spatial++;
            continue;
        }
        for (int l = 1; l < CD_LAYOUT_COUNT; l++) {
            if (!k_markers[l][0] || !has_marker(name, (cd_layout)l)) continue;
            score[l]++;
            if (l == CD_LAYOUT_FLUX_DIFFUSERS && !lay_is_clear_name(name)) dif_not_clear++;
        }
    }
    int best = 0;
    for (int l = 1; l < CD_LAYOUT_COUNT; l++)
        if (score[l] > score[best]) best = l;
    if (!score[best]) return spatial ? CD_LAYOUT_CLEAR : CD_LAYOUT_UNKNOWN;
    /* Only CLEAR-trained diffusers tensors: a CLEAR file, not a (broken) transformer. */
    if (best == CD_LAYOUT_FLUX_DIFFUSERS && !dif_not_clear) return CD_LAYOUT_CLEAR;
    return (cd_layout)best;
}

cd_status lay_model_build(cd_ctx *ctx, const cd_ckpt *c, cd_layout layout, int sides, lay_model *m, lay_plan *p) {
    memset(m, 0, sizeof *m);
    m->layout = layout;
    int r = 0;
    if (lay_is_flux(layout)) {
        const int side = lay_side(layout);
        if (lay_flux_infer(c, side, &m->flux, m->need)) return CD_OK;
        r = lay_flux_plan(&m->flux, sides | (1 << side), p);
    } else if (lay_is_ae(layout)) {
        const int side = lay_side(layout);
        if (lay_ae_infer(c, side, &m->ae, m->need)) return CD_OK;
        r = lay_ae_plan(&m->ae, sides | (1 << side), p);
    } else if (layout == CD_LAYOUT_CLEAR) {
        if (lay_clear_infer(c, &m->clear, &m->clear_sw, m->need)) return CD_OK;
        r = lay_clear_plan(&m->clear, &m->clear_sw, p);
    } else if (layout == CD_LAYOUT_T5) {
        r = lay_t5_build(c, &m->t5, p, m->need, m->conflict);
    } else if (layout == CD_LAYOUT_CLIP_TEXT) {
        r = lay_clip_build(c, &m->clip, p, m->need, m->conflict);
    }
    return r ? cd_set_error(ctx, CD_ERR_OOM, "inspect: out of memory") : CD_OK;
}

/* ---- the three lists --------------------------------------------------------------------- */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

__attribute__((format(printf, 2, 3))) static int list_add(strlist *l, const char *fmt, ...) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!s) return -1;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    l->v[l->n++] = s;
    return 0;
}

static void list_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void cd_ckpt_info_free(cd_ckpt_info *info) {
    if (!info) return;
    list_free(info->unknown, info->n_unknown);
    list_free(info->missing, info->n_missing);
    list_free(info->bad_shape, info->n_bad_shape);
    memset(info, 0, sizeof *info);
}

static int same_shape(const cd_st_tensor *t, const lay_tensor *e) {
    if (t->ndim != e->ndim) return 0;
    for (int32_t d = 0; d < t->ndim; d++)
        if (t->shape[d] != e->shape[d]) return 0;
    return 1;
}

/* Compares the checkpoint with the expected set of its own side. */
static int compare(const cd_ckpt *c, const lay_set *want, strlist *unknown, strlist *missing, strlist *bad) {
    char got[160], exp[160];
    for (size_t i = 0, n = cd_ckpt_count(c); i < n; i++) {
        const cd_st_tensor *t = cd_ckpt_at(c, i);
        long k = lay_set_find(want, t->name);
        if (k < 0) {
            if (list_add(unknown, "%s", t->name)) return -1;
        } else if (!same_shape(t, &want->t[k])) {
            if (list_add(bad, "%s: got %s want %s", t->name, lay_shape_str(t->shape, t->ndim, got, sizeof got),
                         lay_shape_str(want->t[k].shape, want->t[k].ndim, exp, sizeof exp)))
                return -1;
        }
    }
    for (size_t k = 0; k < want->n; k++)
        if (!cd_ckpt_find(c, want->t[k].name) && list_add(missing, "%s", want->t[k].name)) return -1;
    return 0;
}

cd_status cd_ckpt_inspect(cd_ctx *ctx, const cd_ckpt *c, cd_ckpt_info *info) {
    if (!info) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "inspect: info is NULL");
    memset(info, 0, sizeof *info);
    if (!c) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "inspect: checkpoint is NULL");
    for (size_t i = 0, n = cd_ckpt_count(c); i < n; i++) {
        const cd_st_tensor *t = cd_ckpt_at(c, i);
        info->params += cd_st_numel(t);
        info->bytes += t->nbytes;
        if ((int)t->dtype >= 0 && t->dtype < CD_DTYPE_COUNT) info->dtype_count[t->dtype]++;
    }
    info->layout = lay_detect(c);

    lay_model m;
    lay_plan p;
    lay_plan_init(&p);
    cd_status s = lay_model_build(ctx, c, info->layout, 0, &m, &p);
    if (s) {
        lay_plan_free(&p);
        return s;
    }
    info->flux = m.flux.c;
    info->ae = m.ae;
    info->clear = m.clear;
    info->t5 = m.t5;
    info->clip = m.clip;
    if (lay_is_flux(info->layout)) info->clear.down = m.flux.sw.down; /* carried spatial weights */

    strlist unknown = {0}, missing = {0}, bad = {0};
    int r = 0;
    if (m.need[0]) /* no config: the tensor that would have given it is what is missing */
        r = list_add(&missing, "%s", m.need);
    else if (info->layout != CD_LAYOUT_UNKNOWN)
        r = compare(c, &p.side[info->layout == CD_LAYOUT_CLEAR ? LAY_DIF : lay_side(info->layout)], &unknown, &missing,
                    &bad);
    if (!r && m.conflict[0]) r = list_add(&bad, "%s", m.conflict); /* config.json against the shapes */
    lay_plan_free(&p);
    info->unknown = unknown.v;
    info->n_unknown = unknown.n;
    info->missing = missing.v;
    info->n_missing = missing.n;
    info->bad_shape = bad.v;
    info->n_bad_shape = bad.n;
    if (r) {
        cd_ckpt_info_free(info);
        return cd_set_error(ctx, CD_ERR_OOM, "inspect: out of memory");
    }
    return CD_OK;
}
