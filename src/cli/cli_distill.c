/* cli_distill.c — `cleardit distill`: CLEAR distillation of a model into local attention
 * (src/train/distill.h). A thin layer: flags, progress lines, exit codes. */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../train/distill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "distill"

static const char *k_usage =
    "usage: cleardit distill --radius R -o CLEAR.safetensors [--model TEACHER] [--down D]\n"
    "                        [--samples N] [--sample-steps S] [--cache FILE] [--no-distill-loss]\n"
    "                        [--steps N] [--batch B] [--lr X] [--warmup N] [--clip X] [--ema X]\n"
    "                        [--save-every N] [--state FILE] [--resume] [--workers W] [--seed S]\n"
    "                        [--log FILE] [--quiet]\n"
    "\n"
    "CLEAR distillation (the paper's recipe, docs/distillation.md): the teacher (dense attention) samples\n"
    "its own training set (N images over its built-in prompts, cached in --cache), then a student\n"
    "that starts as the teacher with CLEAR attention of radius R trains only its attention\n"
    "projections (image-stream q, k, v, out of double blocks; q, k, v of single blocks; the pooled\n"
    "keys' spatial weights with --down) with loss = flow matching + 0.5 output distillation + 0.5\n"
    "attention-output distillation (--no-distill-loss: flow matching only). Writes a CLEAR weights\n"
    "file in the released format: `cleardit generate --clear-weights FILE --radius R` uses it.\n"
    "Without --model the default model is the teacher. Resume as `cleardit train`.\n"
    "\n"
    "options:\n"
    "  --model PATH          teacher (a model with a built-in prompt table; default: the default model)\n"
    "  --radius R            CLEAR radius in tokens (required)\n"
    "  --down D              pooled keys of D x D cells (the reference uses 4)\n"
    "  -o, --out PATH        the CLEAR weights file\n"
    "  --samples N           self-distillation set size (default 2000)\n"
    "  --sample-steps S      teacher Euler steps per sample (default 32)\n"
    "  --cache FILE          the set (default OUT.set; reused when it matches)\n"
    "  --no-distill-loss     flow-matching loss only (the paper's 'without distillation' rows)\n"
    "  --steps N             optimizer steps (default 1500)\n"
    "  --batch B             samples per step (default 32)\n"
    "  --lr X                AdamW learning rate (default 3e-4)\n"
    "  --warmup N            linear warmup (default 50)\n"
    "  --clip X              gradient-norm clipping (default 1, as the reference)\n"
    "  --ema X               EMA decay of the written weights (default 0: the last weights)\n"
    "  --save-every N        state every N steps (default 250)\n"
    "  --state PATH          training state (default OUT.state)\n"
    "  --resume              continue from --state\n"
    "  --workers W           parallel batch slices (default: all cores)\n"
    "  --seed S              set and training seed (default 0)\n"
    "  --log FILE            CSV of step,loss,grad_norm,lr,seconds\n"
    "  --freeze GLOBS        also keep these CLEAR parameters frozen (comma-separated globs)\n"
    "  --quiet               no progress lines\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input.\n";

