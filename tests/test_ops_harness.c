/* test_ops_harness.c — the op harness's rows (op_harness.h: how it works and how to add an op)
 * for every op of src/ops/ops.h (the autoencoder's conv2d, group_norm and transpose included) and
 * src/ops/ops_bwd.h: the fast CPU tables under every ISA this CPU runs, and the CUDA table where
 * a GPU opens, against the reference tables.
 *
 * Tolerances (relative L2 over the whole output, test_rel_l2): f32 results that sum K terms get
 * oph_tol_f32(mult, K) = mult FLT_EPSILON sqrt(K) with mult 4 (products and sums in another order)
 * or 16 for the activations, whose fast paths approximate exp/tanh (SIMD polynomials, CUDA's
 * expf/tanhf: a few ulp each); permutations and copies are exact (0). A conv2d output sums
 * K = cin k k taps, the bias and (accumulating) the value it adds onto; a normalization (LayerNorm
 * over dim, GroupNorm over its group's C/G H W values) gets the K of its statistics, GroupNorm with
 * SiLU the activation's 16 on top. Measured on AVX2 and generic: every f32 error is below 0.15
 * of its tolerance (about one ulp in relative L2).
 * Backends that round operands to bf16 (unit roundoff 2^-9: the AVX512_BF16 linear and CUDA's
 * linear round x; CUDA's attention rounds the probabilities before P.V and its pooled keys) get
 * 2^-8 (OPH_TOL_BF16), 2.5 times that for the attention output. Attention inputs are bf16
 * values, so that the kernels' own rounding is what is measured. */
#include "op_harness.h"
#include "../src/ops/attn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- the rows of ops.h ------------------------------------------------------------------------ */
#define S(i) OPH_S(c, i)
#define F(i) ((float *)p[i])

/* linear s = {n, in, out}: x, w, b, y. F16 / F8 (E4M3) weights are random codes of magnitude
 * 2^-5..2 (an F8 weight fills the bytes of a 2-byte buffer of half as many elements). */
static cd_dtype row_wdtype(const oph_case *c) {
    static const cd_dtype k[] = {
        [OPH_F32] = CD_DTYPE_F32, [OPH_BF16] = CD_DTYPE_BF16, [OPH_F16] = CD_DTYPE_F16, [OPH_F8] = CD_DTYPE_F8_E4M3};
    return k[c->row->dtype];
}
static void mk_linear(oph_case *c) {
    const size_t n = S(0), in = S(1), out = S(2);
    const oph_dtype dt = c->row->dtype;
    oph_f32(c, "x", OPH_IN, n * in, 1.0f);
    if (dt == OPH_F32) {
        oph_f32(c, "w", OPH_IN, out * in, 0.5f);
    } else if (dt == OPH_BF16) {
        oph_bf16(c, "w", OPH_IN, out * in, 0.5f);
    } else {
        uint16_t *w = oph_bf16(c, "w", OPH_IN, dt == OPH_F8 ? (out * in + 1) / 2 : out * in, 0.5f);
        test_rng g = test_rng_seed(++c->seed);
        for (size_t i = 0; w && i < out * in; i++) {
            const unsigned long long r = test_rng_u64(&g);
            if (dt == OPH_F16) /* sign, exponent 10..15 (bias 15), 10 mantissa bits */
                w[i] = (uint16_t)(((r & 1) << 15) | ((10 + (r >> 1) % 6) << 10) | ((r >> 8) & 0x3ff));
            else /* sign, exponent 2..8 (bias 7), 3 mantissa bits: never the NaN code */
                ((uint8_t *)w)[i] = (uint8_t)(((r & 1) << 7) | ((2 + (r >> 1) % 7) << 3) | ((r >> 8) & 7));
        }
    }
    c->buf[1].offset = dt == OPH_F32 ? 4 : 8; /* 16 bytes: cuBLASLt wants aligned weights (the model's are) */
    oph_f32(c, "b", OPH_IN, out, 1.0f);
    oph_out(c, "y", n * out, dt == OPH_BF16 && c->be->bf16_linear ? OPH_TOL_BF16 : oph_tol_f32(4, in));
    snprintf(c->what, sizeof c->what, "n=%zu in=%zu out=%zu%s", n, in, out, c->row->flags & OPH_BIAS ? " bias" : "");
}
static void desc_linear(const oph_case *c, cd_op_desc *d, oph_desc_storage *st) {
    (void)st;
    *d = (cd_op_desc){.op = CD_OP_LINEAR, .n = S(0), .in = c->row->s[1], .out = c->row->s[2], .wdtype = row_wdtype(c)};
}
static cd_status call_linear(const oph_tables *t, const oph_case *c, void *const *p) {
    const cd_weight w = {p[1], row_wdtype(c), c->row->s[2], c->row->s[1]};
    return t->ops->linear(t->ctx, F(0), S(0), &w, c->row->flags & OPH_BIAS ? F(2) : NULL, F(3));
}

