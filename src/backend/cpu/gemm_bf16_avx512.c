/* gemm_bf16_avx512.c — y [n, out] = x [n, in] . W^T + b for BF16 weights through vdpbf16ps
 * (AVX512_BF16: 16 lanes x one bf16 pair per instruction, products exact, f32 accumulation).
 * Compiled with the AVX-512 flags (Makefile: *_avx512.o); see gemm_bf16.h.
 *
 * x is converted once per call to bf16 (round to nearest even, cd_f32_to_bf16) into ctx scratch,
 * packed by row blocks of MR rows as [in/2][MR] pairs so that a register tile broadcasts its rows'
 * pairs from one pointer at constant offsets. Each thread packs a panel of NR = 32 weight rows for a
 * k block of KB pairs as [KB][32] pairs (two zmm per pair index: lanes = outputs) into its own
 * scratch (KB * 128 B = 192 KB, held in L2), then sweeps every row block of the current row group
 * over it with an MR x 32 register tile (2 * MR = 28 zmm accumulators; per pair index: two zmm
 * weight loads and MR 32-bit broadcast loads, 2 * MR vdpbf16ps). Both packings transpose 16 x 16
 * dword blocks in registers. Threads split the output panels (dynamic schedule: the cores are
 * shared). Row groups bound the packed x a panel sweeps to ~8 MB (L3); k blocks bound the packed
 * panel; y is the accumulator between k blocks (bias added at the first). Scratch: the packed x
 * (n x in x 2 B, rounded up to 14 rows) + 192 KB per thread.
 * n <= GEMV_MAX_N takes a dot-product path instead (no weight packing: memory bound on W). */
#include "gemm_bf16.h"

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define NR 32 /* outputs per panel (two zmm) */
#define MR 14 /* rows per register tile */
#ifndef KB
#define KB 1536 /* pair indices per k block: a packed panel is KB * NR * 4 B = 192 KB */
#endif
#ifndef XGROUP
#define XGROUP (8u << 20) /* bytes of packed x one panel sweep covers */
#endif
#define GEMV_MAX_N 4

#define INLINE static inline __attribute__((always_inline))

static inline size_t up16(size_t v) { return (v + 15) & ~(size_t)15; }

/* r[i][c] <- r[c][i] for 16 rows of 16 dwords: four stages, each swapping the off-diagonal
 * blocks of size b = 8, 4, 2, 1 with one two-source permute per row. */
INLINE void transpose16(__m512i r[16]) {
#pragma GCC unroll 4
    for (int s = 3; s >= 0; s--) {
        const int b = 1 << s;
        int lo[16], hi[16];
        for (int c = 0; c < 16; c++) {
            lo[c] = (c & b) ? 16 + c - b : c;
            hi[c] = (c & b) ? 16 + c : c + b;
        }
        const __m512i il = _mm512_loadu_si512(lo), ih = _mm512_loadu_si512(hi);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            if (!(i & b)) {
                const __m512i a = r[i], c = r[i + b];
                r[i] = _mm512_permutex2var_epi32(a, il, c);
                r[i + b] = _mm512_permutex2var_epi32(a, ih, c);
            }
    }
}

/* 32 floats (a: 0..15, b: 16..31) -> 16 bf16 pairs, rounded as cd_f32_to_bf16 (nearest even,
 * NaN kept quiet). */
INLINE __m512i to_pairs(__m512 a, __m512 b) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i q = _mm512_set1_epi32(0x00400000);
    __m512i u[2] = {_mm512_castps_si512(a), _mm512_castps_si512(b)};
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u[h], abs), inf);
        const __m512i rnd =
            _mm512_add_epi32(_mm512_add_epi32(u[h], bias), _mm512_and_si512(_mm512_srli_epi32(u[h], 16), one));
        u[h] = _mm512_mask_or_epi32(rnd, nan, u[h], q);
    }
    /* word w of the result = high word of element w: word 2w+1 of the (a, b) concatenation */
    const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25,
                                         23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(u[0], idx, u[1]);
}

static inline __mmask16 lane_mask(int k) {
    return k >= 16 ? (__mmask16)0xffff : k <= 0 ? 0 : (__mmask16)((1u << k) - 1);
}

