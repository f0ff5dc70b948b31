/* test_bwd.c — the backward ops (ops_bwd.h), both backends, in four layers:
 *  a) the float64 formulas of this file (forward and analytic backward of every op) against
 *     central finite differences of the float64 forward;
 *  b) the library's backward (reference and fast) against those float64 gradients on random f32
 *     inputs, including accumulate (+=) vs overwrite, NULL outputs, aliasing and guard words;
 *  c) both backends (and the float64 formulas) against PyTorch autograd fixtures written by
 *     tests/oracle/bwd_fixtures.py (tests/fixtures/bwd/), and the forward ops against the
 *     fixtures' forward outputs (the convention the gradients belong to);
 *  d) the fast backend's results are bit-identical on 1, 2 and 3 threads (ops_bwd.h's claim).
 *
 * Tolerances. Every gradient entry is a sum of terms (products of inputs); with u = 2^-24 an
 * output is checked as |got - want| <= C u mag, where mag is the same sum with every term replaced
 * by its absolute value (the b64_* functions in magnitude mode; for accumulated outputs plus
 * |initial value|). mag is the scale rounding errors live on, so C counts roundings:
 *  - reference backend: double arithmetic, one final rounding to f32 (<= u |want| <= u mag) plus
 *    double errors (~1e-16 mag): C = 1.001.
 *  - fast backend, f64 sums (norms, gate, sum_rows, db): a few f32 roundings per term (g, g w,
 *    g v products: u each) and the final rounding: C = 4.
 *  - fast linear dx, dw (OpenBLAS sgemm, f32 accumulation over K terms): the worst-case bound is
 *    K u mag; we allow (2 sqrt(K) + 8) u mag (the random-sign estimate; K <= 300 here).
 *  - fast rope: two f32 products and a sum: (2 + u) u mag; C = 3.
 *  - fast gelu/silu: exp's argument z (f32) carries |z| u absolute error, which exp turns into
 *    |z| u relative error: mag is multiplied by (1 + |z|), C = 8, plus a floor of the smallest
 *    normal f32 times |dy| (denormal results; see check_act).
 * The fixture checks (c) use the same C: torch's float64 gradients are ~1e-16 mag off, except
 * its tanh-gelu derivative (see torch_gelu_err).
 * Finite differences (a): h = 1e-6 max(1, |p|), central; truncation ~h^2 and cancellation
 * ~1e-16 |L| / h leave ~1e-9 absolute here; the check is |fd - an| <= 1e-6 (|an| + 1e-3 max|an|).
 * CD_BWD_VERBOSE=1 prints the worst error / tolerance ratios. */
#include "test.h"
#include "../src/ops/ops.h"
#include "../src/ops/ops_bwd.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const double U = 1.0 / 16777216.0;
#define GK 0.79788456080286535588 /* sqrt(2/pi) */
#define GA 0.044715
#define EPS 1e-6f
#define GUARD 16
#define FIX_DIR "tests/fixtures/bwd"
#define REGEN "run 'python3 tests/oracle/bwd_fixtures.py' from the repository root"