/* ln_modulate s = {n, dim}: x, shift, scale[, y]; row 0 has a mean far from 0 (cancellation) */
static void mk_ln(oph_case *c) {
    const size_t n = S(0), dim = S(1);
    const int inplace = c->row->flags & OPH_INPLACE;
    float *x = oph_f32(c, "x", inplace ? OPH_INOUT : OPH_IN, n * dim, 3.0f);
    for (size_t i = 0; x && i < dim; i++) x[i] += 8.0f;
    const double tol = oph_tol_f32(4, dim);
    if (inplace) oph_set_tol(c, tol);
    oph_f32(c, "shift", OPH_IN, dim, 1.0f);
    oph_f32(c, "scale", OPH_IN, dim, 1.0f);
    if (!inplace) oph_out(c, "y", n * dim, tol);
    snprintf(c->what, sizeof c->what, "n=%zu dim=%zu%s", n, dim, inplace ? " in place" : "");
}
static cd_status call_ln(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->ln_modulate(t->ctx, F(0), S(0), (int)S(1), F(1), F(2), 1e-6f, c->row->flags & OPH_INPLACE ? F(0) : F(3));
    return CD_OK;
}

/* rmsnorm_heads s = {n, nh, hd}: x (in place), w (around 1) */
static void mk_rms(oph_case *c) {
    const size_t n = S(0), nh = S(1), hd = S(2);
    oph_f32(c, "x", OPH_INOUT, n * nh * hd, 2.0f);
    oph_set_tol(c, oph_tol_f32(4, hd));
    float *w = oph_f32(c, "w", OPH_IN, hd, 1.0f);
    for (size_t i = 0; w && i < hd; i++) w[i] += 1.0f;
    snprintf(c->what, sizeof c->what, "n=%zu nh=%zu hd=%zu", n, nh, hd);
}
static cd_status call_rms(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->rmsnorm_heads(t->ctx, F(0), S(0), (int)S(1), (int)S(2), F(1), 1e-6f);
    return CD_OK;
}

/* gate_add s = {n, dim}: x (in place), gate, y */
static void mk_gate(oph_case *c) {
    const size_t n = S(0), dim = S(1);
    oph_f32(c, "x", OPH_INOUT, n * dim, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, 1));
    oph_f32(c, "gate", OPH_IN, dim, 2.0f);
    oph_f32(c, "y", OPH_IN, n * dim, 1.0f);
    snprintf(c->what, sizeof c->what, "n=%zu dim=%zu", n, dim);
}
static cd_status call_gate(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->gate_add(t->ctx, F(0), F(1), F(2), S(0), (int)S(1));
    return CD_OK;
}

/* gelu_tanh, silu s = {n}: x (in place), the tails of every SIMD width, one tiny value */
static void mk_act(oph_case *c) {
    float *x = oph_f32(c, "x", OPH_INOUT, S(0), 12.0f);
    if (x && S(0) > 1) x[0] = 1e-4f;
    oph_set_tol(c, oph_tol_f32(16, 1));
    snprintf(c->what, sizeof c->what, "n=%zu", S(0));
}
static cd_status call_gelu(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->gelu_tanh(t->ctx, F(0), S(0));
    return CD_OK;
}
static cd_status call_silu(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->silu(t->ctx, F(0), S(0));
    return CD_OK;
}

/* rope s = {n, nh, hd}: x (in place), cs (cos, sin of random angles) */
static float *mk_cs(oph_case *c, size_t n, size_t hd) {
    float *cs = oph_f32(c, "cs", OPH_IN, n * hd, 3.0f);
    for (size_t i = 0; cs && i < n * hd / 2; i++) {
        const double a = cs[2 * i];
        cs[2 * i] = (float)cos(a);
        cs[2 * i + 1] = (float)sin(a);
    }
    return cs;
}
static void mk_rope(oph_case *c) {
    const size_t n = S(0), nh = S(1), hd = S(2);
    oph_f32(c, "x", OPH_INOUT, n * nh * hd, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, 2));
    mk_cs(c, n, hd);
    snprintf(c->what, sizeof c->what, "n=%zu nh=%zu hd=%zu", n, nh, hd);
}
static cd_status call_rope(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->rope(t->ctx, F(0), S(0), (int)S(1), (int)S(2), F(1));
    return CD_OK;
}

/* to_heads s = {n, nh, hd, ntot, t0}: rows, dst (tokens outside [t0, t0 + n) must stay) */
static void mk_to_heads(oph_case *c) {
    const size_t n = S(0), nh = S(1), hd = S(2), ntot = S(3);
    oph_f32(c, "rows", OPH_IN, n * nh * hd, 1.0f);
    oph_f32(c, "dst", OPH_INOUT, nh * ntot * hd, 1.0f);
    snprintf(c->what, sizeof c->what, "n=%zu nh=%zu hd=%zu ntot=%zu t0=%zu", n, nh, hd, ntot, S(4));
}
static cd_status call_to_heads(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->to_heads(t->ctx, F(0), S(0), (int)S(1), (int)S(2), F(1), S(3), S(4));
    return CD_OK;
}
/* from_heads s = {n, nh, hd, ntot, t0}: src, rows */
static void mk_from_heads(oph_case *c) {
    const size_t n = S(0), nh = S(1), hd = S(2), ntot = S(3);
    oph_f32(c, "src", OPH_IN, nh * ntot * hd, 1.0f);
    oph_out(c, "rows", n * nh * hd, 0);
    snprintf(c->what, sizeof c->what, "n=%zu nh=%zu hd=%zu ntot=%zu t0=%zu", n, nh, hd, ntot, S(4));
}
static cd_status call_from_heads(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->from_heads(t->ctx, F(0), S(3), S(4), S(0), (int)S(1), (int)S(2), F(1));
    return CD_OK;
}

