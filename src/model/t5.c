/* t5.c — the T5 v1.1 encoder forward over the ops table (docs/t5.md section 1):
 *   x = embed(ids)
 *   per layer: h = RMSNorm(x) w1; q, k, v = h Wq, Wk, Wv; o = softmax(q k^T + bias) v (no
 *              1/sqrt(HD)); x += o Wo; h = RMSNorm(x) w2; x += (gelu_tanh(h Wi0) * (h Wi1)) Wo
 *   out = RMSNorm(x) w_final
 * The relative position bias is block 0's table, shared by every layer: rel [NH, 2L-1] is built on
 * the host once per call and uploaded. Activations f32 (T5 overflows in fp16). */
#include "t5_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int32_t cd_t5_bucket(int32_t rel, int32_t buckets, int32_t max_distance) {
    const int32_t half = buckets / 2, me = half / 2;
    const int32_t base = rel > 0 ? half : 0;
    const int64_t n = rel < 0 ? -(int64_t)rel : (int64_t)rel;
    if (n < me) return base + (int32_t)n;
    /* transformers: log(float32(n) / max_exact) / log(max_distance / max_exact) * (half -
     * max_exact), every step in float32 (the double log rounded to float32 first), then truncated
     * toward zero; the same float32 steps here give the same buckets (tests/test_t5.c checks them
     * against transformers' for |rel| < 1024). */
    const float ratio = (float)n / (float)me;
    const float v = logf(ratio) / (float)log((double)max_distance / (double)me) * (float)(half - me);
    if (!(v < (float)half)) return base + half - 1;
    const int32_t large = me + (int32_t)v;
    return base + (large < half - 1 ? large : half - 1);
}

/* The activations of one call, in floats (64-byte aligned pieces of one allocation). */
typedef struct {
    float *x;         /* [L, D] residual stream */
    float *h;         /* [L, D] a sublayer's normalized input, then its output (before the residual add) */
    float *qr;        /* [L, I] q rows, then the attention output rows; FFN: [L, F] gate */
    float *kr, *vr;   /* [L, I]; FFN: kr..: [L, F] up (overlaps kr and vr) */
    float *q, *k, *v; /* [NH, L, HD] */
    float *o;         /* [NH, L, HD] */
    float *rel;       /* [NH, 2L-1] */
} acts;

static size_t up64(size_t n) { return (n + 15) & ~(size_t)15; } /* floats to whole 64-byte lines */

static size_t acts_floats(const cd_t5_config *c, size_t L, size_t *off) {
    const size_t D = (size_t)c->d_model, I = (size_t)c->heads * (size_t)c->d_kv, F = (size_t)c->d_ff;
    /* qr | kr vr: the attention's three [L, I] rows, or the FFN's gate [L, F] | up [L, F] */
    const size_t r0 = up64(L * (I > F ? I : F)), r12 = up64(L * (2 * I > F ? 2 * I : F));
    const size_t sizes[6] = {up64(L * D), up64(L * D), r0, r12, up64(L * I) * 4, up64((size_t)c->heads * (2 * L - 1))};
    size_t t = 0;
    for (int i = 0; i < 6; i++) off[i] = t, t += sizes[i];
    return t;
}

static void acts_point(const cd_t5_config *c, size_t L, float *base, const size_t *off, acts *a) {
    const size_t I = (size_t)c->heads * (size_t)c->d_kv;
    a->x = base + off[0];
    a->h = base + off[1];
    a->qr = base + off[2];
    a->kr = base + off[3];
    a->vr = a->kr + L * I; /* vr follows kr ([L, I] each) */
    a->q = base + off[4];
    a->k = a->q + up64(L * I);
    a->v = a->k + up64(L * I);
    a->o = a->v + up64(L * I);
    a->rel = base + off[5];
}

#define TRY(expr)                   \
    do {                            \
        cd_status s_ = (expr);      \
        if (s_ != CD_OK) return s_; \
    } while (0)

static cd_status lin(cd_ctx *ctx, const cd_ops *ops, const cd_t5_lin *l, const float *x, size_t n, float *y) {
    TRY(ops->linear(ctx, x, n, &l->w, NULL, y));
    if (l->scale != 1.0f) ops->scale(ctx, y, n * (size_t)l->w.out, l->scale);
    return CD_OK;
}

