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
#include <strings.h>
#include <unistd.h>

static const char *k_usage =
    "usage: cleardit generate [--model CKPT --ae AE.safetensors] (--prompt TEXT | --prompt-embeds EMB)\n"
    "                         -o OUT.png [--width PX --height PX] [--steps N] [--guidance G]\n"
    "                         [--seed S] [--attention dense|clear] [--radius R] [--down D]\n"
    "                         [--clear-weights FILE] [--init-image IMG | --upscale-from IMG]\n"
    "                         [--strength S] [--ntk-factor F] [--[no-]proportional-attention]\n"
    "                         [--time-shift X] [--ae-tile PX] [--ae-overlap F] [--ae-groups N]\n"
    "                         [--rope-axes A,B,C] [--rope-theta X] [--threads N] [--device cpu|cuda] [--quiet]\n"
    "                         [--parallel patch [--text-attention exact|approx] [--comm-timeout S]]\n"
    "\n"
    "Text-to-image: seeded Gaussian noise, N Euler steps of the FLUX transformer over the\n"
    "flow-matching schedule (resolution shift on for guidance-embedded, dev-like models, off for\n"
    "schnell-like ones), decoded by the autoencoder. The same inputs and seed give the same pixels\n"
    "for any --threads.\n"
    "\n"
    "Image-to-image (SDEdit): --init-image encodes IMG (a PNG of exactly --width x --height, which\n"
    "default to its size), re-noises it to --strength of the schedule and runs the remaining steps\n"
    "(int(N - N * strength) of the N steps are skipped, as diffusers' FluxImg2ImgPipeline).\n"
    "\n"
    "High resolution (the CLEAR paper's path): --upscale-from IMG resizes IMG (bicubic, as PIL) to\n"
    "--width x --height, then runs image-to-image there, by default with the reference settings:\n"
    "strength 0.7, NTK RoPE factor 10, proportional attention, static time shift 3. Use it with\n"
    "CLEAR attention (--radius) to keep the cost linear in the pixels.\n"
    "\n"
    "EMB holds txt [T, context_dim] (T5) and pooled [pooled_dim] (CLIP), any float dtype; see\n"
    "scripts/prompt_embeds.py.\n"
    "\n"
    "options:\n"
    "  --model PATH          transformer checkpoint (file, sharded index or directory); default:\n"
    "                        the Fashion-MNIST model this project trained (embedded; 28x28)\n"
    "  --ae PATH             autoencoder checkpoint (BFL or diffusers names); not for pixel-space\n"
    "                        models such as the default one\n"
    "  --prompt TEXT         a prompt of the model's built-in table (the default model: t-shirt,\n"
    "                        trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot)\n"
    "  --prompt-embeds PATH  prompt embeddings\n"
    "  --width PX            image width, a multiple of 16\n"
    "  --height PX           image height, a multiple of 16\n"
    "  -o, --out PATH        output PNG (written atomically)\n"
    "  --steps N             schedule steps (default 4 for schnell-like, 28 for dev-like models,\n"
    "                        32 for pixel-space models)\n"
    "  --guidance G          distilled guidance of dev-like models (default 3.5)\n"
    "  --seed S              noise seed (default 0)\n"
    "  --attention MODE      dense (default) or clear (default when --radius is given)\n"
    "  --radius R            CLEAR radius in tokens (>= 1)\n"
    "  --down D              pooled keys (needs CLEAR weights with spatial_weight of side D)\n"
    "  --clear-weights FILE  CLEAR attention weights overwriting the trained projections (the\n"
    "                        default model with --attention clear uses its own distilled ones and\n"
    "                        their radius)\n"
    "  --init-image IMG      image-to-image from this PNG\n"
    "  --upscale-from IMG    high-resolution image-to-image from this PNG, resized\n"
    "  --strength S          in (0, 1]: how much of the schedule runs (default 0.6 with\n"
    "                        --init-image, 0.7 with --upscale-from)\n"
    "  --ntk-factor F        RoPE theta x F (default 1; 10 with --upscale-from)\n"
    "  --proportional-attention, --no-proportional-attention\n"
    "                        softmax scale sqrt(log_4608(T + L) / head_dim) instead of\n"
    "                        1/sqrt(head_dim) (default off; on with --upscale-from)\n"
    "  --time-shift X        static schedule shift X instead of the resolution rule (default:\n"
    "                        the rule; 3 with --upscale-from)\n"
    "  --ae-tile PX          decode/encode in PX x PX tiles with blended overlaps when the image\n"
    "                        is larger (default 1024, as diffusers' tiling for FLUX; 0 = never;\n"
    "                        a multiple of 32: of 4 x 8 for overlap 0.25, 2 x 8 for 0.5)\n"
    "  --ae-overlap F        tile overlap fraction (default 0.25)\n"
    "  --ae-groups N         GroupNorm groups of the autoencoder (default 32, FLUX's)\n"
    "  --rope-axes A,B,C     RoPE axes when neither config.json nor metadata has them\n"
    "  --rope-theta X        RoPE theta in that case (default 10000)\n"
    "  --threads N           threads (default: all cores)\n"
    "  --parallel patch      split the image across the processes of an MPI job (mpirun -np P):\n"
    "                        rank i computes rows [i*H/P, (i+1)*H/P) of the image tokens, exchanging\n"
    "                        r-1 rows of keys/values with its neighbours per layer; CLEAR only; rank 0\n"
    "                        writes the image\n"
    "  --text-attention M    with --parallel: exact (log-sum-exp merge of every rank's partial softmax,\n"
    "                        the same image as one process; default) or approx (the paper's Eq. 7:\n"
    "                        per-rank text outputs averaged)\n"
    "  --comm-timeout S      with --parallel: seconds a rank waits for another before the job ends\n"
    "                        with an error naming it (default 300)\n"
    "  --device cpu|cuda     where the transformer runs (default cpu; cuda: an NVIDIA GPU, sm_80+, with\n"
    "                        BF16 weights and tensor-core attention; the autoencoder stays on the CPU)\n"
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

