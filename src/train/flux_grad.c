/* flux_grad.c — the backward of the FLUX transformer (flux_grad.h), and its glue: the buffers one
 * training forward + backward needs (the forward's arena, the tape, the backward's scratch) and
 * the taped forward, which is model/flux.c's cd_flux_forward writing the tape. The backward walks
 * the blocks in reverse, reading only the tape (and the inputs).
 *
 * Per block, forward (double block, stream s in {txt, img}; single blocks fuse the two):
 *   xn1 = (1 + sc1) LN(x) + sh1;  q, k, v = lin(xn1);  q, k <- RoPE(RMSNorm(q, k));
 *   attn = Attention(joint q, k, v);  x += g1 * proj(attn);
 *   xn2 = (1 + sc2) LN(x) + sh2;  x += g2 * mlp2(gelu(mlp0(xn2)))
 * and the modulation (sh1 sc1 g1 sh2 sc2 g2) = lin(silu(vec)), vec = time + guidance + pooled
 * embedders. Every gradient of silu(vec) from the modulations is summed before flowing into vec. */
#include "flux_grad.h"

#include <stdlib.h>
#include <string.h>

#define TRY(expr)                   \
    do {                            \
        cd_status s_ = (expr);      \
        if (s_ != CD_OK) return s_; \
    } while (0)

cd_grad_ops cd_grad_ops_cpu(void) { return (cd_grad_ops){cd_ops_cpu(), cd_ops_bwd_cpu(), cd_attention_backward}; }

cd_grad_ops cd_grad_ops_ref(void) {
    return (cd_grad_ops){cd_ops_cpu_ref(), cd_ops_bwd_cpu_ref(), cd_attention_backward_reference};
}

/* ---- the buffers ------------------------------------------------------------------------------ */

static size_t a16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Lays out (or, with base == NULL, sizes) the tape and the backward's scratch for N tokens. */
static size_t work_layout(const cd_flux_config *c, size_t N, float *base, cd_flux_grad_work *t) {
    const size_t D = (size_t)c->hidden, F = (size_t)c->mlp_hidden, NH = (size_t)c->heads;
    const size_t ND = N * D, HD = (size_t)c->head_dim;
    size_t off = 0;
#define TAKE(p, n)                  \
    do {                            \
        if (base) (p) = base + off; \
        off += a16(n);              \
    } while (0)
    float *dummy;
    for (int l = 0; l < c->depth + c->depth_single; l++) {
        cd_flux_tape_layer *y = base ? &t->tape.layer[l] : NULL;
        const int dbl = l < c->depth;
#define L_(f) (*(y ? &y->f : &dummy))
        TAKE(L_(x_in), ND);
        TAKE(L_(mod), dbl ? 12 * D : 3 * D);
        TAKE(L_(xn1), ND);
        TAKE(L_(qpre), ND);
        TAKE(L_(kpre), ND);
        TAKE(L_(q), ND);
        TAKE(L_(k), ND);
        TAKE(L_(v), ND);
        TAKE(L_(o), ND);
        TAKE(L_(lse), NH * N);
        TAKE(L_(attn), ND);
        TAKE(L_(y1), ND);
        TAKE(L_(mlp_pre), N * F);
        if (dbl) {
            TAKE(L_(x_mid), ND);
            TAKE(L_(xn2), ND);
            TAKE(L_(y2), ND);
        } else if (y) {
            y->x_mid = y->xn2 = y->y2 = NULL;
        }
#undef L_
    }
#define T_(f) (*(base ? &t->tape.f : &dummy))
    TAKE(T_(temb), CD_FLUX_TEMB);
    TAKE(T_(t_h), D);
    TAKE(T_(g_temb), CD_FLUX_TEMB);
    TAKE(T_(g_h), D);
    TAKE(T_(p_h), D);
    TAKE(T_(vec), D);
    TAKE(T_(silu_vec), D);
    TAKE(T_(cs), N * HD);
    TAKE(T_(x_final), ND);
    TAKE(T_(mod_final), 2 * D);
    TAKE(T_(xn_final), ND);
#undef T_
#define W_(f) (*(base ? &t->f : &dummy))
    TAKE(W_(dx), ND);
    TAKE(W_(dxn), ND);
    TAKE(W_(dtmp), N * (D + F));
    TAKE(W_(dbig), N * (D + F));
    for (int i = 0; i < 3; i++) TAKE(W_(drow[i]), ND);
    for (int i = 0; i < 4; i++) TAKE(W_(dhead[i]), ND);
    TAKE(W_(dmod), 12 * D);
    TAKE(W_(dvec), D);
    TAKE(W_(dvec2), D);
#undef W_
#undef TAKE
    return off;
}

