/* ops_cuda.cu — the CUDA ops table: bf16 conversions, the row-wise norms, the elementwise ops and
 * the layout moves, on device f32 buffers queued on the context's stream. The math follows the
 * reference ops (ops_ref.c) in f32: LayerNorm in two passes (mean, then the centred sum of squares,
 * biased variance, eps inside the sqrt), RMSNorm per head, GELU in its tanh form, RoPE on
 * interleaved pairs. Linear is in gemm_cuda.cu, attention in attn_cuda.cu.
 *
 * Shapes: n * dim reaches 8e8 (262656 tokens x 3072 at 8192^2), so element indices are size_t;
 * widths within a row (dim, NH*HD, ...) are int. Flat kernels are grid-stride loops; row kernels
 * give a block (LayerNorm and the row moves) or a warp (RMSNorm per head) to a row and loop over
 * rows. Where every pointer and row width allows, rows are moved as float4 (the `T` template
 * parameter: float or float4, widths then counted in T). Launch errors are recorded in cu->sticky
 * (the ops return void) and reported at the next sync. */
#include "cuda_internal.h"

#include <string.h>

#include <stdint.h>

/* gemm_cuda.cu. C++ linkage on purpose: a signature that differs between the two files fails to
 * link instead of misbehaving. */
cd_status cd_cuda_linear_op(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y);
/* conv_cuda.cu (same linkage rule): the autoencoder's ops. */
cd_status cd_cuda_conv2d(cd_ctx *ctx, const cd_conv_desc *d, const float *x, const float *w, const float *b, int acc,
                         float *y);
void cd_cuda_group_norm(cd_ctx *ctx, const float *x, int C, size_t n, int G, const float *w, const float *b, float eps,
                        int silu, float *y);
void cd_cuda_transpose(cd_ctx *ctx, const float *x, size_t rows, size_t cols, float *y);

#define BLOCK 256 /* threads per block of every kernel here (a multiple of 32) */

static struct cd_cuda *need(cd_ctx *ctx) {
    if (ctx && ctx->dev_state) return cd_cuda_of(ctx);
    cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda: not initialized");
    return NULL;
}

static bool aligned(const void *p, uintptr_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Blocks for `units` of work of BLOCK threads each (flat: units = threads; rows: pass
 * units = rows * BLOCK), capped at 16 blocks per SM (2 waves of 8 resident 256-thread blocks);
 * the kernels loop over what is left. */
static unsigned grid_for(const struct cd_cuda *cu, size_t threads) {
    size_t b = threads / BLOCK + (threads % BLOCK != 0);
    const size_t cap = (size_t)cu->prop.multiProcessorCount * 16;
    if (b > cap) b = cap;
    return b < 1 ? 1u : (unsigned)b;
}
static unsigned grid_rows(const struct cd_cuda *cu, size_t rows) {
    const size_t cap = (size_t)cu->prop.multiProcessorCount * 16;
    return (unsigned)(rows < cap ? (rows < 1 ? 1 : rows) : cap);
}

#define TID ((size_t)blockIdx.x * blockDim.x + threadIdx.x)
#define STRIDE ((size_t)gridDim.x * blockDim.x)

/* ---- bf16 conversions ---------------------------------------------------------------------- */

/* Bit for bit cd_f32_to_bf16 (internal.h): round to nearest even, NaN stays a (quiet) NaN. */
static __device__ __forceinline__ uint32_t bf16_bits(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x40u) & 0xffffu;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

/* vec: s 16-byte and d 8-byte aligned, four elements a step; the n % 4 tail one by one. */
static __global__ void k_f32_to_bf16(const float *__restrict__ s, uint16_t *__restrict__ d, size_t n, int vec) {
    size_t done = 0;
    if (vec) {
        const size_t n4 = n / 4;
        const float4 *s4 = (const float4 *)s;
        uint2 *d4 = (uint2 *)d;
        for (size_t i = TID; i < n4; i += STRIDE) {
            const float4 v = s4[i];
            uint2 o; /* little endian: the lower address is the low half */
            o.x = bf16_bits(v.x) | (bf16_bits(v.y) << 16);
            o.y = bf16_bits(v.z) | (bf16_bits(v.w) << 16);
            d4[i] = o;
        }
        done = n4 * 4;
    }
    for (size_t i = done + TID; i < n; i += STRIDE) d[i] = (uint16_t)bf16_bits(s[i]);
}

static __device__ __forceinline__ float bf16_f32(uint32_t h) { return __uint_as_float(h << 16); }

static __global__ void k_bf16_to_f32(const uint16_t *__restrict__ s, float *__restrict__ d, size_t n, int vec) {
    size_t done = 0;
    if (vec) {
        const size_t n4 = n / 4;
        const uint2 *s4 = (const uint2 *)s;
        float4 *d4 = (float4 *)d;
        for (size_t i = TID; i < n4; i += STRIDE) {
            const uint2 v = s4[i];
            d4[i] =
                make_float4(bf16_f32(v.x & 0xffffu), bf16_f32(v.x >> 16), bf16_f32(v.y & 0xffffu), bf16_f32(v.y >> 16));
        }
        done = n4 * 4;
    }
    for (size_t i = done + TID; i < n; i += STRIDE) d[i] = bf16_f32(s[i]);
}

extern "C" void cd_cuda_f32_to_bf16(cd_ctx *ctx, const float *d_src, uint16_t *d_dst, size_t n) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0) return;
    const int vec = aligned(d_src, 16) && aligned(d_dst, 8);
    k_f32_to_bf16<<<grid_for(cu, vec ? n / 4 + 1 : n), BLOCK, 0, cu->stream>>>(d_src, d_dst, n, vec);
    cd_cuda_launch_ok(cu);
}

