/* clip_text.c — the CLIP text encoder's forward (clip_text.h) over the ops table.
 *
 * Per call: the ids are checked, every op is asked ops->supports with this call's shapes, the
 * ops' workspace is reserved, and one activation block is allocated in the table's memory. The
 * embeddings (token rows converted from the mapped file + positions) are summed on the host into
 * the output buffer, uploaded, and every layer then runs on the table:
 *   t = LN1(x); q, k, v = t Wq^T + bq, ...; heads-major; causal attention; o = attn Wo^T + bo;
 *   x += o; t = LN2(x); m = quick_gelu(t W1^T + b1); x += m W2^T + b2
 * and the final LayerNorm's output is downloaded. LayerNorm is ln_modulate with
 * (shift, scale) = (bias, weight - 1), the affine LayerNorm the binding prepared. */
#include "clip_text_impl.h"

#include <math.h>
#include <stdlib.h>

int32_t cd_clip_text_pool_pos(const cd_clip_text *m, const int32_t *ids, int32_t n) {
    int32_t best = 0;
    if (m->cfg.eos_id == 2) { /* legacy configs: argmax(ids), its first occurrence */
        for (int32_t i = 1; i < n; i++)
            if (ids[i] > ids[best]) best = i;
        return best;
    }
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == m->cfg.eos_id) return i;
    return 0; /* no EOS: transformers' argmax over an all-false mask */
}

double cd_clip_text_flops(const cd_clip_config *c, int32_t n) {
    const double H = c->hidden, I = c->inter, N = n;
    /* linears: 4 H^2 + 2 H I per token; attention: q.k and P.v over the causal half (i + 1 keys) */
    const double lin = 2.0 * N * (4.0 * H * H + 2.0 * H * I);
    const double att = 2.0 * 2.0 * H * (N * (N + 1) / 2.0);
    return c->layers * (lin + att);
}

/* Asks the table about every op of an encode of n tokens and reserves their workspace. */
static cd_status check_ops(cd_ctx *ctx, const cd_clip_text *m, const cd_ops *ops, int32_t n,
                           const cd_attn_bias_desc *ad) {
    const cd_clip_config *c = &m->cfg;
    const cd_clip_layer *L = &m->lay[0];
    cd_op_desc d[10];
    int k = 0;
    const cd_weight *ws[3] = {&L->q, &L->fc1, &L->fc2};
    for (int i = 0; i < 3; i++)
        d[k++] = (cd_op_desc){
            .op = CD_OP_LINEAR, .n = (size_t)n, .in = ws[i]->in, .out = ws[i]->out, .wdtype = ws[i]->dtype};
    const cd_op_id plain[] = {CD_OP_LN_MODULATE, CD_OP_TO_HEADS, CD_OP_FROM_HEADS, CD_OP_ADD, CD_OP_QUICK_GELU};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        d[k++] = (cd_op_desc){.op = plain[i], .n = (size_t)n, .in = c->hidden, .out = c->hidden};
    d[k++] = (cd_op_desc){.op = CD_OP_ATTENTION_BIAS, .n = (size_t)n, .abias = ad};
    size_t ws_bytes = 0;
    for (int i = 0; i < k; i++) {
        cd_status s = ops->supports(ops, ctx, &d[i]);
        if (s) return s;
        const size_t b = ops->workspace(ops, ctx, &d[i]);
        if (b > ws_bytes) ws_bytes = b;
    }
    /* every layer's weights must have a dtype the table takes (they may differ per tensor) */
    for (int l = 0; l < c->layers; l++) {
        const cd_weight *all[6] = {&m->lay[l].q, &m->lay[l].k,   &m->lay[l].v,
                                   &m->lay[l].o, &m->lay[l].fc1, &m->lay[l].fc2};
        for (int i = 0; i < 6; i++) {
            if (all[i]->dtype == d[i < 4 ? 0 : i - 3].wdtype) continue;
            cd_op_desc o = {
                .op = CD_OP_LINEAR, .n = (size_t)n, .in = all[i]->in, .out = all[i]->out, .wdtype = all[i]->dtype};
            cd_status s = ops->supports(ops, ctx, &o);
            if (s) return s;
            const size_t b = ops->workspace(ops, ctx, &o);
            if (b > ws_bytes) ws_bytes = b;
        }
    }
    return ops->reserve(ctx, ws_bytes);
}

