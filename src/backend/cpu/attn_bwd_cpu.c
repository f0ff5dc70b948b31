/* attn_bwd_cpu.c — the fast CPU attention backward (formulas in attn_bwd.h): OpenMP over work
 * items, a SIMD strip kernel written once with GCC vector extensions (16 f32 lanes) and compiled
 * three times through target attributes (AVX-512, AVX2+FMA, baseline), picked by ctx->isa.
 *
 * Two independent kinds of work item, run in one parallel loop (neither reads what the other
 * writes), then a scatter:
 *  - pass 1 (lanes = 16 queries of one head, as in the forward): for every key the strip sees,
 *    recompute S = scale q.k and dP = dout.v, P = exp(S - lse), dS = P (dP - D), and accumulate
 *    dq += dS k. Key sets are the forward's: dense / CLEAR text rows: all N keys; CLEAR image
 *    queries (4x4 tiles of the grid): text keys, the disc runs of the key rows within reach, the
 *    pooled keys.
 *  - pass 2 (lanes = 16 keys): the same S, dP, P, dS for every query that sees the key, then
 *    dk += dS q and dv += P dout. Query sets: text keys (and dense): all N queries; image keys
 *    (4x4 tiles): the text queries and the disc runs of the query rows within reach (the disc is
 *    symmetric, so these are exactly the image queries whose disc holds the key); pooled keys
 *    (16 consecutive, lanes from the pooled K/V): all image queries, into pooled dk'/dv' scratch.
 *  - scatter (per head): every image token adds w[a][b] times its cell's pooled dk'/dv', and
 *    dw[a][b] collects dk'.k + dv'.v in double, per head, summed over heads in head order.
 * Every output element is written by one item with a fixed summation order, so the gradients are
 * bit-identical for any thread count. pass 1 + pass 2 do 7 (q|k rows x HD) products per allowed
 * pair where the forward does 2: the backward costs about 3.5 forwards (BENCHMARKS.md).
 *
 * Kernel layout (both passes): lane-side operands transposed, A1T[d][lane] (q or k, times
 * scale*log2(e): scores are base 2 against lse2 = lse*log2(e)) and A2T[d][lane] (dout or v); the
 * other side streamed in chunks of <= BW_KC rows (X1 = k or q, X2 = v or dout, contiguous, gathered
 * when a chunk spans several runs). Products are register tiles: S[j] = sum_d X1[j][d] A1T[d]
 * (broadcast X, vector A) and ACC[d] += sum_j X[j][d] P[j] (broadcast X, vector P).
 * Scratch: lse2, D [NH, N]; pooled K/V and their gradients [NH, N/DF^2, HD] x 4; per thread one
 * strip block (~0.3 MB at HD 128) and a segment list. All from cd_ctx_work. */
#include "attn_bwd.h"
#include "simd_exp2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* a*b+c contracted to FMA in the kernels (the Makefile gives the forward's per-ISA objects
 * -ffp-contract=fast; this file is compiled once, with per-function targets) */
#pragma GCC optimize("fp-contract=fast")

#define BW_L 16   /* lanes per strip */
#define BW_KC 128 /* streamed rows per chunk (S and dP chunks: 8 KiB each) */
#define BW_G 4    /* strips of consecutive lanes sharing every chunk (64 queries or keys) */
#define BW_TR 4   /* image tiles: BW_TR x (16 / BW_TR) lanes */

typedef float vf __attribute__((vector_size(BW_L * 4)));
typedef int32_t vi __attribute__((vector_size(BW_L * 4)));

#define INLINE static inline __attribute__((always_inline))

/* The kernel helpers pass 64-byte vectors by value outside an AVX-512 target; they are all
 * always inlined (no call, no ABI), so GCC's ABI-change note does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

/* 2^x, exactly 0 for x <= -127, -inf and NaN (simd_exp2.h); arguments are base-2 score - lse2 <= 0
 * up to rounding */
CD_SIMD_EXP2(vexp2, vf, vi, 0)

