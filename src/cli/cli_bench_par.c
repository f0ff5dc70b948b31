/* cli_bench_par.c — `cleardit bench parallel`, run under MPI (scripts/mpirun.sh -np P build/cleardit
 * bench parallel): patch parallelism of a FLUX-shaped CLEAR forward measured in one job — the
 * one-process forward (rank 0, all cores) against the P-rank forward (cores / P threads per rank),
 * the bytes each rank exchanges per layer (counted by the communicator, next to the geometry's
 * count and to what an all-gather of K/V would move), the share of time spent waiting, and the
 * model of the same exchange for FLUX.1 at 8192^2 on 8 GPUs. Benchmarks assert nothing. */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../parallel/comm.h"
#include "../pipeline/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *k_usage =
    "usage: scripts/mpirun.sh -np P build/cleardit bench parallel [options]\n"
    "\n"
    "Patch parallelism (--parallel patch) of a FLUX-shaped CLEAR forward: one process (rank 0, all\n"
    "cores) against P processes (cores / P threads each) in the same job; bytes exchanged per layer\n"
    "and per step against an all-gather of K/V; the share of time spent waiting; and the model of\n"
    "the exchange for FLUX.1 at 8192^2 on 8 GPUs (bf16 K/V, NVLink).\n"
    "\n"
    "options:\n"
    "  --grid G           square token grid (default 64: a 1024^2 image)\n"
    "  --text-len T       text tokens (default 64)\n"
    "  --radius R         CLEAR radius (default 8)\n"
    "  --hidden D         model width, heads of 128 (default 512)\n"
    "  --double N         double blocks (default 1)\n"
    "  --single N         single blocks (default 2)\n"
    "  --reps N           timed forwards (default 3, after one warm-up)\n"
    "  --text-attention M exact (default) or approx\n"
    "  --link-gbs X       link bandwidth per direction for the 8-GPU model, GB/s (default 450)\n"
    "  --json             one JSON object (rank 0) instead of the table\n";

/* Halo rows rank i of P receives for an H-row grid (bands as cd_flux_set_parallel splits them). */
static int64_t halo_rows(int64_t H, int P, int i, int64_t r) {
    const int64_t y0 = i * H / P, y1 = (i + 1) * H / P, h = r - 1;
    return (y0 < h ? y0 : h) + (H - y1 < h ? H - y1 : h);
}

typedef struct {
    double t, wait;
    uint64_t sent, recv;
} rank_stat;

/* The flags of `bench parallel`, checked. */
typedef struct {
    int64_t G, T, r, D, nd, ns, reps;
    double link;
    int json, mode; /* mode: cd_text_attention */
} par_opts;

/* The two contexts (one process, P ranks), the communicator, the model and its inputs. */
typedef struct {
    cd_ctx *ctx1, *ctxp; /* all cores; cores / P threads */
    cd_comm *comm;
    cd_flux_model *m;
    cd_flux_config cfg;
    int P, rank, cores, threads;
    float *img;     // [L, 64]
    float *txt;     // [T + 1, 256]
    float *pooled;  // [64]
    float *ids;     // [L, 3]
    float *tids;    // [T + 1, 3] (zeros)
    float *out;     // [L, 64]
    rank_stat *all; /* [P] every rank's numbers */
} par_bench;