/* Every op and shape the forward uses, asked first; then the workspace reserved. */
static cd_status check_ops(cd_ctx *ctx, const cd_t5 *m, const cd_ops *ops, size_t L, const cd_attn_bias_desc *ab) {
    if (!ops->host_memory)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "t5: the %s backend computes in device memory; the T5 encoder's weights are read from "
                            "the mapped file in host memory (use the CPU)",
                            ops->name);
    const cd_op_id simple[] = {CD_OP_COPY_ROWS, CD_OP_RMSNORM_HEADS, CD_OP_TO_HEADS, CD_OP_FROM_HEADS,
                               CD_OP_ADD,       CD_OP_GELU_TANH,     CD_OP_MUL,      CD_OP_SCALE};
    size_t ws = 0;
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        const cd_op_desc d = {.op = simple[i], .n = L};
        TRY(ops->supports(ops, ctx, &d));
    }
    const cd_op_desc da = {.op = CD_OP_ATTENTION_BIAS, .n = L, .abias = ab};
    TRY(ops->supports(ops, ctx, &da));
    ws = ops->workspace(ops, ctx, &da);
    for (int i = 0; i < m->cfg.layers; i++) {
        const cd_t5_block *b = &m->blocks[i];
        if (i > 0 && b->q.w.data == m->blocks[0].q.w.data) break; /* cd_t5_random: one shared block */
        const cd_t5_lin *l[7] = {&b->q, &b->k, &b->v, &b->o, &b->wi0, &b->wi1, &b->wo};
        for (int j = 0; j < 7; j++) {
            const cd_op_desc d = {
                .op = CD_OP_LINEAR, .n = L, .in = l[j]->w.in, .out = l[j]->w.out, .wdtype = l[j]->w.dtype};
            TRY(ops->supports(ops, ctx, &d));
            const size_t b2 = ops->workspace(ops, ctx, &d);
            if (b2 > ws) ws = b2;
        }
    }
    return ops->reserve(ctx, ws);
}

/* Host staging of the inputs: x0 [L, D] = the embedding rows of ids (converted to f32; only the
 * rows used are read), rel [NH, 2L-1] = bias[bucket(j - i), h] at j - i + L - 1. */
static cd_status stage_inputs(cd_ctx *ctx, const cd_t5 *m, const int32_t *ids, size_t L, float *x0, float *rel) {
    const cd_t5_config *c = &m->cfg;
    const size_t D = (size_t)c->d_model, NH = (size_t)c->heads, W = 2 * L - 1;
    for (size_t t = 0; t < L; t++) {
        float *row = x0 + t * D;
        if (!m->embed) {
            for (size_t e = 0; e < D; e++) row[e] = cd_t5_rnd(m->embed_seed, (uint64_t)ids[t] * D + e, 1.0f);
            continue;
        }
        const size_t es = (size_t)cd_dtype_bits(m->embed->dtype) / 8;
        cd_st_tensor sub = *m->embed;
        sub.data = (const char *)m->embed->data + (size_t)ids[t] * D * es;
        sub.ndim = 1;
        sub.shape[0] = (int64_t)D;
        sub.nbytes = D * es;
        TRY(cd_st_to_f32(ctx, &sub, row));
    }
    for (size_t r = 0; r < W; r++) {
        const int32_t bk = cd_t5_bucket((int32_t)r - (int32_t)(L - 1), c->buckets, c->max_distance);
        for (size_t h = 0; h < NH; h++) rel[h * W + r] = m->rel_bias[(size_t)bk * NH + h];
    }
    return CD_OK;
}

