/* ae.c — the FLUX autoencoder decoder and encoder (ae.h): weight binding from BFL or diffusers names, and the
 * f32 forward with plain loops + OpenMP, OpenBLAS sgemm for the convolutions (3x3 through an
 * im2col band, 1x1 directly) and cd_attention_forward for the mid-block attention.
 * cd_ae_decode / cd_ae_encode size their scratch (cd_ae_*_scratch), allocate it and call
 * cd_ae_*_run, which the tiled paths (ae_tile.c) call per tile on one scratch block.
 *
 * ref: spec/flux.md section 6; BFL flux/modules/autoencoder.py (Encoder, Decoder, ResnetBlock,
 * AttnBlock, Downsample, Upsample); diffusers AutoencoderKL.encode / decode (numerically the same). */
#include "ae.h"
#include "../io/layout.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- binding ------------------------------------------------------------------------------- */

typedef struct {
    cd_ctx *ctx;
    const cd_ckpt *ck;        /* NULL: random weights (benchmarks) */
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
        b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "ae: '%s' has %llu elements (dim 0: %lld), "
                              "expected %zu (dim 0: %lld)", name, (unsigned long long)cd_st_numel(t),
                              (long long)(t->ndim >= 1 ? t->shape[0] : 1), numel, (long long)rows);
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
static void take_mid(binder *b, const char *part, int32_t C, cd_ae_resnet *m1, cd_ae_attn *a,
                     cd_ae_resnet *m2) {
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

void cd_ae_decoder_free(cd_ae_decoder *ae) {
    if (!ae) return;
    free(ae->arena);
    free(ae->blocks);
    free(ae);
}

/* The checked config of the encoder (enc) or decoder of ck, and the layout plan of that part
 * alone: *total weights (f32), *bfl whether the checkpoint has BFL names. */
static cd_status prepare(cd_ctx *ctx, const cd_ckpt *ck, int *groupsp, int enc, cd_ae_config *cfgp,
                         lay_plan *plan, size_t *total, int *bfl) {
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
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: checkpoint has no usable %s",
                            enc ? "encoder" : "decoder");
    if (enc && cfg.ch % groups)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "ae: %d channels of the encoder's conv_in are not divisible by %d GroupNorm "
                            "groups", cfg.ch, groups);
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

cd_status cd_ae_decoder_random(cd_ctx *ctx, const cd_ae_config *cfg, int groups, uint64_t seed,
                               cd_ae_decoder **out) {
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

/* ---- ops ------------------------------------------------------------------------------------ */

/* y [C, n] = GroupNorm(x) (G groups of C/G channels, eps 1e-6, affine), then SiLU when silu.
 * Statistics in double, two passes. y may equal x. */
static void group_norm(int threads, const float *x, int C, size_t n, int G, const float *gw,
                       const float *gb, int silu, float *y) {
    const int cg = C / G;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int g = 0; g < G; g++) {
        const float *xg = x + (size_t)g * cg * n;
        const size_t m = (size_t)cg * n;
        double s = 0;
        for (size_t i = 0; i < m; i++) s += xg[i];
        const double mean = s / (double)m;
        double v = 0;
        for (size_t i = 0; i < m; i++) {
            const double d = xg[i] - mean;
            v += d * d;
        }
        const float rstd = (float)(1.0 / sqrt(v / (double)m + (double)CD_AE_EPS));
        const float fm = (float)mean;
        for (int c = g * cg; c < (g + 1) * cg; c++) {
            const float a = gw[c] * rstd, bb = gb[c] - fm * a;
            const float *xc = x + (size_t)c * n;
            float *yc = y + (size_t)c * n;
            for (size_t i = 0; i < n; i++) {
                float t = xc[i] * a + bb;
                if (silu) t = t / (1.0f + expf(-t));
                yc[i] = t;
            }
        }
    }
}

/* Largest im2col band, in floats. */
#ifndef COL_BUDGET
#define COL_BUDGET ((size_t)1 << 24) /* tests may build with a tiny one to exercise the bands */
#endif