/* Loads the init / upscale image as planar [-1, 1] floats of width x height (resized when
 * `resize`), or prints why not. */
static int load_init(cd_ctx *ctx, const char *path, int resize, int64_t *width, int64_t *height, float **img) {
    uint8_t *rgb = NULL, *rs = NULL;
    uint32_t w = 0, h = 0;
    if (cd_png_read(ctx, path, &rgb, &w, &h) != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        return CLI_BAD_INPUT;
    }
    int rc = CLI_OK;
    if (!resize) {
        if (!*width) *width = w;
        if (!*height) *height = h;
        if ((int64_t)w != *width || (int64_t)h != *height) {
            cli_error(CMD, "--init-image %s is %ux%u, not the requested %lldx%lld (use --upscale-from to resize)",
                      path, w, h, (long long)*width, (long long)*height);
            rc = CLI_BAD_INPUT;
            goto done;
        }
        if (w % 16 || h % 16) {
            cli_error(CMD, "--init-image %s is %ux%u; image-to-image needs sides that are multiples of 16", path, w, h);
            rc = CLI_BAD_INPUT;
            goto done;
        }
    }
    const size_t n = (size_t)*width * (size_t)*height;
    if (resize && ((int64_t)w != *width || (int64_t)h != *height)) {
        rs = malloc(n * 3);
        if (!rs) {
            cli_error(CMD, "out of memory resizing %s", path);
            rc = CLI_RUNTIME;
            goto done;
        }
        if (cd_rgb8_resize(ctx, rgb, w, h, rs, (uint32_t)*width, (uint32_t)*height) != CD_OK) {
            cli_error(CMD, "%s: %s", path, cd_ctx_error(ctx));
            rc = CLI_RUNTIME;
            goto done;
        }
    }
    *img = malloc(n * 3 * sizeof(float));
    if (!*img) {
        cli_error(CMD, "out of memory for the init image");
        rc = CLI_RUNTIME;
        goto done;
    }
    cd_rgb8_to_image(rs ? rs : rgb, (uint32_t)*width, (uint32_t)*height, *img);
done:
    free(rgb);
    free(rs);
    return rc;
}

/* One-hot conditioning for a model with a built-in prompt table (metadata "cleardit_prompts",
 * comma-separated): txt [1, context_dim] and pooled [pooled_dim] select the prompt's index. */