/* ---- allocation bag: every buffer of a test, freed at once --------------------------------- */
typedef struct {
    void *p[256];
    int n;
} bag;
static void *bget(bag *b, size_t bytes) {
    void *p = b->n < 256 ? malloc(bytes + GUARD * sizeof(double)) : NULL;
    if (!p) {
        fprintf(stderr, "test_bwd: out of memory\n");
        abort();
    }
    return b->p[b->n++] = p;
}
static void bfree(bag *b) {
    while (b->n) free(b->p[--b->n]);
}
static float *rf(bag *b, size_t n, double amp, double off, test_rng *g) {
    float *p = bget(b, n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)(off + amp * test_rng_f(g));
    return p;
}
static double *to64(bag *b, const float *p, size_t n) {
    double *d = bget(b, n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}
static double *d64(bag *b, size_t n) { return bget(b, n * sizeof(double)); }
/* An output buffer [n] filled with `fill`, followed by GUARD sentinel floats. */
static float *outbuf(bag *b, size_t n, float fill) {
    float *p = bget(b, n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = fill;
    for (int i = 0; i < GUARD; i++) p[n + i] = 777.0f;
    return p;
}
static float *copyf(bag *b, const float *src, size_t n) {
    float *p = outbuf(b, n, 0);
    memcpy(p, src, n * sizeof(float));
    return p;
}
static int guard_ok(const float *p, size_t n) {
    for (int i = 0; i < GUARD; i++)
        if (p[n + i] != 777.0f) return 0;
    return 1;
}

/* worst |got - (base + want)| / (u (|base| + mag)) over n entries (base may be NULL); INFINITY for
 * a NaN or a written guard. */
static double ulps(const float *got, const float *base, const double *want, const double *mag, size_t n) {
    double w = 0;
    if (!guard_ok(got, n)) return INFINITY;
    for (size_t i = 0; i < n; i++) {
        const double e = (base ? base[i] : 0.0) + want[i], m = (base ? fabs(base[i]) : 0.0) + mag[i];
        const double err = fabs((double)got[i] - e);
        const double r = err == 0 ? 0 : err / (U * m);
        if (!(r <= w)) w = r; /* NaN-sticky */
    }
    return w;
}

/* ---- float64 forwards ---------------------------------------------------------------------- */
static void f64_linear(const double *x, size_t n, const double *w, const double *b, int in, int out,
                       double *y) { /* y [n, out] = x [n, in] w^T [in, out] + b */
    for (size_t r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += x[r * in + i] * w[(size_t)o * in + i];
            y[r * out + o] = s;
        }
}
static void f64_ln_mod(const double *x, size_t n, int dim, const double *sh, const double *sc,
                       double *y) { /* y [n, dim] */
    for (size_t r = 0; r < n; r++) {
        const double *v = x + r * dim;
        double m = 0, var = 0;
        for (int i = 0; i < dim; i++) m += v[i] / dim;
        for (int i = 0; i < dim; i++) var += (v[i] - m) * (v[i] - m) / dim;
        for (int i = 0; i < dim; i++) y[r * dim + i] = (1 + sc[i]) * (v[i] - m) / sqrt(var + EPS) + sh[i];
    }
}
static void f64_rms(const double *x, size_t rows, int hd, const double *w, double *y) {
    for (size_t r = 0; r < rows; r++) { /* rows = n NH head rows of HD */
        double ss = 0;
        for (int i = 0; i < hd; i++) ss += x[r * hd + i] * x[r * hd + i];
        for (int i = 0; i < hd; i++) y[r * hd + i] = x[r * hd + i] / sqrt(ss / hd + EPS) * w[i];
    }
}
static double f64_gelu(double x) { return 0.5 * x * (1 + tanh(GK * (x + GA * x * x * x))); }
static double f64_silu(double x) { return x / (1 + exp(-x)); }
static void f64_rope(const double *x, size_t n, int nh, int hd, const double *cs, double *y) {
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < hd / 2; i++) {
                const size_t o = (t * nh + h) * hd + 2 * i;
                const double c = cs[t * hd + 2 * i], s = cs[t * hd + 2 * i + 1];
                y[o] = c * x[o] - s * x[o + 1];
                y[o + 1] = s * x[o] + c * x[o + 1];
            }
}

/* ---- float64 analytic backward --------------------------------------------------------------
 * a = 0: the gradient. a = 1: its magnitude (every term summed as |term|, every difference of
 * terms as a sum). Parameter gradients are plain (overwritten) here. */
#define P(v) (a ? fabs(v) : (v))
static void b64_linear(int a, const double *x, size_t n, const double *w, int in, int out, const double *dy, double *dx,
                       double *dw, double *db) {
    for (size_t r = 0; r < n; r++) /* dx [n, in] = dy w */
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int o = 0; o < out; o++) s += P(dy[r * out + o] * w[(size_t)o * in + i]);
            dx[r * in + i] = s;
        }
    for (int o = 0; o < out; o++) { /* dw [out, in] = dy^T x, db [out] = sum dy */
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (size_t r = 0; r < n; r++) s += P(dy[r * out + o] * x[r * in + i]);
            dw[(size_t)o * in + i] = s;
        }
        double s = 0;
        for (size_t r = 0; r < n; r++) s += P(dy[r * out + o]);
        db[o] = s;
    }
}
static void b64_ln(int a, const double *x, size_t n, int dim, const double *sc, const double *dy, double *dx,
                   double *dsh, double *dsc) {
    const double S = a ? 1 : -1;
    for (int i = 0; i < dim; i++) dsh[i] = dsc[i] = 0;
    for (size_t r = 0; r < n; r++) {
        const double *v = x + r * dim, *g0 = dy + r * dim;
        double m = 0, var = 0, sg = 0, sgx = 0;
        for (int i = 0; i < dim; i++) m += v[i] / dim;
        for (int i = 0; i < dim; i++) var += (v[i] - m) * (v[i] - m) / dim;
        const double inv = 1 / sqrt(var + EPS);
        for (int i = 0; i < dim; i++) {
            sg += P((1 + sc[i]) * g0[i]);
            sgx += P((1 + sc[i]) * g0[i] * (v[i] - m) * inv);
            dsh[i] += P(g0[i]);
            dsc[i] += P(g0[i] * (v[i] - m) * inv);
        }
        for (int i = 0; i < dim; i++) /* inv (g - mean g - xhat mean(g xhat)) */
            dx[r * dim + i] = inv * (P((1 + sc[i]) * g0[i]) + S * sg / dim + S * P((v[i] - m) * inv) * sgx / dim);
    }
}
static void b64_rms(int a, const double *x, size_t rows, int hd, const double *w, const double *dy, double *dx,
                    double *dw) {
    const double S = a ? 1 : -1;
    for (int i = 0; i < hd; i++) dw[i] = 0;
    for (size_t r = 0; r < rows; r++) {
        const double *v = x + r * hd, *g = dy + r * hd;
        double ss = 0, dot = 0;
        for (int i = 0; i < hd; i++) {
            ss += v[i] * v[i];
            dot += P(g[i] * w[i] * v[i]);
        }
        const double inv = 1 / sqrt(ss / hd + EPS), k = inv * inv * inv * dot / hd;
        for (int i = 0; i < hd; i++) {
            dx[r * hd + i] = P(inv * w[i] * g[i]) + S * k * P(v[i]);
            dw[i] += P(g[i] * v[i]) * inv;
        }
    }
}
static void b64_gate(int a, const double *dout, const double *y, const double *gate, size_t n, int dim, double *dy,
                     double *dgate) {
    for (int i = 0; i < dim; i++) dgate[i] = 0;
    for (size_t r = 0; r < n; r++)
        for (int i = 0; i < dim; i++) {
            dy[r * dim + i] = P(gate[i] * dout[r * dim + i]);
            dgate[i] += P(dout[r * dim + i] * y[r * dim + i]);
        }
}
static double d64_gelu(int a, double x) { /* f'(x), cancellation-free (see bwd_ref.c) */
    const double e = exp(-2 * GK * (x + GA * x * x * x)), p = 1 / (1 + e), q = 1 / (2 + e + 1 / e);
    return p + (q > 0 ? P(2 * GK * x * (1 + 3 * GA * x * x) * q) : 0);
}
static double d64_silu(int a, double x) {
    const double s = 1 / (1 + exp(-x));
    return s + P(x * s * (1 - s));
}
static void b64_rope(int a, const double *g, size_t n, int nh, int hd, const double *cs, double *dx) {
    const double S = a ? 1 : -1;
    for (size_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < hd / 2; i++) {
                const size_t o = (t * nh + h) * hd + 2 * i;
                const double c = cs[t * hd + 2 * i], s = cs[t * hd + 2 * i + 1];
                dx[o] = P(c * g[o]) + P(s * g[o + 1]);
                dx[o + 1] = P(c * g[o + 1]) + S * P(s * g[o]);
            }
}
#undef P

/* ---- a) the float64 formulas against finite differences ----------------------------------- */
enum { OP_LINEAR, OP_LN, OP_RMS, OP_GATE, OP_GELU, OP_SILU, OP_ROPE };
typedef struct {
    int op;
    double *p[3]; /* the differentiated inputs (see fd_loss) */
    size_t np[3];
    size_t n;         /* rows (head rows for OP_RMS, elements for the activations) */
    int d0, d1;       /* linear in, out; ln dim; rms HD; gate dim; rope NH, HD */
    const double *cs; /* rope table [n, HD/2, 2] */
    double *y;        /* forward output [ny] */
    const double *G;  /* upstream gradient [ny]: L = sum y G */
    size_t ny;
} fd_op;

static double fd_loss(fd_op *o) {
    double **p = o->p;
    switch (o->op) {
        case OP_LINEAR: f64_linear(p[0], o->n, p[1], p[2], o->d0, o->d1, o->y); break;
        case OP_LN: f64_ln_mod(p[0], o->n, o->d0, p[1], p[2], o->y); break;
        case OP_RMS: f64_rms(p[0], o->n, o->d0, p[1], o->y); break;
        case OP_GATE: /* out = x + gate y */
            for (size_t i = 0; i < o->ny; i++) o->y[i] = p[0][i] + p[2][i % o->d0] * p[1][i];
            break;
        case OP_GELU:
            for (size_t i = 0; i < o->ny; i++) o->y[i] = f64_gelu(p[0][i]);
            break;
        case OP_SILU:
            for (size_t i = 0; i < o->ny; i++) o->y[i] = f64_silu(p[0][i]);
            break;
        case OP_ROPE: f64_rope(p[0], o->n, o->d0, o->d1, o->cs, o->y); break;
    }
    long double L = 0;
    for (size_t i = 0; i < o->ny; i++) L += (long double)o->y[i] * o->G[i];
    return (double)L;
}

/* worst |fd - an| / (|an| + 1e-3 max|an|) over the entries of input k */
static double fd_worst(fd_op *o, int k, const double *an) {
    double mx = 0, w = 0;
    for (size_t i = 0; i < o->np[k]; i++) mx = fmax(mx, fabs(an[i]));
    for (size_t i = 0; i < o->np[k]; i++) {
        double *p = &o->p[k][i];
        const double s = *p, h = 1e-6 * fmax(1, fabs(s));
        volatile double xp = s + h, xm = s - h; /* the steps actually taken */
        *p = xp;
        const double lp = fd_loss(o);
        *p = xm;
        const double lm = fd_loss(o);
        *p = s;
        const double r = fabs((lp - lm) / (xp - xm) - an[i]) / (fabs(an[i]) + 1e-3 * mx);
        if (!(r <= w)) w = r;
    }
    return w;
}

