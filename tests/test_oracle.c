/* test_oracle.c — the attention kernels against an independent oracle: golden fixtures written by
 * PyTorch (tests/oracle/attention_fixtures.py, float64 softmax with the CLEAR mask built as the
 * reference code's mask_mod, cross-checked there with SDPA) under tests/fixtures/attention/.
 * Every fixture runs through cd_attention_forward on each SIMD path this machine supports and
 * through cd_attention_reference; o and lse must match the fixture. The fixture's own count of
 * allowed pairs (from its boolean mask) must equal cd_attn_pairs.
 *
 * Tolerance, derived as in tests/test_attention.c: with u = 2^-24, L = head_dim + keys per row and
 * M = scale * max|q|_2 * max|k|_2 (pooled keys: times max(1, sum|w|)), the f32 fast path may differ
 * from the exact value by ~u (sqrt(L) + M) max|v|; we allow 32 times that (lse: relative to 1+|lse|).
 * The reference accumulates in double; it differs from the fixture only through its f32 scale
 * (|score error| <= u M), and the rounding of both results to f32: 4 u (1 + M) max|v| (lse: 4 u (1 + M)
 * relative to 1+|lse|).
 *
 * Run from the repository root (make test does); a missing or empty fixture directory fails with
 * the command that regenerates it. */
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleardit.h"

#define FIXTURE_DIR "tests/fixtures/attention"
#define MIN_FIXTURES 8
#define MAX_FIXTURES 256
#define REGEN "run 'python3 tests/oracle/attention_fixtures.py' from the repository root"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted *.safetensors names in FIXTURE_DIR; -1 if the directory cannot be opened. */
static int list_fixtures(char **names, int cap) {
    DIR *d = opendir(FIXTURE_DIR);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        size_t len = strlen(e->d_name);
        if (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    return n;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
}

/* 64-byte aligned copy of nbytes (the mapped tensor data may be unaligned). */
static void *aligned_copy(const void *src, size_t nbytes) {
    void *p = aligned_alloc(64, (nbytes + 63) / 64 * 64);
    if (p) memcpy(p, src, nbytes);
    return p;
}

static float *aligned_floats(size_t n, float fillv) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = fillv;
    return p;
}

static int meta_int(const cd_st_file *f, const char *key, int32_t *out) {
    const char *s = cd_st_meta(f, key);
    if (!s || !*s) return 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > INT32_MAX) return 0;
    *out = (int32_t)x;
    return 1;
}

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

/* Worst |got - want| (relative to 1+|want| when rel) against tol; writes a message on failure. */
static int compare(const char *what, const float *got, const float *want, size_t n, int rel, double tol, char *msg,
                   size_t ml) {
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            snprintf(msg, ml, "%s[%zu] is not finite (%g): not written or overflowed", what, i, got[i]);
            return 0;
        }
        double e = fabs((double)got[i] - (double)want[i]);
        if (rel) e /= 1.0 + fabs((double)want[i]);
        if (e > worst) {
            worst = e;
            wi = i;
        }
    }
    if (worst > tol) {
        snprintf(msg, ml, "%s mismatch: |err| %.3g > tol %.3g at %zu (got %.9g, PyTorch %.9g)", what, worst, tol, wi,
                 got[wi], want[wi]);
        return 0;
    }
    return 1;
}

typedef struct {
    cd_attn_desc d;
    cd_dtype dt;
    size_t n, nl;    /* elements of q/o, of lse */
    void *q, *k, *v; /* aligned copies, fixture dtype */
    float *sw;       /* aligned, or NULL */
    float *o, *lse;  /* expected (aligned copies) */
    double tol_fast_o, tol_fast_l, tol_ref_o, tol_ref_l;
    uint64_t pairs; /* from the fixture's mask */
    int has_pairs;
} fixture;

static void fixture_free(fixture *x) {
    free(x->q);
    free(x->k);
    free(x->v);
    free(x->sw);
    free(x->o);
    free(x->lse);
    memset(x, 0, sizeof *x);
}

static const cd_st_tensor *need(const cd_st_file *f, const char *name, char *msg, size_t ml) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) snprintf(msg, ml, "tensor '%s' missing", name);
    return t;
}

