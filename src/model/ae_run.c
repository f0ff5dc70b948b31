/* ae_run.c — the FLUX autoencoder's decoder and encoder forward (ae.h), written once against the
 * ops table (src/ops/ops.h): conv2d (3x3, the fused nearest-x2 Upsample, the Downsample's
 * (0,1,0,1)-padded stride-2 conv, 1x1 shortcuts and the attention's output projection),
 * group_norm (+ SiLU), add, transpose, linear (the attention's q, k, v) and attention. It calls no
 * backend: the activations and the weights live in the memory of the decoder's / encoder's table
 * (ae->ops; ae->dev holds the weights' copy when that memory is not the host's).
 *
 * cd_ae_decode / cd_ae_encode size the scratch (cd_ae_*_scratch), allocate it through the table,
 * upload the input, call cd_ae_*_run and download the result; the tiled paths (ae_tile.c) call
 * cd_ae_*_run per tile on one scratch block. The latent's scale and shift are applied on the host
 * around the upload / download (z / 0.3611 + 0.1159 in, 0.3611 (mean - 0.1159) out).
 *
 * ref: docs/flux.md (the autoencoder); BFL flux/modules/autoencoder.py (Encoder, Decoder,
 * ResnetBlock, AttnBlock, Downsample, Upsample); diffusers AutoencoderKL.encode / decode. */
#include "ae.h"
#include "../ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Working state of one decode or encode; every buffer is in ops's memory. */
typedef struct {
    cd_ctx *ctx;
    const cd_ops *ops;
    const float *arena, *dev; /* the weights' host arena and its copy in ops's memory (or NULL) */
    int G;
    float *cur, *a, *b; /* activation buffers [act] each; cur holds the stream */
    float *attn;        /* the mid attention's q, k, v, o [4, n, C] */
    int H, W;
} run;

/* A weight pointer (into the host arena) as the backend sees it. */
static const float *P(const run *r, const float *p) { return r->dev ? r->dev + (p - r->arena) : p; }

static void swap(float **p, float **q) {
    float *t = *p;
    *p = *q;
    *q = t;
}

/* y [cout, Ho, Wo] = conv3x3 of x [cin, r->H, r->W] + b, by mode:
 *    0: pad 1, stride 1 (Ho = H, Wo = W);
 *    1: of x upsampled by nearest x2, pad 1, stride 1 (Ho = 2H, Wo = 2W) — Upsample;
 *   -1: of x padded with zeros by (left 0, right 1, top 0, bottom 1), stride 2 (H, W even:
 *       Ho = H/2, Wo = W/2) — the encoder's Downsample. */
static cd_status conv3(const run *r, const float *x, int cin, int mode, const float *w, const float *b, int cout,
                       float *y) {
    const int p = mode < 0 ? 0 : 1, q = 1;
    const cd_conv_desc d = {cin, r->H, r->W, cout, 3, mode < 0 ? 2 : 1, mode > 0, {p, q, p, q}};
    return r->ops->conv2d(r->ctx, &d, x, P(r, w), P(r, b), 0, y);
}

/* y [cout, n] (+)= w [cout, cin] x [cin, n] + b (acc: added to y). */
static cd_status conv1(const run *r, const float *x, int cin, const float *w, const float *b, int cout, int acc,
                       float *y) {
    const cd_conv_desc d = {cin, r->H, r->W, cout, 1, 1, 0, {0, 0, 0, 0}};
    return r->ops->conv2d(r->ctx, &d, x, P(r, w), P(r, b), acc, y);
}

static void norm(const run *r, const float *x, int C, const float *w, const float *b, int silu, float *y) {
    r->ops->group_norm(r->ctx, x, C, (size_t)r->H * r->W, r->G, P(r, w), P(r, b), CD_AE_EPS, silu, y);
}

/* cur [cin, H, W] <- ResnetBlock(cur) [cout, H, W]. */
static cd_status resnet(run *r, const cd_ae_resnet *p) {
    cd_status s;
    norm(r, r->cur, p->cin, p->n1w, p->n1b, 1, r->a);
    if ((s = conv3(r, r->a, p->cin, 0, p->c1w, p->c1b, p->cout, r->b))) return s;
    norm(r, r->b, p->cout, p->n2w, p->n2b, 1, r->b);
    if ((s = conv3(r, r->b, p->cout, 0, p->c2w, p->c2b, p->cout, r->a))) return s;
    /* a = h; stream = skip + h */
    if (p->skw) {
        if ((s = conv1(r, r->cur, p->cin, p->skw, p->skb, p->cout, 1, r->a))) return s;
        swap(&r->cur, &r->a);
    } else {
        r->ops->add(r->ctx, r->cur, r->a, (size_t)p->cout * r->H * r->W);
    }
    return CD_OK;
}

