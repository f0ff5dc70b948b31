/* flux.c — the FLUX transformer forward (docs/flux.md), once, against the ops table; the same
 * sequence of ops serves inference (no tape) and training (a tape records what the backward in
 * train/flux_grad.c reads: the taped forward writes into the tape where an op can, and copies
 * the arena buffers it reuses otherwise).
 * Critical details (each a bug in some port): text first in the joint sequence; modulation chunks
 * are (shift, scale, gate) and apply as (1 + scale) * LN(x) + shift; LayerNorm eps 1e-6 without
 * affine; QK RMSNorm per head before RoPE; RoPE pairs are interleaved; the final adaLN is
 * (shift, scale) in BFL order (bound as row slices, so diffusers' swapped halves need no copy);
 * timestep and guidance are embedded as 1000 t with cos first. */
#include "flux.h"

#include <stdlib.h>
#include <string.h>

/* Arena layout, in floats, for N tokens. */
static size_t arena_floats(const cd_flux_config *c, size_t N, size_t *off) {
    const size_t D = (size_t)c->hidden, F = (size_t)c->mlp_hidden, NH = (size_t)c->heads;
    const size_t sizes[] = {
        N * D,           /* x */
        N * D,           /* xn */
        N * (3 * D + F), /* h: q | k | v | mlp rows (each projection contiguous [N, out]) */
        N * D,
        N * D,
        N * D,       /* q, k, v heads-major */
        N * D,       /* o */
        NH * N,      /* lse */
        N * (D + F), /* cat */
        N * D,       /* y */
        D,
        6 * D,
        D,
        D,                       /* vec, mod, silu_vec, tmp */
        2 * CD_FLUX_TEMB,        /* emb: timestep | guidance */
        N * (size_t)c->head_dim, /* cs: [N, HD/2, 2] */
        N * 3,                   /* ids */
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        off[i] = total;
        total += (sizes[i] + 15) & ~(size_t)15; /* 64-byte aligned pieces */
    }
    return total;
}

/* Device input/output slots and the host staging block (device backends only), in floats. */
static size_t io_floats(const cd_flux_config *c, size_t N, size_t *off) {
    const size_t sizes[] = {N * (size_t)c->in_channels, N * (size_t)c->context_dim, (size_t)c->pooled_dim,
                            N * (size_t)c->out_channels};
    size_t total = 0;
    for (size_t i = 0; i < 4; i++) {
        off[i] = total;
        total += (sizes[i] + 63) & ~(size_t)63;
    }
    return total;
}

cd_status cd_flux_arena_init_ops(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *cfg, size_t max_tokens,
                                 cd_flux_arena *a) {
    memset(a, 0, sizeof *a);
    size_t off[17], ioff[4];
    const size_t floats = arena_floats(cfg, max_tokens, off);
    const size_t iof = ops->host_memory ? 0 : io_floats(cfg, max_tokens, ioff);
    size_t bytes;
    if (floats > SIZE_MAX / 2 - iof || !cd_mul_ok(floats + iof, sizeof(float), &bytes))
        return cd_set_error(ctx, CD_ERR_OOM, "flux: activation arena for %zu tokens overflows", max_tokens);
    void *blk = NULL;
    cd_status s = ops->alloc(ctx, bytes, &blk);
    if (s)
        return cd_set_error(ctx, s,
                            "flux: cannot allocate the activation arena (%zu MiB for %zu tokens "
                            "on %s): %s",
                            bytes >> 20, max_tokens, ops->name, cd_ctx_error(ctx));
    a->ops = ops;
    a->ctx = ctx;
    a->block = blk;
    a->bytes = bytes;
    a->max_tokens = max_tokens;
    float *b = a->block;
    a->x = b + off[0];
    a->xn = b + off[1];
    a->h = b + off[2];
    a->q = b + off[3];
    a->k = b + off[4];
    a->v = b + off[5];
    a->o = b + off[6];
    a->lse = b + off[7];
    a->cat = b + off[8];
    a->y = b + off[9];
    a->vec = b + off[10];
    a->mod = b + off[11];
    a->silu_vec = b + off[12];
    a->tmp = b + off[13];
    a->emb = b + off[14];
    a->cs = b + off[15];
    a->ids = b + off[16];
    if (ops->host_memory) {
        a->h_emb = a->emb;
        a->h_cs = a->cs;
        a->h_ids = a->ids;
        return CD_OK;
    }
    float *io = b + floats;
    a->in_img = io + ioff[0];
    a->in_txt = io + ioff[1];
    a->in_pooled = io + ioff[2];
    a->out = io + ioff[3];
    const size_t hf = 2 * CD_FLUX_TEMB + max_tokens * ((size_t)cfg->head_dim + 3) + 32;
    a->host = aligned_alloc(64, ((hf * sizeof(float)) + 63) & ~(size_t)63);
    if (!a->host) {
        cd_flux_arena_free(a);
        return cd_set_error(ctx, CD_ERR_OOM, "flux: cannot allocate %zu MiB of host staging", (hf * 4) >> 20);
    }
    a->h_emb = a->host;
    a->h_cs = a->host + 2 * CD_FLUX_TEMB;
    a->h_ids = a->h_cs + (((size_t)cfg->head_dim * max_tokens + 15) & ~(size_t)15);
    return CD_OK;
}