/* Loads and validates one fixture; 0 with a message on failure. */
static int fixture_load(cd_ctx *ctx, const char *path, fixture *x, char *msg, size_t ml) {
    memset(x, 0, sizeof *x);
    cd_st_file *f = NULL;
    float *qf = NULL, *kf = NULL, *vf = NULL;
    int ok = 0;
    if (cd_st_open(ctx, path, &f) != CD_OK) {
        snprintf(msg, ml, "cannot open: %s", cd_ctx_error(ctx));
        return 0;
    }
    const cd_st_tensor *tq, *tk, *tv, *to, *tl, *tw = NULL;
    if (!(tq = need(f, "q", msg, ml)) || !(tk = need(f, "k", msg, ml)) || !(tv = need(f, "v", msg, ml)) ||
        !(to = need(f, "o", msg, ml)) || !(tl = need(f, "lse", msg, ml)))
        goto out;
    int32_t T, H, W, r, down;
    if (!meta_int(f, "text_len", &T) || !meta_int(f, "grid_h", &H) || !meta_int(f, "grid_w", &W) ||
        !meta_int(f, "radius", &r) || !meta_int(f, "down", &down) || !cd_st_meta(f, "scale")) {
        snprintf(msg, ml, "metadata text_len/grid_h/grid_w/radius/down/scale missing or malformed");
        goto out;
    }
    const char *gen = cd_st_meta(f, "generator");
    if (!gen || !strstr(gen, "attention_fixtures.py")) {
        snprintf(msg, ml, "metadata 'generator' missing: not written by tests/oracle/attention_fixtures.py");
        goto out;
    }
    char *end;
    const double scale = strtod(cd_st_meta(f, "scale"), &end);
    if (*end || !(scale >= 0)) {
        snprintf(msg, ml, "metadata scale '%s' malformed", cd_st_meta(f, "scale"));
        goto out;
    }
    if (tq->ndim != 3 || (tq->dtype != CD_DTYPE_F32 && tq->dtype != CD_DTYPE_BF16)) {
        snprintf(msg, ml, "q must be [heads, N, head_dim] F32 or BF16");
        goto out;
    }
    const int64_t nh = tq->shape[0], N = tq->shape[1], hd = tq->shape[2];
    if (N != (int64_t)T + (int64_t)H * W) {
        snprintf(msg, ml, "q has %lld tokens, metadata says %lld", (long long)N, (long long)T + (long long)H * W);
        goto out;
    }
    const cd_st_tensor *same[2] = {tk, tv};
    for (int i = 0; i < 2; i++)
        if (same[i]->dtype != tq->dtype || same[i]->ndim != 3 ||
            memcmp(same[i]->shape, tq->shape, 3 * sizeof(int64_t))) {
            snprintf(msg, ml, "k and v must match q's dtype and shape");
            goto out;
        }
    if (to->dtype != CD_DTYPE_F32 || to->ndim != 3 || memcmp(to->shape, tq->shape, 3 * sizeof(int64_t)) ||
        tl->dtype != CD_DTYPE_F32 || tl->ndim != 2 || tl->shape[0] != nh || tl->shape[1] != N) {
        snprintf(msg, ml, "o must be F32 [heads, N, head_dim] and lse F32 [heads, N]");
        goto out;
    }
    x->d = (cd_attn_desc){(int32_t)nh, (int32_t)hd, T, H, W, r, down, (float)scale};
    x->dt = tq->dtype;
    x->n = (size_t)(nh * N * hd);
    x->nl = (size_t)(nh * N);
    const int pooled = r > 0 && down >= 2;
    double wsum = 1.0;
    if (pooled) {
        if (!(tw = need(f, "spatial_weight", msg, ml))) goto out;
        if (tw->dtype != CD_DTYPE_F32 || tw->ndim != 2 || tw->shape[0] != down || tw->shape[1] != down) {
            snprintf(msg, ml, "spatial_weight must be F32 [down, down]");
            goto out;
        }
        x->sw = aligned_copy(tw->data, tw->nbytes);
        if (!x->sw) {
            snprintf(msg, ml, "out of memory");
            goto out;
        }
        double s = 0;
        for (int i = 0; i < down * down; i++) s += fabs(x->sw[i]);
        wsum = fmax(1.0, s);
    }
    x->q = aligned_copy(tq->data, tq->nbytes);
    x->k = aligned_copy(tk->data, tk->nbytes);
    x->v = aligned_copy(tv->data, tv->nbytes);
    x->o = aligned_copy(to->data, to->nbytes);
    x->lse = aligned_copy(tl->data, tl->nbytes);
    qf = malloc(x->n * sizeof(float));
    kf = malloc(x->n * sizeof(float));
    vf = malloc(x->n * sizeof(float));
    if (!x->q || !x->k || !x->v || !x->o || !x->lse || !qf || !kf || !vf) {
        snprintf(msg, ml, "out of memory");
        goto out;
    }
    if (cd_st_to_f32(ctx, tq, qf) || cd_st_to_f32(ctx, tk, kf) || cd_st_to_f32(ctx, tv, vf)) {
        snprintf(msg, ml, "to_f32: %s", cd_ctx_error(ctx));
        goto out;
    }
    const double u = 1.0 / 16777216.0;
    const double eff_scale = scale != 0 ? scale : 1.0 / sqrt((double)hd);
    const size_t np = pooled ? (size_t)(H / down) * (size_t)(W / down) : 0;
    const size_t L = (size_t)hd + (size_t)N + (size_t)H * W + np;
    const double M = eff_scale * max_row_norm(qf, x->n, (int)hd) * max_row_norm(kf, x->n, (int)hd) * wsum;
    const double vmax = max_abs(vf, x->n) * wsum;
    x->tol_fast_o = 32.0 * u * (sqrt((double)L) + M) * vmax;
    x->tol_fast_l = 32.0 * u * (sqrt((double)L) + M);
    x->tol_ref_o = 4.0 * u * (1.0 + M) * vmax;
    x->tol_ref_l = 4.0 * u * (1.0 + M);
    const char *pairs = cd_st_meta(f, "allowed_pairs_per_head");
    if (pairs) {
        x->pairs = strtoull(pairs, &end, 10);
        x->has_pairs = !*end;
    }
    ok = 1;
out:
    free(qf);
    free(kf);
    free(vf);
    cd_st_close(f);
    if (!ok) fixture_free(x);
    return ok;
}