/* A run of streamed rows: a segment of a job, or the part of one inside a chunk (a piece). */
typedef struct {
    const float *x1, *x2; /* [n, HD] pass 1: k, v rows; pass 2: q, dout rows */
    const float *rl, *rd; /* [n] pass 2: lse2 and D of the query rows; pass 1: NULL */
    int32_t n;
    int32_t masked;    /* disc run: lane (ti, tj) sees column c iff |c - tj| <= hw[ti] */
    int32_t off;       /* column of the first row minus the tile's first column */
    int32_t row;       /* pieces: first row inside the chunk */
    int32_t hw[BW_TR]; /* disc half-width per tile row at this run's grid row (-1: none) */
} bseg;

typedef struct {
    int32_t pass; /* 1: dq (lanes = queries); 2: dk, dv (lanes = keys) */
    int32_t hd;
    int32_t rows, nrows, ncols; /* lanes: rows x (16/rows) tile (nrows x ncols valid), or rows = 1:
                                   ncols consecutive tokens (up to 16 * BW_G) */
    int64_t rs;                 /* tokens between tile rows (grid width) */
    const float *a1, *a2;       /* lane 0's rows: pass 1 q, dout; pass 2 k, v (same strides) */
    const float *la, *lb;       /* pass 1: lse2 and D of lane 0's token; pass 2: NULL */
    float s1;                   /* a1 multiplier: scale * log2(e) */
    float s_out;                /* o1 multiplier: scale */
    float *o1, *o2;             /* lane 0's outputs: pass 1 dq; pass 2 dk, dv */
    const bseg *segs;
    int32_t nseg;
} bjob;

/* OUT[r] = sum_d X[r][d] * AT[d] for the J rows at X. */
INLINE void dot_tile(const float *X, int HD, const vf *AT, vf *OUT, const int J) {
    vf acc[16];
#pragma GCC unroll 16
    for (int r = 0; r < J; r++) acc[r] = (vf){0};
    for (int d = 0; d < HD; d++) {
        const vf a = AT[d];
#pragma GCC unroll 16
        for (int r = 0; r < J; r++) acc[r] += X[(size_t)r * HD + d] * a;
    }
#pragma GCC unroll 16
    for (int r = 0; r < J; r++) OUT[r] = acc[r];
}

/* n rows: tiles of JR, then halving tiles (several independent FMA chains even for short runs). */
INLINE void dot_rows(const float *X, int HD, int n, const vf *AT, vf *OUT, const int JR) {
    int j = 0;
    for (; j + JR <= n; j += JR) dot_tile(X + (size_t)j * HD, HD, AT, OUT + j, JR);
    if (JR > 8 && n - j >= 8) {
        dot_tile(X + (size_t)j * HD, HD, AT, OUT + j, 8);
        j += 8;
    }
    if (JR > 4 && n - j >= 4) {
        dot_tile(X + (size_t)j * HD, HD, AT, OUT + j, 4);
        j += 4;
    }
    if (JR > 2 && n - j >= 2) {
        dot_tile(X + (size_t)j * HD, HD, AT, OUT + j, 2);
        j += 2;
    }
    for (; j < n; j++) dot_tile(X + (size_t)j * HD, HD, AT, OUT + j, 1);
}

/* ACC[r] += sum_j X[j][r] * P[j] for the R columns at X (row stride HD). */
INLINE void acc_tile(const float *X, int HD, int n, const vf *P, vf *ACC, const int R) {
    vf acc[16];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) acc[r] = ACC[r];
    for (int j = 0; j < n; j++) {
        const vf p = P[j];
        const float *x = X + (size_t)j * HD;
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) acc[r] += x[r] * p;
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) ACC[r] = acc[r];
}

INLINE void acc_rows(const float *X, int HD, int n, const vf *P, vf *ACC, const int R) {
    int d = 0;
    for (; d + R <= HD; d += R) acc_tile(X + d, HD, n, P, ACC + d, R);
    if (R > 8 && HD - d >= 8) {
        acc_tile(X + d, HD, n, P, ACC + d, 8);
        d += 8;
    }
    if (R > 4 && HD - d >= 4) {
        acc_tile(X + d, HD, n, P, ACC + d, 4);
        d += 4;
    }
    if (R > 2 && HD - d >= 2) {
        acc_tile(X + d, HD, n, P, ACC + d, 2);
        d += 2;
    }
    for (; d < HD; d++) acc_tile(X + d, HD, n, P, ACC + d, 1);
}

