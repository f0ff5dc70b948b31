/* layout_clear.c — CLEAR attention files: the tensors a distilled CLEAR checkpoint holds
 * (diffusers names only; docs/distillation.md), their expected set for a config, the config
 * inference (hidden size, how many double/single blocks, the spatial_weight form), and the
 * name test that tells a CLEAR file from a full diffusers transformer (layout_inspect.c).
 *
 * The trained tensors are the image-stream q, k, v and output projections of the double blocks
 * and the q, k, v projections of the single blocks (weights and biases), plus spatial_weight
 * [d, d] per attention layer in the down-sampled variant. Each of them is a side-1 tensor of the
 * FLUX plan (layout_flux.c), so merging is "this diffusers tensor comes from the CLEAR file".
 * spatial_weight: the reference trainer saves nn.Parameter(ones(1, 1, 1, d, 1, d, 1)) per
 * layer (LocalDownsampleFlexAttnProcessor, saved by named_parameters()); [d, d] is accepted as
 * well (lay_spatial). */
#include "layout.h"

#include <stdio.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const lay_rule k_clear_double[] = {
    {RK_LINEAR, {NULL, "attn.to_q"}, {SYM_D, SYM_D}, SYM_D, {0, 0}, SYM_ALL},
    {RK_LINEAR, {NULL, "attn.to_k"}, {SYM_D, SYM_D}, SYM_D, {0, 0}, SYM_ALL},
    {RK_LINEAR, {NULL, "attn.to_v"}, {SYM_D, SYM_D}, SYM_D, {0, 0}, SYM_ALL},
    {RK_LINEAR, {NULL, "attn.to_out.0"}, {SYM_D, SYM_D}, SYM_D, {0, 0}, SYM_ALL},
};
static const lay_rule k_clear_single[] = {
    {RK_LINEAR, {NULL, "attn.to_q"}, {SYM_D, SYM_D}, SYM_D, {0, 0}, SYM_ALL},
    {RK_LINEAR, {NULL, "attn.to_k"}, {SYM_D, SYM_D}, SYM_D, {0, 0}, SYM_ALL},
    {RK_LINEAR, {NULL, "attn.to_v"}, {SYM_D, SYM_D}, SYM_D, {0, 0}, SYM_ALL},
};

static const lay_probe k_clear_hidden[] = {
    {"transformer_blocks.0.attn.to_q.weight", 0, 0, 0},
    {"transformer_blocks.0.attn.to_q.weight", 1, 0, 0},
    {"transformer_blocks.0.attn.to_out.0.weight", 0, 0, 0},
    {"single_transformer_blocks.0.attn.to_q.weight", 0, 0, 0},
    {"single_transformer_blocks.0.attn.to_q.weight", 1, 0, 0},
};

int lay_clear_infer(const cd_ckpt *c, cd_clear_config *cfg, lay_spatial *sw, char *need) {
    memset(cfg, 0, sizeof *cfg);
    need[0] = 0;
    cfg->depth = lay_count_blocks(c, "transformer_blocks.");
    cfg->depth_single = lay_count_blocks(c, "single_transformer_blocks.");
    lay_spatial_infer(c, sw);
    cfg->down = sw->down;
    cfg->hidden = (int32_t)lay_vote(c, k_clear_hidden, N_OF(k_clear_hidden), 0);
    if (!cfg->hidden && cfg->depth + cfg->depth_single > 0) {
        snprintf(need, LAY_NAME_MAX, "%s", k_clear_hidden[0].name);
        return -1;
    }
    return 0;
}

int lay_clear_plan(const cd_clear_config *cfg, const lay_spatial *sw, lay_plan *p) {
    lay_env e;
    memset(&e, 0, sizeof e);
    e.v[SYM_D] = cfg->hidden;
    e.sw = sw;
    char bp[64];
    for (int pass = 0; pass < 2; pass++) {
        const int32_t n = pass ? cfg->depth_single : cfg->depth;
        for (int32_t i = 0; i < n; i++) {
            snprintf(bp, sizeof bp, "%stransformer_blocks.%d.", pass ? "single_" : "", (int)i);
            const char *pre[2] = {NULL, bp};
            if (lay_plan_emit(p, pass ? k_clear_single : k_clear_double,
                              pass ? N_OF(k_clear_single) : N_OF(k_clear_double), pre, &e))
                return -1;
            if (sw->down > 0) {
                static const lay_rule spatial = {
                    RK_SPATIAL, {NULL, LAY_SPATIAL_SUFFIX}, {SYM_ALL, SYM_ALL}, SYM_ALL, {0, 0}, SYM_ALL};
                if (lay_plan_emit(p, &spatial, 1, pre, &e)) return -1;
            }
        }
    }
    return 0;
}

/* 1 if `name` is one of the tensors a CLEAR file may hold. */
int lay_is_clear_name(const char *name) {
    static const char *const dbl[] = {"attn.to_q.weight",     "attn.to_q.bias",     "attn.to_k.weight",
                                      "attn.to_k.bias",       "attn.to_v.weight",   "attn.to_v.bias",
                                      "attn.to_out.0.weight", "attn.to_out.0.bias", LAY_SPATIAL_SUFFIX};
    const char *pre = "transformer_blocks.";
    size_t n = N_OF(dbl); /* double blocks: q, k, v, out (+ spatial_weight) */
    if (lay_block_index(name, pre) < 0) {
        pre = "single_transformer_blocks.";
        if (lay_block_index(name, pre) < 0) return 0;
        n = 6; /* single blocks: q, k, v only */
    }
    const char *rest = name + strlen(pre);
    while (*rest >= '0' && *rest <= '9') rest++;
    rest++; /* the '.' after the index (lay_block_index checked it) */
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rest, dbl[i])) return 1;
    return !strcmp(rest, LAY_SPATIAL_SUFFIX);
}