/* Runs one path (isa, or the reference when ref) on x and compares with the expected outputs. */
static int check_path(const fixture *x, cd_isa isa, int ref, char *msg, size_t ml) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = {2, isa};
    float *o = aligned_floats(x->n, NAN), *lse = aligned_floats(x->nl, NAN);
    int ok = 0;
    if (!o || !lse || cd_ctx_create(&p, &ctx) != CD_OK) {
        snprintf(msg, ml, "setup failed");
        goto out;
    }
    cd_status st = ref ? cd_attention_reference(ctx, &x->d, x->dt, x->q, x->k, x->v, x->sw, o, lse)
                       : cd_attention_forward(ctx, &x->d, x->dt, x->q, x->k, x->v, x->sw, o, lse);
    if (st != CD_OK) {
        snprintf(msg, ml, "%s failed: %s", ref ? "reference" : "forward", cd_ctx_error(ctx));
        goto out;
    }
    ok = compare("o", o, x->o, x->n, 0, ref ? x->tol_ref_o : x->tol_fast_o, msg, ml) &&
         compare("lse", lse, x->lse, x->nl, 1, ref ? x->tol_ref_l : x->tol_fast_l, msg, ml);
out:
    cd_ctx_free(ctx);
    free(o);
    free(lse);
    return ok;
}

TEST(oracle_fixtures_present) {
    char *names[MAX_FIXTURES];
    int n = list_fixtures(names, MAX_FIXTURES);
    CHECK(n >= 0, "fixture directory %s not found (run from the repository root; to create it, " REGEN ")",
          FIXTURE_DIR);
    free_names(names, n);
    CHECK(n >= MIN_FIXTURES, "only %d fixtures in %s, expected >= %d: " REGEN, n, FIXTURE_DIR, MIN_FIXTURES);
}

TEST(oracle_attention_fixtures) {
    char *names[MAX_FIXTURES];
    int n = list_fixtures(names, MAX_FIXTURES);
    CHECK(n > 0, "no fixtures in %s: " REGEN, FIXTURE_DIR);
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) {
        free_names(names, n);
        CHECK(0, "context");
    }
    static const cd_isa isas[] = {CD_ISA_GENERIC, CD_ISA_AVX2, CD_ISA_AVX512};
    int paths = 0;
    for (int i = 0; i < n; i++) {
        char path[512], msg[512];
        snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, names[i]);
        fixture x;
        if (!fixture_load(ctx, path, &x, msg, sizeof msg)) {
            test_fail(__FILE__, __LINE__, "%s: %s", path, msg);
            continue;
        }
        if (x.has_pairs)
            EXPECT(cd_attn_pairs(&x.d) == x.pairs, "%s: cd_attn_pairs %llu != %llu allowed pairs in the fixture's mask",
                   names[i], (unsigned long long)cd_attn_pairs(&x.d), (unsigned long long)x.pairs);
        EXPECT(check_path(&x, CD_ISA_AUTO, 1, msg, sizeof msg), "%s [%s, reference]: %s", names[i], cd_dtype_name(x.dt),
               msg);
        for (size_t j = 0; j < sizeof isas / sizeof isas[0]; j++) {
            if (!cd_isa_supported(isas[j])) continue;
            paths++;
            EXPECT(check_path(&x, isas[j], 0, msg, sizeof msg), "%s [%s, %s]: %s", names[i], cd_dtype_name(x.dt),
                   cd_isa_name(isas[j]), msg);
        }
        fixture_free(&x);
    }
    cd_ctx_free(ctx);
    free_names(names, n);
    EXPECT(paths >= n, "no SIMD path ran");
}
