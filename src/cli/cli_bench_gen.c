/* cli_bench_gen.c — `cleardit bench generate`: per-stage time of image generation, dense vs CLEAR
 * side by side in one run, at increasing sizes.
 *
 * Part 1, FLUX.1 widths (what fits this machine): one transformer forward of a full-width model
 * (3072 hidden, 24 x 128, mlp 12288, T = 512, BF16 weights) with a few blocks, timed per block and
 * scaled to 19 + 38 blocks = one sampling step; and one decode by the FLUX autoencoder's decoder
 * (ch 128, 1-2-4-4, 2 blocks, z 16; random weights) with the tiling `generate` uses.
 * Part 2, beyond: the whole pipeline (cd_generate: noise, steps, decode) of a tiny FLUX-shaped
 * model and a narrow autoencoder at larger sizes, timing each step and the decode.
 * Benchmarks print tables; they assert nothing (tests do). */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../pipeline/generate.h"
#include "../pipeline/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *k_usage =
    "usage: cleardit bench generate [options]\n"
    "\n"
    "Per-stage time of image generation, dense vs CLEAR in one run.\n"
    "1. FLUX.1 widths: the transformer per sampling step (a full-width model with --double/--single\n"
    "   blocks, random BF16 weights, T = 512, scaled to 19 + 38 blocks) and the FLUX autoencoder's\n"
    "   decode (random weights; tiled above --ae-tile as generate does), at --sizes.\n"
    "2. Beyond: the whole cd_generate pipeline of a tiny FLUX-shaped model (hidden 128, 2 x 64,\n"
    "   1 + 2 blocks, T = 16) with a narrow autoencoder (ch 16), --tiny-steps steps, at --tiny-sizes;\n"
    "   dense is skipped where its attention alone is estimated above --budget seconds.\n"
    "\n"
    "options:\n"
    "  --json              one JSON object instead of the tables\n"
    "  --sizes LIST        image sides in pixels for part 1 (default 256,512,1024)\n"
    "  --tiny-sizes LIST   image sides for part 2 (default 1024,2048,4096; 0 = skip part 2)\n"
    "  --radius R          CLEAR radius (default 16)\n"
    "  --double N          double blocks measured in part 1 (default 1)\n"
    "  --single N          single blocks measured in part 1 (default 1)\n"
    "  --steps N           steps in part 1's per-image estimate (default 28)\n"
    "  --tiny-steps N      steps run in part 2 (default 2)\n"
    "  --ae-tile PX        autoencoder tile (default 1024, as generate)\n"
    "  --no-ae             skip the FLUX-width decode (it takes minutes at 1024 on 2 cores)\n"
    "  --budget S          part 2: skip dense where attention is estimated above S s/step (default 60)\n"
    "  --threads N         threads (default: all cores)\n";


typedef struct { double step_sum, last, decode; int steps; } timing;

static void on_step(void *user, int step, int steps, double el) {
    timing *t = user;
    if (step <= steps) {
        t->step_sum = el;
        t->steps = step;
    } else {
        t->decode = el - t->step_sum;
    }
}