/* y [cout, Ho, Wo] = conv3x3 of x [cin, H, W] + b, by mode:
 *    0: pad 1, stride 1 (Ho = H, Wo = W);
 *    1: of x upsampled by nearest x2, pad 1, stride 1 (Ho = 2H, Wo = 2W) — Upsample;
 *   -1: of x padded with zeros by (left 0, right 1, top 0, bottom 1), pad 0, stride 2
 *       (H, W even: Ho = H/2, Wo = W/2) — the encoder's Downsample.
 * im2col by bands of output rows into col, then sgemm. */
static void conv3x3(int threads, const float *x, int cin, int H, int W, int mode, const float *w,
                    const float *b, int cout, float *y, float *col, size_t col_cap) {
    const int down = mode < 0, up = mode > 0;
    const int Ho = down ? H / 2 : H << up, Wo = down ? W / 2 : W << up;
    const size_t K = (size_t)cin * 9;
    int band = (int)(col_cap / (K * (size_t)Wo));
    if (band < 1) band = 1;
    if (band > Ho) band = Ho;
    for (int r0 = 0; r0 < Ho; r0 += band) {
        const int rows = r0 + band <= Ho ? band : Ho - r0;
        const size_t np = (size_t)rows * Wo;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (size_t kk = 0; kk < K; kk++) {
            const int ci = (int)(kk / 9), dy = (int)(kk % 9) / 3 - 1, dx = (int)(kk % 3) - 1;
            const float *xc = x + (size_t)ci * H * W;
            float *dst = col + kk * np;
            if (down) {
                const int ky = dy + 1, kx = dx + 1;
                for (int r = 0; r < rows; r++) {
                    const int uy = 2 * (r0 + r) + ky;
                    float *d = dst + (size_t)r * Wo;
                    if (uy >= H) {
                        memset(d, 0, (size_t)Wo * sizeof(float));
                        continue;
                    }
                    const float *xr = xc + (size_t)uy * W;
                    for (int ox = 0; ox < Wo; ox++) {
                        const int ux = 2 * ox + kx;
                        d[ox] = ux < W ? xr[ux] : 0.0f;
                    }
                }
                continue;
            }
            for (int r = 0; r < rows; r++) {
                const int uy = r0 + r + dy;
                float *d = dst + (size_t)r * Wo;
                if (uy < 0 || uy >= Ho) {
                    memset(d, 0, (size_t)Wo * sizeof(float));
                    continue;
                }
                const float *xr = xc + (size_t)(uy >> up) * W;
                for (int ox = 0; ox < Wo; ox++) {
                    const int ux = ox + dx;
                    d[ox] = ux < 0 || ux >= Wo ? 0.0f : xr[ux >> up];
                }
            }
        }
        float *yb = y + (size_t)r0 * Wo;
        const size_t ld = (size_t)Ho * Wo;
        for (int co = 0; co < cout; co++)
            for (size_t i = 0; i < np; i++) yb[co * ld + i] = b[co];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)np, (int)K, 1.0f, w, (int)K,
                    col, (int)np, 1.0f, yb, (int)ld);
    }
}

/* y [cout, n] = w [cout, cin] x [cin, n] + b (+ y when acc). */
static void conv1x1(const float *x, int cin, size_t n, const float *w, const float *b, int cout,
                    int acc, float *y) {
    if (!acc)
        for (int co = 0; co < cout; co++)
            for (size_t i = 0; i < n; i++) y[co * n + i] = b[co];
    else
        for (int co = 0; co < cout; co++)
            for (size_t i = 0; i < n; i++) y[co * n + i] += b[co];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)n, cin, 1.0f, w, cin, x, (int)n,
                1.0f, y, (int)n);
}

/* Working state of one decode or encode. */
typedef struct {
    int threads, G;
    float *cur, *a, *b;   /* activation buffers; cur holds the stream */
    float *col;
    size_t col_cap;
    int H, W;
} run;

static void swap(float **p, float **q) {
    float *t = *p;
    *p = *q;
    *q = t;
}