int cmd_distill(int argc, char **argv) {
    const char *freeze = NULL, *model = NULL, *out = NULL, *cache = NULL, *state = NULL, *log = NULL;
    int64_t radius = 0, down = 0, samples = 2000, sample_steps = 32, steps = 1500, batch = 32, warmup = 50,
            save_every = 250, workers = 0, seed = 0, kill_after = 0;
    double lr = 3e-4, clip = 1, ema = 0;
    int no_distill = 0, resume = 0, quiet = 0, help = 0;
    cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &model, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &radius, 1, 1 << 20, 0, 0, 0},
        {"--down", CLI_OPT_INT, &down, 2, 64, 0, 0, 0},
        {"--out", CLI_OPT_STRING, &out, 0, 0, 0, 0, 0},
        {"--samples", CLI_OPT_INT, &samples, 1, 10000000, 0, 0, 0},
        {"--sample-steps", CLI_OPT_INT, &sample_steps, 1, 10000, 0, 0, 0},
        {"--cache", CLI_OPT_STRING, &cache, 0, 0, 0, 0, 0},
        {"--no-distill-loss", CLI_OPT_SWITCH, &no_distill, 0, 0, 0, 0, 0},
        {"--steps", CLI_OPT_INT, &steps, 1, 100000000, 0, 0, 0},
        {"--batch", CLI_OPT_INT, &batch, 1, 65536, 0, 0, 0},
        {"--lr", CLI_OPT_FLOAT, &lr, 0, 0, 1e-9, 1, 0},
        {"--warmup", CLI_OPT_INT, &warmup, 0, 100000000, 0, 0, 0},
        {"--clip", CLI_OPT_FLOAT, &clip, 0, 0, 0, 1e6, 0},
        {"--ema", CLI_OPT_FLOAT, &ema, 0, 0, 0, 0.999999, 0},
        {"--save-every", CLI_OPT_INT, &save_every, 0, 100000000, 0, 0, 0},
        {"--state", CLI_OPT_STRING, &state, 0, 0, 0, 0, 0},
        {"--resume", CLI_OPT_SWITCH, &resume, 0, 0, 0, 0, 0},
        {"--workers", CLI_OPT_INT, &workers, 1, 256, 0, 0, 0},
        {"--seed", CLI_OPT_INT, &seed, 0, INT64_MAX, 0, 0, 0},
        {"--log", CLI_OPT_STRING, &log, 0, 0, 0, 0, 0},
        {"--quiet", CLI_OPT_SWITCH, &quiet, 0, 0, 0, 0, 0},
        {"--freeze", CLI_OPT_STRING, &freeze, 0, 0, 0, 0, 0},
        {"--test-kill-after", CLI_OPT_INT, &kill_after, 1, INT64_MAX, 0, 0, 0}, /* tests only */
    };
    const int prc = cli_parse_flags_o(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], &help);
    if (prc) return prc;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (!out || !radius) {
        cli_error(CMD, "--radius and -o are required (see --help)");
        return CLI_BAD_INPUT;
    }
    if (cli_check_output_path(CMD, out)) return CLI_BAD_INPUT;
    char cache_buf[4200], state_buf[4200], model_buf[64];
    if (!cache) {
        snprintf(cache_buf, sizeof cache_buf, "%s.set", out);
        cache = cache_buf;
    }
    if (!state) {
        snprintf(state_buf, sizeof state_buf, "%s.state", out);
        state = state_buf;
    }
    if (cli_check_output_path(CMD, cache) || cli_check_output_path(CMD, state)) return CLI_BAD_INPUT;
    if (resume && access(state, R_OK) != 0) {
        cli_error(CMD, "--resume: cannot read the state file '%s'", state);
        return CLI_BAD_INPUT;
    }
    if (model && access(model, R_OK) != 0) {
        cli_error(CMD, "cannot read the teacher '%s'", model);
        return CLI_BAD_INPUT;
    }
    if (!model) {
        if (cli_default_model(model_buf, sizeof model_buf)) return CLI_RUNTIME;
        model = model_buf;
    }
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    if (workers) cp.threads = (int)workers;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    cli_train_prog pg = {"distill", isatty(2), "", "sampling the teacher's distillation set ...", 0, 0};
    const cd_train_params p = {out,
                               state,
                               resume,
                               steps,
                               batch,
                               save_every,
                               warmup,
                               (uint64_t)seed,
                               lr,
                               0.0,
                               (float)clip,
                               (float)ema,
                               workers ? (int)workers : cd_ctx_threads(ctx),
                               0,
                               freeze,
                               log,
                               kill_after,
                               quiet ? NULL : cli_train_progress,
                               &pg};
    const cd_distill_params dp = {model,           cache,         samples,    (int32_t)sample_steps,
                                  (int32_t)radius, (int32_t)down, !no_distill};
    const cd_status st = cd_distill(ctx, &dp, &p);
    if (pg.tty && !quiet) fputc('\n', stderr);
    int rc = CLI_OK;
    if (st != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        rc = (st == CD_ERR_INVALID_ARG || st == CD_ERR_NOT_FOUND || st == CD_ERR_FORMAT || st == CD_ERR_UNSUPPORTED ||
              st == CD_ERR_SHAPE)
                 ? CLI_BAD_INPUT
                 : CLI_RUNTIME;
    } else if (!quiet) {
        fprintf(stderr, "cleardit distill: wrote %s (radius %lld%s)\n", out, (long long)radius,
                down ? ", pooled keys" : "");
    }
    cd_ctx_free(ctx);
    return rc;
}
