/* cli_bench.c — `cleardit bench attention`: dense vs CLEAR attention for FLUX.1 shapes measured
 * side by side in one run: time, useful GFLOP/s (exact allowed pairs x 4 x heads x head_dim),
 * fraction of this machine's measured fp32 FMA peak, and CLEAR/dense speedup. Benchmarks print
 * tables; they assert nothing (tests do). */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../pipeline/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *k_usage =
    "usage: cleardit bench attention [options]\n"
    "\n"
    "Times one attention layer (random inputs) for FLUX.1 shapes, dense and CLEAR side by side.\n"
    "Default sweep: square grids 32x32 .. --max-grid, dense and r = 8, 16, 32; a case whose\n"
    "estimated time exceeds --budget seconds is skipped (shown as such).\n"
    "\n"
    "options:\n"
    "  --json              one JSON object instead of the table\n"
    "  --threads N         threads (default: all cores)\n"
    "  --isa NAME          auto|generic|avx2|avx512 (default auto)\n"
    "  --device cpu|cuda   where it runs (default cpu). cuda: bf16 inputs on the GPU, the kernels\n"
    "                      alone timed with device events; %peak is of the card's bf16 tensor peak\n"
    "  --dtype NAME        f32|bf16 inputs (default f32)\n"
    "  --heads N           heads (default 24)\n"
    "  --head-dim N        head dimension (default 128)\n"
    "  --text-len T        text tokens (default 512)\n"
    "  --max-grid G        largest square grid side of the sweep (default 128)\n"
    "  --budget S          skip cases estimated above S seconds (default 8)\n"
    "  --grid HxW          run one grid only (with --radius: that radius and dense)\n"
    "  --radius R          with --grid: CLEAR radius (0 = dense only)\n"
    "  --down D            with --grid/--radius: pooled keys with factor D\n"
    "  --no-dense          with --grid: skip the dense case (e.g. at 512x512)\n"
    "  --repeat N          timed runs per case, median reported (default: adaptive, >= 1)\n";

static const char *k_usage_fwd =
    "\nusage: cleardit bench forward [options]\n"
    "\n"
    "Times FLUX transformer forwards at full FLUX.1 width (3072 hidden, 24 heads x 128, mlp 12288,\n"
    "context 4096, pooled 768, guidance) with random weights created in memory and a few blocks,\n"
    "dense and CLEAR side by side: time per double and per single block, linear vs attention vs\n"
    "other time, and the time scaled to the full model (19 double + 38 single blocks).\n"
    "\n"
    "options:\n"
    "  --json              one JSON object instead of the table\n"
    "  --grids LIST        square token grids, e.g. 32,64 (default 32,64)\n"
    "  --radii LIST        CLEAR radii (default 8,16,32)\n"
    "  --double N          double blocks (default 1)\n"
    "  --single N          single blocks (default 1)\n"
    "  --dtype NAME        bf16|f32 weights (default bf16)\n"
    "  --text-len T        text tokens (default 512)\n"
    "  --threads N         threads (default: all cores)\n"
    "  --device cpu|cuda   where it runs (default cpu); on cuda the linear/attention/other split is\n"
    "                      not measured, and each grid starts with an untimed warm-up forward\n";

typedef struct {
    int64_t heads, hd, T;
    int bf16;
    cd_ctx *ctx;
    int64_t repeat;
    int dev;
} bench_cfg;

typedef struct {
    int64_t H, W, r, down;
    double seconds, gflop, gflops;
    int skipped;
    double est;
} bench_row;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills n elements with deterministic pseudo-random values in [-1, 1). */
static void fill(void *p, size_t n, int bf16, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        float x = (float)((double)((s * 0x2545F4914F6CDD1Dull) >> 40) / 8388608.0 - 1.0);
        if (bf16) {
            uint32_t u;
            memcpy(&u, &x, 4);
            ((uint16_t *)p)[i] = (uint16_t)(u >> 16);
        } else {
            ((float *)p)[i] = x;
        }
    }
}