/* cur [cin, H, W] <- ResnetBlock(cur) [cout, H, W]. */
static void resnet(run *r, const cd_ae_resnet *p) {
    const size_t n = (size_t)r->H * r->W;
    group_norm(r->threads, r->cur, p->cin, n, r->G, p->n1w, p->n1b, 1, r->a);
    conv3x3(r->threads, r->a, p->cin, r->H, r->W, 0, p->c1w, p->c1b, p->cout, r->b, r->col, r->col_cap);
    group_norm(r->threads, r->b, p->cout, n, r->G, p->n2w, p->n2b, 1, r->b);
    conv3x3(r->threads, r->b, p->cout, r->H, r->W, 0, p->c2w, p->c2b, p->cout, r->a, r->col, r->col_cap);
    /* a = h; stream = skip + h */
    if (p->skw) {
        conv1x1(r->cur, p->cin, n, p->skw, p->skb, p->cout, 1, r->a);
        swap(&r->cur, &r->a);
    } else {
        float *c = r->cur;
        const float *h = r->a;
        const size_t m = (size_t)p->cout * n;
#pragma omp parallel for num_threads(r->threads) schedule(static)
        for (size_t i = 0; i < m; i++) c[i] += h[i];
    }
}

/* Adds bias[c] to every row of t [n, C]. */
static void add_cols(int threads, float *t, size_t n, int C, const float *bias) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) t[i * C + c] += bias[c];
}

/* cur [C, H, W] += proj_out(attention(q, k, v of GroupNorm(cur))): one head of C channels over the
 * H*W positions, scale 1/sqrt(C). q, k, v, o token-major [H*W, C], in a, b and col. */
static cd_status attention(cd_ctx *ctx, run *r, const cd_ae_attn *ae, int C, float *q, float *k,
                           float *v, float *o) {
    const size_t n = (size_t)r->H * r->W;
    float *hn = r->a;
    group_norm(r->threads, r->cur, C, n, r->G, ae->an_w, ae->an_b, 0, hn);
    const struct { const float *w, *b; float *t; } p[3] = {{ae->q_w, ae->q_b, q}, {ae->k_w, ae->k_b, k},
                                                            {ae->v_w, ae->v_b, v}};
    for (int i = 0; i < 3; i++) { /* t [n, C] = hn^T W^T + b */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)n, C, C, 1.0f, hn, (int)n, p[i].w, C,
                    0.0f, p[i].t, C);
        add_cols(r->threads, p[i].t, n, C, p[i].b);
    }
    cd_attn_desc d = {1, C, 0, r->H, r->W, 0, 0, 1.0f / sqrtf((float)C)};
    cd_status s = cd_attention_forward(ctx, &d, CD_DTYPE_F32, q, k, v, NULL, o, NULL);
    if (s) return s;
    /* cur [C, n] += Wo o^T + bo */
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < n; i++) r->cur[c * n + i] += ae->o_b[c];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, (int)n, C, 1.0f, ae->o_w, C, o, C, 1.0f,
                r->cur, (int)n);
    return CD_OK;
}

/* ---- scratch sizing and the forward passes on caller-provided scratch ---------------------- */

/* The im2col band: the whole largest image if it fits COL_BUDGET, else bands of rows (at least
 * one row of `row` floats); the mid attention's q, k, v, o (`attn` floats) share it. Monotone in
 * the image size, as the activation size is, so that one tile-sized scratch serves every smaller
 * tile (ae_tile.c). */
static size_t col_floats(size_t row, size_t rows, size_t attn) {
    size_t col = row * rows;
    if (col > COL_BUDGET) col = row > COL_BUDGET ? row : COL_BUDGET;
    return col < attn ? attn : col;
}

