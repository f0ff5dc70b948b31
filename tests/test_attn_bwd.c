/* test_attn_bwd.c — the attention backward (cd_attention_backward and its reference), dense,
 * CLEAR and pooled CLEAR:
 *  a) the reference against central finite differences of L = sum(dout * O), O from a float64
 *     forward written here (its own mask, from docs/clear.md), on tiny shapes, for q, k, v and
 *     spatial_weight;
 *  b) the fast backward against the reference on random inputs for every SIMD path this machine
 *     runs (dense, CLEAR, pooled, T = 0, 1 x W grids, huge r, head_dim 1..128, several chunks
 *     and strips), with guard regions around every output and dspatial_weight accumulation;
 *  c) both against PyTorch autograd fixtures (tests/oracle/attention_bwd_fixtures.py, in
 *     tests/fixtures/attention_bwd/), fed the fixture's o/lse and the library forward's;
 *  d) bit-identical gradients on 1, 2 and 3 threads; argument errors.
 * attn_bwd_bench (CD_ATTN_BWD_BENCH=1) times backward vs forward (BENCHMARKS.md).
 *
 * Tolerance (derived, not tuned). Every gradient element is a sum of terms
 *   dq_i = scale sum_j dS_ij k'_j,  dk'_j = scale sum_i dS_ij q_i,  dv'_j = sum_i P_ij dout_i,
 *   dS_ij = P_ij (dP_ij - D_i),  P_ij = exp(s_ij - lse_i),  dP_ij = dout_i.v'_j,  D_i = dout_i.o_i.
 * In f32 (unit roundoff u = 2^-24): P has relative error <~ u (|s_ij| + |lse_i|) (rounding of the
 * score and of lse, both inputs of the exponential; |s_ij| <= M_s = scale sum_c |q_ic k'_jc|),
 * dP and D absolute errors <~ HD u |dout_i|_2 (|v'_j|_2 + |o_i|_2), and each sum of L terms adds
 * <~ L u times the sum of its absolute terms. So with the "magnitude" of an element, the same sum
 * with every term replaced by its absolute value and |dP - D| by |dP| + |D| + |dout|_2(|v'|_2 +
 * |o|_2) (computed here in float64 from the exact forward), the error is below
 *   u (HD + L + M) * magnitude,   L = longest sum (keys per query, queries per key),
 *   M = max over pairs of M_s + |lse|,
 * a worst-case bound (errors add up with random signs in practice). We allow 16 times it, per
 * element. A wrong mask entry or a lost term moves an element by about magnitude / L, far above
 * it. The float64 reference with f32 o/lse/outputs obeys the same bound; finite differences (float64,
 * h = 1e-5) add ~1e-9 relative, covered by 1e-8 (1 + max|g|). Pooled keys: the magnitude of a
 * token's dk/dv adds |w| times its cell's, that of dw[a][b] sums |dk'| |k| + |dv'| |v| magnitudes. */
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleardit.h"

#define GUARD 32
#define SENTINEL -777.25f
#define TOLF 16.0
#define U32 (1.0 / 16777216.0)
#define BWD_FIXTURE_DIR "tests/fixtures/attention_bwd"
#define BWD_MIN_FIXTURES 8
#define BWD_REGEN "run 'python3 tests/oracle/attention_bwd_fixtures.py' from the repository root"

/* ---- problem: f32 inputs of one backward call ------------------------------------------- */

typedef struct {
    cd_attn_desc d;
    int N, NP, NK, DF; /* tokens, pooled tokens, keys of an image row (N + NP) */
    double scale;      /* the library's: f32 1/sqrt(HD) unless given */
    size_t n, nl;      /* elements of q (and of every [NH, N, HD] tensor), of lse */
    float *q, *k, *v, *sw, *dout, *o, *lse;
} prob;

static void prob_free(prob *p) {
    free(p->q);
    free(p->k);
    free(p->v);
    free(p->sw);
    free(p->dout);
    free(p->o);
    free(p->lse);
    memset(p, 0, sizeof *p);
}

/* Sizes from p->d; allocates (uninitialised) inputs. */
static int prob_alloc(prob *p) {
    const cd_attn_desc *d = &p->d;
    p->N = d->text_len + d->grid_h * d->grid_w;
    p->DF = d->radius > 0 && d->down >= 2 ? d->down : 0;
    p->NP = p->DF ? (d->grid_h / p->DF) * (d->grid_w / p->DF) : 0;
    p->NK = p->N + p->NP;
    p->scale = d->scale != 0.0f ? (double)d->scale : (double)(1.0f / sqrtf((float)d->head_dim));
    p->n = (size_t)d->heads * p->N * d->head_dim;
    p->nl = (size_t)d->heads * p->N;
    p->q = malloc(p->n * sizeof(float));
    p->k = malloc(p->n * sizeof(float));
    p->v = malloc(p->n * sizeof(float));
    p->dout = malloc(p->n * sizeof(float));
    p->o = malloc(p->n * sizeof(float));
    p->lse = malloc(p->nl * sizeof(float));
    p->sw = p->DF ? malloc(sizeof(float) * p->DF * p->DF) : NULL;
    return p->q && p->k && p->v && p->dout && p->o && p->lse && (!p->DF || p->sw);
}

/* Random inputs (never zero: uniform in [-amp, amp) has no exact zeros in practice). */
static int prob_random(prob *p, const cd_attn_desc *d, float amp, unsigned long long seed) {
    memset(p, 0, sizeof *p);
    p->d = *d;
    if (!prob_alloc(p)) return 0;
    test_rng g = test_rng_seed(seed);
    for (size_t i = 0; i < p->n; i++) {
        p->q[i] = amp * test_rng_f(&g);
        p->k[i] = amp * test_rng_f(&g);
        p->v[i] = test_rng_f(&g);
        p->dout[i] = test_rng_f(&g);
    }
    for (int i = 0; i < p->DF * p->DF; i++) p->sw[i] = (1.0f + 0.5f * test_rng_f(&g)) / (float)(p->DF * p->DF);
    return 1;
}

/* The mask, written from docs/clear.md: may query i see joint key j (j >= N: pooled)? */
static int sees(const prob *p, int i, int j) {
    const int T = p->d.text_len, W = p->d.grid_w;
    if (j >= p->N) return p->DF && i >= T;
    if (p->d.radius <= 0 || i < T || j < T) return 1;
    const long dy = (i - T) / W - (j - T) / W, dx = (i - T) % W - (j - T) % W;
    return dy * dy + dx * dx < (long)p->d.radius * p->d.radius;
}

