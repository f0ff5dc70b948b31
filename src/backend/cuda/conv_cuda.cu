/* conv_cuda.cu — the autoencoder's ops on the GPU (ops.h: conv2d, group_norm, transpose), f32 on
 * device buffers queued on the context's stream. Plain, correct kernels (measured speed is for
 * later; the reference is ops_ref.c, the check tests/test_ops_harness.c on a lent GPU):
 *   conv2d: direct, one thread per output element (co, oy, ox), f32 accumulation over
 *     cin x k x k taps of the (upsampled, padded) input read through the index map, no scratch;
 *   group_norm: one block per group: double sums of x and x^2, then the affine (+ SiLU) in f32;
 *   transpose: 32 x 32 tiles through shared memory.
 * Launch errors are recorded in cu->sticky and reported at the next sync (as ops_cuda.cu). */
#include "cuda_internal.h"

#include <stdint.h>

#define TPB 256

static struct cd_cuda *need(cd_ctx *ctx) {
    if (ctx && ctx->dev_state) return cd_cuda_of(ctx);
    cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda: not initialized");
    return NULL;
}

static unsigned blocks_for(const struct cd_cuda *cu, size_t threads) {
    size_t b = (threads + TPB - 1) / TPB;
    const size_t cap = (size_t)cu->prop.multiProcessorCount * 16;
    if (b > cap) b = cap;
    return b < 1 ? 1u : (unsigned)b;
}

/* ---- conv2d --------------------------------------------------------------------------------- */

static __global__ void k_conv2d(cd_conv_desc d, int Ho, int Wo, const float *__restrict__ x,
                                const float *__restrict__ w, const float *__restrict__ b, int acc,
                                float *__restrict__ y) {
    const int up = d.up != 0, Hu = d.H << up, Wu = d.W << up, k = d.k;
    const size_t total = (size_t)d.cout * Ho * Wo;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int ox = (int)(i % Wo), oy = (int)(i / Wo % Ho), co = (int)(i / ((size_t)Wo * Ho));
        float s = 0.0f;
        const float *wc = w + (size_t)co * d.cin * k * k;
        for (int ci = 0; ci < d.cin; ci++) {
            const float *xc = x + (size_t)ci * d.H * d.W;
            for (int ky = 0; ky < k; ky++) {
                const int iy = oy * d.stride + ky - d.pad[2];
                if (iy < 0 || iy >= Hu) continue;
                const float *xr = xc + (size_t)(iy >> up) * d.W;
                const float *wr = wc + ((size_t)ci * k + ky) * k;
                for (int kx = 0; kx < k; kx++) {
                    const int ix = ox * d.stride + kx - d.pad[0];
                    if (ix >= 0 && ix < Wu) s = fmaf(wr[kx], xr[ix >> up], s);
                }
            }
        }
        if (b) s += b[co];
        y[i] = acc ? y[i] + s : s;
    }
}

/* The ops table's conv2d (ops_cuda.cu declares it; C++ linkage, as cd_cuda_linear_op). */
cd_status cd_cuda_conv2d(cd_ctx *ctx, const cd_conv_desc *d, const float *x, const float *w, const float *b, int acc,
                         float *y) {
    struct cd_cuda *cu = need(ctx);
    if (!cu) return CD_ERR_INVALID_ARG;
    const int Ho = cd_conv_out_h(d), Wo = cd_conv_out_w(d);
    if (Ho < 1 || Wo < 1 || d->cin < 1 || d->cout < 1) return CD_OK;
    const size_t total = (size_t)d->cout * Ho * Wo;
    k_conv2d<<<blocks_for(cu, total), TPB, 0, cu->stream>>>(*d, Ho, Wo, x, w, b, acc, y);
    if (!cd_cuda_launch_ok(cu))
        return cd_set_error(ctx, CD_ERR_INTERNAL, "cuda conv2d: launch failed: %s", cudaGetErrorString(cu->sticky));
    return CD_OK;
}

/* Device scratch bytes cd_cuda_conv2d needs for d: none (the direct kernel reads x in place). */
extern "C" size_t cd_cuda_conv2d_workspace_bytes(const cd_conv_desc *d) {
    (void)d;
    return 0;
}

/* ---- group_norm ----------------------------------------------------------------------------- */

static __device__ double block_sum_d(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One block per group g: channels [g cg, (g + 1) cg) of x [C, n]. y may equal x: every element is
 * read for the sums before the barrier inside the second block_sum_d, and then only by the thread
 * that writes it. */
static __global__ void k_group_norm(const float *x, int cg, size_t n, const float *w, const float *b, float eps,
                                    int silu, float *y) {
    __shared__ double sh[32];
    const size_t m = (size_t)cg * n, off = (size_t)blockIdx.x * m;
    double s = 0, s2 = 0;
    for (size_t i = threadIdx.x; i < m; i += blockDim.x) {
        const double v = x[off + i];
        s += v;
        s2 += v * v;
    }
    s = block_sum_d(s, sh);
    s2 = block_sum_d(s2, sh);
    const double mean = s / (double)m, var = fmax(s2 / (double)m - mean * mean, 0.0);
    const float rstd = (float)(1.0 / sqrt(var + (double)eps)), fm = (float)mean;
    for (size_t i = threadIdx.x; i < m; i += blockDim.x) {
        const int c = blockIdx.x * cg + (int)(i / n);
        const float a = w[c] * rstd;
        float t = x[off + i] * a + (b[c] - fm * a);
        if (silu) t = t / (1.0f + expf(-t));
        y[off + i] = t;
    }
}

void cd_cuda_group_norm(cd_ctx *ctx, const float *x, int C, size_t n, int G, const float *w, const float *b, float eps,
                        int silu, float *y) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || C < 1 || G < 1 || n == 0) return;
    k_group_norm<<<(unsigned)G, 1024, 0, cu->stream>>>(x, C / G, n, w, b, eps, silu, y);
    cd_cuda_launch_ok(cu);
}

/* ---- transpose ------------------------------------------------------------------------------ */

/* y [cols, rows] = x [rows, cols]^T by 32 x 32 tiles; blocks of 32 x 8 threads, grid-stride over
 * tiles. */
static __global__ void k_transpose(const float *__restrict__ x, size_t rows, size_t cols, float *__restrict__ y) {
    __shared__ float t[32][33];
    const size_t tr = (rows + 31) / 32, tc = (cols + 31) / 32;
    for (size_t tile = blockIdx.x; tile < tr * tc; tile += gridDim.x) {
        const size_t r0 = tile / tc * 32, c0 = tile % tc * 32;
        __syncthreads();
        for (int j = threadIdx.y; j < 32; j += 8) {
            const size_t r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) t[j][threadIdx.x] = x[r * cols + c];
        }
        __syncthreads();
        for (int j = threadIdx.y; j < 32; j += 8) {
            const size_t c = c0 + j, r = r0 + threadIdx.x;
            if (r < rows && c < cols) y[c * rows + r] = t[threadIdx.x][j];
        }
    }
}

void cd_cuda_transpose(cd_ctx *ctx, const float *x, size_t rows, size_t cols, float *y) {
    struct cd_cuda *cu = need(ctx);
    if (!cu || rows == 0 || cols == 0) return;
    size_t tiles = ((rows + 31) / 32) * ((cols + 31) / 32);
    const size_t cap = (size_t)cu->prop.multiProcessorCount * 16;
    if (tiles > cap) tiles = cap;
    k_transpose<<<(unsigned)tiles, dim3(32, 8), 0, cu->stream>>>(x, rows, cols, y);
    cd_cuda_launch_ok(cu);
}