/* Scores outside a masked piece's disc runs -> -inf (P = 0). */
INLINE void mask_piece(const bseg *p, int bcols, vf *S) {
    vi col, hwv;
    for (int e = 0; e < BW_L; e++) {
        col[e] = e % bcols;
        hwv[e] = p->hw[e / bcols];
    }
    const vf ninf = (vf){0} - INFINITY;
    for (int j = 0; j < p->n; j++) {
        const int c = p->off + j;
        const vi ok = (col >= c - hwv) & (col <= c + hwv);
        S[p->row + j] = (vf)((ok & (vi)S[p->row + j]) | (~ok & (vi)ninf));
    }
}

/* Per-strip state, in the thread's scratch. */
typedef struct {
    vf *A1T, *A2T, *ACC1, *ACC2; /* [HD] each */
    vf bias;                     /* 0 on valid lanes, -inf on lanes past the job's edge */
    vf lse2, D;                  /* pass 1: of the lane's query */
} strip_st;

/* One chunk of `rows` streamed rows (X1, X2 contiguous; RL, RD pass 2) for one strip. */
INLINE void strip_chunk(int pass, int HD, const float *X1, const float *X2, const float *RL, const float *RD, int rows,
                        const bseg *pc, int np, int bcols, strip_st *st, vf *S, vf *DP, const int JR) {
    dot_rows(X1, HD, rows, st->A1T, S, JR);
    dot_rows(X2, HD, rows, st->A2T, DP, JR);
    for (int p = 0; p < np; p++)
        if (pc[p].masked) mask_piece(&pc[p], bcols, S);
    if (pass == 1) {
        const vf off = st->bias - st->lse2, D = st->D;
        for (int j = 0; j < rows; j++) S[j] = vexp2(S[j] + off) * (DP[j] - D);
        acc_rows(X1, HD, rows, S, st->ACC1, JR); /* dQT += K^T dS */
    } else {
        const vf bias = st->bias;
        for (int j = 0; j < rows; j++) {
            const vf p = vexp2(S[j] + bias - RL[j]);
            DP[j] = p * (DP[j] - RD[j]);
            S[j] = p;
        }
        acc_rows(X1, HD, rows, DP, st->ACC1, JR); /* dKT += Q^T dS */
        acc_rows(X2, HD, rows, S, st->ACC2, JR);  /* dVT += dO^T P */
    }
}

static size_t strip_scratch_floats(int hd) {
    /* A1T, A2T, ACC1, ACC2 [BW_G][HD][16]; S, DP [KC][16]; X1b, X2b [KC][HD]; RL, RD [KC];
     * pieces [KC] (64 bytes = 16 floats each) */
    return (size_t)4 * BW_G * hd * BW_L + (size_t)2 * BW_KC * BW_L + (size_t)2 * BW_KC * hd + (size_t)2 * BW_KC +
           (size_t)BW_KC * 16;
}
_Static_assert(sizeof(bseg) <= 64, "strip_scratch_floats reserves 64 bytes per piece");