/* cur [C, H, W] += proj_out(attention(q, k, v of GroupNorm(cur))): one head of C channels over the
 * H*W positions, scale 1/sqrt(C). q, k, v, o token-major [H*W, C] in r->attn. */
static cd_status attention(run *r, const cd_ae_attn *p, int C) {
    const cd_ops *ops = r->ops;
    const size_t n = (size_t)r->H * r->W, nc = n * C;
    float *q = r->attn, *k = q + nc, *v = k + nc, *o = v + nc;
    cd_status s;
    norm(r, r->cur, C, p->an_w, p->an_b, 0, r->a);
    ops->transpose(r->ctx, r->a, C, n, r->b); /* hn [n, C] */
    const float *w[3] = {p->q_w, p->k_w, p->v_w}, *bb[3] = {p->q_b, p->k_b, p->v_b};
    float *t[3] = {q, k, v};
    for (int i = 0; i < 3; i++) { /* t [n, C] = hn W^T + b */
        const cd_weight lw = {P(r, w[i]), CD_DTYPE_F32, C, C};
        if ((s = ops->linear(r->ctx, r->b, n, &lw, P(r, bb[i]), t[i]))) return s;
    }
    const cd_attn_desc d = {1, C, 0, r->H, r->W, 0, 0, 1.0f / sqrtf((float)C)};
    if ((s = ops->attention(ops, r->ctx, &d, q, k, v, NULL, o, NULL))) return s;
    ops->transpose(r->ctx, o, n, C, r->a); /* o^T [C, n] */
    return conv1(r, r->a, C, p->o_w, p->o_b, C, 1, r->cur);
}

/* ---- scratch sizing and the forward passes on caller-provided scratch ---------------------- */

/* The levels a pass visits, in order: at step k the stream has at most cm[k] channels on an
 * h[k] x w[k] grid. One walk serves the activation sizing and the ops' workspace reservation.
 * At most 8 levels (ae.c refuses configs with n_mult > 8). */
typedef struct {
    int n;
    int cm[8], h[8], w[8];
} ae_levels;

/* Decode from an h x w latent: upscale step k is level n-1-k on (h << k) x (w << k); the stream has
 * the level's channels and the previous level's (conv_in / mid at k = 0), the last step also
 * out_channels. */
static ae_levels decode_levels(const cd_ae_config *c, int h, int w) {
    ae_levels l = {c->n_mult, {0}, {0}, {0}};
    for (int k = 0; k < l.n; k++) {
        const int lvl = l.n - 1 - k;
        int cm = c->ch * c->ch_mult[lvl];
        const int prev = k == 0 ? c->z_channels : c->ch * c->ch_mult[lvl + 1];
        if (prev > cm) cm = prev;
        if (k == l.n - 1 && c->out_channels > cm) cm = c->out_channels;
        l.cm[k] = cm;
        l.h[k] = h << k;
        l.w[k] = w << k;
    }
    return l;
}

/* Encode of an H x W image: level k on (H >> k) x (W >> k); the stream has the level's channels and
 * the previous level's (ch, conv_in's, at level 0), the last level also 2 z. */
static ae_levels encode_levels(const cd_ae_config *c, int H, int W) {
    ae_levels l = {c->n_mult, {0}, {0}, {0}};
    for (int k = 0; k < l.n; k++) {
        int cm = c->ch * c->ch_mult[k];
        const int prev = k == 0 ? c->ch : c->ch * c->ch_mult[k - 1];
        if (prev > cm) cm = prev;
        if (k == l.n - 1 && 2 * c->z_channels > cm) cm = 2 * c->z_channels;
        l.cm[k] = cm;
        l.h[k] = H >> k;
        l.w[k] = W >> k;
    }
    return l;
}

/* The largest activation of the levels, and the mid attention's q, k, v, o at the top level. */
static cd_ae_scratch scratch_of(const ae_levels *l, int ctop, size_t top_tokens) {
    size_t big = 0;
    for (int k = 0; k < l->n; k++) {
        const size_t e = (size_t)l->cm[k] * (size_t)l->h[k] * (size_t)l->w[k];
        if (e > big) big = e;
    }
    return (cd_ae_scratch){big, 4 * top_tokens * (size_t)ctop};
}

cd_ae_scratch cd_ae_decode_scratch(const cd_ae_decoder *ae, int h, int w) {
    const cd_ae_config *c = &ae->cfg;
    const ae_levels l = decode_levels(c, h, w);
    return scratch_of(&l, c->ch * c->ch_mult[c->n_mult - 1], (size_t)h * w);
}

cd_ae_scratch cd_ae_encode_scratch(const cd_ae_encoder *ae, int H, int W) {
    const cd_ae_config *c = &ae->cfg;
    const int dn = 1 << (c->n_mult - 1);
    const ae_levels l = encode_levels(c, H, W);
    return scratch_of(&l, c->ch * c->ch_mult[c->n_mult - 1], (size_t)(H / dn) * (W / dn));
}

