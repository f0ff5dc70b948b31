/* layout_flux.c — the FLUX transformer in BFL names (flux/model.py, modules/layers.py) and in
 * diffusers names (FluxTransformer2DModel; convert_flux_transformer_checkpoint_to_diffusers in
 * diffusers/loaders/single_file_utils.py), as ONE table of rules used in both directions
 * (layout.h), plus the config inference from tensor shapes.
 *
 * ref: docs/flux.md sections 2 and 3. Every Linear has a bias (qkv_bias=True). The LayerNorms
 * have no affine parameters, so they hold no tensors. */
#include "layout.h"

#include <stdio.h>

#define LIN(b, d, o, i) \
    { RK_LINEAR, {b, d}, {o, o}, i, {0, 0}, SYM_ALL }
#define VEC(b, d, o) \
    { RK_VECTOR, {b, d}, {o, o}, SYM_ALL, {0, 0}, SYM_ALL }
/* Rows [bo*D, bo*D + rows) of the fused BFL tensor (dim 0 = bout) are the diffusers tensor
 * `d` (dim 0 = dout), from its row do*D. */
#define PIECE(b, d, bout, dout, i, bo, dof, rows) \
    { RK_LINEAR, {b, d}, {bout, dout}, i, {bo, dof}, rows }

static const lay_rule k_top[] = {
    LIN("img_in", "x_embedder", SYM_D, SYM_IN),
    LIN("txt_in", "context_embedder", SYM_D, SYM_CTX),
    LIN("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1", SYM_D, SYM_TFREQ),
    LIN("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2", SYM_D, SYM_D),
    LIN("vector_in.in_layer", "time_text_embed.text_embedder.linear_1", SYM_D, SYM_VEC),
    LIN("vector_in.out_layer", "time_text_embed.text_embedder.linear_2", SYM_D, SYM_D),
};

/* dev-like models only (guidance_embed=True); schnell has none. */
static const lay_rule k_guidance[] = {
    LIN("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1", SYM_D, SYM_TFREQ),
    LIN("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2", SYM_D, SYM_D),
};

/* double_blocks.N. <-> transformer_blocks.N. ; qkv is chunked in 3 along dim 0 (K H D order). */
static const lay_rule k_double[] = {
    LIN("img_mod.lin", "norm1.linear", SYM_6D, SYM_D),
    LIN("txt_mod.lin", "norm1_context.linear", SYM_6D, SYM_D),
    PIECE("img_attn.qkv", "attn.to_q", SYM_3D, SYM_D, SYM_D, 0, 0, SYM_D),
    PIECE("img_attn.qkv", "attn.to_k", SYM_3D, SYM_D, SYM_D, 1, 0, SYM_D),
    PIECE("img_attn.qkv", "attn.to_v", SYM_3D, SYM_D, SYM_D, 2, 0, SYM_D),
    VEC("img_attn.norm.query_norm.scale", "attn.norm_q.weight", SYM_HD),
    VEC("img_attn.norm.key_norm.scale", "attn.norm_k.weight", SYM_HD),
    LIN("img_attn.proj", "attn.to_out.0", SYM_D, SYM_D),
    LIN("img_mlp.0", "ff.net.0.proj", SYM_M, SYM_D),
    LIN("img_mlp.2", "ff.net.2", SYM_D, SYM_M),
    PIECE("txt_attn.qkv", "attn.add_q_proj", SYM_3D, SYM_D, SYM_D, 0, 0, SYM_D),
    PIECE("txt_attn.qkv", "attn.add_k_proj", SYM_3D, SYM_D, SYM_D, 1, 0, SYM_D),
    PIECE("txt_attn.qkv", "attn.add_v_proj", SYM_3D, SYM_D, SYM_D, 2, 0, SYM_D),
    VEC("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight", SYM_HD),
    VEC("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight", SYM_HD),
    LIN("txt_attn.proj", "attn.to_add_out", SYM_D, SYM_D),
    LIN("txt_mlp.0", "ff_context.net.0.proj", SYM_M, SYM_D),
    LIN("txt_mlp.2", "ff_context.net.2", SYM_D, SYM_M),
};