INLINE void run_job(const bjob *jb, float *scr, const int HD, const int JR) {
    const int pass = jb->pass;
    const int G = jb->rows == 1 ? (jb->ncols + BW_L - 1) / BW_L : 1;
    const int bcols = BW_L / jb->rows;
    vf *A1T = (vf *)scr, *A2T = A1T + (size_t)BW_G * HD;
    vf *ACC1 = A2T + (size_t)BW_G * HD, *ACC2 = ACC1 + (size_t)BW_G * HD;
    vf *S = ACC2 + (size_t)BW_G * HD, *DP = S + BW_KC;
    float *X1b = (float *)(DP + BW_KC), *X2b = X1b + (size_t)BW_KC * HD;
    float *RLb = X2b + (size_t)BW_KC * HD, *RDb = RLb + BW_KC;
    bseg *pc = (bseg *)(RDb + BW_KC);
#define LANE_TOK(g, i) \
    (jb->rows == 1 ? (size_t)(g)*BW_L + (size_t)(i) : (size_t)((i) / bcols) * (size_t)jb->rs + (size_t)((i) % bcols))
#define LANE_OK(g, i) (jb->rows == 1 ? (g)*BW_L + (i) < jb->ncols : (i) / bcols < jb->nrows && (i) % bcols < jb->ncols)

    strip_st st[BW_G];
    for (int g = 0; g < G; g++) {
        strip_st *s = &st[g];
        s->A1T = A1T + (size_t)g * HD;
        s->A2T = A2T + (size_t)g * HD;
        s->ACC1 = ACC1 + (size_t)g * HD;
        s->ACC2 = ACC2 + (size_t)g * HD;
        float *a1t = (float *)s->A1T, *a2t = (float *)s->A2T;
        for (int i = 0; i < BW_L; i++) {
            const int ok = LANE_OK(g, i);
            const size_t tok = ok ? LANE_TOK(g, i) : 0;
            const float *x1 = jb->a1 + tok * HD, *x2 = jb->a2 + tok * HD;
            for (int d = 0; d < HD; d++) {
                a1t[d * BW_L + i] = ok ? x1[d] * jb->s1 : 0.0f;
                a2t[d * BW_L + i] = ok ? x2[d] : 0.0f;
            }
            s->bias[i] = ok ? 0.0f : -INFINITY;
            s->lse2[i] = ok && pass == 1 ? jb->la[tok] : 0.0f;
            s->D[i] = ok && pass == 1 ? jb->lb[tok] : 0.0f;
        }
        for (int d = 0; d < HD; d++) s->ACC1[d] = s->ACC2[d] = (vf){0};
    }

    int np = 0, rows = 0;
    for (int sidx = 0; sidx <= jb->nseg; sidx++) {
        const bseg *sg = sidx < jb->nseg ? &jb->segs[sidx] : NULL;
        for (int done = 0; sg ? done < sg->n : rows > 0;) {
            if (sg) { /* append (part of) the segment to the chunk */
                const int take = sg->n - done < BW_KC - rows ? sg->n - done : BW_KC - rows;
                bseg *p = &pc[np++];
                *p = *sg;
                p->x1 = sg->x1 + (size_t)done * HD;
                p->x2 = sg->x2 + (size_t)done * HD;
                p->rl = sg->rl ? sg->rl + done : NULL;
                p->rd = sg->rd ? sg->rd + done : NULL;
                p->n = take;
                p->off = sg->off + done;
                p->row = rows;
                rows += take;
                done += take;
                if (rows < BW_KC) continue;
            }
            /* a full chunk, or the last one: run it for every strip */
            const float *X1 = pc[0].x1, *X2 = pc[0].x2, *RL = pc[0].rl, *RD = pc[0].rd;
            if (np > 1) { /* gather the runs into contiguous rows */
                for (int p = 0; p < np; p++) {
                    memcpy(X1b + (size_t)pc[p].row * HD, pc[p].x1, sizeof(float) * (size_t)pc[p].n * HD);
                    memcpy(X2b + (size_t)pc[p].row * HD, pc[p].x2, sizeof(float) * (size_t)pc[p].n * HD);
                    if (pass == 2) {
                        memcpy(RLb + pc[p].row, pc[p].rl, sizeof(float) * (size_t)pc[p].n);
                        memcpy(RDb + pc[p].row, pc[p].rd, sizeof(float) * (size_t)pc[p].n);
                    }
                }
                X1 = X1b;
                X2 = X2b;
                RL = RLb;
                RD = RDb;
            }
            for (int g = 0; g < G; g++) strip_chunk(pass, HD, X1, X2, RL, RD, rows, pc, np, bcols, &st[g], S, DP, JR);
            np = rows = 0;
        }
    }

    for (int g = 0; g < G; g++) {
        const float *c1 = (const float *)st[g].ACC1, *c2 = (const float *)st[g].ACC2;
        for (int i = 0; i < BW_L; i++) {
            if (!LANE_OK(g, i)) continue;
            const size_t tok = LANE_TOK(g, i);
            float *o1 = jb->o1 + tok * HD;
            for (int d = 0; d < HD; d++) o1[d] = c1[d * BW_L + i] * jb->s_out;
            if (pass == 2) {
                float *o2 = jb->o2 + tok * HD;
                for (int d = 0; d < HD; d++) o2[d] = c2[d * BW_L + i];
            }
        }
    }
#undef LANE_TOK
#undef LANE_OK
}

