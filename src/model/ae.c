/* ae.c — the FLUX autoencoder decoder and encoder (ae.h): weight binding from BFL or diffusers
 * names into one f32 host arena, and the placement of that arena in an ops table's memory
 * (cd_ae_*_set_ops). The forward is ae_run.c, the tiled calls ae_tile.c.
 *
 * ref: docs/flux.md (the autoencoder); BFL flux/modules/autoencoder.py; diffusers AutoencoderKL. */
#include "ae.h"
#include "../io/layout.h"
#include "../ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- binding ------------------------------------------------------------------------------- */

typedef struct {
    cd_ctx *ctx;
    const cd_ckpt *ck; /* NULL: random weights (benchmarks) */
    int bfl;
    const lay_plan *plan;
    float *arena;
    size_t used, cap;
    cd_status err;
    uint64_t seed;
} binder;

/* Random values for a tensor of `rows` rows: weights uniform with variance 1/fan_in, norm scales
 * around 1, biases small (counter-based: the same seed gives the same model). */
static void fill_random(float *dst, const char *dname, size_t numel, int64_t rows, uint64_t seed) {
    const int bias = strstr(dname, ".bias") != NULL, norm = strstr(dname, "norm") != NULL;
    const double fan = rows > 0 ? (double)numel / (double)rows : 1.0, a = sqrt(3.0 / (fan > 0 ? fan : 1.0));
    for (size_t i = 0; i < numel; i++) {
        const double u = (double)(cd_mix64(seed ^ cd_mix64(i)) >> 11) * 0x1p-53 * 2.0 - 1.0;
        dst[i] = (float)(norm && !bias ? 1.0 + 0.1 * u : bias ? 0.02 * u : a * u);
    }
}

/* The f32 copy of diffusers-named tensor `dname` (in a BFL checkpoint: its BFL counterpart),
 * which must have `numel` elements and `rows` rows in dim 0. */
static const float *take(binder *b, const char *dname, size_t numel, int64_t rows) {
    if (b->err) return NULL;
    if (!b->ck) {
        if (b->used + numel > b->cap) {
            b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "ae: more weights than the plan holds");
            return NULL;
        }
        float *dst = b->arena + b->used;
        b->used += numel;
        fill_random(dst, dname, numel, rows, b->seed ^ cd_mix64(b->used));
        return dst;
    }
    const char *name = dname;
    if (b->bfl) {
        const long i1 = lay_set_find(&b->plan->side[LAY_DIF], dname);
        name = NULL;
        for (size_t i = 0; i1 >= 0 && i < b->plan->nseg && !name; i++)
            if (b->plan->seg[i].t[LAY_DIF] == (uint32_t)i1)
                name = b->plan->side[LAY_BFL].t[b->plan->seg[i].t[LAY_BFL]].name;
        if (!name) {
            b->err = cd_set_error(b->ctx, CD_ERR_NOT_FOUND, "ae: no BFL name for '%s'", dname);
            return NULL;
        }
    }
    const cd_st_tensor *t = cd_ckpt_find(b->ck, name);
    if (!t) {
        b->err = cd_set_error(b->ctx, CD_ERR_NOT_FOUND, "ae: checkpoint has no tensor '%s'", name);
        return NULL;
    }
    if (cd_st_numel(t) != numel || (t->ndim >= 1 ? t->shape[0] : 1) != rows) {
        b->err = cd_set_error(b->ctx, CD_ERR_SHAPE,
                              "ae: '%s' has %llu elements (dim 0: %lld), "
                              "expected %zu (dim 0: %lld)",
                              name, (unsigned long long)cd_st_numel(t), (long long)(t->ndim >= 1 ? t->shape[0] : 1),
                              numel, (long long)rows);
        return NULL;
    }
    if (b->used + numel > b->cap) {
        b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "ae: more weights than the plan holds");
        return NULL;
    }
    float *dst = b->arena + b->used;
    b->used += numel;
    cd_status s = cd_st_to_f32(b->ctx, t, dst);
    if (s) b->err = s;
    return dst;
}

/* weight + bias of a conv (k = 3 or 1, or a linear with k = 1) named base, [cout, cin, k, k]. */
static void take_conv(binder *b, const char *base, int64_t cout, int64_t cin, int k, const float **w,
                      const float **bias) {
    char n[192];
    snprintf(n, sizeof n, "%s.weight", base);
    *w = take(b, n, (size_t)(cout * cin * k * k), cout);
    snprintf(n, sizeof n, "%s.bias", base);
    *bias = take(b, n, (size_t)cout, cout);
}

static void take_norm(binder *b, const char *base, int64_t c, const float **w, const float **bias) {
    take_conv(b, base, c, 1, 1, w, bias);
}

