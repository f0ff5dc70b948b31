/* optim.c — AdamW, gradient norm and clipping coefficient, weight EMA, freeze globs (optim.h).
 *
 * AdamW has two kernels with the same arithmetic: AVX2 + FMA intrinsics (8 lanes) and portable
 * scalar C with fmaf(). Every operation is a single correctly rounded IEEE operation, so they agree
 * bit for bit, and threads only split the elements. This file relies on the Makefile's -std=c11
 * (GCC: -ffp-contract=off): contracting g * gscale - m into one fma would change the bits. */
#include "optim.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPTIM_X86 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static int nthreads(int threads) {
#ifdef _OPENMP
    return threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads;
    return 1;
#endif
}

/* ---- AdamW -------------------------------------------------------------------------------- */

/* The per-call f32 scalars (optim.h: computed in double as Python does, then rounded). */
typedef struct {
    float gscale;
    float decay;  /* f32(1 - lr * wd) */
    int decayed;  /* weight_decay != 0 */
    float w1;     /* f32(1 - beta1): lerp weight */
    int w1_small; /* |w1| < 0.5: torch's lerp form fma(w, end - self, self) */
    float b2;     /* f32(beta2) */
    float w2;     /* f32(1 - beta2) */
    float bc2s;   /* f32(pow(1 - beta2^t, 0.5)) */
    float eps;
    float nstep; /* f32(-(lr / (1 - beta1^t))) */
} adamw_k;

static adamw_k adamw_coefs(const cd_adamw_cfg *c, int64_t step, float gscale) {
    adamw_k k;
    const double t = (double)step;
    const double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    const double step_size = c->lr / bc1;
    k.gscale = gscale;
    k.decayed = c->weight_decay != 0.0;
    k.decay = (float)(1.0 - c->lr * c->weight_decay);
    k.w1 = (float)(1.0 - c->beta1);
    k.w1_small = fabsf(k.w1) < 0.5f;
    k.b2 = (float)c->beta2;
    k.w2 = (float)(1.0 - c->beta2);
    k.bc2s = (float)pow(bc2, 0.5); /* Python's bias_correction2 ** 0.5 */
    k.eps = (float)c->eps;
    k.nstep = (float)-step_size;
    return k;
}

/* Elements [i0, i1) in scalar C (also the tail of the SIMD kernel). */
static void adamw_scalar(const adamw_k *k, float *restrict p, const float *restrict g, float *restrict m,
                         float *restrict v, size_t i0, size_t i1) {
    const float w1m1 = k->w1 - 1.0f;
    for (size_t i = i0; i < i1; i++) {
        const float gi = g[i] * k->gscale;
        float pi = p[i];
        if (k->decayed) pi = pi * k->decay;
        const float d = gi - m[i];
        const float mi = k->w1_small ? fmaf(k->w1, d, m[i]) : fmaf(w1m1, d, gi);
        const float vi = fmaf(k->w2 * gi, gi, v[i] * k->b2);
        const float den = sqrtf(vi) / k->bc2s + k->eps;
        p[i] = pi + (k->nstep * mi) / den;
        m[i] = mi;
        v[i] = vi;
    }
}

#ifdef OPTIM_X86
__attribute__((target("avx2,fma"))) static void adamw_avx2(const adamw_k *k, float *restrict p, const float *restrict g,
                                                           float *restrict m, float *restrict v, size_t i0, size_t i1) {
    const __m256 gs = _mm256_set1_ps(k->gscale), dc = _mm256_set1_ps(k->decay);
    const __m256 w = _mm256_set1_ps(k->w1_small ? k->w1 : k->w1 - 1.0f);
    const __m256 b2 = _mm256_set1_ps(k->b2), w2 = _mm256_set1_ps(k->w2);
    const __m256 bc = _mm256_set1_ps(k->bc2s), eps = _mm256_set1_ps(k->eps);
    const __m256 ns = _mm256_set1_ps(k->nstep);
    size_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), gs);
        __m256 pi = _mm256_loadu_ps(p + i);
        if (k->decayed) pi = _mm256_mul_ps(pi, dc);
        const __m256 m0 = _mm256_loadu_ps(m + i);
        const __m256 d = _mm256_sub_ps(gi, m0);
        const __m256 mi = _mm256_fmadd_ps(w, d, k->w1_small ? m0 : gi);
        const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(w2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));
        const __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc), eps);
        _mm256_storeu_ps(p + i, _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(ns, mi), den)));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
    }
    adamw_scalar(k, p, g, m, v, i, i1);
}

static int have_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif

#define ADAMW_CHUNK ((size_t)1 << 14) /* elements per parallel work item */