/* x [n, in] -> xp [ceil(n/MR)][kp][MR] bf16 pairs (kp = ceil(in/2)); missing rows and the odd
 * input's high half are zero. Per row block, chunks of 16 pairs: convert 14 rows, transpose. */
static void pack_x(const float *x, size_t n, int in, uint32_t *xp, int threads) {
    const size_t kp = (size_t)(in + 1) / 2, nrb = (n + MR - 1) / MR;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t rb = 0; rb < nrb; rb++) {
        uint32_t *d = xp + rb * MR * kp;
        const int nr = n - rb * MR < MR ? (int)(n - rb * MR) : MR;
        for (size_t k = 0; k < kp; k += 16) {
            const int left = in - (int)(2 * k); /* floats left in each row */
            const __mmask16 ma = lane_mask(left), mb = lane_mask(left - 16);
            __m512i r[16];
            for (int i = 0; i < 16; i++) {
                if (i < nr) {
                    const float *xr = x + (rb * MR + (size_t)i) * (size_t)in + 2 * k;
                    r[i] = to_pairs(_mm512_maskz_loadu_ps(ma, xr), _mm512_maskz_loadu_ps(mb, xr + 16));
                } else {
                    r[i] = _mm512_setzero_si512();
                }
            }
            transpose16(r);
            const int kc = kp - k < 16 ? (int)(kp - k) : 16;
            for (int i = 0; i < kc; i++) _mm512_mask_storeu_epi32(d + (k + (size_t)i) * MR, 0x3fff, r[i]);
        }
    }
}

/* Weight rows o0 .. o0+NR-1, pair indices k0 .. k0+kb-1 -> d [kb][NR] pairs; rows past `out` and
 * the odd input's high half are zero. Full chunks of 16 pairs: two 16 x 16 transposes. */
static void pack_w(const uint16_t *w, int out, int in, int o0, int k0, int kb, uint32_t *d) {
    const int nr = out - o0 < NR ? out - o0 : NR;
    const uint16_t *base = w + (size_t)o0 * in + 2 * (size_t)k0;
    int k = 0;
    if (nr == NR) {
        for (; k + 16 <= kb && 2 * (k0 + k + 16) <= in; k += 16) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512i r[16];
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++)
                    r[j] = _mm512_loadu_si512(base + (size_t)(16 * h + j) * in + 2 * (size_t)k);
                transpose16(r);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) _mm512_store_si512(d + (size_t)(k + i) * NR + 16 * h, r[i]);
            }
        }
    }
    for (; k < kb; k++) {
        const int i = 2 * (k0 + k);
        for (int j = 0; j < NR; j++) {
            uint32_t v = 0;
            if (j < nr) {
                const uint16_t *row = w + (size_t)(o0 + j) * in;
                v = row[i];
                if (i + 1 < in) v |= (uint32_t)row[i + 1] << 16;
            }
            d[(size_t)k * NR + j] = v;
        }
    }
}

/* y[r][0..31] (masks m0, m1) for R <= MR rows: first block starts from the bias (or 0), later ones
 * from y. xp: the row block at the k block, stride MR per pair index; wp: two zmm per pair index. */
INLINE void tile(const int R, const uint32_t *xp, const __m512bh *wp, int kb, float *y, size_t ldy, int first,
                 const float *b, __mmask16 m0, __mmask16 m1) {
    __m512 c0[MR], c1[MR];
    if (first) {
        const __m512 b0 = b ? _mm512_maskz_loadu_ps(m0, b) : _mm512_setzero_ps();
        const __m512 b1 = b ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
        for (int r = 0; r < R; r++) c0[r] = b0, c1[r] = b1;
    } else {
#pragma GCC unroll 14
        for (int r = 0; r < R; r++) {
            c0[r] = _mm512_maskz_loadu_ps(m0, y + (size_t)r * ldy);
            c1[r] = _mm512_maskz_loadu_ps(m1, y + (size_t)r * ldy + 16);
        }
    }
    for (int k = 0; k < kb; k++) {
        const __m512bh w0 = wp[2 * k], w1 = wp[2 * k + 1];
#pragma GCC unroll 14
        for (int r = 0; r < R; r++) {
            const __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xp[(size_t)k * MR + r]);
            c0[r] = _mm512_dpbf16_ps(c0[r], w0, xv);
            c1[r] = _mm512_dpbf16_ps(c1[r], w1, xv);
        }
    }
