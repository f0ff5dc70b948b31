/* flux.c — the FLUX transformer forward (spec/flux.md section 4), once, against the ops table.
 * Critical details (each a bug in some port): text first in the joint sequence; modulation chunks
 * are (shift, scale, gate) and apply as (1 + scale) * LN(x) + shift; LayerNorm eps 1e-6 without
 * affine; QK RMSNorm per head before RoPE; RoPE pairs are interleaved; the final adaLN is
 * (shift, scale) in BFL order (bound as row slices, so diffusers' swapped halves need no copy);
 * timestep and guidance are embedded as 1000 t with cos first. */
#include "flux.h"

#include <stdlib.h>
#include <string.h>

#define LN_EPS 1e-6f
#define RMS_EPS 1e-6f
#define TEMB 256

/* Arena layout, in floats, for N tokens. */
static size_t arena_floats(const cd_flux_config *c, size_t N, size_t *off) {
    const size_t D = (size_t)c->hidden, F = (size_t)c->mlp_hidden, NH = (size_t)c->heads;
    const size_t sizes[] = {
        N * D,            /* x */
        N * D,            /* xn */
        N * (3 * D + F),  /* h: q | k | v | mlp rows (each projection contiguous [N, out]) */
        N * D, N * D, N * D, /* q, k, v heads-major */
        N * D,            /* o */
        NH * N,           /* lse */
        N * (D + F),      /* cat */
        N * D,            /* y */
        D, 6 * D, D, D,   /* vec, mod, silu_vec, tmp */
        2 * TEMB,         /* emb: timestep | guidance */
        N * (size_t)c->head_dim, /* cs: [N, HD/2, 2] */
        N * 3,            /* ids */
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
    const size_t sizes[] = {N * (size_t)c->in_channels, N * (size_t)c->context_dim,
                            (size_t)c->pooled_dim, N * (size_t)c->out_channels};
    size_t total = 0;
    for (size_t i = 0; i < 4; i++) {
        off[i] = total;
        total += (sizes[i] + 63) & ~(size_t)63;
    }
    return total;
}

cd_status cd_flux_arena_init_ops(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *cfg,
                                 size_t max_tokens, cd_flux_arena *a) {
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
        return cd_set_error(ctx, s, "flux: cannot allocate the activation arena (%zu MiB for %zu tokens "
                            "on %s): %s", bytes >> 20, max_tokens, ops->name, cd_ctx_error(ctx));
    a->ops = ops;
    a->ctx = ctx;
    a->block = blk;
    a->bytes = bytes;
    a->max_tokens = max_tokens;
    float *b = a->block;
    a->x = b + off[0]; a->xn = b + off[1]; a->h = b + off[2];
    a->q = b + off[3]; a->k = b + off[4]; a->v = b + off[5]; a->o = b + off[6];
    a->lse = b + off[7]; a->cat = b + off[8]; a->y = b + off[9];
    a->vec = b + off[10]; a->mod = b + off[11]; a->silu_vec = b + off[12]; a->tmp = b + off[13];
    a->emb = b + off[14]; a->cs = b + off[15]; a->ids = b + off[16];
    if (ops->host_memory) {
        a->h_emb = a->emb; a->h_cs = a->cs; a->h_ids = a->ids;
        return CD_OK;
    }
    float *io = b + floats;
    a->in_img = io + ioff[0]; a->in_txt = io + ioff[1]; a->in_pooled = io + ioff[2]; a->out = io + ioff[3];
    const size_t hf = 2 * TEMB + max_tokens * ((size_t)cfg->head_dim + 3) + 32;
    a->host = aligned_alloc(64, ((hf * sizeof(float)) + 63) & ~(size_t)63);
    if (!a->host) {
        cd_flux_arena_free(a);
        return cd_set_error(ctx, CD_ERR_OOM, "flux: cannot allocate %zu MiB of host staging", (hf * 4) >> 20);
    }
    a->h_emb = a->host;
    a->h_cs = a->host + 2 * TEMB;
    a->h_ids = a->h_cs + (((size_t)cfg->head_dim * max_tokens + 15) & ~(size_t)15);
    return CD_OK;
}

cd_status cd_flux_arena_init(cd_ctx *ctx, const cd_flux_config *cfg, size_t max_tokens,
                             cd_flux_arena *a) {
    return cd_flux_arena_init_ops(ctx, cd_ops_cpu(), cfg, max_tokens, a);
}

void cd_flux_arena_free(cd_flux_arena *a) {
    if (a->ops) a->ops->free(a->ctx, a->block);
    free(a->host);
    memset(a, 0, sizeof *a);
}

#define TRY(expr)                                                                               \
    do {                                                                                        \
        cd_status s_ = (expr);                                                                  \
        if (s_ != CD_OK) return s_;                                                             \
    } while (0)

static cd_status lin(cd_ctx *ctx, const cd_ops *ops, const cd_lin *l, const float *x, size_t n,
                     float *y) {
    return ops->linear(ctx, x, n, &l->w, l->b, y);
}

/* vec-sized MLP embedder: out [D] = l2(silu(l1(x))) */
static cd_status embed(cd_ctx *ctx, const cd_ops *ops, const cd_lin *l1, const cd_lin *l2,
                       const float *x, float *tmp, float *out) {
    TRY(lin(ctx, ops, l1, x, 1, tmp));
    ops->silu(ctx, tmp, (size_t)l1->w.out);
    return lin(ctx, ops, l2, tmp, 1, out);
}

/* q, k, v projections of n rows (xn) -> RMSNorm per head (q, k) -> RoPE -> heads-major joint
 * buffers at token offset t0. Uses a->h as [3][n, D] scratch. */
static cd_status project_qkv(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *c,
                             cd_flux_arena *a, const float *xn, size_t n, size_t t0, size_t N,
                             const cd_lin *q, const cd_lin *k, const cd_lin *v,
                             const float *norm_q, const float *norm_k) {
    const size_t D = (size_t)c->hidden;
    float *qr = a->h, *kr = a->h + n * D, *vr = a->h + 2 * n * D;
    TRY(lin(ctx, ops, q, xn, n, qr));
    TRY(lin(ctx, ops, k, xn, n, kr));
    TRY(lin(ctx, ops, v, xn, n, vr));
    ops->rmsnorm_heads(ctx, qr, n, c->heads, c->head_dim, norm_q, RMS_EPS);
    ops->rmsnorm_heads(ctx, kr, n, c->heads, c->head_dim, norm_k, RMS_EPS);
    ops->rope(ctx, qr, n, c->heads, c->head_dim, a->cs + t0 * c->head_dim);
    ops->rope(ctx, kr, n, c->heads, c->head_dim, a->cs + t0 * c->head_dim);
    ops->to_heads(ctx, qr, n, c->heads, c->head_dim, a->q, N, t0);
    ops->to_heads(ctx, kr, n, c->heads, c->head_dim, a->k, N, t0);
    ops->to_heads(ctx, vr, n, c->heads, c->head_dim, a->v, N, t0);
    return CD_OK;
}

static cd_status attend(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *c,
                        const cd_flux_weights *w, const cd_flux_attn *at, cd_flux_arena *a,
                        const cd_flux_inputs *in, int layer) {
    int gh = in->grid_h, gw = in->grid_w;
    if (at->radius == 0 && (gh < 1 || gw < 1 || (int64_t)gh * gw != in->L)) {
        gh = 1; /* dense attention does not need the grid: any factorization of L will do */
        gw = in->L;
    }
    cd_attn_desc d = {c->heads, c->head_dim, in->T, gh, gw, at->radius, at->down, at->scale};
    const float *sw = (at->down >= 2 && w->spatial_weight)
                          ? w->spatial_weight + (size_t)layer * at->down * at->down
                          : NULL;
    return ops->attention(ops, ctx, &d, a->q, a->k, a->v, sw, a->o, a->lse);
}

/* One stream of a double block after attention: x += gate1 * proj(attn rows), then the MLP. */
static cd_status stream_tail(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *c,
                             cd_flux_arena *a, const cd_flux_stream *s, float *x, size_t n,
                             size_t t0, size_t N) {
    const size_t D = (size_t)c->hidden;
    const float *mod = a->mod; /* this stream's 6 chunks, computed by the caller */
    ops->from_heads(ctx, a->o, N, t0, n, c->heads, c->head_dim, a->xn);
    TRY(lin(ctx, ops, &s->proj, a->xn, n, a->y));
    ops->gate_add(ctx, x, mod + 2 * D, a->y, n, (int)D);
    ops->ln_modulate(ctx, x, n, (int)D, mod + 3 * D, mod + 4 * D, LN_EPS, a->xn);
    float *hid = a->cat; /* [n, F] */
    TRY(lin(ctx, ops, &s->mlp0, a->xn, n, hid));
    ops->gelu_tanh(ctx, hid, n * (size_t)c->mlp_hidden);
    TRY(lin(ctx, ops, &s->mlp2, hid, n, a->y));
    ops->gate_add(ctx, x, mod + 5 * D, a->y, n, (int)D);
    return CD_OK;
}

cd_status cd_flux_forward(cd_ctx *ctx, const cd_ops *ops, const cd_flux_weights *w,
                          const cd_flux_attn *at, cd_flux_arena *a, const cd_flux_inputs *in,
                          float *out, const cd_flux_probe *probe) {
    const cd_flux_config *c = &w->cfg;
    const size_t T = (size_t)in->T, L = (size_t)in->L, N = T + L, D = (size_t)c->hidden;
    if (N > a->max_tokens)
        return cd_set_error(ctx, CD_ERR_SHAPE, "flux: %zu tokens exceed the arena's %zu", N,
                            a->max_tokens);
    if (at->radius > 0 && (size_t)in->grid_h * (size_t)in->grid_w != L)
        return cd_set_error(ctx, CD_ERR_SHAPE, "flux: grid %dx%d does not hold %zu image tokens",
                            in->grid_h, in->grid_w, L);
    if (at->radius > 0 && at->down >= 2 && (!w->spatial_weight || w->spatial_down != at->down))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "flux: pooled CLEAR attention (down %d) needs spatial weights of that "
                            "down factor (the weights have %s)", at->down,
                            w->spatial_weight ? "another down factor" : "none");
    if (!a->ops || a->ops->host_memory != ops->host_memory)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "flux: the arena was not made for the %s ops",
                            ops->name);
    float *txt = a->x, *img = a->x + T * D; /* joint residual stream, text first */
    /* the inputs in the backend's memory (host backends read the caller's arrays directly) */
    const float *in_txt = in->txt, *in_img = in->img, *in_pooled = in->pooled;
    if (!ops->host_memory) {
        TRY(ops->upload(ctx, a->in_txt, in->txt, T * (size_t)c->context_dim * sizeof(float)));
        TRY(ops->upload(ctx, a->in_img, in->img, L * (size_t)c->in_channels * sizeof(float)));
        TRY(ops->upload(ctx, a->in_pooled, in->pooled, (size_t)c->pooled_dim * sizeof(float)));
        in_txt = a->in_txt; in_img = a->in_img; in_pooled = a->in_pooled;
    }

    /* conditioning vector: time (+ guidance) + pooled text; the sinusoidal embeddings are
     * computed on the host (emb = timestep | guidance) */
    cd_timestep_embedding(in->timestep, TEMB, a->h_emb);
    if (c->guidance) cd_timestep_embedding(in->guidance, TEMB, a->h_emb + TEMB);
    TRY(ops->upload(ctx, a->emb, a->h_emb, (c->guidance ? 2 : 1) * TEMB * sizeof(float)));
    TRY(embed(ctx, ops, &w->time_in1, &w->time_in2, a->emb, a->tmp, a->vec));
    if (c->guidance) {
        TRY(embed(ctx, ops, &w->guid_in1, &w->guid_in2, a->emb + TEMB, a->tmp, a->silu_vec));
        ops->add(ctx, a->vec, a->silu_vec, D);
    }
    TRY(embed(ctx, ops, &w->vec_in1, &w->vec_in2, in_pooled, a->tmp, a->silu_vec));
    ops->add(ctx, a->vec, a->silu_vec, D);
    ops->copy_rows(ctx, a->silu_vec, D, a->vec, D, 1, D);
    ops->silu(ctx, a->silu_vec, D); /* every modulation reads silu(vec) */

    /* RoPE table over the joint ids (text first), computed on the host in double; kept while the
     * ids and theta stay the same (every sampling step of an image) */
    const double theta = w->rope_theta * (at->rope_ntk > 0 ? at->rope_ntk : 1.0);
    if (a->cs_n != N || a->cs_theta != theta || memcmp(a->cs_axes, w->rope_axes, sizeof a->cs_axes) || memcmp(a->h_ids, in->txt_ids, T * 3 * sizeof(float)) ||
        memcmp(a->h_ids + T * 3, in->img_ids, L * 3 * sizeof(float))) {
        memcpy(a->h_ids, in->txt_ids, T * 3 * sizeof(float));
        memcpy(a->h_ids + T * 3, in->img_ids, L * 3 * sizeof(float));
        cd_rope_table(a->h_ids, N, w->rope_axes, theta, a->h_cs);
        TRY(ops->upload(ctx, a->cs, a->h_cs, N * (size_t)c->head_dim * sizeof(float)));
        a->cs_n = N;
        a->cs_theta = theta;
        memcpy(a->cs_axes, w->rope_axes, sizeof a->cs_axes);
    }

    TRY(lin(ctx, ops, &w->txt_in, in_txt, T, txt));
    TRY(lin(ctx, ops, &w->img_in, in_img, L, img));

    int layer = 0;
    for (int bi = 0; bi < c->depth; bi++, layer++) {
        const cd_flux_double *b = &w->dbl[bi];
        /* both streams project into the joint q/k/v; modulations are recomputed per stream
         * (a->mod holds one stream's 6 chunks at a time) */
        TRY(lin(ctx, ops, &b->txt.mod, a->silu_vec, 1, a->mod));
        ops->ln_modulate(ctx, txt, T, (int)D, a->mod, a->mod + D, LN_EPS, a->xn);
        TRY(project_qkv(ctx, ops, c, a, a->xn, T, 0, N, &b->txt.q, &b->txt.k, &b->txt.v,
                        b->txt.norm_q, b->txt.norm_k));
        TRY(lin(ctx, ops, &b->img.mod, a->silu_vec, 1, a->mod));
        ops->ln_modulate(ctx, img, L, (int)D, a->mod, a->mod + D, LN_EPS, a->xn);
        TRY(project_qkv(ctx, ops, c, a, a->xn, L, T, N, &b->img.q, &b->img.k, &b->img.v,
                        b->img.norm_q, b->img.norm_k));
        TRY(attend(ctx, ops, c, w, at, a, in, layer));
        /* img.mod is still in a->mod */
        TRY(stream_tail(ctx, ops, c, a, &b->img, img, L, T, N));
        TRY(lin(ctx, ops, &b->txt.mod, a->silu_vec, 1, a->mod));
        TRY(stream_tail(ctx, ops, c, a, &b->txt, txt, T, 0, N));
        if (probe && probe->after_block) {
            TRY(ops->sync(ctx));
            probe->after_block(probe->user, layer, a->x, N, D);
        }
    }

    const size_t F = (size_t)c->mlp_hidden;
    for (int bi = 0; bi < c->depth_single; bi++, layer++) {
        const cd_flux_single *b = &w->sgl[bi];
        TRY(lin(ctx, ops, &b->mod, a->silu_vec, 1, a->mod));
        ops->ln_modulate(ctx, a->x, N, (int)D, a->mod, a->mod + D, LN_EPS, a->xn);
        TRY(project_qkv(ctx, ops, c, a, a->xn, N, 0, N, &b->q, &b->k, &b->v, b->norm_q, b->norm_k));
        float *mlp = a->h; /* q/k/v rows are no longer needed once heads-major */
        TRY(lin(ctx, ops, &b->mlp_in, a->xn, N, mlp));
        ops->gelu_tanh(ctx, mlp, N * F);
        TRY(attend(ctx, ops, c, w, at, a, in, layer));
        ops->from_heads(ctx, a->o, N, 0, N, c->heads, c->head_dim, a->y);
        ops->copy_rows(ctx, a->cat, D + F, a->y, D, N, D); /* cat = [attn | gelu(mlp)] per row */
        ops->copy_rows(ctx, a->cat + D, D + F, mlp, F, N, F);
        TRY(lin(ctx, ops, &b->out, a->cat, N, a->y));
        ops->gate_add(ctx, a->x, a->mod + 2 * D, a->y, N, (int)D);
        if (probe && probe->after_block) {
            TRY(ops->sync(ctx));
            probe->after_block(probe->user, layer, a->x, N, D);
        }
    }

    /* final layer on the image rows: (1 + scale) LN(x) + shift, then the output projection */
    TRY(lin(ctx, ops, &w->final_shift, a->silu_vec, 1, a->mod));
    TRY(lin(ctx, ops, &w->final_scale, a->silu_vec, 1, a->mod + D));
    ops->ln_modulate(ctx, img, L, (int)D, a->mod, a->mod + D, LN_EPS, a->xn);
    if (ops->host_memory) return lin(ctx, ops, &w->final_out, a->xn, L, out);
    TRY(lin(ctx, ops, &w->final_out, a->xn, L, a->out));
    return ops->download(ctx, out, a->out, L * (size_t)c->out_channels * sizeof(float));
}