cd_status cd_flux_arena_init(cd_ctx *ctx, const cd_flux_config *cfg, size_t max_tokens, cd_flux_arena *a) {
    return cd_flux_arena_init_ops(ctx, cd_ops_cpu(), cfg, max_tokens, a);
}

void cd_flux_arena_free(cd_flux_arena *a) {
    if (a->ops) a->ops->free(a->ctx, a->block);
    free(a->host);
    memset(a, 0, sizeof *a);
}

#define TRY(expr)                   \
    do {                            \
        cd_status s_ = (expr);      \
        if (s_ != CD_OK) return s_; \
    } while (0)

static cd_status lin(cd_ctx *ctx, const cd_ops *ops, const cd_lin *l, const float *x, size_t n, float *y) {
    return ops->linear(ctx, x, n, &l->w, l->b, y);
}

/* A tape record of a buffer the forward goes on to overwrite: dst [rows, cols] = src. */
static void keep(cd_ctx *ctx, const cd_ops *ops, float *dst, const float *src, size_t rows, size_t cols) {
    ops->copy_rows(ctx, dst, cols, src, cols, rows, cols);
}

/* vec-sized MLP embedder: out [D] = l2(silu(l1(x))); keep_h (tape, or NULL): l1's output. */
static cd_status embed(cd_ctx *ctx, const cd_ops *ops, const cd_lin *l1, const cd_lin *l2, const float *x, float *tmp,
                       float *out, float *keep_h) {
    TRY(lin(ctx, ops, l1, x, 1, tmp));
    if (keep_h) keep(ctx, ops, keep_h, tmp, 1, (size_t)l1->w.out);
    ops->silu(ctx, tmp, (size_t)l1->w.out);
    return lin(ctx, ops, l2, tmp, 1, out);
}

/* One layer's attention buffers: the arena's, or (taped) the layer's record. */
typedef struct {
    float *q, *k, *v; /* [NH, N, HD] */
    float *o;         /* [NH, N, HD] */
    float *lse;       /* [NH, N] */
} heads;

static heads layer_heads(cd_flux_arena *a, const cd_flux_tape_layer *y) {
    return y ? (heads){y->q, y->k, y->v, y->o, y->lse} : (heads){a->q, a->k, a->v, a->o, a->lse};
}

/* q, k, v projections of n rows (xn) -> RMSNorm per head (q, k) -> RoPE -> heads-major joint
 * buffers at token offset t0. Uses a->h as [3][n, D] scratch; y (or NULL) keeps q, k before
 * RMSNorm. */