/* Times one case; returns 0 on success, else prints the library's error. */
static int run_case(const bench_cfg *c, bench_row *row) {
    cd_attn_desc d = {(int32_t)c->heads, (int32_t)c->hd, (int32_t)c->T, (int32_t)row->H,
                      (int32_t)row->W, (int32_t)row->r, (int32_t)row->down, 0.0f};
    if (cd_attn_validate(c->ctx, &d) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(c->ctx));
        return CLI_BAD_INPUT;
    }
    if (c->dev == CD_DEVICE_CUDA) { /* inputs live on the GPU; the library times with events */
        double sec = 0;
        int reps = c->repeat > 0 ? (int)c->repeat : 5;
        if (cd_attention_time(c->ctx, CD_DEVICE_CUDA, &d, reps, &sec) != CD_OK) {
            cli_error("bench", "%s", cd_ctx_error(c->ctx));
            return CLI_RUNTIME;
        }
        row->seconds = sec;
        row->gflop = cd_attn_flops(&d) * 1e-9;
        row->gflops = row->gflop / sec;
        return CLI_OK;
    }
    const size_t N = (size_t)c->T + (size_t)row->H * row->W, n = (size_t)c->heads * N * c->hd;
    const size_t es = c->bf16 ? 2 : 4;
    void *q = malloc(n * es), *k = malloc(n * es), *v = malloc(n * es);
    float *o = malloc(n * sizeof(float)), *lse = malloc((size_t)c->heads * N * sizeof(float));
    float sw[64 * 64];
    if (!q || !k || !v || !o || !lse) {
        free(q); free(k); free(v); free(o); free(lse);
        cli_error("bench", "out of memory for a %lldx%lld grid (%zu MB of inputs)",
                  (long long)row->H, (long long)row->W, 4 * n * es >> 20);
        return CLI_RUNTIME;
    }
    /* touch the outputs so that first-touch page faults are not timed (a non-zero pattern: the
     * compiler may turn malloc + memset(0) into calloc, which touches nothing) */
    memset(o, 0x7f, n * sizeof(float));
    memset(lse, 0x7f, (size_t)c->heads * N * sizeof(float));
    fill(q, n, c->bf16, 1);
    fill(k, n, c->bf16, 2);
    fill(v, n, c->bf16, 3);
    for (int i = 0; i < 64 * 64; i++) sw[i] = row->down > 0 ? 1.0f / (float)(row->down * row->down) : 0;
    const cd_dtype dt = c->bf16 ? CD_DTYPE_BF16 : CD_DTYPE_F32;
    double times[64];
    int nt = 0, rc = CLI_OK;
    double total = 0;
    int64_t want = c->repeat;
    for (;;) {
        double t0 = now_s();
        if (cd_attention_forward(c->ctx, &d, dt, q, k, v, sw, o, lse) != CD_OK) {
            cli_error("bench", "%s", cd_ctx_error(c->ctx));
            rc = CLI_RUNTIME;
            break;
        }
        times[nt++] = now_s() - t0;
        total += times[nt - 1];
        if (want > 0 ? nt >= want : (total > 0.5 && nt >= 3) || total > 2.0 || nt >= 64) break;
    }
    if (rc == CLI_OK) {
        qsort(times, (size_t)nt, sizeof times[0], cmp_d);
        row->seconds = times[nt / 2];
        row->gflop = cd_attn_flops(&d) * 1e-9;
        row->gflops = row->gflop / row->seconds;
    }
    free(q); free(k); free(v); free(o); free(lse);
    return rc;
}