void cd_adamw_step(const cd_adamw_cfg *c, int64_t step, float *p, const float *g, float gscale, float *m, float *v,
                   size_t n, int threads) {
    if (n == 0) return;
    const adamw_k k = adamw_coefs(c, step, gscale);
    void (*kern)(const adamw_k *, float *restrict, const float *restrict, float *restrict, float *restrict, size_t,
                 size_t) = adamw_scalar;
#ifdef OPTIM_X86
    if (have_avx2()) kern = adamw_avx2;
#endif
    const size_t chunks = (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    const int nt = nthreads(threads);
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (chunks > 1 && nt > 1)
    for (size_t ch = 0; ch < chunks; ch++) {
        const size_t i0 = ch * ADAMW_CHUNK, i1 = i0 + ADAMW_CHUNK < n ? i0 + ADAMW_CHUNK : n;
        kern(&k, p, g, m, v, i0, i1);
    }
}

void cd_adamw_step_scalar(const cd_adamw_cfg *c, int64_t step, float *p, const float *g, float gscale, float *m,
                          float *v, size_t n) {
    if (n == 0) return;
    const adamw_k k = adamw_coefs(c, step, gscale);
    adamw_scalar(&k, p, g, m, v, 0, n);
}

/* ---- gradient norm ------------------------------------------------------------------------ */

/* Sum of squares of x[0..n), n <= CD_NORM_BLOCK, in the order optim.h fixes. */
static double block_sumsq(const float *x, size_t n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const double x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        a0 += x0 * x0;
        a1 += x1 * x1;
        a2 += x2 * x2;
        a3 += x3 * x3;
    }
    for (; i < n; i++) {
        const double xi = x[i];
        a0 += xi * xi;
    }
    return (a0 + a1) + (a2 + a3);
}

static size_t blocks_of(size_t n) { return (n + CD_NORM_BLOCK - 1) / CD_NORM_BLOCK; }

double cd_grad_norm(const float *const *g, const size_t *n, size_t count, int threads) {
    size_t nb = 0;
    for (size_t r = 0; r < count; r++) nb += blocks_of(n[r]);
    if (nb == 0) return 0.0;
    double *part = malloc(nb * sizeof(double));
    const int nt = nthreads(threads);
    if (part && nt > 1 && nb > 1) {
#pragma omp parallel num_threads(nt)
        {
            size_t off = 0;
            for (size_t r = 0; r < count; r++) {
                const size_t rb = blocks_of(n[r]);
#pragma omp for schedule(static) nowait
                for (size_t b = 0; b < rb; b++) {
                    const size_t i0 = b * CD_NORM_BLOCK;
                    const size_t len = n[r] - i0 < CD_NORM_BLOCK ? n[r] - i0 : CD_NORM_BLOCK;
                    part[off + b] = block_sumsq(g[r] + i0, len);
                }
                off += rb;
            }
        }
        double s = 0.0;
        for (size_t b = 0; b < nb; b++) s += part[b];
        free(part);
        return sqrt(s);
    }
    free(part); /* one thread (or no memory for the block sums): the same order, serially */
    double s = 0.0;
    for (size_t r = 0; r < count; r++)
        for (size_t i0 = 0; i0 < n[r]; i0 += CD_NORM_BLOCK) {
            const size_t len = n[r] - i0 < CD_NORM_BLOCK ? n[r] - i0 : CD_NORM_BLOCK;
            s += block_sumsq(g[r] + i0, len);
        }
    return sqrt(s);
}

float cd_clip_coef(double norm, float max_norm) {
    if (!(max_norm > 0.0f)) return 1.0f;
    const float denom = (float)norm + 1e-6f; /* total_norm + 1e-6 (f32 tensor + scalar) */
    const float coef = (1.0f / denom) * max_norm;
    return coef > 1.0f ? 1.0f : coef; /* clamp(max=1.0); NaN stays NaN */
}

/* ---- EMA ---------------------------------------------------------------------------------- */

void cd_ema_update(float *e, const float *p, size_t n, float decay, int threads) {
    if (n == 0) return;
    const float omd = 1.0f - decay;
    const int nt = nthreads(threads);
    (void)nt;
#pragma omp parallel for simd num_threads(nt) schedule(static) if (parallel : n >= ADAMW_CHUNK && nt > 1)
    for (size_t i = 0; i < n; i++) {
        const float a = decay * e[i], b = omd * p[i];
        e[i] = a + b;
    }
}

/* ---- freeze globs ------------------------------------------------------------------------- */

int cd_name_matches(const char *patterns, const char *name) {
    if (!patterns || !name) return 0;
    char local[256];
    const char *s = patterns;
    for (;;) {
        const char *end = strchr(s, ',');
        if (!end) end = s + strlen(s);
        const char *a = s, *b = end;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        if (b > a) {
            const size_t len = (size_t)(b - a);
            char *pat = len < sizeof local ? local : malloc(len + 1);
            if (pat) {
                memcpy(pat, a, len);
                pat[len] = '\0';
                const int hit = fnmatch(pat, name, 0) == 0;
                if (pat != local) free(pat);
                if (hit) return 1;
            }
        }
        if (!*end) return 0;
        s = end + 1;
    }
}