/* Joint keys (or values) of head h in float64: [NK, HD], pooled cells appended. */
static void joint64(const prob *p, const double *x, const double *sw, int h, double *out) {
    const int HD = p->d.head_dim, T = p->d.text_len, W = p->d.grid_w, DF = p->DF;
    memcpy(out, x + (size_t)h * p->N * HD, sizeof(double) * (size_t)p->N * HD);
    if (!DF) return;
    memset(out + (size_t)p->N * HD, 0, sizeof(double) * (size_t)p->NP * HD);
    for (int y = 0; y < p->d.grid_h; y++)
        for (int x0 = 0; x0 < W; x0++) {
            const double w = sw[(y % DF) * DF + x0 % DF];
            double *dst = out + ((size_t)p->N + (size_t)(y / DF) * (W / DF) + x0 / DF) * HD;
            const double *src = x + ((size_t)h * p->N + T + (size_t)y * W + x0) * HD;
            for (int c = 0; c < HD; c++) dst[c] += w * src[c];
        }
}

/* float64 forward: o [NH, N, HD], lse [NH, N] (either may be NULL); returns sum(dout * o). */
static double fwd64(const prob *p, const double *q, const double *k, const double *v, const double *sw,
                    const double *dout, double *o, double *lse) {
    const int HD = p->d.head_dim, N = p->N, NK = p->NK;
    double *kk = malloc(sizeof(double) * (size_t)NK * HD), *vv = malloc(sizeof(double) * (size_t)NK * HD);
    double *s = malloc(sizeof(double) * NK), *acc = malloc(sizeof(double) * HD);
    double loss = 0.0;
    if (!kk || !vv || !s || !acc) {
        loss = NAN;
        goto out;
    }
    for (int h = 0; h < p->d.heads; h++) {
        joint64(p, k, sw, h, kk);
        joint64(p, v, sw, h, vv);
        for (int i = 0; i < N; i++) {
            const double *qi = q + ((size_t)h * N + i) * HD;
            double m = -INFINITY, l = 0.0;
            for (int j = 0; j < NK; j++) {
                s[j] = -INFINITY;
                if (!sees(p, i, j)) continue;
                double dot = 0.0;
                for (int c = 0; c < HD; c++) dot += qi[c] * kk[(size_t)j * HD + c];
                s[j] = p->scale * dot;
                m = fmax(m, s[j]);
            }
            for (int c = 0; c < HD; c++) acc[c] = 0.0;
            for (int j = 0; j < NK; j++) {
                if (s[j] == -INFINITY) continue;
                const double e = exp(s[j] - m);
                l += e;
                for (int c = 0; c < HD; c++) acc[c] += e * vv[(size_t)j * HD + c];
            }
            const size_t row = ((size_t)h * N + i) * HD;
            for (int c = 0; c < HD; c++) {
                if (o) o[row + c] = acc[c] / l;
                if (dout) loss += dout[row + c] * acc[c] / l;
            }
            if (lse) lse[(size_t)h * N + i] = m + log(l);
        }
    }
out:
    free(kk);
    free(vv);
    free(s);
    free(acc);
    return loss;
}

