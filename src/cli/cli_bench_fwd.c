/* cli_bench_fwd.c — `cleardit bench forward`: FLUX transformer forwards at full FLUX.1 width with
 * random weights and a few blocks, dense and CLEAR side by side: time per double and single
 * block, the linear / attention / other split, and the time scaled to 19 + 38 blocks. Benchmarks
 * print tables; they assert nothing (tests do). */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../pipeline/sampler.h" /* cd_flux_img_ids */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Also printed by `cleardit bench --help` (hence the leading blank line). */
const char cli_bench_forward_usage[] =
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

/* The flags of `bench forward`, checked. */
typedef struct {
    int64_t threads, nd, ns, T;
    const char *dtype_s;
    int json, dev, ng, nr;
    int64_t grids[16], radii[16];
} fwd_opts;

/* The model and its inputs, sized for the largest grid. */
typedef struct {
    cd_ctx *ctx;
    cd_flux_model *m;
    float *img;    // [Lmax, 64]
    float *txt;    // [T, 4096]
    float *ids;    // [Lmax, 3]
    float *tids;   // [T, 3] (zeros)
    float *pooled; // [768]
    float *out;    // [Lmax, 64]
    double *bsec;  // [nd + ns] seconds per block
    size_t Nmax;
} fwd_bench;

/* One forward's times: per double and single block, the profile's split, scaled to 19 + 38. */
typedef struct {
    double td, ts, tl, ta, to, full;
} fwd_times;

static int fwd_parse(int argc, char **argv, fwd_opts *o, int *help) {
    *o = (fwd_opts){.nd = 1, .ns = 1, .T = 512, .dtype_s = "bf16"};
    const char *grids_s = "32,64", *radii_s = "8,16,32", *device_s = NULL;
    cli_opt opts[] = {
        {"--device", CLI_OPT_STRING, &device_s, 0, 0, 0, 0, 0},    {"--json", CLI_OPT_SWITCH, &o->json, 0, 0, 0, 0, 0},
        {"--grids", CLI_OPT_STRING, &grids_s, 0, 0, 0, 0, 0},      {"--radii", CLI_OPT_STRING, &radii_s, 0, 0, 0, 0, 0},
        {"--double", CLI_OPT_INT, &o->nd, 0, 19, 0, 0, 0},         {"--single", CLI_OPT_INT, &o->ns, 0, 38, 0, 0, 0},
        {"--dtype", CLI_OPT_STRING, &o->dtype_s, 0, 0, 0, 0, 0},   {"--text-len", CLI_OPT_INT, &o->T, 0, 4096, 0, 0, 0},
        {"--threads", CLI_OPT_INT, &o->threads, 1, 4096, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], help)) return CLI_BAD_INPUT;
    if (*help) {
        fputs(cli_bench_forward_usage + 1, stdout);
        return CLI_OK;
    }
    o->ng = cli_parse_list(grids_s, 1, 512, 0, o->grids, 16);
    o->nr = cli_parse_list(radii_s, 1, 1024, 0, o->radii, 16);
    if (o->ng < 1 || o->nr < 0) {
        cli_error("bench", "--grids and --radii take comma-separated integers (got '%s', '%s')", grids_s, radii_s);
        return CLI_BAD_INPUT;
    }
    if (o->nd + o->ns < 1) {
        cli_error("bench", "need at least one block (--double / --single)");
        return CLI_BAD_INPUT;
    }
    if (strcmp(o->dtype_s, "bf16") && strcmp(o->dtype_s, "f32")) {
        cli_error("bench", "--dtype must be bf16 or f32 (got '%s')", o->dtype_s);
        return CLI_BAD_INPUT;
    }
    return cli_parse_device("bench", device_s, &o->dev) ? CLI_BAD_INPUT : CLI_OK;
}

static void fwd_free(fwd_bench *b) {
    cd_flux_free(b->m);
    cd_ctx_free(b->ctx);
    free(b->img);
    free(b->txt);
    free(b->ids);
    free(b->tids);
    free(b->pooled);
    free(b->out);
    free(b->bsec);
}

/* The context on its device, the inputs, and a FLUX.1-width model with random weights for the
 * largest grid. Prints why not; the caller frees b either way. */
