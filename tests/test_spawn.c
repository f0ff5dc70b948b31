/* test_spawn.c — the CLI runner of test_spawn.h. */
#include "test_spawn.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

const char *cli_bin(void) {
    const char *b = getenv("CLEARDIT_BIN");
    return b && *b ? b : "build/cleardit";
}

/* Reads what f holds from its start into buf[cap] (NUL-terminated, truncated). */
static void slurp(FILE *f, char *buf, size_t cap) {
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
}

int run_cli(const char *const *args, cli_run *r) {
    enum { MAX_ARGS = 64 };
    const char *argv[MAX_ARGS + 1];
    int n = 0;
    argv[n++] = cli_bin();
    for (; args[n - 1]; n++) {
        if (n == MAX_ARGS) return 0;
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    return run_argv(argv, r);
}

int run_argv(const char *const *argv, cli_run *r) {
    FILE *out = tmpfile(), *err = tmpfile();
    int ok = 0;
    if (out && err) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fileno(out), 1);
        posix_spawn_file_actions_adddup2(&fa, fileno(err), 2);
        if (fileno(out) > 2) posix_spawn_file_actions_addclose(&fa, fileno(out));
        if (fileno(err) > 2) posix_spawn_file_actions_addclose(&fa, fileno(err));
        pid_t pid;
        int st;
        ok = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) == 0 && waitpid(pid, &st, 0) == pid;
        posix_spawn_file_actions_destroy(&fa);
        if (ok) {
            r->code = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
            slurp(out, r->out, sizeof r->out);
            slurp(err, r->err, sizeof r->err);
        }
    }
    if (out) fclose(out);
    if (err) fclose(err);
    return ok;
}

int one_error_line(const char *err, const char *cmd) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "cleardit %s: error: ", cmd);
    size_t len = strlen(err);
    return !strncmp(err, prefix, strlen(prefix)) && len > 0 && err[len - 1] == '\n' &&
           strchr(err, '\n') == err + len - 1;
}
