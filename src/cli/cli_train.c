/* cli_train.c — `cleardit train`: trains the small pixel-space FLUX-architecture model on
 * Fashion-MNIST (src/train/train.h). A thin layer: flags, progress lines, exit codes. */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../train/train.h"
#include "../train/idx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "train"

static const char *k_usage =
    "usage: cleardit train -o MODEL.safetensors [--data DIR] [--state FILE] [--resume]\n"
    "                      [--steps N] [--batch B] [--lr X] [--warmup N] [--weight-decay X]\n"
    "                      [--clip X] [--ema X] [--save-every N] [--workers W] [--hidden D]\n"
    "                      [--heads H] [--depth N] [--single N] [--seed S] [--log FILE] [--f32]\n"
    "                      [--freeze GLOBS]\n"
    "                      [--quiet]\n"
    "\n"
    "Trains a small FLUX-architecture transformer from scratch on Fashion-MNIST in pixel space:\n"
    "28x28 images in 2x2 patches (14x14 tokens), class-conditional through one text token and the\n"
    "pooled vector (one-hot over the prompts t-shirt, trouser, pullover, dress, coat, sandal, shirt,\n"
    "sneaker, bag, ankle boot), rectified-flow loss with logit-normal timesteps, AdamW with warmup\n"
    "and gradient clipping, an EMA of the weights. MODEL gets the EMA weights (diffusers names;\n"
    "`cleardit generate --model MODEL --prompt sneaker` samples it). Every --save-every steps the\n"
    "whole training state goes to --state atomically; --resume continues from it and repeats the\n"
    "uninterrupted run bit for bit (same --workers, --batch, --seed and model shape: checked).\n"
    "\n"
    "options:\n"
    "  -o, --out PATH        the trained model (EMA weights; BF16 unless --f32)\n"
    "  --data DIR            the IDX files (default " CD_FMNIST_DIR ",\n"
    "                        Debian package " CD_FMNIST_PACKAGE ")\n"
    "  --state PATH          training state (default OUT.state)\n"
    "  --resume              continue from --state\n"
    "  --steps N             total optimizer steps (default 20000)\n"
    "  --batch B             images per step (default 32)\n"
    "  --lr X                AdamW learning rate (default 5e-4)\n"
    "  --warmup N            linear warmup steps (default 200)\n"
    "  --weight-decay X      AdamW weight decay (default 0)\n"
    "  --clip X              gradient-norm clipping (default 1; 0 = off)\n"
    "  --ema X               EMA decay of the saved weights (default 0.999)\n"
    "  --save-every N        state every N steps (default 500; 0 = at the end only)\n"
    "  --workers W           parallel batch slices (default: all cores)\n"
    "  --hidden D, --heads H, --depth N, --single N\n"
    "                        model shape (default 128, 4, 2 double, 4 single blocks)\n"
    "  --seed S              initialisation and data seed (default 0)\n"
    "  --log FILE            CSV of step,loss,grad_norm,lr,seconds\n"
    "  --freeze GLOBS        keep the parameters whose (diffusers) names match any of these\n"
    "                        comma-separated globs frozen, e.g. 'x_embedder.*,*.norm_q.*'\n"
    "  --f32                 write MODEL in F32 instead of BF16\n"
    "  --quiet               no progress lines\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input.\n";

