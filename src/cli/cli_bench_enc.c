/* cli_bench_enc.c — `cleardit bench encode`: the text encoders at FLUX's shapes with random weights
 * (T5-XXL: one block's weights shared by the 24 layers, the same FLOPs in 0.4 GB; CLIP-L): seconds
 * per prompt at each T5 length, GFLOP/s from the exact FLOP count, next to the rate of the linear op
 * alone on the widest T5 shape with the same weight dtype, so that the encoder's overhead beyond its
 * GEMMs is visible; with --t5 FILE also a real checkpoint and the process's peak memory (mapped
 * weights vs working memory). Benchmarks print tables; they assert nothing (tests do). */
#include "cleardit.h"
#include "cli_common.h"
#include "../model/clip_text.h"
#include "../model/t5.h"
#include "../ops/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_usage[] =
    "usage: cleardit bench encode [--dtype bf16|f32|f16|f8] [--lengths L,L] [--repeat N] [--threads N]\n"
    "                             [--t5 FILE] [--json]\n"
    "\n"
    "Times the native text encoders with FLUX's shapes and random weights: T5-XXL (24 layers, d_model\n"
    "4096, 64 heads, d_ff 10240; one block's weights shared by all layers: the full FLOPs in 0.4 GB)\n"
    "at each T5 length, and CLIP-L (77 tokens). GFLOP/s counts every linear (2 x tokens x in x out)\n"
    "and the attention (4 x L^2 x heads x d_kv per layer); the linear op alone on x [L, 4096] x\n"
    "[10240, 4096] with the same weight dtype is timed beside it.\n"
    "\n"
    "options:\n"
    "  --dtype NAME   weights of the random encoders, bf16 (default) or f32, and of the linear op\n"
    "                 alone (also f16, f8 = F8_E4M3: the dtypes of the checkpoints --t5 reads)\n"
    "  --lengths L,L  T5 lengths (default 512,256)\n"
    "  --repeat N     timed encodes per case after one warm-up, median reported (default 1)\n"
    "  --threads N    threads (default: all cores)\n"
    "  --t5 FILE      time this T5 checkpoint (mapped) instead of random weights (no CLIP row), so\n"
    "                 that the memory line is the encoder's: weights mapped, working memory anonymous\n"
    "  --json         one JSON object instead of the table\n";

#define CMD "bench encode"

static cd_dtype parse_dtype(const char *s) {
    if (!s || !strcmp(s, "bf16")) return CD_DTYPE_BF16;
    if (!strcmp(s, "f32")) return CD_DTYPE_F32;
    if (!strcmp(s, "f16")) return CD_DTYPE_F16;
    if (!strcmp(s, "f8")) return CD_DTYPE_F8_E4M3;
    return CD_DTYPE_COUNT;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* kB of a /proc/self/status field (VmHWM, RssAnon, RssFile), -1 if unreadable. */
static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    const size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* FLOPs of one T5 encode of L tokens. */
static double t5_flops(const cd_t5_config *c, double L) {
    const double inner = (double)c->heads * c->d_kv;
    const double lin = 4.0 * c->d_model * inner + 3.0 * c->d_model * c->d_ff;
    return c->layers * (2.0 * L * lin + 4.0 * L * L * inner);
}

static double clip_flops(const cd_clip_config *c, double n) {
    const double lin = 4.0 * c->hidden * c->hidden + 2.0 * c->hidden * c->inter;
    return c->layers * (2.0 * n * lin + 4.0 * n * (n + 1) / 2 * c->hidden);
}

typedef struct {
    cd_ctx *ctx;
    int64_t repeat;
} bctx;

/* n random weights of dtype dt with magnitudes in [2^-8, 2): never subnormal (which would slow the
 * f32 GEMM on x86) and never NaN. */
static void fill_codes(cd_dtype dt, void *p, size_t n) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        const uint64_t r = s * 0x2545F4914F6CDD1Dull;
        const uint32_t sign = (uint32_t)(r & 1), e = (uint32_t)((r >> 1) % 8), m = (uint32_t)(r >> 16);
        if (dt == CD_DTYPE_F32)
            ((uint32_t *)p)[i] = sign << 31 | (119 + e) << 23 | (m & 0x7fffff);
        else if (dt == CD_DTYPE_BF16)
            ((uint16_t *)p)[i] = (uint16_t)(sign << 15 | (119 + e) << 7 | (m & 0x7f));
        else if (dt == CD_DTYPE_F16)
            ((uint16_t *)p)[i] = (uint16_t)(sign << 15 | (7 + e) << 10 | (m & 0x3ff));
        else /* F8_E4M3: exponent 0..7 of bias 7 would include subnormals: 1..8 */
            ((uint8_t *)p)[i] = (uint8_t)(sign << 7 | (1 + e) << 3 | (m & 7));
    }
}