/* Reserves the scratch the table says the convs and the mid attention of a pass need (the contract
 * of ops.h), so that the ops themselves never allocate: for every level the pass visits, a 3x3
 * conv with and without the fused upsample at the level's widest channel count, and the mid
 * attention on th x tw (a grow-only reservation: later calls cost nothing). */
static cd_status reserve_pass(cd_ctx *ctx, const cd_ops *ops, const ae_levels *l, int ctop, int th, int tw) {
    size_t need = 0;
    for (int k = 0; k < l->n; k++)
        for (int up = 0; up < 2; up++) {
            const int h = up ? l->h[k] / 2 : l->h[k], w = up ? l->w[k] / 2 : l->w[k];
            const cd_conv_desc cd = {l->cm[k], h, w, l->cm[k], 3, 1, up, {1, 1, 1, 1}};
            const cd_op_desc od = {.op = CD_OP_CONV2D, .conv = &cd};
            const size_t b = ops->workspace(ops, ctx, &od);
            if (b > need) need = b;
        }
    const cd_attn_desc ad = {1, ctop, 0, th, tw, 0, 0, 1.0f / sqrtf((float)ctop)};
    const cd_op_desc oa = {.op = CD_OP_ATTENTION, .attn = &ad};
    const size_t b = ops->workspace(ops, ctx, &oa);
    return ops->reserve(ctx, b > need ? b : need);
}

static cd_status reserve_decode(cd_ctx *ctx, const cd_ae_decoder *ae, int h, int w) {
    const cd_ae_config *c = &ae->cfg;
    const ae_levels l = decode_levels(c, h, w);
    return reserve_pass(ctx, ae->ops, &l, c->ch * c->ch_mult[c->n_mult - 1], h, w);
}

static cd_status reserve_encode(cd_ctx *ctx, const cd_ae_encoder *ae, int H, int W) {
    const cd_ae_config *c = &ae->cfg;
    ae_levels l = encode_levels(c, H, W);
    if (c->in_channels > l.cm[0]) l.cm[0] = c->in_channels; /* conv_in reads the image's channels */
    return reserve_pass(ctx, ae->ops, &l, c->ch * c->ch_mult[c->n_mult - 1], l.h[l.n - 1], l.w[l.n - 1]);
}

/* The run state on mem [3 * sc.act + sc.attn]. */
static run run_on(cd_ctx *ctx, const cd_ops *ops, const float *arena, const float *dev, int G, cd_ae_scratch sc,
                  float *mem, int H, int W) {
    return (run){ctx, ops, arena, dev, G, mem, mem + sc.act, mem + 2 * sc.act, mem + 3 * sc.act, H, W};
}

cd_status cd_ae_decode_run(cd_ctx *ctx, const cd_ae_decoder *ae, const float *zz, int h, int w, cd_ae_scratch sc,
                           float *mem, float *out) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult;
    const int ctop = c->ch * c->ch_mult[n - 1];
    run r = run_on(ctx, ae->ops, ae->arena, ae->dev, ae->groups, sc, mem, h, w);
    cd_status s = reserve_decode(ctx, ae, h, w);
    if (s) return s;
    if ((s = conv3(&r, zz, c->z_channels, 0, ae->conv_in_w, ae->conv_in_b, ctop, r.cur))) return s;
    if ((s = resnet(&r, &ae->mid1)) || (s = attention(&r, &ae->attn, ctop)) || (s = resnet(&r, &ae->mid2))) return s;
    const int nb = c->num_res_blocks + 1;
    int cc = ctop;
    for (int lvl = n - 1; lvl >= 0; lvl--) {
        for (int j = 0; j < nb; j++)
            if ((s = resnet(&r, &ae->blocks[lvl * nb + j]))) return s;
        cc = ae->blocks[lvl * nb + nb - 1].cout;
        if (lvl) {
            if ((s = conv3(&r, r.cur, cc, 1, ae->up_w[lvl], ae->up_b[lvl], cc, r.a))) return s;
            swap(&r.cur, &r.a);
            r.H *= 2;
            r.W *= 2;
        }
    }
    norm(&r, r.cur, cc, ae->norm_out_w, ae->norm_out_b, 1, r.a);
    return conv3(&r, r.a, cc, 0, ae->conv_out_w, ae->conv_out_b, c->out_channels, out);
}