extern "C" void cd_cuda_bf16_to_f32(cd_ctx *ctx, const uint16_t *d_src, float *d_dst, size_t n) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0) return;
    const int vec = aligned(d_src, 8) && aligned(d_dst, 16);
    k_bf16_to_f32<<<grid_for(cu, vec ? n / 4 + 1 : n), BLOCK, 0, cu->stream>>>(d_src, d_dst, n, vec);
    cd_cuda_launch_ok(cu);
}

/* ---- reductions ---------------------------------------------------------------------------- */

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v; /* every lane holds the total */
}

/* Sum over the block; every thread gets the total. sh: 32 floats of shared memory. The leading
 * barrier keeps a previous call's readers of sh ahead of this call's writers. */
static __device__ float block_sum(float v, float *sh) {
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    return warp_sum(lane < nw ? sh[lane] : 0.0f);
}

/* ---- LayerNorm + modulation: one block per row --------------------------------------------- */

/* V: dim % 4 == 0 and x, y, shift, scale 16-byte aligned. y may equal x: every element is read
 * by the thread that writes it, after both reductions of its row. */
template <bool V>
static __global__ void k_ln_modulate(const float *x, size_t n, int dim, const float *shift, const float *scale,
                                     float eps, float *y) {
    __shared__ float sh[32];
    const int nv = V ? dim / 4 : dim;
    for (size_t r = blockIdx.x; r < n; r += gridDim.x) {
        const float *xr = x + r * (size_t)dim;
        float *yr = y + r * (size_t)dim;
        float s = 0.0f;
        for (int i = threadIdx.x; i < nv; i += blockDim.x) {
            if (V) {
                const float4 a = ((const float4 *)xr)[i];
                s += (a.x + a.y) + (a.z + a.w);
            } else {
                s += xr[i];
            }
        }
        const float mean = block_sum(s, sh) / (float)dim;
        float q = 0.0f;
        for (int i = threadIdx.x; i < nv; i += blockDim.x) {
            if (V) {
                const float4 a = ((const float4 *)xr)[i];
                const float d0 = a.x - mean, d1 = a.y - mean, d2 = a.z - mean, d3 = a.w - mean;
                q += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
            } else {
                const float d0 = xr[i] - mean;
                q += d0 * d0;
            }
        }
        const float inv = 1.0f / sqrtf(block_sum(q, sh) / (float)dim + eps);
        for (int i = threadIdx.x; i < nv; i += blockDim.x) {
            if (V) {
                const float4 a = ((const float4 *)xr)[i], sc = ((const float4 *)scale)[i],
                             sf = ((const float4 *)shift)[i];
                float4 o;
                o.x = (1.0f + sc.x) * ((a.x - mean) * inv) + sf.x;
                o.y = (1.0f + sc.y) * ((a.y - mean) * inv) + sf.y;
                o.z = (1.0f + sc.z) * ((a.z - mean) * inv) + sf.z;
                o.w = (1.0f + sc.w) * ((a.w - mean) * inv) + sf.w;
                ((float4 *)yr)[i] = o;
            } else {
                yr[i] = (1.0f + scale[i]) * ((xr[i] - mean) * inv) + shift[i];
            }
        }
    }
}

