/* test_cuda.c — the CUDA backend against the CPU references, on random inputs (never zeros).
 * Without a usable GPU (or in a build without nvcc) each test checks instead that asking for the
 * device fails with CD_ERR_UNSUPPORTED and a message naming the reason; scripts/gpu-check.sh runs
 * these tests on a GPU machine ("test_cleardit cuda").
 * Tolerances: f32 element-wise ops 1e-5 relative L2 (reductions in another order, CUDA's own
 * expf/tanhf within a few ulp); linear 1e-4 (f32 accumulation of up to 3072 products of the same
 * bf16-rounded operands the reference gets); attention 1e-2 (P is rounded to bf16 before P.V, unit
 * roundoff 2^-9) and lse 1e-3 absolute (scores accumulate in f32 from the same bf16 inputs; pooled
 * keys add their own bf16 rounding, bounded per case below); a whole
 * model 3e-2 (a dozen bf16 roundings of activations in a row, each 2^-9). */
#include "test.h"
#include "test_spawn.h"
#include "patch_problem.h"
#include "../src/backend/cuda/cuda.h"
#include "../src/ops/attn.h"
#include "../src/pipeline/sampler.h"
#include "../src/model/flux_load.h"
#include "../src/parallel/devcomm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

/* The context with CUDA open, or NULL after checking that the failure explains itself. */
static cd_ctx *gpu_ctx(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    if (cd_ctx_create(&p, &ctx) != CD_OK) {
        test_fail(__FILE__, __LINE__, "context");
        return NULL;
    }
    const cd_status s = cd_device_open(ctx, CD_DEVICE_CUDA);
    if (s == CD_OK) {
        EXPECT(strlen(cd_device_desc(ctx, CD_DEVICE_CUDA)) > 0, "no device description");
        return ctx;
    }
    EXPECT(s == CD_ERR_UNSUPPORTED, "cuda open: status %d (%s)", (int)s, cd_ctx_error(ctx));
    const char *e = cd_ctx_error(ctx);
    EXPECT(cd_cuda_built() ? strstr(e, "CUDA") != NULL : strstr(e, "no CUDA support") != NULL,
           "unhelpful message: '%s'", e);
    cd_ctx_free(ctx);
    return NULL;
}

static void *up(cd_ctx *ctx, const void *h, size_t bytes) {
    void *d = NULL;
    if (cd_cuda_alloc(ctx, bytes ? bytes : 4, &d) != CD_OK) return NULL;
    if (h && cd_cuda_h2d(ctx, d, h, bytes) != CD_OK) { cd_cuda_free(ctx, d); return NULL; }
    return d;
}


static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = cd_bf16_to_f32(cd_f32_to_bf16(x[i]));
}

TEST(cuda_open_or_explain) {
    cd_ctx *ctx = gpu_ctx();
    if (!ctx) return; /* the error path was checked */
    const cd_ops *o = cd_ops_cuda();
    EXPECT(o && !o->host_memory && o->linear && o->attention && o->copy_rows, "ops table");
    EXPECT(cd_device_peak_flops(ctx, CD_DEVICE_CUDA) > 1e12, "peak %g", cd_device_peak_flops(ctx, CD_DEVICE_CUDA));
    void *p = NULL;
    EXPECT(cd_cuda_alloc(ctx, (size_t)1 << 50, &p) == CD_ERR_OOM && !p, "1 PiB allocation: %s", cd_ctx_error(ctx));
    EXPECT(strstr(cd_ctx_error(ctx), "MiB") != NULL, "OOM message: %s", cd_ctx_error(ctx));
    cd_ctx_free(ctx);
}

