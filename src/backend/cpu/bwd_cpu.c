/* bwd_cpu.c — the fast backward ops (ops_bwd.h): linear through OpenBLAS sgemm, everything else
 * row-parallel on OpenMP threads with f64 sums and row statistics. Tested against
 * bwd_ref.c, against float64 formulas and against PyTorch autograd (tests/test_bwd.c).
 *
 * Column reductions (dw of rmsnorm, db, dshift, dscale, dgate, sum_rows) are deterministic and
 * independent of the thread count: the rows are cut into blocks (red_plan_for) whose size is a
 * function of the row count only; each block is summed in row order by one thread into its own
 * f64 partial (context scratch [blocks, k, cols]); the partials are then added in block order and
 * the total added to the f32 output once. The per-row statistics (mean, 1/rms, row dots) are
 * computed by one thread each, so dx is bit-identical for any thread count as well. */
#include "../../ops/ops_bwd.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Threads only for enough work (as in ops_cpu.c: an OpenMP barrier per tiny op costs more). */
#define PAR(elems) ((elems) >= ((size_t)1 << 15))

/* Reduction blocks: at most ~RED_BLOCKS of them (enough to feed the threads), at least RED_MIN
 * rows each (short blocks only add partials). */
#define RED_BLOCKS 32
#define RED_MIN 32

typedef struct {
    size_t rb, nb; /* rows per block, blocks */
    double *part;  /* [nb, k, cols] f64 partials, or NULL when no reduction is wanted */
} red_plan;

static red_plan red_plan_for(size_t rows) {
    red_plan p = {(rows + RED_BLOCKS - 1) / RED_BLOCKS, 0, NULL};
    if (p.rb < RED_MIN) p.rb = RED_MIN;
    p.nb = (rows + p.rb - 1) / p.rb;
    return p;
}

/* Scratch for k partial vectors of `cols` per block; 0 on OOM (error set by cd_ctx_work). */
static int red_alloc(cd_ctx *ctx, red_plan *p, int k, size_t cols) {
    size_t cnt;
    if (!cd_mul_ok(p->nb * (size_t)k, cols, &cnt) || !cd_mul_ok(cnt, 2, &cnt)) {
        cd_set_error(ctx, CD_ERR_OOM, "backward: reduction scratch overflows");
        return 0;
    }
    /* cd_ctx_work is 64-byte aligned and its storage is only ever used as doubles here */
    p->part = (double *)cd_ctx_work(ctx, cnt);
    return p->part != NULL;
}

/* out[c] += sum over blocks b (in order) of part[b][j][c]. */
static void red_finish(cd_ctx *ctx, const red_plan *p, int k, int j, size_t cols, float *out) {
    if (!out) return;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(p->nb * cols))
    for (size_t c = 0; c < cols; c++) {
        double s = 0;
        for (size_t b = 0; b < p->nb; b++) s += p->part[(b * k + j) * cols + c];
        out[c] = (float)((double)out[c] + s);
    }
}

/* The partial vector j of block b, zeroed (NULL without reduction). */
static double *red_block(const red_plan *p, int k, int j, size_t b, size_t cols) {
    if (!p->part) return NULL;
    double *q = p->part + (b * k + j) * cols;
    for (size_t c = 0; c < cols; c++) q[c] = 0;
    return q;
}

#define BLOCK_END(p, b, rows) ((b) + 1 < (p).nb ? ((b) + 1) * (p).rb : (rows))

/* ---- sum_rows ------------------------------------------------------------------------------ */
static cd_status cpu_sum_rows(cd_ctx *ctx, const float *dy, size_t n, int dim, float *out) {
    if (!out || n == 0) return CD_OK;
    red_plan p = red_plan_for(n);
    if (!red_alloc(ctx, &p, 1, (size_t)dim)) return CD_ERR_OOM;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)dim))
    for (size_t b = 0; b < p.nb; b++) {
        double *acc = red_block(&p, 1, 0, b, (size_t)dim);
        for (size_t r = b * p.rb; r < BLOCK_END(p, b, n); r++)
            for (int c = 0; c < dim; c++) acc[c] += dy[r * dim + c];
    }
    red_finish(ctx, &p, 1, 0, (size_t)dim, out);
    return CD_OK;
}

