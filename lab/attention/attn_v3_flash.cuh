/* attn_v3_flash.cuh — kernel lab version 3 (lab only, lost to v2 on the H200): v2
 * (src/backend/cuda/attn_v2_flash.cuh) with MT = 2 m16 tiles (32 query rows) per warp, so every K
 * fragment (ldmatrix, S = Q K^T) and every V fragment (ldmatrix.trans, O += P V) read from shared
 * memory feeds MT MMAs instead of one: half the shared-memory traffic per FLOP for K and V
 * (lab/attention/NOTES.md, "v3").
 *
 * Same semantics, parameters and key schedule as v2 (dense rows over all keys; CLEAR image tiles
 * streaming the E extra keys, then the per-row disc unions with exact per-element masks; lse;
 * poison-safe; no NaN for rows without keys). Differences:
 *   - CTA = NW = QR*QC/(16*MT) warps, BM = QR*QC queries. m-tile mi (0 .. BM/16-1) is the 16
 *     tile-consecutive queries 16*mi .. 16*mi+15 (row-major in the QR x QC image block; dense:
 *     consecutive queries); warp w owns m-tiles w*MT .. w*MT+MT-1: for QC = 32 one 32-wide row
 *     segment, for QC = 16 two rows of 16 columns, for dense 32 consecutive queries.
 *   - Work skipping per m-tile at 16-key granularity: m-tile j computes only its own blocks
 *     [kb_lo[j], kb_hi[j]] (v2's rule); a K/V fragment is read once if any m-tile needs it and
 *     feeds the MMAs of every m-tile that does. Mask, softmax and exp2 per m-tile on its blocks
 *     only.
 *   - Q: HD <= 64 keeps the Q fragments of its MT tiles in registers (MT*HD/4 regs); HD = 128
 *     re-reads them from shared memory (ldmatrix, once per chunk and k-step: O (128 f32) + S
 *     (64 f32) + Q (64) would not fit 255 registers). The Q tile has its own shared region.
 *   - Scores stay raw in the accumulators: row max on raw scores, p = 2^(s*c - m*c) as one FFMA
 *     + ex2 (c = scale*log2 e > 0); a full unmasked chunk (dense, n = BN) skips the mask code.
 *   - One __syncthreads per chunk: wait for chunk i, barrier (chunk i landed for everyone, and
 *     everyone is done with chunk i-1's buffer), prefetch chunk i+1 into that buffer, compute i.
 * Shared memory: [K0 | V0 | K1 | V1 | Q], 64 x (HD+8) bf16 per K/V buffer, BM x (HD+8) for Q. */
#ifndef CD_ATTN_V3_FLASH_CUH
#define CD_ATTN_V3_FLASH_CUH

#include "../../src/backend/cuda/attn_flash_common.cuh" /* v2's schedule, loads, PTX wrappers */