/* single_blocks.N. <-> single_transformer_blocks.N. ; linear1 rows = q | k | v | mlp. */
static const lay_rule k_single[] = {
    PIECE("linear1", "attn.to_q", SYM_3D_M, SYM_D, SYM_D, 0, 0, SYM_D),
    PIECE("linear1", "attn.to_k", SYM_3D_M, SYM_D, SYM_D, 1, 0, SYM_D),
    PIECE("linear1", "attn.to_v", SYM_3D_M, SYM_D, SYM_D, 2, 0, SYM_D),
    PIECE("linear1", "proj_mlp", SYM_3D_M, SYM_M, SYM_D, 3, 0, SYM_M),
    LIN("linear2", "proj_out", SYM_D, SYM_D_M),
    VEC("norm.query_norm.scale", "attn.norm_q.weight", SYM_HD),
    VEC("norm.key_norm.scale", "attn.norm_k.weight", SYM_HD),
    LIN("modulation.lin", "norm.linear", SYM_3D, SYM_D),
};

/* The final adaLN chunks as [shift | scale] in BFL and [scale | shift] in diffusers
 * (AdaLayerNormContinuous; diffusers' swap_scale_shift): two pieces that trade places. */
static const lay_rule k_final[] = {
    LIN("final_layer.linear", "proj_out", SYM_OUT, SYM_D),
    PIECE("final_layer.adaLN_modulation.1", "norm_out.linear", SYM_2D, SYM_2D, SYM_D, 0, 1, SYM_D),
    PIECE("final_layer.adaLN_modulation.1", "norm_out.linear", SYM_2D, SYM_2D, SYM_D, 1, 0, SYM_D),
};

/* CLEAR's spatial_weight per attention layer (lay_spatial form): the same diffusers name on
 * both sides. */