/* The kernel per instruction set: register tiles of JR rows x 16 lanes fit the register file
 * (AVX-512: 16 of 32 zmm; AVX2: 6 x 2 of 16 ymm; baseline SSE2: 2 x 4 of 16 xmm). A constant
 * head_dim lets the compiler unroll the d loops. */
typedef void (*bjob_fn)(const bjob *jb, float *scr);

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))) static void job_avx512(const bjob *jb,
                                                                                              float *scr) {
    switch (jb->hd) {
        case 128: run_job(jb, scr, 128, 16); break;
        case 64: run_job(jb, scr, 64, 16); break;
        default: run_job(jb, scr, jb->hd, 16); break;
    }
}

__attribute__((target("avx2,fma"))) static void job_avx2(const bjob *jb, float *scr) {
    switch (jb->hd) {
        case 128: run_job(jb, scr, 128, 6); break;
        case 64: run_job(jb, scr, 64, 6); break;
        default: run_job(jb, scr, jb->hd, 6); break;
    }
}

static void job_generic(const bjob *jb, float *scr) {
    switch (jb->hd) {
        case 128: run_job(jb, scr, 128, 2); break;
        case 64: run_job(jb, scr, 64, 2); break;
        default: run_job(jb, scr, jb->hd, 2); break;
    }
}

static bjob_fn pick_kernel(const cd_ctx *ctx) {
    switch (ctx->isa) {
        case CD_ISA_AVX512: return job_avx512;
        case CD_ISA_AVX2: return job_avx2;
        default: return job_generic;
    }
}

/* ---- driver ----------------------------------------------------------------------------- */

/* The streamed side of one head: pass 1 keys/values, pass 2 queries/dout (+ lse2, D). */
typedef struct {
    const float *x1, *x2, *rl, *rd;
} bsrc;

static bseg seg_rows(const bsrc *s, size_t t0, size_t n, int hd) {
    bseg g;
    memset(&g, 0, sizeof g);
    g.x1 = s->x1 + t0 * hd;
    g.x2 = s->x2 + t0 * hd;
    g.rl = s->rl ? s->rl + t0 : NULL;
    g.rd = s->rd ? s->rd + t0 : NULL;
    g.n = (int32_t)n;
    return g;
}

/* Geometry shared by every tile job of a call. */
typedef struct {
    int T, H, W, HD, r, rows_dy;
    const int *hw; /* [rows_dy] disc half-width per |dy| */
} geom;

/* Disc runs seen by the lanes of the tile at grid rows ty0.. (nrows), columns tx0.. (ncols): one
 * run per grid row within reach of the other side (key rows in pass 1, query rows in pass 2; the
 * disc is symmetric). Returns the new segment count. */
static int disc_segs(bseg *sg, int nseg, const bsrc *src, const geom *gm, int ty0, int nrows, int tx0, int ncols) {
    const int T = gm->T, H = gm->H, W = gm->W, r = gm->r;
    const int y0 = ty0 - (r - 1) > 0 ? ty0 - (r - 1) : 0;
    const int y1 = ty0 + nrows - 1 + (r - 1) < H ? ty0 + nrows - 1 + (r - 1) : H - 1;
    for (int y = y0; y <= y1; y++) {
        int hw[BW_TR], wmax = -1;
        for (int t = 0; t < BW_TR; t++) {
            const int ady = y - (ty0 + t) < 0 ? ty0 + t - y : y - (ty0 + t);
            hw[t] = (t < nrows && ady < gm->rows_dy) ? gm->hw[ady] : -1;
            if (hw[t] > wmax) wmax = hw[t];
        }
        if (wmax < 0) continue;
        const int lo = tx0 - wmax > 0 ? tx0 - wmax : 0;
        const int hi = tx0 + ncols - 1 + wmax < W ? tx0 + ncols - 1 + wmax : W - 1;
        bseg g = seg_rows(src, (size_t)T + (size_t)y * W + lo, (size_t)(hi - lo + 1), gm->HD);
        g.masked = 1;
        g.off = lo - tx0;
        for (int t = 0; t < BW_TR; t++) g.hw[t] = hw[t];
        sg[nseg++] = g;
    }
    return nseg;
}

