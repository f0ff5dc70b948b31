/* check_ops_cuda.c — GPU check of the CUDA ops table against the reference ops (ops_ref.c).
 * Build: make lab (build/lab_ops). Run on a GPU machine (scripts/gpu-check.sh does). Beyond
 * tests/test_cuda.c: misaligned pointers, widths not divisible by 4, odd head dims, more rows than
 * blocks, bf16 conversion of special values; and the linear's speed at FLUX shapes.
 * Prints one line per check and "ALL OK" / "FAILURES: n"; exit status 0 only when all pass. */
#include "../../src/backend/cuda/cuda.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int fails = 0;
static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* [-2, 2) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (4.0 / (1 << 24)) - 2.0);
}
static float *hrand(size_t n) { float *p = malloc(n * sizeof *p + 64); for (size_t i = 0; i < n; i++) p[i] = frand(); return p; }

static void check(const char *what, const float *got, const float *want, size_t n, double tol) {
    double worst = 0; size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - want[i]) / (1.0 + fabs((double)want[i]));
        if (!(e <= worst)) { worst = e; at = i; }  /* NaN counts as worst */
    }
    const int ok = worst <= tol;
    fails += !ok;
    printf("%-48s %s  max rel err %.3g at %zu (got %g want %g)\n", what, ok ? "ok  " : "FAIL", worst, at,
           n ? got[at] : 0.0, n ? want[at] : 0.0);
}

/* Device copy of host data at float offset `off` inside a fresh buffer (off 1: misaligned). */
static float *dup_dev(cd_ctx *c, const float *h, size_t n, int off, void **base) {
    if (cd_cuda_alloc(c, (n + 4) * sizeof(float), base) != CD_OK) { printf("alloc: %s\n", cd_ctx_error(c)); exit(2); }
    float *d = (float *)*base + off;
    if (n) cd_cuda_h2d(c, d, h, n * sizeof(float));
    return d;
}
static void down(cd_ctx *c, float *h, const float *d, size_t n) {
    if (cd_cuda_d2h(c, h, d, n * sizeof(float)) != CD_OK) { printf("d2h: %s\n", cd_ctx_error(c)); fails++; }
}

