/* cli_bench.c — `cleardit bench attention`: dense vs CLEAR attention for FLUX.1 shapes measured
 * side by side in one run: time, useful GFLOP/s (exact allowed pairs x 4 x heads x head_dim),
 * fraction of this machine's measured fp32 FMA peak, and CLEAR/dense speedup; and `cleardit bench`'s
 * dispatch to the other benchmarks (cli_bench_fwd.c, cli_bench_gen.c, cli_bench_par.c). Each
 * command is flag parsing, setup, one function per timed case and one per printed row.
 * Benchmarks print tables; they assert nothing (tests do). */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"

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
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
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

/* One case on the GPU: inputs live there and the library times the kernels with events. */
static int run_case_cuda(const bench_cfg *c, const cd_attn_desc *d, bench_row *row) {
    double sec = 0;
    int reps = c->repeat > 0 ? (int)c->repeat : 5;
    if (cd_attention_time(c->ctx, CD_DEVICE_CUDA, d, reps, &sec) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(c->ctx));
        return CLI_RUNTIME;
    }
    row->seconds = sec;
    row->gflop = cd_attn_flops(d) * 1e-9;
    row->gflops = row->gflop / sec;
    return CLI_OK;
}

/* Runs the forward --repeat times, or adaptively (>= 3 runs and 0.5 s, or 2 s, at most 64 runs);
 * the median into *sec. */
static int time_median(const bench_cfg *c, const cd_attn_desc *d, const void *q, const void *k, const void *v,
                       const float *sw, float *o, float *lse, double *sec) {
    const cd_dtype dt = c->bf16 ? CD_DTYPE_BF16 : CD_DTYPE_F32;
    double times[64], total = 0;
    int nt = 0;
    for (;;) {
        double t0 = now_s();
        if (cd_attention_forward(c->ctx, d, dt, q, k, v, sw, o, lse) != CD_OK) {
            cli_error("bench", "%s", cd_ctx_error(c->ctx));
            return CLI_RUNTIME;
        }
        times[nt++] = now_s() - t0;
        total += times[nt - 1];
        if (c->repeat > 0 ? nt >= c->repeat : (total > 0.5 && nt >= 3) || total > 2.0 || nt >= 64) break;
    }
    qsort(times, (size_t)nt, sizeof times[0], cmp_d);
    *sec = times[nt / 2];
    return CLI_OK;
}

/* One case on the CPU: random inputs, then the timed forwards. */
static int run_case_cpu(const bench_cfg *c, const cd_attn_desc *d, bench_row *row) {
    const size_t N = (size_t)c->T + (size_t)row->H * row->W, n = (size_t)c->heads * N * c->hd;
    const size_t es = c->bf16 ? 2 : 4;
    void *q = malloc(n * es), *k = malloc(n * es), *v = malloc(n * es); // [heads, N, hd] each
    float *o = malloc(n * sizeof(float)), *lse = malloc((size_t)c->heads * N * sizeof(float));
    float sw[64 * 64];
    if (!q || !k || !v || !o || !lse) {
        free(q);
        free(k);
        free(v);
        free(o);
        free(lse);
        cli_error("bench", "out of memory for a %lldx%lld grid (%zu MB of inputs)", (long long)row->H,
                  (long long)row->W, 4 * n * es >> 20);
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
    const int rc = time_median(c, d, q, k, v, sw, o, lse, &row->seconds);
    if (rc == CLI_OK) {
        row->gflop = cd_attn_flops(d) * 1e-9;
        row->gflops = row->gflop / row->seconds;
    }
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
    return rc;
}

/* Times one case; returns 0 on success, else prints the library's error. */
static int run_case(const bench_cfg *c, bench_row *row) {
    cd_attn_desc d = {(int32_t)c->heads, (int32_t)c->hd,  (int32_t)c->T,      (int32_t)row->H,
                      (int32_t)row->W,   (int32_t)row->r, (int32_t)row->down, 0.0f};
    if (cd_attn_validate(c->ctx, &d) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(c->ctx));
        return CLI_BAD_INPUT;
    }
    return c->dev == CD_DEVICE_CUDA ? run_case_cuda(c, &d, row) : run_case_cpu(c, &d, row);
}

/* ---- bench attention ---------------------------------------------------------------------- */

/* The flags of `bench attention`, checked. */
typedef struct {
    int64_t threads, heads, hd, T, maxg, radius, down, repeat, gh, gw;
    double budget;
    const char *isa_s, *dtype_s, *grid_s;
    int json, no_dense, dev;
    cd_isa isa;
} attn_opts;

