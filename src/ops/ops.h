/* ops.h — the ops table: every tensor op the FLUX transformer and autoencoder forwards need, with
 * their shapes.
 * The models are written once against this table; backends implement it (cpu reference: plain
 * loops with double accumulation, the oracle; cpu fast: OpenBLAS + SIMD + OpenMP; cuda: cuBLASLt
 * and our kernels) and answer what they support and how much scratch an op needs; the registry
 * (src/backend/registry.c) maps a device to its table. docs/backends.md is the contract.
 * Activations are f32; weights are F32 or BF16 (as stored in the checkpoint).
 * Letters: n rows (tokens), dim features, NH heads, HD head_dim. */
#ifndef CD_OPS_H
#define CD_OPS_H

#include "../util/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A 2D convolution of one image, channels first (the autoencoder's; docs/flux.md):
 * x [cin, H, W] -> (nearest x2 upsample when up: [cin, 2H, 2W]) -> zero padding pad = (left, right,
 * top, bottom) -> k x k kernel at stride `stride` -> y [cout, Ho, Wo] (cd_conv_out_h / _w).
 * Weights w [cout, cin, k, k] f32 (PyTorch layout), bias [cout] f32 or NULL. The autoencoder uses
 * 3x3 pad 1 stride 1 (up 0 or 1), 3x3 pad (0,1,0,1) stride 2 (Downsample) and 1x1 pad 0 stride 1. */
typedef struct {
    int32_t cin, H, W; /* input, before the upsample */
    int32_t cout, k;   /* k = 1 or 3 (any k >= 1 is computed) */
    int32_t stride;    /* >= 1 */
    int32_t up;        /* 1: the input is upsampled nearest x2 first (fused, never materialized) */
    int32_t pad[4];    /* left, right, top, bottom, >= 0 */
} cd_conv_desc;

static inline int32_t cd_conv_out_h(const cd_conv_desc *d) {
    return (int32_t)(((int64_t)d->H * (1 + (d->up != 0)) + d->pad[2] + d->pad[3] - d->k) / d->stride + 1);
}
static inline int32_t cd_conv_out_w(const cd_conv_desc *d) {
    return (int32_t)(((int64_t)d->W * (1 + (d->up != 0)) + d->pad[0] + d->pad[1] - d->k) / d->stride + 1);
}

/* A linear layer's weight, PyTorch layout [out, in] row-major. */
typedef struct {
    const void *data;
    cd_dtype dtype; /* F32 or BF16 everywhere; the CPU tables also F16, F8_E4M3, F8_E5M2 (the text
                       encoders' checkpoints, used in place: converted in tiles, never copied whole) */
    int32_t out, in;
} cd_weight;

/* The ops of the table, for capability and workspace questions (docs/backends.md). */
typedef enum {
    CD_OP_LINEAR = 0,
    CD_OP_LN_MODULATE,
    CD_OP_RMSNORM_HEADS,
    CD_OP_GATE_ADD,
    CD_OP_GELU_TANH,
    CD_OP_SILU,
    CD_OP_ROPE,
    CD_OP_TO_HEADS,
    CD_OP_FROM_HEADS,
    CD_OP_ATTENTION,
    CD_OP_ADD,
    CD_OP_COPY_ROWS,
    CD_OP_CONV2D,
    CD_OP_GROUP_NORM,
    CD_OP_TRANSPOSE,
    CD_OP_MUL,
    CD_OP_SCALE,
    CD_OP_QUICK_GELU,
    CD_OP_ATTENTION_BIAS,
    CD_OP_COUNT
} cd_op_id;

/* Attention of the text encoders (T5, CLIP): one sequence of n tokens, every query against the keys
 * it may see, with an optional additive bias that depends on the key's offset from the query only
 * (T5's relative position buckets). No 1/sqrt(HD) default: scale is applied literally (T5 uses 1,
 * CLIP 1/sqrt(HD)). n is the text length (at most a few hundred), not an image grid. */
typedef struct {
    int32_t heads, n, head_dim; /* NH, n, HD >= 1 */
    float scale;                /* multiplies q.k */
    int32_t causal;             /* 1: query i sees keys j <= i (CLIP); 0: all keys (T5) */
} cd_attn_bias_desc;