cd_ae_scratch cd_ae_decode_scratch(const cd_ae_decoder *ae, int h, int w) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult;
    /* Largest activation: at upscale step k (level n-1-k) the stream has the level's channels and
     * the previous level's (conv_in / mid at k = 0). */
    size_t big = 0;
    int maxc = c->z_channels;
    for (int k = 0; k < n; k++) {
        const int lvl = n - 1 - k;
        int cm = c->ch * c->ch_mult[lvl];
        const int prev = k == 0 ? c->z_channels : c->ch * c->ch_mult[lvl + 1];
        if (prev > cm) cm = prev;
        if (k == n - 1 && c->out_channels > cm) cm = c->out_channels;
        if (cm > maxc) maxc = cm;
        const size_t e = (size_t)cm * ((size_t)h << k) * ((size_t)w << k);
        if (e > big) big = e;
    }
    const int ctop = c->ch * c->ch_mult[n - 1];
    const size_t attn = 4 * (size_t)h * w * ctop; /* q, k, v, o at k = 0 */
    const size_t row = (size_t)maxc * 9 * ((size_t)w << (n - 1));
    return (cd_ae_scratch){big, col_floats(row, (size_t)h << (n - 1), attn)};
}

cd_ae_scratch cd_ae_encode_scratch(const cd_ae_encoder *ae, int H, int W) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult, dn = 1 << (n - 1);
    /* Largest activation: at level lvl (H >> lvl, W >> lvl) the stream has the level's channels
     * and the previous level's (ch, conv_in's, at level 0); the last level also holds 2 z. */
    size_t big = 0;
    int maxc = c->in_channels > c->ch ? c->in_channels : c->ch;
    for (int lvl = 0; lvl < n; lvl++) {
        int cm = c->ch * c->ch_mult[lvl];
        const int prev = lvl == 0 ? c->ch : c->ch * c->ch_mult[lvl - 1];
        if (prev > cm) cm = prev;
        if (lvl == n - 1 && 2 * c->z_channels > cm) cm = 2 * c->z_channels;
        if (cm > maxc) maxc = cm;
        const size_t e = (size_t)cm * (size_t)(H >> lvl) * (size_t)(W >> lvl);
        if (e > big) big = e;
    }
    const int ctop = c->ch * c->ch_mult[n - 1];
    const size_t attn = 4 * (size_t)(H / dn) * (W / dn) * ctop;
    const size_t row = (size_t)maxc * 9 * (size_t)W;
    return (cd_ae_scratch){big, col_floats(row, (size_t)H, attn)};
}

/* The run state on mem [3 * sc.act + sc.col]. */
static run run_on(const cd_ctx *ctx, int G, cd_ae_scratch sc, float *mem, int H, int W) {
    return (run){cd_ctx_threads(ctx), G, mem, mem + sc.act, mem + 2 * sc.act, mem + 3 * sc.act, sc.col,
                 H, W};
}

cd_status cd_ae_decode_run(cd_ctx *ctx, const cd_ae_decoder *ae, const float *z, int h, int w,
                           cd_ae_scratch sc, float *mem, float *out) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult;
    const int ctop = c->ch * c->ch_mult[n - 1];
    run r = run_on(ctx, ae->groups, sc, mem, h, w);
    /* The latent's scale and shift (ae.h): zz = z / 0.3611 + 0.1159, in b. */
    const size_t nz = (size_t)c->z_channels * h * w;
    for (size_t i = 0; i < nz; i++) r.b[i] = z[i] / CD_AE_SCALE + CD_AE_SHIFT;
    conv3x3(r.threads, r.b, c->z_channels, h, w, 0, ae->conv_in_w, ae->conv_in_b, ctop, r.cur, r.col,
            r.col_cap);
    resnet(&r, &ae->mid1);
    const size_t nc = (size_t)h * w * ctop;
    cd_status s = attention(ctx, &r, &ae->attn, ctop, r.col, r.col + nc, r.col + 2 * nc, r.col + 3 * nc);
    if (s) return s;
    resnet(&r, &ae->mid2);
    const int nb = c->num_res_blocks + 1;
    int cc = ctop;
    for (int lvl = n - 1; lvl >= 0; lvl--) {
        for (int j = 0; j < nb; j++) resnet(&r, &ae->blocks[lvl * nb + j]);
        cc = ae->blocks[lvl * nb + nb - 1].cout;
        if (lvl) {
            conv3x3(r.threads, r.cur, cc, r.H, r.W, 1, ae->up_w[lvl], ae->up_b[lvl], cc, r.a, r.col,
                    r.col_cap);
            swap(&r.cur, &r.a);
            r.H *= 2;
            r.W *= 2;
        }
    }
    group_norm(r.threads, r.cur, cc, (size_t)r.H * r.W, r.G, ae->norm_out_w, ae->norm_out_b, 1, r.a);
    conv3x3(r.threads, r.a, cc, r.H, r.W, 0, ae->conv_out_w, ae->conv_out_b, c->out_channels, out, r.col,
            r.col_cap);
    return CD_OK;
}