static cd_status forward(cd_ctx *ctx, const cd_t5 *m, const cd_ops *ops, size_t L, const acts *a,
                         const cd_attn_bias_desc *ab) {
    const cd_t5_config *c = &m->cfg;
    const size_t D = (size_t)c->d_model;
    const int NH = c->heads, HD = c->d_kv;
    for (int i = 0; i < c->layers; i++) {
        const cd_t5_block *b = &m->blocks[i];
        /* self-attention */
        ops->copy_rows(ctx, a->h, D, a->x, D, L, D);
        ops->rmsnorm_heads(ctx, a->h, L, 1, (int)D, b->ln_attn, c->eps);
        TRY(lin(ctx, ops, &b->q, a->h, L, a->qr));
        TRY(lin(ctx, ops, &b->k, a->h, L, a->kr));
        TRY(lin(ctx, ops, &b->v, a->h, L, a->vr));
        ops->to_heads(ctx, a->qr, L, NH, HD, a->q, L, 0);
        ops->to_heads(ctx, a->kr, L, NH, HD, a->k, L, 0);
        ops->to_heads(ctx, a->vr, L, NH, HD, a->v, L, 0);
        TRY(ops->attention_bias(ctx, ab, a->q, a->k, a->v, a->rel, a->o));
        ops->from_heads(ctx, a->o, L, 0, L, NH, HD, a->qr);
        TRY(lin(ctx, ops, &b->o, a->qr, L, a->h));
        ops->add(ctx, a->x, a->h, L * D);
        /* gated-GELU feed-forward */
        ops->copy_rows(ctx, a->h, D, a->x, D, L, D);
        ops->rmsnorm_heads(ctx, a->h, L, 1, (int)D, b->ln_ff, c->eps);
        TRY(lin(ctx, ops, &b->wi0, a->h, L, a->qr));
        TRY(lin(ctx, ops, &b->wi1, a->h, L, a->kr));
        ops->gelu_tanh(ctx, a->qr, L * (size_t)c->d_ff);
        ops->mul(ctx, a->qr, a->kr, L * (size_t)c->d_ff);
        TRY(lin(ctx, ops, &b->wo, a->qr, L, a->h));
        ops->add(ctx, a->x, a->h, L * D);
    }
    ops->rmsnorm_heads(ctx, a->x, L, 1, (int)D, m->ln_final, c->eps);
    return CD_OK;
}

cd_status cd_t5_encode(cd_ctx *ctx, const cd_t5 *m, const cd_ops *ops, const int32_t *ids, int32_t L, float *out) {
    if (!m || !ops || !ids || !out) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "t5: encode: NULL argument");
    const cd_t5_config *c = &m->cfg;
    if (L < 1 || L > (1 << 20))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "t5: encode: length %d (must be in 1..%d)", L, 1 << 20);
    for (int32_t t = 0; t < L; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                "t5: encode: token id %d at position %d is outside the vocabulary "
                                "(0..%d)",
                                ids[t], t, c->vocab - 1);
    const size_t n = (size_t)L, D = (size_t)c->d_model;
    const cd_attn_bias_desc ab = {.heads = c->heads, .n = L, .head_dim = c->d_kv, .scale = 1.0f, .causal = 0};
    TRY(check_ops(ctx, m, ops, n, &ab));
    size_t off[6];
    const size_t floats = acts_floats(c, n, off);
    const size_t W = 2 * n - 1, host_floats = n * D + (size_t)c->heads * W;
    float *host = malloc(host_floats * sizeof(float));
    void *blk = NULL;
    if (!host) return cd_set_error(ctx, CD_ERR_OOM, "t5: encode: out of memory for %zu-token inputs", n);
    cd_status s = ops->alloc(ctx, floats * sizeof(float), &blk);
    if (s) {
        free(host);
        return cd_set_error(ctx, s, "t5: encode: cannot allocate the activations (%zu MiB for %d tokens on %s)",
                            (floats * sizeof(float)) >> 20, L, ops->name);
    }
    acts a;
    acts_point(c, n, blk, off, &a);
    s = stage_inputs(ctx, m, ids, n, host, host + n * D);
    if (!s) s = ops->upload(ctx, a.x, host, n * D * sizeof(float));
    if (!s) s = ops->upload(ctx, a.rel, host + n * D, (size_t)c->heads * W * sizeof(float));
    free(host);
    if (!s) s = forward(ctx, m, ops, n, &a, &ab);
    if (!s) s = ops->download(ctx, out, a.x, n * D * sizeof(float));
    ops->free(ctx, blk);
    return s;
}