cd_status cd_clip_text_encode(cd_ctx *ctx, const cd_clip_text *m, const cd_ops *ops, const int32_t *ids, int32_t n,
                              float *hidden, float *pooled) {
    const cd_clip_config *c = &m->cfg;
    if (!ids || n < 1 || n > c->max_pos)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "clip_text: %d tokens (1 to %d allowed)", n, c->max_pos);
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                "clip_text: id %d at position %d is outside the vocabulary [0, %d)", ids[i], i,
                                c->vocab);
    if (!ops->host_memory)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "clip_text: the %s table's memory is not host memory; the encoder's weights are read "
                            "from the mapped file (use the cpu table)",
                            ops->name);
    const int32_t H = c->hidden, I = c->inter, NH = c->heads, HD = H / NH;
    const cd_attn_bias_desc ad = {.heads = NH, .n = n, .head_dim = HD, .scale = 1.0f / sqrtf((float)HD), .causal = 1};
    cd_status s = check_ops(ctx, m, ops, n, &ad);
    if (s) return s;

    const size_t nH = (size_t)n * (size_t)H, nI = (size_t)n * (size_t)I;
    /* host staging [n, H]: the embeddings going up, the final state coming down */
    float *host = hidden ? hidden : malloc(nH * sizeof(float));
    if (!host) return cd_set_error(ctx, CD_ERR_OOM, "clip_text: cannot allocate %zu bytes", nH * sizeof(float));
    const size_t es = (size_t)cd_dtype_bits(m->tok.dtype) / 8;
    for (int32_t i = 0; i < n && !s; i++) { /* x[i] = token_embedding[ids[i]] + position_embedding[i] */
        cd_st_tensor row = m->tok;
        row.data = (const char *)m->tok.data + (size_t)ids[i] * (size_t)H * es;
        row.ndim = 1;
        row.shape[0] = H;
        row.nbytes = (uint64_t)H * es;
        s = cd_st_to_f32(ctx, &row, host + (size_t)i * H);
        for (int32_t j = 0; j < H; j++) host[(size_t)i * H + j] += m->pos[(size_t)i * H + j];
    }
    /* activations: x, t, q, k, v [n, H]; qh, kh, vh, oh [NH, n, HD]; mlp [n, I] */
    float *act = NULL;
    if (!s) s = ops->alloc(ctx, (9 * nH + nI) * sizeof(float), (void **)&act);
    if (!s) s = ops->upload(ctx, act, host, nH * sizeof(float));
    if (s) {
        ops->free(ctx, act);
        if (host != hidden) free(host);
        return s;
    }
    float *x = act, *t = x + nH, *q = t + nH, *k = q + nH, *v = k + nH;
    float *qh = v + nH, *kh = qh + nH, *vh = kh + nH, *oh = vh + nH, *mlp = oh + nH;
    for (int l = 0; l < c->layers && !s; l++) {
        const cd_clip_layer *L = &m->lay[l];
        ops->ln_modulate(ctx, x, (size_t)n, H, L->ln1_b, L->ln1_s, c->eps, t);
        if (!s) s = ops->linear(ctx, t, (size_t)n, &L->q, L->qb, q);
        if (!s) s = ops->linear(ctx, t, (size_t)n, &L->k, L->kb, k);
        if (!s) s = ops->linear(ctx, t, (size_t)n, &L->v, L->vb, v);
        if (s) break;
        ops->to_heads(ctx, q, (size_t)n, NH, HD, qh, (size_t)n, 0);
        ops->to_heads(ctx, k, (size_t)n, NH, HD, kh, (size_t)n, 0);
        ops->to_heads(ctx, v, (size_t)n, NH, HD, vh, (size_t)n, 0);
        s = ops->attention_bias(ctx, &ad, qh, kh, vh, NULL, oh);
        if (s) break;
        ops->from_heads(ctx, oh, (size_t)n, 0, (size_t)n, NH, HD, q);
        s = ops->linear(ctx, q, (size_t)n, &L->o, L->ob, t);
        if (s) break;
        ops->add(ctx, x, t, nH);
        ops->ln_modulate(ctx, x, (size_t)n, H, L->ln2_b, L->ln2_s, c->eps, t);
        s = ops->linear(ctx, t, (size_t)n, &L->fc1, L->fc1b, mlp);
        if (s) break;
        ops->quick_gelu(ctx, mlp, nI);
        s = ops->linear(ctx, mlp, (size_t)n, &L->fc2, L->fc2b, t);
        if (s) break;
        ops->add(ctx, x, t, nH);
    }
    if (!s) {
        ops->ln_modulate(ctx, x, (size_t)n, H, m->lnf_b, m->lnf_s, c->eps, t);
        s = ops->download(ctx, host, t, nH * sizeof(float));
    }
    ops->free(ctx, act);
    if (!s && pooled) memcpy(pooled, host + (size_t)cd_clip_text_pool_pos(m, ids, n) * H, (size_t)H * sizeof(float));
    if (host != hidden) free(host);
    return s;
}