/* add s = {n}: x (in place), y; one f32 rounding of an exact sum on every backend */
/* mul s = {n}: x (in place), y */
static void desc_simple(const oph_case *c, cd_op_desc *d, cd_op_id op) { *d = (cd_op_desc){.op = op, .n = S(0)}; }
static void desc_mul(const oph_case *c, cd_op_desc *d, oph_desc_storage *st) {
    (void)st;
    desc_simple(c, d, CD_OP_MUL);
}
static void desc_scale(const oph_case *c, cd_op_desc *d, oph_desc_storage *st) {
    (void)st;
    desc_simple(c, d, CD_OP_SCALE);
}
static void desc_qgelu(const oph_case *c, cd_op_desc *d, oph_desc_storage *st) {
    (void)st;
    desc_simple(c, d, CD_OP_QUICK_GELU);
}
static void mk_mul(oph_case *c) {
    oph_f32(c, "x", OPH_INOUT, S(0), 2.0f);
    oph_set_tol(c, 0); /* one rounded product, the same everywhere */
    oph_f32(c, "y", OPH_IN, S(0), 2.0f);
    snprintf(c->what, sizeof c->what, "n=%zu", S(0));
}
/* a backend without the op says so through supports; the harness then expects this refusal */
static cd_status call_mul(const oph_tables *t, const oph_case *c, void *const *p) {
    if (!t->ops->mul) return CD_ERR_UNSUPPORTED;
    t->ops->mul(t->ctx, F(0), F(1), S(0));
    return CD_OK;
}
/* scale s = {n}: x (in place) times -0.37 */
static void mk_scale(oph_case *c) {
    oph_f32(c, "x", OPH_INOUT, S(0), 2.0f);
    oph_set_tol(c, 0);
    snprintf(c->what, sizeof c->what, "n=%zu", S(0));
}
static cd_status call_scale(const oph_tables *t, const oph_case *c, void *const *p) {
    if (!t->ops->scale) return CD_ERR_UNSUPPORTED;
    t->ops->scale(t->ctx, F(0), S(0), -0.37f);
    return CD_OK;
}
static cd_status call_qgelu(const oph_tables *t, const oph_case *c, void *const *p) {
    if (!t->ops->quick_gelu) return CD_ERR_UNSUPPORTED;
    t->ops->quick_gelu(t->ctx, F(0), S(0));
    return CD_OK;
}

/* attention_bias s = {heads, n, hd, causal, with rel}: q, k, v, rel, o. T5 (scale 1, rel) and CLIP
 * (1/sqrt(HD), causal). o is a convex combination of v rows: tolerance of a sum over n terms. */
static void mk_abias(oph_case *c) {
    const size_t nh = S(0), n = S(1), hd = S(2);
    oph_f32(c, "q", OPH_IN, nh * n * hd, 1.0f);
    oph_f32(c, "k", OPH_IN, nh * n * hd, 1.0f);
    oph_f32(c, "v", OPH_IN, nh * n * hd, 1.0f);
    oph_f32(c, "rel", OPH_IN, nh * (2 * n - 1), 3.0f);
    oph_out(c, "o", nh * n * hd, oph_tol_f32(16, n * hd));
    snprintf(c->what, sizeof c->what, "heads=%zu n=%zu hd=%zu%s%s", nh, n, hd, S(3) ? " causal" : "",
             S(4) ? " rel" : "");
}
static void fill_abias(const oph_case *c, cd_attn_bias_desc *a) {
    *a = (cd_attn_bias_desc){.heads = c->row->s[0],
                             .n = c->row->s[1],
                             .head_dim = c->row->s[2],
                             .scale = c->row->s[4] ? 1.0f : 1.0f / sqrtf((float)c->row->s[2]),
                             .causal = c->row->s[3]};
}
static void desc_abias(const oph_case *c, cd_op_desc *d, oph_desc_storage *st) {
    fill_abias(c, &st->abias);
    *d = (cd_op_desc){.op = CD_OP_ATTENTION_BIAS, .n = S(1), .abias = &st->abias};
}
static cd_status call_abias(const oph_tables *t, const oph_case *c, void *const *p) {
    if (!t->ops->attention_bias) return CD_ERR_UNSUPPORTED;
    cd_attn_bias_desc a;
    fill_abias(c, &a);
    return t->ops->attention_bias(t->ctx, &a, F(0), F(1), F(2), S(4) ? F(3) : NULL, F(4));
}

static void mk_add(oph_case *c) {
    oph_f32(c, "x", OPH_INOUT, S(0), 1.0f);
    oph_f32(c, "y", OPH_IN, S(0), 1.0f);
    snprintf(c->what, sizeof c->what, "n=%zu", S(0));
}
static cd_status call_add(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->add(t->ctx, F(0), F(1), S(0));
    return CD_OK;
}