static double *rd(bag *b, size_t n, double amp, double off, test_rng *g) {
    double *p = d64(b, n);
    for (size_t i = 0; i < n; i++) p[i] = off + amp * test_rng_f(g);
    return p;
}

TEST(bwd_formulas_vs_finite_differences) {
    bag b = {0};
    test_rng g = test_rng_seed(101);
    double w[7] = {0};
    { /* linear: n 3, in 5, out 4 */
        double *x = rd(&b, 15, 1, 0, &g), *wt = rd(&b, 20, 1, 0, &g), *bi = rd(&b, 4, 1, 0, &g);
        double *G = rd(&b, 12, 1, 0, &g), *dx = d64(&b, 15), *dw = d64(&b, 20), *db = d64(&b, 4);
        b64_linear(0, x, 3, wt, 5, 4, G, dx, dw, db);
        fd_op o = {OP_LINEAR, {x, wt, bi}, {15, 20, 4}, 3, 5, 4, NULL, d64(&b, 12), G, 12};
        w[0] = fmax(fd_worst(&o, 0, dx), fmax(fd_worst(&o, 1, dw), fd_worst(&o, 2, db)));
    }
    { /* ln_modulate: n 3, dim 7 */
        double *x = rd(&b, 21, 1.5, 0.3, &g), *sh = rd(&b, 7, 0.4, 0, &g), *sc = rd(&b, 7, 0.4, 0, &g);
        double *G = rd(&b, 21, 1, 0, &g), *dx = d64(&b, 21), *dsh = d64(&b, 7), *dsc = d64(&b, 7);
        b64_ln(0, x, 3, 7, sc, G, dx, dsh, dsc);
        fd_op o = {OP_LN, {x, sh, sc}, {21, 7, 7}, 3, 7, 0, NULL, d64(&b, 21), G, 21};
        w[1] = fmax(fd_worst(&o, 0, dx), fmax(fd_worst(&o, 1, dsh), fd_worst(&o, 2, dsc)));
    }
    { /* rmsnorm: n 2, NH 2, HD 6 (4 head rows) */
        double *x = rd(&b, 24, 1, 0, &g), *wt = rd(&b, 6, 0.2, 1, &g), *G = rd(&b, 24, 1, 0, &g);
        double *dx = d64(&b, 24), *dw = d64(&b, 6);
        b64_rms(0, x, 4, 6, wt, G, dx, dw);
        fd_op o = {OP_RMS, {x, wt, NULL}, {24, 6, 0}, 4, 6, 0, NULL, d64(&b, 24), G, 24};
        w[2] = fmax(fd_worst(&o, 0, dx), fd_worst(&o, 1, dw));
    }
    { /* gate_add: n 3, dim 5; d input x = G */
        double *x = rd(&b, 15, 1, 0, &g), *y = rd(&b, 15, 1, 0, &g), *gt = rd(&b, 5, 1, 0, &g);
        double *G = rd(&b, 15, 1, 0, &g), *dy = d64(&b, 15), *dg = d64(&b, 5);
        b64_gate(0, G, y, gt, 3, 5, dy, dg);
        fd_op o = {OP_GATE, {x, y, gt}, {15, 15, 5}, 3, 5, 0, NULL, d64(&b, 15), G, 15};
        w[3] = fmax(fd_worst(&o, 0, G), fmax(fd_worst(&o, 1, dy), fd_worst(&o, 2, dg)));
    }
    for (int k = 0; k < 2; k++) { /* gelu, silu: 16 values in [-5, 5] */
        double *x = rd(&b, 16, 5, 0, &g), *G = rd(&b, 16, 1, 0, &g), *dx = d64(&b, 16);
        for (int i = 0; i < 16; i++) dx[i] = (k ? d64_silu(0, x[i]) : d64_gelu(0, x[i])) * G[i];
        fd_op o = {k ? OP_SILU : OP_GELU, {x}, {16}, 16, 0, 0, NULL, d64(&b, 16), G, 16};
        w[4 + k] = fd_worst(&o, 0, dx);
    }
    { /* rope: n 3, NH 2, HD 6, random angles */
        double *cs = d64(&b, 9 * 2), *x = rd(&b, 36, 1, 0, &g), *G = rd(&b, 36, 1, 0, &g);
        for (int i = 0; i < 9; i++) {
            const double th = 3 * test_rng_f(&g);
            cs[2 * i] = cos(th);
            cs[2 * i + 1] = sin(th);
        }
        double *dx = d64(&b, 36);
        b64_rope(0, G, 3, 2, 6, cs, dx);
        fd_op o = {OP_ROPE, {x}, {36}, 3, 2, 6, cs, d64(&b, 36), G, 36};
        w[6] = fd_worst(&o, 0, dx);
    }
    static const char *names[7] = {"linear", "ln_modulate", "rmsnorm", "gate_add", "gelu", "silu", "rope"};
    for (int k = 0; k < 7; k++) {
        EXPECT(w[k] <= 1e-6, "%s: analytic vs finite difference %.3g (relative)", names[k], w[k]);
        if (getenv("CD_BWD_VERBOSE")) printf("  fd %-12s %.3g\n", names[k], w[k]);
    }
    bfree(&b);
}

/* ---- b) the library against the float64 gradients ------------------------------------------
 * Each check_* runs one backend on f32 inputs, compares with `want` (float64 gradients: of this
 * file's formulas, or of the torch fixtures) within C u mag, and returns the worst ratio
 * err / (u mag). Accumulated outputs start from random non-zero values and overwritten ones from
 * NaN; a second run with dx aliasing dy and the parameter gradients NULL must give dx bit for bit. */
typedef struct {
    const cd_ops_bwd *B;
    cd_ctx *ctx;
    test_rng *g;
    bag *b;
} env;

static double check_linear(env *e, size_t n, int in, int out, const float *x, const float *w, const float *dy,
                           const double *wdx, const double *wdw, const double *wdb, double *gemm_worst) {
    bag *b = e->b;
    const size_t nx = n * in, nw = (size_t)out * in;
    double *mdx = d64(b, nx), *mdw = d64(b, nw), *mdb = d64(b, out);
    b64_linear(1, to64(b, x, nx), n, to64(b, w, nw), in, out, to64(b, dy, n * out), mdx, mdw, mdb);
    float *dx = outbuf(b, nx, NAN), *w0 = rf(b, nw, 1, 0, e->g), *b0 = rf(b, out, 1, 0, e->g);
    float *dw = copyf(b, w0, nw), *db = copyf(b, b0, out);
    EXPECT(e->B->linear_bwd(e->ctx, x, n, w, in, out, dy, dx, dw, db) == CD_OK, "%s linear_bwd: %s", e->B->name,
           cd_ctx_error(e->ctx));
    const int fast = e->B == cd_ops_bwd_cpu(); /* sgemm: C = 2 sqrt(K) + 8 */
    *gemm_worst = fmax(ulps(dx, NULL, wdx, mdx, nx) / (fast ? 2 * sqrt(out) + 8 : 1),
                       ulps(dw, w0, wdw, mdw, nw) / (fast ? 2 * sqrt((double)n) + 8 : 1));
    float *dx2 = outbuf(b, nx, NAN), *db2 = copyf(b, b0, out);
    EXPECT(e->B->linear_bwd(e->ctx, x, n, w, in, out, dy, dx2, NULL, NULL) == CD_OK &&
               e->B->linear_bwd(e->ctx, x, n, w, in, out, dy, NULL, NULL, db2) == CD_OK &&
               !memcmp(dx, dx2, nx * sizeof(float)) && !memcmp(db, db2, out * sizeof(float)),
           "%s linear_bwd: NULL outputs change the others", e->B->name);
    return ulps(db, b0, wdb, mdb, out);
}