static int prompt_condition(const cd_flux_model *m, const char *name, const char *prompt, float **txt, float **pooled) {
    const char *table = cd_flux_model_meta(m, "cleardit_prompts");
    const cd_flux_config *c = cd_flux_model_config(m);
    if (!table) {
        cli_error(CMD, "%s has no built-in prompts: use --prompt-embeds", name);
        return CLI_BAD_INPUT;
    }
    int idx = -1, k = 0;
    for (const char *s = table; *s; k++) {
        const char *e = strchr(s, ',');
        const size_t len = e ? (size_t)(e - s) : strlen(s);
        if (strlen(prompt) == len && !strncasecmp(prompt, s, len)) idx = k;
        s = e ? e + 1 : s + len;
    }
    if (idx < 0 || idx >= c->context_dim || idx >= c->pooled_dim) {
        cli_error(CMD, "unknown prompt '%s'; %s knows: %s", prompt, name, table);
        return CLI_BAD_INPUT;
    }
    *txt = calloc((size_t)c->context_dim, sizeof(float));
    *pooled = calloc((size_t)c->pooled_dim, sizeof(float));
    if (!*txt || !*pooled) {
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    (*txt)[idx] = (*pooled)[idx] = 1.0f;
    return CLI_OK;
}

static int load_error(cd_ctx *ctx, cd_status st) {
    const char *e = cd_ctx_error(ctx);
    cli_error(CMD, "%s%s", e, strstr(e, "GroupNorm") ? " (see --ae-groups)" : "");
    return st == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
}

int cmd_generate(int argc, char **argv) {
    const char *par_s = NULL, *text_s = NULL, *device_s = NULL, *model_p = NULL, *ae_p = NULL, *emb_p = NULL, *out_p = NULL, *mode = NULL,
               *clear_p = NULL, *axes_s = NULL, *init_p = NULL, *upscale_p = NULL, *prompt = NULL;
    int64_t width = 0, height = 0, steps = 0, seed = 0, radius = 0, down = 0, threads = 0,
            ae_tile = 1024, ae_groups = 32;
    double guidance = 3.5, theta = 0, strength = 0, ntk = 0, tshift = 0, overlap = 0.25, ctimeout = 300;
    int quiet = 0, help = 0, prop_on = 0, prop_off = 0;
    cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &model_p, 0, 0, 0, 0, 0},
        {"--ae", CLI_OPT_STRING, &ae_p, 0, 0, 0, 0, 0},
        {"--prompt-embeds", CLI_OPT_STRING, &emb_p, 0, 0, 0, 0, 0},
        {"--prompt", CLI_OPT_STRING, &prompt, 0, 0, 0, 0, 0},
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
        {"--init-image", CLI_OPT_STRING, &init_p, 0, 0, 0, 0, 0},
        {"--upscale-from", CLI_OPT_STRING, &upscale_p, 0, 0, 0, 0, 0},
        {"--strength", CLI_OPT_FLOAT, &strength, 0, 0, 1e-9, 1, 0},
        {"--ntk-factor", CLI_OPT_FLOAT, &ntk, 0, 0, 1e-6, 1e6, 0},
        {"--proportional-attention", CLI_OPT_SWITCH, &prop_on, 0, 0, 0, 0, 0},
        {"--no-proportional-attention", CLI_OPT_SWITCH, &prop_off, 0, 0, 0, 0, 0},
        {"--time-shift", CLI_OPT_FLOAT, &tshift, 0, 0, 1e-6, 1e6, 0},
        {"--ae-tile", CLI_OPT_INT, &ae_tile, 0, 65536, 0, 0, 0},
        {"--ae-overlap", CLI_OPT_FLOAT, &overlap, 0, 0, 0.01, 0.75, 0},
        {"--ae-groups", CLI_OPT_INT, &ae_groups, 1, 4096, 0, 0, 0},
        {"--rope-axes", CLI_OPT_STRING, &axes_s, 0, 0, 0, 0, 0},
        {"--rope-theta", CLI_OPT_FLOAT, &theta, 0, 0, 1e-6, 1e12, 0},
        {"--threads", CLI_OPT_INT, &threads, 1, 4096, 0, 0, 0},
        {"--device", CLI_OPT_STRING, &device_s, 0, 0, 0, 0, 0},
        {"--parallel", CLI_OPT_STRING, &par_s, 0, 0, 0, 0, 0},
        {"--text-attention", CLI_OPT_STRING, &text_s, 0, 0, 0, 0, 0},
        {"--comm-timeout", CLI_OPT_FLOAT, &ctimeout, 0, 0, 0.1, 1e6, 0},
        {"--quiet", CLI_OPT_SWITCH, &quiet, 0, 0, 0, 0, 0},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    const int prc = cli_parse_flags_o(CMD, argc, argv, opts, nopts, &help);
    if (prc) return prc;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    const int i2i = init_p || upscale_p;
    if (!out_p || (!emb_p && !prompt)) {
        cli_error(CMD, "-o and --prompt or --prompt-embeds are required (see --help)");
        return CLI_BAD_INPUT;
    }
    if (emb_p && prompt) {
        cli_error(CMD, "--prompt and --prompt-embeds exclude each other");
        return CLI_BAD_INPUT;
    }
    if (model_p && ae_p && !i2i && (!width || !height)) {
        cli_error(CMD, "--width and --height are required for a latent model (see --help)");
        return CLI_BAD_INPUT;
    }
    if (init_p && upscale_p) {
        cli_error(CMD, "--init-image and --upscale-from exclude each other");
        return CLI_BAD_INPUT;
    }
    if (upscale_p && (!width || !height)) {
        cli_error(CMD, "--upscale-from needs the target --width and --height");
        return CLI_BAD_INPUT;
    }
    if (!i2i && cli_find_opt(opts, nopts, "--strength")->seen) {
        cli_error(CMD, "--strength needs --init-image or --upscale-from");
        return CLI_BAD_INPUT;
    }
    if (prop_on && prop_off) {
        cli_error(CMD, "--proportional-attention and --no-proportional-attention exclude each other");
        return CLI_BAD_INPUT;
    }
    if ((width && width % 16) || (height && height % 16)) {
        cli_error(CMD, "--width and --height must be multiples of 16 (got %lldx%lld)", (long long)width,
                  (long long)height);
        return CLI_BAD_INPUT;
    }
    if (ae_tile && ae_tile % 32) {
        cli_error(CMD, "--ae-tile must be 0 or a multiple of 32 (got %lld)", (long long)ae_tile);
        return CLI_BAD_INPUT;
    }
    /* defaults: the reference high-resolution settings for --upscale-from */
    if (!strength) strength = upscale_p ? 0.7 : 0.6;
    if (!ntk) ntk = upscale_p ? 10.0 : 1.0;
    if (!tshift && upscale_p) tshift = 3.0;
    const int prop = prop_on || (upscale_p && !prop_off);
    /* the default model with CLEAR attention uses its own distilled weights and radius */
    char clear_path[64];
    if (!model_p && !clear_p && ((mode && !strcmp(mode, "clear")) || radius)) {
        int64_t r0 = 0, d0 = 0;
        if (cli_default_clear(clear_path, sizeof clear_path, &r0, &d0)) return CLI_RUNTIME;
        clear_p = clear_path;
        if (!radius) radius = r0;
        if (!down && d0 >= 2) down = d0;
    }
    cd_flux_load_params lp = {{0, 0, 0}, theta, clear_p};
    int clear = 0;
    if (cli_attention_opts(CMD, mode, radius, down, axes_s, &clear, lp.rope_axes)) return CLI_BAD_INPUT;
    if (cli_check_output_path(CMD, out_p)) return CLI_BAD_INPUT;
    if (par_s && !clear) {
        cli_error(CMD, "--parallel patch needs CLEAR attention (--attention clear / --radius R): with dense "
                  "attention every image token needs every key on every process");
        return CLI_BAD_INPUT;
    }
    if ((emb_p && access(emb_p, R_OK) != 0) || (ae_p && access(ae_p, R_OK) != 0)) {
        const char *bad = emb_p && access(emb_p, R_OK) != 0 ? emb_p : ae_p;
        cli_error(CMD, "cannot read '%s'", bad);
        return CLI_BAD_INPUT;
    }
    char default_path[64];
    if (!model_p) { /* the model this project trained, embedded in the binary */
        if (cli_default_model(default_path, sizeof default_path)) return CLI_RUNTIME;
        model_p = default_path;
    }

    int dev = 0, text_mode = 0;
    if (cli_parse_device(CMD, device_s, &dev)) return CLI_BAD_INPUT;
    if (cli_parse_parallel(CMD, par_s, text_s, &text_mode)) return CLI_BAD_INPUT;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)threads;
    cd_ctx *ctx = NULL;
    int rc = CLI_OK;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    cd_comm *comm = NULL; /* --parallel patch: MPI's world */
    int rank = 0;
    if (par_s && (rc = cli_parallel_start(CMD, ctx, argc, argv, ctimeout, &comm))) {
        cd_ctx_free(ctx);
        return rc;
    }
    if (comm && (rank = cd_comm_rank(comm)) != 0) quiet = 1; /* rank 0 speaks and writes */
    cd_flux_model *m = NULL;
    cd_ae_decoder *ae = NULL;
    cd_ae_encoder *enc = NULL;
    cd_st_file *ef = NULL;
    float *txt = NULL, *pooled = NULL, *init = NULL;
    uint8_t *rgb = NULL;
    cd_status st;
    /* cheap checks first: the init image and the embeddings, before the model loads */
    if (i2i && (rc = load_init(ctx, init_p ? init_p : upscale_p, upscale_p != NULL, &width, &height, &init)))
        goto done;
    if (comm && dev == CD_DEVICE_CUDA) cli_pick_gpu();
    if ((rc = cli_open_device(CMD, ctx, dev))) goto done;
    if ((st = cd_flux_load(ctx, model_p, &lp, &m)) != CD_OK ||
        (st = cd_flux_set_device(ctx, m, (cd_device)dev)) != CD_OK ||
        (comm && (st = cd_flux_set_parallel(ctx, m, comm, (cd_text_attention)text_mode)) != CD_OK)) {
        rc = load_error(ctx, st);
        goto done;
    }
    const cd_flux_config *c = cd_flux_model_config(m);
    const char *pixel = cd_flux_model_meta(m, "cleardit_image");
    if (!ae_p && !pixel) {
        cli_error(CMD, "--ae is required: %s is a latent-space model", model_p == default_path ? "the default model" : model_p);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    if (!ae_p) { /* pixel space: the model's native size unless asked otherwise */
        int pw = 0, ph = 0;
        if (sscanf(pixel, "%dx%d", &pw, &ph) != 2 || pw < 2 || ph < 2) pw = ph = 0;
        if (!width) width = pw;
        if (!height) height = ph;
        if (!width || !height || width % 2 || height % 2) {
            cli_error(CMD, "pixel-space model: --width and --height must be even (got %lldx%lld)", (long long)width,
                      (long long)height);
            rc = CLI_BAD_INPUT;
            goto done;
        }
        if (i2i) {
            cli_error(CMD, "--init-image and --upscale-from need a latent model with --ae");
            rc = CLI_BAD_INPUT;
            goto done;
        }
    }
    int64_t T = 0;
    if (prompt) {
        if ((rc = prompt_condition(m, model_p == default_path ? "the default model" : model_p, prompt, &txt, &pooled)))
            goto done;
        T = 1;
    } else {
        if (cd_st_open(ctx, emb_p, &ef) != CD_OK) {
            cli_error(CMD, "%s", cd_ctx_error(ctx));
            rc = CLI_BAD_INPUT;
            goto done;
        }
        if ((rc = read_embed(ctx, ef, emb_p, "txt", 2, c->context_dim, &T, &txt)) ||
            (rc = read_embed(ctx, ef, emb_p, "pooled", 1, c->pooled_dim, NULL, &pooled)))
            goto done;
    }
    if (T > 65536) {
        cli_error(CMD, "%s: 'txt' has %lld tokens (at most 65536)", emb_p, (long long)T);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    if (ae_p && ((st = cd_ae_decoder_load(ctx, ae_p, (int)ae_groups, &ae)) != CD_OK ||
                 (i2i && (st = cd_ae_encoder_load(ctx, ae_p, (int)ae_groups, &enc)) != CD_OK))) {
        rc = load_error(ctx, st);
        goto done;
    }
    if (!steps) steps = pixel ? 32 : c->guidance ? 28 : 4;
    progress_state ps = {isatty(2), 0};
    cd_generate_params gp = {0};
    gp.txt = txt;
    gp.T = (int32_t)T;
    gp.pooled = pooled;
    gp.width = (int32_t)width;
    gp.height = (int32_t)height;
    gp.steps = (int32_t)steps;
    gp.guidance = (float)guidance;
    gp.seed = (uint64_t)seed;
    gp.radius = clear ? (int32_t)radius : 0;
    gp.down = (int32_t)down;
    gp.shift = -1;
    gp.time_shift = tshift;
    gp.enc = enc;
    gp.init = init;
    gp.strength = strength;
    gp.rope_ntk = ntk;
    gp.proportional = prop;
    gp.ae_tile = (int32_t)ae_tile;
    gp.ae_overlap = (float)overlap;
    gp.progress = quiet ? NULL : on_progress;
    gp.user = &ps;
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
    if (i2i && !quiet)
        fprintf(stderr, "cleardit generate: %s: %d of %lld steps at strength %g\n",
                upscale_p ? "upscale" : "image-to-image", cd_generate_steps_run(&gp), (long long)steps, strength);
    /* ranks other than 0 stop at the latent: only rank 0 decodes and writes (the latent is at
     * most 3 values per pixel: z <= 3 x upscale^2 for every autoencoder and pixel model) */
    float *lat_only = rank != 0 ? malloc((size_t)width * (size_t)height * 3 * sizeof(float)) : NULL;
    if (rank != 0) gp.latent = lat_only;
    st = rank != 0 && !lat_only ? cd_set_error(ctx, CD_ERR_OOM, "out of memory")
                                : cd_generate(ctx, m, ae, &gp, rank == 0 ? rgb : NULL);
    free(lat_only);
    if (st != CD_OK) {
        if (ps.tty && !quiet) fputc('\n', stderr);
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = (st == CD_ERR_INVALID_ARG || st == CD_ERR_SHAPE) ? CLI_BAD_INPUT : CLI_RUNTIME;
        goto done;
    }
    {
        char summary[2048], att[64], extra[1400] = "";
        if (clear && down) snprintf(att, sizeof att, "clear r=%lld down=%lld", (long long)radius, (long long)down);
        else if (clear) snprintf(att, sizeof att, "clear r=%lld", (long long)radius);
        else snprintf(att, sizeof att, "dense");
        char gbuf[48] = "";
        if (c->guidance) snprintf(gbuf, sizeof gbuf, " guidance=%g", guidance);
        size_t e = 0;
        if (i2i)
            e += (size_t)snprintf(extra + e, sizeof extra - e, " %s=%s strength=%g",
                                  upscale_p ? "upscale_from" : "init_image", upscale_p ? upscale_p : init_p, strength);
        if (ntk != 1.0 && e < sizeof extra) e += (size_t)snprintf(extra + e, sizeof extra - e, " ntk_factor=%g", ntk);
        if (prop && e < sizeof extra) e += (size_t)snprintf(extra + e, sizeof extra - e, " proportional_attention=1");
        if (tshift > 0 && e < sizeof extra) e += (size_t)snprintf(extra + e, sizeof extra - e, " time_shift=%g", tshift);
        if (comm && e < sizeof extra)
            snprintf(extra + e, sizeof extra - e, " parallel=patch/%d text_attention=%s", cd_comm_size(comm),
                     text_mode == CD_TEXT_APPROX ? "approx" : "exact");
        char pbuf[160] = "";
        if (prompt) snprintf(pbuf, sizeof pbuf, " prompt=%s", prompt);
        snprintf(summary, sizeof summary, "seed=%lld steps=%lld size=%lldx%lld%s%s attention=%s%s model=%s",
                 (long long)seed, (long long)steps, (long long)width, (long long)height, pbuf, gbuf, att, extra,
                 model_p == default_path ? "(default)" : model_p);
        for (char *s = summary; *s; s++)
            if (*s == '\n' || *s == '\r') *s = ' ';
        const char *text[] = {"cleardit", summary, "Software", "cleardit " CLEARDIT_VERSION};
        if (rank == 0 && cd_png_write(ctx, out_p, rgb, (uint32_t)width, (uint32_t)height, text, 2) != CD_OK) {
            cli_error(CMD, "%s", cd_ctx_error(ctx));
            rc = CLI_RUNTIME;
            goto done;
        }
        if (!quiet) fprintf(stderr, "cleardit generate: %s -> %s\n", summary, out_p);
    }
done:
    free(txt); free(pooled); free(rgb); free(init);
    cd_st_close(ef);
    cd_ae_decoder_free(ae);
    cd_ae_encoder_free(enc);
    cd_flux_free(m);
    cli_parallel_end(comm, rc); /* on an error: ends the whole job, no rank left waiting */
    cd_ctx_free(ctx);
    return rc;
}