/* copy_rows s = {rows, cols, src_ld, dst_ld}: dst (columns past cols must stay), src */
static void mk_copy_rows(oph_case *c) {
    oph_f32(c, "dst", OPH_INOUT, S(0) * S(3), 1.0f);
    oph_f32(c, "src", OPH_IN, S(0) * S(2), 1.0f);
    snprintf(c->what, sizeof c->what, "rows=%zu cols=%zu src_ld=%zu dst_ld=%zu", S(0), S(1), S(2), S(3));
}
static cd_status call_copy_rows(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->copy_rows(t->ctx, F(0), S(3), F(1), S(2), S(0), S(1));
    return CD_OK;
}

/* attention s = {nh, hd, T, H, W, radius, down}: q, k, v (bf16 values), sw [4, 4], o, lse */
static cd_attn_desc att_desc(const oph_case *c) {
    const cd_attn_desc d = {c->row->s[0], c->row->s[1], c->row->s[2], c->row->s[3],
                            c->row->s[4], c->row->s[5], c->row->s[6], 0};
    return d;
}
static void mk_attention(oph_case *c) {
    const cd_attn_desc d = att_desc(c);
    const size_t N = cd_attn_tokens(&d), nv = (size_t)d.heads * N * d.head_dim;
    const float amp[3] = {2.0f, 2.0f, 1.0f};
    static const char *names[3] = {"q", "k", "v"};
    for (int t = 0; t < 3; t++) {
        float *x = oph_f32(c, names[t], OPH_IN, nv, amp[t]);
        for (size_t i = 0; x && i < nv; i++) x[i] = cd_bf16_to_f32(cd_f32_to_bf16(x[i]));
    }
    float *sw = oph_f32(c, "sw", OPH_IN, 16, 0.5f);
    for (int i = 0; sw && i < 16; i++) sw[i] += 0.6f; /* non-uniform, positive-leaning cell weights */
    const int bf = c->be->bf16_attention;
    oph_out(c, "o", nv, bf ? 2.5 * OPH_TOL_BF16 : oph_tol_f32(4, N));
    c->buf[c->nbuf - 1].offset = 2; /* 8 bytes: CUDA's kernels store o in pairs (attn_cuda.cu) */
    oph_out(c, "lse", (size_t)d.heads * N, bf ? OPH_TOL_BF16 : oph_tol_f32(4, N));
    snprintf(c->what, sizeof c->what, "nh=%d hd=%d T=%d %dx%d r=%d down=%d", d.heads, d.head_dim, d.text_len, d.grid_h,
             d.grid_w, d.radius, d.down);
}
static cd_status call_attention(const oph_tables *t, const oph_case *c, void *const *p) {
    const cd_attn_desc d = att_desc(c);
    return t->ops->attention(t->ops, t->ctx, &d, F(0), F(1), F(2), F(3), F(4), F(5));
}
static void desc_attention(const oph_case *c, cd_op_desc *d, oph_desc_storage *st) {
    st->attn = att_desc(c);
    *d = (cd_op_desc){.op = CD_OP_ATTENTION, .attn = &st->attn};
}

/* ---- the autoencoder's ops of ops.h ----------------------------------------------------------- */
/* conv2d s = {cin, H, W, cout, k, stride, up, pad left, right, top, bottom}: x, w, b, y (in and
 * out with OPH_ACC; b unused without OPH_BIAS) */
static cd_conv_desc conv_desc(const oph_case *c) {
    const int *s = c->row->s;
    const cd_conv_desc d = {s[0], s[1], s[2], s[3], s[4], s[5], s[6], {s[7], s[8], s[9], s[10]}};
    return d;
}
static void mk_conv(oph_case *c) {
    const cd_conv_desc d = conv_desc(c);
    const int acc = (c->row->flags & OPH_ACC) != 0, bias = (c->row->flags & OPH_BIAS) != 0;
    const size_t K = (size_t)d.cin * d.k * d.k, nout = (size_t)d.cout * cd_conv_out_h(&d) * cd_conv_out_w(&d);
    oph_f32(c, "x", OPH_IN, (size_t)d.cin * d.H * d.W, 1.5f);
    oph_f32(c, "w", OPH_IN, (size_t)d.cout * K, 0.5f);
    oph_f32(c, "b", OPH_IN, (size_t)d.cout, 1.0f);
    const double tol = oph_tol_f32(4, K + bias + acc); /* the taps, the bias, the value accumulated onto */
    if (acc) {
        oph_f32(c, "y", OPH_INOUT, nout, 1.0f);
        oph_set_tol(c, tol);
    } else {
        oph_out(c, "y", nout, tol);
    }
    snprintf(c->what, sizeof c->what, "%dx%dx%d->%d k=%d stride=%d pad=(%d,%d,%d,%d)%s%s%s", d.cin, d.H, d.W, d.cout,
             d.k, d.stride, d.pad[0], d.pad[1], d.pad[2], d.pad[3], d.up ? " up x2" : "", bias ? " bias" : "",
             acc ? " acc" : "");
}
static void desc_conv(const oph_case *c, cd_op_desc *d, oph_desc_storage *st) {
    st->conv = conv_desc(c);
    *d = (cd_op_desc){.op = CD_OP_CONV2D, .conv = &st->conv};
}
static cd_status call_conv(const oph_tables *t, const oph_case *c, void *const *p) {
    const cd_conv_desc d = conv_desc(c);
    return t->ops->conv2d(t->ctx, &d, F(0), F(1), c->row->flags & OPH_BIAS ? F(2) : NULL,
                          (c->row->flags & OPH_ACC) != 0, F(3));
}

