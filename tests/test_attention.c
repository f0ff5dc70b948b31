/* test_attention.c — fast CPU attention vs the double-precision reference, on random inputs, for
 * every SIMD path this machine runs, f32 and bf16 inputs, and the shapes that break kernels
 * (odd grids, borders, grids smaller than the disc, 1 x N, T = 0, r = 1, huge r, pooled keys,
 * generic head_dim, chunk boundaries). Guard regions around the outputs catch stray writes.
 *
 * Tolerance (derived, not tuned): the fast path computes in f32 (bf16 inputs are converted exactly),
 * so with unit roundoff u = 2^-24, accumulation length L = head_dim + keys per row and score
 * magnitude M = scale * max|q|_2 * max|k|_2 (Cauchy-Schwarz bound of sum_d |q_d k_d|, which sets the
 * rounding error of a score), an element of o may differ from the exact value by about
 * u (sqrt(L) + M) max|v| for random-signed data; we allow 32 times that (and the same relative to
 * 1+|lse| for lse). A single wrong key in a row shifts o by ~p_j |v|, far above it (the "sharp"
 * cases make p_j large). */
#include "test.h"
#include "../src/util/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 64
#define SENTINEL 1234.5f

typedef struct {
    int heads, hd, T, H, W, r, down;
    float scale;
    float amp; /* input amplitude; larger = peakier softmax */
} shape;

typedef struct {
    cd_attn_desc d;
    size_t N, n;              /* tokens, elements of q */
    float *qf, *kf, *vf, *sw; /* f32 inputs */
    uint16_t *qb, *kb, *vb;   /* bf16 copies */
    float *qr, *kr, *vr;      /* bf16 copies widened to f32 (inputs of the bf16 reference) */
} inputs;

static double cd_attn_desc_scale(const cd_attn_desc *d) {
    return d->scale != 0.0f ? d->scale : 1.0 / sqrt((double)d->head_dim);
}

static cd_attn_desc desc_of(const shape *s) {
    cd_attn_desc d = {s->heads, s->hd, s->T, s->H, s->W, s->r, s->down, s->scale};
    return d;
}

static void inputs_free(inputs *in) {
    free(in->qf);
    free(in->kf);
    free(in->vf);
    free(in->sw);
    free(in->qb);
    free(in->kb);
    free(in->vb);
    free(in->qr);
    free(in->kr);
    free(in->vr);
}

static int inputs_make(inputs *in, const shape *s, unsigned long long seed) {
    memset(in, 0, sizeof *in);
    in->d = desc_of(s);
    in->N = (size_t)s->T + (size_t)s->H * s->W;
    in->n = (size_t)s->heads * in->N * s->hd;
    test_rng g = test_rng_seed(seed);
    float **f[3] = {&in->qf, &in->kf, &in->vf};
    uint16_t **b[3] = {&in->qb, &in->kb, &in->vb};
    float **r[3] = {&in->qr, &in->kr, &in->vr};
    for (int t = 0; t < 3; t++) {
        *f[t] = malloc(in->n * sizeof(float));
        *b[t] = malloc(in->n * sizeof(uint16_t));
        *r[t] = malloc(in->n * sizeof(float));
        if (!*f[t] || !*b[t] || !*r[t]) return 0;
        for (size_t i = 0; i < in->n; i++) {
            float x = test_rng_f(&g) * (t < 2 ? s->amp : 1.0f);
            (*f[t])[i] = x;
            (*b[t])[i] = cd_f32_to_bf16(x);
            (*r[t])[i] = cd_bf16_to_f32((*b[t])[i]);
        }
    }
    if (s->down >= 2) {
        in->sw = malloc(sizeof(float) * s->down * s->down);
        if (!in->sw) return 0;
        for (int i = 0; i < s->down * s->down; i++) /* around 1/d^2, never uniform */
            in->sw[i] = (1.0f + 0.5f * test_rng_f(&g)) / (float)(s->down * s->down);
    }
    return 1;
}

