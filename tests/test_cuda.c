/* test_cuda.c — the CUDA backend beyond its ops table (the table against the reference ops is
 * the op harness's: tests/test_ops_harness.c, ops_harness_cuda): device open and memory, the
 * bf16 conversions, a whole model, patch parallelism on one GPU and the CLI's --device cuda, on
 * random inputs (never zeros). Without a usable GPU (or in a build without nvcc) each test checks
 * instead that asking for the device fails with CD_ERR_UNSUPPORTED and a message naming the
 * reason; scripts/gpu-check.sh runs these tests on a GPU machine ("test_cleardit cuda").
 * Tolerance of a whole model: 3e-2 relative L2 (a dozen bf16 roundings of activations in a row,
 * each 2^-9). */
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

/* The device's f32 <-> bf16 conversions (used by the linear and the attention) against the host's
 * cd_f32_to_bf16 / cd_bf16_to_f32, bit for bit, special values included (NaN stays a quiet NaN,
 * infinities, signed zeros, ties to even, the largest finite value rounding to infinity, a
 * subnormal), aligned and one element misaligned (the scalar path). */
TEST(cuda_bf16_conversions) {
    cd_ctx *ctx = gpu_ctx();
    if (!ctx) return;
    enum { N = 1031 };
    float *h = test_rand_floats(N, 1000.0f, 11), *back = malloc(N * 4), *wantb = malloc(N * 4);
    uint16_t *want = malloc(N * 2), *got = malloc(N * 2);
    void *ds = NULL, *dd = NULL, *db = NULL;
    CHECK(h && back && wantb && want && got && cd_cuda_alloc(ctx, (N + 8) * 4, &ds) == CD_OK &&
              cd_cuda_alloc(ctx, (N + 8) * 2, &dd) == CD_OK && cd_cuda_alloc(ctx, (N + 8) * 4, &db) == CD_OK,
          "setup: %s", cd_ctx_error(ctx));
    static const uint32_t specials[] = {0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7f800000u, 0xff800000u, 0x00000000u,
                                        0x80000000u, 0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x00008000u, 0x3f80ffffu};
    for (int i = 0; i < 12; i++) memcpy(&h[i * 7], &specials[i], 4);
    for (int i = 0; i < N; i++) {
        want[i] = cd_f32_to_bf16(h[i]);
        wantb[i] = cd_bf16_to_f32(want[i]);
    }
    for (int off = 0; off < 2; off++) {
        float *s = (float *)ds + off, *b = (float *)db + off;
        uint16_t *d = (uint16_t *)dd + off;
        CHECK(cd_cuda_h2d(ctx, s, h, N * 4) == CD_OK, "upload");
        cd_cuda_f32_to_bf16(ctx, s, d, N);
        cd_cuda_bf16_to_f32(ctx, d, b, N);
        CHECK(cd_cuda_d2h(ctx, got, d, N * 2) == CD_OK && cd_cuda_d2h(ctx, back, b, N * 4) == CD_OK, "download: %s",
              cd_ctx_error(ctx));
        int bad = 0;
        for (int i = 0; i < N; i++) bad += got[i] != want[i] || memcmp(&back[i], &wantb[i], 4) != 0;
        EXPECT(bad == 0, "offset %d: %d of %d conversions differ from the host's", off, bad, N);
    }
    free(h);
    free(back);
    free(wantb);
    free(want);
    free(got);
    cd_cuda_free(ctx, ds);
    cd_cuda_free(ctx, dd);
    cd_cuda_free(ctx, db);
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
    float *img = test_rand_floats((size_t)L * 16, 1.0f, 7), *txt = test_rand_floats((size_t)T * 48, 1.0f, 8),
          *pooled = test_rand_floats(24, 1.0f, 9);
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
    free(img);
    free(txt);
    free(pooled);
    free(ids);
    free(tids);
    free(o_cpu);
    free(o_gpu);
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
        free(ref);
        free(par);
        free(again);
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