namespace cd_flash3 {

using cd_flash::BN;
using cd_flash::Chunk;
using cd_flash::ChunkIter;
using cd_flash::cp_async16;
using cd_flash::cp_async_commit;
using cd_flash::cp_async_wait;
using cd_flash::ex2;
using cd_flash::ldsm_x4;
using cd_flash::ldsm_x4_trans;
using cd_flash::load_chunk;
using cd_flash::mma_bf16;
using cd_flash::pack_bf16;
using cd_flash::smem_addr;
using cd_flash::stage_q;
using cd_flash::Tile;

template <int HD, int QR, int QC, int MT> struct Cfg {
    static constexpr int BM = QR * QC;
    static constexpr int NW = BM / (16 * MT);
    static constexpr int NT = NW * 32;
    static constexpr int LD = HD + 8;
    static constexpr int TILE = BN * LD;   /* elements of one K or V buffer */
    static constexpr bool QREG = HD <= 64; /* Q fragments in registers for the whole CTA */
    /* K0 V0 K1 V1 | Q | the key schedule's state | 3 chunk descriptors */
    static constexpr size_t SCHED = ((size_t)4 * TILE + (size_t)BM * LD) * sizeof(uint16_t);
    static constexpr size_t SMEM = SCHED + sizeof(ChunkIter<HD>) + 3 * sizeof(Chunk);
    static_assert(SCHED % 16 == 0 && sizeof(ChunkIter<HD>) % 8 == 0, "alignment");
    static_assert(HD % 16 == 0 && HD >= 32 && HD <= 128, "head_dim 32..128, multiple of 16");
    static_assert(QC % 16 == 0, "an m-tile is 16 columns of one tile row");
    static_assert(MT >= 1 && MT <= 4 && BM % (16 * MT) == 0, "whole m-tiles per warp");
    static_assert(NW >= 1 && NW <= 8, "1..8 warps");
};

template <int HD, int QR, int QC, int MT>
__global__ void __launch_bounds__(Cfg<HD, QR, QC, MT>::NT) cd_attn_flash3_kernel(const cd_attn_kparams p) {
    using C = Cfg<HD, QR, QC, MT>;
    constexpr int LD = C::LD, NT = C::NT;
    constexpr int KSTEPS = HD / 16; /* k16 steps of Q K^T; also 16-wide column pairs of O */
    constexpr int ONT = HD / 8;     /* n8 tiles of O */
    constexpr int NB = BN / 16;     /* 16-key blocks per chunk */
    constexpr bool QREG = C::QREG;

    extern __shared__ __align__(128) uint16_t smem[];
    uint16_t *const sK0 = smem, *const sV0 = smem + C::TILE;
    uint16_t *const sK1 = smem + 2 * C::TILE, *const sV1 = smem + 3 * C::TILE;
    uint16_t *const sQ = smem + 4 * C::TILE; /* BM x LD */

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int head = blockIdx.y;
    const size_t hoff = (size_t)head * (size_t)p.N * HD;
    const uint16_t *const qh = p.q + hoff;
    const Tile<QR, QC> tile(p); /* dense tile from q0, or image block at (y0, x0) */
    const bool dense_tile = tile.dense;
    const long long q0 = tile.q0;
    const int y0 = tile.y0, x0 = tile.x0;
    const float sl2 = p.scale_log2; /* > 0 */

    /* ---- key schedule (v2's ChunkIter), kept in shared memory and advanced by thread 0 only,
     * so its ~20 registers are not live across the compute: sCh[i % 3] describes chunk i (n = 0:
     * none). Thread 0 writes chunk i+2's descriptor during chunk i, after the barrier that ends
     * every read of chunk i-1's slot; the others read chunk i+1's after the next barrier. ---- */
    ChunkIter<HD> *const sIt = reinterpret_cast<ChunkIter<HD> *>(reinterpret_cast<unsigned char *>(smem) + C::SCHED);
    Chunk *const sCh = reinterpret_cast<Chunk *>(sIt + 1);
    if (tid == 0) {
        ChunkIter<HD> it;
        it.start(p, head, hoff, dense_tile, y0, x0, QR, QC);
#pragma unroll
        for (int c = 0; c < 2; c++) {
            Chunk ch;
            if (!it.next(ch)) ch.n = 0;
            sCh[c] = ch;
        }
        *sIt = it;
    } /* tid == 0 */

    /* ---- prologue: Q tile and chunk 0 ---- */
    stage_q<HD, QR, QC, NT>(tile, p, qh, sQ, tid);
    __syncthreads(); /* sCh[0], sCh[1] */
    {
        const Chunk c0 = sCh[0];
        if (c0.n) load_chunk<HD, NT>(c0, sK0, sV0, tid);
    }
    cp_async_commit();

    /* per-lane ldmatrix offsets (elements): Q/K (non-trans) and V (trans) */
    const int q_lane_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
    const int k_lane_off = ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8;
    const int v_lane_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
    const uint32_t qbase = smem_addr(sQ + warp * MT * 16 * LD + q_lane_off);

    uint32_t qreg[QREG ? MT : 1][QREG ? KSTEPS : 1][4];
    if constexpr (QREG) {
        cp_async_wait<0>();
        __syncthreads();
#pragma unroll
        for (int j = 0; j < MT; j++)
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) ldsm_x4(qreg[j][kk], qbase + (uint32_t)((j * 16 * LD + kk * 16) * 2));
    }

