/* ops_cpu.c — the fast CPU ops: linear through OpenBLAS sgemm for F32 weights; BF16 weights through
 * the AVX512_BF16 GEMM where the CPU has it (gemm_bf16_avx512.c), else (and F16, F8 weights)
 * converted to f32 in row tiles into the context's scratch (the whole weight is never expanded), row-parallel
 * norms and modulation on OpenMP threads, and the activations through the per-ISA SIMD kernels
 * (ops_kern_impl.h). Tested against ops_ref.c. */
#include "../../ops/ops.h"
#include "ops_host_mem.h"
#include "gemm_bf16.h"
#include "../../ops/attn.h"
#include "conv_cpu.h"
#include "attn_text_cpu.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void cd_gelu_generic(float *x, size_t n);
void cd_gelu_avx2(float *x, size_t n);
void cd_gelu_avx512(float *x, size_t n);
void cd_silu_generic(float *x, size_t n);
void cd_silu_avx2(float *x, size_t n);
void cd_silu_avx512(float *x, size_t n);

/* Threads are only worth waking for some work: below this many elements an op runs on the calling
 * thread (tiny ops, e.g. the modulation vectors, would otherwise pay an OpenMP barrier each; on a
 * loaded machine that cost milliseconds per op). */
#define PAR(elems) ((elems) >= ((size_t)1 << 15))

/* Output rows of a BF16 weight converted per sgemm call. Measured (2 cores, n x 3072 -> 3072 and
 * 4608 x 3072 -> 9216): 256-row tiles ran at 63-76% of f32 sgemm, 1024-row tiles at 92-93%; the
 * f32 tile is 1024 x in x 4 B (63 MB for FLUX's widest input, 15360), far below the weights. */
#define CD_WTILE 1024

static cd_status cpu_linear(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    const int out = w->out, in = w->in;
    if (n == 0) return CD_OK;
    const int prev = cd_blas_threads_push(ctx);
    if (w->dtype == CD_DTYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, out, in, 1.0f, x, in, (const float *)w->data, in,
                    0.0f, y, out);
    } else if (w->dtype == CD_DTYPE_BF16 && ctx->has_bf16) {
        cd_blas_threads_pop(prev);
        return cd_gemm_bf16_avx512(ctx, x, n, w, b, y); /* vdpbf16ps: see gemm_bf16.h */
    } else if (cd_dtype_float_convertible(w->dtype)) {  /* BF16 without AVX512_BF16, F16, F8 */
        float *tile = cd_ctx_work(ctx, (size_t)CD_WTILE * in);
        if (!tile) {
            cd_blas_threads_pop(prev);
            return CD_ERR_OOM;
        }
        const size_t esz = (size_t)cd_dtype_bits(w->dtype) / 8;
        const uint8_t *wb = (const uint8_t *)w->data;
        for (int o0 = 0; o0 < out; o0 += CD_WTILE) {
            const int ro = out - o0 < CD_WTILE ? out - o0 : CD_WTILE;
            /* one weight row per task: row-parallel conversion of the tile */
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR((size_t)ro * in))
            for (int r = 0; r < ro; r++)
                cd_elems_to_f32(w->dtype, wb + ((size_t)(o0 + r) * in) * esz, (size_t)in, tile + (size_t)r * in);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, ro, in, 1.0f, x, in, tile, in, 0.0f, y + o0,
                        out);
        }
    } else {
        cd_blas_threads_pop(prev);
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "linear: weights must be F32, BF16, F16, F8_E4M3 or F8_E5M2 (got %s)",
                            cd_dtype_name(w->dtype));
    }
    cd_blas_threads_pop(prev);
    if (b) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)out))
        for (size_t r = 0; r < n; r++)
            for (int o = 0; o < out; o++) y[r * out + o] += b[o];
    }
    return CD_OK;
}

static void cpu_ln_modulate(cd_ctx *ctx, const float *x, size_t n, int dim, const float *shift, const float *scale,
                            float eps, float *y) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)dim))
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        /* two passes in f32 with a f64 total: mean first, then the centred sum of squares */
        double s = 0;
        for (int i = 0; i < dim; i++) s += xr[i];
        const float mean = (float)(s / dim);
        double v = 0;
        for (int i = 0; i < dim; i++) v += (double)(xr[i] - mean) * (xr[i] - mean);
        const float inv = (float)(1.0 / sqrt(v / dim + eps));
        for (int i = 0; i < dim; i++) yr[i] = (1.0f + scale[i]) * ((xr[i] - mean) * inv) + shift[i];
    }
}