static double check_ln(env *e, size_t n, int dim, const float *x, const float *sc, const float *dy, const double *wdx,
                       const double *wsh, const double *wsc) {
    bag *b = e->b;
    const size_t nd = n * dim;
    double *mdx = d64(b, nd), *msh = d64(b, dim), *msc = d64(b, dim);
    b64_ln(1, to64(b, x, nd), n, dim, to64(b, sc, dim), to64(b, dy, nd), mdx, msh, msc);
    float *dx = outbuf(b, nd, NAN), *sh0 = rf(b, dim, 1, 0, e->g), *sc0 = rf(b, dim, 1, 0, e->g);
    float *dsh = copyf(b, sh0, dim), *dsc = copyf(b, sc0, dim), *al = copyf(b, dy, nd);
    EXPECT(e->B->ln_modulate_bwd(e->ctx, x, n, dim, sc, EPS, dy, dx, dsh, dsc) == CD_OK &&
               e->B->ln_modulate_bwd(e->ctx, x, n, dim, sc, EPS, al, al, NULL, NULL) == CD_OK,
           "%s ln_modulate_bwd failed", e->B->name);
    EXPECT(!memcmp(al, dx, nd * sizeof(float)) && guard_ok(al, nd),
           "%s ln_modulate_bwd: aliased "
           "or NULL run differs",
           e->B->name);
    return fmax(ulps(dx, NULL, wdx, mdx, nd), fmax(ulps(dsh, sh0, wsh, msh, dim), ulps(dsc, sc0, wsc, msc, dim)));
}

static double check_rms(env *e, size_t n, int nh, int hd, const float *x, const float *w, const float *dy,
                        const double *wdx, const double *wdw) {
    bag *b = e->b;
    const size_t nd = n * nh * hd;
    double *mdx = d64(b, nd), *mdw = d64(b, hd);
    b64_rms(1, to64(b, x, nd), n * nh, hd, to64(b, w, hd), to64(b, dy, nd), mdx, mdw);
    float *dx = outbuf(b, nd, NAN), *w0 = rf(b, hd, 1, 0, e->g), *dw = copyf(b, w0, hd);
    float *al = copyf(b, dy, nd);
    EXPECT(e->B->rmsnorm_heads_bwd(e->ctx, x, n, nh, hd, w, EPS, dy, dx, dw) == CD_OK &&
               e->B->rmsnorm_heads_bwd(e->ctx, x, n, nh, hd, w, EPS, al, al, NULL) == CD_OK,
           "%s rmsnorm_heads_bwd failed", e->B->name);
    EXPECT(!memcmp(al, dx, nd * sizeof(float)) && guard_ok(al, nd),
           "%s rmsnorm_heads_bwd: aliased "
           "or NULL run differs",
           e->B->name);
    return fmax(ulps(dx, NULL, wdx, mdx, nd), ulps(dw, w0, wdw, mdw, hd));
}

/* dout: the gradient of gate_add's output; want: wdy = gate dout, wdg = sum dout y */
static double check_gate(env *e, size_t n, int dim, const float *dout, const float *y, const float *gate,
                         const double *wdy, const double *wdg) {
    bag *b = e->b;
    const size_t nd = n * dim;
    double *mdy = d64(b, nd), *mdg = d64(b, dim);
    b64_gate(1, to64(b, dout, nd), to64(b, y, nd), to64(b, gate, dim), n, dim, mdy, mdg);
    float *dy = outbuf(b, nd, NAN), *g0 = rf(b, dim, 1, 0, e->g), *dg = copyf(b, g0, dim);
    float *al = copyf(b, y, nd); /* dy written over y */
    EXPECT(e->B->gate_add_bwd(e->ctx, dout, y, gate, n, dim, dy, dg) == CD_OK &&
               e->B->gate_add_bwd(e->ctx, dout, al, gate, n, dim, al, NULL) == CD_OK,
           "%s gate_add_bwd failed", e->B->name);
    EXPECT(!memcmp(al, dy, nd * sizeof(float)), "%s gate_add_bwd: aliased run differs", e->B->name);
    return fmax(ulps(dy, NULL, wdy, mdy, nd), ulps(dg, g0, wdg, mdg, dim));
}

/* PyTorch's float64 tanh-gelu derivative, 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 a x^2), loses
 * ~2^-53 absolute in 1 + t and 1 - t^2 where t ~ -1 (x < -5): its error per unit |dy|, with 8x
 * margin. */
static double torch_gelu_err(double x) { return 0x1p-50 * (1 + fabs(x) * (1 + 3 * GA * x * x)); }

/* gelu (silu = 0) or silu (silu = 1) on m values; the fast path's mag carries the (1 + |z|)
 * factor of exp's argument; both have the denormal floor 2^-126 |dy| + 2^-149 (an f32 e = exp(z)
 * overflowing where the true f' is a denormal; the final rounding of a denormal); want_torch:
 * want is PyTorch's gelu derivative (torch_gelu_err more). */
static double check_act(env *e, int silu, size_t m, const float *x, const float *dy, const double *wdx,
                        int want_torch) {
    bag *b = e->b;
    double *mag = d64(b, m);
    const int fast = e->B == cd_ops_bwd_cpu();
    for (size_t i = 0; i < m; i++) {
        const double v = x[i], z = silu ? v : 2 * GK * (v + GA * v * v * v), d = fabs((double)dy[i]);
        mag[i] = d * (silu ? d64_silu(1, v) : d64_gelu(1, v)) * (fast ? 1 + fabs(z) : 1) + 0x1p-102 * d + 0x1p-125 +
                 (want_torch && !silu ? torch_gelu_err(v) / U * d : 0);
    }
    float *dx = outbuf(b, m, NAN), *al = copyf(b, dy, m);
    void (*fn)(cd_ctx *, const float *, const float *, float *, size_t) = silu ? e->B->silu_bwd : e->B->gelu_tanh_bwd;
    fn(e->ctx, x, dy, dx, m);
    fn(e->ctx, x, al, al, m);
    EXPECT(!memcmp(al, dx, m * sizeof(float)), "%s %s: aliased run differs", e->B->name,
           silu ? "silu_bwd" : "gelu_tanh_bwd");
    return ulps(dx, NULL, wdx, mag, m);
}

static double check_rope(env *e, size_t n, int nh, int hd, const float *cs, const float *dy, const double *wdx) {
    bag *b = e->b;
    const size_t nd = n * nh * hd;
    double *mag = d64(b, nd);
    b64_rope(1, to64(b, dy, nd), n, nh, hd, to64(b, cs, n * hd), mag);
    float *g = copyf(b, dy, nd);
    e->B->rope_bwd(e->ctx, g, n, nh, hd, cs);
    return ulps(g, NULL, wdx, mag, nd);
}

