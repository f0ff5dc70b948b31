/* test_flux_grad.c — the model-level backward (src/train/flux_grad.c) against PyTorch autograd on
 * diffusers' FluxTransformer2DModel (tests/oracle/grad_fixtures.py): every parameter's gradient of
 * sum(out * G) + sum_l sum(attn_l * H_l), dense (guidance model) and CLEAR with pooled keys (whose
 * spatial_weight is trained), through both the fast and the reference backends. Also: the taped
 * forward equals the inference forward bit for bit, and the parameter list round-trips names. */
#include "test.h"
#include "cleardit.h"
#include "../src/train/flux_grad.h"
#include "../src/train/params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GRAD_DIR "tests/fixtures/grad"
#define GRAD_REGEN "run 'python3 tests/oracle/grad_fixtures.py' from the repository root"

static int meta_i(const cd_st_file *f, const char *k) {
    const char *v = cd_st_meta(f, k);
    return v ? atoi(v) : -1;
}

static float *get(cd_ctx *ctx, const cd_st_file *f, const char *name, size_t want) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t || (want && cd_st_numel(t) != want)) return NULL;
    float *p = malloc(cd_st_numel(t) * sizeof(float) + 4);
    if (p && cd_st_to_f32(ctx, t, p) != CD_OK) {
        free(p);
        return NULL;
    }
    return p;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / (r > 0 ? r : 1e-300));
}

/* Runs case `name` with ops; *out_err / *grad_err: the forward output's and the worst parameter
 * gradient's relative L2 error; *worst names that parameter. */
static void run(const char *name, cd_grad_ops ops, double *out_err, double *grad_err, char *worst,
                int check_inference) {
    *out_err = *grad_err = INFINITY;
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 2;
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "context");
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, GRAD_DIR "/%s_weights.safetensors", name);
    snprintf(p2, sizeof p2, GRAD_DIR "/%s_io.safetensors", name);
    cd_st_file *wf = NULL, *io = NULL;
    cd_param_list pl = {0};
    cd_flux_weights w = {0}, g = {0};
    cd_flux_grad_work work = {0};
    float *buf = NULL, *gbuf = NULL, *out = NULL;
    float *in_[8] = {0};
    float *H[64] = {0};
    if (cd_st_open(ctx, p1, &wf) != CD_OK || cd_st_open(ctx, p2, &io) != CD_OK) {
        test_fail(__FILE__, __LINE__, "%s (%s)", cd_ctx_error(ctx), GRAD_REGEN);
        goto done;
    }
    const cd_flux_config cfg = {meta_i(io, "hidden"),       meta_i(io, "heads"),        meta_i(io, "head_dim"),
                                meta_i(io, "depth"),        meta_i(io, "depth_single"), meta_i(io, "in_channels"),
                                meta_i(io, "out_channels"), meta_i(io, "context_dim"),  meta_i(io, "pooled_dim"),
                                meta_i(io, "mlp_hidden"),   meta_i(io, "guidance")};
    const int T = meta_i(io, "text_len"), gh = meta_i(io, "grid_h"), gw = meta_i(io, "grid_w");
    const int radius = meta_i(io, "radius"), down = meta_i(io, "down"), L = gh * gw;
    const int layers = cfg.depth + cfg.depth_single;
    if (cd_params_list(ctx, &cfg, down, &pl) != CD_OK) {
        test_fail(__FILE__, __LINE__, "params: %s", cd_ctx_error(ctx));
        goto done;
    }
    buf = calloc(pl.total, sizeof(float));
    gbuf = calloc(pl.total, sizeof(float));
    out = malloc((size_t)L * cfg.out_channels * sizeof(float));
    /* every parameter is in the weights file under its list name, and nothing else is */
    EXPECT(cd_st_count(wf) == pl.n, "%s: %zu tensors, the parameter list has %zu", p1, cd_st_count(wf), pl.n);
    for (size_t i = 0; i < pl.n; i++) {
        const cd_st_tensor *t = cd_st_find(wf, pl.p[i].name);
        if (!t || cd_st_numel(t) != pl.p[i].numel) {
            test_fail(__FILE__, __LINE__, "%s: parameter '%s' missing or mis-sized", p1, pl.p[i].name);
            goto done;
        }
        cd_st_to_f32(ctx, t, buf + pl.p[i].offset);
    }
    if (cd_params_bind(ctx, &pl, buf, &w) != CD_OK || cd_params_bind(ctx, &pl, gbuf, &g) != CD_OK) goto done;
    sscanf(cd_st_meta(io, "rope_axes"), "%d,%d,%d", &w.rope_axes[0], &w.rope_axes[1], &w.rope_axes[2]);
    w.rope_theta = 10000.0;
    static const char *names[] = {"img", "txt", "pooled", "img_ids", "txt_ids", "timestep", "guidance", "G"};
    for (int i = 0; i < 8; i++) in_[i] = get(ctx, io, names[i], 0);
    if (!in_[0] || !in_[1] || !in_[2] || !in_[3] || !in_[4] || !in_[5] || !in_[7]) {
        test_fail(__FILE__, __LINE__, "%s: missing inputs (%s)", p2, GRAD_REGEN);
        goto done;
    }
    const char *al = cd_st_meta(io, "attn_layers");
    for (const char *s = al; s && *s;) {
        const int l = atoi(s);
        char hn[32];
        snprintf(hn, sizeof hn, "H_%d", l);
        if (l >= 0 && l < layers && l < 64) H[l] = get(ctx, io, hn, (size_t)(T + L) * cfg.hidden);
        EXPECT(l >= 0 && l < layers && H[l], "%s: bad attention layer %d", p2, l);
        s = strchr(s, ',');
        if (s) s++;
    }
    const cd_flux_run_params in = {in_[0], in_[1], in_[2], in_[3], in_[4], in_[5][0], in_[6] ? in_[6][0] : 0.0f,
                                   L,      T,      gh,     gw,     radius, down,      NULL,
                                   0,      0};
    if (cd_flux_grad_work_init(ctx, &cfg, (size_t)(T + L), &work) != CD_OK ||
        cd_flux_grad_forward(ctx, &ops, &w, &in, &work, out) != CD_OK) {
        test_fail(__FILE__, __LINE__, "forward: %s", cd_ctx_error(ctx));
        goto done;
    }
    float *want_out = get(ctx, io, "out", (size_t)L * cfg.out_channels);
    *out_err = want_out ? rel_err(out, want_out, (size_t)L * cfg.out_channels) : INFINITY;
    free(want_out);
    if (check_inference) { /* the inference forward on the same weights and ops: identical */
        cd_flux_arena a;
        float *o2 = malloc((size_t)L * cfg.out_channels * sizeof(float));
        if (o2 && cd_flux_arena_init(ctx, &cfg, (size_t)(T + L), &a) == CD_OK) {
            cd_status s = cd_flux_forward(ctx, ops.f, &w, &in, &a, o2, NULL, NULL);
            EXPECT(s == CD_OK && !memcmp(o2, out, (size_t)L * cfg.out_channels * sizeof(float)),
                   "%s: the taped forward differs from the untaped one", name);
            cd_flux_arena_free(&a);
        }
        free(o2);
    }
    if (cd_flux_grad_backward(ctx, &ops, &w, &in, &work, in_[7], (const float *const *)H, &g) != CD_OK) {
        test_fail(__FILE__, __LINE__, "backward: %s", cd_ctx_error(ctx));
        goto done;
    }
    double worst_e = 0;
    for (size_t i = 0; i < pl.n; i++) {
        char gname[160];
        snprintf(gname, sizeof gname, "grad.%s", pl.p[i].name);
        float *want = get(ctx, io, gname, pl.p[i].numel);
        if (!want) {
            test_fail(__FILE__, __LINE__, "%s: no '%s'", p2, gname);
            goto done;
        }
        const double e = rel_err(gbuf + pl.p[i].offset, want, pl.p[i].numel);
        if (!(e <= worst_e)) {
            worst_e = e;
            snprintf(worst, 128, "%s", pl.p[i].name);
        }
        free(want);
    }
    *grad_err = worst_e;