#pragma GCC unroll 14
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(y + (size_t)r * ldy, m0, c0[r]);
        _mm512_mask_storeu_ps(y + (size_t)r * ldy + 16, m1, c1[r]);
    }
}

static void tile_any(int R, const uint32_t *xp, const __m512bh *wp, int kb, float *y, size_t ldy, int first,
                     const float *b, __mmask16 m0, __mmask16 m1) {
    /* one case per register-tile height, written as a table */
    // clang-format off
    switch (R) {
#define T(r) case r: tile(r, xp, wp, kb, y, ldy, first, b, m0, m1); break;
    T(1) T(2) T(3) T(4) T(5) T(6) T(7) T(8) T(9) T(10) T(11) T(12) T(13) T(14)
#undef T
    default: break;
    }
    // clang-format on
}

/* Small n: per output, dot products along `in` (32 bf16 per instruction) over row-major bf16 x rows
 * padded with zeros to a multiple of 32; 4 outputs at a time (4 accumulator chains). */
static void gemv(cd_ctx *ctx, const uint16_t *xb, size_t ldx, size_t n, const uint16_t *w, int out, int in,
                 const float *b, float *y) {
    const int nob = (out + 3) / 4;
    const int tail = in % 32;
    const __mmask32 tm = tail ? (__mmask32)((1u << tail) - 1) : 0;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int ob = 0; ob < nob; ob++) {
        const int o0 = 4 * ob, no = out - o0 < 4 ? out - o0 : 4;
        const uint16_t *wr[4];
        for (int j = 0; j < 4; j++) wr[j] = w + (size_t)(o0 + (j < no ? j : no - 1)) * in;
        for (size_t r = 0; r < n; r++) {
            const uint16_t *xr = xb + r * ldx;
            __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            int i = 0;
            for (; i + 32 <= in; i += 32) {
                const __m512bh xv = (__m512bh)_mm512_loadu_si512(xr + i);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) a[j] = _mm512_dpbf16_ps(a[j], (__m512bh)_mm512_loadu_si512(wr[j] + i), xv);
            }
            if (tail) {
                const __m512bh xv = (__m512bh)_mm512_loadu_si512(xr + i);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    a[j] = _mm512_dpbf16_ps(a[j], (__m512bh)_mm512_maskz_loadu_epi16(tm, wr[j] + i), xv);
            }
            for (int j = 0; j < no; j++)
                y[r * (size_t)out + (size_t)(o0 + j)] = _mm512_reduce_add_ps(a[j]) + (b ? b[o0 + j] : 0.0f);
        }
    }
}

static cd_status gemm_rows(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y);

/* x is packed (and W panels re-packed) per slab of SLAB rows, so the scratch is bounded by the
 * slab, not by n (an 8K image has 262K tokens); W is re-read once per slab, ~1/SLAB of the work. */
#define SLAB 2048

size_t cd_gemm_bf16_scratch_floats(size_t n, int in, int threads) {
    const size_t rows = n < SLAB ? n : SLAB;
    const size_t kp = ((size_t)in + 1) / 2;
    const size_t gemv = n <= GEMV_MAX_N ? n * (((size_t)in + 31) & ~(size_t)31) / 2 : 0;
    const size_t big = up16((rows + MR - 1) / MR * MR * kp) + (size_t)KB * NR * (size_t)threads;
    return gemv > big ? gemv : big;
}

cd_status cd_gemm_bf16_avx512(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    for (size_t r0 = 0; r0 < n || n == 0; r0 += SLAB) {
        const size_t rows = n - r0 < SLAB ? n - r0 : SLAB;
        cd_status s = gemm_rows(ctx, x + r0 * (size_t)w->in, rows, w, b, y + r0 * (size_t)w->out);
        if (s || n == 0) return s;
    }
    return CD_OK;
}