/* want: the float64 sums (NULL: computed here) */
static double check_sum_rows(env *e, size_t n, int dim, const float *dy, const double *want) {
    bag *b = e->b;
    double *own = d64(b, dim), *mag = d64(b, dim);
    for (int c = 0; c < dim; c++) {
        own[c] = mag[c] = 0;
        for (size_t r = 0; r < n; r++) {
            own[c] += dy[r * dim + c];
            mag[c] += fabs((double)dy[r * dim + c]);
        }
    }
    float *o0 = rf(b, dim, 1, 0, e->g), *o = copyf(b, o0, dim);
    EXPECT(e->B->sum_rows(e->ctx, dy, n, dim, o) == CD_OK, "%s sum_rows failed", e->B->name);
    return ulps(o, o0, want ? want : own, mag, dim);
}

/* Allowed C (see the header comment) per op, [reference, fast]. */
enum { K_LIN_DB, K_LIN_GEMM, K_LN, K_RMS, K_GATE, K_GELU, K_SILU, K_ROPE, K_SUM, K_N };
static const char *k_names[K_N] = {"linear db", "linear dx dw", "ln_modulate", "rmsnorm_heads", "gate_add",
                                   "gelu_tanh", "silu",         "rope",        "sum_rows"};
#define R1 1.001 /* one rounding (<= u |want| <= u mag) plus double-precision noise */
static const double k_allow[K_N][2] = {{R1, 4}, {R1, 1}, {R1, 4}, {R1, 4}, {R1, 4}, {R1, 8}, {R1, 8}, {R1, 3}, {R1, 4}};

static void report(const char *what, const cd_ops_bwd *B, const double *worst, double extra) {
    const int fast = B == cd_ops_bwd_cpu();
    for (int k = 0; k < K_N; k++) {
        if (worst[k] < 0) continue; /* not run */
        EXPECT(worst[k] <= k_allow[k][fast] + extra, "%s, %s %s: error %.3g u mag > %g", what, B->name, k_names[k],
               worst[k], k_allow[k][fast] + extra);
        if (getenv("CD_BWD_VERBOSE"))
            printf("  %-10s %-13s %-14s %.3g (allowed %g)\n", what, B->name, k_names[k], worst[k],
                   k_allow[k][fast] + extra);
    }
}

/* Random inputs of one shape through every op of both backends. */
static void random_case(size_t n, int nh, int hd, int in, int out, unsigned long long seed) {
    bag b = {0};
    test_rng g = test_rng_seed(seed);
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = {2, CD_ISA_AUTO};
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        test_fail(__FILE__, __LINE__, "ctx");
        return;
    }
    const int dim = nh * hd;
    const size_t nd = n * dim;
    /* inputs: LN rows with an offset mean, activations over [-6, 6] plus tails */
    float *x = rf(&b, nd, 2, 0.5, &g), *dy = rf(&b, nd, 1, 0, &g), *y = rf(&b, nd, 1, 0, &g);
    float *sc = rf(&b, dim, 0.3, 0, &g), *gate = rf(&b, dim, 0.5, 0, &g), *rw = rf(&b, hd, 0.2, 1, &g);
    float *lx = rf(&b, n * in, 1, 0, &g), *lw = rf(&b, (size_t)out * in, 1 / sqrt(in), 0, &g);
    float *ldy = rf(&b, n * out, 1, 0, &g), *ax = rf(&b, nd, 6, 0, &g);
    static const float tails[] = {-100, -30, -10.5f, -10, -5, 5, 10, 30, 100, 1e-3f, -1e-3f};
    memcpy(ax, tails, sizeof tails);
    float *ids = bget(&b, n * 3 * sizeof(float)), *cs = bget(&b, nd / nh * sizeof(float));
    for (size_t t = 0; t < n; t++)
        for (int a = 0; a < 3; a++) ids[t * 3 + a] = (float)(test_rng_u64(&g) % 64);
    const int a0 = 2 * (hd / 8), a1 = 2 * ((hd - a0) / 4), axes[3] = {a0, a1, hd - a0 - a1}; /* even */
    cd_rope_table(ids, n, axes, 10000.0, cs);
    /* float64 gradients */
    double *ex = to64(&b, x, nd), *edy = to64(&b, dy, nd), *ey = to64(&b, y, nd);
    double *ldx = d64(&b, n * in), *ldw = d64(&b, (size_t)out * in), *ldb = d64(&b, out);
    b64_linear(0, to64(&b, lx, n * in), n, to64(&b, lw, (size_t)out * in), in, out, to64(&b, ldy, n * out), ldx, ldw,
               ldb);
    double *ndx = d64(&b, nd), *nsh = d64(&b, dim), *nsc = d64(&b, dim);
    b64_ln(0, ex, n, dim, to64(&b, sc, dim), edy, ndx, nsh, nsc);
    double *rdx = d64(&b, nd), *rdw = d64(&b, hd);
    b64_rms(0, ex, n * nh, hd, to64(&b, rw, hd), edy, rdx, rdw);
    double *gdy = d64(&b, nd), *gdg = d64(&b, dim);
    b64_gate(0, edy, ey, to64(&b, gate, dim), n, dim, gdy, gdg);
    double *gel = d64(&b, nd), *sil = d64(&b, nd), *rop = d64(&b, nd);
    for (size_t i = 0; i < nd; i++) {
        gel[i] = d64_gelu(0, ax[i]) * dy[i];
        sil[i] = d64_silu(0, ax[i]) * dy[i];
    }
    b64_rope(0, edy, n, nh, hd, to64(&b, cs, nd / nh), rop);
    for (int fast = 0; fast < 2; fast++) {
        env e = {fast ? cd_ops_bwd_cpu() : cd_ops_bwd_cpu_ref(), ctx, &g, &b};
        double w[K_N];
        w[K_LIN_DB] = check_linear(&e, n, in, out, lx, lw, ldy, ldx, ldw, ldb, &w[K_LIN_GEMM]);
        w[K_LN] = check_ln(&e, n, dim, x, sc, dy, ndx, nsh, nsc);
        w[K_RMS] = check_rms(&e, n, nh, hd, x, rw, dy, rdx, rdw);
        w[K_GATE] = check_gate(&e, n, dim, dy, y, gate, gdy, gdg);
        w[K_GELU] = check_act(&e, 0, nd, ax, dy, gel, 0);
        w[K_SILU] = check_act(&e, 1, nd, ax, dy, sil, 0);
        w[K_ROPE] = check_rope(&e, n, nh, hd, cs, dy, rop);
        w[K_SUM] = check_sum_rows(&e, n, dim, dy, NULL);
        char what[64];
        snprintf(what, sizeof what, "n=%zu/%dx%d", n, nh, hd);
        report(what, e.B, w, 0);
    }
    /* argument errors and empty inputs */
    float dbz[1] = {1.5f};
    EXPECT(cd_ops_bwd_cpu()->linear_bwd(ctx, lx, n, lw, 0, out, ldy, NULL, NULL, NULL) == CD_ERR_INVALID_ARG,
           "in = 0 accepted");
    EXPECT(cd_ops_bwd_cpu()->linear_bwd(ctx, lx, 0, lw, in, 1, ldy, NULL, NULL, dbz) == CD_OK &&
               cd_ops_bwd_cpu_ref()->linear_bwd(ctx, lx, 0, lw, in, 1, ldy, NULL, NULL, dbz) == CD_OK && dbz[0] == 1.5f,
           "n = 0: status or accumulator changed");
    cd_ctx_free(ctx);
    bfree(&b);
}

