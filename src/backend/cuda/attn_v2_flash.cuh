/* attn_v2_flash.cuh — the shipped attention kernel (kernel lab version 2): FlashAttention-2
 * structure on bf16 tensor cores, dense rows and CLEAR image tiles in one kernel. attn_cuda.cu
 * ships it with the PIPE path at the tile shapes that won on the H200 (2x32 below r = 24, 4x16
 * from r = 24); the kernel lab (lab/attention/) also builds its other tile shapes and the plain
 * path. lab/attention/NOTES.md has the design notes and the numbers; the key schedule, the chunk
 * loads and the PTX wrappers are in attn_flash_common.cuh, shared with the lab's versions.
 *
 * CTA = NW warps, NW = QR*QC/16, each warp owns 16 query rows (one m16 MMA tile), BM = 16*NW
 * queries. Grid (p.n_dense_tiles + image tiles, heads). A CTA either
 *   - is a dense tile: queries [tile*BM, tile*BM + BM) below q_dense_end, over all N keys of k/v;
 *   - or an image tile: the QR x QC grid block at (img_row0 + ty*QR, tx*QC) (query rows below
 *     img_row1 only; dense rows see the keys [dense_key0, N): attn_kparams.cuh's options); query i of the tile sits at
 *     (y0 + i / QC, x0 + i % QC); QC is a multiple of 16, so warp w owns 16 consecutive columns of
 *     one tile row. Its keys, in order: the E extra keys of ek/ev (text, then pooled) in chunks of
 *     64, then for every key row ky in [y0-(r-1), y1+(r-1)] clipped to the grid, the union of the
 *     tile's discs on that row, the contiguous columns [x0 - hw, x1 + hw] clipped to the grid,
 *     hw = halfwidth(r, distance from ky to the tile's rows), in chunks of up to 64 keys.
 *
 * Per key chunk (n <= 64 keys, zero-filled up to the next multiple of 16 in shared memory):
 *   S = Q K^T with mma.m16n8k16 (Q fragments held in registers for the whole CTA, K fragments by
 *   ldmatrix), mask, online softmax in base 2 (scale*log2 e folded into the scores, ex2.approx),
 *   P rounded to bf16 and reused from the S accumulators as the A operand, O += P V with V
 *   fragments by ldmatrix.trans.
 * Work skipping: a warp computes only the 16-key blocks of the chunk that can hold a key allowed
 * to one of its 16 queries (for an image row chunk: the columns within hw(dy) of its 16 columns,
 * dy = its row's distance to ky); a warp with no such block skips the chunk (it still takes part
 * in the loads and barriers). Mask per element: key column c of the chunk is allowed to the
 * thread's query row iff lo <= c <= hi, where [lo, hi] is that query's allowed run clipped to the
 * chunk and to the warp's computed blocks (|qx - kx| <= hw(qy - ky): exact, int32 only).
 *
 * Pipeline: shared memory [K0 | V0 | K1 | V1], each 64 x (HD+8) bf16 (the +8 pad makes every
 * ldmatrix phase conflict-free); chunk i+1 is fetched with cp.async (16 B, .cg, zero-fill) into
 * the other buffer while chunk i is computed. The Q tile (BM <= 128 rows) is staged in [K1 | V1]
 * before the loop, moved to registers, and the buffer is released by a barrier before the first
 * prefetch writes it. Smem: 4 * 64 * (HD+8) * 2 B = 20 KB (HD 32), 36 KB (64), 68 KB (128).
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 .bf16, g = lane>>2, t = lane&3):
 *   A (16x16, row): reg0 (g, 2t..2t+1), reg1 (g+8, 2t..), reg2 (g, 2t+8..), reg3 (g+8, 2t+8..)
 *   B (16x8, col):  reg0 (k 2t..2t+1, n g), reg1 (k 2t+8..2t+9, n g)
 *   C (16x8 f32):   c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
 *   ldmatrix.x4: lanes 8i..8i+7 give the row addresses of matrix i, register i receives matrix i;
 *   lane gets row g, columns 2t..2t+1 (with .trans: rows 2t..2t+1 of column g). */
#ifndef CD_ATTN_V2_FLASH_CUH
#define CD_ATTN_V2_FLASH_CUH

#include "attn_flash_common.cuh" /* BN, PTX wrappers, Chunk, ChunkIter, load_chunk, Tile, stage_q */

