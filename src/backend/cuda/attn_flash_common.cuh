/* attn_flash_common.cuh — the pieces every flash attention kernel version shares: the PTX
 * wrappers, the key schedule (Chunk, ChunkIter: the E extra keys, then the disc union of an image
 * tile row by row), the chunk loads, the tile origin and the Q staging. Included by the shipped
 * kernel (attn_v2_flash.cuh) and by the kernel lab's other versions (lab/attention/), so the
 * schedule and the masks they validate are the ones that ship. Fragment layouts and the
 * pipeline: attn_v2_flash.cuh's header comment. */
#ifndef CD_ATTN_FLASH_COMMON_CUH
#define CD_ATTN_FLASH_COMMON_CUH

#include "attn_kparams.cuh"

namespace cd_flash {

constexpr int BN = 64; /* keys per chunk */

/* The PTX wrappers. CD_FLASH_EMULATE: the host test harness lab/attention/emu_flash.cpp
 * supplies warp-level emulations of them instead, to run this exact kernel code on a CPU. */
#ifndef CD_FLASH_EMULATE
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared; src_bytes 0 writes 16 zero bytes and reads nothing. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
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
__device__ __forceinline__ void mma_bf16_nv(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
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
template <int HD> struct ChunkIter {
    const uint16_t *xk, *xv; /* phase 1: xcount keys, no mask */
    int xcount, xpos;
    const uint16_t *kh, *vh;   /* phase 2: image key rows of the tile's disc union */
    int img;                   /* 0: no phase 2 (dense tile) */
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

    /* The schedule of one CTA (every field set): a dense tile streams the keys [dense_key0, N)
     * of head `head` (element offset hoff in k/v); an image tile of QR x QC queries at (ty0, tx0)
     * streams the E extra keys, then the disc union of its rows [ty0, min(ty0 + QR, img_row1)). */
    __device__ __forceinline__ void start(const cd_attn_kparams &p, int head, size_t hoff, bool dense_tile, int ty0,
                                          int tx0, int QR, int QC) {
        img = 0;
        xpos = 0;
        kh = p.k + hoff;
        vh = p.v + hoff;
        ky = 0;
        ky_hi = -1;
        kx = 0;
        kx_end = -1;
        y0 = ty0;
        x0 = tx0;
        y1 = 0;
        x1 = 0;
        r = p.r;
        W = p.W;
        T = p.T;
        if (dense_tile) {
            xk = p.k + hoff + (size_t)p.dense_key0 * HD;
            xv = p.v + hoff + (size_t)p.dense_key0 * HD;
            xcount = p.N - p.dense_key0;
        } else {
            xk = p.ek + (size_t)head * (size_t)p.ek_hstride;
            xv = p.ev + (size_t)head * (size_t)p.ek_hstride;
            xcount = p.E;
            img = 1;
            y1 = min(ty0 + QR, p.img_row1) - 1;
            x1 = min(tx0 + QC, p.W) - 1;
            ky_hi = min(p.H - 1, y1 + (p.r - 1));
            set_row(max(0, ty0 - (p.r - 1)));
        }
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

/* Which queries a CTA owns (grid: cd_attn_flash_grid): the first n_dense_tiles CTAs are dense
 * tiles of QR*QC consecutive queries from q0, below q_dense_end; the others are QR x QC image
 * blocks at (y0, x0), tiles_x per tile row, from grid row img_row0 on. */
template <int QR, int QC> struct Tile {
    bool dense;
    long long q0; /* dense tile: first query */
    int y0, x0;   /* image tile: origin */

    __device__ __forceinline__ explicit Tile(const cd_attn_kparams &p) : q0(0), y0(0), x0(0) {
        dense = (int)blockIdx.x < p.n_dense_tiles;
        if (dense) {
            q0 = (long long)blockIdx.x * (QR * QC);
        } else {
            const int it = (int)blockIdx.x - p.n_dense_tiles;
            y0 = p.img_row0 + (it / p.tiles_x) * QR;
            x0 = (it % p.tiles_x) * QC;
        }
    }
    /* joint index of tile query i (image: row-major in the block), or -1 when that query does
     * not exist / is not ours */
    __device__ __forceinline__ long long qindex(const cd_attn_kparams &p, int i) const {
        if (dense) {
            const long long qi = q0 + i;
            return qi < p.q_dense_end ? qi : -1;
        }
        const int qy = y0 + i / QC, qx = x0 + i % QC;
        return (qy < p.img_row1 && qx < p.W) ? (long long)p.T + (long long)qy * p.W + qx : -1;
    }
};

/* All threads: cp.async the tile's QR*QC query rows of head offset qh into sQ (row stride HD + 8);
 * rows without a query are zero-filled. */
template <int HD, int QR, int QC, int NT>
__device__ __forceinline__ void stage_q(const Tile<QR, QC> &tile, const cd_attn_kparams &p, const uint16_t *qh,
                                        uint16_t *sQ, int tid) {
    constexpr int LD = HD + 8, CPR = HD / 8; /* 16-byte pieces per row */
    for (int pc = tid; pc < QR * QC * CPR; pc += NT) {
        const int row = pc / CPR, col = (pc % CPR) * 8;
        const long long qi = tile.qindex(p, row);
        const uint16_t *src = qi >= 0 ? qh + (size_t)qi * HD + col : qh;
        cp_async16(smem_addr(sQ + row * LD + col), src, qi >= 0 ? 16 : 0);
    }
}

} /* namespace cd_flash */

#endif