/* Median seconds of repeat calls of fn(arg) after one warm-up; < 0 on failure. */
static double timed(const bctx *b, cd_status (*fn)(void *), void *arg) {
    if (fn(arg) != CD_OK) return -1;
    double t[64];
    const int n = (int)(b->repeat < 64 ? b->repeat : 64);
    for (int i = 0; i < n; i++) {
        const double t0 = cli_now();
        if (fn(arg) != CD_OK) return -1;
        t[i] = cli_now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_d);
    return t[n / 2];
}

typedef struct {
    cd_ctx *ctx;
    const cd_t5 *t5;
    const cd_clip_text *clip;
    const int32_t *ids;
    int32_t n;
    float *out, *pooled;
    const float *x;
    const cd_weight *w;
} call_args;

static cd_status run_t5(void *p) {
    call_args *a = p;
    return cd_t5_encode(a->ctx, a->t5, cd_ops_cpu(), a->ids, a->n, a->out);
}
static cd_status run_clip(void *p) {
    call_args *a = p;
    return cd_clip_text_encode(a->ctx, a->clip, cd_ops_cpu(), a->ids, a->n, NULL, a->pooled);
}
static cd_status run_linear(void *p) {
    call_args *a = p;
    return cd_ops_cpu()->linear(a->ctx, a->x, (size_t)a->n, a->w, NULL, a->out);
}

