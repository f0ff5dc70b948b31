/* attn_kern_impl.h — the CPU strip kernel, written once with GCC vector extensions and compiled
 * per instruction set by attn_kern_{generic,avx2,avx512}.c (CD_VL = f32 lanes per vector).
 *
 * One strip = up to 16 queries of one head (a 1x16, 2x8 or 4x4 tile of the image grid, or 16
 * consecutive text/dense rows), held as SIMD lanes. For every chunk of <= CD_KC keys:
 *   S[j][lane]  = sum_d K[j][d] * QT[d][lane]          (QK micro-kernel: broadcast K, vector Q)
 *   mask disc runs (lane (ti, tj) keeps column c iff |c - tj| <= hw[ti], else -inf)
 *   online softmax in base 2 (m, l per lane; OT rescaled only when a lane's max grows)
 *   OT[d][lane] += sum_j V[j][d] * P[j][lane]          (PV micro-kernel: broadcast V, vector P)
 * Both micro-kernels are register tiles of JR (or DR) rows x 16 lanes, reduction in the inner loop;
 * every operand is either a vector load from L1 scratch or a scalar broadcast from K/V rows, so the
 * inner loop is one FMA per (row, vector) with no shuffles and no horizontal reductions.
 * Not here: choosing which keys a strip sees (attn_cpu.c does that). */
#include "attn_kern.h"
#include "simd_exp2.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define NV (CD_STRIP / CD_VL)
typedef float vf __attribute__((vector_size(CD_VL * 4)));
typedef int32_t vi __attribute__((vector_size(CD_VL * 4)));

/* Register tiles: accumulators JR*NV (QK) and DR*NV (PV) plus NV operand vectors must fit the
 * register file (32 zmm on AVX-512, 16 ymm/xmm otherwise). */
#if CD_VL == 16
#define JR 16
#define DR 16
#elif CD_VL == 8
#define JR 6
#define DR 6
#else
#define JR 2
#define DR 2
#endif

#define INLINE static inline __attribute__((always_inline))