static int bench_forward(int argc, char **argv);
int bench_generate(int argc, char **argv); /* cli_bench_gen.c */
int bench_parallel(int argc, char **argv); /* cli_bench_par.c */

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "forward")) return bench_forward(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "generate")) return bench_generate(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "parallel")) return bench_parallel(argc, argv);
    if (argc < 2 || (strcmp(argv[1], "attention") != 0)) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs(k_usage, stdout);
            fputs(k_usage_fwd, stdout);
            fputs("\nusage: cleardit bench generate [options]   (see 'cleardit bench generate --help')\n", stdout);
            fputs("usage: scripts/mpirun.sh -np P cleardit bench parallel [options]   (see 'cleardit bench parallel --help')\n", stdout);
            return CLI_OK;
        }
        cli_error("bench", "expected a benchmark name: attention, forward, generate or parallel (see 'cleardit bench --help')");
        return CLI_BAD_INPUT;
    }
    int64_t threads = 0, heads = 24, hd = 128, T = 512, maxg = 128, radius = -1, down = 0, repeat = 0;
    double budget = 8.0;
    const char *isa_s = "auto", *dtype_s = "f32", *grid_s = NULL, *device_s = NULL;
    int json = 0, help = 0, no_dense = 0, dev = 0;
    cli_opt opts[] = {
        {"--device", CLI_OPT_STRING, &device_s, 0, 0, 0, 0, 0},
        {"--json", CLI_OPT_SWITCH, &json, 0, 0, 0, 0, 0},
        {"--no-dense", CLI_OPT_SWITCH, &no_dense, 0, 0, 0, 0, 0},
        {"--threads", CLI_OPT_INT, &threads, 1, 4096, 0, 0, 0},
        {"--isa", CLI_OPT_STRING, &isa_s, 0, 0, 0, 0, 0},
        {"--dtype", CLI_OPT_STRING, &dtype_s, 0, 0, 0, 0, 0},
        {"--heads", CLI_OPT_INT, &heads, 1, 4096, 0, 0, 0},
        {"--head-dim", CLI_OPT_INT, &hd, 1, 4096, 0, 0, 0},
        {"--text-len", CLI_OPT_INT, &T, 0, 1 << 20, 0, 0, 0},
        {"--max-grid", CLI_OPT_INT, &maxg, 1, 4096, 0, 0, 0},
        {"--budget", CLI_OPT_FLOAT, &budget, 0, 0, 0.001, 1e6, 0},
        {"--grid", CLI_OPT_STRING, &grid_s, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &radius, 0, 1 << 20, 0, 0, 0},
        {"--down", CLI_OPT_INT, &down, 1, 64, 0, 0, 0},
        {"--repeat", CLI_OPT_INT, &repeat, 1, 64, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], &help))
        return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = (int)threads;
    if (!strcmp(isa_s, "auto")) p.isa = CD_ISA_AUTO;
    else if (!strcmp(isa_s, "generic")) p.isa = CD_ISA_GENERIC;
    else if (!strcmp(isa_s, "avx2")) p.isa = CD_ISA_AVX2;
    else if (!strcmp(isa_s, "avx512")) p.isa = CD_ISA_AVX512;
    else {
        cli_error("bench", "--isa must be auto, generic, avx2 or avx512 (got '%s')", isa_s);
        return CLI_BAD_INPUT;
    }
    if (strcmp(dtype_s, "f32") && strcmp(dtype_s, "bf16")) {
        cli_error("bench", "--dtype must be f32 or bf16 (got '%s')", dtype_s);
        return CLI_BAD_INPUT;
    }
    int64_t gh = 0, gw = 0;
    if (grid_s && cli_parse_pair(grid_s, 1, 1 << 16, &gh, &gw)) {
        cli_error("bench", "--grid must be HxW with sides in 1..65536 (got '%s')", grid_s);
        return CLI_BAD_INPUT;
    }
    if (down > 0 && radius <= 0) {
        cli_error("bench", "--down %lld needs a CLEAR --radius R >= 1", (long long)down);
        return CLI_BAD_INPUT;
    }
    if (!grid_s && (radius >= 0 || down > 0)) {
        cli_error("bench", "--radius/--down select a single case and need --grid HxW");
        return CLI_BAD_INPUT;
    }
    if (cli_parse_device("bench", device_s, &dev)) return CLI_BAD_INPUT;
    if (dev == CD_DEVICE_CUDA) {
        dtype_s = "bf16";
        if (!grid_s) maxg = maxg == 128 ? 512 : maxg; /* a GPU covers up to 8192^2 images */
    }
    bench_cfg c = {heads, hd, T, !strcmp(dtype_s, "bf16"), NULL, repeat, dev};
    cd_status st = cd_ctx_create(&p, &c.ctx);
    if (st != CD_OK) {
        cli_error("bench", "cannot create context: %s (isa %s)", cd_status_str(st), isa_s);
        return st == CD_ERR_UNSUPPORTED ? CLI_BAD_INPUT : CLI_RUNTIME;
    }
    if (cli_open_device("bench", c.ctx, dev)) {
        cd_ctx_free(c.ctx);
        return CLI_BAD_INPUT;
    }
    const double peak = dev == CD_DEVICE_CUDA ? cd_device_peak_flops(c.ctx, CD_DEVICE_CUDA) * 1e-9
                                              : cd_measure_fma_peak(c.ctx, 0.3);

    /* the case list: per grid, dense first then each radius */
    bench_row rows[64];
    int nrows = 0;
    const int64_t radii[3] = {8, 16, 32};
    if (grid_s) {
        if (!no_dense) rows[nrows++] = (bench_row){gh, gw, 0, 0, 0, 0, 0, 0, 0};
        if (radius > 0) rows[nrows++] = (bench_row){gh, gw, radius, down, 0, 0, 0, 0, 0};
    } else {
        static const int64_t sides[] = {32, 48, 64, 96, 128, 192, 256, 384, 512};
        for (size_t i = 0; i < sizeof sides / sizeof sides[0] && sides[i] <= maxg; i++) {
            rows[nrows++] = (bench_row){sides[i], sides[i], 0, 0, 0, 0, 0, 0, 0};
            for (int j = 0; j < 3; j++) rows[nrows++] = (bench_row){sides[i], sides[i], radii[j], 0, 0, 0, 0, 0, 0};
        }
    }
    if (!json) {
        printf("cleardit bench attention: %lld heads x %lld, T = %lld, %s inputs, %d threads, %s path\n",
               (long long)heads, (long long)hd, (long long)T, dtype_s, cd_ctx_threads(c.ctx),
               cd_isa_name(cd_ctx_isa(c.ctx)));
        if (dev == CD_DEVICE_CUDA)
            printf("device: %s; bf16 tensor peak %.1f TFLOP/s\n\n", cd_device_desc(c.ctx, CD_DEVICE_CUDA), peak * 1e-3);
        else
            printf("measured fp32 FMA peak: %.1f GFLOP/s\n\n", peak);
        printf("%-9s %8s %-7s %10s %10s %9s %7s %9s\n", "grid", "tokens", "mode", "time ms", "GFLOP",
               "GFLOP/s", "%peak", "vs dense");
        fflush(stdout);
    }
    int rc = CLI_OK;
    double rate = 0; /* last measured useful GFLOP/s, for estimates */
    for (int i = 0; i < nrows && rc == CLI_OK; i++) {
        bench_row *r = &rows[i];
        cd_attn_desc d = {(int32_t)heads, (int32_t)hd, (int32_t)T, (int32_t)r->H, (int32_t)r->W,
                          (int32_t)r->r, (int32_t)r->down, 0};
        r->est = rate > 0 ? cd_attn_flops(&d) * 1e-9 / rate : 0;
        if (!grid_s && r->est > budget) {
            r->skipped = 1;
        } else {
            rc = run_case(&c, r);
            if (rc == CLI_OK) rate = r->gflops;
        }
        if (json || rc != CLI_OK) continue;
        char grid[32], mode[16], speed[16] = "";
        snprintf(grid, sizeof grid, "%lldx%lld", (long long)r->H, (long long)r->W);
        if (r->r) snprintf(mode, sizeof mode, r->down ? "r=%lld/d%lld" : "r=%lld", (long long)r->r, (long long)r->down);
        else snprintf(mode, sizeof mode, "dense");
        for (int j = i - 1; j >= 0; j--) /* speedup against this grid's dense row */
            if (rows[j].H == r->H && rows[j].W == r->W && rows[j].r == 0 && !rows[j].skipped && r->r)
                snprintf(speed, sizeof speed, "%.2fx", rows[j].seconds / r->seconds);
        if (r->skipped)
            printf("%-9s %8lld %-7s %10s   (skipped: ~%.0f s estimated, over --budget)\n", grid,
                   (long long)(T + r->H * r->W), mode, "-", r->est);
        else
            printf("%-9s %8lld %-7s %10.1f %10.1f %9.1f %6.1f%% %9s\n", grid, (long long)(T + r->H * r->W),
                   mode, r->seconds * 1e3, r->gflop, r->gflops, 100.0 * r->gflops / peak, speed);
        fflush(stdout);
    }
    if (json && rc == CLI_OK) {
        printf("{\"device\": \"%s\", \"heads\": %lld, \"head_dim\": %lld, \"text_len\": %lld, \"dtype\": \"%s\", \"threads\": %d, "
               "\"isa\": \"%s\", \"%s\": %.3f, \"rows\": [",
               cd_device_desc(c.ctx, (cd_device)dev), (long long)heads, (long long)hd, (long long)T, dtype_s,
               cd_ctx_threads(c.ctx), cd_isa_name(cd_ctx_isa(c.ctx)),
               dev == CD_DEVICE_CUDA ? "bf16_peak_gflops" : "fma_peak_gflops", peak);
        for (int i = 0; i < nrows; i++) {
            const bench_row *r = &rows[i];
            double dense_s = 0;
            for (int j = 0; j < nrows; j++)
                if (rows[j].H == r->H && rows[j].W == r->W && rows[j].r == 0 && !rows[j].skipped) dense_s = rows[j].seconds;
            printf("%s{\"grid_h\": %lld, \"grid_w\": %lld, \"radius\": %lld, \"down\": %lld, ", i ? ", " : "",
                   (long long)r->H, (long long)r->W, (long long)r->r, (long long)r->down);
            if (r->skipped)
                printf("\"skipped\": true, \"estimated_s\": %.3f}", r->est);
            else
            {
                char sp[32] = "null";
                if (dense_s > 0) snprintf(sp, sizeof sp, "%.4f", dense_s / r->seconds);
                printf("\"skipped\": false, \"time_s\": %.6f, \"gflop\": %.3f, \"gflops\": %.3f, "
                       "\"peak_fraction\": %.4f, \"speedup_vs_dense\": %s}",
                       r->seconds, r->gflop, r->gflops, r->gflops / peak, sp);
            }
        }
        printf("]}\n");
    }
    cd_ctx_free(c.ctx);
    return rc;
}