/* Output buffers with sentinel guards on both sides. */
typedef struct {
    float *o_all, *lse_all, *o, *lse;
    size_t no, nl;
} outbuf;

static int outbuf_make(outbuf *b, size_t no, size_t nl) {
    b->no = no;
    b->nl = nl;
    b->o_all = malloc((no + 2 * GUARD) * sizeof(float));
    b->lse_all = malloc((nl + 2 * GUARD) * sizeof(float));
    if (!b->o_all || !b->lse_all) return 0;
    for (size_t i = 0; i < no + 2 * GUARD; i++) b->o_all[i] = SENTINEL;
    for (size_t i = 0; i < nl + 2 * GUARD; i++) b->lse_all[i] = SENTINEL;
    b->o = b->o_all + GUARD;
    b->lse = b->lse_all + GUARD;
    return 1;
}
static int guards_ok(const outbuf *b) {
    for (size_t i = 0; i < GUARD; i++)
        if (b->o_all[i] != SENTINEL || b->o_all[GUARD + b->no + i] != SENTINEL || b->lse_all[i] != SENTINEL ||
            b->lse_all[GUARD + b->nl + i] != SENTINEL)
            return 0;
    return 1;
}
static void outbuf_free(outbuf *b) {
    free(b->o_all);
    free(b->lse_all);
}

/* Largest L2 norm of a head_dim row. */
static double max_row_norm(const float *x, size_t n, int hd) {
    double m = 0;
    for (size_t i = 0; i < n; i += (size_t)hd) {
        double s = 0;
        for (int c = 0; c < hd; c++) s += (double)x[i + c] * x[i + c];
        m = fmax(m, sqrt(s));
    }
    return m;
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* Compares got against ref with the derived tolerance; reports the worst element. */
static int compare(const char *what, const cd_attn_desc *d, const float *got, const float *ref, size_t n,
                   double scale_ref, size_t L, double M, char *msg, size_t msglen) {
    const double u = 1.0 / 16777216.0;
    const double tol = 32.0 * u * (sqrt((double)L) + M) * scale_ref;
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            snprintf(msg, msglen, "%s[%zu] is not finite (%g)", what, i, got[i]);
            return 0;
        }
        double e = fabs((double)got[i] - ref[i]);
        if (what[0] == 'l') e /= 1.0 + fabs(ref[i]);
        if (e > worst) {
            worst = e;
            wi = i;
        }
    }
    if (worst > tol) {
        snprintf(msg, msglen,
                 "%s mismatch: |err| %.3g > tol %.3g at %zu (got %.8g ref %.8g) heads=%d hd=%d T=%d "
                 "grid=%dx%d r=%d down=%d",
                 what, worst, tol, wi, got[wi], ref[wi], d->heads, d->head_dim, d->text_len, d->grid_h, d->grid_w,
                 d->radius, d->down);
        return 0;
    }
    return 1;
}

