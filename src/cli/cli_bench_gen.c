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

enum { TINY_T = 16, FLUX_T = 512 }; /* text tokens of part 2's tiny model and of part 1 */

typedef struct {
    double step_sum, last, decode;
    int steps;
} timing;

static void on_step(void *user, int step, int steps, double el) {
    timing *t = user;
    if (step <= steps) {
        t->step_sum = el;
        t->steps = step;
    } else {
        t->decode = el - t->step_sum;
    }
}

/* The flags of `bench generate`, checked. */
typedef struct {
    int64_t threads, radius, nd, ns, steps, tiny_steps, ae_tile;
    double budget;
    int json, no_ae, n1, n2;
    int64_t sizes[16], tiny[16]; /* pixel sides of part 1 and part 2 */
} gen_opts;

/* The models and buffers of both parts (NULL until set up). */
typedef struct {
    cd_flux_model *m, *tm;              /* FLUX.1 width; tiny */
    cd_ae_decoder *ae, *tae;            /* FLUX widths (NULL with --no-ae); narrow */
    float *img;                         // [Lmax, 64]
    float *txt;                         // [512, 4096]
    float *pooled;                      // [768]
    float *ids;                         // [Lmax, 3]
    float *tids;                        // [512, 3] (zeros)
    float *out;                         // [Lmax, 64]
    float *z;                           // [16, S/8, S/8] latents of the size being decoded
    float *dec;                         // [3, S, S]
    double *bsec;                       // [nd + ns] seconds per block
    float ttxt[TINY_T * 64], tpool[32]; /* the tiny model's text [TINY_T, 64] and pooled vector */
} gen_state;

static int gen_parse(int argc, char **argv, gen_opts *o, int *help) {
    *o = (gen_opts){.radius = 16, .nd = 1, .ns = 1, .steps = 28, .tiny_steps = 2, .ae_tile = 1024, .budget = 60};
    const char *sizes_s = "256,512,1024", *tiny_s = "1024,2048,4096";
    cli_opt opts[] = {
        {"--json", CLI_OPT_SWITCH, &o->json, 0, 0, 0, 0, 0},
        {"--sizes", CLI_OPT_STRING, &sizes_s, 0, 0, 0, 0, 0},
        {"--tiny-sizes", CLI_OPT_STRING, &tiny_s, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &o->radius, 1, 4096, 0, 0, 0},
        {"--double", CLI_OPT_INT, &o->nd, 0, 19, 0, 0, 0},
        {"--single", CLI_OPT_INT, &o->ns, 0, 38, 0, 0, 0},
        {"--steps", CLI_OPT_INT, &o->steps, 1, 1000, 0, 0, 0},
        {"--tiny-steps", CLI_OPT_INT, &o->tiny_steps, 1, 1000, 0, 0, 0},
        {"--ae-tile", CLI_OPT_INT, &o->ae_tile, 0, 65536, 0, 0, 0},
        {"--no-ae", CLI_OPT_SWITCH, &o->no_ae, 0, 0, 0, 0, 0},
        {"--budget", CLI_OPT_FLOAT, &o->budget, 0, 0, 0.001, 1e6, 0},
        {"--threads", CLI_OPT_INT, &o->threads, 1, 4096, 0, 0, 0},
    };
    if (cli_parse_flags("bench", argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], help)) return CLI_BAD_INPUT;
    if (*help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    o->n1 = cli_parse_list(sizes_s, 0, 65536, 1, o->sizes, 16);
    o->n2 = cli_parse_list(tiny_s, 0, 65536, 1, o->tiny, 16);
    if (o->n1 < 0 || o->n2 < 0 || o->nd + o->ns < 1) {
        cli_error("bench", "--sizes and --tiny-sizes take comma-separated pixel sides, and a block is needed");
        return CLI_BAD_INPUT;
    }
    for (int i = 0; i < o->n1 + o->n2; i++) {
        const int64_t S = i < o->n1 ? o->sizes[i] : o->tiny[i - o->n1];
        if (S % 16) {
            cli_error("bench", "size %lld is not a multiple of 16", (long long)S);
            return CLI_BAD_INPUT;
        }
    }
    return CLI_OK;
}

static void gen_free(gen_state *s) {
    free(s->img);
    free(s->txt);
    free(s->pooled);
    free(s->ids);
    free(s->tids);
    free(s->out);
    free(s->z);
    free(s->dec);
    free(s->bsec);
    cd_flux_free(s->m);
    cd_flux_free(s->tm);
    cd_ae_decoder_free(s->ae);
    cd_ae_decoder_free(s->tae);
}