static double *to64(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    if (y)
        for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

/* The exact forward's o, lse rounded to f32 into p->o, p->lse. */
static int prob_exact_forward(prob *p) {
    double *q = to64(p->q, p->n), *k = to64(p->k, p->n), *v = to64(p->v, p->n);
    double *sw = p->DF ? to64(p->sw, (size_t)p->DF * p->DF) : NULL;
    double *o = malloc(sizeof(double) * p->n), *lse = malloc(sizeof(double) * p->nl);
    int ok = q && k && v && o && lse && (!p->DF || sw);
    if (ok) {
        fwd64(p, q, k, v, sw, NULL, o, lse);
        for (size_t i = 0; i < p->n; i++) p->o[i] = (float)o[i];
        for (size_t i = 0; i < p->nl; i++) p->lse[i] = (float)lse[i];
    }
    free(q);
    free(k);
    free(v);
    free(sw);
    free(o);
    free(lse);
    return ok;
}

/* ---- magnitudes (see the header): per element of dq, dk, dv, dsw, and the factor u(HD+L+M) -- */

typedef struct {
    double *dq, *dk, *dv, dsw[64];
    double unit; /* u (HD + L + M) */
} mags;

static void mags_free(mags *m) {
    free(m->dq);
    free(m->dk);
    free(m->dv);
}

static int mags_compute(const prob *p, mags *mg) {
    const int HD = p->d.head_dim, N = p->N, NK = p->NK, T = p->d.text_len, W = p->d.grid_w, DF = p->DF;
    memset(mg, 0, sizeof *mg);
    mg->dq = calloc(p->n, sizeof(double));
    mg->dk = calloc(p->n, sizeof(double));
    mg->dv = calloc(p->n, sizeof(double));
    double *q = to64(p->q, p->n), *k = to64(p->k, p->n), *v = to64(p->v, p->n), *g = to64(p->dout, p->n);
    double *sw = DF ? to64(p->sw, (size_t)DF * DF) : NULL;
    double *o = malloc(sizeof(double) * p->n), *lse = malloc(sizeof(double) * p->nl);
    double *kk = malloc(sizeof(double) * (size_t)NK * HD), *vv = malloc(sizeof(double) * (size_t)NK * HD);
    double *mk = malloc(sizeof(double) * (size_t)NK * HD), *mv = malloc(sizeof(double) * (size_t)NK * HD);
    int *cnt = calloc((size_t)NK, sizeof(int));
    int ok = mg->dq && mg->dk && mg->dv && q && k && v && g && (!DF || sw) && o && lse && kk && vv && mk && mv && cnt;
    if (!ok) goto out;
    fwd64(p, q, k, v, sw, NULL, o, lse);
    double L = 0, M = 0;
    for (int h = 0; h < p->d.heads; h++) {
        joint64(p, k, sw, h, kk);
        joint64(p, v, sw, h, vv);
        memset(mk, 0, sizeof(double) * (size_t)NK * HD);
        memset(mv, 0, sizeof(double) * (size_t)NK * HD);
        memset(cnt, 0, sizeof(int) * (size_t)NK);
        for (int i = 0; i < N; i++) {
            const size_t row = ((size_t)h * N + i) * HD;
            double D = 0, nd = 0, no = 0;
            for (int c = 0; c < HD; c++) {
                D += g[row + c] * o[row + c];
                nd += g[row + c] * g[row + c];
                no += o[row + c] * o[row + c];
            }
            nd = sqrt(nd);
            no = sqrt(no);
            int nkeys = 0;
            for (int j = 0; j < NK; j++) {
                if (!sees(p, i, j)) continue;
                nkeys++;
                cnt[j]++;
                const double *kj = kk + (size_t)j * HD, *vj = vv + (size_t)j * HD;
                double s = 0, sa = 0, dp = 0, nv = 0;
                for (int c = 0; c < HD; c++) {
                    s += q[row + c] * kj[c];
                    sa += fabs(q[row + c] * kj[c]);
                    dp += g[row + c] * vj[c];
                    nv += vj[c] * vj[c];
                }
                const double P = exp(p->scale * s - lse[(size_t)h * N + i]);
                const double E = P * (fabs(dp) + fabs(D) + nd * (sqrt(nv) + no));
                M = fmax(M, p->scale * sa + fabs(lse[(size_t)h * N + i]));
                for (int c = 0; c < HD; c++) {
                    mg->dq[row + c] += p->scale * E * fabs(kj[c]);
                    mk[(size_t)j * HD + c] += p->scale * E * fabs(q[row + c]);
                    mv[(size_t)j * HD + c] += P * fabs(g[row + c]);
                }
            }
            L = fmax(L, nkeys);
        }
        for (int j = 0; j < NK; j++) L = fmax(L, cnt[j]);
        for (int j = 0; j < N; j++) {
            const size_t row = ((size_t)h * N + j) * HD;
            for (int c = 0; c < HD; c++) {
                mg->dk[row + c] = mk[(size_t)j * HD + c];
                mg->dv[row + c] = mv[(size_t)j * HD + c];
            }
            if (!DF || j < T) continue;
            const int y = (j - T) / W, x = (j - T) % W, ab = (y % DF) * DF + x % DF;
            const size_t cell = ((size_t)N + (size_t)(y / DF) * (W / DF) + x / DF) * HD;
            for (int c = 0; c < HD; c++) {
                mg->dk[row + c] += fabs(sw[ab]) * mk[cell + c];
                mg->dv[row + c] += fabs(sw[ab]) * mv[cell + c];
                mg->dsw[ab] += mk[cell + c] * fabs(k[row + c]) + mv[cell + c] * fabs(v[row + c]);
            }
        }
    }
    mg->unit = U32 * (HD + L + M);
out:
    free(q);
    free(k);
    free(v);
    free(g);
    free(sw);
    free(o);
    free(lse);
    free(kk);
    free(vv);
    free(mk);
    free(mv);
    free(cnt);
    if (!ok) mags_free(mg);
    return ok;
}

/* ---- comparisons ----------------------------------------------------------------------- */

/* |got - want| <= TOLF * unit * mag + extra for every element; the worst err/tol ratio goes to
 * *ratio (max-ed). 0 with a message on failure. */
static double g_worst_rel; /* verbose report: worst max|got - want| / max|want| of a tensor */

static int cmp_grad(const char *what, const float *got, const double *want, const double *mag, size_t n, double unit,
                    double extra, double *ratio, char *msg, size_t ml) {
    double worst = 0, emax = 0, wmax = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        emax = fmax(emax, fabs((double)got[i] - want[i]));
        wmax = fmax(wmax, fabs(want[i]));
        if (!isfinite(got[i])) {
            snprintf(msg, ml, "%s[%zu] = %g is not finite", what, i, got[i]);
            return 0;
        }
        const double tol = TOLF * unit * mag[i] + extra + 1e-30;
        const double r = fabs((double)got[i] - want[i]) / tol;
        if (r > worst) {
            worst = r;
            wi = i;
        }
    }
    if (ratio && worst > *ratio) *ratio = worst;
    if (wmax > 0 && emax / wmax > g_worst_rel) g_worst_rel = emax / wmax;
    if (worst > 1.0) {
        snprintf(msg, ml, "%s[%zu]: got %.9g, want %.9g (|err| %.3g, %.2f x tol %.3g)", what, wi, got[wi], want[wi],
                 fabs((double)got[wi] - want[wi]), worst, TOLF * unit * mag[wi] + extra);
        return 0;
    }
    return 1;
}

static int cmp_grad_f(const char *what, const float *got, const float *want, const double *mag, size_t n, double unit,
                      double extra, double *ratio, char *msg, size_t ml) {
    double *w = to64(want, n);
    int ok = w && cmp_grad(what, got, w, mag, n, unit, extra, ratio, msg, ml);
    free(w);
    return ok;
}

/* ---- gradient buffers with guard regions ---------------------------------------------- */

typedef struct {
    float *dq, *dk, *dv, *dsw; /* interior pointers (GUARD floats of sentinel on each side) */
    size_t n, nw;
} grads;

static float *guarded(size_t n) {
    float *b = malloc(sizeof(float) * (n + 2 * GUARD));
    if (!b) return NULL;
    for (size_t i = 0; i < n + 2 * GUARD; i++) b[i] = SENTINEL;
    return b + GUARD;
}

static int guard_intact(const float *x, size_t n) {
    for (int i = 0; i < GUARD; i++)
        if (x[-1 - i] != SENTINEL || x[n + i] != SENTINEL) return 0;
    return 1;
}

static void grads_free(grads *g) {
    if (g->dq) free(g->dq - GUARD);
    if (g->dk) free(g->dk - GUARD);
    if (g->dv) free(g->dv - GUARD);
    if (g->dsw) free(g->dsw - GUARD);
    memset(g, 0, sizeof *g);
}

/* dq, dk, dv full of sentinels (must be overwritten), dsw = 0.25 + 0.01 i (must be added to). */
static int grads_alloc(grads *g, const prob *p) {
    memset(g, 0, sizeof *g);
    g->n = p->n;
    g->nw = (size_t)p->DF * p->DF;
    g->dq = guarded(g->n);
    g->dk = guarded(g->n);
    g->dv = guarded(g->n);
    g->dsw = guarded(g->nw ? g->nw : 1);
    if (!g->dq || !g->dk || !g->dv || !g->dsw) return 0;
    for (size_t i = 0; i < g->nw; i++) g->dsw[i] = 0.25f + 0.01f * (float)i;
    return 1;
}