typedef struct {
    size_t scr; /* floats of one thread's strip block (64-byte multiple) */
    size_t NP;  /* pooled tokens per head */
    size_t maxseg;
    size_t total; /* floats in all */
} bwd_sizes;

static bwd_sizes sizes_of(const cd_attn_desc *d, int threads) {
    bwd_sizes z;
    const int H = d->grid_h, clear = d->radius > 0;
    const int r = clear ? cd_attn_eff_radius(d) : 0;
    const size_t rows_dy = clear ? (size_t)(r < H ? r : H) : 0;
    const size_t N = cd_attn_tokens(d), NH = (size_t)d->heads, HD = (size_t)d->head_dim;
    z.NP = cd_attn_pooled(d) ? (size_t)(H / d->down) * (size_t)(d->grid_w / d->down) : 0;
    z.scr = (strip_scratch_floats(d->head_dim) + 15) & ~(size_t)15;
    z.maxseg = 2 + 2 * rows_dy + BW_TR;
    const size_t df2 = cd_attn_pooled(d) ? (size_t)d->down * d->down : 0;
    /* strips, lse2 + D, pooled K/V/dK/dV, dw partials (double), segments, hw table */
    size_t f = z.scr * threads;
    f += (2 * NH * N + 15) & ~(size_t)15;
    f += (4 * NH * z.NP * HD + 15) & ~(size_t)15;
    f += (2 * NH * df2 + 15) & ~(size_t)15;
    f += (z.maxseg * threads * sizeof(bseg) + 63) / 64 * 16;
    f += (rows_dy + 1 + 15) & ~(size_t)15;
    z.total = f;
    return z;
}

size_t cd_attn_bwd_cpu_scratch_floats(const cd_attn_desc *d, int threads) { return sizes_of(d, threads).total; }