/* ---- part 1: FLUX.1 widths ----------------------------------------------------------------- */

/* Inputs for the largest size, the full-width transformer and (without --no-ae) the FLUX
 * autoencoder's decoder, random. Prints why not. */
static int width_setup(cd_ctx *ctx, const gen_opts *o, gen_state *s) {
    const cd_flux_config cfg = {3072, 24, 128, (int32_t)o->nd, (int32_t)o->ns, 64, 64, 4096, 768, 12288, 1};
    const cd_ae_config acfg = {3, 3, 128, {1, 2, 4, 4}, 4, 2, 16, 0, 1};
    const int axes[3] = {16, 56, 56};
    const size_t T = FLUX_T;
    int64_t smax = 0;
    for (int i = 0; i < o->n1; i++) smax = o->sizes[i] > smax ? o->sizes[i] : smax;
    const size_t Lmax = (size_t)(smax / 16) * (size_t)(smax / 16);
    s->img = malloc(Lmax * 64 * sizeof(float));
    s->txt = malloc(T * 4096 * sizeof(float));
    s->ids = calloc(Lmax * 3, sizeof(float));
    s->tids = calloc(T * 3, sizeof(float));
    s->pooled = malloc(768 * sizeof(float));
    s->out = malloc(Lmax * 64 * sizeof(float));
    s->bsec = calloc((size_t)(o->nd + o->ns), sizeof(double));
    if (!s->img || !s->txt || !s->ids || !s->tids || !s->pooled || !s->out || !s->bsec) {
        cli_error("bench", "out of memory");
        return CLI_RUNTIME;
    }
    cli_fill_uniform(s->img, Lmax * 64, 1);
    cli_fill_uniform(s->txt, T * 4096, 2);
    cli_fill_uniform(s->pooled, 768, 3);
    if (!o->json)
        fprintf(stderr, "creating random FLUX-width weights (%lld + %lld blocks) and autoencoder ...\n",
                (long long)o->nd, (long long)o->ns);
    if (cd_flux_random(ctx, &cfg, CD_DTYPE_BF16, axes, 10000.0, 42, &s->m) != CD_OK ||
        cd_flux_reserve(ctx, s->m, Lmax + T) != CD_OK ||
        (!o->no_ae && cd_ae_decoder_random(ctx, &acfg, 32, 7, &s->ae) != CD_OK)) {
        cli_error("bench", "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

/* One transformer forward: per-step estimate for 19 + 38 blocks. */
static int flux_step(cd_ctx *ctx, const gen_opts *o, gen_state *s, int64_t G, int64_t r, double *per_step) {
    const int64_t T = FLUX_T;
    cd_flux_img_ids(ctx, (size_t)G, (size_t)G, s->ids);
    cd_flux_run_params p = {s->img,     s->txt,     s->pooled,  s->ids,     s->tids, 0.5f,    3.5f, (int32_t)(G * G),
                            (int32_t)T, (int32_t)G, (int32_t)G, (int32_t)r, 0,       s->bsec, 0,    0};
    const double t0 = cli_now();
    if (cd_flux_run(ctx, s->m, &p, s->out) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    const double total = cli_now() - t0;
    double td = 0, ts = 0;
    for (int b = 0; b < o->nd; b++) td += s->bsec[b];
    for (int b = 0; b < o->ns; b++) ts += s->bsec[o->nd + b];
    *per_step = (total - td - ts) + (o->nd ? 19.0 * td / o->nd : 0) + (o->ns ? 38.0 * ts / o->ns : 0);
    return CLI_OK;
}

/* One tiled decode of random S/8 x S/8 latents to an SxS image, as generate tiles it. */
static int width_decode(cd_ctx *ctx, const gen_opts *o, gen_state *s, int64_t S, double *seconds) {
    const size_t lh = (size_t)S / 8;
    float *z = realloc(s->z, 16 * lh * lh * sizeof(float));
    if (z) s->z = z;
    float *dec = realloc(s->dec, 3 * (size_t)S * (size_t)S * sizeof(float));
    if (dec) s->dec = dec;
    if (!z || !dec) {
        cli_error("bench", "out of memory");
        return CLI_RUNTIME;
    }
    cli_fill_uniform(s->z, 16 * lh * lh, 4);
    const cd_ae_tiling tl = {(int32_t)o->ae_tile, 0.25f};
    const double t0 = cli_now();
    if (cd_ae_decode_tiled(ctx, s->ae, s->z, (int)lh, (int)lh, &tl, s->dec) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    *seconds = cli_now() - t0;
    return CLI_OK;
}

static void width_print_header(cd_ctx *ctx, const gen_opts *o) {
    printf("cleardit bench generate: %d threads, %s path\n\n", cd_ctx_threads(ctx), cd_isa_name(cd_ctx_isa(ctx)));
    printf("FLUX.1 widths: transformer per step (%lld + %lld blocks measured, scaled to 19 + 38), T = 512, "
           "BF16 weights; AE decode with FLUX's autoencoder widths (tile %lld)\n",
           (long long)o->nd, (long long)o->ns, (long long)o->ae_tile);
    printf("%-10s %8s %12s %12s %9s %10s %14s %14s\n", "size", "tokens", "dense s/step", "CLEAR s/step", "speedup",
           "decode s", "dense image s", "CLEAR image s");
}

/* Row i of part 1 (decode < 0: not measured). */
static void width_print_row(const gen_opts *o, int i, double dense, double clear, double decode) {
    const int64_t S = o->sizes[i], G = S / 16;
    const double di = dense * (double)o->steps + (decode > 0 ? decode : 0),
                 ci = clear * (double)o->steps + (decode > 0 ? decode : 0);
    if (o->json) {
        printf("%s{\"size\": %lld, \"tokens\": %lld, \"dense_s_per_step\": %.4f, \"clear_s_per_step\": %.4f, "
               "\"radius\": %lld, \"decode_s\": %.4f, \"steps\": %lld, \"dense_image_s\": %.3f, "
               "\"clear_image_s\": %.3f}",
               i ? ", " : "", (long long)S, (long long)(G * G), dense, clear, (long long)o->radius, decode,
               (long long)o->steps, di, ci);
        return;
    }
    char dbuf[32];
    if (decode >= 0)
        snprintf(dbuf, sizeof dbuf, "%10.2f", decode);
    else
        snprintf(dbuf, sizeof dbuf, "%10s", "-");
    printf("%-10lld %8lld %12.2f %12.2f %8.2fx %s %14.1f %14.1f\n", (long long)S, (long long)(G * G), dense, clear,
           dense / clear, dbuf, di, ci);
    fflush(stdout);
}

/* Part 1 at each size: a dense and a CLEAR step, and the decode. */
static int width_sizes(cd_ctx *ctx, const gen_opts *o, gen_state *s) {
    if (!o->json) width_print_header(ctx, o);
    for (int i = 0; i < o->n1; i++) {
        const int64_t S = o->sizes[i], G = S / 16;
        double dense = 0, clear = 0, decode = -1;
        int rc;
        if ((rc = flux_step(ctx, o, s, G, 0, &dense)) || (rc = flux_step(ctx, o, s, G, o->radius, &clear)) ||
            (s->ae && (rc = width_decode(ctx, o, s, S, &decode))))
            return rc;
        width_print_row(o, i, dense, clear, decode);
    }
    return CLI_OK;
}

/* ---- part 2: the whole pipeline of a tiny model --------------------------------------------- */

static int tiny_setup(cd_ctx *ctx, gen_state *s) {
    const cd_flux_config tc = {128, 2, 64, 1, 2, 64, 64, 64, 32, 512, 1};
    const int axes[3] = {8, 28, 28};
    const cd_ae_config ac = {3, 3, 16, {1, 2, 4, 4}, 4, 1, 16, 0, 1};
    cli_fill_uniform(s->ttxt, sizeof s->ttxt / sizeof s->ttxt[0], 5);
    cli_fill_uniform(s->tpool, 32, 6);
    if (cd_flux_random(ctx, &tc, CD_DTYPE_F32, axes, 10000.0, 43, &s->tm) != CD_OK ||
        cd_ae_decoder_random(ctx, &ac, 16, 8, &s->tae) != CD_OK) {
        cli_error("bench", "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

/* One cd_generate of an SxS image at radius r (0 = dense), its step and decode times into *tmg. */
static int tiny_generate(cd_ctx *ctx, const gen_opts *o, gen_state *s, int64_t S, int64_t r, timing *tmg) {
    cd_generate_params gp = {0};
    gp.txt = s->ttxt;
    gp.T = TINY_T;
    gp.pooled = s->tpool;
    gp.width = gp.height = (int32_t)S;
    gp.steps = (int32_t)o->tiny_steps;
    gp.guidance = 3.5f;
    gp.seed = 1;
    gp.radius = (int32_t)r;
    gp.shift = -1;
    gp.ae_tile = (int32_t)o->ae_tile;
    gp.progress = on_step;
    gp.user = tmg;
    uint8_t *rgb = malloc((size_t)S * (size_t)S * 3);
    int rc = CLI_OK;
    if (!rgb || cd_generate(ctx, s->tm, s->tae, &gp, rgb) != CD_OK) {
        cli_error("bench", "%s", rgb ? cd_ctx_error(ctx) : "out of memory");
        rc = CLI_RUNTIME;
    }
    free(rgb);
    return rc;
}

/* Row i of part 2 (res[0] < 0: dense skipped). */
static void tiny_print_row(const gen_opts *o, int i, const double res[2], double dec_s) {
    const int64_t S = o->tiny[i], G = S / 16;
    if (o->json) {
        printf("%s{\"size\": %lld, \"tokens\": %lld, \"dense_s_per_step\": %.4f, \"clear_s_per_step\": %.4f, "
               "\"decode_s\": %.4f}",
               i ? ", " : "", (long long)S, (long long)(G * G), res[0], res[1], dec_s);
        return;
    }
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

/* Part 2 at each size: dense (unless over --budget) and CLEAR generations. A failed generation
 * still prints its row, then ends the part. */
static int tiny_sizes(cd_ctx *ctx, const gen_opts *o, gen_state *s) {
    /* dense attention's cost per step: 3 layers x 4 N^2 x 128 FLOPs at ~100 GFLOP/s per thread */
    const double rate = 100e9 * cd_ctx_threads(ctx);
    if (!o->json) {
        printf("\ntiny model (hidden 128, 2 x 64, 1 + 2 blocks, T = 16) + narrow autoencoder (ch 16): the whole "
               "pipeline, %lld steps, CLEAR r = %lld\n",
               (long long)o->tiny_steps, (long long)o->radius);
        printf("%-10s %8s %12s %12s %9s %10s\n", "size", "tokens", "dense s/step", "CLEAR s/step", "speedup",
               "decode s");
    }
    int rc = CLI_OK;
    for (int i = 0; i < o->n2 && rc == CLI_OK; i++) {
        const int64_t S = o->tiny[i], G = S / 16, N = G * G + TINY_T;
        double res[2] = {-1, -1}, dec_s = -1;
        for (int mode = 0; mode < 2 && rc == CLI_OK; mode++) {
            if (mode == 0 && 3.0 * 4.0 * (double)N * (double)N * 128.0 / rate > o->budget) continue;
            timing tmg = {0, 0, 0, 0};
            rc = tiny_generate(ctx, o, s, S, mode ? o->radius : 0, &tmg);
            res[mode] = tmg.steps ? tmg.step_sum / tmg.steps : -1;
            dec_s = tmg.decode;
        }
        tiny_print_row(o, i, res, dec_s);
    }
    return rc;
}

/* Both parts, the JSON object around them. A failed setup ends the output where it stands. */
static int gen_run(cd_ctx *ctx, const gen_opts *o, gen_state *s) {
    int rc = CLI_OK;
    if (o->json) printf("{\"threads\": %d, \"flux_width\": [", cd_ctx_threads(ctx));
    if (o->n1) {
        if ((rc = width_setup(ctx, o, s))) return rc;
        rc = width_sizes(ctx, o, s);
    }
    if (o->json) printf("], \"tiny\": [");
    if (rc == CLI_OK && o->n2) {
        if ((rc = tiny_setup(ctx, s))) return rc;
        rc = tiny_sizes(ctx, o, s);
    }
    if (o->json) printf("]}\n");
    return rc;
}

int bench_generate(int argc, char **argv) {
    gen_opts o;
    int help = 0, rc = gen_parse(argc, argv, &o, &help);
    if (rc || help) return rc;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)o.threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error("bench", "cannot create a context");
        return CLI_RUNTIME;
    }
    gen_state s = {0};
    rc = gen_run(ctx, &o, &s);
    gen_free(&s);
    cd_ctx_free(ctx);
    return rc;
}