/* group_norm s = {C, H, W, G, silu}: x (in place with OPH_INPLACE), w (around 1), b[, y]; group 0
 * has a mean far from 0 (cancellation) */
static void mk_gn(oph_case *c) {
    const size_t C = S(0), n = S(1) * S(2), G = S(3), m = C / G * n;
    const int inplace = c->row->flags & OPH_INPLACE, silu = c->row->s[4];
    float *x = oph_f32(c, "x", inplace ? OPH_INOUT : OPH_IN, C * n, 2.0f);
    for (size_t i = 0; x && i < m; i++) x[i] += 4.0f;
    /* a normalization over the group's m values, as ln_modulate's over dim; SiLU adds an
     * activation's approximated exp */
    const double tol = oph_tol_f32(4, m) + (silu ? oph_tol_f32(16, 1) : 0);
    if (inplace) oph_set_tol(c, tol);
    float *w = oph_f32(c, "w", OPH_IN, C, 0.5f);
    for (size_t i = 0; w && i < C; i++) w[i] += 1.0f;
    oph_f32(c, "b", OPH_IN, C, 1.0f);
    if (!inplace) oph_out(c, "y", C * n, tol);
    snprintf(c->what, sizeof c->what, "C=%zu G=%zu %zux%zu%s%s", C, G, S(1), S(2), silu ? " silu" : "",
             inplace ? " in place" : "");
}
static cd_status call_gn(const oph_tables *t, const oph_case *c, void *const *p) {
    const int inplace = c->row->flags & OPH_INPLACE;
    t->ops->group_norm(t->ctx, F(0), (int)S(0), S(1) * S(2), (int)S(3), F(1), F(2), 1e-6f, c->row->s[4],
                       inplace ? F(0) : F(3));
    return CD_OK;
}

/* transpose s = {rows, cols}: x, y (values moved: exact) */
static void mk_transpose(oph_case *c) {
    oph_f32(c, "x", OPH_IN, S(0) * S(1), 1.0f);
    oph_out(c, "y", S(0) * S(1), 0);
    snprintf(c->what, sizeof c->what, "%zux%zu", S(0), S(1));
}
static cd_status call_transpose(const oph_tables *t, const oph_case *c, void *const *p) {
    t->ops->transpose(t->ctx, F(0), S(0), S(1), F(1));
    return CD_OK;
}