/* 37 rows: one or two reduction blocks, serial paths; 300 rows: 10-32 blocks on 2 threads. */
TEST(bwd_backends_vs_float64) {
    random_case(37, 3, 32, 96, 80, 201);
    random_case(300, 4, 64, 256, 200, 202);
    random_case(5, 1, 8, 3, 7, 203);
}

/* ---- c) PyTorch autograd fixtures (tests/oracle/bwd_fixtures.py) --------------------------- */
static float *fx32(bag *b, cd_st_file *f, const char *name, size_t numel) {
    const cd_st_tensor *t = cd_st_find(f, name);
    float *p = outbuf(b, numel, 0);
    if (!t || t->dtype != CD_DTYPE_F32 || cd_st_numel(t) != numel || cd_st_to_f32(NULL, t, p) != CD_OK)
        test_fail(__FILE__, __LINE__, "fixture tensor %s: missing or not F32 [%zu] (%s)", name, numel, REGEN);
    return p;
}
static double *fx64(bag *b, cd_st_file *f, const char *name, size_t numel) {
    const cd_st_tensor *t = cd_st_find(f, name);
    double *p = d64(b, numel);
    memset(p, 0, numel * sizeof(double));
    if (!t || t->dtype != CD_DTYPE_F64 || cd_st_numel(t) != numel)
        test_fail(__FILE__, __LINE__, "fixture tensor %s: missing or not F64 [%zu] (%s)", name, numel, REGEN);
    else
        memcpy(p, t->data, numel * sizeof(double));
    return p;
}
static int meta_int(cd_st_file *f, const char *key) {
    const char *v = cd_st_meta(f, key);
    return v ? atoi(v) : 0;
}
/* the f64 formulas of this file against torch: max |a - want| / mag */
static double f64_vs(const double *a, const double *want, const double *mag, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        const double r = fabs(a[i] - want[i]) / mag[i];
        if (!(r <= w)) w = r;
    }
    return w;
}
/* a reference forward op (double inside, one rounding) against torch's float64 forward: worst
 * |y - want| / (u |want| + 1e-13 max|want| + floor (1 + |x|) + 2^-149) */
static double fwd_vs(const float *y, const double *want, size_t n, const float *x, double floor) {
    double mx = 0, w = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        const double tol = U * fabs(want[i]) + 1e-13 * mx + floor * (1 + (x ? fabs(x[i]) : 0)) + 0x1p-149;
        const double r = fabs((double)y[i] - want[i]) / tol;
        if (!(r <= w)) w = r;
    }
    return w;
}

/* Every fixture file: both backends, the f64 formulas (to 1e-12 mag) and the forward convention
 * (the reference forward op to one rounding). PyTorch's tanh-gelu computes 0.5 (1 + tanh) in
 * float64 and is only good to ~2^-53 absolute where 1 + tanh cancels (x < -5): its checks carry
 * torch_gelu_err (backward) and 2^-50 (1 + |x|) (forward) absolute. */
