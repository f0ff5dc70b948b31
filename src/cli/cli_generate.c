/* cli_generate.c — `cleardit generate`: text-to-image with a FLUX transformer and the FLUX
 * autoencoder's decoder, from precomputed prompt embeddings (txt [T, ctx], pooled [P]). Validates
 * every input before sampling; the PNG is written atomically with the parameters in a text chunk.
 * A thin layer over cd_generate (src/pipeline/generate.h). */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../pipeline/generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *k_usage =
    "usage: cleardit generate --model CKPT --ae AE.safetensors --prompt-embeds EMB.safetensors\n"
    "                         --width PX --height PX -o OUT.png [--steps N] [--guidance G]\n"
    "                         [--seed S] [--attention dense|clear] [--radius R] [--down D]\n"
    "                         [--clear-weights FILE] [--rope-axes A,B,C] [--rope-theta X]\n"
    "                         [--threads N] [--quiet]\n"
    "\n"
    "Text-to-image: seeded Gaussian noise, N Euler steps of the FLUX transformer over the\n"
    "flow-matching schedule (resolution shift on for guidance-embedded, dev-like models, off for\n"
    "schnell-like ones), decoded by the autoencoder. The same inputs and seed give the same pixels\n"
    "for any --threads. (img2img and upscaling are not available yet.)\n"
    "\n"
    "EMB holds txt [T, context_dim] (T5) and pooled [pooled_dim] (CLIP), any float dtype.\n"
    "\n"
    "options:\n"
    "  --model PATH          transformer checkpoint (file, sharded index or directory)\n"
    "  --ae PATH             autoencoder checkpoint (BFL or diffusers names)\n"
    "  --prompt-embeds PATH  prompt embeddings\n"
    "  --width PX            image width, a multiple of 16\n"
    "  --height PX           image height, a multiple of 16\n"
    "  -o, --out PATH        output PNG (written atomically)\n"
    "  --steps N             sampling steps (default 4 for schnell-like, 28 for dev-like models)\n"
    "  --guidance G          distilled guidance of dev-like models (default 3.5)\n"
    "  --seed S              noise seed (default 0)\n"
    "  --attention MODE      dense (default) or clear (default when --radius is given)\n"
    "  --radius R            CLEAR radius in tokens (>= 1)\n"
    "  --down D              pooled keys (needs CLEAR weights with spatial_weight of side D)\n"
    "  --clear-weights FILE  CLEAR attention weights overwriting the trained projections\n"
    "  --rope-axes A,B,C     RoPE axes when neither config.json nor metadata has them\n"
    "  --rope-theta X        RoPE theta in that case (default 10000)\n"
    "  --threads N           threads (default: all cores)\n"
    "  --quiet               print nothing on success\n"
    "  -h, --help            show this help\n"
    "\n"
    "Progress goes to stderr: a live bar on a terminal, a line per step otherwise.\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input.\n";

#define CMD "generate"

typedef struct {
    int tty;
    double last_print;
} progress_state;

static void on_progress(void *user, int step, int steps, double el) {
    progress_state *ps = user;
    if (step > steps) { /* decoded */
        if (ps->tty) fputc('\n', stderr);
        fprintf(stderr, "cleardit generate: decoded, %.2f s total\n", el);
        return;
    }
    const double ips = el > 0 ? step / el : 0, eta = ips > 0 ? (steps - step) / ips : 0;
    if (ps->tty) {
        const int width = 30, fill = (int)((double)width * step / steps);
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%s] step %d/%d  %.2f it/s  ETA %.1f s ", bar, step, steps, ips, eta);
    } else {
        fprintf(stderr, "cleardit generate: step %d/%d, %.2f it/s, ETA %.1f s\n", step, steps, ips, eta);
    }
    fflush(stderr);
}

/* Reads tensor `name` of f, which must be [d0, d1] (d1 > 0 = required width; a leading batch
 * dimension of 1 is allowed) or, with d1 == 0, [P] (or [1, P]) with P == want0 when want0 > 0. */