    float o[MT][ONT][4];
#pragma unroll
    for (int j = 0; j < MT; j++)
#pragma unroll
        for (int d = 0; d < ONT; d++) o[j][d][0] = o[j][d][1] = o[j][d][2] = o[j][d][3] = 0.0f;
    float m[MT][2], l[MT][2]; /* m: running max in base-2 units (score * sl2) */
#pragma unroll
    for (int j = 0; j < MT; j++) m[j][0] = m[j][1] = -INFINITY, l[j][0] = l[j][1] = 0.0f;

    int buf = 0, slot = 0;  /* slot = chunk index % 3 */
    while (sCh[slot].n) {   /* CTA-uniform */
        cp_async_wait<0>(); /* this thread's copies of chunk i have landed */
        __syncthreads();    /* ... everyone's; and everyone is done with the other buffer */
        const int slot1 = slot == 2 ? 0 : slot + 1, slot2 = slot1 == 2 ? 0 : slot1 + 1;
        {
            const Chunk nx = sCh[slot1];
            if (nx.n) load_chunk<HD, NT>(nx, buf ? sK0 : sK1, buf ? sV0 : sV1, tid);
        }
        cp_async_commit();
        if (tid == 0) {
            ChunkIter<HD> it = *sIt;
            Chunk ch;
            if (!it.next(ch)) ch.n = 0;
            sCh[slot2] = ch;
            *sIt = it;
        }
        struct {
            int n, img, ky, kx0;
        } cur;
        cur.n = sCh[slot].n;
        cur.img = sCh[slot].img;
        cur.ky = sCh[slot].ky;
        cur.kx0 = sCh[slot].kx0;

        const uint16_t *sK = buf ? sK1 : sK0, *sV = buf ? sV1 : sV0;

        /* per m-tile: computed blocks [kb_lo, kb_hi], thread rows' allowed columns [lo, hi] */
        int kb_lo[MT], kb_hi[MT], lo[MT][2], hi[MT][2];
        const bool full = !cur.img && cur.n == BN; /* CTA-uniform: no mask at all */
#pragma unroll
        for (int j = 0; j < MT; j++) {
            kb_lo[j] = 0;
            kb_hi[j] = -1;
            lo[j][0] = lo[j][1] = 0;
            hi[j][0] = hi[j][1] = -1;
            /* m-tile j: tile queries 16*mi + 0..15; image tile: row my, columns [mx0, mx0 + 16);
             * the thread's rows g, g+8 are the columns mx0 + g, mx0 + g + 8 */
            const int mi = warp * MT + j;
            const int my = y0 + (16 * mi) / QC, mx0 = x0 + (16 * mi) % QC;
            if (dense_tile ? (q0 + 16 * mi >= p.q_dense_end) : (my >= p.img_row1 || mx0 >= p.W)) continue;
            if (!cur.img) {
                kb_hi[j] = (cur.n - 1) >> 4;
                hi[j][0] = hi[j][1] = cur.n - 1;
            } else {
                const int hw = cd_dev_disc_halfwidth(p.r, (long long)my - cur.ky);
                if (hw >= 0) {
                    const int wlo = max(mx0 - hw - cur.kx0, 0);
                    const int whi = min(min(mx0 + 15, p.W - 1) + hw - cur.kx0, cur.n - 1);
                    if (wlo <= whi) {
                        kb_lo[j] = wlo >> 4;
                        kb_hi[j] = whi >> 4;
                        const int blo = kb_lo[j] * 16, bhi = kb_hi[j] * 16 + 15;
#pragma unroll
                        for (int ri = 0; ri < 2; ri++) {
                            const int rel = mx0 + g + 8 * ri - cur.kx0;
                            lo[j][ri] = max(rel - hw, blo);
                            hi[j][ri] = min(min(rel + hw, cur.n - 1), bhi);
                        }
                    }
                }
            }
        }
        int ulo = NB, uhi = -1; /* union of the m-tiles' blocks (warp-uniform) */
#pragma unroll
        for (int j = 0; j < MT; j++)
            if (kb_lo[j] <= kb_hi[j]) ulo = min(ulo, kb_lo[j]), uhi = max(uhi, kb_hi[j]);

        if (ulo <= uhi) { /* warp-uniform */
            /* ---- S = Q K^T: one K fragment per (k-step, block), MT MMAs pairs from it ---- */
            float s[MT][2 * NB][4];
#pragma unroll
            for (int j = 0; j < MT; j++)
#pragma unroll
                for (int n = 0; n < 2 * NB; n++) s[j][n][0] = s[j][n][1] = s[j][n][2] = s[j][n][3] = 0.0f;
            const uint32_t kbase = smem_addr(sK + k_lane_off);
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) {
                uint32_t qf[MT][4];
#pragma unroll
                for (int j = 0; j < MT; j++) {
                    if constexpr (QREG) {
#pragma unroll
                        for (int e = 0; e < 4; e++) qf[j][e] = qreg[j][kk][e];
                    } else {
                        if (kb_lo[j] <= kb_hi[j]) ldsm_x4(qf[j], qbase + (uint32_t)((j * 16 * LD + kk * 16) * 2));
                    }
                }
#pragma unroll
                for (int jb = 0; jb < NB; jb++) {
                    if (jb >= ulo && jb <= uhi) {
                        uint32_t b[4]; /* keys jb*16 + {0..7 | 8..15} x hd kk*16 + {0..7 | 8..15} */
                        ldsm_x4(b, kbase + (uint32_t)((jb * 16 * LD + kk * 16) * 2));
#pragma unroll
                        for (int j = 0; j < MT; j++)
                            if (jb >= kb_lo[j] && jb <= kb_hi[j]) {
                                mma_bf16(s[j][2 * jb], qf[j], b[0], b[1]);
                                mma_bf16(s[j][2 * jb + 1], qf[j], b[2], b[3]);
                            }
                    }
                }
            }

            /* ---- per m-tile: mask, row max, online softmax, P (in s) ---- */
#pragma unroll
            for (int j = 0; j < MT; j++) {
                if (kb_lo[j] > kb_hi[j]) continue; /* warp-uniform */
                float mx[2] = {-INFINITY, -INFINITY};
                if (full) {
#pragma unroll
                    for (int n = 0; n < 2 * NB; n++)
#pragma unroll
                        for (int e = 0; e < 4; e++) mx[e >> 1] = fmaxf(mx[e >> 1], s[j][n][e]);
                } else {
#pragma unroll
                    for (int jb = 0; jb < NB; jb++) {
                        if (jb < kb_lo[j] || jb > kb_hi[j]) continue;
#pragma unroll
                        for (int h = 0; h < 2; h++)
#pragma unroll
                            for (int e = 0; e < 4; e++) {
                                const int c = jb * 16 + h * 8 + 2 * t4 + (e & 1), ri = e >> 1;
                                const float v = (c >= lo[j][ri] && c <= hi[j][ri]) ? s[j][2 * jb + h][e] : -INFINITY;
                                s[j][2 * jb + h][e] = v;
                                mx[ri] = fmaxf(mx[ri], v);
                            }
                    }
                }
                float mref[2];
#pragma unroll
                for (int ri = 0; ri < 2; ri++) { /* the 4 lanes of a quad share a row */
                    mx[ri] = fmaxf(mx[ri], __shfl_xor_sync(0xffffffffu, mx[ri], 1));
                    mx[ri] = fmaxf(mx[ri], __shfl_xor_sync(0xffffffffu, mx[ri], 2));
                    const float mnew = fmaxf(m[j][ri], mx[ri] * sl2);
                    mref[ri] = mnew == -INFINITY ? 0.0f : mnew;   /* no key yet: no -inf - -inf */
                    const float alpha = ex2(m[j][ri] - mref[ri]); /* m = -inf -> 0 */
                    m[j][ri] = mnew;
                    l[j][ri] *= alpha;
#pragma unroll
                    for (int d = 0; d < ONT; d++) {
                        o[j][d][2 * ri] *= alpha;
                        o[j][d][2 * ri + 1] *= alpha;
                    }
                }
#pragma unroll
                for (int jb = 0; jb < NB; jb++) {
                    if (jb < kb_lo[j] || jb > kb_hi[j]) continue;
#pragma unroll
                    for (int h = 0; h < 2; h++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            /* masked: s = -inf, sl2 > 0: 2^-inf = 0 */
                            const float pv = ex2(fmaf(s[j][2 * jb + h][e], sl2, -mref[e >> 1]));
                            s[j][2 * jb + h][e] = pv;
                            l[j][e >> 1] += pv;
                        }
                }
            }

            /* ---- O += P V: one V fragment per (block, 16 dims), MT MMA pairs from it ---- */
            const uint32_t vbase = smem_addr(sV + v_lane_off);
#pragma unroll
            for (int kb = 0; kb < NB; kb++) {
                if (kb >= ulo && kb <= uhi) {
                    uint32_t a[MT][4];
#pragma unroll
                    for (int j = 0; j < MT; j++) {
                        a[j][0] = pack_bf16(s[j][2 * kb][0], s[j][2 * kb][1]);
                        a[j][1] = pack_bf16(s[j][2 * kb][2], s[j][2 * kb][3]);
                        a[j][2] = pack_bf16(s[j][2 * kb + 1][0], s[j][2 * kb + 1][1]);
                        a[j][3] = pack_bf16(s[j][2 * kb + 1][2], s[j][2 * kb + 1][3]);
                    }
#pragma unroll
                    for (int dp = 0; dp < KSTEPS; dp++) {
                        uint32_t b[4]; /* keys kb*16 + {0..7 | 8..15} x hd dp*16 + {0..7 | 8..15} */
                        ldsm_x4_trans(b, vbase + (uint32_t)((kb * 16 * LD + dp * 16) * 2));
#pragma unroll
                        for (int j = 0; j < MT; j++)
                            if (kb >= kb_lo[j] && kb <= kb_hi[j]) {
                                mma_bf16(o[j][2 * dp], a[j], b[0], b[1]);
                                mma_bf16(o[j][2 * dp + 1], a[j], b[2], b[3]);
                            }
                    }
                }
            }
        }

