/* lab_attention.c — the attention kernel lab (lab/attention/NOTES.md): every kernel version
 * (attn_lab.h: the shipped ones of src/backend/cuda/ and the lab's own, lab/attention/attn_*.cuh)
 * validated against the CPU reference, then timed at FLUX.1 shapes.
 * Build: make lab (build/lab_attention); scripts/gpu-check.sh runs --check and --bench.
 *
 *   lab_attention --check
 *       every variant (cd_lab_attention_variant_name) and the f32 op cd_cuda_attention on dense,
 *       CLEAR and pooled cases against cd_attention_reference on the same bf16-rounded inputs;
 *       one line per failing run, "N passed, N failed", exit 1 on any failure.
 *   lab_attention --bench [--sizes 1024,2048,4096,8192] [--radii 0,8,16,32]
 *                         [--variants all|0,2,3] [--budget SECONDS] [--json FILE]
 *       FLUX.1 shapes (24 heads x 128, T = 512, grid = size/16 per side), random bf16 inputs
 *       resident on the device; per (size, radius, variant) the median of timed repetitions.
 *   lab_attention --ratios [--sizes ...] [--radii ...]
 *       no GPU: the work the flash kernel's schedule computes (pairs, 16-key blocks per warp) and
 *       the bytes it streams, per tile shape, against the useful pairs (NOTES.md tables). */