/* Runs the fast path (given ISA, threads) and the reference on one shape; 1 if all agree. */
static int check_shape(const shape *s, cd_isa isa, int threads, cd_dtype dt, char *msg, size_t ml) {
    inputs in;
    outbuf fast = {0}, ref = {0};
    cd_ctx *ctx = NULL;
    int ok = 0;
    cd_ctx_params p = {threads, isa};
    if (!inputs_make(&in, s, 1000 + (unsigned long long)s->H * 31 + s->W * 7 + s->r + s->hd) ||
        !outbuf_make(&fast, in.n, (size_t)s->heads * in.N) || !outbuf_make(&ref, in.n, (size_t)s->heads * in.N) ||
        cd_ctx_create(&p, &ctx) != CD_OK) {
        snprintf(msg, ml, "setup failed");
        goto done;
    }
    const int b = dt == CD_DTYPE_BF16;
    cd_status st = cd_attention_forward(ctx, &in.d, dt, b ? (void *)in.qb : in.qf, b ? (void *)in.kb : in.kf,
                                        b ? (void *)in.vb : in.vf, in.sw, fast.o, fast.lse);
    if (st != CD_OK) {
        snprintf(msg, ml, "fast: %s", cd_ctx_error(ctx));
        goto done;
    }
    st = cd_attention_reference(ctx, &in.d, CD_DTYPE_F32, b ? in.qr : in.qf, b ? in.kr : in.kf, b ? in.vr : in.vf,
                                in.sw, ref.o, ref.lse);
    if (st != CD_OK) {
        snprintf(msg, ml, "ref: %s", cd_ctx_error(ctx));
        goto done;
    }
    if (!guards_ok(&fast)) {
        snprintf(msg, ml, "fast kernel wrote outside its outputs");
        goto done;
    }
    const size_t L = (size_t)s->hd + in.N + (size_t)s->H * s->W;
    const double vmax = max_abs(b ? in.vr : in.vf, in.n);
    const double M = cd_attn_desc_scale(&in.d) * max_row_norm(b ? in.qr : in.qf, in.n, s->hd) *
                     max_row_norm(b ? in.kr : in.kf, in.n, s->hd);
    ok = compare("o", &in.d, fast.o, ref.o, in.n, vmax, L, M, msg, ml) &&
         compare("lse", &in.d, fast.lse, ref.lse, (size_t)s->heads * in.N, 1.0, L, M, msg, ml);
done:
    cd_ctx_free(ctx);
    outbuf_free(&fast);
    outbuf_free(&ref);
    inputs_free(&in);
    return ok;
}

static const shape k_shapes[] = {
    /* heads hd  T   H   W   r  down scale amp */
    {2, 64, 7, 9, 13, 3, 0, 0, 1},     /* odd grid, borders */
    {1, 128, 0, 5, 5, 2, 0, 0, 1},     /* T = 0 */
    {2, 128, 16, 16, 16, 8, 0, 0, 1},  /* FLUX-like */
    {1, 64, 5, 1, 40, 4, 0, 0, 1},     /* 1 x N */
    {1, 64, 3, 40, 1, 5, 0, 0, 1},     /* N x 1 */
    {1, 64, 4, 3, 4, 8, 0, 0, 1},      /* grid smaller than the disc */
    {1, 64, 0, 6, 7, 1, 0, 0, 1},      /* r = 1: only itself + text */
    {3, 32, 10, 6, 8, 4, 2, 0, 1},     /* pooled, d = 2 */
    {2, 64, 8, 8, 12, 5, 4, 0, 1},     /* pooled, d = 4 */
    {1, 80, 9, 7, 10, 3, 0, 0, 1},     /* generic head_dim */
    {1, 1, 3, 4, 5, 2, 0, 0, 1},       /* head_dim 1 */
    {2, 64, 5, 6, 7, 0, 0, 0, 1},      /* dense */
    {1, 128, 20, 17, 19, 0, 0, 0, 1},  /* dense, > 256 keys: several chunks */
    {1, 64, 300, 4, 4, 3, 0, 0, 1},    /* text longer than a chunk */
    {1, 64, 5, 4, 37, 6, 0, 0, 1},     /* several strips per row, partial last strip */
    {1, 64, 0, 30, 30, 20, 0, 0, 1},   /* a strip's disc spans several chunks */
    {1, 16, 2, 9, 11, 3, 0, 1.0f, 3},  /* sharp softmax: one wrong key shows */
    {1, 64, 6, 10, 22, 4, 2, 0.5f, 2}, /* sharp + pooled */
    {2, 128, 12, 8, 8, 6, 0, 0, 30},   /* huge scores (|s| ~ 100s): stability */
};