static cd_status project_qkv(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *c, cd_flux_arena *a, const float *xn,
                             size_t n, size_t t0, size_t N, const cd_lin *q, const cd_lin *k, const cd_lin *v,
                             const float *norm_q, const float *norm_k, const heads *hb, const cd_flux_tape_layer *y) {
    const size_t D = (size_t)c->hidden;
    float *qr = a->h, *kr = a->h + n * D, *vr = a->h + 2 * n * D;
    TRY(lin(ctx, ops, q, xn, n, qr));
    TRY(lin(ctx, ops, k, xn, n, kr));
    TRY(lin(ctx, ops, v, xn, n, vr));
    if (y) {
        keep(ctx, ops, y->qpre + t0 * D, qr, n, D);
        keep(ctx, ops, y->kpre + t0 * D, kr, n, D);
    }
    ops->rmsnorm_heads(ctx, qr, n, c->heads, c->head_dim, norm_q, CD_FLUX_RMS_EPS);
    ops->rmsnorm_heads(ctx, kr, n, c->heads, c->head_dim, norm_k, CD_FLUX_RMS_EPS);
    ops->rope(ctx, qr, n, c->heads, c->head_dim, a->cs + t0 * c->head_dim);
    ops->rope(ctx, kr, n, c->heads, c->head_dim, a->cs + t0 * c->head_dim);
    ops->to_heads(ctx, qr, n, c->heads, c->head_dim, hb->q, N, t0);
    ops->to_heads(ctx, kr, n, c->heads, c->head_dim, hb->k, N, t0);
    ops->to_heads(ctx, vr, n, c->heads, c->head_dim, hb->v, N, t0);
    return CD_OK;
}

cd_attn_desc cd_flux_attn_desc(const cd_flux_config *c, const cd_flux_run_params *p) {
    int gh = p->grid_h, gw = p->grid_w;
    if (p->radius == 0 && (gh < 1 || gw < 1 || (int64_t)gh * gw != p->L)) {
        gh = 1; /* dense attention does not need the grid: any factorization of L will do */
        gw = p->L;
    }
    return (cd_attn_desc){c->heads, c->head_dim, p->T, gh, gw, p->radius, p->down, p->attn_scale};
}

const float *cd_flux_spatial(const cd_flux_weights *w, const cd_flux_run_params *p, int layer) {
    return (p->down >= 2 && w->spatial_weight) ? w->spatial_weight + (size_t)layer * p->down * p->down : NULL;
}

static cd_status attend(cd_ctx *ctx, const cd_ops *ops, const cd_flux_weights *w, const cd_flux_run_params *p,
                        const heads *hb, int layer) {
    const cd_attn_desc d = cd_flux_attn_desc(&w->cfg, p);
    return ops->attention(ops, ctx, &d, hb->q, hb->k, hb->v, cd_flux_spatial(w, p, layer), hb->o, hb->lse);
}

/* One stream of a double block after attention (rows t0..t0+n of the joint sequence, x its
 * residual rows, mod its 6 chunks): x += gate1 * proj(attn rows), then the MLP. The
 * intermediates go to the arena, or (taped) to the layer's record y. */
static cd_status stream_tail(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *c, cd_flux_arena *a,
                             const cd_flux_stream *s, const float *mod, float *x, size_t n, size_t t0, size_t N,
                             const heads *hb, const cd_flux_tape_layer *y) {
    const size_t D = (size_t)c->hidden, F = (size_t)c->mlp_hidden;
    float *attn = y ? y->attn + t0 * D : a->xn;
    ops->from_heads(ctx, hb->o, N, t0, n, c->heads, c->head_dim, attn);
    float *y1 = y ? y->y1 + t0 * D : a->y;
    TRY(lin(ctx, ops, &s->proj, attn, n, y1));
    ops->gate_add(ctx, x, mod + 2 * D, y1, n, (int)D);
    if (y) keep(ctx, ops, y->x_mid + t0 * D, x, n, D);
    float *xn2 = y ? y->xn2 + t0 * D : a->xn;
    ops->ln_modulate(ctx, x, n, (int)D, mod + 3 * D, mod + 4 * D, CD_FLUX_LN_EPS, xn2);
    float *hid = a->cat; /* [n, F] */
    if (y) {             /* the record keeps the MLP hidden before GELU */
        TRY(lin(ctx, ops, &s->mlp0, xn2, n, y->mlp_pre + t0 * F));
        keep(ctx, ops, hid, y->mlp_pre + t0 * F, n, F);
    } else {
        TRY(lin(ctx, ops, &s->mlp0, xn2, n, hid));
    }
    ops->gelu_tanh(ctx, hid, n * F);
    float *y2 = y ? y->y2 + t0 * D : a->y;
    TRY(lin(ctx, ops, &s->mlp2, hid, n, y2));
    ops->gate_add(ctx, x, mod + 5 * D, y2, n, (int)D);
    return CD_OK;
}