cd_status cd_ae_decode(cd_ctx *ctx, const cd_ae_decoder *ae, const float *z, int h, int w, float *out) {
    const int n = ae->cfg.n_mult;
    if (h < 1 || w < 1 || ((int64_t)h << (n - 1)) > 65536 || ((int64_t)w << (n - 1)) > 65536)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: latent %dx%d out of range", h, w);
    const cd_ae_scratch sc = cd_ae_decode_scratch(ae, h, w);
    float *mem = malloc(cd_ae_scratch_floats(sc) * sizeof(float));
    if (!mem) return cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory decoding %dx%d", h, w);
    const cd_status s = cd_ae_decode_run(ctx, ae, z, h, w, sc, mem, out);
    free(mem);
    return s;
}

cd_status cd_ae_encode_run(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W,
                           cd_ae_scratch sc, float *mem, int raw, float *out) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult, dn = 1 << (n - 1);
    const int ctop = c->ch * c->ch_mult[n - 1];
    const int h = H / dn, w = W / dn;
    run r = run_on(ctx, ae->groups, sc, mem, H, W);
    conv3x3(r.threads, img, c->in_channels, H, W, 0, ae->conv_in_w, ae->conv_in_b, c->ch, r.cur, r.col,
            r.col_cap);
    const int nb = c->num_res_blocks;
    for (int lvl = 0; lvl < n; lvl++) {
        for (int j = 0; j < nb; j++) resnet(&r, &ae->blocks[lvl * nb + j]);
        if (lvl != n - 1) {
            const int cc = ae->blocks[lvl * nb + nb - 1].cout;
            conv3x3(r.threads, r.cur, cc, r.H, r.W, -1, ae->down_w[lvl], ae->down_b[lvl], cc, r.a,
                    r.col, r.col_cap);
            swap(&r.cur, &r.a);
            r.H /= 2;
            r.W /= 2;
        }
    }
    resnet(&r, &ae->mid1);
    const size_t nc = (size_t)h * w * ctop;
    cd_status s = attention(ctx, &r, &ae->attn, ctop, r.col, r.col + nc, r.col + 2 * nc, r.col + 3 * nc);
    if (s) return s;
    resnet(&r, &ae->mid2);
    group_norm(r.threads, r.cur, ctop, (size_t)h * w, r.G, ae->norm_out_w, ae->norm_out_b, 1, r.a);
    conv3x3(r.threads, r.a, ctop, h, w, 0, ae->conv_out_w, ae->conv_out_b, 2 * c->z_channels, r.b,
            r.col, r.col_cap);
    /* mean = the first z_channels channels; z = scale * (mean - shift) (ae.h), or the mean itself
     * (raw: tiles are blended before the scale and shift, as diffusers blends the moments) */
    const size_t nz = (size_t)c->z_channels * h * w;
    if (raw)
        memcpy(out, r.b, nz * sizeof(float));
    else
        for (size_t i = 0; i < nz; i++) out[i] = CD_AE_SCALE * (r.b[i] - CD_AE_SHIFT);
    return CD_OK;
}

cd_status cd_ae_encode(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W, float *out) {
    const int dn = cd_ae_downscale(ae);
    if (H < 1 || W < 1 || H > 65536 || W > 65536 || H % dn || W % dn)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "ae: image %dx%d: height and width must be positive multiples of %d "
                            "(at most 65536)", H, W, dn);
    const cd_ae_scratch sc = cd_ae_encode_scratch(ae, H, W);
    float *mem = malloc(cd_ae_scratch_floats(sc) * sizeof(float));
    if (!mem) return cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory encoding %dx%d", H, W);
    const cd_status s = cd_ae_encode_run(ctx, ae, img, H, W, sc, mem, 0, out);
    free(mem);
    return s;
}