/* ---- linear -------------------------------------------------------------------------------- */

static cd_status cpu_linear_bwd(cd_ctx *ctx, const float *x, size_t n, const float *w, int in, int out, const float *dy,
                                float *dx, float *dw, float *db) {
    if (in < 1 || out < 1 || n > INT_MAX)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "linear_bwd: n %zu, in %d, out %d", n, in, out);
    if (n == 0) return CD_OK;
    const int prev = cd_blas_threads_push(ctx);
    if (dx) /* dx [n, in] = dy [n, out] . w [out, in] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    if (dw) /* dw [out, in] += dy^T [out, n] . x [n, in] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    cd_blas_threads_pop(prev);
    return db ? cpu_sum_rows(ctx, dy, n, out, db) : CD_OK;
}

/* ---- LayerNorm + modulation ---------------------------------------------------------------- */
/* One row: g = (1 + scale) dy, dx = inv (g - mean(g) - xhat mean(g xhat)); psh += dy,
 * psc += dy xhat (f64 partials, may be NULL). The row statistics and xhat stay in f64 (a rounded
 * f32 mean would err by u |mean| / std relative to dx, large for rows far from zero mean); g is
 * f32. dyr[i] is read before dxr[i] is written, so dx may alias dy. */
static void ln_row(const float *xr, const float *dyr, float *dxr, int dim, const float *scale, float eps, double *psh,
                   double *psc) {
    double mean = 0, v = 0;
    for (int i = 0; i < dim; i++) mean += xr[i];
    mean /= dim;
    for (int i = 0; i < dim; i++) v += (xr[i] - mean) * (xr[i] - mean);
    const double inv = 1.0 / sqrt(v / dim + eps);
    double sg = 0, sgx = 0;
    for (int i = 0; i < dim; i++) {
        const double xh = (xr[i] - mean) * inv;
        const float g = (1.0f + scale[i]) * dyr[i];
        sg += g;
        sgx += g * xh;
        if (psh) psh[i] += dyr[i];
        if (psc) psc[i] += dyr[i] * xh;
    }
    sg /= dim;
    sgx /= dim;
    for (int i = 0; i < dim; i++) {
        const double xh = (xr[i] - mean) * inv;
        const float g = (1.0f + scale[i]) * dyr[i];
        dxr[i] = (float)(inv * (g - sg - xh * sgx));
    }
}

static cd_status cpu_ln_modulate_bwd(cd_ctx *ctx, const float *x, size_t n, int dim, const float *scale, float eps,
                                     const float *dy, float *dx, float *dshift, float *dscale) {
    red_plan p = red_plan_for(n);
    if ((dshift || dscale) && n && !red_alloc(ctx, &p, 2, (size_t)dim)) return CD_ERR_OOM;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)dim))
    for (size_t b = 0; b < p.nb; b++) {
        double *psh = red_block(&p, 2, 0, b, (size_t)dim), *psc = red_block(&p, 2, 1, b, (size_t)dim);
        for (size_t r = b * p.rb; r < BLOCK_END(p, b, n); r++)
            ln_row(x + r * dim, dy + r * dim, dx + r * dim, dim, scale, eps, psh, psc);
    }
    if (p.part) {
        red_finish(ctx, &p, 2, 0, (size_t)dim, dshift);
        red_finish(ctx, &p, 2, 1, (size_t)dim, dscale);
    }
    return CD_OK;
}

/* ---- RMSNorm per head ---------------------------------------------------------------------- */
/* One head row v: inv = 1/sqrt(mean(v^2) + eps), dx = inv w g - v inv^3 / HD sum(g w v);
 * pw += g v inv (f64 partial, may be NULL). Products g w, g v in f32, the rest in f64. */