static int grads_guards_ok(const grads *g) {
    return guard_intact(g->dq, g->n) && guard_intact(g->dk, g->n) && guard_intact(g->dv, g->n) &&
           guard_intact(g->dsw, g->nw ? g->nw : 1);
}

/* dsw minus its initial value (what the call added), as double. */
static void dsw_added(const grads *g, double *out) {
    for (size_t i = 0; i < g->nw; i++) out[i] = (double)g->dsw[i] - (double)(0.25f + 0.01f * (float)i);
}

static cd_status run_bwd(cd_ctx *ctx, const prob *p, int ref, grads *g) {
    return (ref ? cd_attention_backward_reference : cd_attention_backward)(
        ctx, &p->d, p->q, p->k, p->v, p->sw, p->o, p->lse, p->dout, g->dq, g->dk, g->dv, p->DF ? g->dsw : NULL);
}

/* Compares g (dsw: what it added) with the wanted gradients (want_dsw: added) within the bound. */
static int cmp_all(const grads *g, const float *wq, const float *wk, const float *wv, const double *want_dsw,
                   const mags *mg, double *ratio, char *msg, size_t ml) {
    if (!cmp_grad_f("dq", g->dq, wq, mg->dq, g->n, mg->unit, 0, ratio, msg, ml) ||
        !cmp_grad_f("dk", g->dk, wk, mg->dk, g->n, mg->unit, 0, ratio, msg, ml) ||
        !cmp_grad_f("dv", g->dv, wv, mg->dv, g->n, mg->unit, 0, ratio, msg, ml))
        return 0;
    if (g->nw) {
        double added[64];
        dsw_added(g, added);
        /* the f32 accumulator itself rounds once: u (|init| + |sum|) */
        for (size_t i = 0; i < g->nw; i++) {
            const double tol = TOLF * mg->unit * mg->dsw[i] + 2 * U32 * (1.0 + fabs(want_dsw[i]));
            const double e = fabs(added[i] - want_dsw[i]);
            if (ratio && e / tol > *ratio) *ratio = e / tol;
            if (e > tol) {
                snprintf(msg, ml, "dspatial_weight[%zu]: added %.9g, want %.9g (tol %.3g)", i, added[i], want_dsw[i],
                         tol);
                return 0;
            }
        }
    }
    if (!grads_guards_ok(g)) {
        snprintf(msg, ml, "a write outside dq/dk/dv/dspatial_weight (guard region changed)");
        return 0;
    }
    return 1;
}

static cd_ctx *make_ctx(int threads, cd_isa isa) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = {threads, isa};
    return cd_ctx_create(&p, &ctx) == CD_OK ? ctx : NULL;
}

/* ---- a) reference vs finite differences ------------------------------------------------ */

typedef struct {
    int nh, hd, T, H, W, r, down;
} fd_shape;

static int fd_case(const fd_shape *s, unsigned long long seed, double *ratio, char *msg, size_t ml) {
    cd_attn_desc d = {s->nh, s->hd, s->T, s->H, s->W, s->r, s->down, 0.0f};
    prob p;
    grads g;
    mags mg;
    memset(&g, 0, sizeof g);
    memset(&mg, 0, sizeof mg);
    cd_ctx *ctx = make_ctx(1, CD_ISA_AUTO);
    double *x[4] = {0}, *fd = NULL;
    int ok = 0;
    if (!ctx || !prob_random(&p, &d, 1.5f, seed) || !prob_exact_forward(&p) || !grads_alloc(&g, &p) ||
        !mags_compute(&p, &mg)) {
        snprintf(msg, ml, "setup failed");
        goto out;
    }
    if (run_bwd(ctx, &p, 1, &g) != CD_OK) {
        snprintf(msg, ml, "reference: %s", cd_ctx_error(ctx));
        goto out;
    }
    x[0] = to64(p.q, p.n);
    x[1] = to64(p.k, p.n);
    x[2] = to64(p.v, p.n);
    x[3] = p.DF ? to64(p.sw, (size_t)p.DF * p.DF) : NULL;
    double *gd = to64(p.dout, p.n);
    fd = malloc(sizeof(double) * p.n);
    if (!x[0] || !x[1] || !x[2] || (p.DF && !x[3]) || !gd || !fd) {
        free(gd);
        snprintf(msg, ml, "out of memory");
        goto out;
    }
    const double h = 1e-5;
    static const char *names[4] = {"dq", "dk", "dv", "dspatial_weight"};
    const float *got[3] = {g.dq, g.dk, g.dv};
    const double *mag[3] = {mg.dq, mg.dk, mg.dv};
    ok = 1;
    for (int t = 0; t < 4 && ok; t++) {
        const size_t n = t < 3 ? p.n : (size_t)p.DF * p.DF;
        if (!n) continue;
        double fmax_abs = 0;
        for (size_t i = 0; i < n; i++) {
            const double x0 = x[t][i];
            x[t][i] = x0 + h;
            const double lp = fwd64(&p, x[0], x[1], x[2], x[3], gd, NULL, NULL);
            x[t][i] = x0 - h;
            const double lm = fwd64(&p, x[0], x[1], x[2], x[3], gd, NULL, NULL);
            x[t][i] = x0;
            fd[i] = (lp - lm) / (2 * h);
            fmax_abs = fmax(fmax_abs, fabs(fd[i]));
        }
        const double extra = 1e-8 * (1.0 + fmax_abs);
        if (t < 3) {
            ok = cmp_grad(names[t], got[t], fd, mag[t], n, mg.unit, extra, ratio, msg, ml);
        } else {
            double added[64];
            dsw_added(&g, added);
            for (size_t i = 0; i < n && ok; i++) {
                const double tol = TOLF * mg.unit * mg.dsw[i] + extra + 2 * U32 * (1 + fabs(fd[i]));
                const double e = fabs(added[i] - fd[i]);
                if (e / tol > *ratio) *ratio = e / tol;
                if (e > tol) {
                    snprintf(msg, ml, "dspatial_weight[%zu]: %.9g vs finite difference %.9g", i, added[i], fd[i]);
                    ok = 0;
                }
            }
        }
    }
    free(gd);
    if (ok && !grads_guards_ok(&g)) {
        snprintf(msg, ml, "guard region changed");
        ok = 0;
    }
out:
    for (int t = 0; t < 4; t++) free(x[t]);
    free(fd);
    mags_free(&mg);
    grads_free(&g);
    prob_free(&p);
    cd_ctx_free(ctx);
    return ok;
}