static void t_rowops(cd_ctx *c, size_t n, int dim, int nh, int hd, int off) {
    const cd_ops *G = cd_ops_cuda(), *R = cd_ops_cpu_ref();
    char name[96];
    void *b1, *b2, *b3, *b4;
    /* ln_modulate, in place and out of place */
    float *x = hrand(n * dim), *sh = hrand(dim), *sc = hrand(dim), *want = malloc(n * dim * 4 + 4), *got = malloc(n * dim * 4 + 4);
    for (size_t i = 0; i < n * dim; i++) x[i] = x[i] * 30 + 7; /* a mean far from 0 */
    float *dx = dup_dev(c, x, n * dim, off, &b1), *dsh = dup_dev(c, sh, dim, off, &b2), *dsc = dup_dev(c, sc, dim, off, &b3);
    R->ln_modulate(c, x, n, dim, sh, sc, 1e-6f, want);
    G->ln_modulate(c, dx, n, dim, dsh, dsc, 1e-6f, dx);
    down(c, got, dx, n * dim);
    snprintf(name, sizeof name, "ln_modulate n=%zu dim=%d off=%d (in place)", n, dim, off);
    check(name, got, want, n * dim, 2e-5);
    /* gate_add: x += g * y */
    float *y = hrand(n * dim);
    float *dy = dup_dev(c, y, n * dim, off, &b4);
    cd_cuda_h2d(c, dx, x, n * dim * 4);
    memcpy(want, x, n * dim * 4);
    R->gate_add(c, want, sh, y, n, dim);
    G->gate_add(c, dx, dsh, dy, n, dim);
    down(c, got, dx, n * dim);
    snprintf(name, sizeof name, "gate_add n=%zu dim=%d off=%d", n, dim, off);
    check(name, got, want, n * dim, 1e-6);
    /* add */
    memcpy(want, x, n * dim * 4);
    for (size_t i = 0; i < n * dim; i++) want[i] += y[i];
    cd_cuda_h2d(c, dx, x, n * dim * 4);
    G->add(c, dx, dy, n * dim);
    down(c, got, dx, n * dim);
    snprintf(name, sizeof name, "add n=%zu off=%d", n * dim, off);
    check(name, got, want, n * dim, 0);
    /* gelu, silu */
    memcpy(want, x, n * dim * 4); R->gelu_tanh(c, want, n * dim);
    cd_cuda_h2d(c, dx, x, n * dim * 4); G->gelu_tanh(c, dx, n * dim); down(c, got, dx, n * dim);
    snprintf(name, sizeof name, "gelu_tanh n=%zu off=%d", n * dim, off); check(name, got, want, n * dim, 1e-5);
    memcpy(want, x, n * dim * 4); R->silu(c, want, n * dim);
    cd_cuda_h2d(c, dx, x, n * dim * 4); G->silu(c, dx, n * dim); down(c, got, dx, n * dim);
    snprintf(name, sizeof name, "silu n=%zu off=%d", n * dim, off); check(name, got, want, n * dim, 1e-5);
    cd_cuda_free(c, b1); cd_cuda_free(c, b2); cd_cuda_free(c, b3); cd_cuda_free(c, b4);
    free(x); free(sh); free(sc); free(y); free(want); free(got);

    /* rmsnorm_heads, rope, to_heads/from_heads, copy_rows on [n, nh*hd] */
    const size_t w = (size_t)nh * hd, tot = n * w;
    x = hrand(tot); want = malloc(tot * 4 + 4); got = malloc(tot * 4 + 4);
    float *wt = hrand(hd), *cs = hrand(n * hd);
    dx = dup_dev(c, x, tot, off, &b1);
    float *dw = dup_dev(c, wt, hd, off, &b2), *dcs = dup_dev(c, cs, n * hd, off, &b3);
    memcpy(want, x, tot * 4); R->rmsnorm_heads(c, want, n, nh, hd, wt, 1e-6f);
    G->rmsnorm_heads(c, dx, n, nh, hd, dw, 1e-6f); down(c, got, dx, tot);
    snprintf(name, sizeof name, "rmsnorm_heads n=%zu nh=%d hd=%d off=%d", n, nh, hd, off); check(name, got, want, tot, 2e-6);
    memcpy(want, x, tot * 4); R->rope(c, want, n, nh, hd, cs);
    cd_cuda_h2d(c, dx, x, tot * 4); G->rope(c, dx, n, nh, hd, dcs); down(c, got, dx, tot);
    snprintf(name, sizeof name, "rope n=%zu nh=%d hd=%d off=%d", n, nh, hd, off); check(name, got, want, tot, 1e-6);
    /* to_heads at t0 = 3 of ntot = n + 5, then from_heads back */
    const size_t ntot = n + 5, t0 = 3, htot = (size_t)nh * ntot * hd;
    float *hw = calloc(htot + 1, 4), *hg = calloc(htot + 1, 4);
    void *b5; float *dh = dup_dev(c, hw, htot, off, &b5);
    cd_cuda_h2d(c, dx, x, tot * 4);
    R->to_heads(c, x, n, nh, hd, hw, ntot, t0);
    G->to_heads(c, dx, n, nh, hd, dh, ntot, t0); down(c, hg, dh, htot);
    snprintf(name, sizeof name, "to_heads n=%zu nh=%d hd=%d off=%d", n, nh, hd, off); check(name, hg, hw, htot, 0);
    G->from_heads(c, dh, ntot, t0, n, nh, hd, dx); down(c, got, dx, tot);
    snprintf(name, sizeof name, "from_heads n=%zu nh=%d hd=%d off=%d", n, nh, hd, off); check(name, got, x, tot, 0);
    /* copy_rows: the first w-1 columns of [n, w] rows into [n, w+3] */
    const size_t dld = w + 3, cols = w > 1 ? w - 1 : 1;
    float *cw = calloc(n * dld + 1, 4), *cg = calloc(n * dld + 1, 4);
    void *b6; float *dc = dup_dev(c, cw, n * dld, off, &b6);
    for (size_t r = 0; r < n; r++) memcpy(cw + r * dld, x + r * w, cols * 4);
    G->copy_rows(c, dc, dld, dx, w, n, cols); down(c, cg, dc, n * dld);
    snprintf(name, sizeof name, "copy_rows n=%zu cols=%zu off=%d", n, cols, off); check(name, cg, cw, n * dld, 0);
    cd_cuda_free(c, b1); cd_cuda_free(c, b2); cd_cuda_free(c, b3); cd_cuda_free(c, b5); cd_cuda_free(c, b6);
    free(x); free(want); free(got); free(wt); free(cs); free(hw); free(hg); free(cw); free(cg);
}