namespace cd_flash {

template <int HD, int QR, int QC> struct Cfg {
    static constexpr int NW = QR * QC / 16;
    static constexpr int NT = NW * 32;
    static constexpr int BM = QR * QC;
    static constexpr int LD = HD + 8;
    static constexpr int TILE = BN * LD; /* elements of one K or V buffer */
    static constexpr size_t SMEM = (size_t)4 * TILE * sizeof(uint16_t);
    static_assert(HD % 16 == 0 && HD >= 32 && HD <= 128, "head_dim 32..128, multiple of 16");
    static_assert(QC % 16 == 0, "a warp owns 16 columns of one tile row");
    static_assert(BM % 16 == 0 && NW >= 1 && NW <= 8, "1..8 warps");
    static_assert(BM <= 2 * BN, "the Q tile is staged in the K1|V1 buffers");
};

/* PIPE (variants "flash2p_*"): a chunk whose 64 keys all count for the warp (dense rows, the text
 * and pooled keys, interior disc runs) takes a path without per-block conditions in which every
 * shared-memory fragment of the next step is requested before the MMAs of the current one
 * (register double buffering), so ldmatrix latency overlaps tensor-core work; the sums are the
 * same in the same order as the general path. */
template <int HD, int QR, int QC, bool PIPE = false>
__global__ void __launch_bounds__(Cfg<HD, QR, QC>::NT) cd_attn_flash_kernel(const cd_attn_kparams p) {
    using C = Cfg<HD, QR, QC>;
    constexpr int LD = C::LD, NT = C::NT;
    constexpr int KSTEPS = HD / 16; /* k16 steps of Q K^T; also 16-wide column pairs of O */
    constexpr int ONT = HD / 8;     /* n8 tiles of O */

    extern __shared__ __align__(128) uint16_t smem[];
    uint16_t *const sK0 = smem, *const sV0 = smem + C::TILE;
    uint16_t *const sK1 = smem + 2 * C::TILE, *const sV1 = smem + 3 * C::TILE;
    uint16_t *const sQ = sK1; /* BM x LD, within K1|V1 */

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int head = blockIdx.y;
    const size_t hoff = (size_t)head * (size_t)p.N * HD;
    const uint16_t *const qh = p.q + hoff;
    const Tile<QR, QC> tile(p); /* dense tile from q0, or image block at (y0, x0) */
    const bool dense_tile = tile.dense;
    const long long q0 = tile.q0;
    const int y0 = tile.y0, x0 = tile.x0;

    /* ---- this warp's queries ---- */
    /* image tile: tile row wrow, columns [wx0, wx0 + 16); the thread's rows g, g+8 are the
     * columns wx0 + g, wx0 + g + 8 */
    const int wy = y0 + (16 * warp) / QC;
    const int wx0 = x0 + (16 * warp) % QC;
    const int wx1 = min(wx0 + 15, p.W - 1);
    const bool warp_valid = dense_tile ? (q0 + 16 * warp < p.q_dense_end) : (wy < p.img_row1 && wx0 < p.W);

    /* ---- key schedule ---- */
    ChunkIter<HD> it;
    it.start(p, head, hoff, dense_tile, y0, x0, QR, QC);

    /* ---- prologue: Q tile and chunk 0 ---- */
    stage_q<HD, QR, QC, NT>(tile, p, qh, sQ, tid);
    Chunk cur;
    bool has = it.next(cur);
    if (has) load_chunk<HD, NT>(cur, sK0, sV0, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    uint32_t qf[KSTEPS][4];
#pragma unroll
    for (int kk = 0; kk < KSTEPS; kk++) {
        const int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int col = kk * 16 + (lane >> 4) * 8;
        ldsm_x4(qf[kk], smem_addr(sQ + row * LD + col));
    }
    __syncthreads(); /* sQ (= K1|V1) is free from here on */

    float o[ONT][4];
#pragma unroll
    for (int d = 0; d < ONT; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    /* per-lane ldmatrix offsets (elements) inside a K or V buffer */
    const int k_lane_off = ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8;
    const int v_lane_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;

    int buf = 0;
    while (has) {
        Chunk nxt;
        const bool has_nxt = it.next(nxt);
        if (has_nxt) load_chunk<HD, NT>(nxt, buf ? sK0 : sK1, buf ? sV0 : sV1, tid);
        cp_async_commit();
        cp_async_wait<1>(); /* this thread's copies of `cur` have landed */
        __syncthreads();    /* ... and everyone's */

        const uint16_t *sK = buf ? sK1 : sK0, *sV = buf ? sV1 : sV0;

        /* which 16-key blocks [kb_lo, kb_hi] this warp computes, and each thread row's allowed
         * key columns [lo, hi] within the chunk */
        int kb_lo = 0, kb_hi = -1;
        int lo[2] = {0, 0}, hi[2] = {-1, -1};
        if (warp_valid) {
            if (!cur.img) {
                kb_hi = (cur.n - 1) >> 4;
                hi[0] = hi[1] = cur.n - 1;
            } else {
                const int hw = cd_dev_disc_halfwidth(p.r, (long long)wy - cur.ky);
                if (hw >= 0) {
                    const int wlo = max(wx0 - hw - cur.kx0, 0);
                    const int whi = min(wx1 + hw - cur.kx0, cur.n - 1);
                    if (wlo <= whi) {
                        kb_lo = wlo >> 4;
                        kb_hi = whi >> 4;
                        const int blo = kb_lo * 16, bhi = kb_hi * 16 + 15;
#pragma unroll
                        for (int ri = 0; ri < 2; ri++) {
                            const int rel = wx0 + g + 8 * ri - cur.kx0; /* query column - kx0 */
                            lo[ri] = max(rel - hw, blo);
                            hi[ri] = min(min(rel + hw, cur.n - 1), bhi);
                        }
                    }
                }
            }
        }

        if (kb_lo <= kb_hi) { /* warp-uniform */
            /* ---- S = Q K^T over the computed blocks ---- */
            float s[8][4];
#pragma unroll
            for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            const uint32_t kbase = smem_addr(sK + k_lane_off);
            const bool full = PIPE && kb_lo == 0 && kb_hi == 3; /* warp-uniform */
            if (full) {
                uint32_t kf[2][4][4]; /* [step parity][16-key block][fragment] */
#pragma unroll
                for (int jb = 0; jb < 4; jb++) ldsm_x4(kf[0][jb], kbase + (uint32_t)((jb * 16 * LD) * 2));
#pragma unroll
                for (int kk = 0; kk < KSTEPS; kk++) {
                    if (kk + 1 < KSTEPS) {
#pragma unroll
                        for (int jb = 0; jb < 4; jb++)
                            ldsm_x4(kf[(kk + 1) & 1][jb], kbase + (uint32_t)((jb * 16 * LD + (kk + 1) * 16) * 2));
                    }
#pragma unroll
                    for (int jb = 0; jb < 4; jb++) {
                        mma_bf16_nv(s[2 * jb], qf[kk], kf[kk & 1][jb][0], kf[kk & 1][jb][1]);
                        mma_bf16_nv(s[2 * jb + 1], qf[kk], kf[kk & 1][jb][2], kf[kk & 1][jb][3]);
                    }
                }
            } else
#pragma unroll
                for (int kk = 0; kk < KSTEPS; kk++) {
#pragma unroll
                    for (int jb = 0; jb < 4; jb++) {
                        if (jb >= kb_lo && jb <= kb_hi) {
                            uint32_t b[4]; /* keys jb*16 + {0..7 | 8..15} x hd kk*16 + {0..7 | 8..15} */
                            ldsm_x4(b, kbase + (uint32_t)((jb * 16 * LD + kk * 16) * 2));
                            mma_bf16(s[2 * jb], qf[kk], b[0], b[1]);
                            mma_bf16(s[2 * jb + 1], qf[kk], b[2], b[3]);
                        }
                    }
                }

            /* ---- mask, row max (base-2 units) ---- */
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int c = j * 8 + 2 * t4 + (e & 1), ri = e >> 1;
                    const float v = (c >= lo[ri] && c <= hi[ri]) ? s[j][e] * p.scale_log2 : -INFINITY;
                    s[j][e] = v;
                    mx[ri] = fmaxf(mx[ri], v);
                }
#pragma unroll
            for (int ri = 0; ri < 2; ri++) { /* the 4 lanes of a quad share a row */
                mx[ri] = fmaxf(mx[ri], __shfl_xor_sync(0xffffffffu, mx[ri], 1));
                mx[ri] = fmaxf(mx[ri], __shfl_xor_sync(0xffffffffu, mx[ri], 2));
            }

            /* ---- online softmax ---- */
            float mref[2];
#pragma unroll
            for (int ri = 0; ri < 2; ri++) {
                const float mnew = fmaxf(m[ri], mx[ri]);
                mref[ri] = mnew == -INFINITY ? 0.0f : mnew; /* no key yet: avoid -inf - -inf */
                const float alpha = ex2(m[ri] - mref[ri]);  /* m = -inf -> 0 */
                m[ri] = mnew;
                l[ri] *= alpha;
#pragma unroll
                for (int d = 0; d < ONT; d++) {
                    o[d][2 * ri] *= alpha;
                    o[d][2 * ri + 1] *= alpha;
                }
            }
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float pv = ex2(s[j][e] - mref[e >> 1]); /* masked: 2^-inf = 0 */
                    s[j][e] = pv;
                    l[e >> 1] += pv;
                }

            /* ---- O += P V ---- */
            const uint32_t vbase = smem_addr(sV + v_lane_off);
            if (full) {
                uint32_t a[4][4], vf[2][4][4]; /* P of the 4 key blocks; V [parity][block][fragment] */
#pragma unroll
                for (int kb = 0; kb < 4; kb++) {
                    a[kb][0] = pack_bf16(s[2 * kb][0], s[2 * kb][1]);
                    a[kb][1] = pack_bf16(s[2 * kb][2], s[2 * kb][3]);
                    a[kb][2] = pack_bf16(s[2 * kb + 1][0], s[2 * kb + 1][1]);
                    a[kb][3] = pack_bf16(s[2 * kb + 1][2], s[2 * kb + 1][3]);
                }
#pragma unroll
                for (int kb = 0; kb < 4; kb++) ldsm_x4_trans(vf[0][kb], vbase + (uint32_t)((kb * 16 * LD) * 2));
#pragma unroll
                for (int dp = 0; dp < KSTEPS; dp++) {
                    if (dp + 1 < KSTEPS) {
#pragma unroll
                        for (int kb = 0; kb < 4; kb++)
                            ldsm_x4_trans(vf[(dp + 1) & 1][kb], vbase + (uint32_t)((kb * 16 * LD + (dp + 1) * 16) * 2));
                    }
#pragma unroll
                    for (int kb = 0; kb < 4; kb++) { /* per accumulator, blocks in the general path's order */
                        mma_bf16_nv(o[2 * dp], a[kb], vf[dp & 1][kb][0], vf[dp & 1][kb][1]);
                        mma_bf16_nv(o[2 * dp + 1], a[kb], vf[dp & 1][kb][2], vf[dp & 1][kb][3]);
                    }
                }
            } else
#pragma unroll
                for (int kb = 0; kb < 4; kb++) {
                    if (kb >= kb_lo && kb <= kb_hi) {
                        uint32_t a[4];
                        a[0] = pack_bf16(s[2 * kb][0], s[2 * kb][1]);
                        a[1] = pack_bf16(s[2 * kb][2], s[2 * kb][3]);
                        a[2] = pack_bf16(s[2 * kb + 1][0], s[2 * kb + 1][1]);
                        a[3] = pack_bf16(s[2 * kb + 1][2], s[2 * kb + 1][3]);
#pragma unroll
                        for (int dp = 0; dp < KSTEPS; dp++) {
                            uint32_t b[4]; /* keys kb*16 + {0..7 | 8..15} x hd dp*16 + {0..7 | 8..15} */
                            ldsm_x4_trans(b, vbase + (uint32_t)((kb * 16 * LD + dp * 16) * 2));
                            mma_bf16(o[2 * dp], a, b[0], b[1]);
                            mma_bf16(o[2 * dp + 1], a, b[2], b[3]);
                        }
                    }
                }
        }

        __syncthreads(); /* everyone is done with `buf` before it is refilled */
        cur = nxt;
        has = has_nxt;
        buf ^= 1;
    }
    cp_async_wait<0>(); /* nothing is pending (the last group is empty); for form's sake */

    /* ---- epilogue: normalise, store rows that exist ---- */
#pragma unroll
    for (int ri = 0; ri < 2; ri++) {
        l[ri] += __shfl_xor_sync(0xffffffffu, l[ri], 1);
        l[ri] += __shfl_xor_sync(0xffffffffu, l[ri], 2);
    }
#pragma unroll
    for (int ri = 0; ri < 2; ri++) {
        const long long qi = tile.qindex(p, warp * 16 + g + 8 * ri);
        if (qi < 0) continue;
        const float inv = l[ri] > 0.0f ? 1.0f / l[ri] : 0.0f;
        float *orow = p.o + hoff + (size_t)qi * HD + 2 * t4;
#pragma unroll
        for (int d = 0; d < ONT; d++)
            *reinterpret_cast<float2 *>(orow + d * 8) = make_float2(o[d][2 * ri] * inv, o[d][2 * ri + 1] * inv);
        if (p.lse && t4 == 0)
            p.lse[(size_t)head * (size_t)p.N + (size_t)qi] =
                l[ri] > 0.0f ? (m[ri] + log2f(l[ri])) * 0.6931471805599453f : -INFINITY;
    }
}

} /* namespace cd_flash */

#endif