done:
    for (int i = 0; i < 8; i++) free(in_[i]);
    for (int i = 0; i < 64; i++) free(H[i]);
    free(buf);
    free(gbuf);
    free(out);
    cd_flux_grad_work_free(&work);
    cd_params_unbind(&w);
    cd_params_unbind(&g);
    cd_params_free(&pl);
    cd_st_close(wf);
    cd_st_close(io);
    cd_ctx_free(ctx);
}

/* f32 forward/backward vs float64 autograd through 3 blocks: relative L2 errors per tensor are
 * ~1e-6 (f32 rounding of sums of a few hundred terms, amplified by the LayerNorm/RMSNorm
 * backward's cancellations); 1e-4 still fails any wrong term (those are O(1) relative). */
#define TOL 1e-4

TEST(flux_grad_dense_vs_autograd) {
    double eo, eg;
    char worst[128] = "";
    run("dense_dev", cd_grad_ops_cpu(), &eo, &eg, worst, 1);
    EXPECT(eo < 1e-5, "forward output vs diffusers: rel %.2e", eo);
    EXPECT(eg < TOL, "gradients vs autograd (fast ops): worst rel %.2e at %s", eg, worst);
    run("dense_dev", cd_grad_ops_ref(), &eo, &eg, worst, 1);
    EXPECT(eg < TOL, "gradients vs autograd (reference ops): worst rel %.2e at %s", eg, worst);
}

TEST(flux_grad_clear_pooled_vs_autograd) {
    double eo, eg;
    char worst[128] = "";
    run("clear_schnell", cd_grad_ops_cpu(), &eo, &eg, worst, 1);
    EXPECT(eo < 1e-5, "forward output vs diffusers + CLEAR processor: rel %.2e", eo);
    EXPECT(eg < TOL, "CLEAR gradients vs autograd (fast ops): worst rel %.2e at %s", eg, worst);
    run("clear_schnell", cd_grad_ops_ref(), &eo, &eg, worst, 1);
    EXPECT(eg < TOL, "CLEAR gradients vs autograd (reference ops): worst rel %.2e at %s", eg, worst);
}