/* Parses and checks the flags; with --help prints the usage and sets *help. Returns CLI_OK or
 * CLI_BAD_INPUT (the error printed). */
static int attn_parse(int argc, char **argv, attn_opts *o, int *help) {
    *o = (attn_opts){
        .heads = 24, .hd = 128, .T = 512, .maxg = 128, .radius = -1, .budget = 8.0, .isa_s = "auto", .dtype_s = "f32"};
    const char *device_s = NULL;
    cli_opt opts[] = {
        {"--device", CLI_OPT_STRING, &device_s, 0, 0, 0, 0, 0},
        {"--json", CLI_OPT_SWITCH, &o->json, 0, 0, 0, 0, 0},
        {"--no-dense", CLI_OPT_SWITCH, &o->no_dense, 0, 0, 0, 0, 0},
        {"--threads", CLI_OPT_INT, &o->threads, 1, 4096, 0, 0, 0},
        {"--isa", CLI_OPT_STRING, &o->isa_s, 0, 0, 0, 0, 0},
        {"--dtype", CLI_OPT_STRING, &o->dtype_s, 0, 0, 0, 0, 0},
        {"--heads", CLI_OPT_INT, &o->heads, 1, 4096, 0, 0, 0},
        {"--head-dim", CLI_OPT_INT, &o->hd, 1, 4096, 0, 0, 0},
        {"--text-len", CLI_OPT_INT, &o->T, 0, 1 << 20, 0, 0, 0},
        {"--max-grid", CLI_OPT_INT, &o->maxg, 1, 4096, 0, 0, 0},
        {"--budget", CLI_OPT_FLOAT, &o->budget, 0, 0, 0.001, 1e6, 0},
        {"--grid", CLI_OPT_STRING, &o->grid_s, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &o->radius, 0, 1 << 20, 0, 0, 0},
        {"--down", CLI_OPT_INT, &o->down, 1, 64, 0, 0, 0},
        {"--repeat", CLI_OPT_INT, &o->repeat, 1, 64, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], help)) return CLI_BAD_INPUT;
    if (*help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(o->isa_s, "auto"))
        o->isa = CD_ISA_AUTO;
    else if (!strcmp(o->isa_s, "generic"))
        o->isa = CD_ISA_GENERIC;
    else if (!strcmp(o->isa_s, "avx2"))
        o->isa = CD_ISA_AVX2;
    else if (!strcmp(o->isa_s, "avx512"))
        o->isa = CD_ISA_AVX512;
    else {
        cli_error("bench", "--isa must be auto, generic, avx2 or avx512 (got '%s')", o->isa_s);
        return CLI_BAD_INPUT;
    }
    if (strcmp(o->dtype_s, "f32") && strcmp(o->dtype_s, "bf16")) {
        cli_error("bench", "--dtype must be f32 or bf16 (got '%s')", o->dtype_s);
        return CLI_BAD_INPUT;
    }
    if (o->grid_s && cli_parse_pair(o->grid_s, 1, 1 << 16, &o->gh, &o->gw)) {
        cli_error("bench", "--grid must be HxW with sides in 1..65536 (got '%s')", o->grid_s);
        return CLI_BAD_INPUT;
    }
    if (o->down > 0 && o->radius <= 0) {
        cli_error("bench", "--down %lld needs a CLEAR --radius R >= 1", (long long)o->down);
        return CLI_BAD_INPUT;
    }
    if (!o->grid_s && (o->radius >= 0 || o->down > 0)) {
        cli_error("bench", "--radius/--down select a single case and need --grid HxW");
        return CLI_BAD_INPUT;
    }
    if (cli_parse_device("bench", device_s, &o->dev)) return CLI_BAD_INPUT;
    if (o->dev == CD_DEVICE_CUDA) {
        o->dtype_s = "bf16";
        if (!o->grid_s) o->maxg = o->maxg == 128 ? 512 : o->maxg; /* a GPU covers up to 8192^2 images */
    }
    return CLI_OK;
}

/* The case list: --grid's dense and/or CLEAR case, else per grid of the sweep dense then each
 * radius. Returns the count (at most 64). */