TEST(bwd_torch_fixtures) {
    static const char *files[] = {"linear", "ln_modulate", "rmsnorm_heads", "gate_add", "act", "rope"};
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = {2, CD_ISA_AUTO};
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "ctx");
    const cd_ops *F = cd_ops_cpu_ref();
    for (int fi = 0; fi < 6 && !test_failed(); fi++) {
        char path[256];
        snprintf(path, sizeof path, FIX_DIR "/%s.safetensors", files[fi]);
        cd_st_file *f = NULL;
        if (cd_st_open(NULL, path, &f) != CD_OK) {
            test_fail(__FILE__, __LINE__, "cannot open %s: %s", path, REGEN);
            break;
        }
        bag b = {0};
        test_rng g = test_rng_seed(300 + fi);
        const size_t n = (size_t)meta_int(f, "n");
        const int in = meta_int(f, "in"), out = meta_int(f, "out"), dim = meta_int(f, "dim");
        const int nh = meta_int(f, "heads"), hd = meta_int(f, "head_dim");
        double fw = 0, ff = 0; /* forward ratio; f64 formulas vs torch */
        double w[2][K_N];
        for (int k = 0; k < K_N; k++) w[0][k] = w[1][k] = -1;
        if (fi == 0) { /* linear */
            const size_t nx = n * in, nw = (size_t)out * in, ny = n * out;
            float *x = fx32(&b, f, "x", nx), *wt = fx32(&b, f, "w", nw), *bi = fx32(&b, f, "b", out);
            float *dy = fx32(&b, f, "dy", ny), *yl = outbuf(&b, ny, NAN);
            double *y = fx64(&b, f, "y", ny), *dx = fx64(&b, f, "dx", nx), *dw = fx64(&b, f, "dw", nw);
            double *db = fx64(&b, f, "db", out);
            cd_weight cw = {wt, CD_DTYPE_F32, out, in};
            F->linear(ctx, x, n, &cw, bi, yl);
            fw = fwd_vs(yl, y, ny, NULL, 0);
            double *a[2][3];
            for (int m = 0; m < 2; m++) {
                a[m][0] = d64(&b, nx);
                a[m][1] = d64(&b, nw);
                a[m][2] = d64(&b, out);
                b64_linear(m, to64(&b, x, nx), n, to64(&b, wt, nw), in, out, to64(&b, dy, ny), a[m][0], a[m][1],
                           a[m][2]);
            }
            ff = fmax(f64_vs(a[0][0], dx, a[1][0], nx),
                      fmax(f64_vs(a[0][1], dw, a[1][1], nw), f64_vs(a[0][2], db, a[1][2], out)));
            for (int fast = 0; fast < 2; fast++) {
                env e = {fast ? cd_ops_bwd_cpu() : cd_ops_bwd_cpu_ref(), ctx, &g, &b};
                w[fast][K_LIN_DB] = check_linear(&e, n, in, out, x, wt, dy, dx, dw, db, &w[fast][K_LIN_GEMM]);
                w[fast][K_SUM] = check_sum_rows(&e, n, out, dy, db);
            }
        } else if (fi == 1) { /* ln_modulate */
            const size_t nd = n * dim;
            float *x = fx32(&b, f, "x", nd), *sh = fx32(&b, f, "shift", dim);
            float *sc = fx32(&b, f, "scale", dim), *dy = fx32(&b, f, "dy", nd), *yl = outbuf(&b, nd, NAN);
            double *y = fx64(&b, f, "y", nd), *dx = fx64(&b, f, "dx", nd);
            double *dsh = fx64(&b, f, "dshift", dim), *dsc = fx64(&b, f, "dscale", dim);
            F->ln_modulate(ctx, x, n, dim, sh, sc, EPS, yl);
            fw = fwd_vs(yl, y, nd, NULL, 0);
            double *a[2][3];
            for (int m = 0; m < 2; m++) {
                a[m][0] = d64(&b, nd);
                a[m][1] = d64(&b, dim);
                a[m][2] = d64(&b, dim);
                b64_ln(m, to64(&b, x, nd), n, dim, to64(&b, sc, dim), to64(&b, dy, nd), a[m][0], a[m][1], a[m][2]);
            }
            ff = fmax(f64_vs(a[0][0], dx, a[1][0], nd),
                      fmax(f64_vs(a[0][1], dsh, a[1][1], dim), f64_vs(a[0][2], dsc, a[1][2], dim)));
            for (int fast = 0; fast < 2; fast++) {
                env e = {fast ? cd_ops_bwd_cpu() : cd_ops_bwd_cpu_ref(), ctx, &g, &b};
                w[fast][K_LN] = check_ln(&e, n, dim, x, sc, dy, dx, dsh, dsc);
            }
        } else if (fi == 2) { /* rmsnorm_heads */
            const size_t nd = n * nh * hd;
            float *x = fx32(&b, f, "x", nd), *wt = fx32(&b, f, "w", hd), *dy = fx32(&b, f, "dy", nd);
            double *y = fx64(&b, f, "y", nd), *dx = fx64(&b, f, "dx", nd), *dw = fx64(&b, f, "dw", hd);
            float *yl = copyf(&b, x, nd);
            F->rmsnorm_heads(ctx, yl, n, nh, hd, wt, EPS);
            fw = fwd_vs(yl, y, nd, NULL, 0);
            double *a[2][2];
            for (int m = 0; m < 2; m++) {
                a[m][0] = d64(&b, nd);
                a[m][1] = d64(&b, hd);
                b64_rms(m, to64(&b, x, nd), n * nh, hd, to64(&b, wt, hd), to64(&b, dy, nd), a[m][0], a[m][1]);
            }
            ff = fmax(f64_vs(a[0][0], dx, a[1][0], nd), f64_vs(a[0][1], dw, a[1][1], hd));
            for (int fast = 0; fast < 2; fast++) {
                env e = {fast ? cd_ops_bwd_cpu() : cd_ops_bwd_cpu_ref(), ctx, &g, &b};
                w[fast][K_RMS] = check_rms(&e, n, nh, hd, x, wt, dy, dx, dw);
            }
        } else if (fi == 3) { /* gate_add */
            const size_t nd = n * dim;
            float *x = fx32(&b, f, "x", nd), *y = fx32(&b, f, "y", nd), *gt = fx32(&b, f, "gate", dim);
            float *dout = fx32(&b, f, "dout", nd);
            double *o = fx64(&b, f, "out", nd), *gx = fx64(&b, f, "grad_x", nd);
            double *gy = fx64(&b, f, "grad_y", nd), *gg = fx64(&b, f, "grad_gate", dim);
            float *ol = copyf(&b, x, nd);
            F->gate_add(ctx, ol, gt, y, n, dim);
            fw = fwd_vs(ol, o, nd, NULL, 0);
            for (size_t i = 0; i < nd; i++) EXPECT(gx[i] == dout[i], "torch grad_x != dout at %zu", i);
            double *a[2][2];
            for (int m = 0; m < 2; m++) {
                a[m][0] = d64(&b, nd);
                a[m][1] = d64(&b, dim);
                b64_gate(m, to64(&b, dout, nd), to64(&b, y, nd), to64(&b, gt, dim), n, dim, a[m][0], a[m][1]);
            }
            ff = fmax(f64_vs(a[0][0], gy, a[1][0], nd), f64_vs(a[0][1], gg, a[1][1], dim));
            for (int fast = 0; fast < 2; fast++) {
                env e = {fast ? cd_ops_bwd_cpu() : cd_ops_bwd_cpu_ref(), ctx, &g, &b};
                w[fast][K_GATE] = check_gate(&e, n, dim, dout, y, gt, gy, gg);
            }
        } else if (fi == 4) { /* gelu_tanh, silu */
            const size_t m = (size_t)meta_int(f, "m");
            for (int si = 0; si < 2; si++) {
                char nm[32];
                const char *op = si ? "silu" : "gelu";
                snprintf(nm, sizeof nm, "%s_x", op);
                float *x = fx32(&b, f, nm, m);
                snprintf(nm, sizeof nm, "%s_dy", op);
                float *dy = fx32(&b, f, nm, m);
                snprintf(nm, sizeof nm, "%s_y", op);
                double *y = fx64(&b, f, nm, m);
                snprintf(nm, sizeof nm, "%s_dx", op);
                double *dx = fx64(&b, f, nm, m);
                float *yl = copyf(&b, x, m);
                (si ? F->silu : F->gelu_tanh)(ctx, yl, m);
                fw = fmax(fw, fwd_vs(yl, y, m, x, si ? 0 : 0x1p-50)); /* torch: 0.5 x (1 + t) */
                for (size_t i = 0; i < m; i++) {                      /* 1e-12 mag, plus torch's gelu error */
                    const double d = si ? d64_silu(0, x[i]) : d64_gelu(0, x[i]), ady = fabs((double)dy[i]);
                    const double mg = (si ? d64_silu(1, x[i]) : d64_gelu(1, x[i])) * ady +
                                      (si ? 0 : 1e12 * torch_gelu_err(x[i]) * ady) + 1e-300;
                    const double r = fabs(d * dy[i] - dx[i]) / mg;
                    if (!(r <= ff)) ff = r;
                }
                for (int fast = 0; fast < 2; fast++) {
                    env e = {fast ? cd_ops_bwd_cpu() : cd_ops_bwd_cpu_ref(), ctx, &g, &b};
                    w[fast][si ? K_SILU : K_GELU] = check_act(&e, si, m, x, dy, dx, 1);
                }
            }
        } else { /* rope; cs also against cd_rope_table of the same ids */
            const size_t nd = n * nh * hd;
            float *ids = fx32(&b, f, "ids", n * 3), *cs = fx32(&b, f, "cs", n * hd);
            float *x = fx32(&b, f, "x", nd), *dy = fx32(&b, f, "dy", nd);
            double *y = fx64(&b, f, "y", nd), *dx = fx64(&b, f, "dx", nd);
            int axes[3] = {0, 0, 0};
            const char *ax = cd_st_meta(f, "rope_axes");
            EXPECT(ax && sscanf(ax, "%d,%d,%d", &axes[0], &axes[1], &axes[2]) == 3 && axes[0] + axes[1] + axes[2] == hd,
                   "rope_axes metadata");
            float *ct = outbuf(&b, n * hd, NAN);
            cd_rope_table(ids, n, axes, (double)meta_int(f, "rope_theta"), ct);
            for (size_t i = 0; i < n * (size_t)hd; i++)
                EXPECT(fabsf(ct[i] - cs[i]) <= 0x1p-23f, "cd_rope_table %zu: %.9g vs diffusers %.9g", i, ct[i], cs[i]);
            float *yl = copyf(&b, x, nd);
            F->rope(ctx, yl, n, nh, hd, cs);
            fw = fwd_vs(yl, y, nd, NULL, 0);
            double *a0 = d64(&b, nd), *a1 = d64(&b, nd), *ed = to64(&b, dy, nd), *ec = to64(&b, cs, n * hd);
            b64_rope(0, ed, n, nh, hd, ec, a0);
            b64_rope(1, ed, n, nh, hd, ec, a1);
            ff = f64_vs(a0, dx, a1, nd);
            for (int fast = 0; fast < 2; fast++) {
                env e = {fast ? cd_ops_bwd_cpu() : cd_ops_bwd_cpu_ref(), ctx, &g, &b};
                w[fast][K_ROPE] = check_rope(&e, n, nh, hd, cs, dy, dx);
            }
        }
        EXPECT(fw <= R1, "%s: forward op vs torch %.3g (u |y|)", files[fi], fw);
        EXPECT(ff <= 1e-12, "%s: float64 formulas vs torch %.3g (mag)", files[fi], ff);
        if (getenv("CD_BWD_VERBOSE"))
            printf("  torch %-13s forward %.3g (allowed %g), f64 formulas %.3g (allowed 1e-12)\n", files[fi], fw, R1,
                   ff);
        report(files[fi], cd_ops_bwd_cpu_ref(), w[0], 0);
        report(files[fi], cd_ops_bwd_cpu(), w[1], 0);
        cd_st_close(f);
        bfree(&b);
    }
    cd_ctx_free(ctx);
}