static int bench_forward(int argc, char **argv) {
    int64_t threads = 0, nd = 1, ns = 1, T = 512;
    const char *grids_s = "32,64", *radii_s = "8,16,32", *dtype_s = "bf16", *device_s = NULL;
    int json = 0, help = 0, dev = 0;
    cli_opt opts[] = {
        {"--device", CLI_OPT_STRING, &device_s, 0, 0, 0, 0, 0},
        {"--json", CLI_OPT_SWITCH, &json, 0, 0, 0, 0, 0},
        {"--grids", CLI_OPT_STRING, &grids_s, 0, 0, 0, 0, 0},
        {"--radii", CLI_OPT_STRING, &radii_s, 0, 0, 0, 0, 0},
        {"--double", CLI_OPT_INT, &nd, 0, 19, 0, 0, 0},
        {"--single", CLI_OPT_INT, &ns, 0, 38, 0, 0, 0},
        {"--dtype", CLI_OPT_STRING, &dtype_s, 0, 0, 0, 0, 0},
        {"--text-len", CLI_OPT_INT, &T, 0, 4096, 0, 0, 0},
        {"--threads", CLI_OPT_INT, &threads, 1, 4096, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], &help))
        return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage_fwd + 1, stdout);
        return CLI_OK;
    }
    int64_t grids[16], radii[16];
    const int ng = cli_parse_list(grids_s, 1, 512, 0, grids, 16), nr = cli_parse_list(radii_s, 1, 1024, 0, radii, 16);
    if (ng < 1 || nr < 0) {
        cli_error("bench", "--grids and --radii take comma-separated integers (got '%s', '%s')", grids_s, radii_s);
        return CLI_BAD_INPUT;
    }
    if (nd + ns < 1) {
        cli_error("bench", "need at least one block (--double / --single)");
        return CLI_BAD_INPUT;
    }
    if (strcmp(dtype_s, "bf16") && strcmp(dtype_s, "f32")) {
        cli_error("bench", "--dtype must be bf16 or f32 (got '%s')", dtype_s);
        return CLI_BAD_INPUT;
    }
    if (cli_parse_device("bench", device_s, &dev)) return CLI_BAD_INPUT;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error("bench", "cannot create a context");
        return CLI_RUNTIME;
    }
    if (cli_open_device("bench", ctx, dev)) {
        cd_ctx_free(ctx);
        return CLI_BAD_INPUT;
    }
    const cd_flux_config cfg = {3072, 24, 128, (int32_t)nd, (int32_t)ns, 64, 64, 4096, 768, 12288, 1};
    const int axes[3] = {16, 56, 56};
    cd_flux_model *m = NULL;
    int64_t gmax = 0;
    for (int i = 0; i < ng; i++) gmax = grids[i] > gmax ? grids[i] : gmax;
    const size_t Lmax = (size_t)(gmax * gmax), Nmax = Lmax + (size_t)T;
    float *img = malloc(Lmax * 64 * sizeof(float)), *txt = malloc((size_t)(T ? T : 1) * 4096 * sizeof(float));
    float *ids = calloc(Lmax * 3, sizeof(float)), *tids = calloc((size_t)(T ? T : 1) * 3, sizeof(float));
    float *pooled = malloc(768 * sizeof(float)), *out = malloc(Lmax * 64 * sizeof(float));
    double *bsec = calloc((size_t)(nd + ns), sizeof(double));
    int rc = CLI_OK;
    if (!img || !txt || !ids || !tids || !pooled || !out || !bsec) {
        cli_error("bench", "out of memory");
        rc = CLI_RUNTIME;
        goto done;
    }
    if (!json) fprintf(stderr, "creating random %s weights (%lld double + %lld single blocks) ...\n", dtype_s, (long long)nd, (long long)ns);
    if (cd_flux_random(ctx, &cfg, strcmp(dtype_s, "bf16") ? CD_DTYPE_F32 : CD_DTYPE_BF16, axes, 10000.0, 42, &m) != CD_OK ||
        cd_flux_set_device(ctx, m, (cd_device)dev) != CD_OK || cd_flux_reserve(ctx, m, Nmax) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(ctx));
        rc = CLI_RUNTIME;
        goto done;
    }
    fill(img, Lmax * 64, 0, 11);
    fill(txt, (size_t)T * 4096, 0, 12);
    fill(pooled, 768, 0, 13);
    if (!json) {
        printf("cleardit bench forward: FLUX.1 width (3072 hidden, 24 x 128, mlp 12288), %lld double + %lld single "
               "blocks, %s weights, T = %lld, on %s\n",
               (long long)nd, (long long)ns, dtype_s, (long long)T,
               dev == CD_DEVICE_CUDA ? cd_device_desc(ctx, CD_DEVICE_CUDA) : cd_isa_name(cd_ctx_isa(ctx)));
        printf("weights %.1f MB, activation arena %.1f MB (for %zu tokens)\n\n", cd_flux_weight_bytes(m) / 1e6,
               cd_flux_arena_bytes(m) / 1e6, Nmax);
        printf("%-8s %7s %-6s %10s %10s %9s %9s %9s %14s %9s\n", "grid", "tokens", "mode", "double s", "single s",
               "linear s", "attn s", "other s", "19+38 blocks s", "vs dense");
    } else {
        printf("{\"device\": \"%s\", \"double_blocks\": %lld, \"single_blocks\": %lld, \"dtype\": \"%s\", \"text_len\": %lld, "
               "\"threads\": %d, \"rows\": [", cd_device_desc(ctx, (cd_device)dev), (long long)nd, (long long)ns, dtype_s,
               (long long)T, cd_ctx_threads(ctx));
    }
    int first = 1;
    for (int gi = 0; gi < ng && rc == CLI_OK; gi++) {
        const int64_t G = grids[gi];
        cd_flux_img_ids(ctx, (size_t)G, (size_t)G, ids);
        double dense_total = 0;
        if (dev == CD_DEVICE_CUDA) { /* warm-up: the RoPE table, cuBLASLt's first calls */
            cd_flux_run_params p = {img, txt, pooled, ids, tids, 0.5f, 3.5f, (int32_t)(G * G), (int32_t)T,
                                    (int32_t)G, (int32_t)G, nr ? (int32_t)radii[0] : 0, 0, NULL, 0, 0};
            if (cd_flux_run(ctx, m, &p, out) != CD_OK) {
                cli_error("bench", "%s", cd_ctx_error(ctx));
                rc = CLI_RUNTIME;
                break;
            }
        }
        for (int mi = -1; mi < nr && rc == CLI_OK; mi++) {
            const int64_t r = mi < 0 ? 0 : radii[mi];
            cd_flux_run_params p = {img, txt, pooled, ids, tids, 0.5f, 3.5f, (int32_t)(G * G), (int32_t)T,
                                    (int32_t)G, (int32_t)G, (int32_t)r, 0, bsec, 0, 0};
            cd_ctx_profile(ctx, 1);
            if (cd_flux_run(ctx, m, &p, out) != CD_OK) {
                cli_error("bench", "%s", cd_ctx_error(ctx));
                rc = CLI_RUNTIME;
                break;
            }
            double td = 0, ts = 0;
            for (int b = 0; b < nd; b++) td += bsec[b];
            for (int b = 0; b < ns; b++) ts += bsec[nd + b];
            td = nd ? td / nd : 0;
            ts = ns ? ts / ns : 0;
            const double full = 19 * td + 38 * ts;
            if (mi < 0) dense_total = full;
            const double tl = cd_ctx_profile_seconds(ctx, CD_PROF_LINEAR), ta = cd_ctx_profile_seconds(ctx, CD_PROF_ATTENTION),
                         to = cd_ctx_profile_seconds(ctx, CD_PROF_OTHER);
            cd_ctx_profile(ctx, 0);
            char mode[16];
            snprintf(mode, sizeof mode, r ? "r=%lld" : "dense", (long long)r);
            if (json) {
                printf("%s{\"grid\": %lld, \"tokens\": %lld, \"radius\": %lld, \"double_s\": %.6f, \"single_s\": %.6f, "
                       "\"linear_s\": %.6f, \"attention_s\": %.6f, \"other_s\": %.6f, \"full_model_s\": %.6f, "
                       "\"speedup_vs_dense\": %.4f}", first ? "" : ", ", (long long)G, (long long)(G * G + T), (long long)r,
                       td, ts, tl, ta, to, full, dense_total / full);
                first = 0;
            } else {
                char grid[32], sp[16] = "";
                snprintf(grid, sizeof grid, "%lldx%lld", (long long)G, (long long)G);
                if (r) snprintf(sp, sizeof sp, "%.2fx", dense_total / full);
                if (dev == CD_DEVICE_CUDA)
                    printf("%-8s %7lld %-6s %10.4f %10.4f %9s %9s %9s %14.3f %9s\n", grid, (long long)(G * G + T), mode,
                           td, ts, "-", "-", "-", full, sp);
                else
                    printf("%-8s %7lld %-6s %10.2f %10.2f %9.2f %9.2f %9.2f %14.1f %9s\n", grid, (long long)(G * G + T), mode,
                           td, ts, tl, ta, to, full, sp);
                fflush(stdout);
            }
        }
    }
    if (json && rc == CLI_OK) printf("]}\n");
done:
    cd_flux_free(m);
    cd_ctx_free(ctx);
    free(img); free(txt); free(ids); free(tids); free(pooled); free(out); free(bsec);
    return rc;
}