TEST(attn_bwd_reference_vs_finite_differences) {
    static const fd_shape shapes[] = {
        {2, 4, 2, 3, 4, 0, 0}, /* dense */
        {1, 8, 3, 4, 4, 2, 0}, /* CLEAR r = 2 */
        {1, 6, 3, 3, 4, 2, 0}, /* CLEAR r = 2 on 3 x 4 */
        {2, 4, 2, 4, 4, 2, 2}, /* pooled r = 2, d = 2 (dspatial_weight too) */
        {1, 5, 3, 4, 4, 2, 2}, /* pooled, odd head_dim */
    };
    double ratio = 0;
    g_worst_rel = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char msg[512];
        EXPECT(fd_case(&shapes[i], 100 + i, &ratio, msg, sizeof msg), "shape %zu: %s", i, msg);
    }
    if (getenv("CD_ATTN_BWD_VERBOSE"))
        printf("  finite differences: worst err/tol %.3g, worst max|err|/max|g| %.3g\n", ratio, g_worst_rel);
}

/* ---- b) fast vs reference -------------------------------------------------------------- */

typedef struct {
    int nh, hd, T, H, W, r, down;
    float scale, amp;
} rshape;

static const rshape k_rshapes[] = {
    {2, 64, 5, 6, 7, 0, 0, 0, 1.0f},     /* dense */
    {2, 64, 7, 12, 13, 0, 0, 0, 1.0f},   /* dense, 163 tokens: several strips and chunks */
    {2, 64, 5, 7, 10, 3, 0, 0, 1.0f},    /* CLEAR r = 3 */
    {2, 32, 4, 6, 8, 2, 2, 0, 1.0f},     /* pooled r = 2, d = 2 */
    {1, 16, 3, 6, 9, 4, 3, 0, 1.5f},     /* pooled d = 3 */
    {2, 48, 70, 12, 12, 3, 2, 0, 1.0f},  /* T = 70 (two text strips), pooled, 36 pooled keys */
    {1, 16, 0, 5, 6, 3, 0, 0, 1.0f},     /* T = 0 */
    {1, 64, 2, 1, 20, 3, 0, 0, 1.0f},    /* 1 x 20 grid */
    {1, 64, 0, 20, 1, 3, 0, 0, 1.0f},    /* 20 x 1 grid */
    {2, 32, 3, 4, 5, 1000, 0, 0, 1.0f},  /* r huge: disc covers the grid */
    {1, 32, 3, 4, 6, 1000, 2, 0, 1.0f},  /* r huge, pooled */
    {1, 128, 3, 8, 9, 4, 0, 0, 1.0f},    /* head_dim 128 */
    {1, 128, 2, 4, 4, 0, 0, 0, 1.0f},    /* dense head_dim 128 */
    {1, 1, 2, 3, 5, 2, 0, 0, 2.0f},      /* head_dim 1 */
    {1, 13, 3, 5, 5, 1, 0, 0, 1.0f},     /* r = 1 (only the token itself), odd head_dim */
    {1, 24, 4, 9, 11, 5, 0, 0.3f, 3.0f}, /* explicit scale, peaky softmax */
    {1, 64, 9, 16, 16, 8, 4, 0, 1.0f},   /* r = 8, d = 4 (the released configuration) */
    {1, 16, 2, 18, 20, 3, 2, 0, 1.0f},   /* 90 pooled keys: two pooled strips */
    {1, 200, 2, 3, 3, 2, 0, 0, 1.0f},    /* head_dim 200 (generic register tiles) */
};

/* One shape: the forward's o/lse and the reference once, then the fast backward on every SIMD
 * path this machine runs (2 threads). */
static void fast_vs_ref(size_t idx, const rshape *s, double *ratio, int *paths) {
    static const cd_isa isas[] = {CD_ISA_GENERIC, CD_ISA_AVX2, CD_ISA_AVX512};
    cd_attn_desc d = {s->nh, s->hd, s->T, s->H, s->W, s->r, s->down, s->scale};
    prob p;
    grads gr;
    mags mg;
    char msg[512];
    memset(&gr, 0, sizeof gr);
    memset(&mg, 0, sizeof mg);
    cd_ctx *ctx = make_ctx(2, CD_ISA_AUTO);
    int ok = ctx && prob_random(&p, &d, s->amp, 7 + (unsigned long long)s->hd * 31 + s->W) && grads_alloc(&gr, &p) &&
             mags_compute(&p, &mg);
    EXPECT(ok, "shape %zu: setup failed", idx);
    if (ok && (cd_attention_forward(ctx, &p.d, CD_DTYPE_F32, p.q, p.k, p.v, p.sw, p.o, p.lse) != CD_OK ||
               run_bwd(ctx, &p, 1, &gr) != CD_OK)) {
        test_fail(__FILE__, __LINE__, "shape %zu: %s", idx, cd_ctx_error(ctx));
        ok = 0;
    }
    EXPECT(!ok || grads_guards_ok(&gr), "shape %zu: the reference wrote outside its outputs", idx);
    double want_dsw[64];
    if (ok) dsw_added(&gr, want_dsw);
    for (size_t j = 0; ok && j < sizeof isas / sizeof isas[0]; j++) {
        if (!cd_isa_supported(isas[j])) continue;
        if (idx == 0) (*paths)++;
        cd_ctx *c = make_ctx(2, isas[j]);
        grads gf;
        memset(&gf, 0, sizeof gf);
        if (!c || !grads_alloc(&gf, &p) || run_bwd(c, &p, 0, &gf) != CD_OK)
            test_fail(__FILE__, __LINE__, "%s shape %zu: call failed: %s", cd_isa_name(isas[j]), idx,
                      c ? cd_ctx_error(c) : "context");
        else
            EXPECT(cmp_all(&gf, gr.dq, gr.dk, gr.dv, want_dsw, &mg, ratio, msg, sizeof msg), "%s shape %zu: %s",
                   cd_isa_name(isas[j]), idx, msg);
        grads_free(&gf);
        cd_ctx_free(c);
    }
    mags_free(&mg);
    grads_free(&gr);
    prob_free(&p);
    cd_ctx_free(ctx);
}