static void cpu_rmsnorm_heads(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *w, float eps) {
    const size_t rows = n * (size_t)nh;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(rows * (size_t)hd))
    for (size_t r = 0; r < rows; r++) {
        float *v = x + r * hd;
        float ss = 0;
        for (int i = 0; i < hd; i++) ss += v[i] * v[i];
        const float inv = (float)(1.0 / sqrt((double)ss / hd + eps));
        for (int i = 0; i < hd; i++) v[i] = v[i] * inv * w[i];
    }
}

static void cpu_gate_add(cd_ctx *ctx, float *x, const float *gate, const float *y, size_t n, int dim) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)dim))
    for (size_t r = 0; r < n; r++)
        for (int i = 0; i < dim; i++) x[r * dim + i] += gate[i] * y[r * dim + i];
}

/* Splits n elements into per-thread contiguous ranges for an elementwise kernel. */
static void map_parallel(cd_ctx *ctx, float *x, size_t n, void (*fn)(float *, size_t)) {
    const size_t block = 1 << 14;
    const size_t nb = (n + block - 1) / block;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n))
    for (size_t i = 0; i < nb; i++) fn(x + i * block, i + 1 < nb ? block : n - i * block);
}

static void cpu_gelu_tanh(cd_ctx *ctx, float *x, size_t n) {
    map_parallel(ctx, x, n,
                 ctx->isa == CD_ISA_AVX512 ? cd_gelu_avx512
                 : ctx->isa == CD_ISA_AVX2 ? cd_gelu_avx2
                                           : cd_gelu_generic);
}

static void cpu_silu(cd_ctx *ctx, float *x, size_t n) {
    map_parallel(ctx, x, n,
                 ctx->isa == CD_ISA_AVX512 ? cd_silu_avx512
                 : ctx->isa == CD_ISA_AVX2 ? cd_silu_avx2
                                           : cd_silu_generic);
}

static void cpu_rope(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *cs) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)nh * hd))
    for (size_t t = 0; t < n; t++) {
        const float *c = cs + t * (size_t)hd;
        for (int h = 0; h < nh; h++) {
            float *v = x + (t * nh + h) * (size_t)hd;
            for (int i = 0; i < hd / 2; i++) {
                const float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = c[2 * i] * x0 - c[2 * i + 1] * x1;
                v[2 * i + 1] = c[2 * i + 1] * x0 + c[2 * i] * x1;
            }
        }
    }
}

static void cpu_to_heads(cd_ctx *ctx, const float *rows, size_t n, int nh, int hd, float *dst, size_t ntot, size_t t0) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)nh * hd))
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            memcpy(dst + ((size_t)h * ntot + t0 + t) * hd, rows + (t * nh + h) * hd, sizeof(float) * hd);
}

static void cpu_from_heads(cd_ctx *ctx, const float *src, size_t ntot, size_t t0, size_t n, int nh, int hd,
                           float *rows) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)nh * hd))
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            memcpy(rows + (t * nh + h) * hd, src + ((size_t)h * ntot + t0 + t) * hd, sizeof(float) * hd);
}

/* x * sigmoid(1.702 x): CLIP's activation, on a few hundred thousand elements per layer at most. */
static void cpu_quick_gelu(cd_ctx *ctx, float *x, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n))
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

static cd_status cpu_attention(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                               const float *sw, float *o, float *lse) {
    return cd_attention_forward(ctx, d, CD_DTYPE_F32, q, k, v, sw, o, lse);
}

/* Scratch (ctx's work area): a BF16 linear converts CD_WTILE weight rows at a time to f32, or packs
 * its input for the AVX512_BF16 GEMM; attention keeps per-thread strips (attn_cpu.c). */
static size_t cpu_workspace(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d) {
    (void)self;
    size_t floats = 0;
    if (d->op == CD_OP_LINEAR && d->wdtype == CD_DTYPE_BF16 && ctx->has_bf16) {
        floats = cd_gemm_bf16_scratch_floats(d->n, d->in, ctx->threads);
    } else if (d->op == CD_OP_LINEAR && d->wdtype != CD_DTYPE_F32) {
        floats = (size_t)CD_WTILE * (size_t)d->in;
    } else if (d->op == CD_OP_ATTENTION_BIAS && d->abias) {
        floats = cd_attn_bias_cpu_scratch_floats(d->abias, ctx->threads);
    } else if (d->op == CD_OP_ATTENTION && d->attn) {
        floats = cd_attn_cpu_scratch_floats(d->attn, ctx->threads);
    } else if (d->op == CD_OP_CONV2D && d->conv) {
        return cd_cpu_conv2d_workspace_bytes(d->conv);
    }
    return floats * sizeof(float);
}

