/* cli.h — the CLI's subcommands. Each returns the process exit code: 0 ok, 1 runtime failure,
 * 2 bad input (flags, files, shapes). Only the CLI prints and exits. */
#ifndef CD_CLI_H
#define CD_CLI_H

int cmd_flops(int argc, char **argv);
int cmd_attention(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