static int fwd_setup(const fwd_opts *o, fwd_bench *b) {
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)o->threads;
    if (cd_ctx_create(&cp, &b->ctx) != CD_OK) {
        cli_error("bench", "cannot create a context");
        return CLI_RUNTIME;
    }
    if (cli_open_device("bench", b->ctx, o->dev)) return CLI_BAD_INPUT;
    const cd_flux_config cfg = {3072, 24, 128, (int32_t)o->nd, (int32_t)o->ns, 64, 64, 4096, 768, 12288, 1};
    const int axes[3] = {16, 56, 56};
    int64_t gmax = 0;
    for (int i = 0; i < o->ng; i++) gmax = o->grids[i] > gmax ? o->grids[i] : gmax;
    const size_t Lmax = (size_t)(gmax * gmax), T1 = (size_t)(o->T ? o->T : 1);
    b->Nmax = Lmax + (size_t)o->T;
    b->img = malloc(Lmax * 64 * sizeof(float));
    b->txt = malloc(T1 * 4096 * sizeof(float));
    b->ids = calloc(Lmax * 3, sizeof(float));
    b->tids = calloc(T1 * 3, sizeof(float));
    b->pooled = malloc(768 * sizeof(float));
    b->out = malloc(Lmax * 64 * sizeof(float));
    b->bsec = calloc((size_t)(o->nd + o->ns), sizeof(double));
    if (!b->img || !b->txt || !b->ids || !b->tids || !b->pooled || !b->out || !b->bsec) {
        cli_error("bench", "out of memory");
        return CLI_RUNTIME;
    }
    if (!o->json)
        fprintf(stderr, "creating random %s weights (%lld double + %lld single blocks) ...\n", o->dtype_s,
                (long long)o->nd, (long long)o->ns);
    if (cd_flux_random(b->ctx, &cfg, strcmp(o->dtype_s, "bf16") ? CD_DTYPE_F32 : CD_DTYPE_BF16, axes, 10000.0, 42,
                       &b->m) != CD_OK ||
        cd_flux_set_device(b->ctx, b->m, (cd_device)o->dev) != CD_OK ||
        cd_flux_reserve(b->ctx, b->m, b->Nmax) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(b->ctx));
        return CLI_RUNTIME;
    }
    cli_fill_uniform(b->img, Lmax * 64, 11);
    cli_fill_uniform(b->txt, (size_t)o->T * 4096, 12);
    cli_fill_uniform(b->pooled, 768, 13);
    return CLI_OK;
}

/* The table's header, or the JSON object's opening. */
static void fwd_print_header(const fwd_opts *o, const fwd_bench *b) {
    if (o->json) {
        printf("{\"device\": \"%s\", \"double_blocks\": %lld, \"single_blocks\": %lld, \"dtype\": \"%s\", "
               "\"text_len\": %lld, "
               "\"threads\": %d, \"rows\": [",
               cd_device_desc(b->ctx, (cd_device)o->dev), (long long)o->nd, (long long)o->ns, o->dtype_s,
               (long long)o->T, cd_ctx_threads(b->ctx));
        return;
    }
    printf("cleardit bench forward: FLUX.1 width (3072 hidden, 24 x 128, mlp 12288), %lld double + %lld single "
           "blocks, %s weights, T = %lld, on %s\n",
           (long long)o->nd, (long long)o->ns, o->dtype_s, (long long)o->T,
           o->dev == CD_DEVICE_CUDA ? cd_device_desc(b->ctx, CD_DEVICE_CUDA) : cd_isa_name(cd_ctx_isa(b->ctx)));
    printf("weights %.1f MB, activation arena %.1f MB (for %zu tokens)\n\n", cd_flux_weight_bytes(b->m) / 1e6,
           cd_flux_arena_bytes(b->m) / 1e6, b->Nmax);
    printf("%-8s %7s %-6s %10s %10s %9s %9s %9s %14s %9s\n", "grid", "tokens", "mode", "double s", "single s",
           "linear s", "attn s", "other s", "19+38 blocks s", "vs dense");
}

