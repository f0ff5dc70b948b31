/* cli_generate.c — `cleardit generate`: text-to-image with a FLUX transformer and the FLUX
 * autoencoder's decoder, from precomputed prompt embeddings (txt [T, ctx], pooled [P]) or a prompt
 * of the model's built-in table. Validates every input before sampling; the PNG is written
 * atomically with the parameters in a text chunk. Argument parsing over the public pipeline
 * (cd_pipeline_open / cd_pipeline_generate, include/cleardit.h). */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "cli_encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *k_usage =
    "usage: cleardit generate [--model PATH [--ae AE.safetensors]] (--prompt TEXT | --prompt-embeds EMB)\n"
    "                         -o OUT.png [--width PX --height PX] [--steps N] [--guidance G]\n"
    "                         [--seed S] [--attention dense|clear] [--radius R] [--down D]\n"
    "                         [--clear-weights FILE] [--init-image IMG | --upscale-from IMG]\n"
    "                         [--strength S] [--ntk-factor F] [--[no-]proportional-attention]\n"
    "                         [--time-shift X] [--ae-tile PX] [--ae-overlap F] [--ae-groups N]\n"
    "                         [--rope-axes A,B,C] [--rope-theta X] [--threads N] [--device cpu|cuda] [--quiet]\n"
    "                         [--parallel patch [--text-attention exact|approx] [--comm-timeout S]]\n"
    "                         [--t5 PATH --clip PATH] [--t5-tokenizer PATH] [--clip-tokenizer PATH]\n"
    "                         [--tokenizer-semantics sentencepiece|diffusers] [--max-length L] [--cache DIR]\n"
    "\n"
    "A FLUX model's --prompt runs the native T5 and CLIP encoders first (as `cleardit encode`; they are\n"
    "freed before the transformer runs): give a diffusers FLUX folder as --model, or ComfyUI's single\n"
    "files with --t5 and --clip.\n"
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
    "  --model PATH          a diffusers FLUX folder (model_index.json: transformer/, vae/ and the text\n"
    "                        encoders), or a transformer checkpoint (file, sharded index or directory);\n"
    "                        default: the Fashion-MNIST model this project trained (embedded; 28x28)\n"
    "  --ae PATH             autoencoder checkpoint (BFL or diffusers names; default: the FLUX folder's\n"
    "                        vae/); not for pixel-space models such as the default one\n"
    "  --prompt TEXT         for a FLUX model, the prompt (encoded natively: see --t5 below); for a\n"
    "                        model with a built-in table, one of its entries (the default model: t-shirt,\n"
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
    "\n"
    "text encoders (FLUX models with --prompt; see `cleardit encode --help`):\n" ENCODER_FILES_HELP
    "  --cache DIR           reuse/store prompt embeddings in DIR (the same prompt never runs T5 twice)\n"
    "\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input.\n";

#define CMD "generate"

/* The flags, as parsed, and what the checks derive from them. */
typedef struct {
    const char *par_s, *text_s, *device_s, *model_p, *ae_p, *emb_p, *out_p, *mode, *clear_p, *axes_s, *init_p,
        *upscale_p, *prompt, *cache;
    cli_encoder_flags ef; /* the text encoders (FLUX models with --prompt) */
    int64_t width, height, steps, seed, radius, down, threads, ae_tile, ae_groups;
    double guidance, theta, strength, ntk, tshift, overlap, ctimeout;
    int quiet, help, prop_on, prop_off, strength_seen;
    int clear, embedded_clear, dev, text_mode, rope_axes[3];
} gen_args;

typedef struct {
    int tty;
    double last_print;
} progress_state;