static void rms_row(const float *v, const float *g, float *dxr, int hd, const float *w, float eps, double *pw) {
    double ss = 0, dot = 0;
    for (int i = 0; i < hd; i++) {
        ss += (double)v[i] * v[i];
        dot += (double)(g[i] * w[i]) * v[i];
    }
    const double inv = 1.0 / sqrt(ss / hd + eps), k = inv * inv * inv * dot / hd;
    for (int i = 0; i < hd; i++) {
        const float gw = g[i] * w[i];
        if (pw) pw[i] += (double)(g[i] * v[i]) * inv;
        dxr[i] = (float)(inv * gw - k * v[i]);
    }
}

static cd_status cpu_rmsnorm_heads_bwd(cd_ctx *ctx, const float *x, size_t n, int nh, int hd, const float *w, float eps,
                                       const float *dy, float *dx, float *dw) {
    const size_t rows = n * (size_t)nh;
    red_plan p = red_plan_for(rows);
    if (dw && rows && !red_alloc(ctx, &p, 1, (size_t)hd)) return CD_ERR_OOM;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(rows * (size_t)hd))
    for (size_t b = 0; b < p.nb; b++) {
        double *pw = red_block(&p, 1, 0, b, (size_t)hd);
        for (size_t r = b * p.rb; r < BLOCK_END(p, b, rows); r++)
            rms_row(x + r * hd, dy + r * hd, dx + r * hd, hd, w, eps, pw);
    }
    if (p.part) red_finish(ctx, &p, 1, 0, (size_t)hd, dw);
    return CD_OK;
}

/* ---- gated residual ------------------------------------------------------------------------ */
static cd_status cpu_gate_add_bwd(cd_ctx *ctx, const float *dx, const float *y, const float *gate, size_t n, int dim,
                                  float *dy, float *dgate) {
    red_plan p = red_plan_for(n);
    if (dgate && n && !red_alloc(ctx, &p, 1, (size_t)dim)) return CD_ERR_OOM;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)dim))
    for (size_t b = 0; b < p.nb; b++) {
        double *pg = red_block(&p, 1, 0, b, (size_t)dim);
        for (size_t r = b * p.rb; r < BLOCK_END(p, b, n); r++) {
            const float *dxr = dx + r * dim, *yr = y + r * dim;
            float *dyr = dy + r * dim;
            for (int c = 0; c < dim; c++) { /* dxr[c], yr[c] read before dyr[c] (aliases) */
                const float g = dxr[c];
                if (pg) pg[c] += (double)g * yr[c];
                dyr[c] = gate[c] * g;
            }
        }
    }
    if (p.part) red_finish(ctx, &p, 1, 0, (size_t)dim, dgate);
    return CD_OK;
}

/* ---- activations --------------------------------------------------------------------------- */
/* Both activations need p = sigmoid(z) and q = p (1 - p) for some z; with e = exp(-z),
 * p = 1/(1 + e) and q = 1/(2 + e + 1/e): no cancellation near p = 1, and e = inf or 0 give
 * p, q = 0 or 1, 0 without NaN. A term t q is taken as 0 when q is 0 (t may be infinite there).
 * gelu_tanh: z = 2 k (x + a x^3), k = sqrt(2/pi), a = 0.044715: f' = p + 2 x k (1 + 3 a x^2) q.
 * silu: z = x: f' = p + x q. The f32 argument z carries |z| u absolute error, so e and the
 * result are good to about (1 + |z|) u relative (the tails of f' are tiny in absolute terms). */
static void cpu_gelu_tanh_bwd(cd_ctx *ctx, const float *x, const float *dy, float *dx, size_t n) {
    const float k = 0.7978845608028654f, a = 0.044715f;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n))
    for (size_t i = 0; i < n; i++) {
        const float v = x[i], e = expf(-2.0f * k * (v + a * v * v * v));
        const float p = 1.0f / (1.0f + e), q = 1.0f / (2.0f + e + 1.0f / e);
        const float tail = q > 0.0f ? 2.0f * k * v * (1.0f + 3.0f * a * v * v) * q : 0.0f;
        dx[i] = (p + tail) * dy[i];
    }
}