/* One transformer forward: per-step estimate for 19 + 38 blocks. */
static int flux_step(cd_ctx *ctx, cd_flux_model *m, int nd, int ns, int64_t G, int64_t T, int64_t r, float *img,
                     const float *txt, const float *pooled, float *ids, const float *tids, float *out, double *bsec,
                     double *per_step) {
    cd_flux_img_ids(ctx, (size_t)G, (size_t)G, ids);
    cd_flux_run_params p = {img, txt, pooled, ids, tids, 0.5f, 3.5f, (int32_t)(G * G), (int32_t)T,
                            (int32_t)G, (int32_t)G, (int32_t)r, 0, bsec, 0, 0};
    const double t0 = cli_now();
    if (cd_flux_run(ctx, m, &p, out) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    const double total = cli_now() - t0;
    double td = 0, ts = 0;
    for (int b = 0; b < nd; b++) td += bsec[b];
    for (int b = 0; b < ns; b++) ts += bsec[nd + b];
    *per_step = (total - td - ts) + (nd ? 19.0 * td / nd : 0) + (ns ? 38.0 * ts / ns : 0);
    return CLI_OK;
}

int bench_generate(int argc, char **argv) {
    int64_t threads = 0, radius = 16, nd = 1, ns = 1, steps = 28, tiny_steps = 2, ae_tile = 1024;
    const char *sizes_s = "256,512,1024", *tiny_s = "1024,2048,4096";
    double budget = 60;
    int json = 0, help = 0, no_ae = 0;
    cli_opt opts[] = {
        {"--json", CLI_OPT_SWITCH, &json, 0, 0, 0, 0, 0},
        {"--sizes", CLI_OPT_STRING, &sizes_s, 0, 0, 0, 0, 0},
        {"--tiny-sizes", CLI_OPT_STRING, &tiny_s, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &radius, 1, 4096, 0, 0, 0},
        {"--double", CLI_OPT_INT, &nd, 0, 19, 0, 0, 0},
        {"--single", CLI_OPT_INT, &ns, 0, 38, 0, 0, 0},
        {"--steps", CLI_OPT_INT, &steps, 1, 1000, 0, 0, 0},
        {"--tiny-steps", CLI_OPT_INT, &tiny_steps, 1, 1000, 0, 0, 0},
        {"--ae-tile", CLI_OPT_INT, &ae_tile, 0, 65536, 0, 0, 0},
        {"--no-ae", CLI_OPT_SWITCH, &no_ae, 0, 0, 0, 0, 0},
        {"--budget", CLI_OPT_FLOAT, &budget, 0, 0, 0.001, 1e6, 0},
        {"--threads", CLI_OPT_INT, &threads, 1, 4096, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], &help)) return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    int64_t sizes[16], tiny[16];
    const int n1 = cli_parse_list(sizes_s, 0, 65536, 1, sizes, 16), n2 = cli_parse_list(tiny_s, 0, 65536, 1, tiny, 16);
    if (n1 < 0 || n2 < 0 || nd + ns < 1) {
        cli_error("bench", "--sizes and --tiny-sizes take comma-separated pixel sides, and a block is needed");
        return CLI_BAD_INPUT;
    }
    for (int i = 0; i < n1; i++)
        if (sizes[i] % 16) {
            cli_error("bench", "size %lld is not a multiple of 16", (long long)sizes[i]);
            return CLI_BAD_INPUT;
        }
    for (int i = 0; i < n2; i++)
        if (tiny[i] % 16) {
            cli_error("bench", "size %lld is not a multiple of 16", (long long)tiny[i]);
            return CLI_BAD_INPUT;
        }
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error("bench", "cannot create a context");
        return CLI_RUNTIME;
    }
    int rc = CLI_OK;
    cd_flux_model *m = NULL, *tm = NULL;
    cd_ae_decoder *ae = NULL, *tae = NULL;
    float *img = NULL, *txt = NULL, *pooled = NULL, *ids = NULL, *tids = NULL, *out = NULL, *z = NULL, *dec = NULL;
    double *bsec = calloc((size_t)(nd + ns), sizeof(double));
    const int64_t T = 512;
    int64_t smax = 0;
    for (int i = 0; i < n1; i++) smax = sizes[i] > smax ? sizes[i] : smax;
    const size_t Lmax = (size_t)(smax / 16) * (size_t)(smax / 16);
    if (json) printf("{\"threads\": %d, \"flux_width\": [", cd_ctx_threads(ctx));
    if (n1) {
        const cd_flux_config cfg = {3072, 24, 128, (int32_t)nd, (int32_t)ns, 64, 64, 4096, 768, 12288, 1};
        const int axes[3] = {16, 56, 56};
        img = malloc(Lmax * 64 * sizeof(float));
        txt = malloc((size_t)T * 4096 * sizeof(float));
        ids = calloc(Lmax * 3, sizeof(float));
        tids = calloc((size_t)T * 3, sizeof(float));
        pooled = malloc(768 * sizeof(float));
        out = malloc(Lmax * 64 * sizeof(float));
        if (!img || !txt || !ids || !tids || !pooled || !out || !bsec) {
            cli_error("bench", "out of memory");
            rc = CLI_RUNTIME;
            goto done;
        }
        cli_fill_uniform(img, Lmax * 64, 1);
        cli_fill_uniform(txt, (size_t)T * 4096, 2);
        cli_fill_uniform(pooled, 768, 3);
        if (!json) fprintf(stderr, "creating random FLUX-width weights (%lld + %lld blocks) and autoencoder ...\n",
                           (long long)nd, (long long)ns);
        const cd_ae_config acfg = {3, 3, 128, {1, 2, 4, 4}, 4, 2, 16, 0, 1};
        if (cd_flux_random(ctx, &cfg, CD_DTYPE_BF16, axes, 10000.0, 42, &m) != CD_OK ||
            cd_flux_reserve(ctx, m, Lmax + (size_t)T) != CD_OK ||
            (!no_ae && cd_ae_decoder_random(ctx, &acfg, 32, 7, &ae) != CD_OK)) {
            cli_error("bench", "%s", cd_ctx_error(ctx));
            rc = CLI_RUNTIME;
            goto done;
        }
        if (!json) {
            printf("cleardit bench generate: %d threads, %s path\n\n", cd_ctx_threads(ctx), cd_isa_name(cd_ctx_isa(ctx)));
            printf("FLUX.1 widths: transformer per step (%lld + %lld blocks measured, scaled to 19 + 38), T = 512, "
                   "BF16 weights; AE decode with FLUX's autoencoder widths (tile %lld)\n",
                   (long long)nd, (long long)ns, (long long)ae_tile);
            printf("%-10s %8s %12s %12s %9s %10s %14s %14s\n", "size", "tokens", "dense s/step", "CLEAR s/step", "speedup",
                   "decode s", "dense image s", "CLEAR image s");
        }
        for (int i = 0; i < n1 && rc == CLI_OK; i++) {
            const int64_t S = sizes[i], G = S / 16;
            double dense = 0, clear = 0, decode = -1;
            if ((rc = flux_step(ctx, m, (int)nd, (int)ns, G, T, 0, img, txt, pooled, ids, tids, out, bsec, &dense)) ||
                (rc = flux_step(ctx, m, (int)nd, (int)ns, G, T, radius, img, txt, pooled, ids, tids, out, bsec, &clear)))
                break;
            if (ae) {
                const size_t lh = (size_t)S / 8;
                z = realloc(z, 16 * lh * lh * sizeof(float));
                dec = realloc(dec, 3 * (size_t)S * (size_t)S * sizeof(float));
                if (!z || !dec) {
                    cli_error("bench", "out of memory");
                    rc = CLI_RUNTIME;
                    break;
                }
                cli_fill_uniform(z, 16 * lh * lh, 4);
                const cd_ae_tiling tl = {(int32_t)ae_tile, 0.25f};
                const double t0 = cli_now();
                if (cd_ae_decode_tiled(ctx, ae, z, (int)lh, (int)lh, &tl, dec) != CD_OK) {
                    cli_error("bench", "%s", cd_ctx_error(ctx));
                    rc = CLI_RUNTIME;
                    break;
                }
                decode = cli_now() - t0;
            }
            const double di = dense * (double)steps + (decode > 0 ? decode : 0),
                         ci = clear * (double)steps + (decode > 0 ? decode : 0);
            if (json) {
                printf("%s{\"size\": %lld, \"tokens\": %lld, \"dense_s_per_step\": %.4f, \"clear_s_per_step\": %.4f, "
                       "\"radius\": %lld, \"decode_s\": %.4f, \"steps\": %lld, \"dense_image_s\": %.3f, "
                       "\"clear_image_s\": %.3f}",
                       i ? ", " : "", (long long)S, (long long)(G * G), dense, clear, (long long)radius, decode,
                       (long long)steps, di, ci);
            } else {
                char dbuf[32];
                if (decode >= 0) snprintf(dbuf, sizeof dbuf, "%10.2f", decode);
                else snprintf(dbuf, sizeof dbuf, "%10s", "-");
                printf("%-10lld %8lld %12.2f %12.2f %8.2fx %s %14.1f %14.1f\n", (long long)S, (long long)(G * G), dense,
                       clear, dense / clear, dbuf, di, ci);
                fflush(stdout);
            }
        }
    }
    if (json) printf("], \"tiny\": [");
    if (rc == CLI_OK && n2) {
        const cd_flux_config tc = {128, 2, 64, 1, 2, 64, 64, 64, 32, 512, 1};
        const int axes[3] = {8, 28, 28};
        const cd_ae_config ac = {3, 3, 16, {1, 2, 4, 4}, 4, 1, 16, 0, 1};
        const int64_t TT = 16;
        float ttxt[16 * 64], tpool[32];
        cli_fill_uniform(ttxt, sizeof ttxt / sizeof ttxt[0], 5);
        cli_fill_uniform(tpool, 32, 6);
        if (cd_flux_random(ctx, &tc, CD_DTYPE_F32, axes, 10000.0, 43, &tm) != CD_OK ||
            cd_ae_decoder_random(ctx, &ac, 16, 8, &tae) != CD_OK) {
            cli_error("bench", "%s", cd_ctx_error(ctx));
            rc = CLI_RUNTIME;
            goto done;
        }
        /* dense attention's cost per step: 3 layers x 4 N^2 x 128 FLOPs at ~100 GFLOP/s per thread */
        const double rate = 100e9 * cd_ctx_threads(ctx);
        if (!json) {
            printf("\ntiny model (hidden 128, 2 x 64, 1 + 2 blocks, T = 16) + narrow autoencoder (ch 16): the whole "
                   "pipeline, %lld steps, CLEAR r = %lld\n",
                   (long long)tiny_steps, (long long)radius);
            printf("%-10s %8s %12s %12s %9s %10s\n", "size", "tokens", "dense s/step", "CLEAR s/step", "speedup",
                   "decode s");
        }
        for (int i = 0; i < n2 && rc == CLI_OK; i++) {
            const int64_t S = tiny[i], G = S / 16, N = G * G + TT;
            double res[2] = {-1, -1}, dec_s = -1;
            for (int mode = 0; mode < 2 && rc == CLI_OK; mode++) {
                if (mode == 0 && 3.0 * 4.0 * (double)N * (double)N * 128.0 / rate > budget) continue;
                timing tmg = {0, 0, 0, 0};
                cd_generate_params gp = {0};
                gp.txt = ttxt;
                gp.T = (int32_t)TT;
                gp.pooled = tpool;
                gp.width = gp.height = (int32_t)S;
                gp.steps = (int32_t)tiny_steps;
                gp.guidance = 3.5f;
                gp.seed = 1;
                gp.radius = mode ? (int32_t)radius : 0;
                gp.shift = -1;
                gp.ae_tile = (int32_t)ae_tile;
                gp.progress = on_step;
                gp.user = &tmg;
                uint8_t *rgb = malloc((size_t)S * (size_t)S * 3);
                if (!rgb || cd_generate(ctx, tm, tae, &gp, rgb) != CD_OK) {
                    cli_error("bench", "%s", rgb ? cd_ctx_error(ctx) : "out of memory");
                    rc = CLI_RUNTIME;
                }
                free(rgb);
                res[mode] = tmg.steps ? tmg.step_sum / tmg.steps : -1;
                dec_s = tmg.decode;
            }
            if (json) {
                printf("%s{\"size\": %lld, \"tokens\": %lld, \"dense_s_per_step\": %.4f, \"clear_s_per_step\": %.4f, "
                       "\"decode_s\": %.4f}",
                       i ? ", " : "", (long long)S, (long long)(G * G), res[0], res[1], dec_s);
            } else {
                char dbuf[32], sbuf[32];
                if (res[0] >= 0) {
                    snprintf(dbuf, sizeof dbuf, "%12.3f", res[0]);
                    snprintf(sbuf, sizeof sbuf, "%8.1fx", res[0] / res[1]);
                } else {
                    snprintf(dbuf, sizeof dbuf, "%12s", "skipped");
                    snprintf(sbuf, sizeof sbuf, "%9s", "-");
                }
                printf("%-10lld %8lld %s %12.3f %s %10.2f\n", (long long)S, (long long)(G * G), dbuf, res[1], sbuf, dec_s);
                fflush(stdout);
            }
        }
    }
    if (json) printf("]}\n");
done:
    free(img); free(txt); free(pooled); free(ids); free(tids); free(out); free(z); free(dec); free(bsec);
    cd_flux_free(m);
    cd_flux_free(tm);
    cd_ae_decoder_free(ae);
    cd_ae_decoder_free(tae);
    cd_ctx_free(ctx);
    return rc;
}