/* One op as a question to a backend: which op, on what. Unused fields are 0. */
typedef struct {
    cd_op_id op;
    size_t n;                       /* rows (tokens) of the call */
    int32_t in, out;                /* linear: widths */
    cd_dtype wdtype;                /* linear: the weight's dtype */
    const cd_attn_desc *attn;       /* attention: the call's description */
    const cd_conv_desc *conv;       /* conv2d: the call's description */
    const cd_attn_bias_desc *abias; /* attention_bias: the call's description */
} cd_op_desc;

typedef struct cd_ops cd_ops;
struct cd_ops {
    const char *name;
    /* y [n, out] = x [n, in] . W^T + b;  b [out] f32 or NULL. x and y do not alias. */
    cd_status (*linear)(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y);
    /* y [n, dim] = (1 + scale) * LN(x) + shift; LayerNorm without affine, biased variance;
     * shift/scale [dim] broadcast over rows. y may equal x. */
    void (*ln_modulate)(cd_ctx *ctx, const float *x, size_t n, int dim, const float *shift, const float *scale,
                        float eps, float *y);
    /* x [n, NH*HD] in place: every head's HD values v <- v / sqrt(mean(v^2) + eps) * w[HD]. */
    void (*rmsnorm_heads)(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *w, float eps);
    /* x [n, dim] += gate[dim] * y [n, dim] (gate broadcast over rows). */
    void (*gate_add)(cd_ctx *ctx, float *x, const float *gate, const float *y, size_t n, int dim);
    /* x [n] in place: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
    void (*gelu_tanh)(cd_ctx *ctx, float *x, size_t n);
    /* x [n] in place: x * sigmoid(x). */
    void (*silu)(cd_ctx *ctx, float *x, size_t n);
    /* x [n, NH, HD] in place, rotating interleaved pairs (x[2i], x[2i+1]) of every head by the
     * token's angle i: (c x0 - s x1, s x0 + c x1); cs [n, HD/2, 2] holds (cos, sin). */
    void (*rope)(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *cs);
    /* Row-major [n, NH*HD] <-> heads-major [NH, ntot, HD] at token offset t0 (attention layout). */
    void (*to_heads)(cd_ctx *ctx, const float *rows, size_t n, int nh, int hd, float *dst, size_t ntot, size_t t0);
    void (*from_heads)(cd_ctx *ctx, const float *src, size_t ntot, size_t t0, size_t n, int nh, int hd, float *rows);
    /* One attention layer (see cd_attention_forward): q, k, v [NH, N, HD] f32. `self` is the table
     * it was called through, so that a decorator (patch parallelism: src/parallel/patch.c) finds
     * its state; plain backends ignore it. Its scratch is the `workspace` of CD_OP_ATTENTION. */
    cd_status (*attention)(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                           const float *v, const float *spatial_weight, float *o, float *lse);

    /* ---- capabilities and scratch: callers ask, never test which device this is ---- */
    /* CD_OK if the backend runs d's op with d's dtypes and shapes, else CD_ERR_UNSUPPORTED with a
     * one-line reason in ctx (e.g. a head_dim the GPU kernels are not built for, or a weight dtype
     * the linear cannot take). */
    cd_status (*supports)(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d);
    /* Scratch bytes the op needs for d (0: none). `reserve` makes that much ready in ctx ahead of a
     * forward, so that the forward itself never allocates (grow-only; owned by ctx). */
    size_t (*workspace)(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d);
    cd_status (*reserve)(cd_ctx *ctx, size_t bytes);
    /* Benchmarks (cd_attention_time): times reps calls of the backend's own attention kernel on
     * random bf16 inputs, t [reps] seconds each (after one warm-up call). NULL: no timer. */
    cd_status (*time_attention)(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, int reps, double *t);

    /* ---- memory and data movement: the model touches activations only through these ---- */
    int host_memory; /* 1: the backend's memory is host memory (the CPU backends) */
    cd_status (*alloc)(cd_ctx *ctx, size_t bytes, void **p); /* OOM error names the size */
    void (*free)(cd_ctx *ctx, void *p);                      /* NULL-safe */
    /* host -> backend memory; backend -> host (waits for queued work, reports its errors) */
    cd_status (*upload)(cd_ctx *ctx, void *dst, const void *src, size_t bytes);
    cd_status (*download)(cd_ctx *ctx, void *dst, const void *src, size_t bytes);
    cd_status (*sync)(cd_ctx *ctx); /* waits for queued work (no-op on the CPU) */
    /* x [n] += y [n] */
    void (*add)(cd_ctx *ctx, float *x, const float *y, size_t n);
    /* dst [rows, dst_ld] <- the first `cols` floats of each row of src [rows, src_ld] */
    void (*copy_rows)(cd_ctx *ctx, float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows,
                      size_t cols);