cd_status cd_attn_bwd_cpu_run(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                              const float *sw, const float *o, const float *lse, const float *dout, float *dq,
                              float *dk, float *dv, float *dsw) {
    const int HD = d->head_dim, T = d->text_len, H = d->grid_h, W = d->grid_w, NH = d->heads;
    const size_t N = cd_attn_tokens(d);
    const int clear = d->radius > 0, pooled = cd_attn_pooled(d);
    const int DF = pooled ? d->down : 1, PW = W / DF;
    const int r = clear ? cd_attn_eff_radius(d) : 0;
    const int threads = ctx->threads;
    const float scale = cd_attn_scale(d);
    const float qs = scale * 1.4426950408889634f; /* base-2 scores */
    const bjob_fn kern = pick_kernel(ctx);
    const bwd_sizes z = sizes_of(d, threads);
    const size_t NP = z.NP, HDs = (size_t)HD;

    float *block = cd_ctx_work(ctx, z.total);
    if (!block) return CD_ERR_OOM;
    float *scratch = block;                                                          /* [threads][scr] */
    float *lse2 = scratch + z.scr * threads;                                         /* [NH][N] lse * log2(e) */
    float *Dd = lse2 + (size_t)NH * N;                                               /* [NH][N] dout . o */
    float *pk = lse2 + ((2 * (size_t)NH * N + 15) & ~(size_t)15);                    /* [NH][NP][HD] pooled k' */
    float *pv = pk + (size_t)NH * NP * HDs;                                          /* pooled v' */
    float *dpk = pv + (size_t)NH * NP * HDs;                                         /* dk' of the pooled keys */
    float *dpv = dpk + (size_t)NH * NP * HDs;                                        /* dv' */
    double *dwp = (double *)(pk + ((4 * (size_t)NH * NP * HDs + 15) & ~(size_t)15)); /* [NH][DF*DF] */
    bseg *segs = (bseg *)((float *)dwp + ((2 * (size_t)NH * (pooled ? DF * DF : 0) + 15) & ~(size_t)15));
    int *hwt = (int *)((float *)segs + (z.maxseg * threads * sizeof(bseg) + 63) / 64 * 16);
    geom gm = {T, H, W, HD, r, clear ? (r < H ? r : H) : 0, hwt};
    for (int dy = 0; dy < gm.rows_dy; dy++) hwt[dy] = cd_disc_halfwidth(r, dy);

    /* prepass: lse2, D per query row; pooled K/V per head */
    const size_t nrow = (size_t)NH * N;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (size_t i = 0; i < nrow; i++) {
            const float *a = dout + i * HDs, *b = o + i * HDs;
            double s = 0.0;
            for (int c = 0; c < HD; c++) s += (double)a[c] * b[c];
            Dd[i] = (float)s;
            lse2[i] = lse[i] * 1.4426950408889634f;
        }
        if (pooled) {
#pragma omp for schedule(dynamic, 1)
            for (int h = 0; h < NH; h++) {
                float *pkh = pk + (size_t)h * NP * HDs, *pvh = pv + (size_t)h * NP * HDs;
                memset(pkh, 0, sizeof(float) * NP * HDs);
                memset(pvh, 0, sizeof(float) * NP * HDs);
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        const float wt = sw[(y % DF) * DF + x % DF];
                        const size_t p = ((size_t)(y / DF) * PW + x / DF) * HDs;
                        const size_t t = ((size_t)h * N + (size_t)T + (size_t)y * W + x) * HDs;
                        for (int c = 0; c < HD; c++) {
                            pkh[p + c] += wt * k[t + c];
                            pvh[p + c] += wt * v[t + c];
                        }
                    }
            }
        }
    }

    /* work items per head: pass 1 (query strips) then pass 2 (key strips) */
    const size_t QB = (size_t)BW_L * BW_G;
    const size_t ntext = clear ? ((size_t)T + QB - 1) / QB : (N + QB - 1) / QB; /* rows==1 items */
    const size_t ntile = clear ? ((size_t)H + BW_TR - 1) / BW_TR : 0;           /* rows of tiles */
    const size_t npool = (NP + QB - 1) / QB;
    const size_t n1 = ntext + ntile, n2 = ntext + ntile + npool, per_head = n1 + n2;
    const size_t items = per_head * (size_t)NH;

#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        float *my_scr = scratch + z.scr * tid;
        bseg *sg = segs + z.maxseg * tid;