static void run_all(cd_isa isa, cd_dtype dt) {
    if (!cd_isa_supported(isa)) return; /* that path cannot run here; others cover the logic */
    char msg[512];
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        EXPECT(check_shape(&k_shapes[i], isa, 2, dt, msg, sizeof msg), "%s/%s shape %zu: %s", cd_isa_name(isa),
               cd_dtype_name(dt), i, msg);
}

TEST(attn_generic_f32) { run_all(CD_ISA_GENERIC, CD_DTYPE_F32); }
TEST(attn_generic_bf16) { run_all(CD_ISA_GENERIC, CD_DTYPE_BF16); }
TEST(attn_avx2_f32) { run_all(CD_ISA_AVX2, CD_DTYPE_F32); }
TEST(attn_avx2_bf16) { run_all(CD_ISA_AVX2, CD_DTYPE_BF16); }
TEST(attn_avx512_f32) { run_all(CD_ISA_AVX512, CD_DTYPE_F32); }
TEST(attn_avx512_bf16) { run_all(CD_ISA_AVX512, CD_DTYPE_BF16); }

/* The machine this runs on must exercise at least one SIMD path (CI is x86-64 with AVX2), unless
 * CLEARDIT_ISA deliberately caps the run at the generic path (CI's fallback stage). */
TEST(attn_simd_path_available) {
    const char *cap = getenv("CLEARDIT_ISA");
    if (cap && !strcmp(cap, "generic")) {
        EXPECT(!cd_isa_supported(CD_ISA_AVX2) && !cd_isa_supported(CD_ISA_AVX512),
               "CLEARDIT_ISA=generic, yet a SIMD path is reported supported");
        printf("  SIMD paths capped by CLEARDIT_ISA=generic: the generic kernels run alone\n");
        return;
    }
    CHECK(cd_isa_supported(CD_ISA_AVX2) || cd_isa_supported(CD_ISA_AVX512),
          "neither AVX2 nor AVX-512 available: SIMD kernels untested on this machine");
}

/* A radius covering the whole grid is dense attention (reference and fast). */
TEST(attn_huge_radius_equals_dense) {
    shape s = {2, 64, 6, 7, 9, 1000000, 0, 0, 1};
    inputs in;
    outbuf a = {0}, b = {0}, c = {0};
    cd_ctx *ctx = NULL;
    CHECK(inputs_make(&in, &s, 7) && outbuf_make(&a, in.n, 2 * in.N) && outbuf_make(&b, in.n, 2 * in.N) &&
              outbuf_make(&c, in.n, 2 * in.N) && cd_ctx_create(NULL, &ctx) == CD_OK,
          "setup");
    cd_attn_desc dense = in.d;
    dense.radius = 0;
    EXPECT(cd_attention_reference(ctx, &in.d, CD_DTYPE_F32, in.qf, in.kf, in.vf, NULL, a.o, a.lse) == CD_OK,
           "ref clear");
    EXPECT(cd_attention_reference(ctx, &dense, CD_DTYPE_F32, in.qf, in.kf, in.vf, NULL, b.o, b.lse) == CD_OK,
           "ref dense");
    EXPECT(cd_attention_forward(ctx, &in.d, CD_DTYPE_F32, in.qf, in.kf, in.vf, NULL, c.o, c.lse) == CD_OK,
           "fast clear");
    for (size_t i = 0; i < in.n; i++) {
        EXPECT(a.o[i] == b.o[i], "reference CLEAR(r huge) != dense at %zu: %g vs %g", i, a.o[i], b.o[i]);
        if (test_failed()) break;
    }
    char msg[256];
    EXPECT(compare("o", &in.d, c.o, b.o, in.n, max_abs(in.vf, in.n), 64 + in.N,
                   cd_attn_desc_scale(&in.d) * max_row_norm(in.qf, in.n, 64) * max_row_norm(in.kf, in.n, 64), msg,
                   sizeof msg),
           "%s", msg);
    EXPECT(cd_attn_pairs(&in.d) == (uint64_t)in.N * in.N, "pairs(r huge) != N^2");
    cd_ctx_free(ctx);
    outbuf_free(&a);
    outbuf_free(&b);
    outbuf_free(&c);
    inputs_free(&in);
}