/* Every element-wise op of the table on device memory against ops_ref.c. */
TEST(cuda_ops_elementwise) {
    cd_ctx *ctx = gpu_ctx();
    if (!ctx) return;
    const cd_ops *cu = cd_ops_cuda(), *ref = cd_ops_cpu_ref();
    const size_t n = 37, nh = 3, hd = 64, dim = nh * hd; /* odd row count, dims of FLUX's kind */
    const size_t ne = n * dim;
    float *x = test_rand_floats(ne, 2.0f, 1), *y = test_rand_floats(ne, 1.5f, 2), *sh = test_rand_floats(dim, 0.5f, 3), *sc = test_rand_floats(dim, 0.5f, 4);
    float *w = test_rand_floats(hd, 1.0f, 5), *cs = test_rand_floats(n * hd, 1.0f, 6), *want = malloc(ne * 4 * sizeof(float));
    float *got = malloc(ne * 4 * sizeof(float)), *xr = malloc(ne * 4 * sizeof(float));
    float *dx = up(ctx, x, ne * 4), *dy = up(ctx, y, ne * 4), *dsh = up(ctx, sh, dim * 4), *dsc = up(ctx, sc, dim * 4);
    float *dw = up(ctx, w, hd * 4), *dcs = up(ctx, cs, n * hd * 4), *dout = up(ctx, NULL, ne * 4 * 4);
    CHECK(x && y && sh && sc && w && cs && want && got && xr && dx && dy && dsh && dsc && dw && dcs && dout, "setup");
    for (size_t i = 0; i < n * hd / 2; i++) { /* (cos, sin) pairs of real angles */
        cs[2 * i] = cosf(3.0f * cs[2 * i]);
        cs[2 * i + 1] = sinf(acosf(cs[2 * i]));
    }
    CHECK(cd_cuda_h2d(ctx, dcs, cs, n * hd * 4) == CD_OK, "upload");
    struct { const char *name; int which; double tol; } cases[] = {
        {"ln_modulate", 0, 1e-5}, {"rmsnorm_heads", 1, 1e-5}, {"gate_add", 2, 1e-6}, {"gelu_tanh", 3, 1e-5},
        {"silu", 4, 1e-5},        {"rope", 5, 1e-6},          {"to_heads", 6, 0},    {"from_heads", 7, 0},
        {"add", 8, 0},            {"copy_rows", 9, 0},        {"ln_modulate in place", 10, 1e-5},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t tot = 2 * ne; /* outputs of to_heads span ntot = 2n tokens */
        memcpy(xr, x, ne * 4);
        CHECK(cd_cuda_h2d(ctx, dx, x, ne * 4) == CD_OK, "upload");
        for (size_t i = 0; i < tot; i++) want[i] = got[i] = 0.25f;
        CHECK(cd_cuda_h2d(ctx, dout, got, tot * 4) == CD_OK, "upload");
        float *res_d = dout, *res_h = want;
        size_t cnt = ne;
        switch (cases[c].which) {
        case 0: cu->ln_modulate(ctx, dx, n, (int)dim, dsh, dsc, 1e-6f, dout);
                ref->ln_modulate(ctx, xr, n, (int)dim, sh, sc, 1e-6f, want); break;
        case 1: cu->rmsnorm_heads(ctx, dx, n, (int)nh, (int)hd, dw, 1e-6f);
                ref->rmsnorm_heads(ctx, xr, n, (int)nh, (int)hd, w, 1e-6f); res_d = dx; res_h = xr; break;
        case 2: cu->gate_add(ctx, dx, dsh, dy, n, (int)dim); ref->gate_add(ctx, xr, sh, y, n, (int)dim);
                res_d = dx; res_h = xr; break;
        case 3: cu->gelu_tanh(ctx, dx, ne); ref->gelu_tanh(ctx, xr, ne); res_d = dx; res_h = xr; break;
        case 4: cu->silu(ctx, dx, ne); ref->silu(ctx, xr, ne); res_d = dx; res_h = xr; break;
        case 5: cu->rope(ctx, dx, n, (int)nh, (int)hd, dcs); ref->rope(ctx, xr, n, (int)nh, (int)hd, cs);
                res_d = dx; res_h = xr; break;
        case 6: cu->to_heads(ctx, dx, n, (int)nh, (int)hd, dout, 2 * n, 5);
                ref->to_heads(ctx, xr, n, (int)nh, (int)hd, want, 2 * n, 5); cnt = tot; break;
        case 7: cu->from_heads(ctx, dx, 2 * n / 3, 3, n / 3, (int)nh, (int)hd, dout);
                ref->from_heads(ctx, xr, 2 * n / 3, 3, n / 3, (int)nh, (int)hd, want); break;
        case 8: cu->add(ctx, dx, dy, ne - 3); ref->add(ctx, xr, y, ne - 3); res_d = dx; res_h = xr; break;
        case 9: cu->copy_rows(ctx, dout + 3, dim + 7, dx, dim, n - 1, dim - 2);
                ref->copy_rows(ctx, want + 3, dim + 7, xr, dim, n - 1, dim - 2); cnt = tot; break;
        case 10: cu->ln_modulate(ctx, dx, n, (int)dim, dsh, dsc, 1e-6f, dx);
                 ref->ln_modulate(ctx, xr, n, (int)dim, sh, sc, 1e-6f, xr); res_d = dx; res_h = xr; break;
        }
        CHECK(cd_cuda_d2h(ctx, got, res_d, cnt * 4) == CD_OK, "%s: %s", cases[c].name, cd_ctx_error(ctx));
        const double e = test_rel_l2(got, res_h, cnt);
        EXPECT(e <= cases[c].tol, "%s: relative L2 error %.3g > %.3g", cases[c].name, e, cases[c].tol);
    }
    free(x); free(y); free(sh); free(sc); free(w); free(cs); free(want); free(got); free(xr);
    cd_cuda_free(ctx, dx); cd_cuda_free(ctx, dy); cd_cuda_free(ctx, dsh); cd_cuda_free(ctx, dsc);
    cd_cuda_free(ctx, dw); cd_cuda_free(ctx, dcs); cd_cuda_free(ctx, dout);
    cd_ctx_free(ctx);
}

