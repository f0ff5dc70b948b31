/* main.c — the `cleardit` command: dispatches to the subcommands (cli.h) and prints the top-level
 * usage. Exit codes everywhere: 0 ok, 1 runtime failure, 2 bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"

static const char k_usage[] =
    "usage: cleardit <command> [options]\n"
    "\n"
    "CLEAR local attention for FLUX-like diffusion transformers.\n"
    "\n"
    "commands:\n"
    "  flops       attention FLOPs of one FLUX.1 layer: dense vs CLEAR\n"
    "  attention   run one attention layer on q/k/v from a safetensors file\n"
    "  bench       benchmark the attention kernels and the transformer forward\n"
    "  forward     run the FLUX transformer once on inputs from a safetensors file\n"
    "  generate    text-to-image: a prompt (or its embeddings) -> FLUX transformer + autoencoder -> PNG\n"
    "  encode      a prompt -> FLUX's conditioning with the native T5 and CLIP encoders\n"
    "  train       train the small pixel-space model on Fashion-MNIST (state, resume)\n"
    "  distill     CLEAR distillation: train local-attention weights from a dense teacher\n"
    "  eval        quality of CLEAR vs dense: PSNR, SSIM, class accuracy, FLOPs (teacher/student/swap)\n"
    "  inspect     describe a checkpoint: layout, inferred config, unknown/missing/wrong tensors\n"
    "  convert     rewrite a FLUX or autoencoder checkpoint with BFL or diffusers names\n"
    "              (dtype conversion, CLEAR merge)\n"
    "  help [CMD]  show this help, or the help of CMD\n"
    "\n"
    "options:\n"
    "  -h, --help  show this help\n"
    "  --version   print the version\n"
    "\n"
    "Run 'cleardit <command> --help' for the options of a command.\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input.\n";

typedef int (*cmd_fn)(int argc, char **argv);

static cmd_fn find_cmd(const char *name) {
    if (!strcmp(name, "flops")) return cmd_flops;
    if (!strcmp(name, "attention")) return cmd_attention;
    if (!strcmp(name, "bench")) return cmd_bench;
    if (!strcmp(name, "inspect")) return cmd_inspect;
    if (!strcmp(name, "convert")) return cmd_convert;
    if (!strcmp(name, "forward")) return cmd_forward;
    if (!strcmp(name, "generate")) return cmd_generate;
    if (!strcmp(name, "encode")) return cmd_encode;
    if (!strcmp(name, "train")) return cmd_train;
    if (!strcmp(name, "distill")) return cmd_distill;
    if (!strcmp(name, "eval")) return cmd_eval;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(k_usage, stderr);
        return CLI_BAD_INPUT;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (!strcmp(cmd, "help") && argc >= 3) { /* "cleardit help flops" = "cleardit flops --help" */
            cmd_fn f = find_cmd(argv[2]);
            if (!f) {
                fprintf(stderr, "cleardit: error: unknown command '%s'\n\n%s", argv[2], k_usage);
                return CLI_BAD_INPUT;
            }
            char *sub[] = {argv[2], "--help", NULL};
            return f(2, sub);
        }
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("cleardit %s\n", CLEARDIT_VERSION);
        return CLI_OK;
    }
    cmd_fn f = find_cmd(cmd);
    if (!f) {
        fprintf(stderr, "cleardit: error: unknown command '%s'\n\n%s", cmd, k_usage);
        return CLI_BAD_INPUT;
    }
    const char *isa_err = cd_isa_env_error(); /* every command makes a context: say why it cannot */
    if (isa_err) {
        fprintf(stderr, "cleardit: error: %s (it is '%s')\n", isa_err, getenv("CLEARDIT_ISA"));
        return CLI_BAD_INPUT;
    }
    return f(argc - 1, argv + 1); /* the subcommand sees itself as argv[0] */
}
