/* attn_bwd_ref.c — reference attention backward: plain loops, double accumulation, the mask
 * written out as the definition in docs/clear.md says it (the same predicate as attn_ref.c).
 * The oracle the fast backward (attn_bwd_cpu.c) is tested against. O(N^2) time, O(N * HD) memory
 * (double accumulators of dk', dv' for the N + pooled keys of one head): for test-sized inputs.
 * The formulas are in attn_bwd.h. */
#include "attn_bwd.h"

#include <math.h>
#include <stdlib.h>

/* May query row i (joint index) attend to key column j (joint index, j < N)? (= attn_ref.c) */
static int allowed(const cd_attn_desc *d, int64_t i, int64_t j) {
    const int64_t T = d->text_len, W = d->grid_w, r = d->radius;
    if (r <= 0 || i < T || j < T) return 1;
    int64_t qy = (i - T) / W, qx = (i - T) % W, ky = (j - T) / W, kx = (j - T) % W;
    int64_t dy = qy - ky, dx = qx - kx;
    return dy * dy + dx * dx < r * r;
}

cd_status cd_attn_bwd_reference_run(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                                    const float *sw, const float *o, const float *lse, const float *dout, float *dq,
                                    float *dk, float *dv, float *dsw) {
    const int64_t T = d->text_len, HD = d->head_dim, W = d->grid_w;
    const int64_t N = (int64_t)cd_attn_tokens(d);
    const int pooled = cd_attn_pooled(d);
    const int64_t DF = pooled ? d->down : 1;
    const int64_t PW = W / DF, NP = pooled ? (d->grid_h / DF) * PW : 0;
    const double scale = (double)cd_attn_scale(d);
    const size_t nk = (size_t)(N + NP);

    double *pk = malloc(sizeof(double) * (size_t)(NP * HD + 1)); /* [NP, HD] pooled k', v' */
    double *pv = malloc(sizeof(double) * (size_t)(NP * HD + 1));
    double *gk = malloc(sizeof(double) * nk * (size_t)HD);  /* [N + NP, HD] sum_i dS_ij q_i */
    double *gv = malloc(sizeof(double) * nk * (size_t)HD);  /* [N + NP, HD] sum_i P_ij dout_i */
    double *gq = malloc(sizeof(double) * (size_t)HD);       /* [HD] sum_j dS_ij k'_j */
    double *dw = calloc((size_t)(DF * DF), sizeof(double)); /* [DF, DF] */
    if (!pk || !pv || !gk || !gv || !gq || !dw) {
        free(pk);
        free(pv);
        free(gk);
        free(gv);
        free(gq);
        free(dw);
        return cd_set_error(ctx, CD_ERR_OOM, "attention backward reference: out of memory");
    }
    for (int64_t h = 0; h < d->heads; h++) {
        const size_t base = (size_t)(h * N * HD);
        const float *qh = q + base, *kh = k + base, *vh = v + base, *oh = o + base, *gh = dout + base;
        const float *lh = lse + (size_t)(h * N);
        if (pooled) { /* pooled token (cy, cx) = sum_{a,b} w[a][b] * token (cy*DF+a, cx*DF+b) */
            for (int64_t t = 0; t < NP * HD; t++) pk[t] = pv[t] = 0.0;
            for (int64_t y = 0; y < d->grid_h; y++)
                for (int64_t x = 0; x < W; x++) {
                    const double wt = sw[(y % DF) * DF + (x % DF)];
                    const int64_t p = (y / DF) * PW + x / DF, j = T + y * W + x;
                    for (int64_t c = 0; c < HD; c++) {
                        pk[p * HD + c] += wt * kh[j * HD + c];
                        pv[p * HD + c] += wt * vh[j * HD + c];
                    }
                }
        }
        for (size_t t = 0; t < nk * (size_t)HD; t++) gk[t] = gv[t] = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const int with_pool = pooled && i >= T;
            double D = 0.0;
            for (int64_t c = 0; c < HD; c++) D += (double)gh[i * HD + c] * oh[i * HD + c];
            for (int64_t c = 0; c < HD; c++) gq[c] = 0.0;
            for (int64_t j = 0; j < N + (with_pool ? NP : 0); j++) {
                if (j < N && !allowed(d, i, j)) continue;
                const double *pkj = j < N ? NULL : pk + (j - N) * HD;
                const double *pvj = j < N ? NULL : pv + (j - N) * HD;
                double s = 0.0, dp = 0.0;
                for (int64_t c = 0; c < HD; c++) {
                    s += (double)qh[i * HD + c] * (pkj ? pkj[c] : (double)kh[j * HD + c]);
                    dp += (double)gh[i * HD + c] * (pvj ? pvj[c] : (double)vh[j * HD + c]);
                }
                const double p = exp(s * scale - (double)lh[i]);
                const double ds = p * (dp - D);
                for (int64_t c = 0; c < HD; c++) {
                    gq[c] += ds * (pkj ? pkj[c] : (double)kh[j * HD + c]);
                    gk[j * HD + c] += ds * qh[i * HD + c];
                    gv[j * HD + c] += p * gh[i * HD + c];
                }
            }
            for (int64_t c = 0; c < HD; c++) dq[base + (size_t)(i * HD + c)] = (float)(scale * gq[c]);
        }
        /* image token j of cell p, position (a, b): its own gradient plus w[a][b] times the
         * pooled key's; dw[a][b] collects dk'_p . k_j + dv'_p . v_j */
        for (int64_t j = 0; j < N; j++) {
            const int64_t y = (j - T) / W, x = (j - T) % W;
            const int pj = pooled && j >= T;
            const int64_t ab = pj ? (y % DF) * DF + x % DF : 0;
            const double *gkp = pj ? gk + (N + (y / DF) * PW + x / DF) * HD : NULL;
            const double *gvp = pj ? gv + (N + (y / DF) * PW + x / DF) * HD : NULL;
            const double wt = pj ? (double)sw[ab] : 0.0;
            for (int64_t c = 0; c < HD; c++) {
                double gkc = gk[j * HD + c], gvc = gv[j * HD + c];
                if (pj) {
                    gkc += wt * gkp[c];
                    gvc += wt * gvp[c];
                    dw[ab] += scale * gkp[c] * kh[j * HD + c] + gvp[c] * vh[j * HD + c];
                }
                dk[base + (size_t)(j * HD + c)] = (float)(scale * gkc);
                dv[base + (size_t)(j * HD + c)] = (float)gvc;
            }
        }
    }
    if (pooled)
        for (int64_t t = 0; t < DF * DF; t++) dsw[t] += (float)dw[t];
    free(pk);
    free(pv);
    free(gk);
    free(gv);
    free(gq);
    free(dw);
    return CD_OK;
}