/* Independent check of the reference's mask: for sampled image queries, CLEAR output equals dense
 * attention over the explicitly gathered allowed keys (text + disc + pooled by definition). */
static void gathered_case(const shape *s, unsigned long long seed) {
    inputs in;
    outbuf ref = {0};
    cd_ctx *ctx = NULL;
    const int hd = s->hd, NP = s->down ? (s->H / s->down) * (s->W / s->down) : 0;
    float *gk = NULL, *gv = NULL, *gq = NULL, *go = NULL, *gl = NULL;
    if (!inputs_make(&in, s, seed) || !outbuf_make(&ref, in.n, in.N) || cd_ctx_create(NULL, &ctx) != CD_OK) goto out;
    const size_t cap = (in.N + NP) * hd;
    gk = malloc(sizeof(float) * cap);
    gv = malloc(sizeof(float) * cap);
    gq = malloc(sizeof(float) * cap);
    go = malloc(sizeof(float) * cap);
    gl = malloc(sizeof(float) * (in.N + NP));
    if (!gk || !gv || !gq || !go || !gl) {
        test_fail(__FILE__, __LINE__, "alloc");
        goto out;
    }
    EXPECT(cd_attention_reference(ctx, &in.d, CD_DTYPE_F32, in.qf, in.kf, in.vf, in.sw, ref.o, ref.lse) == CD_OK,
           "ref");
    for (int qi = s->T; qi < (int)in.N && !test_failed(); qi += 5) {
        const int qy = (qi - s->T) / s->W, qx = (qi - s->T) % s->W;
        int n = 0;
        for (int j = 0; j < (int)in.N; j++) {
            const int ky = (j - s->T) / s->W, kx = (j - s->T) % s->W;
            if (j >= s->T && (qy - ky) * (qy - ky) + (qx - kx) * (qx - kx) >= s->r * s->r) continue;
            memcpy(gk + (size_t)n * hd, in.kf + (size_t)j * hd, sizeof(float) * hd);
            memcpy(gv + (size_t)n * hd, in.vf + (size_t)j * hd, sizeof(float) * hd);
            n++;
        }
        for (int cy = 0; cy < (s->down ? s->H / s->down : 0); cy++)
            for (int cx = 0; cx < s->W / s->down; cx++, n++)
                for (int c = 0; c < hd; c++) {
                    double ak = 0, av = 0;
                    for (int a2 = 0; a2 < s->down; a2++)
                        for (int b2 = 0; b2 < s->down; b2++) {
                            size_t j = (size_t)s->T + (size_t)(cy * s->down + a2) * s->W + cx * s->down + b2;
                            ak += in.sw[a2 * s->down + b2] * in.kf[j * hd + c];
                            av += in.sw[a2 * s->down + b2] * in.vf[j * hd + c];
                        }
                    gk[(size_t)n * hd + c] = (float)ak;
                    gv[(size_t)n * hd + c] = (float)av;
                }
        /* dense over the n gathered keys, every query row = this query; row 0 is the answer */
        for (int t = 0; t < n; t++) memcpy(gq + (size_t)t * hd, in.qf + (size_t)qi * hd, sizeof(float) * hd);
        cd_attn_desc dd = {1, hd, 0, 1, n, 0, 0, s->scale};
        EXPECT(cd_attention_reference(ctx, &dd, CD_DTYPE_F32, gq, gk, gv, NULL, go, gl) == CD_OK, "dense");
        for (int c = 0; c < hd; c++)
            EXPECT(fabsf(go[c] - ref.o[(size_t)qi * hd + c]) <= 1e-6f * (1 + fabsf(go[c])),
                   "query %d channel %d: CLEAR ref %g, gathered dense %g", qi, c, ref.o[(size_t)qi * hd + c], go[c]);
        EXPECT(fabsf(gl[0] - ref.lse[qi]) <= 1e-6f * (1 + fabsf(gl[0])), "lse query %d: %g vs %g", qi, ref.lse[qi],
               gl[0]);
    }
out:
    free(gk);
    free(gv);
    free(gq);
    free(go);
    free(gl);
    cd_ctx_free(ctx);
    outbuf_free(&ref);
    inputs_free(&in);
}