cd_status cd_flux_forward(cd_ctx *ctx, const cd_ops *ops, const cd_flux_weights *w, const cd_flux_run_params *p,
                          cd_flux_arena *a, float *out, const cd_flux_probe *probe, cd_flux_tape *tp) {
    const cd_flux_config *c = &w->cfg;
    const size_t T = (size_t)p->T, L = (size_t)p->L, N = T + L, D = (size_t)c->hidden;
    if (N > a->max_tokens)
        return cd_set_error(ctx, CD_ERR_SHAPE, "flux: %zu tokens exceed the arena's %zu", N, a->max_tokens);
    if (tp && N > tp->max_tokens)
        return cd_set_error(ctx, CD_ERR_SHAPE, "flux: %zu tokens exceed the tape's %zu", N, tp->max_tokens);
    if (p->radius > 0 && (size_t)p->grid_h * (size_t)p->grid_w != L)
        return cd_set_error(ctx, CD_ERR_SHAPE, "flux: grid %dx%d does not hold %zu image tokens", p->grid_h, p->grid_w,
                            L);
    if (p->radius > 0 && p->down >= 2 && (!w->spatial_weight || w->spatial_down != p->down))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "flux: pooled CLEAR attention (down %d) needs spatial weights of that "
                            "down factor (the weights have %s)",
                            p->down, w->spatial_weight ? "another down factor" : "none");
    if (!a->ops || a->ops->host_memory != ops->host_memory)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "flux: the arena was not made for the %s ops", ops->name);
    if (tp) tp->N = N;
    float *txt = a->x, *img = a->x + T * D; /* joint residual stream, text first */
    /* the inputs in the backend's memory (host backends read the caller's arrays directly) */
    const float *in_txt = p->txt, *in_img = p->img, *in_pooled = p->pooled;
    if (!ops->host_memory) {
        TRY(ops->upload(ctx, a->in_txt, p->txt, T * (size_t)c->context_dim * sizeof(float)));
        TRY(ops->upload(ctx, a->in_img, p->img, L * (size_t)c->in_channels * sizeof(float)));
        TRY(ops->upload(ctx, a->in_pooled, p->pooled, (size_t)c->pooled_dim * sizeof(float)));
        in_txt = a->in_txt;
        in_img = a->in_img;
        in_pooled = a->in_pooled;
    }

    /* conditioning vector: time (+ guidance) + pooled text; the sinusoidal embeddings are
     * computed on the host (emb = timestep | guidance) */
    cd_timestep_embedding(p->timestep, CD_FLUX_TEMB, a->h_emb);
    if (c->guidance) cd_timestep_embedding(p->guidance, CD_FLUX_TEMB, a->h_emb + CD_FLUX_TEMB);
    TRY(ops->upload(ctx, a->emb, a->h_emb, (c->guidance ? 2 : 1) * CD_FLUX_TEMB * sizeof(float)));
    TRY(embed(ctx, ops, &w->time_in1, &w->time_in2, a->emb, a->tmp, a->vec, tp ? tp->t_h : NULL));
    if (c->guidance) {
        TRY(embed(ctx, ops, &w->guid_in1, &w->guid_in2, a->emb + CD_FLUX_TEMB, a->tmp, a->silu_vec,
                  tp ? tp->g_h : NULL));
        ops->add(ctx, a->vec, a->silu_vec, D);
    }
    TRY(embed(ctx, ops, &w->vec_in1, &w->vec_in2, in_pooled, a->tmp, a->silu_vec, tp ? tp->p_h : NULL));
    ops->add(ctx, a->vec, a->silu_vec, D);
    ops->copy_rows(ctx, a->silu_vec, D, a->vec, D, 1, D);
    ops->silu(ctx, a->silu_vec, D); /* every modulation reads silu(vec) */
    if (tp) {
        keep(ctx, ops, tp->temb, a->emb, 1, CD_FLUX_TEMB);
        if (c->guidance) keep(ctx, ops, tp->g_temb, a->emb + CD_FLUX_TEMB, 1, CD_FLUX_TEMB);
        keep(ctx, ops, tp->vec, a->vec, 1, D);
        keep(ctx, ops, tp->silu_vec, a->silu_vec, 1, D);
    }

    /* RoPE table over the joint ids (text first), computed on the host in double; kept while the
     * ids and theta stay the same (every sampling step of an image) */
    const double theta = w->rope_theta * (p->rope_ntk > 0 ? p->rope_ntk : 1.0);
    if (a->cs_n != N || a->cs_theta != theta || memcmp(a->cs_axes, w->rope_axes, sizeof a->cs_axes) ||
        memcmp(a->h_ids, p->txt_ids, T * 3 * sizeof(float)) ||
        memcmp(a->h_ids + T * 3, p->img_ids, L * 3 * sizeof(float))) {
        memcpy(a->h_ids, p->txt_ids, T * 3 * sizeof(float));
        memcpy(a->h_ids + T * 3, p->img_ids, L * 3 * sizeof(float));
        cd_rope_table(a->h_ids, N, w->rope_axes, theta, a->h_cs);
        TRY(ops->upload(ctx, a->cs, a->h_cs, N * (size_t)c->head_dim * sizeof(float)));
        a->cs_n = N;
        a->cs_theta = theta;
        memcpy(a->cs_axes, w->rope_axes, sizeof a->cs_axes);
    }
    if (tp) keep(ctx, ops, tp->cs, a->cs, N, (size_t)c->head_dim);

    TRY(lin(ctx, ops, &w->txt_in, in_txt, T, txt));
    TRY(lin(ctx, ops, &w->img_in, in_img, L, img));

    int layer = 0;
    for (int bi = 0; bi < c->depth; bi++, layer++) {
        const cd_flux_double *b = &w->dbl[bi];
        const cd_flux_tape_layer *y = tp ? &tp->layer[layer] : NULL;
        const heads hb = layer_heads(a, y);
        /* both streams project into the joint q/k/v. Untaped, a->mod holds one stream's 6
         * chunks at a time (the text stream's are computed twice); taped, each stream's are
         * kept (img | txt) */
        float *mtxt = y ? y->mod + 6 * D : a->mod, *mimg = y ? y->mod : a->mod;
        float *xn_txt = y ? y->xn1 : a->xn, *xn_img = y ? y->xn1 + T * D : a->xn;
        if (y) keep(ctx, ops, y->x_in, a->x, N, D);
        TRY(lin(ctx, ops, &b->txt.mod, a->silu_vec, 1, mtxt));
        ops->ln_modulate(ctx, txt, T, (int)D, mtxt, mtxt + D, CD_FLUX_LN_EPS, xn_txt);
        TRY(project_qkv(ctx, ops, c, a, xn_txt, T, 0, N, &b->txt.q, &b->txt.k, &b->txt.v, b->txt.norm_q, b->txt.norm_k,
                        &hb, y));
        TRY(lin(ctx, ops, &b->img.mod, a->silu_vec, 1, mimg));
        ops->ln_modulate(ctx, img, L, (int)D, mimg, mimg + D, CD_FLUX_LN_EPS, xn_img);
        TRY(project_qkv(ctx, ops, c, a, xn_img, L, T, N, &b->img.q, &b->img.k, &b->img.v, b->img.norm_q, b->img.norm_k,
                        &hb, y));
        TRY(attend(ctx, ops, w, p, &hb, layer));
        TRY(stream_tail(ctx, ops, c, a, &b->img, mimg, img, L, T, N, &hb, y));
        if (mtxt == mimg) TRY(lin(ctx, ops, &b->txt.mod, a->silu_vec, 1, mtxt));
        TRY(stream_tail(ctx, ops, c, a, &b->txt, mtxt, txt, T, 0, N, &hb, y));
        if (probe && probe->after_block) {
            TRY(ops->sync(ctx));
            probe->after_block(probe->user, layer, a->x, N, D);
        }
    }

    const size_t F = (size_t)c->mlp_hidden;
    for (int bi = 0; bi < c->depth_single; bi++, layer++) {
        const cd_flux_single *b = &w->sgl[bi];
        const cd_flux_tape_layer *y = tp ? &tp->layer[layer] : NULL;
        const heads hb = layer_heads(a, y);
        float *mod = y ? y->mod : a->mod, *xn = y ? y->xn1 : a->xn;
        if (y) keep(ctx, ops, y->x_in, a->x, N, D);
        TRY(lin(ctx, ops, &b->mod, a->silu_vec, 1, mod));
        ops->ln_modulate(ctx, a->x, N, (int)D, mod, mod + D, CD_FLUX_LN_EPS, xn);
        TRY(project_qkv(ctx, ops, c, a, xn, N, 0, N, &b->q, &b->k, &b->v, b->norm_q, b->norm_k, &hb, y));
        float *mlp = a->h; /* q/k/v rows are no longer needed once heads-major */
        if (y) {           /* the record keeps the MLP hidden before GELU */
            TRY(lin(ctx, ops, &b->mlp_in, xn, N, y->mlp_pre));
            keep(ctx, ops, mlp, y->mlp_pre, N, F);
        } else {
            TRY(lin(ctx, ops, &b->mlp_in, xn, N, mlp));
        }
        ops->gelu_tanh(ctx, mlp, N * F);
        TRY(attend(ctx, ops, w, p, &hb, layer));
        float *attn = y ? y->attn : a->y, *y1 = y ? y->y1 : a->y;
        ops->from_heads(ctx, hb.o, N, 0, N, c->heads, c->head_dim, attn);
        ops->copy_rows(ctx, a->cat, D + F, attn, D, N, D); /* cat = [attn | gelu(mlp)] per row */
        ops->copy_rows(ctx, a->cat + D, D + F, mlp, F, N, F);
        TRY(lin(ctx, ops, &b->out, a->cat, N, y1));
        ops->gate_add(ctx, a->x, mod + 2 * D, y1, N, (int)D);
        if (probe && probe->after_block) {
            TRY(ops->sync(ctx));
            probe->after_block(probe->user, layer, a->x, N, D);
        }
    }

    /* final layer on the image rows: (1 + scale) LN(x) + shift, then the output projection */
    float *mf = tp ? tp->mod_final : a->mod, *xnf = tp ? tp->xn_final : a->xn;
    TRY(lin(ctx, ops, &w->final_shift, a->silu_vec, 1, mf));
    TRY(lin(ctx, ops, &w->final_scale, a->silu_vec, 1, mf + D));
    if (tp) keep(ctx, ops, tp->x_final, a->x, N, D);
    ops->ln_modulate(ctx, img, L, (int)D, mf, mf + D, CD_FLUX_LN_EPS, xnf);
    if (ops->host_memory) return lin(ctx, ops, &w->final_out, xnf, L, out);
    TRY(lin(ctx, ops, &w->final_out, xnf, L, a->out));
    return ops->download(ctx, out, a->out, L * (size_t)c->out_channels * sizeof(float));
}