/* cuBLASLt linear (bf16 operands, f32 accumulate) against the reference on the same bf16 values. */
TEST(cuda_linear) {
    cd_ctx *ctx = gpu_ctx();
    if (!ctx) return;
    const int shapes[][3] = {{1, 64, 384}, {37, 192, 200}, {300, 3072, 96}, {129, 130, 66}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = test_rand_floats((size_t)n * in, 1.0f, 10 + s), *wf = test_rand_floats((size_t)out * in, 0.5f, 20 + s);
        float *b = test_rand_floats((size_t)out, 1.0f, 30 + s), *want = malloc((size_t)n * out * 4), *got = malloc((size_t)n * out * 4);
        uint16_t *wb = malloc((size_t)out * in * 2);
        CHECK(x && wf && b && want && got && wb, "setup");
        round_bf16(x, (size_t)n * in);
        for (size_t i = 0; i < (size_t)out * in; i++) { wb[i] = cd_f32_to_bf16(wf[i]); wf[i] = cd_bf16_to_f32(wb[i]); }
        float *dx = up(ctx, x, (size_t)n * in * 4), *db = up(ctx, b, (size_t)out * 4), *dy = up(ctx, NULL, (size_t)n * out * 4);
        void *dw = up(ctx, wb, (size_t)out * in * 2);
        CHECK(dx && db && dy && dw && cd_cuda_scratch(ctx, cd_cuda_linear_scratch((size_t)n, in)), "device setup");
        for (int bias = 0; bias < 2; bias++) {
            cd_weight w = {dw, CD_DTYPE_BF16, out, in}, wr = {wf, CD_DTYPE_F32, out, in};
            EXPECT(cd_ops_cuda()->linear(ctx, dx, (size_t)n, &w, bias ? db : NULL, dy) == CD_OK, "linear: %s", cd_ctx_error(ctx));
            cd_ops_cpu_ref()->linear(ctx, x, (size_t)n, &wr, bias ? b : NULL, want);
            CHECK(cd_cuda_d2h(ctx, got, dy, (size_t)n * out * 4) == CD_OK, "linear: %s", cd_ctx_error(ctx));
            const double e = test_rel_l2(got, want, (size_t)n * out);
            EXPECT(e <= 1e-4, "linear n=%d in=%d out=%d bias=%d: relative L2 %.3g", n, in, out, bias, e);
        }
        cd_weight wf32 = {dw, CD_DTYPE_F32, out, in};
        EXPECT(cd_ops_cuda()->linear(ctx, dx, (size_t)n, &wf32, NULL, dy) == CD_ERR_UNSUPPORTED, "F32 device weight accepted");
        free(x); free(wf); free(b); free(want); free(got); free(wb);
        cd_cuda_free(ctx, dx); cd_cuda_free(ctx, db); cd_cuda_free(ctx, dy); cd_cuda_free(ctx, dw);
    }
    cd_ctx_free(ctx);
}