    /* ---- the autoencoder's ops: images channel-major [C, H, W] ---- */
    /* y [cout, Ho, Wo] = conv(x) + b (see cd_conv_desc); acc: y += conv(x) + b instead. x and y do
     * not alias. Scratch (im2col bands on the CPU) comes from the context's work area. */
    cd_status (*conv2d)(cd_ctx *ctx, const cd_conv_desc *d, const float *x, const float *w, const float *b, int acc,
                        float *y);
    /* y [C, n] = GroupNorm(x [C, n]) over G groups of C/G consecutive channels (n = H*W; biased
     * variance, eps inside the sqrt) * w[C] + b[C], then SiLU when silu. C % G == 0; y may equal x. */
    void (*group_norm)(cd_ctx *ctx, const float *x, int C, size_t n, int G, const float *w, const float *b, float eps,
                       int silu, float *y);
    /* y [cols, rows] = x [rows, cols] transposed (channel-major <-> token-major). No aliasing. */
    void (*transpose)(cd_ctx *ctx, const float *x, size_t rows, size_t cols, float *y);

    /* ---- the text encoders' ops (T5, CLIP: src/model/t5.c, clip_text.c) ---- */
    /* x [n] *= y [n] (T5's gated FFN). */
    void (*mul)(cd_ctx *ctx, float *x, const float *y, size_t n);
    /* x [n] *= s (a scaled-fp8 weight's per-tensor scale, applied to the linear's output). */
    void (*scale)(cd_ctx *ctx, float *x, size_t n, float s);
    /* x [n] in place: x * sigmoid(1.702 x) (CLIP's quick_gelu). */
    void (*quick_gelu)(cd_ctx *ctx, float *x, size_t n);
    /* q, k, v, o [NH, n, HD] f32 heads-major (to_heads with ntot = n, t0 = 0); rel [NH, 2n-1] f32 or
     * NULL: score(h, i, j) = scale q_i.k_j + rel[h (2n-1) + (j - i + n - 1)] over the keys query i
     * may see (d->causal); o = softmax(score).V. Scratch: the workspace of CD_OP_ATTENTION_BIAS. */
    cd_status (*attention_bias)(cd_ctx *ctx, const cd_attn_bias_desc *d, const float *q, const float *k, const float *v,
                                const float *rel, float *o);
};

const cd_ops *cd_ops_cpu_ref(void); /* the oracle */
const cd_ops *cd_ops_cpu(void);     /* the fast CPU backend */

/* The backend registry (src/backend/registry.c): the table that computes on `dev`, with the device
 * made ready in ctx (CUDA: opened once per context). CD_ERR_UNSUPPORTED with the reason when this
 * build or machine cannot (no CUDA in the build, no GPU). */
cd_status cd_backend_ops(cd_ctx *ctx, cd_device dev, const cd_ops **out);

/* Host-side helpers (cheap, backend independent). */
/* FLUX timestep embedding: t' = 1000 t; emb = [cos(t' f_i), sin(t' f_i)], f_i = exp(-ln(10000) i /
 * half), i < half = dim/2 (cos first). out [dim]. t', f_i and the argument t' f_i are float32 as in
 * BFL and diffusers (f_i bit-identical to PyTorch's for dim 256; see ops_host.c). */
void cd_timestep_embedding(float t, int dim, float *out);
/* RoPE angles for n tokens with 3-axis positions ids [n, 3]: axis a covers axes[a] dims of head_dim
 * (sum = HD), omega_j = theta^(-2j/axes[a]), angle = pos_a * omega_j, for j < axes[a]/2; pairs are
 * laid out axis after axis. cs [n, HD/2, 2] = (cos, sin), computed in double. */
void cd_rope_table(const float *ids, size_t n, const int axes[3], double theta, float *cs);

#ifdef __cplusplus
}
#endif

#endif