INLINE vf vsplat(float x) { return (vf){0} + x; }
INLINE vf vsel(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
INLINE vf vmax(vf a, vf b) { return vsel(a > b, a, b); }

/* 2^x (simd_exp2.h); the arguments here are score - running max, so <= 0 or NaN (no upper
 * clamp), and every x <= -127, -inf or NaN gives exactly 0. */
CD_SIMD_EXP2(vexp2, vf, vi, 0)

/* A contiguous run of key rows inside the current chunk. */
typedef struct {
    const float *k, *v; /* [n, HD] f32 (bf16 sources: converted copies in the chunk buffers) */
    const uint16_t *kh; /* [n, HD] raw bf16 keys (dot_bf16 chunks), else NULL */
    int32_t n, masked, off, bf16;
    int32_t hw[CD_TILE_ROWS_MAX];
} piece;
_Static_assert(sizeof(piece) <= 64, "attn_cpu.c reserves 64 bytes of scratch per piece");

static inline float ld_elem(const void *p, int bf16, size_t i) {
    if (bf16) {
        uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return ((const float *)p)[i];
}

/* S[j][:] = sum_d K[j][d] * QT[d][:] for the J rows starting at K (J a compile-time constant:
 * J independent accumulator chains per vector). */
INLINE void qk_tile(const float *K, int HD, const vf *QT, vf *S, const int J) {
    vf acc[JR][NV];
#pragma GCC unroll 64
    for (int r = 0; r < J; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = vsplat(0.0f);
    for (int d = 0; d < HD; d++) {
        vf q[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) q[v] = QT[d * NV + v];
#pragma GCC unroll 64
        for (int r = 0; r < J; r++) {
            const float b = K[(size_t)r * HD + d];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] += b * q[v];
        }
    }
#pragma GCC unroll 64
    for (int r = 0; r < J; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) S[r * NV + v] = acc[r][v];
}

/* S rows for n keys: full JR tiles, then halving tiles so that short disc runs keep several
 * independent FMA chains in flight (a one-row tile would be FMA-latency bound). */
INLINE void qk_rows(const float *K, int HD, int n, const vf *QT, vf *S) {
    int j = 0;
    for (; j + JR <= n; j += JR) qk_tile(K + (size_t)j * HD, HD, QT, S + (size_t)j * NV, JR);
#if JR >= 16
    if (n - j >= 8) {
        qk_tile(K + (size_t)j * HD, HD, QT, S + (size_t)j * NV, 8);
        j += 8;
    }
#endif
#if JR >= 8
    if (n - j >= 4) {
        qk_tile(K + (size_t)j * HD, HD, QT, S + (size_t)j * NV, 4);
        j += 4;
    }
#endif
#if JR >= 4
    if (n - j >= 2) {
        qk_tile(K + (size_t)j * HD, HD, QT, S + (size_t)j * NV, 2);
        j += 2;
    }
#endif
#if JR == 6
    if (n - j >= 3) {
        qk_tile(K + (size_t)j * HD, HD, QT, S + (size_t)j * NV, 3);
        j += 3;
    }
    if (n - j >= 2) {
        qk_tile(K + (size_t)j * HD, HD, QT, S + (size_t)j * NV, 2);
        j += 2;
    }
#endif
    for (; j < n; j++) qk_tile(K + (size_t)j * HD, HD, QT, S + (size_t)j * NV, 1);
}

/* dst[i] = f32(src[i]) for n bf16 values (vectorized; bf16 is the upper half of an f32). */
INLINE void cvt_bf16(float *dst, const uint16_t *src, size_t n) {
    typedef uint16_t vh __attribute__((vector_size(CD_VL * 2)));
    typedef uint32_t vu __attribute__((vector_size(CD_VL * 4)));
    size_t i = 0;
    for (; i + CD_VL <= n; i += CD_VL) {
        vh h;
        memcpy(&h, src + i, sizeof h);
        vu w = __builtin_convertvector(h, vu) << 16;
        memcpy(dst + i, &w, sizeof w);
    }
    for (; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, 4);
    }
}

#if CD_VL == 16 && defined(__AVX512BF16__)
#include <immintrin.h>
#define HAVE_DOT_BF16 1
/* S[j] = qs * sum_d K[j][d] Q[d] for J rows of raw bf16 keys: vdpbf16ps multiplies bf16 pairs
 * exactly and accumulates in f32 (twice the products per instruction of the f32 path, and no key
 * conversion). QT2[p] holds lane i's (Q[i][2p], Q[i][2p+1]). */
INLINE void qk_tile_bf16(const uint16_t *K, int HD, const __m512bh *QT2, vf *S, float qs, const int J) {
    __m512 acc[JR];
#pragma GCC unroll 16
    for (int r = 0; r < J; r++) acc[r] = _mm512_setzero_ps();
    for (int p = 0; p < HD / 2; p++) {
        const __m512bh q = QT2[p];
#pragma GCC unroll 16
        for (int r = 0; r < J; r++) {
            int32_t pair;
            memcpy(&pair, K + (size_t)r * HD + 2 * p, 4);
            acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32(pair), q);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < J; r++) S[r] = (vf)acc[r] * qs;
}

INLINE void qk_rows_bf16(const uint16_t *K, int HD, int n, const __m512bh *QT2, vf *S, float qs) {
    int j = 0;
    for (; j + 16 <= n; j += 16) qk_tile_bf16(K + (size_t)j * HD, HD, QT2, S + j, qs, 16);
    if (n - j >= 8) {
        qk_tile_bf16(K + (size_t)j * HD, HD, QT2, S + j, qs, 8);
        j += 8;
    }
    if (n - j >= 4) {
        qk_tile_bf16(K + (size_t)j * HD, HD, QT2, S + j, qs, 4);
        j += 4;
    }
    if (n - j >= 2) {
        qk_tile_bf16(K + (size_t)j * HD, HD, QT2, S + j, qs, 2);
        j += 2;
    }
    if (n - j >= 1) qk_tile_bf16(K + (size_t)j * HD, HD, QT2, S + j, qs, 1);
}
#else
#define HAVE_DOT_BF16 0
#endif

/* OT[d][:] += sum over the chunk's rows j of V[j][d] * P[j][:]. */
INLINE void pv_rows(const piece *pc, int np, int HD, const vf *P, vf *OT) {
    int d0 = 0;
    for (; d0 + DR <= HD; d0 += DR) {
        vf acc[DR][NV];
#pragma GCC unroll 64
        for (int r = 0; r < DR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = OT[(d0 + r) * NV + v];
        const vf *pj = P;
        for (int p = 0; p < np; p++) {
            const float *vr = pc[p].v + d0;
            for (int j = 0; j < pc[p].n; j++, pj += NV, vr += HD) {
                vf pp[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) pp[v] = pj[v];
#pragma GCC unroll 64
                for (int r = 0; r < DR; r++) {
                    const float b = vr[r];
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) acc[r][v] += b * pp[v];
                }
            }
        }
#pragma GCC unroll 64
        for (int r = 0; r < DR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) OT[(d0 + r) * NV + v] = acc[r][v];
    }
    for (; d0 < HD; d0++) {
        vf acc[NV];
        for (int v = 0; v < NV; v++) acc[v] = OT[d0 * NV + v];
        const vf *pj = P;
        for (int p = 0; p < np; p++) {
            const float *vr = pc[p].v + d0;
            for (int j = 0; j < pc[p].n; j++, pj += NV, vr += HD)
                for (int v = 0; v < NV; v++) acc[v] += *vr * pj[v];
        }
        for (int v = 0; v < NV; v++) OT[d0 * NV + v] = acc[v];
    }
}

/* Running state of one strip. */
typedef struct {
    vf m[NV], l[NV]; /* base-2 running max and sum per lane */
} sm_state;

/* Mask, online softmax update and P.V for one strip whose scores for the chunk are in S. */
INLINE void chunk_softmax_pv(int HD, piece *pc, int np, int rows, vf *S, vf *OT, sm_state *st, int bcols) {
    int row = 0;
    for (int p = 0; p < np; row += pc[p].n, p++) {
        if (!pc[p].masked) continue;
        /* lane (ti, tj) sees key column c (relative to the tile) iff |c - tj| <= hw[ti] */
        vi col[NV], hwv[NV];
        for (int v = 0; v < NV; v++)
            for (int e = 0; e < CD_VL; e++) {
                const int lane = v * CD_VL + e;
                col[v][e] = lane % bcols;
                hwv[v][e] = pc[p].hw[lane / bcols];
            }
        const vf ninf = vsplat(-INFINITY);
        for (int j = 0; j < pc[p].n; j++) {
            const int c = pc[p].off + j;
            for (int v = 0; v < NV; v++) {
                vi ok = (col[v] >= c - hwv[v]) & (col[v] <= c + hwv[v]);
                S[(size_t)(row + j) * NV + v] = vsel(ok, S[(size_t)(row + j) * NV + v], ninf);
            }
        }
    }
    int grew = 0;
    vf alpha[NV];
    for (int v = 0; v < NV; v++) {
        vf cmax = vsplat(-INFINITY);
        for (int j = 0; j < rows; j++) cmax = vmax(cmax, S[j * NV + v]);
        vf mnew = vmax(st->m[v], cmax);
        alpha[v] = vexp2(st->m[v] - mnew);
        vi changed = mnew > st->m[v];
        for (int e = 0; e < CD_VL; e++) grew |= changed[e];
        st->m[v] = mnew;
        st->l[v] *= alpha[v];
    }
    if (grew)
        for (int d = 0; d < HD; d++)
            for (int v = 0; v < NV; v++) OT[d * NV + v] *= alpha[v];
    for (int v = 0; v < NV; v++) {
        vf sum = vsplat(0.0f);
        for (int j = 0; j < rows; j++) {
            vf p = vexp2(S[j * NV + v] - st->m[v]);
            S[j * NV + v] = p;
            sum += p;
        }
        st->l[v] += sum;
    }
    pv_rows(pc, np, HD, S, OT);
}

/* Processes one chunk: scores, mask, online softmax update, P.V accumulation. K of a chunk made
 * of several runs is gathered into kbuf first, so the QK tiles run full-height across run
 * boundaries instead of falling into short remainder tiles at the end of every run. */
INLINE void chunk(int HD, piece *pc, int np, int rows, int G, const vf *QTall, const void *QT2all, float qs, vf *S,
                  vf *OTall, sm_state *stall, float *kbuf, int bcols) {
    /* the chunk's keys, gathered once and shared by the G strips of the job */
    const void *K = pc[0].kh ? (const void *)pc[0].kh : (const void *)pc[0].k;
    if (pc[0].kh && np > 1) {
        uint16_t *kb = (uint16_t *)kbuf;
        int row = 0;
        for (int p = 0; p < np; row += pc[p].n, p++)
            memcpy(kb + (size_t)row * HD, pc[p].kh, sizeof(uint16_t) * (size_t)pc[p].n * HD);
        K = kb;
    } else if (!pc[0].kh && (np > 1 || pc[0].bf16)) {
        int row = 0;
        for (int p = 0; p < np; row += pc[p].n, p++)
            if (!pc[p].bf16) /* bf16 pieces were converted into place already */
                memcpy(kbuf + (size_t)row * HD, pc[p].k, sizeof(float) * (size_t)pc[p].n * HD);
        K = kbuf;
    }
    for (int g = 0; g < G; g++) {
        const vf *QT = QTall + (size_t)g * HD * NV;
        vf *OT = OTall + (size_t)g * HD * NV;
        sm_state *st = &stall[g];
#if HAVE_DOT_BF16
        if (pc[0].kh)
            qk_rows_bf16((const uint16_t *)K, HD, rows, (const __m512bh *)QT2all + (size_t)g * (HD / 2), S, qs);
        else
#endif
            qk_rows((const float *)K, HD, rows, QT, S);
        (void)QT2all;
        (void)qs;
        chunk_softmax_pv(HD, pc, np, rows, S, OT, st, bcols);
    }
}

INLINE void strip(const cd_strip_job *job, float *scratch, const int HD) {
    /* G strips share every key chunk: 16-row strips of a rows == 1 job (up to CD_GROUP), else 1 */
    const int G = job->rows == 1 ? (job->ncols + CD_STRIP - 1) / CD_STRIP : 1;
    vf *QT = (vf *)scratch;                           /* [G][HD][NV] scaled queries, transposed */
    vf *OT = QT + (size_t)CD_GROUP * HD * NV;         /* [G][HD][NV] running outputs, transposed */
    vf *S = OT + (size_t)CD_GROUP * HD * NV;          /* [KC][NV]    scores, then probabilities */
    float *kbuf = (float *)(S + CD_KC * NV);          /* [KC][HD]    the chunk's keys, contiguous */
    float *vbuf = kbuf + (size_t)CD_KC * HD;          /* [KC][HD]    bf16 values converted to f32 */
    piece *pc = (piece *)(vbuf + (size_t)CD_KC * HD); /* [KC] pieces of the current chunk */
    uint16_t *qt2 = (uint16_t *)(pc + CD_KC);         /* [G][HD/2][16][2] raw bf16 query pairs */
    const int dot = HAVE_DOT_BF16 && job->dot_bf16 && job->q_bf16 && HD % 2 == 0;
    const int bcols = CD_STRIP / job->rows;
    /* token offset of lane i of strip g from the job's first query, and whether it is a query:
     * rows == 1: consecutive tokens; else lane i is tile row i / bcols, column i % bcols */
#define LANE_TOK(g, i)                                   \
    (job->rows == 1 ? (size_t)(g)*CD_STRIP + (size_t)(i) \
                    : (size_t)((i) / bcols) * (size_t)job->q_rs + (size_t)((i) % bcols))
#define LANE_OK(g, i) \
    (job->rows == 1 ? (g)*CD_STRIP + (i) < job->ncols : (i) / bcols < job->nrows && (i) % bcols < job->ncols)

    sm_state st[CD_GROUP];
    for (int g = 0; g < G; g++) {
        float *qt = (float *)(QT + (size_t)g * HD * NV);
        uint16_t *q2 = qt2 + (size_t)g * HD * CD_STRIP;
        for (int i = 0; i < CD_STRIP; i++) {
            const int ok = LANE_OK(g, i);
            const size_t base = ok ? LANE_TOK(g, i) * HD : 0;
            for (int d = 0; d < HD; d++)
                qt[d * CD_STRIP + i] = ok ? ld_elem(job->q, job->q_bf16, base + d) * job->qscale : 0.0f;
            if (dot)
                for (int d = 0; d < HD; d++)
                    q2[((d >> 1) * CD_STRIP + i) * 2 + (d & 1)] = ok ? ((const uint16_t *)job->q)[base + d] : 0;
        }
        for (int d = 0; d < HD * NV; d++) OT[(size_t)g * HD * NV + d] = vsplat(0.0f);
        for (int v = 0; v < NV; v++) {
            st[g].m[v] = vsplat(-FLT_MAX); /* finite: a fully masked chunk gives exp2(-inf) = 0 */
            st[g].l[v] = vsplat(0.0f);
        }
    }

    int np = 0, rows = 0;
    for (int s = 0; s < job->nseg; s++) {
        const cd_seg *sg = &job->segs[s];
        for (int done = 0; done < sg->n;) {
            const int pdot = dot && sg->bf16;         /* this piece's keys go through vdpbf16ps */
            if (rows && pdot != (pc[0].kh != NULL)) { /* a chunk holds one kind of QK */
                chunk(HD, pc, np, rows, G, QT, qt2, job->qscale, S, OT, st, kbuf, bcols);
                np = rows = 0;
            }
            const int take = sg->n - done < CD_KC - rows ? sg->n - done : CD_KC - rows;
            piece *p = &pc[np++];
            p->kh = NULL;
            if (sg->bf16) { /* values (and keys unless pdot) converted into the chunk's f32 rows */
                const uint16_t *ks = (const uint16_t *)sg->k + (size_t)done * HD;
                const uint16_t *vs = (const uint16_t *)sg->v + (size_t)done * HD;
                float *kd = kbuf + (size_t)rows * HD, *vd = vbuf + (size_t)rows * HD;
                cvt_bf16(vd, vs, (size_t)take * HD);
                if (pdot)
                    p->kh = ks;
                else
                    cvt_bf16(kd, ks, (size_t)take * HD);
                p->k = kd;
                p->v = vd;
            } else {
                p->k = (const float *)sg->k + (size_t)done * HD;
                p->v = (const float *)sg->v + (size_t)done * HD;
            }
            p->n = take;
            p->bf16 = sg->bf16;
            p->masked = sg->masked;
            p->off = sg->off + done;
            for (int t = 0; t < CD_TILE_ROWS_MAX; t++) p->hw[t] = sg->hw[t];
            rows += take;
            done += take;
            if (rows == CD_KC) {
                chunk(HD, pc, np, rows, G, QT, qt2, job->qscale, S, OT, st, kbuf, bcols);
                np = rows = 0;
            }
        }
    }
    if (rows) chunk(HD, pc, np, rows, G, QT, qt2, job->qscale, S, OT, st, kbuf, bcols);

    for (int g = 0; g < G; g++) {
        const float *ot = (const float *)(OT + (size_t)g * HD * NV);
        const float *mf = (const float *)st[g].m, *lf = (const float *)st[g].l;
        for (int i = 0; i < CD_STRIP; i++) {
            if (!LANE_OK(g, i)) continue;
            const float inv = 1.0f / lf[i];
            float *o = job->o + LANE_TOK(g, i) * HD;
            for (int d = 0; d < HD; d++) o[d] = ot[d * CD_STRIP + i] * inv;
            if (job->lse) job->lse[LANE_TOK(g, i)] = (mf[i] + log2f(lf[i])) * 0.69314718055994531f;
        }
    }
#undef LANE_TOK
#undef LANE_OK
}

void CD_KERN_NAME(const cd_strip_job *job, float *scratch) {
    switch (job->hd) { /* constant head_dim lets the compiler fully unroll the register tiles */
        case 128: strip(job, scratch, 128); break;
        case 64: strip(job, scratch, 64); break;
        default: strip(job, scratch, job->hd); break;
    }
}