TEST(attn_reference_matches_gathered_dense) {
    shape a = {1, 8, 3, 7, 9, 3, 0, 0.7f, 2}, b = {1, 8, 2, 8, 8, 3, 2, 0.7f, 2};
    gathered_case(&a, 99);
    gathered_case(&b, 100);
}

/* Each strip is computed by one thread from the same inputs: thread count must not change bits. */
TEST(attn_deterministic_across_threads) {
    shape s = {3, 64, 9, 11, 23, 5, 0, 0, 1};
    inputs in;
    outbuf a = {0}, b = {0};
    cd_ctx *c1 = NULL, *c2 = NULL;
    cd_ctx_params p1 = {1, CD_ISA_AUTO}, p2 = {2, CD_ISA_AUTO};
    CHECK(inputs_make(&in, &s, 5) && outbuf_make(&a, in.n, 3 * in.N) && outbuf_make(&b, in.n, 3 * in.N) &&
              cd_ctx_create(&p1, &c1) == CD_OK && cd_ctx_create(&p2, &c2) == CD_OK,
          "setup");
    EXPECT(cd_attention_forward(c1, &in.d, CD_DTYPE_F32, in.qf, in.kf, in.vf, NULL, a.o, a.lse) == CD_OK, "1 thread");
    EXPECT(cd_attention_forward(c2, &in.d, CD_DTYPE_F32, in.qf, in.kf, in.vf, NULL, b.o, b.lse) == CD_OK, "2 threads");
    EXPECT(!memcmp(a.o, b.o, in.n * sizeof(float)) && !memcmp(a.lse, b.lse, 3 * in.N * sizeof(float)),
           "outputs differ between 1 and 2 threads");
    cd_ctx_free(c1);
    cd_ctx_free(c2);
    outbuf_free(&a);
    outbuf_free(&b);
    inputs_free(&in);
}

TEST(attn_rejects_bad_descriptors) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    float buf[4 * 64] = {1};
    const struct {
        cd_attn_desc d;
        const char *needle;
    } bad[] = {
        {{1, 64, 0, 2, 2, -1, 0, 0}, "radius"},    {{1, 64, 0, 6, 6, 3, 4, 0}, "divisible"},
        {{1, 64, 0, 4, 4, 0, 2, 0}, "need CLEAR"}, {{0, 64, 0, 2, 2, 1, 0, 0}, "heads"},
        {{1, 0, 0, 2, 2, 1, 0, 0}, "head_dim"},    {{1, 64, -1, 2, 2, 1, 0, 0}, "text length"},
        {{1, 64, 0, 0, 2, 1, 0, 0}, "grid"},       {{1, 64, 0, 2, 2, 1, 0, -1.0f}, "scale"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cd_status st = cd_attention_forward(ctx, &bad[i].d, CD_DTYPE_F32, buf, buf, buf, NULL, buf, NULL);
        EXPECT(st == CD_ERR_INVALID_ARG, "case %zu: status %d", i, (int)st);
        EXPECT(strstr(cd_ctx_error(ctx), bad[i].needle) != NULL, "case %zu: message '%s' lacks '%s'", i,
               cd_ctx_error(ctx), bad[i].needle);
    }
    cd_attn_desc ok = {1, 64, 0, 2, 2, 1, 2, 0};
    EXPECT(cd_attention_forward(ctx, &ok, CD_DTYPE_F32, buf, buf, buf, NULL, buf, NULL) == CD_ERR_INVALID_ARG,
           "pooled without spatial_weight accepted");
    cd_attn_desc ok2 = {1, 64, 0, 2, 2, 1, 0, 0};
    EXPECT(cd_attention_forward(ctx, &ok2, CD_DTYPE_F16, buf, buf, buf, NULL, buf, NULL) == CD_ERR_UNSUPPORTED,
           "F16 inputs accepted");
    cd_ctx_free(ctx);
}