static void cuda_ln_modulate(cd_ctx *ctx, const float *x, size_t n, int dim, const float *shift, const float *scale,
                             float eps, float *y) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0 || dim <= 0) return;
    const unsigned g = grid_rows(cu, n);
    if (dim % 4 == 0 && aligned(x, 16) && aligned(y, 16) && aligned(shift, 16) && aligned(scale, 16))
        k_ln_modulate<true><<<g, BLOCK, 0, cu->stream>>>(x, n, dim, shift, scale, eps, y);
    else
        k_ln_modulate<false><<<g, BLOCK, 0, cu->stream>>>(x, n, dim, shift, scale, eps, y);
    cd_cuda_launch_ok(cu);
}

/* ---- RMSNorm per head: one warp per (token, head) row of hd floats ------------------------- */

/* V: hd % 4 == 0 and x, w 16-byte aligned. */
template <bool V> static __global__ void k_rmsnorm_heads(float *x, size_t rows, int hd, const float *w, float eps) {
    const int lane = threadIdx.x & 31;
    const int nv = V ? hd / 4 : hd;
    const size_t warps = STRIDE >> 5;
    for (size_t r = TID >> 5; r < rows; r += warps) { /* r is the same on all lanes of a warp */
        float *v = x + r * (size_t)hd;
        float ss = 0.0f;
        for (int i = lane; i < nv; i += 32) {
            if (V) {
                const float4 a = ((const float4 *)v)[i];
                ss += (a.x * a.x + a.y * a.y) + (a.z * a.z + a.w * a.w);
            } else {
                ss += v[i] * v[i];
            }
        }
        const float inv = 1.0f / sqrtf(warp_sum(ss) / (float)hd + eps);
        for (int i = lane; i < nv; i += 32) {
            if (V) {
                float4 a = ((float4 *)v)[i];
                const float4 s = ((const float4 *)w)[i];
                a.x = a.x * inv * s.x;
                a.y = a.y * inv * s.y;
                a.z = a.z * inv * s.z;
                a.w = a.w * inv * s.w;
                ((float4 *)v)[i] = a;
            } else {
                v[i] = v[i] * inv * w[i];
            }
        }
    }
}

static void cuda_rmsnorm_heads(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *w, float eps) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0 || nh <= 0 || hd <= 0) return;
    const size_t rows = n * (size_t)nh;
    const unsigned g = grid_for(cu, rows * 32);
    if (hd % 4 == 0 && aligned(x, 16) && aligned(w, 16))
        k_rmsnorm_heads<true><<<g, BLOCK, 0, cu->stream>>>(x, rows, hd, w, eps);
    else
        k_rmsnorm_heads<false><<<g, BLOCK, 0, cu->stream>>>(x, rows, hd, w, eps);
    cd_cuda_launch_ok(cu);
}

/* ---- flat elementwise ---------------------------------------------------------------------- */

struct gelu_op {
    __device__ float operator()(float v) const {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
};
struct silu_op {
    /* exp(-v) overflows to inf for v < -88: v / inf = -0, the limit. */
    __device__ float operator()(float v) const { return v / (1.0f + expf(-v)); }
};

/* x [n] in place; vec: x 16-byte aligned. */
template <class F> static __global__ void k_map(float *x, size_t n, int vec, F f) {
    size_t done = 0;
    if (vec) {
        const size_t n4 = n / 4;
        float4 *x4 = (float4 *)x;
        for (size_t i = TID; i < n4; i += STRIDE) {
            float4 a = x4[i];
            a.x = f(a.x);
            a.y = f(a.y);
            a.z = f(a.z);
            a.w = f(a.w);
            x4[i] = a;
        }
        done = n4 * 4;
    }
    for (size_t i = done + TID; i < n; i += STRIDE) x[i] = f(x[i]);
}

template <class F> static void launch_map(cd_ctx *ctx, float *x, size_t n, F f) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0) return;
    const int vec = aligned(x, 16);
    k_map<F><<<grid_for(cu, vec ? n / 4 + 1 : n), BLOCK, 0, cu->stream>>>(x, n, vec, f);
    cd_cuda_launch_ok(cu);
}