static int attn_cases(const attn_opts *o, bench_row rows[64]) {
    static const int64_t sides[] = {32, 48, 64, 96, 128, 192, 256, 384, 512};
    static const int64_t radii[3] = {8, 16, 32};
    int n = 0;
    if (o->grid_s) {
        if (!o->no_dense) rows[n++] = (bench_row){o->gh, o->gw, 0, 0, 0, 0, 0, 0, 0};
        if (o->radius > 0) rows[n++] = (bench_row){o->gh, o->gw, o->radius, o->down, 0, 0, 0, 0, 0};
        return n;
    }
    for (size_t i = 0; i < sizeof sides / sizeof sides[0] && sides[i] <= o->maxg; i++) {
        rows[n++] = (bench_row){sides[i], sides[i], 0, 0, 0, 0, 0, 0, 0};
        for (int j = 0; j < 3; j++) rows[n++] = (bench_row){sides[i], sides[i], radii[j], 0, 0, 0, 0, 0, 0};
    }
    return n;
}

static void attn_print_header(const attn_opts *o, const bench_cfg *c, double peak) {
    printf("cleardit bench attention: %lld heads x %lld, T = %lld, %s inputs, %d threads, %s path\n",
           (long long)o->heads, (long long)o->hd, (long long)o->T, o->dtype_s, cd_ctx_threads(c->ctx),
           cd_isa_name(cd_ctx_isa(c->ctx)));
    if (o->dev == CD_DEVICE_CUDA)
        printf("device: %s; bf16 tensor peak %.1f TFLOP/s\n\n", cd_device_desc(c->ctx, CD_DEVICE_CUDA), peak * 1e-3);
    else
        printf("measured fp32 FMA peak: %.1f GFLOP/s\n\n", peak);
    printf("%-9s %8s %-7s %10s %10s %9s %7s %9s\n", "grid", "tokens", "mode", "time ms", "GFLOP", "GFLOP/s", "%peak",
           "vs dense");
    fflush(stdout);
}

/* Table row i, with its speedup against an earlier dense row of the same grid. */
static void attn_print_row(const bench_row *rows, int i, int64_t T, double peak) {
    const bench_row *r = &rows[i];
    char grid[32], mode[16], speed[16] = "";
    snprintf(grid, sizeof grid, "%lldx%lld", (long long)r->H, (long long)r->W);
    if (r->r)
        snprintf(mode, sizeof mode, r->down ? "r=%lld/d%lld" : "r=%lld", (long long)r->r, (long long)r->down);
    else
        snprintf(mode, sizeof mode, "dense");
    for (int j = i - 1; j >= 0; j--) /* speedup against this grid's dense row */
        if (rows[j].H == r->H && rows[j].W == r->W && rows[j].r == 0 && !rows[j].skipped && r->r)
            snprintf(speed, sizeof speed, "%.2fx", rows[j].seconds / r->seconds);
    if (r->skipped)
        printf("%-9s %8lld %-7s %10s   (skipped: ~%.0f s estimated, over --budget)\n", grid,
               (long long)(T + r->H * r->W), mode, "-", r->est);
    else
        printf("%-9s %8lld %-7s %10.1f %10.1f %9.1f %6.1f%% %9s\n", grid, (long long)(T + r->H * r->W), mode,
               r->seconds * 1e3, r->gflop, r->gflops, 100.0 * r->gflops / peak, speed);
    fflush(stdout);
}

static void attn_print_json(const attn_opts *o, const bench_cfg *c, double peak, const bench_row *rows, int nrows) {
    printf("{\"device\": \"%s\", \"heads\": %lld, \"head_dim\": %lld, \"text_len\": %lld, \"dtype\": \"%s\", "
           "\"threads\": %d, "
           "\"isa\": \"%s\", \"%s\": %.3f, \"rows\": [",
           cd_device_desc(c->ctx, (cd_device)o->dev), (long long)o->heads, (long long)o->hd, (long long)o->T,
           o->dtype_s, cd_ctx_threads(c->ctx), cd_isa_name(cd_ctx_isa(c->ctx)),
           o->dev == CD_DEVICE_CUDA ? "bf16_peak_gflops" : "fma_peak_gflops", peak);
    for (int i = 0; i < nrows; i++) {
        const bench_row *r = &rows[i];
        double dense_s = 0;
        for (int j = 0; j < nrows; j++)
            if (rows[j].H == r->H && rows[j].W == r->W && rows[j].r == 0 && !rows[j].skipped) dense_s = rows[j].seconds;
        printf("%s{\"grid_h\": %lld, \"grid_w\": %lld, \"radius\": %lld, \"down\": %lld, ", i ? ", " : "",
               (long long)r->H, (long long)r->W, (long long)r->r, (long long)r->down);
        if (r->skipped) {
            printf("\"skipped\": true, \"estimated_s\": %.3f}", r->est);
        } else {
            char sp[32] = "null";
            if (dense_s > 0) snprintf(sp, sizeof sp, "%.4f", dense_s / r->seconds);
            printf("\"skipped\": false, \"time_s\": %.6f, \"gflop\": %.3f, \"gflops\": %.3f, "
                   "\"peak_fraction\": %.4f, \"speedup_vs_dense\": %s}",
                   r->seconds, r->gflop, r->gflops, r->gflops / peak, sp);
        }
    }
    printf("]}\n");
}