static int on_progress(void *user, int step, int steps, double el) {
    progress_state *ps = user;
    if (step > steps) { /* decoded */
        if (ps->tty) fputc('\n', stderr);
        fprintf(stderr, "cleardit generate: decoded, %.2f s total\n", el);
        return 0;
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
    return 0;
}

static int read_embed(cd_ctx *ctx, const cd_st_file *f, const char *path, const char *name, int rank, int64_t want_last,
                      int64_t *rows, float **out) {
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

/* Reads the init / upscale image (8-bit RGB, *rgb malloc'd) and checks its size against the
 * request (an init image sets the size when none is given), or prints why not. */
static int load_init(cd_ctx *ctx, const char *path, int resize, int64_t *width, int64_t *height, uint8_t **rgb,
                     uint32_t *w, uint32_t *h) {
    if (cd_png_read(ctx, path, rgb, w, h) != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        return CLI_BAD_INPUT;
    }
    if (resize) return CLI_OK; /* resized to the target by the library */
    if (!*width) *width = *w;
    if (!*height) *height = *h;
    if ((int64_t)*w != *width || (int64_t)*h != *height) {
        cli_error(CMD, "--init-image %s is %ux%u, not the requested %lldx%lld (use --upscale-from to resize)", path, *w,
                  *h, (long long)*width, (long long)*height);
        return CLI_BAD_INPUT;
    }
    if (*w % 16 || *h % 16) {
        cli_error(CMD, "--init-image %s is %ux%u; image-to-image needs sides that are multiples of 16", path, *w, *h);
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

static int load_error(cd_ctx *ctx, cd_status st) {
    const char *e = cd_ctx_error(ctx);
    cli_error(CMD, "%s%s", e, strstr(e, "GroupNorm") ? " (see --ae-groups)" : "");
    return st == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
}

/* Parses argv into a (defaults first). Returns a CLI code; a->help when --help was given. */
static int parse_args(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->ae_tile = 1024;
    a->ae_groups = 32;
    a->guidance = 3.5;
    a->overlap = 0.25;
    a->ctimeout = 300;
    cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &a->model_p, 0, 0, 0, 0, 0},
        {"--ae", CLI_OPT_STRING, &a->ae_p, 0, 0, 0, 0, 0},
        {"--prompt-embeds", CLI_OPT_STRING, &a->emb_p, 0, 0, 0, 0, 0},
        {"--prompt", CLI_OPT_TEXT, &a->prompt, 0, 0, 0, 0, 0},
        {"--width", CLI_OPT_INT, &a->width, 1, 65536, 0, 0, 0},
        {"--height", CLI_OPT_INT, &a->height, 1, 65536, 0, 0, 0},
        {"--out", CLI_OPT_STRING, &a->out_p, 0, 0, 0, 0, 0},
        {"--steps", CLI_OPT_INT, &a->steps, 1, 10000, 0, 0, 0},
        {"--guidance", CLI_OPT_FLOAT, &a->guidance, 0, 0, 0, 1000, 0},
        {"--seed", CLI_OPT_INT, &a->seed, 0, INT64_MAX, 0, 0, 0},
        {"--attention", CLI_OPT_STRING, &a->mode, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &a->radius, 1, 1 << 20, 0, 0, 0},
        {"--down", CLI_OPT_INT, &a->down, 2, 64, 0, 0, 0},
        {"--clear-weights", CLI_OPT_STRING, &a->clear_p, 0, 0, 0, 0, 0},
        {"--init-image", CLI_OPT_STRING, &a->init_p, 0, 0, 0, 0, 0},
        {"--upscale-from", CLI_OPT_STRING, &a->upscale_p, 0, 0, 0, 0, 0},
        {"--strength", CLI_OPT_FLOAT, &a->strength, 0, 0, 1e-9, 1, 0},
        {"--ntk-factor", CLI_OPT_FLOAT, &a->ntk, 0, 0, 1e-6, 1e6, 0},
        {"--proportional-attention", CLI_OPT_SWITCH, &a->prop_on, 0, 0, 0, 0, 0},
        {"--no-proportional-attention", CLI_OPT_SWITCH, &a->prop_off, 0, 0, 0, 0, 0},
        {"--time-shift", CLI_OPT_FLOAT, &a->tshift, 0, 0, 1e-6, 1e6, 0},
        {"--ae-tile", CLI_OPT_INT, &a->ae_tile, 0, 65536, 0, 0, 0},
        {"--ae-overlap", CLI_OPT_FLOAT, &a->overlap, 0, 0, 0.01, 0.75, 0},
        {"--ae-groups", CLI_OPT_INT, &a->ae_groups, 1, 4096, 0, 0, 0},
        {"--rope-axes", CLI_OPT_STRING, &a->axes_s, 0, 0, 0, 0, 0},
        {"--rope-theta", CLI_OPT_FLOAT, &a->theta, 0, 0, 1e-6, 1e12, 0},
        {"--threads", CLI_OPT_INT, &a->threads, 1, 4096, 0, 0, 0},
        {"--device", CLI_OPT_STRING, &a->device_s, 0, 0, 0, 0, 0},
        {"--parallel", CLI_OPT_STRING, &a->par_s, 0, 0, 0, 0, 0},
        {"--text-attention", CLI_OPT_STRING, &a->text_s, 0, 0, 0, 0, 0},
        {"--comm-timeout", CLI_OPT_FLOAT, &a->ctimeout, 0, 0, 0.1, 1e6, 0},
        {"--quiet", CLI_OPT_SWITCH, &a->quiet, 0, 0, 0, 0, 0},
        {"--cache", CLI_OPT_STRING, &a->cache, 0, 0, 0, 0, 0},
        ENCODER_FILE_OPTS(a->ef),
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    const int prc = cli_parse_flags_o(CMD, argc, argv, opts, nopts, &a->help);
    a->strength_seen = cli_find_opt(opts, nopts, "--strength")->seen;
    return prc;
}

/* A diffusers FLUX pipeline folder (its model_index.json), as opposed to a transformer checkpoint. */
static int is_flux_root(const char *p) {
    char buf[4096];
    return p && snprintf(buf, sizeof buf, "%s/model_index.json", p) < (int)sizeof buf && access(buf, R_OK) == 0;
}

/* The flag combinations, before anything is loaded. Prints the error; returns a CLI code. */
static int check_args(cd_ctx *ctx, gen_args *a) {
    const int i2i = a->init_p || a->upscale_p;
    const char *bad = NULL;
    if (!a->out_p || (!a->emb_p && !a->prompt))
        bad = "-o and --prompt or --prompt-embeds are required (see --help)";
    else if (a->emb_p && a->prompt)
        bad = "--prompt and --prompt-embeds exclude each other";
    else if (a->ef.sem_s && strcmp(a->ef.sem_s, "sentencepiece") && strcmp(a->ef.sem_s, "diffusers"))
        bad = "--tokenizer-semantics must be sentencepiece or diffusers";
    else if (a->emb_p && (cli_encoder_given(&a->ef) || a->cache))
        bad = "the text-encoder flags (--t5, --clip, --cache, ...) go with --prompt, not --prompt-embeds";
    else if (a->model_p && (a->ae_p || is_flux_root(a->model_p)) && !i2i && (!a->width || !a->height))
        bad = "--width and --height are required for a latent model (see --help)";
    else if (a->init_p && a->upscale_p)
        bad = "--init-image and --upscale-from exclude each other";
    else if (a->upscale_p && (!a->width || !a->height))
        bad = "--upscale-from needs the target --width and --height";
    else if (!i2i && a->strength_seen)
        bad = "--strength needs --init-image or --upscale-from";
    else if (a->prop_on && a->prop_off)
        bad = "--proportional-attention and --no-proportional-attention exclude each other";
    if (bad) {
        cli_error(CMD, "%s", bad);
        return CLI_BAD_INPUT;
    }
    if ((a->width && a->width % 16) || (a->height && a->height % 16)) {
        cli_error(CMD, "--width and --height must be multiples of 16 (got %lldx%lld)", (long long)a->width,
                  (long long)a->height);
        return CLI_BAD_INPUT;
    }
    if (a->ae_tile && a->ae_tile % 32) {
        cli_error(CMD, "--ae-tile must be 0 or a multiple of 32 (got %lld)", (long long)a->ae_tile);
        return CLI_BAD_INPUT;
    }
    /* the default model with CLEAR attention uses its own distilled weights and radius */
    if (!a->model_p && !a->clear_p && ((a->mode && !strcmp(a->mode, "clear")) || a->radius)) {
        int32_t r0 = 0, d0 = 0;
        if (!cd_embedded_available(CD_EMBEDDED_CLEAR)) {
            cli_error(CMD, "this build has no CLEAR weights for the default model (models/fmnist_clear.safetensors "
                           "was missing at build time): pass --clear-weights and --radius");
            return CLI_RUNTIME;
        }
        if (cd_embedded_clear_attention(ctx, &r0, &d0) != CD_OK) {
            cli_error(CMD, "%s", cd_ctx_error(ctx));
            return CLI_RUNTIME;
        }
        a->embedded_clear = 1;
        if (!a->radius) a->radius = r0;
        if (!a->down && d0 >= 2) a->down = d0;
    }
    if (cli_attention_opts(CMD, a->mode, a->radius, a->down, a->axes_s, &a->clear, a->rope_axes)) return CLI_BAD_INPUT;
    if (cli_check_output_path(CMD, a->out_p)) return CLI_BAD_INPUT;
    if (a->par_s && !a->clear) {
        cli_error(CMD, "--parallel patch needs CLEAR attention (--attention clear / --radius R): with dense "
                       "attention every image token needs every key on every process");
        return CLI_BAD_INPUT;
    }
    if ((a->emb_p && access(a->emb_p, R_OK) != 0) || (a->ae_p && access(a->ae_p, R_OK) != 0)) {
        cli_error(CMD, "cannot read '%s'", a->emb_p && access(a->emb_p, R_OK) != 0 ? a->emb_p : a->ae_p);
        return CLI_BAD_INPUT;
    }
    if (!a->model_p && !cd_embedded_available(CD_EMBEDDED_MODEL)) {
        cli_error(CMD, "this build has no default model (models/fmnist.safetensors was missing at build time): pass "
                       "--model");
        return CLI_RUNTIME;
    }
    if (cli_parse_device(CMD, a->device_s, &a->dev)) return CLI_BAD_INPUT;
    if (cli_parse_parallel(CMD, a->par_s, a->text_s, &a->text_mode)) return CLI_BAD_INPUT;
    return CLI_OK;
}

/* A FLUX model's prompt through the native encoders (cached with --cache); the encoders are freed
 * before the transformer runs. */
static int encode_prompt(cd_ctx *ctx, const cd_pipeline *pl, const gen_args *a, cd_gen_params *gp, float **txt,
                         float **pooled) {
    const cd_flux_config *c = cd_flux_model_config(cd_pipeline_model(pl));
    cli_encoder_flags f = a->ef;
    f.model = is_flux_root(a->model_p) ? a->model_p : NULL;
    if (!f.model && (!f.t5 || !f.clip)) {
        cli_error(CMD,
                  "%s has no built-in prompts: give a diffusers FLUX folder as --model, or --t5 and --clip "
                  "(or use --prompt-embeds)",
                  a->model_p ? a->model_p : "the model");
        return CLI_BAD_INPUT;
    }
    cli_encoded r;
    int rc = cli_encode_prompt(CMD, ctx, &f, a->prompt, c->guidance ? 512 : 256, a->cache, 0, a->quiet, &r);
    if (rc) return rc;
    if (r.D != c->context_dim || r.P != c->pooled_dim) {
        cli_error(CMD, "the encoders give txt width %d and pooled width %d; the transformer needs %d and %d", (int)r.D,
                  (int)r.P, (int)c->context_dim, (int)c->pooled_dim);
        cli_encoded_free(&r);
        return CLI_BAD_INPUT;
    }
    *txt = r.txt;
    *pooled = r.pooled;
    gp->txt = r.txt;
    gp->T = r.L;
    gp->pooled = r.pooled;
    r.txt = r.pooled = NULL;
    cli_encoded_free(&r);
    return CLI_OK;
}

/* The model's conditioning and size: a prompt of its table or the embeddings file; a pixel-space
 * model's native size. Fills gp; *txt / *pooled / *ef are the caller's to free. */
static int condition(cd_ctx *ctx, const cd_pipeline *pl, const gen_args *a, cd_gen_params *gp, float **txt,
                     float **pooled, cd_st_file **ef) {
    const char *name = a->model_p ? a->model_p : "the default model";
    int32_t nw, nh;
    const int pixel = cd_pipeline_native_size(pl, &nw, &nh), has_ae = cd_pipeline_has_ae(pl);
    if (!has_ae && !pixel) {
        cli_error(CMD, "--ae is required: %s is a latent-space model", name);
        return CLI_BAD_INPUT;
    }
    cd_pipeline_resolve(pl, gp); /* the native size, the model's steps, the img2img defaults */
    if (!has_ae && (!gp->width || !gp->height || gp->width % 2 || gp->height % 2)) {
        cli_error(CMD, "pixel-space model: --width and --height must be even (got %lldx%lld)", (long long)gp->width,
                  (long long)gp->height);
        return CLI_BAD_INPUT;
    }
    if (!has_ae && (a->init_p || a->upscale_p)) {
        cli_error(CMD, "--init-image and --upscale-from need a latent model with --ae");
        return CLI_BAD_INPUT;
    }
    if (a->prompt && !cd_pipeline_prompt_table(pl)) return encode_prompt(ctx, pl, a, gp, txt, pooled);
    if (a->prompt) {
        if (cli_encoder_given(&a->ef) || a->cache) {
            cli_error(CMD, "%s conditions on its built-in prompts: the text-encoder flags do not apply", name);
            return CLI_BAD_INPUT;
        }
        if (cd_pipeline_prompt_find(pl, a->prompt) < 0) {
            cli_error(CMD, "unknown prompt '%s'; %s knows: %s", a->prompt, name, cd_pipeline_prompt_table(pl));
            return CLI_BAD_INPUT;
        }
        gp->prompt = a->prompt;
        return CLI_OK;
    }
    const cd_flux_config *c = cd_flux_model_config(cd_pipeline_model(pl));
    int64_t T = 0;
    int rc;
    if (cd_st_open(ctx, a->emb_p, ef) != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        return CLI_BAD_INPUT;
    }
    if ((rc = read_embed(ctx, *ef, a->emb_p, "txt", 2, c->context_dim, &T, txt)) ||
        (rc = read_embed(ctx, *ef, a->emb_p, "pooled", 1, c->pooled_dim, NULL, pooled)))
        return rc;
    if (T > 65536) {
        cli_error(CMD, "%s: 'txt' has %lld tokens (at most 65536)", a->emb_p, (long long)T);
        return CLI_BAD_INPUT;
    }
    gp->txt = *txt;
    gp->T = (int32_t)T;
    gp->pooled = *pooled;
    return CLI_OK;
}

/* The parameters as a one-line summary (the PNG's text chunk and the last stderr line). */
static void summarize(const gen_args *a, const cd_pipeline *pl, const cd_gen_params *gp, int nranks, char *summary,
                      size_t n) {
    char att[64], extra[1400] = "", gbuf[48] = "", pbuf[160] = "";
    if (a->clear && a->down)
        snprintf(att, sizeof att, "clear r=%lld down=%lld", (long long)a->radius, (long long)a->down);
    else if (a->clear)
        snprintf(att, sizeof att, "clear r=%lld", (long long)a->radius);
    else
        snprintf(att, sizeof att, "dense");
    if (cd_flux_model_config(cd_pipeline_model(pl))->guidance) snprintf(gbuf, sizeof gbuf, " guidance=%g", a->guidance);
    size_t e = 0;
    if (a->init_p || a->upscale_p)
        e += (size_t)snprintf(extra + e, sizeof extra - e, " %s=%s strength=%g",
                              a->upscale_p ? "upscale_from" : "init_image", a->upscale_p ? a->upscale_p : a->init_p,
                              gp->strength);
    if (gp->rope_ntk != 1.0 && e < sizeof extra)
        e += (size_t)snprintf(extra + e, sizeof extra - e, " ntk_factor=%g", gp->rope_ntk);
    if (gp->proportional && e < sizeof extra)
        e += (size_t)snprintf(extra + e, sizeof extra - e, " proportional_attention=1");
    if (gp->time_shift > 0 && e < sizeof extra)
        e += (size_t)snprintf(extra + e, sizeof extra - e, " time_shift=%g", gp->time_shift);
    if (nranks && e < sizeof extra)
        snprintf(extra + e, sizeof extra - e, " parallel=patch/%d text_attention=%s", nranks,
                 a->text_mode == CD_TEXT_APPROX ? "approx" : "exact");
    if (a->prompt) snprintf(pbuf, sizeof pbuf, " prompt=%s", a->prompt);
    snprintf(summary, n, "seed=%lld steps=%lld size=%lldx%lld%s%s attention=%s%s model=%s", (long long)a->seed,
             (long long)gp->steps, (long long)gp->width, (long long)gp->height, pbuf, gbuf, att, extra,
             a->model_p ? a->model_p : "(default)");
    for (char *s = summary; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

/* Checks gp against the pipeline, generates and (rank 0) writes the PNG. */
static int run(cd_ctx *ctx, cd_pipeline *pl, const gen_args *a, cd_gen_params *gp, cd_comm *comm, int quiet) {
    const int rank = comm ? cd_comm_rank(comm) : 0;
    if (cd_pipeline_check(ctx, pl, gp) != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        return CLI_BAD_INPUT;
    }
    const int32_t have = cd_flux_model_clear_down(cd_pipeline_model(pl));
    if (a->down && have != a->down) {
        cli_error(CMD, "--down %lld needs CLEAR weights with spatial_weight of side %lld (the model has %s)",
                  (long long)a->down, (long long)a->down, have ? "another side" : "none");
        return CLI_BAD_INPUT;
    }
    uint8_t *rgb = rank == 0 ? malloc((size_t)gp->width * (size_t)gp->height * 3) : NULL;
    if (rank == 0 && !rgb) {
        cli_error(CMD, "out of memory for the image");
        return CLI_RUNTIME;
    }
    if ((a->init_p || a->upscale_p) && !quiet)
        fprintf(stderr, "cleardit generate: %s: %d of %lld steps at strength %g\n",
                a->upscale_p ? "upscale" : "image-to-image", cd_gen_steps_run(gp), (long long)gp->steps, gp->strength);
    progress_state ps = {isatty(2), 0};
    gp->progress = quiet ? NULL : on_progress;
    gp->user = &ps;
    int rc = CLI_OK;
    const cd_status st = cd_pipeline_generate(ctx, pl, gp, rgb);
    if (st != CD_OK) {
        if (ps.tty && !quiet) fputc('\n', stderr);
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = (st == CD_ERR_INVALID_ARG || st == CD_ERR_SHAPE) ? CLI_BAD_INPUT : CLI_RUNTIME;
    } else {
        char summary[2048];
        summarize(a, pl, gp, comm ? cd_comm_size(comm) : 0, summary, sizeof summary);
        const char *text[] = {"cleardit", summary, "Software", "cleardit " CLEARDIT_VERSION};
        if (rank == 0 &&
            cd_png_write(ctx, a->out_p, rgb, (uint32_t)gp->width, (uint32_t)gp->height, text, 2) != CD_OK) {
            cli_error(CMD, "%s", cd_ctx_error(ctx));
            rc = CLI_RUNTIME;
        } else if (!quiet) {
            fprintf(stderr, "cleardit generate: %s -> %s\n", summary, a->out_p);
        }
    }
    free(rgb);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)a.threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    if ((rc = check_args(ctx, &a))) {
        cd_ctx_free(ctx);
        return rc;
    }
    cd_comm *comm = NULL; /* --parallel patch: MPI's world; rank 0 speaks and writes */
    if (a.par_s && (rc = cli_parallel_start(CMD, ctx, argc, argv, a.ctimeout, &comm))) {
        cd_ctx_free(ctx);
        return rc;
    }
    const int quiet = a.quiet || (comm && cd_comm_rank(comm) != 0);
    cd_pipeline *pl = NULL;
    cd_st_file *ef = NULL;
    float *txt = NULL, *pooled = NULL;
    uint8_t *init = NULL;
    uint32_t iw = 0, ih = 0;
    cd_status st;
    /* cheap checks first: the init image, before the model loads */
    if ((a.init_p || a.upscale_p) && (rc = load_init(ctx, a.init_p ? a.init_p : a.upscale_p, a.upscale_p != NULL,
                                                     &a.width, &a.height, &init, &iw, &ih)))
        goto done;
    if (comm && a.dev == CD_DEVICE_CUDA) cli_pick_gpu();
    if ((rc = cli_open_device(CMD, ctx, a.dev))) goto done;
    cd_pipeline_params pp = cd_pipeline_params_default();
    pp.model = a.model_p;
    pp.ae = a.ae_p;
    pp.clear_weights = a.clear_p;
    pp.embedded_clear = a.embedded_clear;
    pp.encoder = init != NULL;
    pp.ae_groups = (int32_t)a.ae_groups;
    memcpy(pp.rope_axes, a.rope_axes, sizeof pp.rope_axes);
    pp.rope_theta = a.theta;
    pp.device = (cd_device)a.dev;
    pp.comm = comm;
    pp.text_attention = (cd_text_attention)a.text_mode;
    if ((st = cd_pipeline_open(ctx, &pp, &pl)) != CD_OK) {
        rc = load_error(ctx, st);
        goto done;
    }
    cd_gen_params gp = cd_gen_params_default();
    gp.width = (int32_t)a.width;
    gp.height = (int32_t)a.height;
    gp.steps = (int32_t)a.steps;
    gp.guidance = (float)a.guidance;
    gp.seed = (uint64_t)a.seed;
    gp.radius = a.clear ? (int32_t)a.radius : 0;
    gp.down = (int32_t)a.down;
    gp.time_shift = a.tshift;
    gp.init = init;
    gp.init_width = iw;
    gp.init_height = ih;
    gp.upscale = a.upscale_p != NULL;
    gp.strength = a.strength;
    gp.rope_ntk = a.ntk;
    gp.proportional = a.prop_on ? 1 : a.prop_off ? 0 : -1;
    gp.ae_tile = (int32_t)a.ae_tile;
    gp.ae_overlap = (float)a.overlap;
    if (!(rc = condition(ctx, pl, &a, &gp, &txt, &pooled, &ef))) rc = run(ctx, pl, &a, &gp, comm, quiet);
done:
    free(txt);
    free(pooled);
    free(init);
    cd_st_close(ef);
    cd_pipeline_free(pl);
    cli_parallel_end(comm, rc); /* on an error: ends the whole job, no rank left waiting */
    cd_ctx_free(ctx);
    return rc;
}