int bench_encode(int argc, char **argv) {
    const char *dtype_s = NULL, *lengths_s = "512,256", *t5_file = NULL;
    int64_t repeat = 1, threads = 0;
    int json = 0, help = 0;
    cli_opt opts[] = {
        {"--dtype", CLI_OPT_STRING, &dtype_s, 0, 0, 0, 0, 0}, {"--lengths", CLI_OPT_STRING, &lengths_s, 0, 0, 0, 0, 0},
        {"--repeat", CLI_OPT_INT, &repeat, 1, 64, 0, 0, 0},   {"--threads", CLI_OPT_INT, &threads, 1, 4096, 0, 0, 0},
        {"--t5", CLI_OPT_STRING, &t5_file, 0, 0, 0, 0, 0},    {"--json", CLI_OPT_SWITCH, &json, 0, 0, 0, 0, 0},
    };
    int rc = cli_parse_flags(CMD, argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], &help);
    if (rc) return rc;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    const cd_dtype wdt = parse_dtype(dtype_s);
    int64_t lens[8];
    const int nl = cli_parse_list(lengths_s, 1, 4096, 0, lens, 8);
    if (wdt == CD_DTYPE_COUNT || nl < 1) {
        cli_error(CMD, wdt == CD_DTYPE_COUNT ? "--dtype must be bf16, f32, f16 or f8" : "--lengths: bad list '%s'",
                  lengths_s);
        return CLI_BAD_INPUT;
    }
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    const cd_t5_config xxl = {32128, 4096, 64, 64, 10240, 24, 32, 128, 1e-6f};
    const cd_clip_config cl = {49408, 768, 12, 3072, 12, 77, 1e-5f, 49407, 1};
    cd_t5 *t5 = NULL;
    cd_clip_text *clip = NULL;
    int64_t maxL = 77;
    for (int i = 0; i < nl; i++) maxL = lens[i] > maxL ? lens[i] : maxL;
    int32_t *ids = malloc((size_t)maxL * sizeof *ids);
    float *out = malloc((size_t)maxL * 10240 * sizeof(float)), *x = malloc((size_t)maxL * 4096 * sizeof(float));
    float pooled[768];
    void *wmem = NULL; /* the linear's weight, made after the memory snapshot */
    bctx b = {ctx, repeat};
    long hwm = -1, anon = -1, file = -1;
    if (!ids || !out || !x) {
        cli_error(CMD, "out of memory");
        rc = CLI_RUNTIME;
        goto done;
    }
    for (int64_t i = 0; i < maxL; i++) ids[i] = (int32_t)((i * 7919 + 13) % 32000);
    cli_fill_uniform(x, (size_t)maxL * 4096, 3);
    /* with --t5 FILE: that checkpoint (mapped) instead of random weights, and no CLIP, so that the
     * memory snapshot is the encoder's */
    if ((t5_file ? cd_t5_open(ctx, t5_file, &t5) : cd_t5_random(ctx, &xxl, wdt, 1, &t5)) != CD_OK ||
        (!t5_file && cd_clip_text_random(ctx, &cl, wdt, 2, &clip) != CD_OK)) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = CLI_RUNTIME;
        goto done;
    }
    const cd_t5_config *tc = cd_t5_cfg(t5);
    if (!json)
        printf("# bench encode: %d threads, %s path, weights %s\n%-22s %8s %10s %10s %12s %12s\n", cd_ctx_threads(ctx),
               cd_isa_name(cd_ctx_isa(ctx)), t5_file ? "of the file" : cd_dtype_name(wdt), "case", "tokens", "seconds",
               "GFLOP", "GFLOP/s", "linear GF/s");
    else
        printf("{\"threads\": %d, \"isa\": \"%s\", \"dtype\": \"%s\", \"cases\": [", cd_ctx_threads(ctx),
               cd_isa_name(cd_ctx_isa(ctx)), cd_dtype_name(wdt));
    const cd_weight w = {NULL, wdt, 10240, 4096};
    for (int i = 0; i <= nl; i++) {
        const int is_clip = i == nl;
        if (is_clip && !clip) break;
        const int32_t L = is_clip ? 77 : (int32_t)lens[i];
        cd_weight wl = w;
        call_args a = {ctx, t5, clip, ids, L, out, pooled, x, &wl};
        const double sec = timed(&b, is_clip ? run_clip : run_t5, &a);
        if (i == 0) { /* the process after the first encodes: weights, activations, scratch */
            hwm = status_kb("VmHWM");
            anon = status_kb("RssAnon");
            file = status_kb("RssFile");
        }
        if (!is_clip && !wmem && (wmem = malloc((size_t)10240 * 4096 * 4))) fill_codes(wdt, wmem, (size_t)10240 * 4096);
        wl.data = wmem;
        const double lin = is_clip ? 0 : wmem ? timed(&b, run_linear, &a) : -1;
        if (sec < 0 || lin < 0) {
            cli_error(CMD, "%s", wmem ? cd_ctx_error(ctx) : "out of memory");
            rc = CLI_RUNTIME;
            goto done;
        }
        const double gf = (is_clip ? clip_flops(&cl, L) : t5_flops(tc, L)) * 1e-9;
        const double lgf = is_clip ? 0 : 2.0 * L * 10240.0 * 4096.0 * 1e-9 / lin;
        const char *name = is_clip ? "CLIP-L (random)" : t5_file ? "T5 (file)" : "T5-XXL (random)";
        if (!json)
            printf("%-22s %8d %10.3f %10.1f %12.1f %12.1f\n", name, (int)L, sec, gf, gf / sec, lgf);
        else
            printf("%s{\"case\": \"%s\", \"tokens\": %d, \"seconds\": %.6f, \"gflop\": %.3f, \"gflops\": %.3f, "
                   "\"linear_gflops\": %.3f}",
                   i ? ", " : "", name, (int)L, sec, gf, gf / sec, lgf);
    }
    if (!json)
        printf("memory after the first case: peak RSS %.2f GiB; now anonymous %.2f GiB (working memory%s), "
               "file-mapped %.2f GiB (weights)\n",
               hwm / 1048576.0, anon / 1048576.0, t5_file ? "" : " and the random weights", file / 1048576.0);
    else
        printf("], \"vm_hwm_kb\": %ld, \"rss_anon_kb\": %ld, \"rss_file_kb\": %ld}\n", hwm, anon, file);
done:
    cd_t5_free(t5);
    cd_clip_text_free(clip);
    free(ids);
    free(out);
    free(x);
    free(wmem);
    cd_ctx_free(ctx);
    return rc;
}