        slot = slot1;
        buf ^= 1;
    }
    cp_async_wait<0>(); /* the last group is empty; for form's sake */

    /* ---- epilogue: normalise, store rows that exist ---- */
#pragma unroll
    for (int j = 0; j < MT; j++) {
#pragma unroll
        for (int ri = 0; ri < 2; ri++) {
            l[j][ri] += __shfl_xor_sync(0xffffffffu, l[j][ri], 1);
            l[j][ri] += __shfl_xor_sync(0xffffffffu, l[j][ri], 2);
        }
#pragma unroll
        for (int ri = 0; ri < 2; ri++) {
            const long long qi = tile.qindex(p, (warp * MT + j) * 16 + g + 8 * ri);
            if (qi < 0) continue;
            /* l >= 1 (the row max contributes 2^0): the approximate division is within 2 ulp, and
             * has no slow-path subroutine (IEEE 1/l costs a call frame and a spill at HD 32) */
            const float inv = l[j][ri] > 0.0f ? __fdividef(1.0f, l[j][ri]) : 0.0f;
            float *orow = p.o + hoff + (size_t)qi * HD + 2 * t4;
#pragma unroll
            for (int d = 0; d < ONT; d++)
                *reinterpret_cast<float2 *>(orow + d * 8) =
                    make_float2(o[j][d][2 * ri] * inv, o[j][d][2 * ri + 1] * inv);
            if (p.lse && t4 == 0)
                p.lse[(size_t)head * (size_t)p.N + (size_t)qi] =
                    l[j][ri] > 0.0f ? (m[j][ri] + log2f(l[j][ri])) * 0.6931471805599453f : -INFINITY;
        }
    }
}

} /* namespace cd_flash3 */

#endif