static cd_status gemm_rows(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    if (!ctx->has_bf16)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "gemm_bf16: this context does not run AVX512_BF16");
    if (w->dtype != CD_DTYPE_BF16)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "gemm_bf16: weights must be BF16 (got %s)",
                            cd_dtype_name(w->dtype));
    const int out = w->out, in = w->in;
    if (out <= 0 || in <= 0) return cd_set_error(ctx, CD_ERR_SHAPE, "gemm_bf16: bad weight shape [%d, %d]", out, in);
    if (n == 0) return CD_OK;
    const int T = ctx->threads;
    const uint16_t *wb = (const uint16_t *)w->data;

    if (n <= GEMV_MAX_N) {
        const size_t ldx = ((size_t)in + 31) & ~(size_t)31; /* bf16 per row */
        uint16_t *xb = (uint16_t *)cd_ctx_work(ctx, n * ldx / 2);
        if (!xb) return CD_ERR_OOM;
        for (size_t r = 0; r < n; r++) {
            for (int i = 0; i < in; i++) xb[r * ldx + (size_t)i] = cd_f32_to_bf16(x[r * (size_t)in + (size_t)i]);
            for (size_t i = (size_t)in; i < ldx; i++) xb[r * ldx + i] = 0;
        }
        gemv(ctx, xb, ldx, n, wb, out, in, b, y);
        return CD_OK;
    }

    const int kp = (in + 1) / 2;
    const size_t nrb = (n + MR - 1) / MR;
    size_t xfl, wfl, tot;
    if (!cd_mul_ok(nrb * MR, (size_t)kp, &xfl)) return cd_set_error(ctx, CD_ERR_OOM, "gemm_bf16: x too large");
    xfl = up16(xfl);
    wfl = (size_t)KB * NR;
    if (!cd_mul_ok(wfl, (size_t)T, &tot) || tot > SIZE_MAX - xfl)
        return cd_set_error(ctx, CD_ERR_OOM, "gemm_bf16: scratch too large");
    float *work = cd_ctx_work(ctx, xfl + tot);
    if (!work) return CD_ERR_OOM;
    uint32_t *xp = (uint32_t *)work, *wpack = (uint32_t *)(work + xfl);
    pack_x(x, n, in, xp, T);

    const int npan = (out + NR - 1) / NR;
    const int kbe = kp < KB ? kp : KB;
    size_t grp = XGROUP / ((size_t)MR * (size_t)kbe * 4); /* row blocks per group */
    if (grp < 4) grp = 4;
#pragma omp parallel num_threads(T)
    {
#ifdef _OPENMP
        uint32_t *wbuf = wpack + (size_t)omp_get_thread_num() * wfl;
#else
        uint32_t *wbuf = wpack;
#endif
        for (int k0 = 0; k0 < kp; k0 += KB) {
            const int kb = kp - k0 < KB ? kp - k0 : KB;
            for (size_t g0 = 0; g0 < nrb; g0 += grp) {
                const size_t g1 = nrb - g0 < grp ? nrb : g0 + grp;
#pragma omp for schedule(dynamic, 1)
                for (int p = 0; p < npan; p++) {
                    const int o0 = p * NR;
                    pack_w(wb, out, in, o0, k0, kb, wbuf);
                    const __mmask16 m0 = lane_mask(out - o0), m1 = lane_mask(out - o0 - 16);
                    const float *bp = b ? b + o0 : NULL;
                    for (size_t rb = g0; rb < g1; rb++) {
                        const size_t r0 = rb * MR;
                        const int R = n - r0 < MR ? (int)(n - r0) : MR;
                        tile_any(R, xp + rb * MR * (size_t)kp + (size_t)k0 * MR, (const __m512bh *)wbuf, kb,
                                 y + r0 * (size_t)out + (size_t)o0, (size_t)out, k0 == 0, bp, m0, m1);
                    }
                }
            }
        }
    }
    return CD_OK;
}

#else /* no AVX512_BF16 in this build */

cd_status cd_gemm_bf16_avx512(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    (void)x, (void)n, (void)w, (void)b, (void)y;
    return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "gemm_bf16: built without AVX512_BF16");
}

size_t cd_gemm_bf16_scratch_floats(size_t n, int in, int threads) {
    (void)n, (void)in, (void)threads;
    return 0;
}

#endif