static void take_resnet(binder *b, const char *pre, int32_t cin, int32_t cout, cd_ae_resnet *r) {
    char n[160];
    r->cin = cin;
    r->cout = cout;
    snprintf(n, sizeof n, "%snorm1", pre);
    take_norm(b, n, cin, &r->n1w, &r->n1b);
    snprintf(n, sizeof n, "%sconv1", pre);
    take_conv(b, n, cout, cin, 3, &r->c1w, &r->c1b);
    snprintf(n, sizeof n, "%snorm2", pre);
    take_norm(b, n, cout, &r->n2w, &r->n2b);
    snprintf(n, sizeof n, "%sconv2", pre);
    take_conv(b, n, cout, cout, 3, &r->c2w, &r->c2b);
    r->skw = r->skb = NULL;
    if (cin != cout) {
        snprintf(n, sizeof n, "%sconv_shortcut", pre);
        take_conv(b, n, cout, cin, 1, &r->skw, &r->skb);
    }
}

/* part.mid_block (part = "encoder" or "decoder") at C channels: resnets.0, attentions.0,
 * resnets.1. */
static void take_mid(binder *b, const char *part, int32_t C, cd_ae_resnet *m1, cd_ae_attn *a, cd_ae_resnet *m2) {
    char n[128];
    snprintf(n, sizeof n, "%s.mid_block.resnets.0.", part);
    take_resnet(b, n, C, C, m1);
    static const char *const sub[5] = {"group_norm", "to_q", "to_k", "to_v", "to_out.0"};
    const float **w[5] = {&a->an_w, &a->q_w, &a->k_w, &a->v_w, &a->o_w};
    const float **bb[5] = {&a->an_b, &a->q_b, &a->k_b, &a->v_b, &a->o_b};
    for (int i = 0; i < 5; i++) {
        snprintf(n, sizeof n, "%s.mid_block.attentions.0.%s", part, sub[i]);
        take_conv(b, n, C, i ? C : 1, 1, w[i], bb[i]);
    }
    snprintf(n, sizeof n, "%s.mid_block.resnets.1.", part);
    take_resnet(b, n, C, C, m2);
}

static void bind_all(binder *b, cd_ae_decoder *ae) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult, nb = c->num_res_blocks + 1;
    int32_t cin = c->ch * c->ch_mult[n - 1];
    char pre[128];
    take_conv(b, "decoder.conv_in", cin, c->z_channels, 3, &ae->conv_in_w, &ae->conv_in_b);
    take_mid(b, "decoder", cin, &ae->mid1, &ae->attn, &ae->mid2);
    for (int lvl = n - 1; lvl >= 0; lvl--) {
        const int k = n - 1 - lvl;
        const int32_t co = c->ch * c->ch_mult[lvl];
        for (int j = 0; j < nb; j++) {
            snprintf(pre, sizeof pre, "decoder.up_blocks.%d.resnets.%d.", k, j);
            take_resnet(b, pre, cin, co, &ae->blocks[lvl * nb + j]);
            cin = co;
        }
        if (lvl) {
            snprintf(pre, sizeof pre, "decoder.up_blocks.%d.upsamplers.0.conv", k);
            take_conv(b, pre, co, co, 3, &ae->up_w[lvl], &ae->up_b[lvl]);
        }
    }
    take_norm(b, "decoder.conv_norm_out", cin, &ae->norm_out_w, &ae->norm_out_b);
    take_conv(b, "decoder.conv_out", c->out_channels, cin, 3, &ae->conv_out_w, &ae->conv_out_b);
}

static void bind_encoder(binder *b, cd_ae_encoder *ae) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult, nb = c->num_res_blocks;
    int32_t cin = c->ch;
    char pre[128];
    take_conv(b, "encoder.conv_in", cin, c->in_channels, 3, &ae->conv_in_w, &ae->conv_in_b);
    for (int lvl = 0; lvl < n; lvl++) {
        const int32_t co = c->ch * c->ch_mult[lvl];
        for (int j = 0; j < nb; j++) {
            snprintf(pre, sizeof pre, "encoder.down_blocks.%d.resnets.%d.", lvl, j);
            take_resnet(b, pre, cin, co, &ae->blocks[lvl * nb + j]);
            cin = co;
        }
        if (lvl != n - 1) {
            snprintf(pre, sizeof pre, "encoder.down_blocks.%d.downsamplers.0.conv", lvl);
            take_conv(b, pre, co, co, 3, &ae->down_w[lvl], &ae->down_b[lvl]);
        }
    }
    take_mid(b, "encoder", cin, &ae->mid1, &ae->attn, &ae->mid2);
    take_norm(b, "encoder.conv_norm_out", cin, &ae->norm_out_w, &ae->norm_out_b);
    take_conv(b, "encoder.conv_out", 2 * c->z_channels, cin, 3, &ae->conv_out_w, &ae->conv_out_b);
}