/* Creates the context (threads, ISA, device) of `bench attention`; prints why not. */
static int attn_open(const attn_opts *o, bench_cfg *c) {
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = (int)o->threads;
    p.isa = o->isa;
    *c = (bench_cfg){o->heads, o->hd, o->T, !strcmp(o->dtype_s, "bf16"), NULL, o->repeat, o->dev};
    cd_status st = cd_ctx_create(&p, &c->ctx);
    if (st != CD_OK) {
        cli_error("bench", "cannot create context: %s (isa %s)", cd_status_str(st), o->isa_s);
        return st == CD_ERR_UNSUPPORTED ? CLI_BAD_INPUT : CLI_RUNTIME;
    }
    if (cli_open_device("bench", c->ctx, o->dev)) {
        cd_ctx_free(c->ctx);
        c->ctx = NULL;
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

static int bench_attention(int argc, char **argv) {
    attn_opts o;
    bench_cfg c;
    int help = 0, rc = attn_parse(argc, argv, &o, &help);
    if (rc || help || (rc = attn_open(&o, &c))) return rc;
    const double peak =
        o.dev == CD_DEVICE_CUDA ? cd_device_peak_flops(c.ctx, CD_DEVICE_CUDA) * 1e-9 : cd_measure_fma_peak(c.ctx, 0.3);
    bench_row rows[64];
    const int nrows = attn_cases(&o, rows);
    if (!o.json) attn_print_header(&o, &c, peak);
    double rate = 0; /* last measured useful GFLOP/s, for estimates */
    for (int i = 0; i < nrows && rc == CLI_OK; i++) {
        bench_row *r = &rows[i];
        cd_attn_desc d = {(int32_t)o.heads, (int32_t)o.hd, (int32_t)o.T,     (int32_t)r->H,
                          (int32_t)r->W,    (int32_t)r->r, (int32_t)r->down, 0};
        r->est = rate > 0 ? cd_attn_flops(&d) * 1e-9 / rate : 0;
        if (!o.grid_s && r->est > o.budget) {
            r->skipped = 1;
        } else {
            rc = run_case(&c, r);
            if (rc == CLI_OK) rate = r->gflops;
        }
        if (!o.json && rc == CLI_OK) attn_print_row(rows, i, o.T, peak);
    }
    if (o.json && rc == CLI_OK) attn_print_json(&o, &c, peak, rows, nrows);
    cd_ctx_free(c.ctx);
    return rc;
}

int bench_forward(int argc, char **argv);    /* cli_bench_fwd.c */
extern const char cli_bench_forward_usage[]; /* cli_bench_fwd.c: starts with a blank line */
int bench_generate(int argc, char **argv);   /* cli_bench_gen.c */
int bench_parallel(int argc, char **argv);   /* cli_bench_par.c */
int bench_encode(int argc, char **argv);     /* cli_bench_enc.c */

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "attention")) return bench_attention(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "forward")) return bench_forward(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "generate")) return bench_generate(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "parallel")) return bench_parallel(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "encode")) return bench_encode(argc, argv);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(k_usage, stdout);
        fputs(cli_bench_forward_usage, stdout);
        fputs("\nusage: cleardit bench generate [options]   (see 'cleardit bench generate --help')\n", stdout);
        fputs("usage: cleardit bench encode [options]     (see 'cleardit bench encode --help')\n", stdout);
        fputs("usage: scripts/mpirun.sh -np P cleardit bench parallel [options]   (see 'cleardit bench parallel "
              "--help')\n",
              stdout);
        return CLI_OK;
    }
    cli_error("bench",
              "expected a benchmark name: attention, forward, generate or parallel (see 'cleardit bench --help')");
    return CLI_BAD_INPUT;
}