/* Exactness of the disc geometry helpers against their definition. */
TEST(attn_disc_halfwidth_definition) {
    extern int cd_disc_halfwidth(int64_t r, int64_t dy);
    for (int64_t r = 1; r <= 70; r++)
        for (int64_t dy = -r - 1; dy <= r + 1; dy++) {
            int64_t want = -1;
            for (int64_t dx = 0; dx * dx + dy * dy < r * r; dx++) want = dx;
            EXPECT(cd_disc_halfwidth(r, dy) == want, "r=%lld dy=%lld: %d != %lld", (long long)r, (long long)dy,
                   cd_disc_halfwidth(r, dy), (long long)want);
        }
    EXPECT(cd_disc_halfwidth(3000000, 0) == 2999999, "large radius");
    /* interior key counts from docs/clear.md */
    const int64_t rs[3] = {8, 16, 32}, want[3] = {193, 793, 3205};
    for (int i = 0; i < 3; i++) {
        int64_t n = 0;
        for (int64_t dy = -rs[i] + 1; dy <= rs[i] - 1; dy++) n += 2 * cd_disc_halfwidth(rs[i], dy) + 1;
        EXPECT(n == want[i], "r=%lld interior disc %lld != %lld", (long long)rs[i], (long long)n, (long long)want[i]);
    }
}

/* Large sequences switch dense/text jobs to 128 queries (K+V of a head > 8 MB) — too big for the
 * O(N^2) reference in a unit test, so cross-check two independent decompositions of the same
 * math: dense (128-row jobs over one segment) against CLEAR with a covering radius (4x4 image
 * tiles over per-row runs, text rows as 128-row jobs). */
TEST(attn_large_dense_vs_covering_clear) {
    shape s = {1, 128, 40, 90, 92, 0, 0, 0, 1}; /* N = 8320: K+V = 8.5 MB */
    inputs in;
    outbuf a = {0}, b = {0};
    cd_ctx *ctx = NULL;
    CHECK(inputs_make(&in, &s, 77) && outbuf_make(&a, in.n, in.N) && outbuf_make(&b, in.n, in.N) &&
              cd_ctx_create(NULL, &ctx) == CD_OK,
          "setup");
    cd_attn_desc cover = in.d;
    cover.radius = 90 + 92;
    EXPECT(cd_attention_forward(ctx, &in.d, CD_DTYPE_F32, in.qf, in.kf, in.vf, NULL, a.o, a.lse) == CD_OK, "dense");
    EXPECT(cd_attention_forward(ctx, &cover, CD_DTYPE_F32, in.qf, in.kf, in.vf, NULL, b.o, b.lse) == CD_OK, "clear");
    EXPECT(guards_ok(&a) && guards_ok(&b), "stray writes");
    char msg[512];
    const double M = cd_attn_desc_scale(&in.d) * max_row_norm(in.qf, in.n, 128) * max_row_norm(in.kf, in.n, 128);
    EXPECT(compare("o", &in.d, a.o, b.o, in.n, 2 * max_abs(in.vf, in.n), 128 + in.N, M, msg, sizeof msg), "%s", msg);
    EXPECT(compare("lse", &in.d, a.lse, b.lse, in.N, 2.0, 128 + in.N, M, msg, sizeof msg), "%s", msg);
    cd_ctx_free(ctx);
    outbuf_free(&a);
    outbuf_free(&b);
    inputs_free(&in);
}