/* The attention op (f32 device in/out, bf16 kernels) against cd_attention_reference on the same
 * bf16-rounded inputs: dense, CLEAR at several radii, pooled keys, ragged grids. */
TEST(cuda_attention_op) {
    cd_ctx *ctx = gpu_ctx();
    if (!ctx) return;
    const struct { int nh, hd, T, H, W, r, down; } cs[] = {
        {2, 64, 7, 13, 29, 0, 0},  {2, 128, 77, 16, 16, 0, 0}, {1, 32, 0, 5, 70, 0, 0},
        {2, 128, 7, 13, 29, 3, 0}, {3, 64, 77, 32, 48, 8, 0},  {1, 128, 0, 16, 16, 1, 0},
        {2, 32, 5, 20, 20, 16, 0}, {2, 128, 9, 16, 24, 5, 2},  {1, 64, 0, 32, 32, 8, 4},
        {1, 128, 3, 9, 9, 100000, 0},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const cd_attn_desc d = {cs[c].nh, cs[c].hd, cs[c].T, cs[c].H, cs[c].W, cs[c].r, cs[c].down, 0};
        const size_t N = cd_attn_tokens(&d), nv = (size_t)d.heads * N * d.head_dim, nl = (size_t)d.heads * N;
        float *q = test_rand_floats(nv, 2.0f, 100 + c), *k = test_rand_floats(nv, 2.0f, 200 + c), *v = test_rand_floats(nv, 1.0f, 300 + c);
        float *sw = test_rand_floats(16, 0.5f, 400 + c), *o = malloc(nv * 4), *lse = malloc(nl * 4), *go = malloc(nv * 4), *gl = malloc(nl * 4);
        CHECK(q && k && v && sw && o && lse && go && gl, "setup");
        round_bf16(q, nv); round_bf16(k, nv); round_bf16(v, nv);
        for (int i = 0; i < 16; i++) sw[i] += 0.6f; /* non-uniform, positive-leaning cell weights */
        float *dq = up(ctx, q, nv * 4), *dk = up(ctx, k, nv * 4), *dv = up(ctx, v, nv * 4), *dsw = up(ctx, sw, 16 * 4);
        float *dob = up(ctx, NULL, nv * 4), *dl = up(ctx, NULL, nl * 4);
        CHECK(dq && dk && dv && dsw && dob && dl && cd_cuda_scratch(ctx, cd_cuda_attention_scratch(&d)), "device setup");
        for (size_t i = 0; i < nv; i++) go[i] = NAN; /* poison: every element must be written */
        for (size_t i = 0; i < nl; i++) gl[i] = NAN;
        CHECK(cd_cuda_h2d(ctx, dob, go, nv * 4) == CD_OK && cd_cuda_h2d(ctx, dl, gl, nl * 4) == CD_OK, "poison");
        EXPECT(cd_cuda_attention(ctx, &d, dq, dk, dv, dsw, dob, dl) == CD_OK, "attention: %s", cd_ctx_error(ctx));
        CHECK(cd_cuda_d2h(ctx, go, dob, nv * 4) == CD_OK && cd_cuda_d2h(ctx, gl, dl, nl * 4) == CD_OK,
              "attention case %zu: %s", c, cd_ctx_error(ctx));
        CHECK(cd_attention_reference(ctx, &d, CD_DTYPE_F32, q, k, v, sw, o, lse) == CD_OK, "reference");
        const double e = test_rel_l2(go, o, nv);
        double el = 0;
        for (size_t i = 0; i < nl; i++) el = fmax(el, isfinite(gl[i]) ? fabs((double)gl[i] - lse[i]) : INFINITY);
        /* pooled keys are formed in f32 and rounded to bf16 (the reference keeps them exact): a
         * score moves by up to 2^-9 scale |q| |k_pooled| (Cauchy-Schwarz), and so can the lse */
        double ltol = 1e-3;
        if (d.down >= 2) {
            double qmax = 0, kmax = 0;
            for (size_t i = 0; i < nl; i++) {
                double s2 = 0;
                for (int c2 = 0; c2 < d.head_dim; c2++) s2 += (double)q[i * d.head_dim + c2] * q[i * d.head_dim + c2];
                qmax = fmax(qmax, sqrt(s2));
            }
            for (int h = 0; h < d.heads; h++)
                for (int py = 0; py < d.grid_h / d.down; py++)
                    for (int px = 0; px < d.grid_w / d.down; px++) {
                        double s2 = 0;
                        for (int c2 = 0; c2 < d.head_dim; c2++) {
                            double kp = 0;
                            for (int i = 0; i < d.down; i++)
                                for (int j = 0; j < d.down; j++)
                                    kp += (double)sw[i * d.down + j] *
                                          k[((size_t)h * N + (size_t)d.text_len + (size_t)(py * d.down + i) * d.grid_w +
                                             (size_t)(px * d.down + j)) * d.head_dim + c2];
                            s2 += kp * kp;
                        }
                        kmax = fmax(kmax, sqrt(s2));
                    }
            ltol += ldexp(1.0, -9) * cd_attn_scale(&d) * qmax * kmax;
        }
        EXPECT(e <= 1e-2 && el <= ltol, "attention nh=%d hd=%d T=%d %dx%d r=%d down=%d: o rel L2 %.3g, lse max err %.3g (tol %.3g)",
               d.heads, d.head_dim, d.text_len, d.grid_h, d.grid_w, d.radius, d.down, e, el, ltol);
        free(q); free(k); free(v); free(sw); free(o); free(lse); free(go); free(gl);
        cd_cuda_free(ctx, dq); cd_cuda_free(ctx, dk); cd_cuda_free(ctx, dv); cd_cuda_free(ctx, dsw);
        cd_cuda_free(ctx, dob); cd_cuda_free(ctx, dl);
    }
    const cd_attn_desc bad = {2, 48, 0, 8, 8, 0, 0, 0};
    EXPECT(cd_cuda_attention(ctx, &bad, NULL, NULL, NULL, NULL, NULL, NULL) == CD_ERR_UNSUPPORTED,
           "head_dim 48 accepted");
    cd_ctx_free(ctx);
}

