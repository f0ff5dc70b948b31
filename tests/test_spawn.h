/* test_spawn.h — runs the `cleardit` command as a separate process for the CLI tests
 * (test_cli.c, test_cli_ckpt.c, test_cli_forward.c): the binary is $CLEARDIT_BIN (default
 * build/cleardit, as `make test` sets it); stdout, stderr and the exit code are captured. The
 * captures go through unlinked temporary files, so nothing appears in a test's directories. */
#ifndef CD_TEST_SPAWN_H
#define CD_TEST_SPAWN_H

#include "test.h"

typedef struct {
    int code;        /* exit status, or -signal */
    char out[65536]; /* stdout (truncated) */
    char err[16384]; /* stderr (truncated) */
} cli_run;

/* The CLI's path: $CLEARDIT_BIN, else build/cleardit. */
const char *cli_bin(void);

/* Runs the CLI with args (NULL-terminated, without argv[0]) and waits for it; 0 if it could
 * not be started. */
int run_cli(const char *const *args, cli_run *r);

/* Runs argv[0] (a path) with argv, captured like run_cli. */
int run_argv(const char *const *argv, cli_run *r);

/* RUN(res, "cmd", "arg", ...): run_cli with a literal argument list; fails the test if the CLI
 * cannot be started. */
#define RUN(res, ...)                                                              \
    do {                                                                           \
        const char *const args_[] = {__VA_ARGS__, NULL};                           \
        CHECK(run_cli(args_, res), "cannot run %s (set CLEARDIT_BIN)", cli_bin()); \
    } while (0)

/* 1 if err is exactly one line "cleardit <cmd>: error: ...\n". */
int one_error_line(const char *err, const char *cmd);

#endif