static void cuda_gelu_tanh(cd_ctx *ctx, float *x, size_t n) { launch_map(ctx, x, n, gelu_op()); }
static void cuda_silu(cd_ctx *ctx, float *x, size_t n) { launch_map(ctx, x, n, silu_op()); }

/* x [n] += y [n]; vec: both 16-byte aligned. */
static __global__ void k_add(float *x, const float *y, size_t n, int vec) {
    size_t done = 0;
    if (vec) {
        const size_t n4 = n / 4;
        float4 *x4 = (float4 *)x;
        const float4 *y4 = (const float4 *)y;
        for (size_t i = TID; i < n4; i += STRIDE) {
            float4 a = x4[i];
            const float4 b = y4[i];
            a.x += b.x;
            a.y += b.y;
            a.z += b.z;
            a.w += b.w;
            x4[i] = a;
        }
        done = n4 * 4;
    }
    for (size_t i = done + TID; i < n; i += STRIDE) x[i] += y[i];
}

static void cuda_add(cd_ctx *ctx, float *x, const float *y, size_t n) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0) return;
    const int vec = aligned(x, 16) && aligned(y, 16);
    k_add<<<grid_for(cu, vec ? n / 4 + 1 : n), BLOCK, 0, cu->stream>>>(x, y, n, vec);
    cd_cuda_launch_ok(cu);
}

/* ---- row kernels: one block per row, widths in units of T (float or float4) ---------------- */

static __device__ __forceinline__ float fma_t(float g, float y, float x) { return fmaf(g, y, x); }
static __device__ __forceinline__ float4 fma_t(float4 g, float4 y, float4 x) {
    return make_float4(fmaf(g.x, y.x, x.x), fmaf(g.y, y.y, x.y), fmaf(g.z, y.z, x.z), fmaf(g.w, y.w, x.w));
}

/* x [n, dim] += gate [dim] * y [n, dim] (one rounding, as the reference's double sum). */
template <class T> static __global__ void k_gate_add(T *x, const T *gate, const T *y, size_t n, int dimv) {
    for (size_t r = blockIdx.x; r < n; r += gridDim.x) {
        T *xr = x + r * (size_t)dimv;
        const T *yr = y + r * (size_t)dimv;
        for (int i = threadIdx.x; i < dimv; i += blockDim.x) xr[i] = fma_t(gate[i], yr[i], xr[i]);
    }
}

static void cuda_gate_add(cd_ctx *ctx, float *x, const float *gate, const float *y, size_t n, int dim) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0 || dim <= 0) return;
    const unsigned g = grid_rows(cu, n);
    if (dim % 4 == 0 && aligned(x, 16) && aligned(gate, 16) && aligned(y, 16))
        k_gate_add<float4>
            <<<g, BLOCK, 0, cu->stream>>>((float4 *)x, (const float4 *)gate, (const float4 *)y, n, dim / 4);
    else
        k_gate_add<float><<<g, BLOCK, 0, cu->stream>>>(x, gate, y, n, dim);
    cd_cuda_launch_ok(cu);
}

/* dst [rows, dld] <- the first cols of each row of src [rows, sld]. */
template <class T>
static __global__ void k_copy_rows(T *dst, size_t dld, const T *src, size_t sld, size_t rows, size_t cols) {
    for (size_t r = blockIdx.x; r < rows; r += gridDim.x)
        for (size_t c = threadIdx.x; c < cols; c += blockDim.x) dst[r * dld + c] = src[r * sld + c];
}

static void cuda_copy_rows(cd_ctx *ctx, float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows,
                           size_t cols) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || rows == 0 || cols == 0) return;
    const unsigned g = grid_rows(cu, rows);
    if (cols % 4 == 0 && dst_ld % 4 == 0 && src_ld % 4 == 0 && aligned(dst, 16) && aligned(src, 16))
        k_copy_rows<float4>
            <<<g, BLOCK, 0, cu->stream>>>((float4 *)dst, dst_ld / 4, (const float4 *)src, src_ld / 4, rows, cols / 4);
    else
        k_copy_rows<float><<<g, BLOCK, 0, cu->stream>>>(dst, dst_ld, src, src_ld, rows, cols);
    cd_cuda_launch_ok(cu);
}