/* A whole (small, FLUX-shaped) model: cd_flux_run on the GPU against the fast CPU backend. */
TEST(cuda_flux_model) {
    cd_ctx *ctx = gpu_ctx();
    if (!ctx) return;
    const cd_flux_config cfg = {128, 2, 64, 2, 2, 16, 16, 48, 24, 256, 1};
    const int axes[3] = {16, 24, 24};
    const int G = 12, T = 9, L = G * G;
    cd_flux_model *m = NULL;
    float *img = test_rand_floats((size_t)L * 16, 1.0f, 7), *txt = test_rand_floats((size_t)T * 48, 1.0f, 8), *pooled = test_rand_floats(24, 1.0f, 9);
    float *ids = malloc((size_t)L * 3 * 4), *tids = calloc((size_t)T * 3, 4);
    float *o_cpu = malloc((size_t)L * 16 * 4), *o_gpu = malloc((size_t)L * 16 * 4);
    CHECK(img && txt && pooled && ids && tids && o_cpu && o_gpu, "setup");
    CHECK(cd_flux_random(ctx, &cfg, CD_DTYPE_BF16, axes, 10000.0, 5, &m) == CD_OK, "model: %s", cd_ctx_error(ctx));
    CHECK(cd_flux_img_ids(ctx, G, G, ids) == CD_OK, "ids");
    for (int r = 0; r <= 5; r += 5) {
        cd_flux_run_params p = {img, txt, pooled, ids, tids, 0.7f, 3.5f, L, T, G, G, r, 0, NULL, 0, 0};
        CHECK(cd_flux_set_device(ctx, m, CD_DEVICE_CPU) == CD_OK && cd_flux_run(ctx, m, &p, o_cpu) == CD_OK,
              "cpu run: %s", cd_ctx_error(ctx));
        CHECK(cd_flux_set_device(ctx, m, CD_DEVICE_CUDA) == CD_OK, "to cuda: %s", cd_ctx_error(ctx));
        CHECK(cd_flux_model_device(m) == CD_DEVICE_CUDA, "device");
        CHECK(cd_flux_run(ctx, m, &p, o_gpu) == CD_OK, "cuda run: %s", cd_ctx_error(ctx));
        const double e = test_rel_l2(o_gpu, o_cpu, (size_t)L * 16);
        EXPECT(e <= 3e-2, "model r=%d: relative L2 %.3g between CUDA and CPU", r, e);
        /* a second run on the GPU (cached RoPE table, warm arena) gives the same result */
        CHECK(cd_flux_run(ctx, m, &p, o_cpu) == CD_OK, "cuda rerun: %s", cd_ctx_error(ctx));
        EXPECT(test_rel_l2(o_cpu, o_gpu, (size_t)L * 16) <= 1e-6, "rerun differs");
    }
    cd_flux_free(m);
    m = NULL;
    const cd_flux_config odd = {96, 2, 48, 1, 1, 16, 16, 48, 24, 256, 0};
    const int axes48[3] = {16, 16, 16};
    CHECK(cd_flux_random(ctx, &odd, CD_DTYPE_BF16, axes48, 10000.0, 5, &m) == CD_OK, "model 48");
    EXPECT(cd_flux_set_device(ctx, m, CD_DEVICE_CUDA) == CD_ERR_UNSUPPORTED && strstr(cd_ctx_error(ctx), "head_dim"),
           "head_dim 48 on cuda: %s", cd_ctx_error(ctx));
    cd_flux_free(m);
    free(img); free(txt); free(pooled); free(ids); free(tids); free(o_cpu); free(o_gpu);
    cd_ctx_free(ctx);
}