cd_status cd_flux_grad_work_init(cd_ctx *ctx, const cd_flux_config *cfg, size_t max_tokens, cd_flux_grad_work *t) {
    memset(t, 0, sizeof *t);
    const size_t floats = work_layout(cfg, max_tokens, NULL, t);
    t->tape.layer = calloc((size_t)(cfg->depth + cfg->depth_single) + 1, sizeof *t->tape.layer);
    t->block = aligned_alloc(64, a16(floats) * sizeof(float));
    if (!t->tape.layer || !t->block) {
        cd_flux_grad_work_free(t);
        return cd_set_error(ctx, CD_ERR_OOM, "train: cannot allocate the activation tape (%zu MB for %zu tokens)",
                            floats * sizeof(float) >> 20, max_tokens);
    }
    t->bytes = floats * sizeof(float);
    t->tape.max_tokens = max_tokens;
    work_layout(cfg, max_tokens, t->block, t);
    cd_status s = cd_flux_arena_init(ctx, cfg, max_tokens, &t->arena);
    if (s) cd_flux_grad_work_free(t);
    return s;
}

void cd_flux_grad_work_free(cd_flux_grad_work *t) {
    cd_flux_arena_free(&t->arena);
    free(t->block);
    free(t->tape.layer);
    memset(t, 0, sizeof *t);
}

cd_status cd_flux_grad_forward(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_weights *w,
                               const cd_flux_run_params *p, cd_flux_grad_work *t, float *out) {
    return cd_flux_forward(ctx, ops->f, w, p, &t->arena, out, NULL, &t->tape);
}

/* ---- backward -------------------------------------------------------------------------------- */

/* dW, db of linear l (gradient struct gl: NULL data = frozen) and optionally dx (overwritten). */
static cd_status lin_bwd(cd_ctx *ctx, const cd_ops_bwd *b, const cd_lin *l, const cd_lin *gl, const float *x, size_t n,
                         const float *dy, float *dx) {
    return b->linear_bwd(ctx, x, n, (const float *)l->w.data, l->w.in, l->w.out, dy, dx,
                         gl ? (float *)gl->w.data : NULL, gl ? (float *)gl->b : NULL);
}