cd_status cd_ae_encode_run(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W, cd_ae_scratch sc,
                           float *mem, float *out) {
    const cd_ae_config *c = &ae->cfg;
    const int n = c->n_mult;
    const int ctop = c->ch * c->ch_mult[n - 1];
    run r = run_on(ctx, ae->ops, ae->arena, ae->dev, ae->groups, sc, mem, H, W);
    cd_status s = reserve_encode(ctx, ae, H, W);
    if (s) return s;
    if ((s = conv3(&r, img, c->in_channels, 0, ae->conv_in_w, ae->conv_in_b, c->ch, r.cur))) return s;
    const int nb = c->num_res_blocks;
    for (int lvl = 0; lvl < n; lvl++) {
        for (int j = 0; j < nb; j++)
            if ((s = resnet(&r, &ae->blocks[lvl * nb + j]))) return s;
        if (lvl != n - 1) {
            const int cc = ae->blocks[lvl * nb + nb - 1].cout;
            if ((s = conv3(&r, r.cur, cc, -1, ae->down_w[lvl], ae->down_b[lvl], cc, r.a))) return s;
            swap(&r.cur, &r.a);
            r.H /= 2;
            r.W /= 2;
        }
    }
    if ((s = resnet(&r, &ae->mid1)) || (s = attention(&r, &ae->attn, ctop)) || (s = resnet(&r, &ae->mid2))) return s;
    norm(&r, r.cur, ctop, ae->norm_out_w, ae->norm_out_b, 1, r.a);
    return conv3(&r, r.a, ctop, 0, ae->conv_out_w, ae->conv_out_b, 2 * c->z_channels, out);
}

/* ---- untiled calls: host in, host out ------------------------------------------------------- */

/* One block in ops's memory for the run scratch, the input and the output (floats each). */
static cd_status alloc_run(cd_ctx *ctx, const cd_ops *ops, cd_ae_scratch sc, size_t in, size_t out, float **mem,
                           float **din, float **dout) {
    const size_t scr = cd_ae_scratch_floats(sc);
    void *p = NULL;
    cd_status s = ops->alloc(ctx, (scr + in + out) * sizeof(float), &p);
    if (s) return s;
    *mem = p;
    *din = *mem + scr;
    *dout = *din + in;
    return CD_OK;
}

cd_status cd_ae_decode(cd_ctx *ctx, const cd_ae_decoder *ae, const float *z, int h, int w, float *out) {
    const int n = ae->cfg.n_mult, up = cd_ae_upscale(ae);
    if (h < 1 || w < 1 || ((int64_t)h << (n - 1)) > 65536 || ((int64_t)w << (n - 1)) > 65536)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: latent %dx%d out of range", h, w);
    const size_t nz = (size_t)ae->cfg.z_channels * h * w;
    const size_t nout = (size_t)ae->cfg.out_channels * h * up * w * up;
    float *zz = malloc(nz * sizeof(float)), *mem = NULL, *dz, *dout;
    if (!zz) return cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory decoding %dx%d", h, w);
    /* The latent's scale and shift (ae.h) */
    for (size_t i = 0; i < nz; i++) zz[i] = z[i] / CD_AE_SCALE + CD_AE_SHIFT;
    const cd_ae_scratch sc = cd_ae_decode_scratch(ae, h, w);
    cd_status s = alloc_run(ctx, ae->ops, sc, nz, nout, &mem, &dz, &dout);
    if (!s) s = ae->ops->upload(ctx, dz, zz, nz * sizeof(float));
    if (!s) s = cd_ae_decode_run(ctx, ae, dz, h, w, sc, mem, dout);
    if (!s) s = ae->ops->download(ctx, out, dout, nout * sizeof(float));
    ae->ops->free(ctx, mem);
    free(zz);
    return s;
}

cd_status cd_ae_encode(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W, float *out) {
    const int dn = cd_ae_downscale(ae);
    if (H < 1 || W < 1 || H > 65536 || W > 65536 || H % dn || W % dn)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "ae: image %dx%d: height and width must be positive multiples of %d "
                            "(at most 65536)",
                            H, W, dn);
    const size_t nin = (size_t)ae->cfg.in_channels * H * W;
    const size_t nz = (size_t)ae->cfg.z_channels * (H / dn) * (W / dn);
    const cd_ae_scratch sc = cd_ae_encode_scratch(ae, H, W);
    float *mem = NULL, *dimg, *dmom;
    cd_status s = alloc_run(ctx, ae->ops, sc, nin, 2 * nz, &mem, &dimg, &dmom);
    if (!s) s = ae->ops->upload(ctx, dimg, img, nin * sizeof(float));
    if (!s) s = cd_ae_encode_run(ctx, ae, dimg, H, W, sc, mem, dmom);
    /* mean = the first z_channels channels of the moments; z = scale * (mean - shift) (ae.h) */
    if (!s) s = ae->ops->download(ctx, out, dmom, nz * sizeof(float));
    ae->ops->free(ctx, mem);
    if (!s)
        for (size_t i = 0; i < nz; i++) out[i] = CD_AE_SCALE * (out[i] - CD_AE_SHIFT);
    return s;
}