int cmd_train(int argc, char **argv) {
    const char *freeze = NULL, *out = NULL, *data = NULL, *state = NULL, *log = NULL;
    int64_t steps = 20000, batch = 32, warmup = 200, save_every = 500, workers = 0, hidden = 128, heads = 4, depth = 2,
            single = 4, seed = 0, kill_after = 0;
    double lr = 5e-4, wd = 0, clip = 1, ema = 0.999;
    int resume = 0, f32 = 0, quiet = 0, help = 0;
    cli_opt opts[] = {
        {"--out", CLI_OPT_STRING, &out, 0, 0, 0, 0, 0},
        {"--data", CLI_OPT_STRING, &data, 0, 0, 0, 0, 0},
        {"--state", CLI_OPT_STRING, &state, 0, 0, 0, 0, 0},
        {"--resume", CLI_OPT_SWITCH, &resume, 0, 0, 0, 0, 0},
        {"--steps", CLI_OPT_INT, &steps, 1, 100000000, 0, 0, 0},
        {"--batch", CLI_OPT_INT, &batch, 1, 65536, 0, 0, 0},
        {"--lr", CLI_OPT_FLOAT, &lr, 0, 0, 1e-9, 1, 0},
        {"--warmup", CLI_OPT_INT, &warmup, 0, 100000000, 0, 0, 0},
        {"--weight-decay", CLI_OPT_FLOAT, &wd, 0, 0, 0, 1, 0},
        {"--clip", CLI_OPT_FLOAT, &clip, 0, 0, 0, 1e6, 0},
        {"--ema", CLI_OPT_FLOAT, &ema, 0, 0, 0, 0.999999, 0},
        {"--save-every", CLI_OPT_INT, &save_every, 0, 100000000, 0, 0, 0},
        {"--workers", CLI_OPT_INT, &workers, 1, 256, 0, 0, 0},
        {"--hidden", CLI_OPT_INT, &hidden, 8, 4096, 0, 0, 0},
        {"--heads", CLI_OPT_INT, &heads, 1, 64, 0, 0, 0},
        {"--depth", CLI_OPT_INT, &depth, 0, 64, 0, 0, 0},
        {"--single", CLI_OPT_INT, &single, 0, 64, 0, 0, 0},
        {"--seed", CLI_OPT_INT, &seed, 0, INT64_MAX, 0, 0, 0},
        {"--log", CLI_OPT_STRING, &log, 0, 0, 0, 0, 0},
        {"--f32", CLI_OPT_SWITCH, &f32, 0, 0, 0, 0, 0},
        {"--quiet", CLI_OPT_SWITCH, &quiet, 0, 0, 0, 0, 0},
        {"--freeze", CLI_OPT_STRING, &freeze, 0, 0, 0, 0, 0},
        {"--test-kill-after", CLI_OPT_INT, &kill_after, 1, INT64_MAX, 0, 0, 0}, /* tests only: SIGKILL after a step */
    };
    const int prc = cli_parse_flags_o(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], &help);
    if (prc) return prc;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (!out) {
        cli_error(CMD, "-o MODEL.safetensors is required (see --help)");
        return CLI_BAD_INPUT;
    }
    if (hidden % heads || (hidden / heads) % 2 || hidden / heads < 8 || depth + single < 1) {
        cli_error(CMD, "--hidden %lld / --heads %lld must give an even head size >= 8, with at least one block",
                  (long long)hidden, (long long)heads);
        return CLI_BAD_INPUT;
    }
    if (cli_check_output_path(CMD, out)) return CLI_BAD_INPUT;
    char state_buf[4200];
    if (!state) {
        snprintf(state_buf, sizeof state_buf, "%s.state", out);
        state = state_buf;
    }
    if (resume && access(state, R_OK) != 0) {
        cli_error(CMD, "--resume: cannot read the state file '%s'", state);
        return CLI_BAD_INPUT;
    }
    if (cli_check_output_path(CMD, state)) return CLI_BAD_INPUT;
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    if (workers) cp.threads = (int)workers;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    cli_train_prog pg = {"train", isatty(2), "", NULL, 0, 0};
    cd_train_params p = {out,
                         state,
                         resume,
                         steps,
                         batch,
                         save_every,
                         warmup,
                         (uint64_t)seed,
                         lr,
                         wd,
                         (float)clip,
                         (float)ema,
                         workers ? (int)workers : cd_ctx_threads(ctx),
                         !f32,
                         freeze,
                         log,
                         kill_after,
                         quiet ? NULL : cli_train_progress,
                         &pg};
    const cd_fmnist_params fp = {data, (int32_t)hidden, (int32_t)heads, (int32_t)depth, (int32_t)single};
    snprintf(pg.banner, sizeof pg.banner,
             "cleardit train: hidden %lld, %lld heads, %lld + %lld blocks, batch %lld, %d workers, %s\n",
             (long long)hidden, (long long)heads, (long long)depth, (long long)single, (long long)batch, p.workers,
             resume ? "resuming" : "from scratch");
    const cd_status st = cd_train_fmnist(ctx, &fp, &p);
    if (pg.tty && !quiet) fputc('\n', stderr);
    int rc = CLI_OK;
    if (st != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = (st == CD_ERR_INVALID_ARG || st == CD_ERR_NOT_FOUND || st == CD_ERR_FORMAT) ? CLI_BAD_INPUT : CLI_RUNTIME;
    } else if (!quiet) {
        fprintf(stderr, "cleardit train: wrote %s (state: %s)\n", out, state);
    }
    cd_ctx_free(ctx);
    return rc;
}