/* The weights' copy in ops's memory: none for host memory, else one block uploaded from the arena
 * (replacing a copy in another table's memory). */
static cd_status place(cd_ctx *ctx, const cd_ops *ops, const float *arena, size_t floats, const cd_ops **cur_ops,
                       cd_ctx **dev_ctx, float **dev) {
    if (!ops) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: no ops table");
    if (ops == *cur_ops) return CD_OK;
    void *p = NULL;
    if (!ops->host_memory) {
        cd_status s = ops->alloc(ctx, floats * sizeof(float), &p);
        if (!s) s = ops->upload(ctx, p, arena, floats * sizeof(float));
        if (!s) s = ops->sync(ctx);
        if (s) {
            ops->free(ctx, p);
            return s;
        }
    }
    if (*dev) (*cur_ops)->free(*dev_ctx, *dev);
    *cur_ops = ops;
    *dev = p;
    *dev_ctx = ctx;
    return CD_OK;
}

cd_status cd_ae_decoder_set_ops(cd_ctx *ctx, cd_ae_decoder *ae, const cd_ops *ops) {
    return place(ctx, ops, ae->arena, ae->arena_floats, &ae->ops, &ae->dev_ctx, &ae->dev);
}

cd_status cd_ae_encoder_set_ops(cd_ctx *ctx, cd_ae_encoder *ae, const cd_ops *ops) {
    return place(ctx, ops, ae->arena, ae->arena_floats, &ae->ops, &ae->dev_ctx, &ae->dev);
}

void cd_ae_decoder_free(cd_ae_decoder *ae) {
    if (!ae) return;
    if (ae->dev) ae->ops->free(ae->dev_ctx, ae->dev);
    free(ae->arena);
    free(ae->blocks);
    free(ae);
}

/* The checked config of the encoder (enc) or decoder of ck, and the layout plan of that part
 * alone: *total weights (f32), *bfl whether the checkpoint has BFL names. */
static cd_status prepare(cd_ctx *ctx, const cd_ckpt *ck, int *groupsp, int enc, cd_ae_config *cfgp, lay_plan *plan,
                         size_t *total, int *bfl) {
    int groups = *groupsp;
    if (groups == 0) groups = CD_AE_GROUPS;
    if (groups < 1) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: GroupNorm groups must be >= 1");
    cd_layout layout = CD_LAYOUT_AE_DIFFUSERS;
    cd_ae_config cfg = *cfgp; /* ck == NULL: random weights of this config */
    if (ck) {
        cd_ckpt_info info;
        cd_status s = cd_ckpt_inspect(ctx, ck, &info);
        if (s) return s;
        layout = info.layout;
        cfg = info.ae;
        cd_ckpt_info_free(&info);
    }
    if (!lay_is_ae(layout))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: checkpoint is %s, not an autoencoder",
                            cd_layout_name(layout));
    if (!(enc ? cfg.has_encoder : cfg.has_decoder) || cfg.n_mult < 1 || cfg.n_mult > 8 || cfg.ch < 1 ||
        cfg.z_channels < 1 || (enc ? cfg.in_channels : cfg.out_channels) < 1 || cfg.num_res_blocks < 1)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: checkpoint has no usable %s", enc ? "encoder" : "decoder");
    if (enc && cfg.ch % groups)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "ae: %d channels of the encoder's conv_in are not divisible by %d GroupNorm "
                            "groups",
                            cfg.ch, groups);
    for (int i = 0; i < cfg.n_mult; i++)
        if (cfg.ch_mult[i] < 1 || (cfg.ch * cfg.ch_mult[i]) % groups)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                "ae: %d channels of level %d are not divisible by %d GroupNorm groups",
                                cfg.ch * cfg.ch_mult[i], i, groups);
    /* the plan of the one part */
    cfg.has_encoder = enc;
    cfg.has_decoder = !enc;
    lay_plan_init(plan);
    if (lay_ae_plan(&cfg, (1 << LAY_BFL) | (1 << LAY_DIF), plan)) {
        lay_plan_free(plan);
        return cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory");
    }
    size_t tot = 0;
    for (size_t i = 0; i < plan->side[LAY_DIF].n; i++) {
        const lay_tensor *t = &plan->side[LAY_DIF].t[i];
        size_t e = 1;
        for (int d = 0; d < t->ndim; d++) e *= (size_t)t->shape[d];
        tot += e;
    }
    *total = tot;
    *bfl = lay_side(layout) == LAY_BFL;
    *cfgp = cfg;
    *groupsp = groups;
    return CD_OK;
}