TEST(attn_bwd_fast_vs_reference) {
    double ratio = 0;
    int paths = 0;
    g_worst_rel = 0;
    for (size_t i = 0; i < sizeof k_rshapes / sizeof k_rshapes[0]; i++) fast_vs_ref(i, &k_rshapes[i], &ratio, &paths);
    /* every path the CPU (or the CLEARDIT_ISA cap) supports ran: generic always, SIMD where present */
    int want = 0;
    for (int k = CD_ISA_GENERIC; k < CD_ISA_COUNT; k++) want += cd_isa_supported((cd_isa)k);
    EXPECT(paths == want && paths >= 1, "%d ISA path(s) ran of the %d supported", paths, want);
    if (getenv("CD_ATTN_BWD_VERBOSE"))
        printf("  fast vs reference: worst err/tol %.3g, worst max|err|/max|g| %.3g\n", ratio, g_worst_rel);
}

/* The reference with a disc covering the grid runs the same loops as dense: same bits. */
TEST(attn_bwd_reference_huge_radius_is_dense) {
    cd_attn_desc dd = {2, 16, 3, 4, 5, 0, 0, 0.0f}, dc = dd;
    dc.radius = 50;
    prob p;
    grads a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    cd_ctx *ctx = make_ctx(1, CD_ISA_AUTO);
    int ok =
        ctx && prob_random(&p, &dd, 1.0f, 5) && prob_exact_forward(&p) && grads_alloc(&a, &p) && grads_alloc(&b, &p);
    if (ok) {
        EXPECT(run_bwd(ctx, &p, 1, &a) == CD_OK, "dense: %s", cd_ctx_error(ctx));
        p.d = dc;
        EXPECT(run_bwd(ctx, &p, 1, &b) == CD_OK, "r = 50: %s", cd_ctx_error(ctx));
        EXPECT(!memcmp(a.dq, b.dq, p.n * 4) && !memcmp(a.dk, b.dk, p.n * 4) && !memcmp(a.dv, b.dv, p.n * 4),
               "CLEAR with a disc covering the grid differs from dense");
    }
    grads_free(&a);
    grads_free(&b);
    prob_free(&p);
    cd_ctx_free(ctx);
    CHECK(ok, "setup failed");
}

/* ---- c) PyTorch autograd fixtures ------------------------------------------------------ */

static int bwd_cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int bwd_list(char **names, int cap) {
    DIR *dir = opendir(BWD_FIXTURE_DIR);
    if (!dir) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && n < cap) {
        size_t len = strlen(e->d_name);
        if (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")) names[n++] = strdup(e->d_name);
    }
    closedir(dir);
    qsort(names, (size_t)n, sizeof names[0], bwd_cmp_name);
    return n;
}

static int meta_i32(const cd_st_file *f, const char *key, int32_t *out) {
    const char *s = cd_st_meta(f, key);
    if (!s || !*s) return 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > INT32_MAX) return 0;
    *out = (int32_t)x;
    return 1;
}

/* A fixture: the problem (q, k, v, sw, dout, o, lse from the file) and the expected gradients. */
typedef struct {
    prob p;
    float *dq, *dk, *dv, *dsw;
    unsigned long long pairs;
} bfix;

static void bfix_free(bfix *x) {
    prob_free(&x->p);
    free(x->dq);
    free(x->dk);
    free(x->dv);
    free(x->dsw);
    memset(x, 0, sizeof *x);
}

/* Copies tensor `name` (F32, `numel` elements) into dst. */
static int take(const cd_st_file *f, const char *name, size_t numel, float *dst, char *msg, size_t ml) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t || t->dtype != CD_DTYPE_F32 || t->nbytes != numel * sizeof(float)) {
        snprintf(msg, ml, "tensor '%s' missing, not F32 or not %zu elements", name, numel);
        return 0;
    }
    memcpy(dst, t->data, t->nbytes);
    return 1;
}

static int bfix_load(cd_ctx *ctx, const char *path, bfix *x, char *msg, size_t ml) {
    memset(x, 0, sizeof *x);
    cd_st_file *f = NULL;
    if (cd_st_open(ctx, path, &f) != CD_OK) {
        snprintf(msg, ml, "cannot open: %s", cd_ctx_error(ctx));
        return 0;
    }
    int ok = 0;
    int32_t T, H, W, r, down;
    const cd_st_tensor *tq = cd_st_find(f, "q");
    const char *gen = cd_st_meta(f, "generator"), *sc = cd_st_meta(f, "scale");
    const char *pairs = cd_st_meta(f, "allowed_pairs_per_head");
    if (!meta_i32(f, "text_len", &T) || !meta_i32(f, "grid_h", &H) || !meta_i32(f, "grid_w", &W) ||
        !meta_i32(f, "radius", &r) || !meta_i32(f, "down", &down) || !sc || !pairs || !gen ||
        !strstr(gen, "attention_bwd_fixtures.py") || !tq || tq->ndim != 3 ||
        tq->shape[1] != (int64_t)T + (int64_t)H * W) {
        snprintf(msg, ml, "metadata or q malformed (not written by attention_bwd_fixtures.py?)");
        goto out;
    }
    x->p.d = (cd_attn_desc){(int32_t)tq->shape[0], (int32_t)tq->shape[2], T, H, W, r, down, (float)strtod(sc, NULL)};
    x->pairs = strtoull(pairs, NULL, 10);
    if (!prob_alloc(&x->p)) {
        snprintf(msg, ml, "out of memory");
        goto out;
    }
    const size_t n = x->p.n, nw = (size_t)x->p.DF * x->p.DF;
    x->dq = malloc(n * 4);
    x->dk = malloc(n * 4);
    x->dv = malloc(n * 4);
    x->dsw = malloc((nw ? nw : 1) * 4);
    if (!x->dq || !x->dk || !x->dv || !x->dsw) {
        snprintf(msg, ml, "out of memory");
        goto out;
    }
    ok = take(f, "q", n, x->p.q, msg, ml) && take(f, "k", n, x->p.k, msg, ml) && take(f, "v", n, x->p.v, msg, ml) &&
         take(f, "dout", n, x->p.dout, msg, ml) && take(f, "o", n, x->p.o, msg, ml) &&
         take(f, "lse", x->p.nl, x->p.lse, msg, ml) && take(f, "dq", n, x->dq, msg, ml) &&
         take(f, "dk", n, x->dk, msg, ml) && take(f, "dv", n, x->dv, msg, ml) &&
         (!nw || (take(f, "spatial_weight", nw, x->p.sw, msg, ml) && take(f, "dspatial_weight", nw, x->dsw, msg, ml)));
out:
    cd_st_close(f);
    if (!ok) bfix_free(x);
    return ok;
}