static void t_convert(cd_ctx *c) {
    enum { N = 1031 };
    float h[N]; uint16_t want[N], got[N]; float back[N], wantb[N];
    for (int i = 0; i < N; i++) h[i] = frand() * 1000;
    uint32_t specials[] = {0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7f800000u, 0xff800000u, 0x00000000u,
                           0x80000000u, 0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x00008000u, 0x3f80ffffu};
    for (int i = 0; i < 12; i++) memcpy(&h[i * 7], &specials[i], 4);
    for (int i = 0; i < N; i++) { want[i] = cd_f32_to_bf16(h[i]); wantb[i] = cd_bf16_to_f32(want[i]); }
    for (int off = 0; off < 2; off++) {
        void *bs, *bd, *bb;
        float *ds = dup_dev(c, h, N, off, &bs);
        cd_cuda_alloc(c, (N + 8) * 2, &bd); cd_cuda_alloc(c, (N + 8) * 4, &bb);
        uint16_t *dd = (uint16_t *)bd + off; float *db = (float *)bb + off;
        cd_cuda_f32_to_bf16(c, ds, dd, N);
        cd_cuda_bf16_to_f32(c, dd, db, N);
        cd_cuda_d2h(c, got, dd, sizeof got); cd_cuda_d2h(c, back, db, sizeof back);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += got[i] != want[i] || memcmp(&back[i], &wantb[i], 4) != 0;
        printf("%-48s %s  %d mismatches\n", off ? "bf16 conversions (misaligned)" : "bf16 conversions", bad ? "FAIL" : "ok  ", bad);
        fails += bad != 0;
        cd_cuda_free(c, bs); cd_cuda_free(c, bd); cd_cuda_free(c, bb);
    }
}

static void t_linear(cd_ctx *c, size_t n, int in, int out, int bias, int off) {
    const cd_ops *G = cd_ops_cuda(), *R = cd_ops_cpu_ref();
    float *x = hrand(n * in), *wf = hrand((size_t)out * in), *b = hrand(out);
    uint16_t *wb = malloc((size_t)out * in * 2);
    for (size_t i = 0; i < (size_t)out * in; i++) wb[i] = cd_f32_to_bf16(wf[i] * 0.05f);
    for (size_t i = 0; i < n * in; i++) x[i] = cd_bf16_to_f32(cd_f32_to_bf16(x[i])); /* the GPU rounds x */
    float *want = malloc(n * out * 4 + 4), *got = calloc(n * out + 1, 4);
    cd_weight hw = {wb, CD_DTYPE_BF16, out, in};
    R->linear(c, x, n, &hw, bias ? b : NULL, want);
    void *b1, *b2, *b3, *b4;
    float *dx = dup_dev(c, x, n * in, off, &b1), *db = dup_dev(c, b, out, off, &b3), *dy = dup_dev(c, got, n * out, off, &b4);
    cd_cuda_alloc(c, (size_t)out * in * 2 + 16, &b2);
    uint16_t *dw = (uint16_t *)b2 + off * 8; /* weights: 16-byte steps (the model's are 256-aligned) */
    cd_cuda_h2d(c, dw, wb, (size_t)out * in * 2);
    cd_weight dwt = {dw, CD_DTYPE_BF16, out, in};
    cd_status s = G->linear(c, dx, n, &dwt, bias ? db : NULL, dy);
    char name[96];
    snprintf(name, sizeof name, "linear n=%zu in=%d out=%d bias=%d off=%d", n, in, out, bias, off);
    if (s != CD_OK) { printf("%-48s FAIL  %s\n", name, cd_ctx_error(c)); fails++; }
    else { down(c, got, dy, n * out); check(name, got, want, n * out, 1e-5); }
    cd_cuda_free(c, b1); cd_cuda_free(c, b2); cd_cuda_free(c, b3); cd_cuda_free(c, b4);
    free(x); free(wf); free(b); free(wb); free(want); free(got);
}