/* Patch parallelism on one GPU with the single-process communicator (NCCL with one rank): the
 * patch-parallel forward (bf16 halo grid, pooled keys gathered, text partials merged on the
 * device) equals the plain CUDA forward to 1e-5 relative L2, exact and approx, pooled and not
 * (one rank: the same kernels on the same bf16 inputs; the merge of one partial is the partial).
 * Without a GPU: the NCCL set-up fails naming the reason (no CUDA context, or no NCCL). */
TEST(cuda_patch_single_rank) {
    {
        cd_ctx *c0 = NULL;
        cd_ctx_params cp = cd_ctx_params_default();
        cd_comm *one = NULL;
        CHECK(cd_ctx_create(&cp, &c0) == CD_OK && cd_comm_init_single(c0, &one) == CD_OK, "single comm");
        const cd_status s = cd_devcomm_setup(c0, one); /* this context never opened CUDA */
        EXPECT(s != CD_OK && strstr(cd_ctx_error(c0), cd_devcomm_built() ? "CUDA" : "NCCL"),
               "NCCL set-up without CUDA: %d '%s'", (int)s, cd_ctx_error(c0));
        cd_comm_free(one);
        cd_ctx_free(c0);
    }
    cd_ctx *ctx = gpu_ctx();
    if (!ctx) return; /* the error path was checked */
    static const patch_shape cases[] = {
        {13, 7, 5, 2, 0}, {9, 8, 6, 100, 0}, {11, 9, 0, 4, 0}, {12, 8, 4, 3, 2}, {16, 8, 0, 5, 4}, {24, 40, 77, 6, 2},
    };
    cd_comm *comm = NULL;
    CHECK(cd_comm_init_single(ctx, &comm) == CD_OK, "single comm: %s", cd_ctx_error(ctx));
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0] && !test_failed(); ci++) {
        const patch_shape *c = &cases[ci];
        patch_problem pp;
        if (patch_problem_make(ctx, c, CD_DTYPE_BF16, &pp) != CD_OK) { /* spatial weights bound before the move */
            EXPECT(0, "setup: %s", cd_ctx_error(ctx));
            break;
        }
        const size_t n = pp.nout;
        float *ref = malloc(n * 4), *par = malloc(n * 4), *again = malloc(n * 4);
        int ok = ref && par && again;
        EXPECT(ok, "out of memory");
        if (ok) {
            ok = cd_flux_set_device(ctx, pp.m, CD_DEVICE_CUDA) == CD_OK && cd_flux_run(ctx, pp.m, &pp.p, ref) == CD_OK;
            EXPECT(ok, "plain cuda run: %s", cd_ctx_error(ctx));
        }
        for (int mode = 0; ok && mode < 2; mode++) {
            const cd_status sp = cd_flux_set_parallel(ctx, pp.m, comm, mode ? CD_TEXT_APPROX : CD_TEXT_EXACT);
            if (!cd_devcomm_built()) { /* a CUDA build without NCCL refuses, saying so */
                EXPECT(sp == CD_ERR_UNSUPPORTED && strstr(cd_ctx_error(ctx), "NCCL"), "no NCCL: %s", cd_ctx_error(ctx));
                ok = 0;
                break;
            }
            EXPECT(sp == CD_OK, "set_parallel: %s", cd_ctx_error(ctx));
            for (size_t i = 0; i < n; i++) par[i] = NAN;
            const cd_status s = sp ? sp : cd_flux_run(ctx, pp.m, &pp.p, par);
            const double e = test_rel_l2(par, ref, n);
            EXPECT(s == CD_OK && e <= 1e-5, "%dx%d T=%d r=%d down=%d %s: status %d (%s), relative L2 %.3g", c->H, c->W,
                   c->T, c->radius, c->down, mode ? "approx" : "exact", (int)s, s ? cd_ctx_error(ctx) : "", e);
            /* a second patch-parallel run (warm scratch, NCCL communicator reused) is identical */
            if (s == CD_OK && cd_flux_run(ctx, pp.m, &pp.p, again) == CD_OK)
                EXPECT(test_rel_l2(again, par, n) == 0, "rerun differs");
            else
                EXPECT(0, "rerun: %s", cd_ctx_error(ctx));
        }
        EXPECT(cd_flux_set_parallel(ctx, pp.m, NULL, CD_TEXT_EXACT) == CD_OK, "back to one process");
        patch_problem_free(&pp);
        free(ref); free(par); free(again);
    }
    cd_comm_free(comm);
    cd_ctx_free(ctx);
}