/* Profiled entry points: each op's wall time is added to its class while ctx->profile is on. */
#define PROF_VOID(name, cls, params, args) \
    static void prof_##name params {       \
        CD_PROF_BEGIN(ctx);                \
        cpu_##name args;                   \
        CD_PROF_END(ctx, cls);             \
    }
PROF_VOID(ln_modulate, CD_PROF_OTHER,
          (cd_ctx * ctx, const float *x, size_t n, int dim, const float *sh, const float *sc, float eps, float *y),
          (ctx, x, n, dim, sh, sc, eps, y))
PROF_VOID(rmsnorm_heads, CD_PROF_OTHER, (cd_ctx * ctx, float *x, size_t n, int nh, int hd, const float *w, float eps),
          (ctx, x, n, nh, hd, w, eps))
PROF_VOID(gate_add, CD_PROF_OTHER, (cd_ctx * ctx, float *x, const float *g, const float *y, size_t n, int dim),
          (ctx, x, g, y, n, dim))
PROF_VOID(gelu_tanh, CD_PROF_OTHER, (cd_ctx * ctx, float *x, size_t n), (ctx, x, n))
PROF_VOID(silu, CD_PROF_OTHER, (cd_ctx * ctx, float *x, size_t n), (ctx, x, n))
PROF_VOID(quick_gelu, CD_PROF_OTHER, (cd_ctx * ctx, float *x, size_t n), (ctx, x, n))
PROF_VOID(rope, CD_PROF_OTHER, (cd_ctx * ctx, float *x, size_t n, int nh, int hd, const float *cs),
          (ctx, x, n, nh, hd, cs))
PROF_VOID(to_heads, CD_PROF_OTHER,
          (cd_ctx * ctx, const float *r, size_t n, int nh, int hd, float *d, size_t nt, size_t t0),
          (ctx, r, n, nh, hd, d, nt, t0))
PROF_VOID(from_heads, CD_PROF_OTHER,
          (cd_ctx * ctx, const float *s, size_t nt, size_t t0, size_t n, int nh, int hd, float *r),
          (ctx, s, nt, t0, n, nh, hd, r))

static cd_status prof_linear(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    CD_PROF_BEGIN(ctx);
    cd_status s = cpu_linear(ctx, x, n, w, b, y);
    CD_PROF_END(ctx, CD_PROF_LINEAR);
    return s;
}

static cd_status prof_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                                const float *v, const float *sw, float *o, float *lse) {
    (void)self;
    CD_PROF_BEGIN(ctx);
    cd_status s = cpu_attention(ctx, d, q, k, v, sw, o, lse);
    CD_PROF_END(ctx, CD_PROF_ATTENTION);
    return s;
}

static cd_status prof_attention_bias(cd_ctx *ctx, const cd_attn_bias_desc *d, const float *q, const float *k,
                                     const float *v, const float *rel, float *o) {
    CD_PROF_BEGIN(ctx);
    cd_status s = cd_cpu_attention_bias(ctx, d, q, k, v, rel, o);
    CD_PROF_END(ctx, CD_PROF_ATTENTION);
    return s;
}

static const cd_ops k_cpu = {
    .name = "cpu",
    .linear = prof_linear,
    .ln_modulate = prof_ln_modulate,
    .rmsnorm_heads = prof_rmsnorm_heads,
    .gate_add = prof_gate_add,
    .gelu_tanh = prof_gelu_tanh,
    .silu = prof_silu,
    .rope = prof_rope,
    .to_heads = prof_to_heads,
    .from_heads = prof_from_heads,
    .attention = prof_attention,
    .workspace = cpu_workspace,
    .time_attention = cd_cpu_time_attention,
    .conv2d = cd_cpu_conv2d,
    .group_norm = cd_cpu_group_norm,
    .transpose = cd_cpu_transpose,
    .quick_gelu = prof_quick_gelu,
    .attention_bias = prof_attention_bias,
    CD_HOST_MEM_OPS,
};

const cd_ops *cd_ops_cpu(void) { return &k_cpu; }