/* One backend (isa / ref) on fixture x, with o/lse from the fixture (lib = 0) or from
 * cd_attention_forward (lib = 1). */
static int bfix_check(bfix *x, const mags *mg, cd_isa isa, int ref, int lib, double *ratio, char *msg, size_t ml) {
    prob p = x->p; /* shallow: o/lse replaced below when lib */
    float *o = NULL, *lse = NULL;
    grads g;
    cd_ctx *ctx = make_ctx(2, isa);
    int ok = 0;
    if (!ctx || !grads_alloc(&g, &p)) {
        snprintf(msg, ml, "setup failed");
        goto out;
    }
    if (lib) {
        o = malloc(p.n * 4);
        lse = malloc(p.nl * 4);
        if (!o || !lse || cd_attention_forward(ctx, &p.d, CD_DTYPE_F32, p.q, p.k, p.v, p.sw, o, lse) != CD_OK) {
            snprintf(msg, ml, "forward failed: %s", cd_ctx_error(ctx));
            goto out;
        }
        p.o = o;
        p.lse = lse;
    }
    if (run_bwd(ctx, &p, ref, &g) != CD_OK) {
        snprintf(msg, ml, "backward failed: %s", cd_ctx_error(ctx));
        goto out;
    }
    double want_dsw[64] = {0};
    for (size_t i = 0; i < g.nw; i++) want_dsw[i] = x->dsw[i];
    ok = cmp_all(&g, x->dq, x->dk, x->dv, want_dsw, mg, ratio, msg, ml);
out:
    free(o);
    free(lse);
    grads_free(&g);
    cd_ctx_free(ctx);
    return ok;
}