/* ---- the rows of ops_bwd.h (conventions there: dx overwritten, parameter gradients +=) -------- */
/* linear_bwd s = {n, in, out}: x, w, dy, dx, dw, db */
static void mk_linear_bwd(oph_case *c) {
    const size_t n = S(0), in = S(1), out = S(2);
    oph_f32(c, "x", OPH_IN, n * in, 1.0f);
    oph_f32(c, "w", OPH_IN, out * in, 0.5f);
    oph_f32(c, "dy", OPH_IN, n * out, 1.0f);
    oph_out(c, "dx", n * in, oph_tol_f32(4, out));
    oph_f32(c, "dw", OPH_INOUT, out * in, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, n));
    oph_f32(c, "db", OPH_INOUT, out, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, n));
    snprintf(c->what, sizeof c->what, "n=%zu in=%zu out=%zu", n, in, out);
}
static cd_status call_linear_bwd(const oph_tables *t, const oph_case *c, void *const *p) {
    return t->bwd->linear_bwd(t->ctx, F(0), S(0), F(1), (int)S(1), (int)S(2), F(2), F(3), F(4), F(5));
}
/* ln_modulate_bwd s = {n, dim}: x, scale, dy, dx, dshift, dscale */
static void mk_ln_bwd(oph_case *c) {
    const size_t n = S(0), dim = S(1);
    oph_f32(c, "x", OPH_IN, n * dim, 3.0f);
    oph_f32(c, "scale", OPH_IN, dim, 1.0f);
    oph_f32(c, "dy", OPH_IN, n * dim, 1.0f);
    oph_out(c, "dx", n * dim, oph_tol_f32(4, dim));
    oph_f32(c, "dshift", OPH_INOUT, dim, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, n));
    oph_f32(c, "dscale", OPH_INOUT, dim, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, n));
    snprintf(c->what, sizeof c->what, "n=%zu dim=%zu", n, dim);
}
static cd_status call_ln_bwd(const oph_tables *t, const oph_case *c, void *const *p) {
    return t->bwd->ln_modulate_bwd(t->ctx, F(0), S(0), (int)S(1), F(1), 1e-6f, F(2), F(3), F(4), F(5));
}
/* rmsnorm_heads_bwd s = {n, nh, hd}: x, w, dy, dx, dw */
static void mk_rms_bwd(oph_case *c) {
    const size_t n = S(0), nh = S(1), hd = S(2);
    oph_f32(c, "x", OPH_IN, n * nh * hd, 2.0f);
    float *w = oph_f32(c, "w", OPH_IN, hd, 1.0f);
    for (size_t i = 0; w && i < hd; i++) w[i] += 1.0f;
    oph_f32(c, "dy", OPH_IN, n * nh * hd, 1.0f);
    oph_out(c, "dx", n * nh * hd, oph_tol_f32(4, hd));
    oph_f32(c, "dw", OPH_INOUT, hd, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, n * nh));
    snprintf(c->what, sizeof c->what, "n=%zu nh=%zu hd=%zu", n, nh, hd);
}
static cd_status call_rms_bwd(const oph_tables *t, const oph_case *c, void *const *p) {
    return t->bwd->rmsnorm_heads_bwd(t->ctx, F(0), S(0), (int)S(1), (int)S(2), F(1), 1e-6f, F(2), F(3), F(4));
}
/* gate_add_bwd s = {n, dim}: dx, y, gate, dy, dgate */
static void mk_gate_bwd(oph_case *c) {
    const size_t n = S(0), dim = S(1);
    oph_f32(c, "dx", OPH_IN, n * dim, 1.0f);
    oph_f32(c, "y", OPH_IN, n * dim, 1.0f);
    oph_f32(c, "gate", OPH_IN, dim, 2.0f);
    oph_out(c, "dy", n * dim, oph_tol_f32(4, 1));
    oph_f32(c, "dgate", OPH_INOUT, dim, 1.0f);
    oph_set_tol(c, oph_tol_f32(4, n));
    snprintf(c->what, sizeof c->what, "n=%zu dim=%zu", n, dim);
}
static cd_status call_gate_bwd(const oph_tables *t, const oph_case *c, void *const *p) {
    return t->bwd->gate_add_bwd(t->ctx, F(0), F(1), F(2), S(0), (int)S(1), F(3), F(4));
}
/* gelu_tanh_bwd, silu_bwd s = {n}: x, dy, dx */
static void mk_act_bwd(oph_case *c) {
    oph_f32(c, "x", OPH_IN, S(0), 6.0f);
    oph_f32(c, "dy", OPH_IN, S(0), 1.0f);
    oph_out(c, "dx", S(0), oph_tol_f32(16, 1));
    snprintf(c->what, sizeof c->what, "n=%zu", S(0));
}
static cd_status call_gelu_bwd(const oph_tables *t, const oph_case *c, void *const *p) {
    t->bwd->gelu_tanh_bwd(t->ctx, F(0), F(1), F(2), S(0));
    return CD_OK;
}
static cd_status call_silu_bwd(const oph_tables *t, const oph_case *c, void *const *p) {
    t->bwd->silu_bwd(t->ctx, F(0), F(1), F(2), S(0));
    return CD_OK;
}
/* rope_bwd s = {n, nh, hd}: g (in place), cs */
static cd_status call_rope_bwd(const oph_tables *t, const oph_case *c, void *const *p) {
    t->bwd->rope_bwd(t->ctx, F(0), S(0), (int)S(1), (int)S(2), F(1));
    return CD_OK;
}
/* sum_rows s = {n, dim}: dy, out (accumulated) */
static void mk_sum_rows(oph_case *c) {
    oph_f32(c, "dy", OPH_IN, S(0) * S(1), 1.0f);
    oph_f32(c, "out", OPH_INOUT, S(1), 1.0f);
    oph_set_tol(c, oph_tol_f32(4, S(0)));
    snprintf(c->what, sizeof c->what, "n=%zu dim=%zu", S(0), S(1));
}
static cd_status call_sum_rows(const oph_tables *t, const oph_case *c, void *const *p) {
    return t->bwd->sum_rows(t->ctx, F(0), S(0), (int)S(1), F(1));
}

#define LIN(n, in, out, fl)                                                       \
    {"linear", OPH_F32, {n, in, out}, fl, mk_linear, call_linear, desc_linear}, { \
        "linear", OPH_BF16, {n, in, out}, fl, mk_linear, call_linear, desc_linear \
    }
#define LINX(dt, n, in, out, fl) \
    { "linear", dt, {n, in, out}, fl, mk_linear, call_linear, desc_linear }
#define ATT(nh, hd, T, H, W, r, down) \
    { "attention", OPH_F32, {nh, hd, T, H, W, r, down}, 0, mk_attention, call_attention, desc_attention }
#define RMS(n, nh, hd) \
    { "rmsnorm_heads", OPH_F32, {n, nh, hd}, 0, mk_rms, call_rms, NULL }
#define BWD(op, s0, s1, s2, mk, call) \
    { op, OPH_F32, {s0, s1, s2}, OPH_BWD, mk, call, NULL }
#define CONV(ci, h, w, co, k, st, up, l, r, t, b, fl) \
    { "conv2d", OPH_F32, {ci, h, w, co, k, st, up, l, r, t, b}, fl, mk_conv, call_conv, desc_conv }