static void add_to(float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

/* Backward of one modulation linear: dmod [rows] -> d silu(vec) (accumulated into t->dvec). */
static cd_status mod_bwd(cd_ctx *ctx, const cd_ops_bwd *b, cd_flux_grad_work *t, const cd_lin *l, const cd_lin *gl,
                         const float *dmod) {
    TRY(lin_bwd(ctx, b, l, gl, t->tape.silu_vec, 1, dmod, t->dvec2));
    add_to(t->dvec, t->dvec2, (size_t)l->w.in);
    return CD_OK;
}

/* Gradient of the q, k, v projections of rows r0..r0+n: from the heads-major dq, dk, dv
 * (t->dhead[1..3]) to d xn (overwritten into dxn rows). */
static cd_status qkv_bwd(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_config *c, cd_flux_grad_work *t,
                         const cd_flux_tape_layer *y, size_t n, size_t r0, size_t N, const cd_lin *q, const cd_lin *k,
                         const cd_lin *v, const float *nq, const float *nk, const cd_lin *gq, const cd_lin *gk,
                         const cd_lin *gv, const float *gnq, const float *gnk, const float *xn, float *dxn) {
    const size_t D = (size_t)c->hidden, HD = (size_t)c->head_dim;
    const cd_ops *f = ops->f;
    const cd_ops_bwd *b = ops->b;
    float *dq = t->drow[0], *dk = t->drow[1], *dv = t->drow[2], *tmp = t->dtmp;
    f->from_heads(ctx, t->dhead[1], N, r0, n, c->heads, c->head_dim, dq);
    f->from_heads(ctx, t->dhead[2], N, r0, n, c->heads, c->head_dim, dk);
    f->from_heads(ctx, t->dhead[3], N, r0, n, c->heads, c->head_dim, dv);
    b->rope_bwd(ctx, dq, n, c->heads, c->head_dim, t->tape.cs + r0 * HD);
    b->rope_bwd(ctx, dk, n, c->heads, c->head_dim, t->tape.cs + r0 * HD);
    TRY(b->rmsnorm_heads_bwd(ctx, y->qpre + r0 * D, n, c->heads, c->head_dim, nq, CD_FLUX_RMS_EPS, dq, dq,
                             (float *)gnq));
    TRY(b->rmsnorm_heads_bwd(ctx, y->kpre + r0 * D, n, c->heads, c->head_dim, nk, CD_FLUX_RMS_EPS, dk, dk,
                             (float *)gnk));
    TRY(lin_bwd(ctx, b, q, gq, xn, n, dq, dxn));
    TRY(lin_bwd(ctx, b, k, gk, xn, n, dk, tmp));
    add_to(dxn, tmp, n * D);
    TRY(lin_bwd(ctx, b, v, gv, xn, n, dv, tmp));
    add_to(dxn, tmp, n * D);
    return CD_OK;
}

/* Backward of a double block's stream tail (rows r0..r0+n): in: dx rows (grad of the block's
 * output); out: dx rows = grad of x_in's direct (residual) path + LN paths except LN1, and
 * d attn rows (t->dbig rows r0..) ; dmod chunks 2..5 (into dm). */
static cd_status stream_bwd(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_config *c, cd_flux_grad_work *t,
                            const cd_flux_tape_layer *y, const cd_flux_stream *s, const cd_flux_stream *gs,
                            const float *mod, float *dm, size_t n, size_t r0, float *dattn) {
    const size_t D = (size_t)c->hidden, F = (size_t)c->mlp_hidden;
    const cd_ops_bwd *b = ops->b;
    float *dx = t->dx + r0 * D, *dy = t->dxn, *dh = t->dtmp, *h = t->drow[0];
    /* x_out = x_mid + g2 * y2 */
    TRY(b->gate_add_bwd(ctx, dx, y->y2 + r0 * D, mod + 5 * D, n, (int)D, dy, dm + 5 * D));
    /* y2 = mlp2(gelu(mlp_pre)); the MLP input gelu(mlp_pre) is recomputed (t->dbig as [n, F]) */
    float *g = t->dbig;
    memcpy(g, y->mlp_pre + r0 * F, n * F * sizeof(float));
    ops->f->gelu_tanh(ctx, g, n * F);
    TRY(lin_bwd(ctx, b, &s->mlp2, gs ? &gs->mlp2 : NULL, g, n, dy, dh));
    b->gelu_tanh_bwd(ctx, y->mlp_pre + r0 * F, dh, dh, n * F);
    TRY(lin_bwd(ctx, b, &s->mlp0, gs ? &gs->mlp0 : NULL, y->xn2 + r0 * D, n, dh, dy));
    TRY(b->ln_modulate_bwd(ctx, y->x_mid + r0 * D, n, (int)D, mod + 4 * D, CD_FLUX_LN_EPS, dy, h, dm + 3 * D,
                           dm + 4 * D));
    add_to(dx, h, n * D);
    /* x_mid = x_in + g1 * y1, y1 = proj(attn) */
    TRY(b->gate_add_bwd(ctx, dx, y->y1 + r0 * D, mod + 2 * D, n, (int)D, dy, dm + 2 * D));
    TRY(lin_bwd(ctx, b, &s->proj, gs ? &gs->proj : NULL, y->attn + r0 * D, n, dy, dattn + r0 * D));
    return CD_OK;
}

static cd_status embed_bwd(cd_ctx *ctx, const cd_grad_ops *ops, cd_flux_grad_work *t, const cd_lin *l1,
                           const cd_lin *l2, const cd_lin *g1, const cd_lin *g2, const float *x, const float *h,
                           const float *dout) {
    const size_t H = (size_t)l1->w.out;
    float *s = t->drow[0], *dh = t->drow[1];
    memcpy(s, h, H * sizeof(float));
    ops->f->silu(ctx, s, H);
    TRY(lin_bwd(ctx, ops->b, l2, g2, s, 1, dout, dh));
    ops->b->silu_bwd(ctx, h, dh, dh, H);
    return lin_bwd(ctx, ops->b, l1, g1, x, 1, dh, NULL);
}

#define G(p) (g ? (p) : NULL)

cd_status cd_flux_grad_backward(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_weights *w,
                                const cd_flux_run_params *p, cd_flux_grad_work *t, const float *dout,
                                const float *const *dattn, cd_flux_weights *g) {
    const cd_ops *f = ops->f;
    const cd_ops_bwd *b = ops->b;
    const cd_flux_config *c = &w->cfg;
    const size_t T = (size_t)p->T, L = (size_t)p->L, N = T + L, D = (size_t)c->hidden, F = (size_t)c->mlp_hidden;
    if (N != t->tape.N) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "train: backward without its forward");
    const cd_attn_desc d = cd_flux_attn_desc(c, p);
    float *dx = t->dx;
    memset(t->dvec, 0, D * sizeof(float));
    /* final layer: out = final_out((1 + scale) LN(x_img) + shift) */
    memset(dx, 0, N * D * sizeof(float));
    TRY(lin_bwd(ctx, b, &w->final_out, G(&g->final_out), t->tape.xn_final, L, dout, t->dxn));
    memset(t->dmod, 0, 2 * D * sizeof(float));
    TRY(b->ln_modulate_bwd(ctx, t->tape.x_final + T * D, L, (int)D, t->tape.mod_final + D, CD_FLUX_LN_EPS, t->dxn,
                           dx + T * D, t->dmod, t->dmod + D));
    TRY(mod_bwd(ctx, b, t, &w->final_shift, G(&g->final_shift), t->dmod));
    TRY(mod_bwd(ctx, b, t, &w->final_scale, G(&g->final_scale), t->dmod + D));

    for (int layer = c->depth + c->depth_single - 1; layer >= c->depth; layer--) {
        const int bi = layer - c->depth;
        const cd_flux_single *s = &w->sgl[bi];
        cd_flux_single *gs = g ? &g->sgl[bi] : NULL;
        const cd_flux_tape_layer *y = &t->tape.layer[layer];
        float *dm = t->dmod, *dy = t->dxn, *dcat = t->dtmp;
        memset(dm, 0, 3 * D * sizeof(float));
        TRY(b->gate_add_bwd(ctx, dx, y->y1, y->mod + 2 * D, N, (int)D, dy, dm + 2 * D));
        /* y1 = out(cat), cat = [attn | gelu(mlp_pre)] (recomputed into dbig) */
        float *cat = t->dbig;
        for (size_t r = 0; r < N; r++) {
            memcpy(cat + r * (D + F), y->attn + r * D, D * sizeof(float));
            memcpy(cat + r * (D + F) + D, y->mlp_pre + r * F, F * sizeof(float));
            f->gelu_tanh(ctx, cat + r * (D + F) + D, F);
        }
        TRY(lin_bwd(ctx, b, &s->out, G(&gs->out), cat, N, dy, dcat));
        /* split dcat: attention rows -> drow[0] (+ the distillation term), MLP -> dbig [N, F] */
        float *dmlp = t->dbig, *da = t->drow[0];
        for (size_t r = 0; r < N; r++) {
            memcpy(da + r * D, dcat + r * (D + F), D * sizeof(float));
            memcpy(dmlp + r * F, dcat + r * (D + F) + D, F * sizeof(float));
        }
        if (dattn && dattn[layer]) add_to(da, dattn[layer], N * D);
        b->gelu_tanh_bwd(ctx, y->mlp_pre, dmlp, dmlp, N * F);
        /* attention backward: d o (heads-major) -> dq, dk, dv */
        f->to_heads(ctx, da, N, c->heads, c->head_dim, t->dhead[0], N, 0);
        TRY(ops->attn_bwd(ctx, &d, y->q, y->k, y->v, cd_flux_spatial(w, p, layer), y->o, y->lse, t->dhead[0],
                          t->dhead[1], t->dhead[2], t->dhead[3],
                          g && g->spatial_weight && p->down >= 2
                              ? (float *)g->spatial_weight + (size_t)layer * p->down * p->down
                              : NULL));
        float *dxn = t->dxn;
        TRY(lin_bwd(ctx, b, &s->mlp_in, G(&gs->mlp_in), y->xn1, N, dmlp, dxn));
        /* qkv_bwd uses drow[0..2] and dtmp as scratch (both consumed): its d xn goes to dbig */
        float *dq_xn = t->dbig;
        TRY(qkv_bwd(ctx, ops, c, t, y, N, 0, N, &s->q, &s->k, &s->v, s->norm_q, s->norm_k, G(&gs->q), G(&gs->k),
                    G(&gs->v), G(gs->norm_q), G(gs->norm_k), y->xn1, dq_xn));
        add_to(dxn, dq_xn, N * D);
        TRY(b->ln_modulate_bwd(ctx, y->x_in, N, (int)D, y->mod + D, CD_FLUX_LN_EPS, dxn, t->drow[0], dm, dm + D));
        add_to(dx, t->drow[0], N * D);
        TRY(mod_bwd(ctx, b, t, &s->mod, G(&gs->mod), dm));
    }
    for (int layer = c->depth - 1; layer >= 0; layer--) {
        const cd_flux_double *db = &w->dbl[layer];
        cd_flux_double *gd = g ? &g->dbl[layer] : NULL;
        const cd_flux_tape_layer *y = &t->tape.layer[layer];
        const float *mimg = y->mod, *mtxt = y->mod + 6 * D;
        float *dm = t->dmod; /* img 6D | txt 6D */
        memset(dm, 0, 12 * D * sizeof(float));
        /* the stream tails leave the d attention rows in dhead[0] (as rows [N, D]) */
        float *da = t->dhead[0];
        TRY(stream_bwd(ctx, ops, c, t, y, &db->img, G(&gd->img), mimg, dm, L, T, da));
        if (T) TRY(stream_bwd(ctx, ops, c, t, y, &db->txt, G(&gd->txt), mtxt, dm + 6 * D, T, 0, da));
        if (dattn && dattn[layer]) add_to(da, dattn[layer], N * D);
        /* heads-major d o in dbig [NH, N, HD] (dhead[1..3] receive dq, dk, dv) */
        f->to_heads(ctx, da, N, c->heads, c->head_dim, t->dbig, N, 0);
        TRY(ops->attn_bwd(ctx, &d, y->q, y->k, y->v, cd_flux_spatial(w, p, layer), y->o, y->lse, t->dbig, t->dhead[1],
                          t->dhead[2], t->dhead[3],
                          g && g->spatial_weight && p->down >= 2
                              ? (float *)g->spatial_weight + (size_t)layer * p->down * p->down
                              : NULL));
        /* per stream: q, k, v projections and LN1 */
        for (int si = 0; si < 2; si++) {
            const cd_flux_stream *s = si ? &db->txt : &db->img;
            const cd_flux_stream *gs = g ? (si ? &gd->txt : &gd->img) : NULL;
            const size_t n = si ? T : L, r0 = si ? 0 : T;
            const float *mod = si ? mtxt : mimg;
            float *dms = dm + (si ? 6 * D : 0);
            if (!n) continue;
            float *dxn = t->dbig;
            TRY(qkv_bwd(ctx, ops, c, t, y, n, r0, N, &s->q, &s->k, &s->v, s->norm_q, s->norm_k, gs ? &gs->q : NULL,
                        gs ? &gs->k : NULL, gs ? &gs->v : NULL, gs ? gs->norm_q : NULL, gs ? gs->norm_k : NULL,
                        y->xn1 + r0 * D, dxn));
            TRY(b->ln_modulate_bwd(ctx, y->x_in + r0 * D, n, (int)D, mod + D, CD_FLUX_LN_EPS, dxn, t->drow[0], dms,
                                   dms + D));
            add_to(dx + r0 * D, t->drow[0], n * D);
        }
        TRY(mod_bwd(ctx, b, t, &db->img.mod, G(&gd->img.mod), dm));
        TRY(mod_bwd(ctx, b, t, &db->txt.mod, G(&gd->txt.mod), dm + 6 * D));
    }
    /* input projections (their inputs need no gradient) */
    if (T) TRY(lin_bwd(ctx, b, &w->txt_in, G(&g->txt_in), p->txt, T, dx, NULL));
    TRY(lin_bwd(ctx, b, &w->img_in, G(&g->img_in), p->img, L, dx + T * D, NULL));
    /* conditioning: d silu(vec) -> d vec -> every embedder */
    float *dv = t->dvec2;
    b->silu_bwd(ctx, t->tape.vec, t->dvec, dv, D);
    memcpy(t->dvec, dv, D * sizeof(float)); /* embed_bwd uses drow[0..1] and dvec2 is free again */
    TRY(embed_bwd(ctx, ops, t, &w->time_in1, &w->time_in2, G(&g->time_in1), G(&g->time_in2), t->tape.temb, t->tape.t_h,
                  t->dvec));
    if (c->guidance)
        TRY(embed_bwd(ctx, ops, t, &w->guid_in1, &w->guid_in2, G(&g->guid_in1), G(&g->guid_in2), t->tape.g_temb,
                      t->tape.g_h, t->dvec));
    return embed_bwd(ctx, ops, t, &w->vec_in1, &w->vec_in2, G(&g->vec_in1), G(&g->vec_in2), p->pooled, t->tape.p_h,
                     t->dvec);
}