TEST(attn_bwd_oracle_fixtures) {
    char *names[64];
    int n = bwd_list(names, 64);
    CHECK(n >= 0, "fixture directory %s not found (run from the repository root; " BWD_REGEN ")", BWD_FIXTURE_DIR);
    EXPECT(n >= BWD_MIN_FIXTURES, "only %d fixtures in %s, expected >= %d: " BWD_REGEN, n, BWD_FIXTURE_DIR,
           BWD_MIN_FIXTURES);
    cd_ctx *ctx = make_ctx(1, CD_ISA_AUTO);
    static const cd_isa isas[] = {CD_ISA_GENERIC, CD_ISA_AVX2, CD_ISA_AVX512};
    double ratio = 0;
    g_worst_rel = 0;
    for (int i = 0; i < n && ctx; i++) {
        char path[512], msg[512];
        snprintf(path, sizeof path, "%s/%s", BWD_FIXTURE_DIR, names[i]);
        bfix x;
        mags mg;
        if (!bfix_load(ctx, path, &x, msg, sizeof msg)) {
            test_fail(__FILE__, __LINE__, "%s: %s", path, msg);
            continue;
        }
        if (!mags_compute(&x.p, &mg)) {
            bfix_free(&x);
            test_fail(__FILE__, __LINE__, "%s: out of memory", path);
            continue;
        }
        EXPECT(cd_attn_pairs(&x.p.d) == x.pairs, "%s: cd_attn_pairs %llu != %llu in the fixture's mask", names[i],
               (unsigned long long)cd_attn_pairs(&x.p.d), x.pairs);
        for (int lib = 0; lib < 2; lib++) {
            EXPECT(bfix_check(&x, &mg, CD_ISA_AUTO, 1, lib, &ratio, msg, sizeof msg),
                   "%s [reference, o/lse from %s]: %s", names[i], lib ? "the library" : "the fixture", msg);
            for (size_t j = 0; j < sizeof isas / sizeof isas[0]; j++)
                if (cd_isa_supported(isas[j]))
                    EXPECT(bfix_check(&x, &mg, isas[j], 0, lib, &ratio, msg, sizeof msg), "%s [%s, o/lse from %s]: %s",
                           names[i], cd_isa_name(isas[j]), lib ? "the library" : "the fixture", msg);
        }
        mags_free(&mg);
        bfix_free(&x);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    cd_ctx_free(ctx);
    if (getenv("CD_ATTN_BWD_VERBOSE"))
        printf("  autograd fixtures: worst err/tol %.3g, worst max|err|/max|g| %.3g\n", ratio, g_worst_rel);
}

/* ---- d) determinism, errors ------------------------------------------------------------ */

TEST(attn_bwd_deterministic_across_threads) {
    static const cd_attn_desc ds[] = {
        {3, 64, 70, 12, 12, 3, 2, 0.0f}, /* pooled CLEAR, two text strips */
        {2, 32, 5, 10, 13, 0, 0, 0.0f},  /* dense, 135 tokens */
        {1, 16, 3, 9, 7, 4, 0, 0.0f},
    };
    for (size_t c = 0; c < sizeof ds / sizeof ds[0]; c++) {
        prob p;
        grads g[3];
        memset(g, 0, sizeof g);
        int ok = prob_random(&p, &ds[c], 1.0f, 40 + c);
        cd_ctx *ctx[3] = {make_ctx(1, CD_ISA_AUTO), make_ctx(2, CD_ISA_AUTO), make_ctx(3, CD_ISA_AUTO)};
        ok = ok && ctx[0] && ctx[1] && ctx[2] &&
             cd_attention_forward(ctx[0], &p.d, CD_DTYPE_F32, p.q, p.k, p.v, p.sw, p.o, p.lse) == CD_OK;
        for (int t = 0; t < 3 && ok; t++) ok = grads_alloc(&g[t], &p) && run_bwd(ctx[t], &p, 0, &g[t]) == CD_OK;
        EXPECT(ok, "case %zu: setup or call failed", c);
        for (int t = 1; t < 3 && ok; t++)
            EXPECT(!memcmp(g[0].dq, g[t].dq, p.n * 4) && !memcmp(g[0].dk, g[t].dk, p.n * 4) &&
                       !memcmp(g[0].dv, g[t].dv, p.n * 4) && !memcmp(g[0].dsw, g[t].dsw, g[0].nw * 4),
                   "case %zu: gradients on 1 and %d threads differ", c, t + 1);
        for (int t = 0; t < 3; t++) {
            grads_free(&g[t]);
            cd_ctx_free(ctx[t]);
        }
        prob_free(&p);
    }
}

TEST(attn_bwd_bad_arguments) {
    cd_ctx *ctx = make_ctx(1, CD_ISA_AUTO);
    CHECK(ctx, "context");
    cd_attn_desc d = {1, 8, 2, 4, 4, 2, 2, 0.0f};
    float buf[1024] = {0}, w[4] = {0.25f, 0.25f, 0.25f, 0.25f}, dw[4] = {0};
    float *b = buf; /* N = 18, HD = 8: 144 floats per tensor (all share it; never reached) */
    EXPECT(cd_attention_backward(ctx, &d, NULL, b, b, w, b, b, b, b, b, b, dw) == CD_ERR_INVALID_ARG,
           "NULL q accepted");
    EXPECT(*cd_ctx_error(ctx), "no message");
    EXPECT(cd_attention_backward_reference(ctx, &d, b, b, b, w, b, b, b, b, NULL, b, dw) == CD_ERR_INVALID_ARG,
           "NULL dk accepted");
    EXPECT(cd_attention_backward(ctx, &d, b, b, b, w, b, b, b, b, b, b, NULL) == CD_ERR_INVALID_ARG,
           "pooled without dspatial_weight accepted");
    EXPECT(cd_attention_backward(ctx, &d, b, b, b, NULL, b, b, b, b, b, b, dw) == CD_ERR_INVALID_ARG,
           "pooled without spatial_weight accepted");
    EXPECT(cd_attention_backward(ctx, NULL, b, b, b, w, b, b, b, b, b, b, dw) == CD_ERR_INVALID_ARG,
           "NULL descriptor accepted");
    cd_attn_desc bad = d;
    bad.grid_w = 5; /* not divisible by down */
    EXPECT(cd_attention_backward(ctx, &bad, b, b, b, w, b, b, b, b, b, b, dw) == CD_ERR_INVALID_ARG,
           "grid not divisible by down accepted");
    bad = d;
    bad.head_dim = 0;
    EXPECT(cd_attention_backward_reference(ctx, &bad, b, b, b, w, b, b, b, b, b, b, dw) == CD_ERR_INVALID_ARG,
           "head_dim 0 accepted");
    /* no pooling: spatial weights may be NULL */
    cd_attn_desc plain = {1, 4, 1, 2, 2, 2, 0, 0.0f};
    float q[20], k[20], v[20], o[20], lse[5], g[20], dq[20], dk[20], dv[20];
    test_rng r = test_rng_seed(3);
    for (int i = 0; i < 20; i++) {
        q[i] = test_rng_f(&r);
        k[i] = test_rng_f(&r);
        v[i] = test_rng_f(&r);
        g[i] = test_rng_f(&r);
    }
    EXPECT(cd_attention_forward(ctx, &plain, CD_DTYPE_F32, q, k, v, NULL, o, lse) == CD_OK, "forward");
    EXPECT(cd_attention_backward(ctx, &plain, q, k, v, NULL, o, lse, g, dq, dk, dv, NULL) == CD_OK,
           "no pooling, NULL weights: %s", cd_ctx_error(ctx));
    EXPECT(dw[0] == 0.0f, "dspatial_weight touched by a refused call");
    cd_ctx_free(ctx);
}

/* ---- benchmark (CD_ATTN_BWD_BENCH=1 build/test_cleardit attn_bwd_bench) ------------------- */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_run(int threads) {
    static const cd_attn_desc ds[] = {
        {4, 64, 16, 32, 32, 0, 0, 0.0f}, {4, 64, 16, 32, 32, 8, 0, 0.0f}, {4, 64, 16, 32, 32, 8, 4, 0.0f},
        {4, 64, 16, 64, 64, 8, 0, 0.0f}, {4, 64, 16, 64, 64, 8, 4, 0.0f}, {4, 64, 16, 64, 64, 0, 0, 0.0f},
    };
    cd_ctx *ctx = make_ctx(threads, CD_ISA_AUTO);
    CHECK(ctx, "context");
    printf("  %d thread(s), %s path; median of 7 (after 1 warm-up), forward and backward interleaved\n",
           cd_ctx_threads(ctx), cd_isa_name(cd_ctx_isa(ctx)));
    printf("  %-22s %10s %10s %8s\n", "shape", "fwd ms", "bwd ms", "bwd/fwd");
    for (size_t c = 0; c < sizeof ds / sizeof ds[0]; c++) {
        prob p;
        grads g;
        memset(&g, 0, sizeof g);
        int ok = prob_random(&p, &ds[c], 1.0f, 9) && grads_alloc(&g, &p);
        double tf[7], tb[7];
        for (int rep = -1; rep < 7 && ok; rep++) {
            double t0 = now_s();
            ok = cd_attention_forward(ctx, &p.d, CD_DTYPE_F32, p.q, p.k, p.v, p.sw, p.o, p.lse) == CD_OK;
            double t1 = now_s();
            ok = ok && run_bwd(ctx, &p, 0, &g) == CD_OK;
            double t2 = now_s();
            if (rep >= 0) {
                tf[rep] = t1 - t0;
                tb[rep] = t2 - t1;
            }
        }
        EXPECT(ok, "shape %zu: %s", c, cd_ctx_error(ctx));
        if (ok) {
            qsort(tf, 7, sizeof(double), cmp_dbl);
            qsort(tb, 7, sizeof(double), cmp_dbl);
            char name[64];
            int len = snprintf(name, sizeof name, "%dx%d ", ds[c].grid_h, ds[c].grid_w);
            if (!ds[c].radius)
                snprintf(name + len, sizeof name - len, "dense");
            else if (ds[c].down < 2)
                snprintf(name + len, sizeof name - len, "r=%d", ds[c].radius);
            else
                snprintf(name + len, sizeof name - len, "r=%d d=%d", ds[c].radius, ds[c].down);
            printf("  %-22s %10.2f %10.2f %8.2f\n", name, tf[3] * 1e3, tb[3] * 1e3, tb[3] / tf[3]);
        }
        grads_free(&g);
        prob_free(&p);
    }
    cd_ctx_free(ctx);
}

/* 4 heads x 64, T = 16: all cores, then one thread (less exposed to other jobs on a shared VM). */
TEST(attn_bwd_bench) {
    if (!getenv("CD_ATTN_BWD_BENCH")) return; /* timing only on request */
    bench_run(0);
    bench_run(1);
}