static const lay_rule k_spatial[] = {
    {RK_SPATIAL, {LAY_SPATIAL_SUFFIX, LAY_SPATIAL_SUFFIX}, {SYM_ALL, SYM_ALL}, SYM_ALL, {0, 0}, SYM_ALL},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- config inference ---------------------------------------------------------------------- */

enum { F_HIDDEN, F_HEAD_DIM, F_IN, F_OUT, F_CTX, F_VEC, F_MLP, F_COUNT };

typedef struct {
    const lay_probe *p;
    size_t n;
} probe_list;

static const lay_probe k_bfl_hidden[] = {
    {"img_in.weight", 0, 0, 0},
    {"txt_in.weight", 0, 0, 0},
    {"time_in.in_layer.weight", 0, 0, 0},
    {"time_in.out_layer.weight", 0, 0, 0},
    {"vector_in.in_layer.weight", 0, 0, 0},
    {"final_layer.linear.weight", 1, 0, 0},
    {"final_layer.adaLN_modulation.1.weight", 1, 0, 0},
    {"double_blocks.0.img_attn.proj.weight", 0, 0, 0},
    {"single_blocks.0.linear2.weight", 0, 0, 0},
};
static const lay_probe k_bfl_head_dim[] = {
    {"double_blocks.0.img_attn.norm.query_norm.scale", 0, 0, 0},
    {"double_blocks.0.img_attn.norm.key_norm.scale", 0, 0, 0},
    {"double_blocks.0.txt_attn.norm.query_norm.scale", 0, 0, 0},
    {"single_blocks.0.norm.query_norm.scale", 0, 0, 0},
    {"single_blocks.0.norm.key_norm.scale", 0, 0, 0},
};
static const lay_probe k_bfl_in[] = {{"img_in.weight", 1, 0, 0}};
static const lay_probe k_bfl_out[] = {{"final_layer.linear.weight", 0, 0, 0}, {"final_layer.linear.bias", 0, 0, 0}};
static const lay_probe k_bfl_ctx[] = {{"txt_in.weight", 1, 0, 0}};
static const lay_probe k_bfl_vec[] = {{"vector_in.in_layer.weight", 1, 0, 0}};
static const lay_probe k_bfl_mlp[] = {
    {"double_blocks.0.img_mlp.0.weight", 0, 0, 0}, {"double_blocks.0.txt_mlp.0.weight", 0, 0, 0},
    {"double_blocks.0.img_mlp.2.weight", 1, 0, 0}, {"single_blocks.0.linear1.weight", 0, 3, 0},
    {"single_blocks.0.linear2.weight", 1, 1, 0},
};

static const lay_probe k_dif_hidden[] = {
    {"x_embedder.weight", 0, 0, 0},
    {"context_embedder.weight", 0, 0, 0},
    {"time_text_embed.timestep_embedder.linear_1.weight", 0, 0, 0},
    {"time_text_embed.timestep_embedder.linear_2.weight", 0, 0, 0},
    {"time_text_embed.text_embedder.linear_1.weight", 0, 0, 0},
    {"proj_out.weight", 1, 0, 0},
    {"norm_out.linear.weight", 1, 0, 0},
    {"transformer_blocks.0.attn.to_out.0.weight", 0, 0, 0},
    {"single_transformer_blocks.0.proj_out.weight", 0, 0, 0},
};
static const lay_probe k_dif_head_dim[] = {
    {"transformer_blocks.0.attn.norm_q.weight", 0, 0, 0},
    {"transformer_blocks.0.attn.norm_k.weight", 0, 0, 0},
    {"transformer_blocks.0.attn.norm_added_q.weight", 0, 0, 0},
    {"single_transformer_blocks.0.attn.norm_q.weight", 0, 0, 0},
    {"single_transformer_blocks.0.attn.norm_k.weight", 0, 0, 0},
};
static const lay_probe k_dif_in[] = {{"x_embedder.weight", 1, 0, 0}};
static const lay_probe k_dif_out[] = {{"proj_out.weight", 0, 0, 0}, {"proj_out.bias", 0, 0, 0}};
static const lay_probe k_dif_ctx[] = {{"context_embedder.weight", 1, 0, 0}};
static const lay_probe k_dif_vec[] = {{"time_text_embed.text_embedder.linear_1.weight", 1, 0, 0}};
static const lay_probe k_dif_mlp[] = {
    {"transformer_blocks.0.ff.net.0.proj.weight", 0, 0, 0},
    {"transformer_blocks.0.ff_context.net.0.proj.weight", 0, 0, 0},
    {"transformer_blocks.0.ff.net.2.weight", 1, 0, 0},
    {"single_transformer_blocks.0.proj_mlp.weight", 0, 0, 0},
    {"single_transformer_blocks.0.proj_out.weight", 1, 1, 0},
};

#define PL(a) \
    { a, N_OF(a) }
static const probe_list k_probes[2][F_COUNT] = {
    {PL(k_bfl_hidden), PL(k_bfl_head_dim), PL(k_bfl_in), PL(k_bfl_out), PL(k_bfl_ctx), PL(k_bfl_vec), PL(k_bfl_mlp)},
    {PL(k_dif_hidden), PL(k_dif_head_dim), PL(k_dif_in), PL(k_dif_out), PL(k_dif_ctx), PL(k_dif_vec), PL(k_dif_mlp)},
};

/* Block prefixes and the guidance marker per side. */
static const char *const k_double_pre[2] = {"double_blocks.", "transformer_blocks."};
static const char *const k_single_pre[2] = {"single_blocks.", "single_transformer_blocks."};
static const char *const k_guidance_pre[2] = {"guidance_in.", "time_text_embed.guidance_embedder."};

int lay_flux_infer(const cd_ckpt *c, int side, lay_flux_cfg *cfg, char *need) {
    memset(cfg, 0, sizeof *cfg);
    need[0] = 0;
    cd_flux_config *f = &cfg->c;
    f->depth = lay_count_blocks(c, k_double_pre[side]);
    f->depth_single = lay_count_blocks(c, k_single_pre[side]);
    f->guidance = lay_has_prefix(c, k_guidance_pre[side]);
    lay_spatial_infer(c, &cfg->sw);

    int64_t v[F_COUNT] = {0};
    v[F_HIDDEN] = lay_vote(c, k_probes[side][F_HIDDEN].p, k_probes[side][F_HIDDEN].n, 0);
    for (int k = F_HEAD_DIM; k < F_COUNT && v[F_HIDDEN]; k++)
        v[k] = lay_vote(c, k_probes[side][k].p, k_probes[side][k].n, v[F_HIDDEN]);
    f->hidden = (int32_t)v[F_HIDDEN];
    f->head_dim = (int32_t)v[F_HEAD_DIM];
    f->in_channels = (int32_t)v[F_IN];
    f->out_channels = (int32_t)v[F_OUT];
    f->context_dim = (int32_t)v[F_CTX];
    f->pooled_dim = (int32_t)v[F_VEC];
    f->mlp_hidden = (int32_t)v[F_MLP];
    f->heads = f->head_dim && f->hidden % f->head_dim == 0 ? f->hidden / f->head_dim : 0;

    /* head_dim and the MLP width only shape block tensors: not needed without blocks. */
    const int blocks = f->depth + f->depth_single > 0;
    for (int k = 0; k < F_COUNT; k++) {
        if (v[k] || ((k == F_HEAD_DIM || k == F_MLP) && !blocks)) continue;
        snprintf(need, LAY_NAME_MAX, "%s", k_probes[side][k].p[0].name);
        return -1;
    }
    return 0;
}

int lay_flux_plan(const lay_flux_cfg *cfg, int sides, lay_plan *p) {
    const cd_flux_config *f = &cfg->c;
    lay_env e;
    memset(&e, 0, sizeof e);
    const int64_t d = f->hidden, m = f->mlp_hidden;
    e.v[SYM_D] = d;
    e.v[SYM_2D] = 2 * d;
    e.v[SYM_3D] = 3 * d;
    e.v[SYM_6D] = 6 * d;
    e.v[SYM_M] = m;
    e.v[SYM_3D_M] = 3 * d + m;
    e.v[SYM_D_M] = d + m;
    e.v[SYM_HD] = f->head_dim;
    e.v[SYM_IN] = f->in_channels;
    e.v[SYM_OUT] = f->out_channels;
    e.v[SYM_CTX] = f->context_dim;
    e.v[SYM_VEC] = f->pooled_dim;
    e.v[SYM_TFREQ] = 256; /* timestep_embedding(t, 256) in both code bases */
    e.sw = &cfg->sw;

    const char *top[2] = {sides & 1 ? "" : NULL, sides & 2 ? "" : NULL};
    if (lay_plan_emit(p, k_top, N_OF(k_top), top, &e)) return -1;
    if (f->guidance && lay_plan_emit(p, k_guidance, N_OF(k_guidance), top, &e)) return -1;
    char bp[2][64];
    for (int32_t i = 0; i < f->depth; i++) {
        snprintf(bp[0], sizeof bp[0], "double_blocks.%d.", (int)i);
        snprintf(bp[1], sizeof bp[1], "transformer_blocks.%d.", (int)i);
        const char *pre[2] = {sides & 1 ? bp[0] : NULL, sides & 2 ? bp[1] : NULL};
        if (lay_plan_emit(p, k_double, N_OF(k_double), pre, &e)) return -1;
    }
    for (int32_t i = 0; i < f->depth_single; i++) {
        snprintf(bp[0], sizeof bp[0], "single_blocks.%d.", (int)i);
        snprintf(bp[1], sizeof bp[1], "single_transformer_blocks.%d.", (int)i);
        const char *pre[2] = {sides & 1 ? bp[0] : NULL, sides & 2 ? bp[1] : NULL};
        if (lay_plan_emit(p, k_single, N_OF(k_single), pre, &e)) return -1;
    }
    if (lay_plan_emit(p, k_final, N_OF(k_final), top, &e)) return -1;
    if (cfg->sw.down > 0) {
        for (int pass = 0; pass < 2; pass++) {
            const int32_t n = pass ? f->depth_single : f->depth;
            for (int32_t i = 0; i < n; i++) {
                snprintf(bp[0], sizeof bp[0], "%stransformer_blocks.%d.", pass ? "single_" : "", (int)i);
                const char *pre[2] = {sides & 1 ? bp[0] : NULL, sides & 2 ? bp[0] : NULL};
                if (lay_plan_emit(p, k_spatial, N_OF(k_spatial), pre, &e)) return -1;
            }
        }
    }
    return 0;
}