/* rows [n, NH*HD] <-> heads [NH, ntot, HD] at token t0; one block per token. In units of T:
 * hdv = HD / |T|; within token t, element c = h * hdv + e of the row is element e of the
 * (h, t0 + t) row of the heads buffer. */
template <class T>
static __global__ void k_to_heads(const T *rows, size_t n, int nh, int hdv, T *dst, size_t ntot, size_t t0) {
    const int w = nh * hdv;
    for (size_t t = blockIdx.x; t < n; t += gridDim.x)
        for (int c = threadIdx.x; c < w; c += blockDim.x) {
            const int h = c / hdv, e = c - h * hdv;
            dst[((size_t)h * ntot + t0 + t) * hdv + e] = rows[t * (size_t)w + c];
        }
}

template <class T>
static __global__ void k_from_heads(const T *src, size_t ntot, size_t t0, size_t n, int nh, int hdv, T *rows) {
    const int w = nh * hdv;
    for (size_t t = blockIdx.x; t < n; t += gridDim.x)
        for (int c = threadIdx.x; c < w; c += blockDim.x) {
            const int h = c / hdv, e = c - h * hdv;
            rows[t * (size_t)w + c] = src[((size_t)h * ntot + t0 + t) * hdv + e];
        }
}

static void cuda_to_heads(cd_ctx *ctx, const float *rows, size_t n, int nh, int hd, float *dst, size_t ntot,
                          size_t t0) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0 || nh <= 0 || hd <= 0) return;
    const unsigned g = grid_rows(cu, n);
    if (hd % 4 == 0 && aligned(rows, 16) && aligned(dst, 16))
        k_to_heads<float4><<<g, BLOCK, 0, cu->stream>>>((const float4 *)rows, n, nh, hd / 4, (float4 *)dst, ntot, t0);
    else
        k_to_heads<float><<<g, BLOCK, 0, cu->stream>>>(rows, n, nh, hd, dst, ntot, t0);
    cd_cuda_launch_ok(cu);
}

static void cuda_from_heads(cd_ctx *ctx, const float *src, size_t ntot, size_t t0, size_t n, int nh, int hd,
                            float *rows) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0 || nh <= 0 || hd <= 0) return;
    const unsigned g = grid_rows(cu, n);
    if (hd % 4 == 0 && aligned(src, 16) && aligned(rows, 16))
        k_from_heads<float4><<<g, BLOCK, 0, cu->stream>>>((const float4 *)src, ntot, t0, n, nh, hd / 4, (float4 *)rows);
    else
        k_from_heads<float><<<g, BLOCK, 0, cu->stream>>>(src, ntot, t0, n, nh, hd, rows);
    cd_cuda_launch_ok(cu);
}

/* RoPE: x [n, NH, HD] in place, pair i of every head of token t rotated by cs [t, i] = (cos, sin);
 * one block per token, a thread per pair. vec2: HD even and x, cs 8-byte aligned, so that every
 * pair (at an even float offset in both) moves as one float2. */
static __global__ void k_rope(float *x, size_t n, int nh, int hd, const float *cs, int vec2) {
    const int hp = hd / 2, w = nh * hp; /* pairs per head, per token */
    for (size_t t = blockIdx.x; t < n; t += gridDim.x) {
        float *xt = x + t * (size_t)nh * hd;
        const float *ct = cs + t * (size_t)hd; /* as the reference: hd floats per token */
        for (int p = threadIdx.x; p < w; p += blockDim.x) {
            const int h = p / hp, i = p - h * hp;
            float *v = xt + (size_t)h * hd + 2 * i;
            float x0, x1, c, s;
            if (vec2) {
                const float2 a = *(const float2 *)v, b = *(const float2 *)(ct + 2 * i);
                x0 = a.x, x1 = a.y, c = b.x, s = b.y;
            } else {
                x0 = v[0], x1 = v[1], c = ct[2 * i], s = ct[2 * i + 1];
            }
            const float y0 = c * x0 - s * x1, y1 = s * x0 + c * x1;
            if (vec2) {
                *(float2 *)v = make_float2(y0, y1);
            } else {
                v[0] = y0;
                v[1] = y1;
            }
        }
    }
}