#include "attn_lab.h"
#include "../../src/ops/attn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- small helpers ------------------------------------------------------------------------- */
static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
/* uniform [lo, hi) from (seed, index): reproducible and parallel */
static float urand(uint64_t seed, uint64_t i, float lo, float hi) {
    const double u = (double)(splitmix(seed * 0x100000001b3ull ^ i) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int nvariants(void) {
    int n = 0;
    while (cd_lab_attention_variant_name(n)) n++;
    return n;
}

/* The dense kernel of a flash variant depends on its version and warp count only:
 * "flashAxB" (v2, 16 query rows per warp) -> A*B/16 warps; "flash3_AxB" (v3, 32 rows per warp)
 * -> 1000 + A*B/32; -1 when not of either form.
 * "default=NAME" -> the variant named NAME (variant 0 is an alias). */
static int variant_warps(const char *name) {
    int a, b;
    if (sscanf(name, "flash3_%dx%d", &a, &b) == 2) return 1000 + a * b / 32;
    if (strncmp(name, "flash3_", 7) != 0 && sscanf(name, "flash%dx%d", &a, &b) == 2) return a * b / 16;
    return -1;
}
static int variant_alias(int v) {
    const char *name = cd_lab_attention_variant_name(v);
    if (!name || strncmp(name, "default=", 8) != 0) return -1;
    for (int i = 0; cd_lab_attention_variant_name(i); i++)
        if (i != v && !strcmp(cd_lab_attention_variant_name(i), name + 8)) return i;
    return -1;
}

/* Do variants a and b run the same kernel at this radius? (aliases; at radius 0 only the warp
 * count of a flash variant matters) */
static int same_kernel(int a, int b, int radius) {
    const int ka = variant_alias(a) >= 0 ? variant_alias(a) : a;
    const int kb = variant_alias(b) >= 0 ? variant_alias(b) : b;
    if (ka == kb) return 1;
    if (radius != 0) return 0;
    const int wa = variant_warps(cd_lab_attention_variant_name(ka));
    return wa > 0 && wa == variant_warps(cd_lab_attention_variant_name(kb));
}

static void die(cd_ctx *ctx, const char *what) {
    fprintf(stderr, "lab_attention: %s: %s\n", what, cd_ctx_error(ctx));
    exit(2);
}

/* ======================================================================================== */
/* --check                                                                                   */
/* ======================================================================================== */
typedef struct {
    int NH, HD, T, H, W, r, down;
} lab_case;

typedef struct { /* one case's host data */
    cd_attn_desc d;
    size_t N, n;            /* tokens, NH*N*HD */
    int E;                  /* extra keys (CLEAR) */
    uint16_t *qb, *kb, *vb; /* bf16 inputs */
    float *qf, *kf, *vf;    /* the same values as f32 */
    float *sw;              /* [DF, DF] */
    uint16_t *ek, *ev;      /* [NH, E, HD]: text keys, then pooled keys rounded to bf16 */
    float *oref, *lref;     /* reference */
    int ref_status;
} lab_data;

static void make_case(const lab_case *c, int idx, lab_data *L) {
    memset(L, 0, sizeof *L);
    cd_attn_desc *d = &L->d;
    d->heads = c->NH;
    d->head_dim = c->HD;
    d->text_len = c->T;
    d->grid_h = c->H;
    d->grid_w = c->W;
    d->radius = c->r;
    d->down = c->down;
    L->N = cd_attn_tokens(d);
    L->n = (size_t)c->NH * L->N * c->HD;
    const size_t n = L->n;
    L->qb = malloc(n * 2);
    L->kb = malloc(n * 2);
    L->vb = malloc(n * 2);
    L->qf = malloc(n * 4);
    L->kf = malloc(n * 4);
    L->vf = malloc(n * 4);
    L->oref = malloc(n * 4);
    L->lref = malloc((size_t)c->NH * L->N * 4);
    const uint64_t seed = 1000 + (uint64_t)idx * 7;
    /* q, k ~ U[-2, 2): scores q.k * HD^-1/2 have a standard deviation ~1.3, so softmax weights
     * spread over e^+-3 and a missing or extra key moves o and lse measurably */
    for (size_t i = 0; i < n; i++) {
        L->qb[i] = cd_f32_to_bf16(urand(seed, i, -2.0f, 2.0f));
        L->kb[i] = cd_f32_to_bf16(urand(seed + 1, i, -2.0f, 2.0f));
        L->vb[i] = cd_f32_to_bf16(urand(seed + 2, i, -1.0f, 1.0f));
        L->qf[i] = cd_bf16_to_f32(L->qb[i]);
        L->kf[i] = cd_bf16_to_f32(L->kb[i]);
        L->vf[i] = cd_bf16_to_f32(L->vb[i]);
    }
    const int pooled = cd_attn_pooled(d), DF = pooled ? c->down : 1;
    L->sw = malloc(sizeof(float) * DF * DF);
    for (int i = 0; i < DF * DF; i++) /* positive, non-uniform, summing to about 1 */
        L->sw[i] = urand(seed + 3, (uint64_t)i, 0.5f, 1.5f) / (float)(DF * DF);
    const int PW = c->W / DF, NP = pooled ? (c->H / DF) * PW : 0;
    L->E = c->r > 0 ? c->T + NP : 0;
    const size_t ne = (size_t)c->NH * (size_t)L->E * c->HD;
    L->ek = malloc(ne * 2 + 2);
    L->ev = malloc(ne * 2 + 2);
    for (int h = 0; h < c->NH; h++)
        for (int e = 0; e < L->E; e++)
            for (int ch = 0; ch < c->HD; ch++) {
                const size_t dst = ((size_t)h * L->E + e) * c->HD + ch;
                if (e < c->T) {
                    L->ek[dst] = L->kb[((size_t)h * L->N + e) * c->HD + ch];
                    L->ev[dst] = L->vb[((size_t)h * L->N + e) * c->HD + ch];
                    continue;
                }
                /* as attn_ref.c pools: double sums of the weighted keys; rounded to bf16 */
                const int pi = e - c->T, cy = pi / PW, cx = pi % PW;
                double ak = 0.0, av = 0.0;
                for (int a = 0; a < DF; a++)
                    for (int b = 0; b < DF; b++) {
                        const size_t tok = (size_t)c->T + (size_t)(cy * DF + a) * c->W + cx * DF + b;
                        const size_t at = ((size_t)h * L->N + tok) * c->HD + ch;
                        ak += (double)L->sw[a * DF + b] * L->kf[at];
                        av += (double)L->sw[a * DF + b] * L->vf[at];
                    }
                L->ek[dst] = cd_f32_to_bf16((float)ak);
                L->ev[dst] = cd_f32_to_bf16((float)av);
            }
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = 1;
    if (cd_ctx_create(&p, &ctx) != CD_OK) {
        L->ref_status = CD_ERR_INTERNAL;
        return;
    }
    L->ref_status = cd_attention_reference(ctx, d, CD_DTYPE_BF16, L->qb, L->kb, L->vb, L->sw, L->oref, L->lref);
    cd_ctx_free(ctx);
}

static void free_case(lab_data *L) {
    free(L->qb);
    free(L->kb);
    free(L->vb);
    free(L->qf);
    free(L->kf);
    free(L->vf);
    free(L->sw);
    free(L->ek);
    free(L->ev);
    free(L->oref);
    free(L->lref);
}

typedef struct {
    double rel, row, lse;
    size_t unwritten;
    long row_at;
} lab_err;

/* Relative L2 error of o over the whole tensor and per query row (worst), max |lse - ref|, and
 * the elements still NaN (poisoned before the run: never written, or a NaN produced). */
static lab_err compare(const lab_data *L, const float *o, const float *lse) {
    lab_err e = {0, 0, 0, 0, -1};
    const int HD = L->d.head_dim;
    const size_t rows = (size_t)L->d.heads * L->N;
    double num = 0, den = 0;
    for (size_t r = 0; r < rows; r++) {
        double rn = 0, rd = 0;
        for (int c = 0; c < HD; c++) {
            const double a = o[r * HD + c], b = L->oref[r * HD + c];
            if (isnan(a)) e.unwritten++;
            rn += (a - b) * (a - b);
            rd += b * b;
        }
        num += rn;
        den += rd;
        const double rr = sqrt(rn) / (sqrt(rd) + 1e-3);
        if (!(rr <= e.row)) e.row = rr, e.row_at = (long)r;
        if (lse) {
            if (isnan(lse[r])) e.unwritten++;
            const double le = fabs((double)lse[r] - L->lref[r]);
            if (!(le <= e.lse)) e.lse = le;
        }
    }
    e.rel = den > 0 ? sqrt(num / den) : sqrt(num);
    return e;
}

/* Tolerances (bf16 arithmetic: unit roundoff u = 2^-8 = 3.9e-3):
 *  - o: the flash kernels round P to bf16 before P.V (relative error <= u per weight, random in
 *    sign), so o is off by ~u/2 relative, typically 1e-3 (and the emulator measures 2e-3 at
 *    worst). Whole-tensor relative L2 <= 1e-2 and every row <= 2e-2 (5u): a row that lost or
 *    gained one of its ~200 keys moves by ~1/sqrt(200) = 7e-2 and fails.
 *  - lse: scores are exact bf16 products accumulated in f32, so lse is good to ~1e-5 - unless
 *    pooled keys are involved: they are rounded to bf16 (relative u) on the GPU path, which moves
 *    scores by up to ~u * |q| |pk| HD^-1/2 ~ 5e-3. Max |lse - ref| <= 1e-3 without pooling (a
 *    missing key of weight >= 0.1% shows), 1e-2 with it. */
static int within(const lab_err *e, int pooled) {
    return e->unwritten == 0 && e->rel <= 1e-2 && e->row <= 2e-2 && e->lse <= (pooled ? 1e-2 : 1e-3);
}

static int check_main(void) {
    cd_ctx *ctx;
    cd_ctx_params cp = cd_ctx_params_default();
    if (cd_ctx_create(&cp, &ctx) != CD_OK) return 2;
    if (cd_cuda_init(ctx) != CD_OK) die(ctx, "cd_cuda_init");
    printf("device: %s\n", cd_cuda_device_desc(ctx));

    /* the cases: dense; CLEAR over radii x grids (T, head_dim, heads rotating); pooled */
    lab_case cases[64];
    int nc = 0;
    cases[nc++] = (lab_case){1, 64, 0, 16, 16, 0, 0};
    cases[nc++] = (lab_case){2, 128, 7, 13, 29, 0, 0};
    cases[nc++] = (lab_case){1, 32, 77, 32, 48, 0, 0};
    cases[nc++] = (lab_case){3, 64, 77, 5, 70, 0, 0};
    cases[nc++] = (lab_case){1, 128, 1, 1, 1, 0, 0}; /* N = 2 */
    {
        const int radii[] = {1, 2, 3, 5, 8, 16, 1000000};
        const int grids[][2] = {{13, 29}, {16, 16}, {32, 48}, {5, 70}};
        const int Ts[] = {0, 7, 77}, HDs[] = {32, 64, 128};
        for (int ri = 0; ri < 7; ri++)
            for (int gi = 0; gi < 4; gi++)
                cases[nc++] = (lab_case){1 + (ri + gi) % 3,
                                         HDs[(ri + 2 * gi) % 3],
                                         Ts[(ri + gi) % 3],
                                         grids[gi][0],
                                         grids[gi][1],
                                         radii[ri],
                                         0};
    }
    cases[nc++] = (lab_case){2, 64, 7, 16, 16, 8, 4};
    cases[nc++] = (lab_case){1, 128, 77, 32, 48, 5, 2};
    cases[nc++] = (lab_case){3, 32, 0, 32, 48, 16, 4};
    cases[nc++] = (lab_case){1, 64, 7, 12, 20, 1, 2};
    cases[nc++] = (lab_case){2, 128, 7, 8, 8, 1000000, 4};
    cases[nc++] = (lab_case){1, 32, 77, 16, 16, 3, 2};
    /* edges: many tiles and chunks; rows wider than a 64-key chunk; a grid narrower than a
     * tile; one image token; T = 512 text keys + pooled keys (E = 692) */
    cases[nc++] = (lab_case){2, 128, 77, 64, 64, 8, 0};
    cases[nc++] = (lab_case){1, 64, 0, 96, 96, 32, 0};
    cases[nc++] = (lab_case){1, 64, 7, 70, 5, 3, 0};
    cases[nc++] = (lab_case){1, 32, 3, 1, 1, 1, 0};
    cases[nc++] = (lab_case){1, 32, 0, 1, 1, 5, 0};
    cases[nc++] = (lab_case){1, 128, 512, 40, 72, 16, 4};

    /* inputs and references on every core */
    lab_data *data = calloc((size_t)nc, sizeof *data);
    double t0 = 0;
#ifdef _OPENMP
    t0 = omp_get_wtime();
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (int i = 0; i < nc; i++) make_case(&cases[i], i, &data[i]);
#ifdef _OPENMP
    printf("references: %d cases in %.1f s\n", nc, omp_get_wtime() - t0);
#endif

    const int nv = nvariants();
    int passed = 0, failed = 0;
    /* worst errors per path: index 0..nv-1 variants, nv = the f32 op */
    lab_err worst[32];
    memset(worst, 0, sizeof worst);
    for (int ci = 0; ci < nc; ci++) {
        lab_data *L = &data[ci];
        const lab_case *c = &cases[ci];
        char desc[160];
        snprintf(desc, sizeof desc, "NH=%d HD=%d T=%d grid=%dx%d r=%d down=%d", c->NH, c->HD, c->T, c->H, c->W, c->r,
                 c->down);
        if (L->ref_status != CD_OK) {
            printf("FAIL %s: the reference failed\n", desc);
            failed++;
            continue;
        }
        const size_t n = L->n, rows = (size_t)c->NH * L->N, ne = (size_t)c->NH * L->E * c->HD;
        void *dqb, *dkb, *dvb, *dqf, *dkf, *dvf, *dsw, *dek, *dev, *dout, *dlse;
        if (cd_cuda_alloc(ctx, n * 2, &dqb) || cd_cuda_alloc(ctx, n * 2, &dkb) || cd_cuda_alloc(ctx, n * 2, &dvb) ||
            cd_cuda_alloc(ctx, n * 4, &dqf) || cd_cuda_alloc(ctx, n * 4, &dkf) || cd_cuda_alloc(ctx, n * 4, &dvf) ||
            cd_cuda_alloc(ctx, 16 * 4 + 64, &dsw) || cd_cuda_alloc(ctx, ne * 2 + 64, &dek) ||
            cd_cuda_alloc(ctx, ne * 2 + 64, &dev) || cd_cuda_alloc(ctx, n * 4, &dout) ||
            cd_cuda_alloc(ctx, rows * 4, &dlse))
            die(ctx, "cd_cuda_alloc");
        const int DF = cd_attn_pooled(&L->d) ? c->down : 1;
        if (cd_cuda_h2d(ctx, dqb, L->qb, n * 2) || cd_cuda_h2d(ctx, dkb, L->kb, n * 2) ||
            cd_cuda_h2d(ctx, dvb, L->vb, n * 2) || cd_cuda_h2d(ctx, dqf, L->qf, n * 4) ||
            cd_cuda_h2d(ctx, dkf, L->kf, n * 4) || cd_cuda_h2d(ctx, dvf, L->vf, n * 4) ||
            cd_cuda_h2d(ctx, dsw, L->sw, sizeof(float) * DF * DF) ||
            (ne && (cd_cuda_h2d(ctx, dek, L->ek, ne * 2) || cd_cuda_h2d(ctx, dev, L->ev, ne * 2))))
            die(ctx, "cd_cuda_h2d");
        float *o = malloc(n * 4), *lse = malloc(rows * 4);
        float *poison = malloc(n * 4);
        memset(poison, 0xff, n * 4); /* NaN */
        /* runs: -1 = the f32 op; 0..nv-1 the variants; nv = variant 0 with lse NULL */
        for (int run = -1; run <= nv; run++) {
            const int want_lse = run != nv;
            if (cd_cuda_h2d(ctx, dout, poison, n * 4) || cd_cuda_h2d(ctx, dlse, poison, rows * 4))
                die(ctx, "cd_cuda_h2d");
            cd_status s;
            if (run < 0)
                s = cd_cuda_attention(ctx, &L->d, dqf, dkf, dvf, dsw, dout, dlse);
            else
                s = cd_lab_attention_bf16(ctx, &L->d, dqb, dkb, dvb, c->r > 0 ? dek : NULL, c->r > 0 ? dev : NULL, L->E,
                                          dout, want_lse ? dlse : NULL, run < nv ? run : 0);
            if (s == CD_OK) s = cd_cuda_sync(ctx);
            const char *path = run < 0 ? "f32-op" : run < nv ? cd_lab_attention_variant_name(run) : "default,lse=NULL";
            if (s != CD_OK) {
                printf("FAIL %s %s: %s\n", desc, path, cd_ctx_error(ctx));
                failed++;
                continue;
            }
            if (cd_cuda_d2h(ctx, o, dout, n * 4) || (want_lse && cd_cuda_d2h(ctx, lse, dlse, rows * 4)))
                die(ctx, "cd_cuda_d2h");
            const lab_err e = compare(L, o, want_lse ? lse : NULL);
            const int pooled = cd_attn_pooled(&L->d);
            if (within(&e, pooled)) {
                passed++;
            } else {
                failed++;
                printf("FAIL %s %s: o rel %.2e, worst row %.2e (head %ld, row %ld), lse %.2e, "
                       "unwritten/NaN %zu\n",
                       desc, path, e.rel, e.row, e.row_at / (long)L->N, e.row_at % (long)L->N, e.lse, e.unwritten);
            }
            lab_err *w = &worst[run < 0 ? nv : run < nv ? run : 0];
            if (!(e.rel <= w->rel)) w->rel = e.rel;
            if (!(e.row <= w->row)) w->row = e.row;
            if (!(e.lse <= w->lse)) w->lse = e.lse;
            w->unwritten += e.unwritten;
        }
        free(o);
        free(lse);
        free(poison);
        void *bufs[] = {dqb, dkb, dvb, dqf, dkf, dvf, dsw, dek, dev, dout, dlse};
        for (int i = 0; i < 11; i++) cd_cuda_free(ctx, bufs[i]);
        free_case(L);
    }
    printf("worst errors over all cases (o rel L2 / worst row / |lse err|):\n");
    for (int v = 0; v <= nv; v++)
        printf("  %-20s %.2e  %.2e  %.2e\n", v < nv ? cd_lab_attention_variant_name(v) : "f32-op", worst[v].rel,
               worst[v].row, worst[v].lse);
    printf("%d passed, %d failed\n", passed, failed);
    free(data);
    cd_ctx_free(ctx);
    return failed ? 1 : 0;
}

/* ======================================================================================== */
/* --bench                                                                                   */
/* ======================================================================================== */
typedef struct {
    int size, radius, variant;
    double ms, tflops, pct, speedup;
    int reps;
} bench_row;

static void fill_bf16(uint16_t *p, size_t n, uint64_t seed, float lo, float hi) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (long long i = 0; i < (long long)n; i++) p[i] = cd_f32_to_bf16(urand(seed, (uint64_t)i, lo, hi));
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_main(const int *sizes, int ns, const int *radii, int nr, const int *vars, int nvs, double budget,
                      const char *json) {
    cd_ctx *ctx;
    cd_ctx_params cp = cd_ctx_params_default();
    if (cd_ctx_create(&cp, &ctx) != CD_OK) return 2;
    if (cd_cuda_init(ctx) != CD_OK) die(ctx, "cd_cuda_init");
    const double peak = cd_cuda_peak_bf16(ctx);
    printf("device: %s, bf16 dense peak %.0f TFLOP/s\n", cd_cuda_device_desc(ctx), peak * 1e-12);
    const int NH = 24, HD = 128, T = 512;

    /* warm every selected variant up on a small problem (module load, smem attribute) */
    {
        cd_attn_desc d = {NH, HD, T, 16, 16, 0, 0, 0.0f};
        const size_t n = (size_t)NH * cd_attn_tokens(&d) * HD;
        void *q, *o;
        if (cd_cuda_alloc(ctx, n * 2, &q) || cd_cuda_alloc(ctx, n * 4, &o)) die(ctx, "alloc");
        uint16_t *h = malloc(n * 2);
        fill_bf16(h, n, 7, -1, 1);
        if (cd_cuda_h2d(ctx, q, h, n * 2)) die(ctx, "h2d");
        free(h);
        for (int i = 0; i < nvs; i++)
            for (int r = 0; r <= 4; r += 4) {
                d.radius = r;
                if (cd_lab_attention_bf16(ctx, &d, q, q, q, NULL, NULL, r ? T : 0, o, NULL, vars[i]) ||
                    cd_cuda_sync(ctx))
                    die(ctx, "warm-up");
            }
        cd_cuda_free(ctx, q);
        cd_cuda_free(ctx, o);
    }

    bench_row *rows = calloc((size_t)ns * nr * nvs + 1, sizeof *rows);
    int nrows = 0;
    printf("%6s %6s %-18s %10s %9s %7s %8s %5s\n", "size", "radius", "variant", "ms/layer", "TFLOP/s", "%peak",
           "vs dense", "reps");
    for (int si = 0; si < ns; si++) {
        const int S = sizes[si], G = S / 16;
        cd_attn_desc d = {NH, HD, T, G, G, 0, 0, 0.0f};
        const size_t N = cd_attn_tokens(&d), n = (size_t)NH * N * HD, ne = (size_t)NH * T * HD;
        void *dq, *dk, *dv, *dek, *dev, *dout, *dlse;
        if (cd_cuda_alloc(ctx, n * 2, &dq) || cd_cuda_alloc(ctx, n * 2, &dk) || cd_cuda_alloc(ctx, n * 2, &dv) ||
            cd_cuda_alloc(ctx, ne * 2, &dek) || cd_cuda_alloc(ctx, ne * 2, &dev) || cd_cuda_alloc(ctx, n * 4, &dout) ||
            cd_cuda_alloc(ctx, (size_t)NH * N * 4, &dlse))
            die(ctx, "cd_cuda_alloc");
        uint16_t *h = malloc(n * 2), *he = malloc(ne * 2);
        if (!h || !he) {
            fprintf(stderr, "lab_attention: out of host memory\n");
            return 2;
        }
        for (int t = 0; t < 3; t++) { /* q, k, v; the text rows of k and v are the extra keys */
            fill_bf16(h, n, 100 + (uint64_t)S * 3 + t, t < 2 ? -2.0f : -1.0f, t < 2 ? 2.0f : 1.0f);
            if (cd_cuda_h2d(ctx, t == 0 ? dq : t == 1 ? dk : dv, h, n * 2)) die(ctx, "h2d");
            if (t > 0) {
                for (int hh = 0; hh < NH; hh++)
                    memcpy(he + (size_t)hh * T * HD, h + (size_t)hh * N * HD, (size_t)T * HD * 2);
                if (cd_cuda_h2d(ctx, t == 1 ? dek : dev, he, ne * 2)) die(ctx, "h2d");
            }
        }
        free(h);
        free(he);

        double dense_ms = 0; /* best flash variant at radius 0, this size */
        for (int ri = 0; ri < nr; ri++) {
            d.radius = radii[ri];
            const double flops = cd_attn_flops(&d);
            int first_row = nrows;
            for (int vi = 0; vi < nvs; vi++) {
                const int v = vars[vi];
                const char *name = cd_lab_attention_variant_name(v);
                if (!strcmp(name, "naive") && S > 1024) continue;
                /* a variant that runs the same kernel as one already timed: reuse its time */
                int copied = 0;
                for (int k = first_row; k < nrows; k++)
                    if (same_kernel(rows[k].variant, v, d.radius)) {
                        rows[nrows] = rows[k];
                        rows[nrows].variant = v;
                        copied = 1;
                        break;
                    }
                if (!copied) {
                    double t[64];
                    int reps = 0;
                    /* the first run is the warm-up at this size and the estimate */
                    if (cd_cuda_timer_start(ctx) ||
                        cd_lab_attention_bf16(ctx, &d, dq, dk, dv, dek, dev, d.radius ? T : 0, dout, dlse, v) ||
                        cd_cuda_timer_stop(ctx, &t[0]))
                        die(ctx, name);
                    int want = (int)(budget / (t[0] > 1e-6 ? t[0] : 1e-6)) - 1;
                    if (want > 50) want = 50;
                    if (t[0] > 1.0) want = 0; /* seconds-long runs: the first one is the number */
                    if (want < 1 && t[0] <= 1.0) want = 1;
                    for (int k = 0; k < want; k++) {
                        if (cd_cuda_timer_start(ctx) ||
                            cd_lab_attention_bf16(ctx, &d, dq, dk, dv, dek, dev, d.radius ? T : 0, dout, dlse, v) ||
                            cd_cuda_timer_stop(ctx, &t[reps]))
                            die(ctx, name);
                        reps++;
                    }
                    if (reps == 0) reps = 1; /* t[0] is the warm-up run */
                    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
                    const double sec = t[reps / 2];
                    bench_row *b = &rows[nrows];
                    b->size = S;
                    b->radius = d.radius;
                    b->variant = v;
                    b->ms = sec * 1e3;
                    b->tflops = flops / sec * 1e-12;
                    b->pct = peak > 0 ? 100.0 * flops / sec / peak : 0;
                    b->reps = reps;
                }
                bench_row *b = &rows[nrows++];
                if (d.radius == 0 && strcmp(name, "naive") && (dense_ms == 0 || b->ms < dense_ms)) dense_ms = b->ms;
            }
            for (int k = first_row; k < nrows; k++) {
                bench_row *b = &rows[k];
                b->speedup = dense_ms > 0 ? dense_ms / b->ms : 0;
                char sp[16] = "-";
                if (b->speedup > 0) snprintf(sp, sizeof sp, "%.2fx", b->speedup);
                printf("%6d %6d %-18s %10.3f %9.1f %6.1f%% %8s %5d\n", b->size, b->radius,
                       cd_lab_attention_variant_name(b->variant), b->ms, b->tflops, b->pct, sp, b->reps);
            }
            fflush(stdout);
        }
        void *bufs[] = {dq, dk, dv, dek, dev, dout, dlse};
        for (int i = 0; i < 7; i++) cd_cuda_free(ctx, bufs[i]);
    }

    /* summary: the best flash variant of each CLEAR config */
    printf("best variant per size and radius:\n");
    for (int si = 0; si < ns; si++)
        for (int ri = 0; ri < nr; ri++) {
            const bench_row *best = NULL;
            for (int k = 0; k < nrows; k++)
                if (rows[k].size == sizes[si] && rows[k].radius == radii[ri] &&
                    strcmp(cd_lab_attention_variant_name(rows[k].variant), "naive") && (!best || rows[k].ms < best->ms))
                    best = &rows[k];
            if (best)
                printf("  size %5d r %3d: %-18s %9.3f ms %7.1f TFLOP/s %5.1f%% of peak%s\n", sizes[si], radii[ri],
                       cd_lab_attention_variant_name(best->variant), best->ms, best->tflops, best->pct,
                       radii[ri] == 0 ? " (dense)" : "");
        }

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "lab_attention: cannot write %s\n", json);
            return 2;
        }
        fprintf(f, "{\n  \"device\": \"%s\",\n  \"peak_bf16_tflops\": %.1f,\n", cd_cuda_device_desc(ctx), peak * 1e-12);
        fprintf(f, "  \"heads\": %d, \"head_dim\": %d, \"text_len\": %d,\n  \"results\": [\n", NH, HD, T);
        for (int k = 0; k < nrows; k++) {
            const bench_row *b = &rows[k];
            fprintf(f,
                    "    {\"size\": %d, \"grid\": %d, \"radius\": %d, \"variant\": %d, \"name\": \"%s\", "
                    "\"ms\": %.4f, \"tflops\": %.2f, \"pct_peak\": %.2f, \"speedup_vs_dense\": %.3f, "
                    "\"reps\": %d}%s\n",
                    b->size, b->size / 16, b->radius, b->variant, cd_lab_attention_variant_name(b->variant), b->ms,
                    b->tflops, b->pct, b->speedup, b->reps, k + 1 < nrows ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        fclose(f);
    }
    free(rows);
    cd_ctx_free(ctx);
    return 0;
}

/* ======================================================================================== */
/* --ratios: the flash kernel's schedule replayed on the CPU (attn_flash_common.cuh ChunkIter and */
/* the per-warp block range), for image queries                                              */
/* ======================================================================================== */
static void ratios_main(const int *sizes, int ns, const int *radii, int nr) {
    static const int shapes[][2] = {{4, 16}, {8, 16}, {2, 32}, {1, 64}, {4, 32}};
    const int T = 512, HD = 128, NH = 24;
    printf("image queries only; 'disc' = the image keys of the discs, 'all' adds the T = %d text "
           "keys they also see;\nL2->smem = K+V bytes streamed by the image tiles per layer (%d "
           "heads x %d), GB\n",
           T, NH, HD);
    printf("%6s %4s %6s %11s %11s %9s %9s %10s\n", "size", "r", "tile", "disc useful", "disc comp.", "disc %", "all %",
           "L2->smem");
    for (int si = 0; si < ns; si++)
        for (int ri = 0; ri < nr; ri++) {
            if (radii[ri] <= 0) continue;
            const int G = sizes[si] / 16, H = G, W = G;
            cd_attn_desc d = {NH, HD, T, H, W, radii[ri], 0, 0.0f};
            const int r = cd_attn_eff_radius(&d);
            /* useful disc pairs (one head) = pairs - text rows - text keys of image rows */
            const double N = (double)T + (double)H * W;
            const double useful = (double)cd_attn_pairs(&d) - (double)T * N - (double)H * W * T;
            for (int sh = 0; sh < 5; sh++) {
                const int QR = shapes[sh][0], QC = shapes[sh][1], NW = QR * QC / 16;
                double computed = 0, rows16 = 0; /* query-key pairs computed; key rows streamed */
                for (int y0 = 0; y0 < H; y0 += QR)
                    for (int x0 = 0; x0 < W; x0 += QC) {
                        const int y1 = (y0 + QR < H ? y0 + QR : H) - 1;
                        const int x1 = (x0 + QC < W ? x0 + QC : W) - 1;
                        const int klo = y0 - (r - 1) > 0 ? y0 - (r - 1) : 0;
                        const int khi = y1 + (r - 1) < H - 1 ? y1 + (r - 1) : H - 1;
                        for (int ky = klo; ky <= khi; ky++) {
                            const int dy = ky < y0 ? y0 - ky : ky > y1 ? ky - y1 : 0;
                            const int hw = cd_disc_halfwidth(r, dy);
                            if (hw < 0) continue;
                            const int a = x0 - hw > 0 ? x0 - hw : 0;
                            const int b = x1 + hw < W - 1 ? x1 + hw : W - 1;
                            for (int kx0 = a; kx0 <= b; kx0 += 64) {
                                const int n = b - kx0 + 1 < 64 ? b - kx0 + 1 : 64;
                                rows16 += (n + 15) / 16 * 16;
                                for (int w = 0; w < NW; w++) {
                                    const int wy = y0 + 16 * w / QC, wx0 = x0 + 16 * w % QC;
                                    if (wy >= H || wx0 >= W) continue;
                                    const int wx1 = wx0 + 15 < W - 1 ? wx0 + 15 : W - 1;
                                    const int whw = cd_disc_halfwidth(r, wy - ky);
                                    if (whw < 0) continue;
                                    int lo = wx0 - whw - kx0, hi = wx1 + whw - kx0;
                                    if (lo < 0) lo = 0;
                                    if (hi > n - 1) hi = n - 1;
                                    if (lo > hi) continue;
                                    computed += 16.0 * 16.0 * (hi / 16 - lo / 16 + 1);
                                }
                            }
                        }
                    }
                /* text keys: every image query computes them in chunks of 64 (T = 512: exact) */
                const double text = (double)H * W * T;
                const double gb =
                    (rows16 + (double)T * ((H + QR - 1) / QR) * ((W + QC - 1) / QC)) * HD * 2.0 * 2.0 * NH * 1e-9;
                char shape[16];
                snprintf(shape, sizeof shape, "%dx%d", QR, QC);
                printf("%6d %4d %6s %11.4g %11.4g %8.1f%% %8.1f%% %10.2f\n", sizes[si], radii[ri], shape, useful,
                       computed, 100.0 * useful / computed, 100.0 * (useful + text) / (computed + text), gb);
            }
        }
}

/* ======================================================================================== */
static void usage(void) {
    fprintf(stderr, "usage: lab_attention --check\n"
                    "       lab_attention --bench [--sizes 1024,2048,4096,8192] [--radii 0,8,16,32]\n"
                    "                     [--variants all|LIST] [--budget SECONDS] [--json FILE]\n"
                    "       lab_attention --ratios [--sizes ...] [--radii ...]\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *mode = argv[1];
    int sizes[16] = {1024, 2048, 4096, 8192}, ns = 4;
    int radii[16] = {0, 8, 16, 32}, nr = 4;
    int vars[64], nvs = -1;
    double budget = 1.0;
    const char *json = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--sizes")) {
            ns = parse_list(val, sizes, 16);
            for (int k = 0; k < ns; k++)
                if (sizes[k] < 16 || sizes[k] % 16) ns = -1;
        } else if (!strcmp(a, "--radii")) {
            nr = parse_list(val, radii, 16);
            for (int k = 0; k < nr; k++)
                if (radii[k] < 0) nr = -1;
        } else if (!strcmp(a, "--variants")) {
            nvs = strcmp(val, "all") ? parse_list(val, vars, 64) : -1;
            if (strcmp(val, "all") && nvs <= 0) ns = -1;
        } else if (!strcmp(a, "--budget")) {
            budget = atof(val);
        } else if (!strcmp(a, "--json")) {
            json = val;
        } else {
            usage();
            return 2;
        }
        i++;
        if (ns <= 0 || nr <= 0) {
            fprintf(stderr, "lab_attention: bad value for %s: '%s'\n", a, val);
            return 2;
        }
    }
    if (!strcmp(mode, "--check")) return check_main();
    if (!strcmp(mode, "--ratios")) {
        ratios_main(sizes, ns, radii, nr);
        return 0;
    }
    if (!strcmp(mode, "--bench")) {
        if (nvs < 0) {
            nvs = nvariants();
            if (nvs > 64) nvs = 64;
            for (int k = 0; k < nvs; k++) vars[k] = k;
        }
        for (int k = 0; k < nvs; k++)
            if (!cd_lab_attention_variant_name(vars[k])) {
                fprintf(stderr, "lab_attention: unknown variant %d\n", vars[k]);
                return 2;
            }
        return bench_main(sizes, ns, radii, nr, vars, nvs, budget, json);
    }
    usage();
    return 2;
}