#define GN(C, H, W, G, silu, fl) \
    { "group_norm", OPH_F32, {C, H, W, G, silu}, fl, mk_gn, call_gn, NULL }
#define TR(rows, cols) \
    { "transpose", OPH_F32, {rows, cols}, 0, mk_transpose, call_transpose, NULL }

/* Shapes: odd row counts and widths that are no multiple of any SIMD width (8, 16), next to the
 * FLUX kinds (head_dim 64 and 128, widths a multiple of 64). */
static const oph_row k_rows[] = {
    LIN(1, 7, 5, 0),
    LINX(OPH_F16, 1, 7, 5, 0),
    LINX(OPH_F16, 37, 129, 1100, OPH_BIAS), /* two weight tiles (ops_cpu.c CD_WTILE) */
    LINX(OPH_F8, 13, 65, 48, 0),
    LINX(OPH_F8, 37, 130, 1030, OPH_BIAS),
    LIN(1, 7, 5, OPH_BIAS),
    LIN(13, 64, 48, OPH_BIAS),
    LIN(37, 129, 300, 0),
    LIN(37, 129, 300, OPH_BIAS),
    LIN(5, 256, 513, OPH_BIAS),
    LIN(64, 96, 260, 0),
    LIN(300, 192, 72, OPH_BIAS),
    {"ln_modulate", OPH_F32, {9, 1}, 0, mk_ln, call_ln, NULL},
    {"ln_modulate", OPH_F32, {9, 7}, 0, mk_ln, call_ln, NULL},
    {"ln_modulate", OPH_F32, {9, 384}, 0, mk_ln, call_ln, NULL},
    {"ln_modulate", OPH_F32, {37, 1000}, OPH_INPLACE, mk_ln, call_ln, NULL},
    {"ln_modulate", OPH_F32, {5, 70}, OPH_INPLACE, mk_ln, call_ln, NULL},
    RMS(11, 3, 16),
    RMS(11, 3, 128),
    RMS(11, 3, 5),
    RMS(1, 1, 33),
    RMS(37, 24, 128),
    {"gate_add", OPH_F32, {7, 45}, 0, mk_gate, call_gate, NULL},
    {"gate_add", OPH_F32, {37, 192}, 0, mk_gate, call_gate, NULL},
    {"gelu_tanh", OPH_F32, {1}, 0, mk_act, call_gelu, NULL},
    {"gelu_tanh", OPH_F32, {17}, 0, mk_act, call_gelu, NULL},
    {"gelu_tanh", OPH_F32, {1000}, 0, mk_act, call_gelu, NULL},
    {"gelu_tanh", OPH_F32, {40001}, 0, mk_act, call_gelu, NULL},
    {"silu", OPH_F32, {1}, 0, mk_act, call_silu, NULL},
    {"silu", OPH_F32, {15}, 0, mk_act, call_silu, NULL},
    {"silu", OPH_F32, {1000}, 0, mk_act, call_silu, NULL},
    {"silu", OPH_F32, {40001}, 0, mk_act, call_silu, NULL},
    {"rope", OPH_F32, {6, 2, 16}, 0, mk_rope, call_rope, NULL},
    {"rope", OPH_F32, {37, 3, 64}, 0, mk_rope, call_rope, NULL},
    {"rope", OPH_F32, {5, 1, 6}, 0, mk_rope, call_rope, NULL},
    {"to_heads", OPH_F32, {37, 3, 64, 79, 5}, 0, mk_to_heads, call_to_heads, NULL},
    {"to_heads", OPH_F32, {5, 1, 33, 9, 4}, 0, mk_to_heads, call_to_heads, NULL},
    {"from_heads", OPH_F32, {12, 3, 64, 74, 3}, 0, mk_from_heads, call_from_heads, NULL},
    {"from_heads", OPH_F32, {5, 1, 33, 9, 0}, 0, mk_from_heads, call_from_heads, NULL},
    {"add", OPH_F32, {1}, 0, mk_add, call_add, NULL},
    {"add", OPH_F32, {7101}, 0, mk_add, call_add, NULL},
    {"copy_rows", OPH_F32, {36, 190, 192, 199}, 0, mk_copy_rows, call_copy_rows, NULL},
    {"copy_rows", OPH_F32, {3, 1, 5, 2}, 0, mk_copy_rows, call_copy_rows, NULL},
    {"mul", OPH_F32, {1}, 0, mk_mul, call_mul, desc_mul},
    {"mul", OPH_F32, {70001}, 0, mk_mul, call_mul, desc_mul},
    {"scale", OPH_F32, {3}, 0, mk_scale, call_scale, desc_scale},
    {"scale", OPH_F32, {70001}, 0, mk_scale, call_scale, desc_scale},
    {"quick_gelu", OPH_F32, {1}, 0, mk_act, call_qgelu, desc_qgelu},
    {"quick_gelu", OPH_F32, {40001}, 0, mk_act, call_qgelu, desc_qgelu},
    {"attention_bias", OPH_F32, {3, 37, 16, 0, 1}, 0, mk_abias, call_abias, desc_abias},
    {"attention_bias", OPH_F32, {2, 77, 64, 1, 0}, 0, mk_abias, call_abias, desc_abias},
    {"attention_bias", OPH_F32, {1, 1, 7, 1, 1}, 0, mk_abias, call_abias, desc_abias},
    {"attention_bias", OPH_F32, {4, 130, 64, 0, 1}, 0, mk_abias, call_abias, desc_abias},
    ATT(2, 64, 7, 13, 29, 0, 0),
    ATT(1, 32, 0, 5, 17, 0, 0),
    ATT(2, 128, 7, 13, 29, 3, 0),
    ATT(3, 64, 5, 12, 16, 4, 0),
    ATT(2, 32, 5, 20, 20, 16, 0),
    ATT(2, 128, 9, 16, 24, 5, 2),
    ATT(1, 64, 0, 16, 16, 4, 4),
    ATT(1, 128, 3, 9, 9, 100000, 0),
    ATT(2, 48, 3, 6, 7, 2, 0),
    /* the autoencoder's: 3x3 pad 1 (one input row; the fused nearest x2 upsample), the
     * Downsample's 3x3 stride 2 pad (0,1,0,1) on odd and even sides, 1x1 (one sgemm on the
     * input; accumulating, as the resnet shortcut; strided and padded), and a conv whose im2col
     * (K Ho Wo = 576 x 200 x 200 > 2^24 floats) runs in bands of output rows */
    CONV(5, 7, 9, 11, 3, 1, 0, 1, 1, 1, 1, OPH_BIAS),
    CONV(3, 1, 13, 6, 3, 1, 0, 1, 1, 1, 1, OPH_BIAS),
    CONV(3, 5, 7, 6, 3, 1, 1, 1, 1, 1, 1, OPH_BIAS),
    CONV(7, 9, 11, 5, 3, 2, 0, 0, 1, 0, 1, OPH_BIAS),
    CONV(6, 8, 6, 9, 3, 2, 0, 0, 1, 0, 1, OPH_BIAS),
    CONV(4, 6, 5, 3, 3, 1, 0, 1, 1, 1, 1, OPH_ACC),
    CONV(13, 5, 3, 7, 1, 1, 0, 0, 0, 0, 0, OPH_BIAS),
    CONV(9, 7, 5, 12, 1, 1, 0, 0, 0, 0, 0, OPH_BIAS | OPH_ACC),
    CONV(3, 7, 9, 5, 1, 2, 0, 1, 0, 0, 1, OPH_BIAS),
    CONV(40, 33, 17, 37, 3, 1, 0, 1, 1, 1, 1, OPH_BIAS),
    CONV(64, 200, 200, 1, 3, 1, 0, 1, 1, 1, 1, OPH_BIAS),
    GN(12, 7, 9, 3, 0, 0),
    GN(12, 5, 3, 4, 1, OPH_INPLACE),
    GN(10, 3, 7, 10, 1, 0),
    GN(6, 11, 1, 1, 0, OPH_INPLACE),
    GN(24, 7, 13, 6, 0, OPH_INPLACE),
    GN(24, 7, 13, 6, 1, OPH_INPLACE),
    TR(7, 13),
    TR(33, 65),
    TR(1, 5),
    TR(24, 91),
    BWD("linear_bwd", 37, 96, 80, mk_linear_bwd, call_linear_bwd),
    BWD("linear_bwd", 5, 3, 7, mk_linear_bwd, call_linear_bwd),
    BWD("ln_modulate_bwd", 37, 96, 0, mk_ln_bwd, call_ln_bwd),
    BWD("ln_modulate_bwd", 300, 256, 0, mk_ln_bwd, call_ln_bwd),
    BWD("rmsnorm_heads_bwd", 37, 3, 32, mk_rms_bwd, call_rms_bwd),
    BWD("rmsnorm_heads_bwd", 300, 4, 64, mk_rms_bwd, call_rms_bwd),
    BWD("gate_add_bwd", 37, 96, 0, mk_gate_bwd, call_gate_bwd),
    BWD("gate_add_bwd", 300, 200, 0, mk_gate_bwd, call_gate_bwd),
    BWD("gelu_tanh_bwd", 1001, 0, 0, mk_act_bwd, call_gelu_bwd),
    BWD("silu_bwd", 1001, 0, 0, mk_act_bwd, call_silu_bwd),
    BWD("rope_bwd", 37, 3, 32, mk_rope, call_rope_bwd),
    BWD("sum_rows", 300, 200, 0, mk_sum_rows, call_sum_rows),
    BWD("sum_rows", 1, 7, 0, mk_sum_rows, call_sum_rows),
};
#define NROWS (sizeof k_rows / sizeof k_rows[0])

TEST(ops_harness_cpu_generic) { oph_run_cpu(k_rows, NROWS, CD_ISA_GENERIC); }
TEST(ops_harness_cpu_avx2) { oph_run_cpu(k_rows, NROWS, CD_ISA_AVX2); }
TEST(ops_harness_cpu_avx512) { oph_run_cpu(k_rows, NROWS, CD_ISA_AVX512); }
TEST(ops_harness_cuda) { oph_run_cuda(k_rows, NROWS); }