static int read_embed(cd_ctx *ctx, const cd_st_file *f, const char *path, const char *name, int rank,
                      int64_t want_last, int64_t *rows, float **out) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) {
        cli_error(CMD, "%s: missing tensor '%s'", path, name);
        return CLI_BAD_INPUT;
    }
    const int lead = t->ndim == rank + 1 && t->shape[0] == 1;
    if (t->ndim != rank && !lead) {
        cli_error(CMD, "%s: '%s' must have %d dimensions (got %d)", path, name, rank, (int)t->ndim);
        return CLI_BAD_INPUT;
    }
    const int64_t last = t->shape[t->ndim - 1];
    if (last != want_last) {
        cli_error(CMD, "%s: '%s' has width %lld, the model needs %lld", path, name, (long long)last,
                  (long long)want_last);
        return CLI_BAD_INPUT;
    }
    if (rows) *rows = rank == 2 ? t->shape[t->ndim - 2] : 1;
    const uint64_t n = cd_st_numel(t);
    *out = malloc((n ? n : 1) * sizeof(float));
    if (!*out) {
        cli_error(CMD, "out of memory reading '%s'", name);
        return CLI_RUNTIME;
    }
    if (cd_st_to_f32(ctx, t, *out) != CD_OK) {
        cli_error(CMD, "%s: tensor '%s': %s", path, name, cd_ctx_error(ctx));
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

int cmd_generate(int argc, char **argv) {
    const char *model_p = NULL, *ae_p = NULL, *emb_p = NULL, *out_p = NULL, *mode = NULL,
               *clear_p = NULL, *axes_s = NULL;
    int64_t width = 0, height = 0, steps = 0, seed = 0, radius = 0, down = 0, threads = 0;
    double guidance = 3.5, theta = 0;
    int quiet = 0, help = 0;
    cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &model_p, 0, 0, 0, 0, 0},
        {"--ae", CLI_OPT_STRING, &ae_p, 0, 0, 0, 0, 0},
        {"--prompt-embeds", CLI_OPT_STRING, &emb_p, 0, 0, 0, 0, 0},
        {"--width", CLI_OPT_INT, &width, 1, 65536, 0, 0, 0},
        {"--height", CLI_OPT_INT, &height, 1, 65536, 0, 0, 0},
        {"--out", CLI_OPT_STRING, &out_p, 0, 0, 0, 0, 0},
        {"--steps", CLI_OPT_INT, &steps, 1, 10000, 0, 0, 0},
        {"--guidance", CLI_OPT_FLOAT, &guidance, 0, 0, 0, 1000, 0},
        {"--seed", CLI_OPT_INT, &seed, 0, INT64_MAX, 0, 0, 0},
        {"--attention", CLI_OPT_STRING, &mode, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &radius, 1, 1 << 20, 0, 0, 0},
        {"--down", CLI_OPT_INT, &down, 2, 64, 0, 0, 0},
        {"--clear-weights", CLI_OPT_STRING, &clear_p, 0, 0, 0, 0, 0},
        {"--rope-axes", CLI_OPT_STRING, &axes_s, 0, 0, 0, 0, 0},
        {"--rope-theta", CLI_OPT_FLOAT, &theta, 0, 0, 1e-6, 1e12, 0},
        {"--threads", CLI_OPT_INT, &threads, 1, 4096, 0, 0, 0},
        {"--quiet", CLI_OPT_SWITCH, &quiet, 0, 0, 0, 0, 0},
    };
    /* "-o PATH" is "--out PATH" (the shared parser knows long flags only) */
    char **av = malloc(((size_t)argc + 1) * sizeof *av);
    if (!av) return CLI_RUNTIME;
    for (int i = 0; i < argc; i++) av[i] = !strcmp(argv[i], "-o") ? "--out" : argv[i];
    av[argc] = NULL;
    const int prc = cli_parse_flags(CMD, argc, av, opts, sizeof opts / sizeof opts[0], &help);
    free(av);
    if (prc) return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (!model_p || !ae_p || !emb_p || !out_p || !width || !height) {
        cli_error(CMD, "--model, --ae, --prompt-embeds, --width, --height and -o are required (see --help)");
        return CLI_BAD_INPUT;
    }
    if (width % 16 || height % 16) {
        cli_error(CMD, "--width and --height must be multiples of 16 (got %lldx%lld)", (long long)width,
                  (long long)height);
        return CLI_BAD_INPUT;
    }
    cd_flux_load_params lp = {{0, 0, 0}, theta, clear_p};
    int clear = 0;
    if (cli_attention_opts(CMD, mode, radius, down, axes_s, &clear, lp.rope_axes)) return CLI_BAD_INPUT;
    if (cli_check_output_path(CMD, out_p)) return CLI_BAD_INPUT;
    if (access(emb_p, R_OK) != 0 || access(ae_p, R_OK) != 0) {
        const char *bad = access(emb_p, R_OK) != 0 ? emb_p : ae_p;
        cli_error(CMD, "cannot read '%s'", bad);
        return CLI_BAD_INPUT;
    }

    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    cd_flux_model *m = NULL;
    cd_ae_decoder *ae = NULL;
    cd_st_file *ef = NULL;
    float *txt = NULL, *pooled = NULL;
    uint8_t *rgb = NULL;
    int rc = CLI_OK;
    cd_status st = cd_flux_load(ctx, model_p, &lp, &m);
    if (st != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = st == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
        goto done;
    }
    const cd_flux_config *c = cd_flux_model_config(m);
    if (cd_st_open(ctx, emb_p, &ef) != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = CLI_BAD_INPUT;
        goto done;
    }
    int64_t T = 0;
    if ((rc = read_embed(ctx, ef, emb_p, "txt", 2, c->context_dim, &T, &txt)) ||
        (rc = read_embed(ctx, ef, emb_p, "pooled", 1, c->pooled_dim, NULL, &pooled)))
        goto done;
    if (T > 65536) {
        cli_error(CMD, "%s: 'txt' has %lld tokens (at most 65536)", emb_p, (long long)T);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    st = cd_ae_decoder_load(ctx, ae_p, 0, &ae);
    if (st != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = st == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
        goto done;
    }
    if (!steps) steps = c->guidance ? 28 : 4;
    progress_state ps = {isatty(2), 0};
    cd_generate_params gp = {txt, (int32_t)T, pooled, (int32_t)width, (int32_t)height, (int32_t)steps,
                             (float)guidance, (uint64_t)seed, clear ? (int32_t)radius : 0, (int32_t)down, -1,
                             quiet ? NULL : on_progress, &ps};
    if (cd_generate_check(ctx, m, ae, &gp) != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = CLI_BAD_INPUT;
        goto done;
    }
    if (down && cd_flux_model_clear_down(m) != down) {
        cli_error(CMD, "--down %lld needs CLEAR weights with spatial_weight of side %lld (the model has %s)",
                  (long long)down, (long long)down, cd_flux_model_clear_down(m) ? "another side" : "none");
        rc = CLI_BAD_INPUT;
        goto done;
    }
    rgb = malloc((size_t)width * (size_t)height * 3);
    if (!rgb) {
        cli_error(CMD, "out of memory for the image");
        rc = CLI_RUNTIME;
        goto done;
    }
    st = cd_generate(ctx, m, ae, &gp, rgb);
    if (st != CD_OK) {
        if (ps.tty && !quiet) fputc('\n', stderr);
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = (st == CD_ERR_INVALID_ARG || st == CD_ERR_SHAPE) ? CLI_BAD_INPUT : CLI_RUNTIME;
        goto done;
    }
    {
        char summary[1024], att[64];
        if (clear && down) snprintf(att, sizeof att, "clear r=%lld down=%lld", (long long)radius, (long long)down);
        else if (clear) snprintf(att, sizeof att, "clear r=%lld", (long long)radius);
        else snprintf(att, sizeof att, "dense");
        char gbuf[48] = "";
        if (c->guidance) snprintf(gbuf, sizeof gbuf, " guidance=%g", guidance);
        snprintf(summary, sizeof summary, "seed=%lld steps=%lld size=%lldx%lld%s attention=%s model=%s",
                 (long long)seed, (long long)steps, (long long)width, (long long)height, gbuf, att, model_p);
        for (char *s = summary; *s; s++)
            if (*s == '\n' || *s == '\r') *s = ' ';
        const char *text[] = {"cleardit", summary, "Software", "cleardit " CLEARDIT_VERSION};
        if (cd_png_write(ctx, out_p, rgb, (uint32_t)width, (uint32_t)height, text, 2) != CD_OK) {
            cli_error(CMD, "%s", cd_ctx_error(ctx));
            rc = CLI_RUNTIME;
            goto done;
        }
        if (!quiet) fprintf(stderr, "cleardit generate: %s -> %s\n", summary, out_p);
    }
done:
    free(txt); free(pooled); free(rgb);
    cd_st_close(ef);
    cd_ae_decoder_free(ae);
    cd_flux_free(m);
    cd_ctx_free(ctx);
    return rc;
}
