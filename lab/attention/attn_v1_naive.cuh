/* attn_v1_naive.cuh — kernel lab version 1 (variant 1, lab only): the obviously correct GPU
 * attention.
 *
 * One warp per query, f32 math on the bf16 inputs, one online softmax over every allowed key in
 * natural-log units (expf, logf). Lane j holds channels j, j+32, ... of q and of the accumulator;
 * a score is a warp sum (butterfly, so every lane holds the same value and every branch below is
 * warp-uniform). The mask is written as the definition (docs/clear.md), not with half-widths:
 *   - dense (r == 0) and text queries: all N keys of k/v (text queries never see pooled keys);
 *   - image query (qy, qx): the E extra keys (text, then pooled) of ek/ev, then every image key
 *     (ky, kx) of the bounding square |ky-qy| <= r-1, |kx-qx| <= r-1 with dy^2 + dx^2 < r^2
 *     computed in int64.
 * Options (attn_kparams.cuh): dense rows below q_dense_end only, over keys [dense_key0, N); image
 * queries of the rows [img_row0, img_row1) only; other queries are not written.
 * It is slow (no data reuse between queries) and exists to validate everything else: the flash
 * kernels, the bf16 conversions and the pooled keys of cd_cuda_attention. */
#ifndef CD_ATTN_V1_NAIVE_CUH
#define CD_ATTN_V1_NAIVE_CUH

#include "../../src/backend/cuda/attn_kparams.cuh"

#define CD_NAIVE_WARPS 8 /* queries (warps) per block */

template <int HD> __global__ void __launch_bounds__(CD_NAIVE_WARPS * 32) cd_attn_naive_kernel(const cd_attn_kparams p) {
    static_assert(HD % 32 == 0, "naive kernel: head_dim must be a multiple of 32");
    constexpr int PER = HD / 32;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long qi = (long long)blockIdx.x * CD_NAIVE_WARPS + warp; /* joint query index */
    if (qi >= p.N) return; /* whole warp; no block-level synchronisation below */
    const int head = blockIdx.y;
    const size_t hoff = (size_t)head * (size_t)p.N * HD;
    const uint16_t *kh = p.k + hoff, *vh = p.v + hoff;

    float qv[PER], acc[PER];
#pragma unroll
    for (int i = 0; i < PER; i++) {
        qv[i] = cd_dev_bf16_to_f32(p.q[hoff + (size_t)qi * HD + lane + 32 * i]);
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;

    /* one key: s = scale * q.k; (m, l, acc) <- online softmax update */
    auto visit = [&](const uint16_t *kr, const uint16_t *vr) {
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < PER; i++) d = fmaf(qv[i], cd_dev_bf16_to_f32(kr[lane + 32 * i]), d);
#pragma unroll
        for (int off = 16; off >= 1; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
        const float s = d * p.scale;
        const float mn = fmaxf(m, s);    /* finite: s is */
        const float corr = expf(m - mn); /* m = -inf -> 0 */
        const float pw = expf(s - mn);
        l = l * corr + pw;
#pragma unroll
        for (int i = 0; i < PER; i++) acc[i] = fmaf(acc[i], corr, pw * cd_dev_bf16_to_f32(vr[lane + 32 * i]));
        m = mn;
    };

    if (p.r == 0 || qi < p.T) {
        if (qi >= p.q_dense_end) return; /* text rows not asked for (whole warp) */
        for (long long j = p.dense_key0; j < p.N; j++) visit(kh + (size_t)j * HD, vh + (size_t)j * HD);
    } else {
        if ((qi - p.T) / p.W < p.img_row0 || (qi - p.T) / p.W >= p.img_row1) return; /* likewise */
        const uint16_t *ekh = p.ek + (size_t)head * (size_t)p.ek_hstride;
        const uint16_t *evh = p.ev + (size_t)head * (size_t)p.ek_hstride;
        for (long long e = 0; e < p.E; e++) visit(ekh + (size_t)e * HD, evh + (size_t)e * HD);
        const long long pi = qi - p.T, qy = pi / p.W, qx = pi % p.W;
        const long long r = p.r, r2 = r * r;
        const long long ylo = qy - (r - 1) < 0 ? 0 : qy - (r - 1);
        const long long yhi = qy + (r - 1) > p.H - 1 ? p.H - 1 : qy + (r - 1);
        const long long xlo = qx - (r - 1) < 0 ? 0 : qx - (r - 1);
        const long long xhi = qx + (r - 1) > p.W - 1 ? p.W - 1 : qx + (r - 1);
        for (long long ky = ylo; ky <= yhi; ky++)
            for (long long kx = xlo; kx <= xhi; kx++) {
                const long long dy = qy - ky, dx = qx - kx;
                if (dy * dy + dx * dx < r2) {
                    const size_t j = (size_t)p.T + (size_t)ky * (size_t)p.W + (size_t)kx;
                    visit(kh + j * HD, vh + j * HD);
                }
            }
    }

    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float *orow = p.o + hoff + (size_t)qi * HD;
#pragma unroll
    for (int i = 0; i < PER; i++) orow[lane + 32 * i] = acc[i] * inv;
    if (p.lse && lane == 0) p.lse[(size_t)head * (size_t)p.N + (size_t)qi] = m + logf(l);
}

#endif
