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

typedef struct { double t, wait; uint64_t sent, recv; } rank_stat;

int bench_parallel(int argc, char **argv) {
    int64_t G = 64, T = 64, r = 8, D = 512, nd = 1, ns = 2, reps = 3;
    double link = 450;
    const char *text_s = NULL;
    int json = 0, help = 0, mode = 0;
    cli_opt opts[] = {
        {"--grid", CLI_OPT_INT, &G, 2, 1024, 0, 0, 0},
        {"--text-len", CLI_OPT_INT, &T, 0, 4096, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &r, 1, 4096, 0, 0, 0},
        {"--hidden", CLI_OPT_INT, &D, 128, 8192, 0, 0, 0},
        {"--double", CLI_OPT_INT, &nd, 0, 19, 0, 0, 0},
        {"--single", CLI_OPT_INT, &ns, 0, 38, 0, 0, 0},
        {"--reps", CLI_OPT_INT, &reps, 1, 100, 0, 0, 0},
        {"--text-attention", CLI_OPT_STRING, &text_s, 0, 0, 0, 0, 0},
        {"--link-gbs", CLI_OPT_FLOAT, &link, 0, 0, 1e-3, 1e6, 0},
        {"--json", CLI_OPT_SWITCH, &json, 0, 0, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], &help)) return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (D % 128 || nd + ns < 1 || cli_parse_parallel("bench", "patch", text_s, &mode)) {
        if (D % 128) cli_error("bench", "--hidden must be a multiple of 128 (heads of 128)");
        else if (nd + ns < 1) cli_error("bench", "need at least one block");
        return CLI_BAD_INPUT;
    }
    cd_ctx_params cp = cd_ctx_params_default();
    cd_ctx *ctx1 = NULL, *ctxp = NULL;
    cd_comm *comm = NULL;
    if (cd_ctx_create(&cp, &ctx1) != CD_OK) {
        cli_error("bench", "cannot create a context");
        return CLI_RUNTIME;
    }
    if (cd_comm_init(ctx1, NULL, NULL, &comm) != CD_OK) {
        cli_error("bench", "parallel: %s", cd_ctx_error(ctx1));
        cd_ctx_free(ctx1);
        return CLI_BAD_INPUT;
    }
    const int P = cd_comm_size(comm), rank = cd_comm_rank(comm);
    const int cores = cd_ctx_threads(ctx1);
    /* ranks share the machine: cores / P threads each (the one-process run gets them all) */
    cp.threads = cores / P > 0 ? cores / P : 1;
    int rc = CLI_OK;
    cd_flux_model *m = NULL;
    const cd_flux_config cfg = {(int32_t)D, (int32_t)(D / 128), 128, (int32_t)nd, (int32_t)ns, 64, 64, 256, 64,
                                (int32_t)(4 * D), 1};
    const int axes[3] = {16, 56, 56};
    const size_t L = (size_t)(G * G);
    float *img = malloc(L * 64 * 4), *txt = malloc((size_t)(T + 1) * 256 * 4), *pooled = malloc(64 * 4);
    float *ids = malloc(L * 3 * 4), *tids = calloc((size_t)T * 3 + 3, 4), *out = malloc(L * 64 * 4);
    rank_stat mine = {0, 0, 0, 0}, *all = calloc((size_t)P, sizeof *all);
    double t1 = 0;
    if (!img || !txt || !pooled || !ids || !tids || !out || !all || cd_ctx_create(&cp, &ctxp) != CD_OK ||
        cd_flux_random(ctx1, &cfg, CD_DTYPE_BF16, axes, 10000.0, 7, &m) != CD_OK ||
        cd_flux_img_ids(ctx1, (size_t)G, (size_t)G, ids) != CD_OK) {
        cli_error("bench", "setup: %s", cd_ctx_error(ctx1));
        rc = CLI_RUNTIME;
        goto done;
    }
    cli_fill_uniform(img, L * 64, 1);
    cli_fill_uniform(txt, (size_t)T * 256, 2);
    cli_fill_uniform(pooled, 64, 3);
    cd_flux_run_params p = {img, txt, pooled, ids, tids, 0.5f, 3.5f, (int32_t)L, (int32_t)T, (int32_t)G, (int32_t)G,
                            (int32_t)r, 0, NULL, 0, 0};
    /* 1. one process: rank 0 alone with every core; the others wait at the gather below */
    if (rank == 0) {
        double best = INFINITY;
        for (int i = 0; i <= reps && rc == CLI_OK; i++) {
            const double t0 = cli_now();
            if (cd_flux_run(ctx1, m, &p, out) != CD_OK) {
                cli_error("bench", "%s", cd_ctx_error(ctx1));
                rc = CLI_RUNTIME;
            }
            if (i > 0 && cli_now() - t0 < best) best = cli_now() - t0;
        }
        t1 = best;
    }
    cd_comm_set_timeout(comm, 3600);
    if (rc != CLI_OK || cd_comm_check_same(ctxp, comm, &cfg, sizeof cfg, "the benchmark's model") != CD_OK) goto done;
    /* 2. P processes */
    if (cd_flux_set_parallel(ctxp, m, comm, (cd_text_attention)mode) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(ctxp));
        rc = CLI_RUNTIME;
        goto done;
    }
    mine.t = INFINITY;
    for (int i = 0; i <= reps && rc == CLI_OK; i++) {
        cd_comm_stats_reset(comm);
        const double t0 = cli_now();
        if (cd_flux_run(ctxp, m, &p, out) != CD_OK) {
            cli_error("bench", "rank %d: %s", rank, cd_ctx_error(ctxp));
            rc = CLI_RUNTIME;
            break;
        }
        const double t = cli_now() - t0;
        cd_comm_stats st;
        cd_comm_stats_get(comm, &st);
        if (i > 0 && t < mine.t) mine = (rank_stat){t, st.wait_seconds, st.bytes_sent, st.bytes_received};
    }
    if (rc != CLI_OK || cd_comm_check_same(ctxp, comm, &cfg, sizeof cfg, "the benchmark's model") != CD_OK) goto done;
    /* every rank's numbers to rank 0 */
    if (cd_comm_allgather(ctxp, comm, &mine, sizeof mine, all, "benchmark results") != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(ctxp));
        rc = CLI_RUNTIME;
        goto done;
    }
    if (rank == 0) {
        const int layers = (int)(nd + ns), NH = (int)(D / 128);
        double tp = 0, wait = 0;
        uint64_t sent = 0;
        for (int i = 0; i < P; i++) {
            tp = fmax(tp, all[i].t);
            wait = fmax(wait, all[i].wait);
            sent += all[i].sent;
        }
        /* the geometry's count, f32: K and V halo rows; pooled keys none (down 0); the text
         * partials [NH][T][HD + 1] to every other rank; the output bands [L/P][64] */
        uint64_t halo = 0;
        for (int i = 0; i < P; i++) halo += (uint64_t)halo_rows(G, P, i, r) * (uint64_t)G * (uint64_t)D * 2 * 4;
        const uint64_t text = (uint64_t)P * (uint64_t)(P - 1) * (uint64_t)NH * (uint64_t)T * 129 * 4;
        const uint64_t outb = (uint64_t)(P - 1) * L * 64 * 4;
        const uint64_t allgather = (uint64_t)P * (uint64_t)(P - 1) * ((L + (size_t)T) / (size_t)P) * (uint64_t)D * 2 * 4;
        /* 8 GPUs, FLUX.1 at 8192^2: bf16 K/V, 3072 wide, 57 layers, r = this --radius */
        const double W8 = 512, D8 = 3072, N8 = 512.0 + 512 * 512;
        const double halo8 = 2.0 * (double)(r - 1) * W8 * D8 * 2 * 2;        /* per interior rank, per layer */
        const double text8 = 7.0 * 24 * 512 * 129 * 4;                       /* text partials from 7 peers */
        const double ag8 = 7.0 / 8.0 * N8 * D8 * 2 * 2;                      /* all-gather of K/V */
        const double comp8 = 10.39 / 8.0;                                     /* s per step per GPU (H200, r = 8) */
        if (json) {
            printf("{\"ranks\": %d, \"threads_per_rank\": %d, \"grid\": %lld, \"text_len\": %lld, \"radius\": %lld, "
                   "\"hidden\": %lld, \"layers\": %d, \"one_process_s\": %.6f, \"parallel_s\": %.6f, \"speedup\": %.4f, "
                   "\"wait_s\": %.6f, \"bytes_sent_per_forward\": %llu, \"bytes_model\": {\"halo\": %llu, \"text\": %llu, "
                   "\"output\": %llu}, \"allgather_kv_bytes\": %llu, \"flux8k_8gpu\": {\"halo_mb_per_layer\": %.2f, "
                   "\"text_mb_per_layer\": %.2f, \"allgather_mb_per_layer\": %.2f, \"comm_s_per_step\": %.4f, "
                   "\"compute_s_per_step\": %.4f}}\n",
                   P, cp.threads, (long long)G, (long long)T, (long long)r, (long long)D, layers, t1, tp, t1 / tp, wait,
                   (unsigned long long)sent, (unsigned long long)(halo * (uint64_t)layers),
                   (unsigned long long)(text * (uint64_t)layers), (unsigned long long)outb,
                   (unsigned long long)(allgather * (uint64_t)layers), halo8 / 1e6, text8 / 1e6, ag8 / 1e6,
                   57 * (halo8 + text8) / (link * 1e9), comp8);
        } else {
            printf("cleardit bench parallel: %d ranks x %d threads (one process: %d threads); grid %lldx%lld (+%lld text), "
                   "r = %lld, hidden %lld (%d x 128), %d layers, %s text attention\n",
                   P, cp.threads, cores, (long long)G, (long long)G, (long long)T, (long long)r, (long long)D, NH, layers,
                   mode ? "approx" : "exact");
            printf("  forward: one process %.3f s, %d processes %.3f s: %.2fx; waiting %.3f s (%.1f%% of the time)\n", t1,
                   P, tp, t1 / tp, wait, 100.0 * wait / tp);
            printf("  bytes sent per forward, all ranks: measured %.2f MB; geometry: K/V halos %.2f MB + text partials "
                   "%.2f MB + output bands %.2f MB\n", sent / 1e6, halo * (double)layers / 1e6, text * (double)layers / 1e6,
                   outb / 1e6);
            printf("  per layer: halos %.2f MB vs an all-gather of K/V %.2f MB (%.1f%%)\n", halo / 1e6, allgather / 1e6,
                   allgather ? 100.0 * halo / allgather : 0.0);
            printf("  model, FLUX.1 at 8192^2 on 8 GPUs (bf16, r = %lld, %.0f GB/s links): per rank and layer %.1f MB of "
                   "halo + %.1f MB of text partials vs %.1f MB for an all-gather of K/V; per step (57 layers) %.3f s of "
                   "transfer against ~%.2f s of compute per GPU (H200 r = 8 forward / 8)\n",
                   (long long)r, link, halo8 / 1e6, text8 / 1e6, ag8 / 1e6, 57 * (halo8 + text8) / (link * 1e9), comp8);
        }
    }
done:
    cd_flux_free(m);
    free(img); free(txt); free(pooled); free(ids); free(tids); free(out); free(all);
    cli_parallel_end(comm, rc);
    cd_ctx_free(ctxp);
    cd_ctx_free(ctx1);
    return rc;
}
