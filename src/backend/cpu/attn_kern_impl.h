/* attn_kern_impl.h — the CPU strip kernel, written once with GCC vector extensions and compiled
 * per instruction set by attn_kern_{generic,avx2,avx512}.c (CD_VL = f32 lanes per vector).
 *
 * One strip = up to 16 queries of one head, held as SIMD lanes. For every chunk of <= CD_KC keys:
 *   S[j][lane]  = sum_d K[j][d] * QT[d][lane]          (QK micro-kernel: broadcast K, vector Q)
 *   mask disc runs (lanes with |kx - qx| > hw get -inf)
 *   online softmax in base 2 (m, l per lane; OT rescaled only when a lane's max grows)
 *   OT[d][lane] += sum_j V[j][d] * P[j][lane]          (PV micro-kernel: broadcast V, vector P)
 * Both micro-kernels are register tiles of JR (or DR) rows x 16 lanes, reduction in the inner loop;
 * every operand is either a vector load from L1 scratch or a scalar broadcast from K/V rows, so the
 * inner loop is one FMA per (row, vector) with no shuffles and no horizontal reductions.
 * Not here: choosing which keys a strip sees (attn_cpu.c does that). */
#include "attn_kern.h"

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

/* 2^x for x <= 0 (arguments here are score - running max). x <= -127 (and -inf) gives exactly 0.
 * Round-to-nearest split x = n + f, |f| <= 1/2; degree-7 Taylor series of 2^f (relative error
 * < 6e-9, below f32 rounding); 2^n built in the exponent field. */
INLINE vf vexp2(vf x) {
    const vf lo = vsplat(-127.0f), magic = vsplat(12582912.0f); /* 1.5 * 2^23 */
    vi ok = x > lo;
    x = vsel(ok, x, lo);
    vf t = x + magic;
    vf n = t - magic;
    vf f = x - n;
    vi e = (((vi)t - (vi)magic) + 127) << 23;
    vf p = vsplat(1.525273380405984e-05f);
    p = p * f + 1.5403530393381606e-04f;
    p = p * f + 1.3333558146428443e-03f;
    p = p * f + 9.618129107628477e-03f;
    p = p * f + 5.550410866482158e-02f;
    p = p * f + 2.402265069591007e-01f;
    p = p * f + 6.931471805599453e-01f;
    p = p * f + 1.0f;
    return (vf)((vi)(p * (vf)e) & ok);
}

/* A contiguous run of key rows inside the current chunk, already f32. */
typedef struct {
    const float *k, *v; /* [n, HD] */
    int32_t n, masked, hw, off;
} piece;