static int par_parse(int argc, char **argv, par_opts *o, int *help) {
    *o = (par_opts){.G = 64, .T = 64, .r = 8, .D = 512, .nd = 1, .ns = 2, .reps = 3, .link = 450};
    const char *text_s = NULL;
    cli_opt opts[] = {
        {"--grid", CLI_OPT_INT, &o->G, 2, 1024, 0, 0, 0},
        {"--text-len", CLI_OPT_INT, &o->T, 0, 4096, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &o->r, 1, 4096, 0, 0, 0},
        {"--hidden", CLI_OPT_INT, &o->D, 128, 8192, 0, 0, 0},
        {"--double", CLI_OPT_INT, &o->nd, 0, 19, 0, 0, 0},
        {"--single", CLI_OPT_INT, &o->ns, 0, 38, 0, 0, 0},
        {"--reps", CLI_OPT_INT, &o->reps, 1, 100, 0, 0, 0},
        {"--text-attention", CLI_OPT_STRING, &text_s, 0, 0, 0, 0, 0},
        {"--link-gbs", CLI_OPT_FLOAT, &o->link, 0, 0, 1e-3, 1e6, 0},
        {"--json", CLI_OPT_SWITCH, &o->json, 0, 0, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], help)) return CLI_BAD_INPUT;
    if (*help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (o->D % 128 || o->nd + o->ns < 1 || cli_parse_parallel("bench", "patch", text_s, &o->mode)) {
        if (o->D % 128)
            cli_error("bench", "--hidden must be a multiple of 128 (heads of 128)");
        else if (o->nd + o->ns < 1)
            cli_error("bench", "need at least one block");
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

static void par_free(par_bench *b, int rc) {
    cd_flux_free(b->m);
    free(b->img);
    free(b->txt);
    free(b->pooled);
    free(b->ids);
    free(b->tids);
    free(b->out);
    free(b->all);
    cli_parallel_end(b->comm, rc);
    cd_ctx_free(b->ctxp);
    cd_ctx_free(b->ctx1);
}

/* The contexts, MPI, the model with random weights and the inputs. Prints why not. */
static int par_setup(const par_opts *o, par_bench *b) {
    cd_ctx_params cp = cd_ctx_params_default();
    if (cd_ctx_create(&cp, &b->ctx1) != CD_OK) {
        cli_error("bench", "cannot create a context");
        return CLI_RUNTIME;
    }
    if (cd_comm_init(b->ctx1, NULL, NULL, &b->comm) != CD_OK) {
        cli_error("bench", "parallel: %s", cd_ctx_error(b->ctx1));
        return CLI_BAD_INPUT;
    }
    b->P = cd_comm_size(b->comm);
    b->rank = cd_comm_rank(b->comm);
    b->cores = cd_ctx_threads(b->ctx1);
    /* ranks share the machine: cores / P threads each (the one-process run gets them all) */
    cp.threads = b->threads = b->cores / b->P > 0 ? b->cores / b->P : 1;
    b->cfg = (cd_flux_config){(int32_t)o->D,
                              (int32_t)(o->D / 128),
                              128,
                              (int32_t)o->nd,
                              (int32_t)o->ns,
                              64,
                              64,
                              256,
                              64,
                              (int32_t)(4 * o->D),
                              1};
    const int axes[3] = {16, 56, 56};
    const size_t L = (size_t)(o->G * o->G);
    b->img = malloc(L * 64 * 4);
    b->txt = malloc((size_t)(o->T + 1) * 256 * 4);
    b->pooled = malloc(64 * 4);
    b->ids = malloc(L * 3 * 4);
    b->tids = calloc((size_t)o->T * 3 + 3, 4);
    b->out = malloc(L * 64 * 4);
    b->all = calloc((size_t)b->P, sizeof *b->all);
    if (!b->img || !b->txt || !b->pooled || !b->ids || !b->tids || !b->out || !b->all ||
        cd_ctx_create(&cp, &b->ctxp) != CD_OK ||
        cd_flux_random(b->ctx1, &b->cfg, CD_DTYPE_BF16, axes, 10000.0, 7, &b->m) != CD_OK ||
        cd_flux_img_ids(b->ctx1, (size_t)o->G, (size_t)o->G, b->ids) != CD_OK) {
        cli_error("bench", "setup: %s", cd_ctx_error(b->ctx1));
        return CLI_RUNTIME;
    }
    cli_fill_uniform(b->img, L * 64, 1);
    cli_fill_uniform(b->txt, (size_t)o->T * 256, 2);
    cli_fill_uniform(b->pooled, 64, 3);
    return CLI_OK;
}

/* 1. One process: rank 0 alone with every core (the others wait at the next collective); the
 * best of --reps forwards after a warm-up into *t1. */
static int par_time_one(const par_opts *o, par_bench *b, const cd_flux_run_params *p, double *t1) {
    double best = INFINITY;
    int rc = CLI_OK;
    for (int i = 0; i <= o->reps && rc == CLI_OK; i++) {
        const double t0 = cli_now();
        if (cd_flux_run(b->ctx1, b->m, p, b->out) != CD_OK) {
            cli_error("bench", "%s", cd_ctx_error(b->ctx1));
            rc = CLI_RUNTIME;
        }
        if (i > 0 && cli_now() - t0 < best) best = cli_now() - t0;
    }
    *t1 = best;
    return rc;
}

/* 2. P processes: this rank's best forward of --reps after a warm-up, with its wait and bytes. */
static int par_time_split(const par_opts *o, par_bench *b, const cd_flux_run_params *p, rank_stat *mine) {
    if (cd_flux_set_parallel(b->ctxp, b->m, b->comm, (cd_text_attention)o->mode) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(b->ctxp));
        return CLI_RUNTIME;
    }
    mine->t = INFINITY;
    for (int i = 0; i <= o->reps; i++) {
        cd_comm_stats_reset(b->comm);
        const double t0 = cli_now();
        if (cd_flux_run(b->ctxp, b->m, p, b->out) != CD_OK) {
            cli_error("bench", "rank %d: %s", b->rank, cd_ctx_error(b->ctxp));
            return CLI_RUNTIME;
        }
        const double t = cli_now() - t0;
        cd_comm_stats st;
        cd_comm_stats_get(b->comm, &st);
        if (i > 0 && t < mine->t) *mine = (rank_stat){t, st.wait_seconds, st.bytes_sent, st.bytes_received};
    }
    return CLI_OK;
}

/* What rank 0 reports: the slowest rank, the bytes measured, and the geometry's counts. */
typedef struct {
    int layers, NH;
    double t1, tp, wait;
    uint64_t sent, halo, text, outb, allgather; /* halo, text, allgather: per layer, all ranks */
    double halo8, text8, ag8, comp8;            /* the 8-GPU FLUX.1 model */
} par_report;

static par_report par_summarize(const par_opts *o, const par_bench *b, double t1) {
    par_report q = {.layers = (int)(o->nd + o->ns), .NH = (int)(o->D / 128), .t1 = t1};
    const int P = b->P;
    const size_t L = (size_t)(o->G * o->G);
    for (int i = 0; i < P; i++) {
        q.tp = fmax(q.tp, b->all[i].t);
        q.wait = fmax(q.wait, b->all[i].wait);
        q.sent += b->all[i].sent;
    }
    /* the geometry's count, f32: K and V halo rows; pooled keys none (down 0); the text
     * partials [NH][T][HD + 1] to every other rank; the output bands [L/P][64] */
    for (int i = 0; i < P; i++)
        q.halo += (uint64_t)halo_rows(o->G, P, i, o->r) * (uint64_t)o->G * (uint64_t)o->D * 2 * 4;
    q.text = (uint64_t)P * (uint64_t)(P - 1) * (uint64_t)q.NH * (uint64_t)o->T * 129 * 4;
    q.outb = (uint64_t)(P - 1) * L * 64 * 4;
    q.allgather = (uint64_t)P * (uint64_t)(P - 1) * ((L + (size_t)o->T) / (size_t)P) * (uint64_t)o->D * 2 * 4;
    /* 8 GPUs, FLUX.1 at 8192^2: bf16 K/V, 3072 wide, 57 layers, r = this --radius */
    const double W8 = 512, D8 = 3072, N8 = 512.0 + 512 * 512;
    q.halo8 = 2.0 * (double)(o->r - 1) * W8 * D8 * 2 * 2; /* per interior rank, per layer */
    q.text8 = 7.0 * 24 * 512 * 129 * 4;                   /* text partials from 7 peers */
    q.ag8 = 7.0 / 8.0 * N8 * D8 * 2 * 2;                  /* all-gather of K/V */
    q.comp8 = 10.39 / 8.0;                                /* s per step per GPU (H200, r = 8) */
    return q;
}

static void par_print_json(const par_opts *o, const par_bench *b, const par_report *q) {
    printf("{\"ranks\": %d, \"threads_per_rank\": %d, \"grid\": %lld, \"text_len\": %lld, \"radius\": %lld, "
           "\"hidden\": %lld, \"layers\": %d, \"one_process_s\": %.6f, \"parallel_s\": %.6f, \"speedup\": %.4f, "
           "\"wait_s\": %.6f, \"bytes_sent_per_forward\": %llu, \"bytes_model\": {\"halo\": %llu, \"text\": %llu, "
           "\"output\": %llu}, \"allgather_kv_bytes\": %llu, \"flux8k_8gpu\": {\"halo_mb_per_layer\": %.2f, "
           "\"text_mb_per_layer\": %.2f, \"allgather_mb_per_layer\": %.2f, \"comm_s_per_step\": %.4f, "
           "\"compute_s_per_step\": %.4f}}\n",
           b->P, b->threads, (long long)o->G, (long long)o->T, (long long)o->r, (long long)o->D, q->layers, q->t1,
           q->tp, q->t1 / q->tp, q->wait, (unsigned long long)q->sent,
           (unsigned long long)(q->halo * (uint64_t)q->layers), (unsigned long long)(q->text * (uint64_t)q->layers),
           (unsigned long long)q->outb, (unsigned long long)(q->allgather * (uint64_t)q->layers), q->halo8 / 1e6,
           q->text8 / 1e6, q->ag8 / 1e6, 57 * (q->halo8 + q->text8) / (o->link * 1e9), q->comp8);
}

static void par_print_text(const par_opts *o, const par_bench *b, const par_report *q) {
    printf("cleardit bench parallel: %d ranks x %d threads (one process: %d threads); grid %lldx%lld (+%lld text), "
           "r = %lld, hidden %lld (%d x 128), %d layers, %s text attention\n",
           b->P, b->threads, b->cores, (long long)o->G, (long long)o->G, (long long)o->T, (long long)o->r,
           (long long)o->D, q->NH, q->layers, o->mode ? "approx" : "exact");
    printf("  forward: one process %.3f s, %d processes %.3f s: %.2fx; waiting %.3f s (%.1f%% of the time)\n", q->t1,
           b->P, q->tp, q->t1 / q->tp, q->wait, 100.0 * q->wait / q->tp);
    printf("  bytes sent per forward, all ranks: measured %.2f MB; geometry: K/V halos %.2f MB + text partials "
           "%.2f MB + output bands %.2f MB\n",
           q->sent / 1e6, q->halo * (double)q->layers / 1e6, q->text * (double)q->layers / 1e6, q->outb / 1e6);
    printf("  per layer: halos %.2f MB vs an all-gather of K/V %.2f MB (%.1f%%)\n", q->halo / 1e6, q->allgather / 1e6,
           q->allgather ? 100.0 * q->halo / q->allgather : 0.0);
    printf("  model, FLUX.1 at 8192^2 on 8 GPUs (bf16, r = %lld, %.0f GB/s links): per rank and layer %.1f MB of "
           "halo + %.1f MB of text partials vs %.1f MB for an all-gather of K/V; per step (57 layers) %.3f s of "
           "transfer against ~%.2f s of compute per GPU (H200 r = 8 forward / 8)\n",
           (long long)o->r, o->link, q->halo8 / 1e6, q->text8 / 1e6, q->ag8 / 1e6,
           57 * (q->halo8 + q->text8) / (o->link * 1e9), q->comp8);
}

/* Both timings and the gather of every rank's numbers; rank 0 prints. A rank whose model check
 * fails stops with rc unchanged (the failing rank's abort ends the job). */
static int par_run(const par_opts *o, par_bench *b) {
    const cd_flux_run_params p = {
        b->img,        b->txt,        b->pooled,     b->ids,        b->tids, 0.5f, 3.5f, (int32_t)(o->G * o->G),
        (int32_t)o->T, (int32_t)o->G, (int32_t)o->G, (int32_t)o->r, 0,       NULL, 0,    0};
    double t1 = 0;
    rank_stat mine = {0, 0, 0, 0};
    int rc = b->rank == 0 ? par_time_one(o, b, &p, &t1) : CLI_OK;
    cd_comm_set_timeout(b->comm, 3600);
    if (rc != CLI_OK) return rc;
    if (cd_comm_check_same(b->ctxp, b->comm, &b->cfg, sizeof b->cfg, "the benchmark's model") != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(b->ctxp)); /* ranks started with different arguments */
        return CLI_BAD_INPUT;
    }
    if ((rc = par_time_split(o, b, &p, &mine)) != CLI_OK) return rc;
    if (cd_comm_check_same(b->ctxp, b->comm, &b->cfg, sizeof b->cfg, "the benchmark's model") != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(b->ctxp));
        return CLI_BAD_INPUT;
    }
    /* every rank's numbers to rank 0 */
    if (cd_comm_allgather(b->ctxp, b->comm, &mine, sizeof mine, b->all, "benchmark results") != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(b->ctxp));
        return CLI_RUNTIME;
    }
    if (b->rank == 0) {
        const par_report q = par_summarize(o, b, t1);
        if (o->json)
            par_print_json(o, b, &q);
        else
            par_print_text(o, b, &q);
    }
    return CLI_OK;
}

int bench_parallel(int argc, char **argv) {
    par_opts o;
    par_bench b = {0};
    int help = 0, rc = par_parse(argc, argv, &o, &help);
    if (rc || help) return rc;
    if ((rc = par_setup(&o, &b)) == CLI_OK) rc = par_run(&o, &b);
    par_free(&b, rc);
    return rc;
}