#pragma omp for schedule(dynamic, 1)
        for (size_t it = 0; it < items; it++) {
            const size_t h = it / per_head, s0 = it % per_head;
            const int pass = s0 < n1 ? 1 : 2;
            const size_t s = pass == 1 ? s0 : s0 - n1;
            const size_t hb = h * N * HDs; /* head base of [NH, N, HD] tensors */
            /* streamed side: pass 1 keys/values (+ pooled), pass 2 queries/dout/lse2/D */
            const bsrc src =
                pass == 1 ? (bsrc){k + hb, v + hb, NULL, NULL} : (bsrc){q + hb, dout + hb, lse2 + h * N, Dd + h * N};
            const float *a1 = pass == 1 ? q + hb : k + hb, *a2 = pass == 1 ? dout + hb : v + hb;
            float *o1 = pass == 1 ? dq + hb : dk + hb, *o2 = pass == 1 ? NULL : dv + hb;
            bjob jb;
            memset(&jb, 0, sizeof jb);
            jb.pass = pass;
            jb.hd = HD;
            jb.s1 = qs;
            jb.s_out = scale;
            jb.segs = sg;
            if (s < ntext) { /* dense, or CLEAR text: consecutive tokens over all N */
                const size_t t0 = s * QB, end = clear ? (size_t)T : N;
                jb.rows = jb.nrows = 1;
                jb.ncols = (int)(end - t0 < QB ? end - t0 : QB);
                jb.a1 = a1 + t0 * HDs;
                jb.a2 = a2 + t0 * HDs;
                jb.o1 = o1 + t0 * HDs;
                jb.o2 = o2 ? o2 + t0 * HDs : NULL;
                if (pass == 1) {
                    jb.la = lse2 + h * N + t0;
                    jb.lb = Dd + h * N + t0;
                }
                sg[0] = seg_rows(&src, 0, N, HD);
                jb.nseg = 1;
                kern(&jb, my_scr);
                continue;
            }
            if (s >= ntext + ntile) { /* pass 2, pooled keys: all image queries */
                const size_t p0 = (s - ntext - ntile) * QB;
                const size_t pb = h * NP * HDs;
                jb.rows = jb.nrows = 1;
                jb.ncols = (int)(NP - p0 < QB ? NP - p0 : QB);
                jb.a1 = pk + pb + p0 * HDs;
                jb.a2 = pv + pb + p0 * HDs;
                jb.o1 = dpk + pb + p0 * HDs;
                jb.o2 = dpv + pb + p0 * HDs;
                sg[0] = seg_rows(&src, (size_t)T, N - (size_t)T, HD);
                jb.nseg = 1;
                kern(&jb, my_scr);
                continue;
            }
            /* a row of image tiles, left to right (neighbours share most of their rows) */
            const int ty0 = (int)(s - ntext) * BW_TR;
            jb.rows = BW_TR;
            jb.nrows = H - ty0 < BW_TR ? H - ty0 : BW_TR;
            jb.rs = W;
            const int tc = BW_L / BW_TR;
            for (int tx0 = 0; tx0 < W; tx0 += tc) {
                jb.ncols = W - tx0 < tc ? W - tx0 : tc;
                const size_t t0 = (size_t)T + (size_t)ty0 * W + tx0;
                jb.a1 = a1 + t0 * HDs;
                jb.a2 = a2 + t0 * HDs;
                jb.o1 = o1 + t0 * HDs;
                jb.o2 = o2 ? o2 + t0 * HDs : NULL;
                if (pass == 1) {
                    jb.la = lse2 + h * N + t0;
                    jb.lb = Dd + h * N + t0;
                }
                int nseg = 0;
                if (T > 0) sg[nseg++] = seg_rows(&src, 0, (size_t)T, HD);
                nseg = disc_segs(sg, nseg, &src, &gm, ty0, jb.nrows, tx0, jb.ncols);
                if (pass == 1 && pooled) {
                    const bsrc ps = {pk + h * NP * HDs, pv + h * NP * HDs, NULL, NULL};
                    sg[nseg++] = seg_rows(&ps, 0, NP, HD);
                }
                jb.nseg = nseg;
                kern(&jb, my_scr);
            }
        }
    }

    if (pooled) {
        /* scatter the pooled keys' gradients into their cells; dw per head in double */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int h = 0; h < NH; h++) {
            double *dw = dwp + (size_t)h * DF * DF;
            for (int t = 0; t < DF * DF; t++) dw[t] = 0.0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const int ab = (y % DF) * DF + x % DF;
                    const float wt = sw[ab];
                    const size_t p = ((size_t)h * NP + (size_t)(y / DF) * PW + x / DF) * HDs;
                    const size_t t = ((size_t)h * N + (size_t)T + (size_t)y * W + x) * HDs;
                    double acc = 0.0;
                    for (int c = 0; c < HD; c++) {
                        dk[t + c] += wt * dpk[p + c];
                        dv[t + c] += wt * dpv[p + c];
                        acc += (double)dpk[p + c] * k[t + c] + (double)dpv[p + c] * v[t + c];
                    }
                    dw[ab] += acc;
                }
        }
        for (int t = 0; t < DF * DF; t++) {
            double s = 0.0;
            for (int h = 0; h < NH; h++) s += dwp[(size_t)h * DF * DF + t];
            dsw[t] += (float)s;
        }
    }
    return CD_OK;
}