static inline float ld_elem(const void *p, int bf16, size_t i) {
    if (bf16) {
        uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return ((const float *)p)[i];
}

/* S[j][:] = sum_d K[j][d] * QT[d][:] for j < n. */
INLINE void qk_rows(const float *K, int HD, int n, const vf *QT, vf *S) {
    int j = 0;
    for (; j + JR <= n; j += JR) {
        vf acc[JR][NV];
#pragma GCC unroll 64
        for (int r = 0; r < JR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = vsplat(0.0f);
        const float *kr = K + (size_t)j * HD;
        for (int d = 0; d < HD; d++) {
            vf q[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) q[v] = QT[d * NV + v];
#pragma GCC unroll 64
            for (int r = 0; r < JR; r++) {
                const float b = kr[(size_t)r * HD + d];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[r][v] += b * q[v];
            }
        }
#pragma GCC unroll 64
        for (int r = 0; r < JR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) S[(j + r) * NV + v] = acc[r][v];
    }
    for (; j < n; j++) {
        vf acc[NV];
        for (int v = 0; v < NV; v++) acc[v] = vsplat(0.0f);
        const float *kr = K + (size_t)j * HD;
        for (int d = 0; d < HD; d++)
            for (int v = 0; v < NV; v++) acc[v] += kr[d] * QT[d * NV + v];
        for (int v = 0; v < NV; v++) S[j * NV + v] = acc[v];
    }
}

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

/* Processes one chunk: scores, mask, online softmax update, P.V accumulation. */
INLINE void chunk(int HD, piece *pc, int np, int rows, const vf *QT, vf *S, vf *OT, sm_state *st,
                  float *kbuf, float *vbuf) {
    (void)kbuf; (void)vbuf;
    int row = 0;
    for (int p = 0; p < np; p++) {
        qk_rows(pc[p].k, HD, pc[p].n, QT, S + (size_t)row * NV);
        if (pc[p].masked) {
            /* key j of the run sits at lane-relative column c = off + j; lane i may see it iff
             * |c - i| <= hw, i.e. i in [c - hw, c + hw] */
            vi lane[NV];
            for (int v = 0; v < NV; v++)
                for (int e = 0; e < CD_VL; e++) lane[v][e] = v * CD_VL + e;
            const vf ninf = vsplat(-INFINITY);
            for (int j = 0; j < pc[p].n; j++) {
                const int c = pc[p].off + j;
                for (int v = 0; v < NV; v++) {
                    vi ok = (lane[v] >= c - pc[p].hw) & (lane[v] <= c + pc[p].hw);
                    S[(size_t)(row + j) * NV + v] = vsel(ok, S[(size_t)(row + j) * NV + v], ninf);
                }
            }
        }
        row += pc[p].n;
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

INLINE void strip(const cd_strip_job *job, float *scratch, const int HD) {
    vf *QT = (vf *)scratch;                  /* [HD][NV]   scaled queries, transposed */
    vf *OT = QT + (size_t)HD * NV;           /* [HD][NV]   running output, transposed */
    vf *S = OT + (size_t)HD * NV;            /* [KC][NV]   scores, then probabilities */
    float *kbuf = (float *)(S + CD_KC * NV); /* [KC][HD]   bf16 keys converted to f32 */
    float *vbuf = kbuf + (size_t)CD_KC * HD; /* [KC][HD]   bf16 values converted to f32 */
    piece *pc = (piece *)(vbuf + (size_t)CD_KC * HD); /* [KC] pieces of the current chunk */
    float *qt = (float *)QT;
    const int nq = job->nq;

    for (int d = 0; d < HD; d++)
        for (int i = 0; i < CD_STRIP; i++)
            qt[d * CD_STRIP + i] =
                i < nq ? ld_elem(job->q, job->q_bf16, (size_t)i * HD + d) * job->qscale : 0.0f;
    for (int d = 0; d < HD * NV; d++) OT[d] = vsplat(0.0f);
    sm_state st;
    for (int v = 0; v < NV; v++) {
        st.m[v] = vsplat(-FLT_MAX); /* finite: a fully masked chunk then yields exp2(-inf) = 0 */
        st.l[v] = vsplat(0.0f);
    }

    int np = 0, rows = 0;
    for (int s = 0; s < job->nseg; s++) {
        const cd_seg *sg = &job->segs[s];
        for (int done = 0; done < sg->n;) {
            const int take = sg->n - done < CD_KC - rows ? sg->n - done : CD_KC - rows;
            piece *p = &pc[np++];
            if (sg->bf16) { /* convert into the chunk's f32 staging rows */
                const uint16_t *ks = (const uint16_t *)sg->k + (size_t)done * HD;
                const uint16_t *vs = (const uint16_t *)sg->v + (size_t)done * HD;
                float *kd = kbuf + (size_t)rows * HD, *vd = vbuf + (size_t)rows * HD;
                for (size_t e = 0; e < (size_t)take * HD; e++) {
                    uint32_t uk = (uint32_t)ks[e] << 16, uv = (uint32_t)vs[e] << 16;
                    memcpy(&kd[e], &uk, 4);
                    memcpy(&vd[e], &uv, 4);
                }
                p->k = kd;
                p->v = vd;
            } else {
                p->k = (const float *)sg->k + (size_t)done * HD;
                p->v = (const float *)sg->v + (size_t)done * HD;
            }
            p->n = take;
            p->masked = sg->masked;
            p->hw = sg->hw;
            p->off = sg->off + done;
            rows += take;
            done += take;
            if (rows == CD_KC) {
                chunk(HD, pc, np, rows, QT, S, OT, &st, kbuf, vbuf);
                np = rows = 0;
            }
        }
    }
    if (rows) chunk(HD, pc, np, rows, QT, S, OT, &st, kbuf, vbuf);

    const float *ot = (const float *)OT, *mf = (const float *)st.m, *lf = (const float *)st.l;
    for (int i = 0; i < nq; i++) {
        const float inv = 1.0f / lf[i];
        float *o = job->o + (size_t)i * HD;
        for (int d = 0; d < HD; d++) o[d] = ot[d * CD_STRIP + i] * inv;
        if (job->lse) job->lse[i] = (mf[i] + log2f(lf[i])) * 0.69314718055994531f;
    }
}

void CD_KERN_NAME(const cd_strip_job *job, float *scratch) {
    switch (job->hd) { /* constant head_dim lets the compiler fully unroll the register tiles */
    case 128: strip(job, scratch, 128); break;
    case 64: strip(job, scratch, 64); break;
    default: strip(job, scratch, job->hd); break;
    }
}
