/* attn_v2_flash.cuh — kernel lab version 2: FlashAttention-2 structure on bf16 tensor cores,
 * dense rows and CLEAR image tiles in one kernel (variant 0 and variants >= 2 are tile shapes of
 * this template; lab/attention/NOTES.md has the design notes and the numbers).
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

#include "attn_kparams.cuh"

namespace cd_flash {

constexpr int BN = 64; /* keys per chunk */

/* The PTX wrappers. CD_FLASH_EMULATE: the host test harness lab/attention/emu_flash.cpp
 * supplies warp-level emulations of them instead, to run this exact kernel code on a CPU. */
#ifndef CD_FLASH_EMULATE
__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared; src_bytes 0 writes 16 zero bytes and reads nothing. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

/* c += a * b, m16n8k16, bf16 inputs, f32 accumulators */
/* The same MMA as a plain (non-volatile) asm: a pure register operation the compiler may
 * schedule around the (volatile) shared-memory loads; used by the PIPE path. */
__device__ __forceinline__ void mma_bf16_nv(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* two f32 -> bf16x2 (round to nearest even), lo in the low half (the lower column index) */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* 2^x; 2^-inf = +0 */
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
#endif /* CD_FLASH_EMULATE */

/* One key chunk: n (1..64) consecutive keys at k/v (row stride HD). img: an image row chunk,
 * keys (ky, kx0 + c) for c < n; else extra (or dense) keys, no positional mask. */
struct Chunk {
    const uint16_t *k, *v;
    int n, img, ky, kx0;
};

/* The CTA's key schedule (every thread runs an identical copy, so the loop is CTA-uniform). */
template <int HD>
struct ChunkIter {
    const uint16_t *xk, *xv; /* phase 1: xcount keys, no mask */
    int xcount, xpos;
    const uint16_t *kh, *vh; /* phase 2: image key rows of the tile's disc union */
    int img;                 /* 0: no phase 2 (dense tile) */
    int ky, ky_hi, kx, kx_end; /* current key row, last key row, next column, last column */
    int y0, y1, x0, x1, r, W, T;

    /* first key row >= row with a non-empty run (always `row` itself, see the loop) */
    __device__ __forceinline__ void set_row(int row) {
        for (; row <= ky_hi; row++) {
            const int dy = row < y0 ? y0 - row : (row > y1 ? row - y1 : 0); /* <= r - 1 */
            const int hw = cd_dev_disc_halfwidth(r, dy);
            if (hw < 0) continue;
            kx = max(0, x0 - hw);
            kx_end = min(W - 1, x1 + hw);
            if (kx <= kx_end) break;
        }
        ky = row;
    }

    __device__ __forceinline__ bool next(Chunk &c) {
        if (xpos < xcount) {
            c.n = min(BN, xcount - xpos);
            c.k = xk + (size_t)xpos * HD;
            c.v = xv + (size_t)xpos * HD;
            c.img = 0;
            c.ky = 0;
            c.kx0 = 0;
            xpos += c.n;
            return true;
        }
        if (!img || ky > ky_hi) return false;
        c.n = min(BN, kx_end - kx + 1);
        const size_t j = (size_t)T + (size_t)ky * (size_t)W + (size_t)kx;
        c.k = kh + j * HD;
        c.v = vh + j * HD;
        c.img = 1;
        c.ky = ky;
        c.kx0 = kx;
        kx += c.n;
        if (kx > kx_end) set_row(ky + 1);
        return true;
    }
};

/* All threads: cp.async the chunk's rows [0, round16(n)) into sK/sV; rows >= n are zero. */
template <int HD, int NT>
__device__ __forceinline__ void load_chunk(const Chunk &c, uint16_t *sK, uint16_t *sV, int tid) {
    constexpr int LD = HD + 8, CPR = HD / 8; /* 16-byte pieces per row */
    const int rows = (c.n + 15) & ~15;
    for (int pc = tid; pc < rows * CPR; pc += NT) {
        const int row = pc / CPR, col = (pc % CPR) * 8;
        const bool ok = row < c.n;
        const size_t off = ok ? (size_t)row * HD + col : 0;
        cp_async16(smem_addr(sK + row * LD + col), c.k + off, ok ? 16 : 0);
        cp_async16(smem_addr(sV + row * LD + col), c.v + off, ok ? 16 : 0);
    }
}

template <int HD, int QR, int QC>
struct Cfg {
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
__global__ void __launch_bounds__(Cfg<HD, QR, QC>::NT)
    cd_attn_flash_kernel(const cd_attn_kparams p) {
    using C = Cfg<HD, QR, QC>;
    constexpr int LD = C::LD, BM = C::BM, NT = C::NT;
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
    const bool dense_tile = (int)blockIdx.x < p.n_dense_tiles;

    /* tile origin */
    long long q0 = 0; /* dense tile: first query */
    int y0 = 0, x0 = 0;
    if (dense_tile) {
        q0 = (long long)blockIdx.x * BM;
    } else {
        const int it = (int)blockIdx.x - p.n_dense_tiles;
        y0 = p.img_row0 + (it / p.tiles_x) * QR;
        x0 = (it % p.tiles_x) * QC;
    }
    /* joint index of tile row i, or -1 when that query does not exist / is not ours */
    auto qindex = [&](int i) -> long long {
        if (dense_tile) {
            const long long qi = q0 + i;
            return qi < p.q_dense_end ? qi : -1;
        }
        const int qy = y0 + i / QC, qx = x0 + i % QC;
        return (qy < p.img_row1 && qx < p.W) ? (long long)p.T + (long long)qy * p.W + qx : -1;
    };

    /* ---- this warp's queries ---- */
    /* image tile: tile row wrow, columns [wx0, wx0 + 16); the thread's rows g, g+8 are the
     * columns wx0 + g, wx0 + g + 8 */
    const int wy = y0 + (16 * warp) / QC;
    const int wx0 = x0 + (16 * warp) % QC;
    const int wx1 = min(wx0 + 15, p.W - 1);
    const bool warp_valid =
        dense_tile ? (q0 + 16 * warp < p.q_dense_end) : (wy < p.img_row1 && wx0 < p.W);

    /* ---- key schedule ---- */
    ChunkIter<HD> it;
    it.img = 0;
    it.xpos = 0;
    it.kh = p.k + hoff;
    it.vh = p.v + hoff;
    it.ky = 0;
    it.ky_hi = -1;
    it.kx = 0;
    it.kx_end = -1;
    it.y0 = y0;
    it.x0 = x0;
    it.y1 = 0;
    it.x1 = 0;
    it.r = p.r;
    it.W = p.W;
    it.T = p.T;
    if (dense_tile) {
        it.xk = p.k + hoff + (size_t)p.dense_key0 * HD;
        it.xv = p.v + hoff + (size_t)p.dense_key0 * HD;
        it.xcount = p.N - p.dense_key0;
    } else {
        it.xk = p.ek + (size_t)head * (size_t)p.ek_hstride;
        it.xv = p.ev + (size_t)head * (size_t)p.ek_hstride;
        it.xcount = p.E;
        it.img = 1;
        it.y1 = min(y0 + QR, p.img_row1) - 1;
        it.x1 = min(x0 + QC, p.W) - 1;
        it.ky_hi = min(p.H - 1, it.y1 + (p.r - 1));
        it.set_row(max(0, y0 - (p.r - 1)));
    }

    /* ---- prologue: Q tile and chunk 0 ---- */
    {
        constexpr int CPR = HD / 8;
        for (int pc = tid; pc < BM * CPR; pc += NT) {
            const int row = pc / CPR, col = (pc % CPR) * 8;
            const long long qi = qindex(row);
            const uint16_t *src = qi >= 0 ? qh + (size_t)qi * HD + col : qh;
            cp_async16(smem_addr(sQ + row * LD + col), src, qi >= 0 ? 16 : 0);
        }
    }
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
        const long long qi = qindex(warp * 16 + g + 8 * ri);
        if (qi < 0) continue;
        const float inv = l[ri] > 0.0f ? 1.0f / l[ri] : 0.0f;
        float *orow = p.o + hoff + (size_t)qi * HD + 2 * t4;
#pragma unroll
        for (int d = 0; d < ONT; d++)
            *reinterpret_cast<float2 *>(orow + d * 8) =
                make_float2(o[d][2 * ri] * inv, o[d][2 * ri + 1] * inv);
        if (p.lse && t4 == 0)
            p.lse[(size_t)head * (size_t)p.N + (size_t)qi] =
                l[ri] > 0.0f ? (m[ri] + log2f(l[ri])) * 0.6931471805599453f : -INFINITY;
    }
}

} /* namespace cd_flash */

#endif