static cd_status decoder_make(cd_ctx *ctx, const cd_ckpt *ck, const cd_ae_config *rcfg, uint64_t seed, int groups,
                              cd_ae_decoder **out);

cd_status cd_ae_decoder_bind(cd_ctx *ctx, const cd_ckpt *ck, int groups, cd_ae_decoder **out) {
    return decoder_make(ctx, ck, NULL, 0, groups, out);
}

cd_status cd_ae_decoder_random(cd_ctx *ctx, const cd_ae_config *cfg, int groups, uint64_t seed, cd_ae_decoder **out) {
    cd_ae_config c = *cfg;
    c.has_decoder = 1;
    return decoder_make(ctx, NULL, &c, seed, groups, out);
}

static cd_status decoder_make(cd_ctx *ctx, const cd_ckpt *ck, const cd_ae_config *rcfg, uint64_t seed, int groups,
                              cd_ae_decoder **out) {
    *out = NULL;
    cd_ae_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (rcfg) cfg = *rcfg;
    lay_plan plan;
    size_t total;
    int bfl;
    cd_status s = prepare(ctx, ck, &groups, 0, &cfg, &plan, &total, &bfl);
    if (s) return s;
    cd_ae_decoder *ae = calloc(1, sizeof *ae);
    if (!ae) {
        lay_plan_free(&plan);
        return cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory");
    }
    ae->cfg = cfg;
    ae->groups = groups;
    ae->ops = cd_ops_cpu();
    binder b = {ctx, ck, bfl, &plan, NULL, 0, total, CD_OK, seed};
    ae->arena = malloc(total * sizeof(float));
    ae->blocks = calloc((size_t)cfg.n_mult * (size_t)(cfg.num_res_blocks + 1), sizeof *ae->blocks);
    ae->arena_floats = total;
    if (!ae->arena || !ae->blocks) b.err = cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory (%zu weights)", total);
    b.arena = ae->arena;
    if (!b.err) bind_all(&b, ae);
    lay_plan_free(&plan);
    if (b.err) {
        cd_ae_decoder_free(ae);
        return b.err;
    }
    *out = ae;
    return CD_OK;
}

cd_status cd_ae_decoder_load(cd_ctx *ctx, const char *path, int groups, cd_ae_decoder **out) {
    *out = NULL;
    cd_ckpt *ck;
    cd_status s = cd_ckpt_open(ctx, path, &ck);
    if (s) return s;
    s = cd_ae_decoder_bind(ctx, ck, groups, out);
    cd_ckpt_close(ck);
    return s;
}

void cd_ae_encoder_free(cd_ae_encoder *ae) {
    if (!ae) return;
    if (ae->dev) ae->ops->free(ae->dev_ctx, ae->dev);
    free(ae->arena);
    free(ae->blocks);
    free(ae);
}

cd_status cd_ae_encoder_bind(cd_ctx *ctx, const cd_ckpt *ck, int groups, cd_ae_encoder **out) {
    *out = NULL;
    cd_ae_config cfg;
    lay_plan plan;
    size_t total;
    int bfl;
    cd_status s = prepare(ctx, ck, &groups, 1, &cfg, &plan, &total, &bfl);
    if (s) return s;
    cd_ae_encoder *ae = calloc(1, sizeof *ae);
    if (!ae) {
        lay_plan_free(&plan);
        return cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory");
    }
    ae->cfg = cfg;
    ae->groups = groups;
    ae->ops = cd_ops_cpu();
    binder b = {ctx, ck, bfl, &plan, NULL, 0, total, CD_OK, 0};
    ae->arena = malloc(total * sizeof(float));
    ae->blocks = calloc((size_t)cfg.n_mult * (size_t)cfg.num_res_blocks, sizeof *ae->blocks);
    ae->arena_floats = total;
    if (!ae->arena || !ae->blocks) b.err = cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory (%zu weights)", total);
    b.arena = ae->arena;
    if (!b.err) bind_encoder(&b, ae);
    lay_plan_free(&plan);
    if (b.err) {
        cd_ae_encoder_free(ae);
        return b.err;
    }
    *out = ae;
    return CD_OK;
}

cd_status cd_ae_encoder_load(cd_ctx *ctx, const char *path, int groups, cd_ae_encoder **out) {
    *out = NULL;
    cd_ckpt *ck;
    cd_status s = cd_ckpt_open(ctx, path, &ck);
    if (s) return s;
    s = cd_ae_encoder_bind(ctx, ck, groups, out);
    cd_ckpt_close(ck);
    return s;
}

int cd_ae_upscale(const cd_ae_decoder *ae) { return 1 << (ae->cfg.n_mult - 1); }
int cd_ae_downscale(const cd_ae_encoder *ae) { return 1 << (ae->cfg.n_mult - 1); }