/* ---- d) the fast backend gives the same bits on any thread count ----------------------------
 * Shapes large enough for the parallel paths (>= 2^15 elements; 10-32 reduction blocks). Every
 * non-sgemm output must be bit-identical on 1, 2 and 3 threads (ops_bwd.h's claim); linear's
 * sgemm dx/dw must repeat bit for bit on a fixed thread count (across counts: printed with
 * CD_BWD_VERBOSE, OpenBLAS's business). */
enum { DN = 300, DNH = 4, DHD = 64, DD = DNH * DHD, DIN = 256, DOUT = 200 };
static const size_t DND = (size_t)DN * DD;

/* v: ln dx | dshift | dscale | rms dx | dw | gate dy | dgate | gelu | silu | rope | sum_rows | db;
 * gm: linear dx | dw. Accumulators start from acc0 [max(DD, DOUT)]. */
static size_t det_len(void) { return 6 * DND + 4 * (size_t)DD + DHD + DOUT; }
static int det_run(int threads, const float *const *in, const float *acc0, float *v, float *gm) {
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = {threads, CD_ISA_AUTO};
    if (cd_ctx_create(&cp, &ctx) != CD_OK || cd_ctx_threads(ctx) != threads) {
        cd_ctx_free(ctx);
        return 0;
    }
    const cd_ops_bwd *B = cd_ops_bwd_cpu();
    const float *x = in[0], *dy = in[1], *y = in[2], *sc = in[3], *rw = in[4], *cs = in[5];
    const float *lx = in[6], *lw = in[7], *ldy = in[8];
    float *ln = v, *dsh = ln + DND, *dsc = dsh + DD, *rms = dsc + DD, *rdw = rms + DND;
    float *gdy = rdw + DHD, *gdg = gdy + DND, *gel = gdg + DD, *sil = gel + DND, *rop = sil + DND;
    float *sr = rop + DND, *db = sr + DD;
    memcpy(dsh, acc0, DD * sizeof(float));
    memcpy(dsc, acc0, DD * sizeof(float));
    memcpy(rdw, acc0, DHD * sizeof(float));
    memcpy(gdg, acc0, DD * sizeof(float));
    memcpy(sr, acc0, DD * sizeof(float));
    memcpy(db, acc0, DOUT * sizeof(float));
    memcpy(gm + (size_t)DN * DIN, lw, (size_t)DOUT * DIN * sizeof(float)); /* dw starts at w */
    memcpy(rop, dy, DND * sizeof(float));
    int ok = B->ln_modulate_bwd(ctx, x, DN, DD, sc, EPS, dy, ln, dsh, dsc) == CD_OK &&
             B->rmsnorm_heads_bwd(ctx, x, DN, DNH, DHD, rw, EPS, dy, rms, rdw) == CD_OK &&
             B->gate_add_bwd(ctx, dy, y, sc, DN, DD, gdy, gdg) == CD_OK &&
             B->sum_rows(ctx, in[9], DN, DD, sr) == CD_OK &&
             B->linear_bwd(ctx, lx, DN, lw, DIN, DOUT, ldy, gm, gm + (size_t)DN * DIN, db) == CD_OK;
    B->gelu_tanh_bwd(ctx, x, dy, gel, DND);
    B->silu_bwd(ctx, x, dy, sil, DND);
    B->rope_bwd(ctx, rop, DN, DNH, DHD, cs);
    cd_ctx_free(ctx);
    return ok;
}

TEST(bwd_fast_thread_invariance) {
    bag b = {0};
    test_rng g = test_rng_seed(404);
    const float *in[10];
    in[0] = rf(&b, DND, 3, 0.2, &g);
    in[1] = rf(&b, DND, 1, 0, &g);
    in[2] = rf(&b, DND, 1, 0, &g);
    in[3] = rf(&b, DD, 0.3, 0, &g);
    in[4] = rf(&b, DHD, 0.2, 1, &g);
    in[5] = rf(&b, (size_t)DN * DHD, 1, 0, &g); /* any (c, s) pairs will do here */
    in[6] = rf(&b, (size_t)DN * DIN, 1, 0, &g);
    in[7] = rf(&b, (size_t)DOUT * DIN, 0.06, 0, &g);
    in[8] = rf(&b, (size_t)DN * DOUT, 1, 0, &g);
    /* sum_rows' input: dy with +-1e20 in column 0 of the first rows of blocks 0 and 1 (32 rows
     * each): the f64 sum then depends on the order of the partials, so that a reduction whose
     * grouping or order followed the thread count would show here (checked by mutation) */
    float *sdy = copyf(&b, in[1], DND);
    sdy[0] = 1e20f;
    sdy[32 * (size_t)DD] = -1e20f;
    in[9] = sdy;
    const float *acc0 = rf(&b, DD, 1, 0, &g);
    const size_t nv = det_len(), ng = (size_t)DN * DIN + (size_t)DOUT * DIN;
    float *v[4], *gm[4];
    const int th[4] = {1, 2, 3, 2};
    for (int k = 0; k < 4; k++) {
        v[k] = outbuf(&b, nv, NAN);
        gm[k] = outbuf(&b, ng, NAN);
        CHECK(det_run(th[k], in, acc0, v[k], gm[k]), "run on %d threads failed", th[k]);
        EXPECT(guard_ok(v[k], nv) && guard_ok(gm[k], ng), "guards");
    }
    for (int k = 1; k < 4; k++) {
        size_t first = nv;
        for (size_t i = 0; i < nv && first == nv; i++)
            if (memcmp(&v[0][i], &v[k][i], sizeof(float))) first = i;
        EXPECT(first == nv, "%d threads differ from 1 thread at %zu of %zu (%.9g vs %.9g)", th[k], first, nv,
               first < nv ? v[k][first] : 0.0f, first < nv ? v[0][first] : 0.0f);
    }
    for (size_t i = 0; i < nv; i++) EXPECT(v[0][i] == v[0][i], "NaN at %zu", i);
    EXPECT(!memcmp(gm[1], gm[3], ng * sizeof(float)), "sgemm dx/dw not repeatable on 2 threads");
    if (getenv("CD_BWD_VERBOSE"))
        printf("  sgemm dx/dw 1 vs 2 threads: %s; 2 vs 3: %s\n",
               memcmp(gm[0], gm[1], ng * sizeof(float)) ? "differ" : "identical",
               memcmp(gm[1], gm[2], ng * sizeof(float)) ? "differ" : "identical");
    bfree(&b);
}