static void t_linear_speed(cd_ctx *c, size_t n, int in, int out) {
    void *bx, *bw, *bb, *by;
    cd_cuda_alloc(c, n * in * 4, &bx); cd_cuda_alloc(c, (size_t)out * in * 2, &bw);
    cd_cuda_alloc(c, out * 4, &bb); cd_cuda_alloc(c, n * out * 4, &by);
    cudaMemset(bx, 0, n * in * 4); cudaMemset(bw, 0, (size_t)out * in * 2); cudaMemset(bb, 0, out * 4);
    cudaDeviceSynchronize(); /* the legacy stream does not order with the context's non-blocking one */
    cd_weight w = {bw, CD_DTYPE_BF16, out, in};
    const cd_ops *G = cd_ops_cuda();
    G->linear(c, bx, n, &w, bb, by);
    cd_cuda_sync(c);
    double sec = 0;
    cd_cuda_timer_start(c);
    for (int i = 0; i < 10; i++) G->linear(c, bx, n, &w, bb, by);
    cd_status s = cd_cuda_timer_stop(c, &sec);
    const double fl = 2.0 * n * in * out * 10, peak = cd_cuda_peak_bf16(c);
    printf("linear speed n=%zu %dx%d: %s %.3f ms/call, %.1f TFLOP/s (%.0f%% of %.0f peak incl. conversion)\n",
           n, in, out, s == CD_OK ? "ok" : cd_ctx_error(c), sec * 100, fl / sec * 1e-12,
           peak > 0 ? 100 * fl / sec / peak : 0, peak * 1e-12);
    cd_cuda_free(c, bx); cd_cuda_free(c, bw); cd_cuda_free(c, bb); cd_cuda_free(c, by);
}

int main(void) {
    cd_ctx *c;
    if (cd_ctx_create(NULL, &c) != CD_OK) return 2;
    if (cd_cuda_init(c) != CD_OK) { printf("init: %s\n", cd_ctx_error(c)); return 2; }
    printf("device: %s, peak bf16 %.0f TFLOP/s\n", cd_cuda_device_desc(c), cd_cuda_peak_bf16(c) * 1e-12);
    t_convert(c);
    for (int off = 0; off < 2; off++) {
        t_rowops(c, 37, 3072, 24, 128, off);
        t_rowops(c, 5, 70, 3, 6, off);   /* dims not divisible by 4 */
        t_rowops(c, 1, 33, 1, 33, off);  /* odd head dim */
    }
    t_rowops(c, 3000, 256, 4, 64, 0);    /* more rows than blocks */
    for (int off = 0; off < 2; off++)
        for (int bias = 0; bias < 2; bias++) {
            t_linear(c, 1, 256, 1536, bias, off);
            t_linear(c, 77, 3072, 384, bias, off);
            t_linear(c, 300, 64, 72, bias, off);
        }
    t_linear(c, 5, 37, 11, 1, 0);        /* odd shapes */
    cd_status s = cd_cuda_sync(c);
    printf("final sync: %s\n", s == CD_OK ? "ok" : cd_ctx_error(c));
    fails += s != CD_OK;
    t_linear_speed(c, 4096, 3072, 3072);
    t_linear_speed(c, 4096, 3072, 12288);
    t_linear_speed(c, 4096, 15360, 3072);
    printf(fails ? "FAILURES: %d\n" : "ALL OK\n", fails);
    cd_ctx_free(c);
    return fails != 0;
}