static void cuda_rope(cd_ctx *ctx, float *x, size_t n, int nh, int hd, const float *cs) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || n == 0 || nh <= 0 || hd < 2) return;
    const int vec2 = hd % 2 == 0 && aligned(x, 8) && aligned(cs, 8);
    k_rope<<<grid_rows(cu, n), BLOCK, 0, cu->stream>>>(x, n, nh, hd, cs, vec2);
    cd_cuda_launch_ok(cu);
}

/* ---- the table ------------------------------------------------------------------------------ */

static cd_status cuda_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                                const float *v, const float *sw, float *o, float *lse) {
    (void)self;
    return cd_cuda_attention(ctx, d, q, k, v, sw, o, lse);
}

/* What the GPU kernels take: linear weights in BF16 (the tensor-core GEMM's input type; a model
 * converts other dtypes when it copies its weights here), attention for the head dims the
 * kernels are built for. */
static cd_status cuda_supports(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d) {
    (void)self;
    if (d->op == CD_OP_LINEAR && d->wdtype != CD_DTYPE_BF16 && d->wdtype != CD_DTYPE_F32)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "cuda: linear weights must be BF16 or F32 on the GPU, not %s",
                            cd_dtype_name(d->wdtype));
    if (d->op == CD_OP_ATTENTION && (!d->attn || !cd_cuda_attention_supports(d->attn->head_dim)))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "the CUDA attention kernels are built for head_dim 32, 64 and 128; this call has %d",
                            d->attn ? d->attn->head_dim : 0);
    if (d->op == CD_OP_MUL || d->op == CD_OP_SCALE || d->op == CD_OP_QUICK_GELU || d->op == CD_OP_ATTENTION_BIAS)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "cuda: the text encoders' ops (mul, scale, quick_gelu, attention_bias) are not on the "
                            "GPU yet: encode on the CPU");
    if (d->op < 0 || d->op >= CD_OP_COUNT)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "cuda: unknown op %d", (int)d->op);
    return CD_OK;
}

/* Device scratch: the linear's bf16 copy of its input, attention's bf16 q/k/v and extra keys. */
static size_t cuda_workspace(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d) {
    (void)self;
    (void)ctx;
    if (d->op == CD_OP_LINEAR) return cd_cuda_linear_scratch(d->n, d->in);
    if (d->op == CD_OP_ATTENTION && d->attn) return cd_cuda_attention_scratch(d->attn);
    if (d->op == CD_OP_CONV2D && d->conv) return cd_cuda_conv2d_workspace_bytes(d->conv);
    return 0;
}

static cd_status cuda_reserve(cd_ctx *ctx, size_t bytes) { return cd_cuda_scratch(ctx, bytes) ? CD_OK : CD_ERR_OOM; }

/* Filled member by member (C++17 has no designated initializers), so a member added to struct
 * cd_ops is either set here or NULL, never shifted into the wrong slot. */
static cd_ops make_table(void) {
    cd_ops t;
    memset(&t, 0, sizeof t);
    t.name = "cuda";
    t.linear = cd_cuda_linear_op;
    t.ln_modulate = cuda_ln_modulate;
    t.rmsnorm_heads = cuda_rmsnorm_heads;
    t.gate_add = cuda_gate_add;
    t.gelu_tanh = cuda_gelu_tanh;
    t.silu = cuda_silu;
    t.rope = cuda_rope;
    t.to_heads = cuda_to_heads;
    t.from_heads = cuda_from_heads;
    t.attention = cuda_attention;
    t.supports = cuda_supports;
    t.workspace = cuda_workspace;
    t.reserve = cuda_reserve;
    t.time_attention = cd_cuda_time_attention;
    t.host_memory = 0;
    t.alloc = cd_cuda_alloc;
    t.free = cd_cuda_free;
    t.upload = cd_cuda_h2d;
    t.download = cd_cuda_d2h;
    t.sync = cd_cuda_sync;
    t.add = cuda_add;
    t.copy_rows = cuda_copy_rows;
    t.conv2d = cd_cuda_conv2d; /* conv_cuda.cu */
    t.group_norm = cd_cuda_group_norm;
    t.transpose = cd_cuda_transpose;
    return t;
}

extern "C" const cd_ops *cd_ops_cuda(void) {
    static const cd_ops k_cuda = make_table(); /* thread-safe one-time initialization */
    return &k_cuda;
}