/* One forward of a GxG grid at radius r (0 = dense), block times into bsec when not NULL. */
static int fwd_run(const fwd_opts *o, fwd_bench *b, int64_t G, int64_t r, double *bsec) {
    cd_flux_run_params p = {b->img,        b->txt,     b->pooled,  b->ids,     b->tids, 0.5f, 3.5f, (int32_t)(G * G),
                            (int32_t)o->T, (int32_t)G, (int32_t)G, (int32_t)r, 0,       bsec, 0,    0};
    if (cd_flux_run(b->ctx, b->m, &p, b->out) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(b->ctx));
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

/* One timed, profiled forward (b->ids already hold the grid's positions). */
static int fwd_case(const fwd_opts *o, fwd_bench *b, int64_t G, int64_t r, fwd_times *t) {
    cd_ctx_profile(b->ctx, 1);
    if (fwd_run(o, b, G, r, b->bsec)) return CLI_RUNTIME;
    double td = 0, ts = 0;
    for (int i = 0; i < o->nd; i++) td += b->bsec[i];
    for (int i = 0; i < o->ns; i++) ts += b->bsec[o->nd + i];
    t->td = o->nd ? td / o->nd : 0;
    t->ts = o->ns ? ts / o->ns : 0;
    t->full = 19 * t->td + 38 * t->ts;
    t->tl = cd_ctx_profile_seconds(b->ctx, CD_PROF_LINEAR);
    t->ta = cd_ctx_profile_seconds(b->ctx, CD_PROF_ATTENTION);
    t->to = cd_ctx_profile_seconds(b->ctx, CD_PROF_OTHER);
    cd_ctx_profile(b->ctx, 0);
    return CLI_OK;
}

/* One row of the table or of the JSON; `first` is the JSON's first row. */
static void fwd_print_row(const fwd_opts *o, int64_t G, int64_t r, const fwd_times *t, double dense_total, int first) {
    const long long tokens = (long long)(G * G + o->T);
    if (o->json) {
        printf("%s{\"grid\": %lld, \"tokens\": %lld, \"radius\": %lld, \"double_s\": %.6f, \"single_s\": %.6f, "
               "\"linear_s\": %.6f, \"attention_s\": %.6f, \"other_s\": %.6f, \"full_model_s\": %.6f, "
               "\"speedup_vs_dense\": %.4f}",
               first ? "" : ", ", (long long)G, tokens, (long long)r, t->td, t->ts, t->tl, t->ta, t->to, t->full,
               dense_total / t->full);
        return;
    }
    char grid[32], mode[16], sp[16] = "";
    snprintf(grid, sizeof grid, "%lldx%lld", (long long)G, (long long)G);
    snprintf(mode, sizeof mode, r ? "r=%lld" : "dense", (long long)r);
    if (r) snprintf(sp, sizeof sp, "%.2fx", dense_total / t->full);
    if (o->dev == CD_DEVICE_CUDA)
        printf("%-8s %7lld %-6s %10.4f %10.4f %9s %9s %9s %14.3f %9s\n", grid, tokens, mode, t->td, t->ts, "-", "-",
               "-", t->full, sp);
    else
        printf("%-8s %7lld %-6s %10.2f %10.2f %9.2f %9.2f %9.2f %14.1f %9s\n", grid, tokens, mode, t->td, t->ts, t->tl,
               t->ta, t->to, t->full, sp);
    fflush(stdout);
}

/* Dense then each radius on one grid (on CUDA after an untimed warm-up forward). */
static int fwd_grid(const fwd_opts *o, fwd_bench *b, int64_t G, int *first) {
    cd_flux_img_ids(b->ctx, (size_t)G, (size_t)G, b->ids);
    /* warm-up: the RoPE table, cuBLASLt's first calls */
    if (o->dev == CD_DEVICE_CUDA && fwd_run(o, b, G, o->nr ? o->radii[0] : 0, NULL)) return CLI_RUNTIME;
    double dense_total = 0;
    for (int mi = -1; mi < o->nr; mi++) {
        const int64_t r = mi < 0 ? 0 : o->radii[mi];
        fwd_times t;
        if (fwd_case(o, b, G, r, &t)) return CLI_RUNTIME;
        if (mi < 0) dense_total = t.full;
        fwd_print_row(o, G, r, &t, dense_total, *first);
        *first = 0;
    }
    return CLI_OK;
}

int bench_forward(int argc, char **argv) {
    fwd_opts o;
    fwd_bench b = {0};
    int help = 0, rc = fwd_parse(argc, argv, &o, &help);
    if (rc || help) return rc;
    if ((rc = fwd_setup(&o, &b)) == CLI_OK) {
        fwd_print_header(&o, &b);
        int first = 1;
        for (int gi = 0; gi < o.ng && rc == CLI_OK; gi++) rc = fwd_grid(&o, &b, o.grids[gi], &first);
        if (o.json && rc == CLI_OK) printf("]}\n");
    }
    fwd_free(&b);
    return rc;
}