/* The CLI: --device cuda either explains in one line why it cannot (exit 2, nothing written), or,
 * with a GPU, generates the default model's image close to the CPU's (the sampler runs the same
 * noise; bf16 activations move pixels by a few levels at most). */
TEST(cuda_cli_device) {
    static cli_run r, rc;
    char dir[] = "/tmp/cd_cuda_cli_XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char out_gpu[64], out_cpu[64];
    snprintf(out_gpu, sizeof out_gpu, "%s/gpu.png", dir);
    snprintf(out_cpu, sizeof out_cpu, "%s/cpu.png", dir);
    RUN(&r, "generate", "--device", "cuda", "--prompt", "sneaker", "--seed", "3", "--quiet", "-o", out_gpu);
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    CHECK(cd_ctx_create(&p, &ctx) == CD_OK, "ctx");
    const int have = cd_device_open(ctx, CD_DEVICE_CUDA) == CD_OK;
    if (!have) {
        EXPECT(r.code == 2 && one_error_line(r.err, "generate") && strstr(r.err, "--device cuda"),
               "no GPU: exit %d, stderr '%s'", r.code, r.err);
        EXPECT(access(out_gpu, F_OK) != 0, "an image was written without a GPU");
        RUN(&r, "bench", "attention", "--device", "cuda");
        EXPECT(r.code == 2 && one_error_line(r.err, "bench"), "bench without GPU: exit %d, '%s'", r.code, r.err);
    } else {
        EXPECT(r.code == 0, "generate on cuda: exit %d, '%s'", r.code, r.err);
        RUN(&rc, "generate", "--prompt", "sneaker", "--seed", "3", "--quiet", "-o", out_cpu);
        EXPECT(rc.code == 0, "generate on cpu: exit %d", rc.code);
        uint8_t *a = NULL, *b = NULL;
        uint32_t wa, ha, wb, hb;
        if (r.code == 0 && rc.code == 0 && cd_png_read(ctx, out_gpu, &a, &wa, &ha) == CD_OK &&
            cd_png_read(ctx, out_cpu, &b, &wb, &hb) == CD_OK && wa == wb && ha == hb) {
            double mad = 0;
            for (size_t i = 0; i < (size_t)wa * ha * 3; i++) mad += abs((int)a[i] - (int)b[i]);
            mad /= (double)wa * ha * 3;
            EXPECT(mad <= 4.0, "CUDA and CPU images differ by %.2f levels on average", mad);
        } else {
            EXPECT(0, "images missing or of different sizes");
        }
        free(a);
        free(b);
    }
    unlink(out_gpu);
    unlink(out_cpu);
    rmdir(dir);
    cd_ctx_free(ctx);
}