static void cpu_silu_bwd(cd_ctx *ctx, const float *x, const float *dy, float *dx, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n))
    for (size_t i = 0; i < n; i++) {
        const float v = x[i], e = expf(-v);
        const float p = 1.0f / (1.0f + e), q = 1.0f / (2.0f + e + 1.0f / e);
        dx[i] = (p + (q > 0.0f ? v * q : 0.0f)) * dy[i];
    }
}

/* ---- RoPE ---------------------------------------------------------------------------------- */
static void cpu_rope_bwd(cd_ctx *ctx, float *g, size_t n, int nh, int hd, const float *cs) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (PAR(n * (size_t)nh * hd))
    for (size_t t = 0; t < n; t++) {
        const float *c = cs + t * (size_t)hd;
        for (int h = 0; h < nh; h++) {
            float *v = g + (t * nh + h) * (size_t)hd;
            for (int i = 0; i < hd / 2; i++) {
                const float g0 = v[2 * i], g1 = v[2 * i + 1];
                v[2 * i] = c[2 * i] * g0 + c[2 * i + 1] * g1;
                v[2 * i + 1] = c[2 * i] * g1 - c[2 * i + 1] * g0;
            }
        }
    }
}

/* ---- profiled entry points (ctx->profile: linear into LINEAR, the rest into OTHER) ---------- */
#define PROF(ret, name, cls, params, args) \
    static ret prof_##name params {        \
        CD_PROF_BEGIN(ctx);                \
        ret s = cpu_##name args;           \
        CD_PROF_END(ctx, cls);             \
        return s;                          \
    }
#define PROF_VOID(name, params, args)    \
    static void prof_##name params {     \
        CD_PROF_BEGIN(ctx);              \
        cpu_##name args;                 \
        CD_PROF_END(ctx, CD_PROF_OTHER); \
    }
PROF(cd_status, linear_bwd, CD_PROF_LINEAR,
     (cd_ctx * ctx, const float *x, size_t n, const float *w, int in, int out, const float *dy, float *dx, float *dw,
      float *db),
     (ctx, x, n, w, in, out, dy, dx, dw, db))
PROF(cd_status, ln_modulate_bwd, CD_PROF_OTHER,
     (cd_ctx * ctx, const float *x, size_t n, int dim, const float *sc, float eps, const float *dy, float *dx,
      float *dsh, float *dsc),
     (ctx, x, n, dim, sc, eps, dy, dx, dsh, dsc))
PROF(cd_status, rmsnorm_heads_bwd, CD_PROF_OTHER,
     (cd_ctx * ctx, const float *x, size_t n, int nh, int hd, const float *w, float eps, const float *dy, float *dx,
      float *dw),
     (ctx, x, n, nh, hd, w, eps, dy, dx, dw))
PROF(cd_status, gate_add_bwd, CD_PROF_OTHER,
     (cd_ctx * ctx, const float *dx, const float *y, const float *g, size_t n, int dim, float *dy, float *dg),
     (ctx, dx, y, g, n, dim, dy, dg))
PROF(cd_status, sum_rows, CD_PROF_OTHER, (cd_ctx * ctx, const float *dy, size_t n, int dim, float *out),
     (ctx, dy, n, dim, out))
PROF_VOID(gelu_tanh_bwd, (cd_ctx * ctx, const float *x, const float *dy, float *dx, size_t n), (ctx, x, dy, dx, n))
PROF_VOID(silu_bwd, (cd_ctx * ctx, const float *x, const float *dy, float *dx, size_t n), (ctx, x, dy, dx, n))
PROF_VOID(rope_bwd, (cd_ctx * ctx, float *g, size_t n, int nh, int hd, const float *cs), (ctx, g, n, nh, hd, cs))

static const cd_ops_bwd k_bwd_cpu = {
    "cpu",         prof_linear_bwd, prof_ln_modulate_bwd, prof_rmsnorm_heads_bwd, prof_gate_add_bwd, prof_gelu_tanh_bwd,
    prof_silu_bwd, prof_rope_bwd,   prof_sum_rows,
};

const cd_ops_bwd *cd_ops_bwd_cpu(void) { return &k_bwd_cpu; }
