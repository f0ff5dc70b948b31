/* attn_ref.c — reference attention: plain loops, double accumulation, the mask written out as
 * the definition in docs/clear.md says it. The oracle every fast kernel is tested against; it is
 * O(N) memory but O(N^2) time, so it is meant for test-sized inputs. */
#include "../../ops/attn.h"

#include <math.h>
#include <stdlib.h>

static double load(cd_dtype dt, const void *p, size_t i) {
    return dt == CD_DTYPE_BF16 ? (double)cd_bf16_to_f32(((const uint16_t *)p)[i]) : (double)((const float *)p)[i];
}

/* May query row i (joint index) attend to key column j (joint index, j < N)? */
static int allowed(const cd_attn_desc *d, int64_t i, int64_t j) {
    const int64_t T = d->text_len, W = d->grid_w, r = d->radius;
    if (r <= 0 || i < T || j < T) return 1;
    int64_t qy = (i - T) / W, qx = (i - T) % W, ky = (j - T) / W, kx = (j - T) % W;
    int64_t dy = qy - ky, dx = qx - kx;
    return dy * dy + dx * dx < r * r;
}

cd_status cd_attn_reference_run(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                                const void *v, const float *sw, float *o, float *lse) {
    const int64_t T = d->text_len, HD = d->head_dim;
    const int64_t N = (int64_t)cd_attn_tokens(d);
    const int pooled = cd_attn_pooled(d);
    const int64_t DF = pooled ? d->down : 1;
    const int64_t PH = d->grid_h / DF, PW = d->grid_w / DF, NP = pooled ? PH * PW : 0;
    const double scale = (double)cd_attn_scale(d);

    double *s = malloc(sizeof(double) * (size_t)(N + NP));
    double *pk = pooled ? calloc((size_t)(NP * HD), sizeof(double)) : NULL; /* [NP, HD] */
    double *pv = pooled ? calloc((size_t)(NP * HD), sizeof(double)) : NULL;
    double *acc = malloc(sizeof(double) * (size_t)HD);
    if (!s || !acc || (pooled && (!pk || !pv))) {
        free(s);
        free(pk);
        free(pv);
        free(acc);
        return cd_set_error(ctx, CD_ERR_OOM, "attention reference: out of memory");
    }
    for (int64_t h = 0; h < d->heads; h++) {
        const size_t base = (size_t)(h * N * HD);
        if (pooled) { /* pooled token (cy, cx) = sum_{a,b} w[a][b] * token (cy*DF+a, cx*DF+b) */
            for (int64_t t = 0; t < NP * HD; t++) pk[t] = pv[t] = 0.0;
            for (int64_t y = 0; y < d->grid_h; y++)
                for (int64_t x = 0; x < d->grid_w; x++) {
                    const double wt = sw[(y % DF) * DF + (x % DF)];
                    const int64_t p = (y / DF) * PW + x / DF, j = T + y * d->grid_w + x;
                    for (int64_t c = 0; c < HD; c++) {
                        pk[p * HD + c] += wt * load(dt, k, base + (size_t)(j * HD + c));
                        pv[p * HD + c] += wt * load(dt, v, base + (size_t)(j * HD + c));
                    }
                }
        }
        for (int64_t i = 0; i < N; i++) {
            const int with_pool = pooled && i >= T;
            double m = -INFINITY;
            for (int64_t j = 0; j < N + (with_pool ? NP : 0); j++) {
                if (j < N && !allowed(d, i, j)) {
                    s[j] = -INFINITY;
                    continue;
                }
                double dot = 0.0;
                for (int64_t c = 0; c < HD; c++) {
                    double kj = j < N ? load(dt, k, base + (size_t)(j * HD + c)) : pk[(j - N) * HD + c];
                    dot += load(dt, q, base + (size_t)(i * HD + c)) * kj;
                }
                s[j] = dot * scale;
                if (s[j] > m) m = s[j];
            }
            double l = 0.0;
            for (int64_t c = 0; c < HD; c++) acc[c] = 0.0;
            for (int64_t j = 0; j < N + (with_pool ? NP : 0); j++) {
                if (s[j] == -INFINITY) continue;
                double p = exp(s[j] - m);
                l += p;
                for (int64_t c = 0; c < HD; c++)
                    acc[c] += p * (j < N ? load(dt, v, base + (size_t)(j * HD + c)) : pv[(j - N) * HD + c]);
            }
            for (int64_t c = 0; c < HD; c++) o[base + (size_t)(i * HD + c)] = (float)(acc[c] / l);
            if (lse) lse[(size_t)(h * N + i)] = (float)(m + log(l));
        }
    }
    free(s);
    free(pk);
    free(pv);
    free(acc);
    return CD_OK;
}
