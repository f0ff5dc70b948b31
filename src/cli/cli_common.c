/* cli_common.c — strict number parsing, "AxB" pairs, the flag parser and error printing shared
 * by the CLI subcommands (see cli_common.h). */
#include "cli_common.h"
#include "cleardit.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cleardit %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    /* strtoll alone would accept leading blanks, "0x10" (base 0) and trailing junk. */
    if (!s || !*s) return -1;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return -1;
    for (const char *c = p; *c; c++)
        if (!isdigit((unsigned char)*c)) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || v < lo || v > hi) return -2;
    *out = (int64_t)v;
    return 0;
}

int cli_parse_f64(const char *s, double lo, double hi, double *out) {
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end) return -1;
    /* "nan", "inf" and hex floats parse with strtod; only plain finite numbers are wanted. */
    for (const char *c = s; *c; c++)
        if (!(isdigit((unsigned char)*c) || strchr("+-.eE", *c))) return -1;
    if (errno == ERANGE || !isfinite(v) || v < lo || v > hi) return -2;
    *out = v;
    return 0;
}

int cli_parse_pair(const char *s, int64_t lo, int64_t hi, int64_t *a, int64_t *b) {
    if (!s) return -1;
    const char *x = strpbrk(s, "xX");
    if (!x || x == s || !x[1] || strpbrk(x + 1, "xX")) return -1;
    char first[32];
    size_t n = (size_t)(x - s);
    if (n >= sizeof first) return -2; /* far too many digits: out of range */
    memcpy(first, s, n);
    first[n] = 0;
    int r1 = cli_parse_i64(first, lo, hi, a);
    int r2 = cli_parse_i64(x + 1, lo, hi, b);
    if (r1 == -1 || r2 == -1) return -1;
    return (r1 || r2) ? -2 : 0;
}

const cli_opt *cli_find_opt(const cli_opt *opts, size_t nopts, const char *name) {
    for (size_t i = 0; i < nopts; i++)
        if (!strcmp(opts[i].name, name)) return &opts[i];
    return NULL;
}

/* Stores one flag value; prints the error and returns CLI_BAD_INPUT when it does not parse. */
static int set_value(const char *cmd, cli_opt *o, const char *val) {
    int r;
    switch (o->kind) {
        case CLI_OPT_INT:
            r = cli_parse_i64(val, o->lo, o->hi, (int64_t *)o->dst);
            if (r == -1) {
                cli_error(cmd, "invalid value '%s' for %s: expected an integer", val, o->name);
                return CLI_BAD_INPUT;
            }
            if (r == -2) {
                cli_error(cmd, "value '%s' for %s is out of range (%lld..%lld)", val, o->name, (long long)o->lo,
                          (long long)o->hi);
                return CLI_BAD_INPUT;
            }
            break;
        case CLI_OPT_FLOAT:
            r = cli_parse_f64(val, o->flo, o->fhi, (double *)o->dst);
            if (r == -1) {
                cli_error(cmd, "invalid value '%s' for %s: expected a number", val, o->name);
                return CLI_BAD_INPUT;
            }
            if (r == -2) {
                cli_error(cmd, "value '%s' for %s is out of range (%g..%g)", val, o->name, o->flo, o->fhi);
                return CLI_BAD_INPUT;
            }
            break;
        case CLI_OPT_TEXT: *(const char **)o->dst = val; break;
        case CLI_OPT_STRING:
            if (!*val) {
                cli_error(cmd, "empty value for %s", o->name);
                return CLI_BAD_INPUT;
            }
            *(const char **)o->dst = val;
            break;
        case CLI_OPT_SWITCH: break;
    }
    return CLI_OK;
}

int cli_parse_flags(const char *cmd, int argc, char **argv, cli_opt *opts, size_t nopts, int *help) {
    return cli_parse_args(cmd, argc, argv, opts, nopts, help, NULL, 0, NULL);
}

int cli_parse_flags_o(const char *cmd, int argc, char **argv, cli_opt *opts, size_t nopts, int *help) {
    char **av = malloc(((size_t)argc + 1) * sizeof *av);
    if (!av) {
        cli_error(cmd, "out of memory");
        return CLI_RUNTIME;
    }
    for (int i = 0; i < argc; i++) av[i] = !strcmp(argv[i], "-o") ? "--out" : argv[i];
    av[argc] = NULL;
    const int rc = cli_parse_flags(cmd, argc, av, opts, nopts, help);
    free(av);
    return rc;
}

int cli_parse_args(const char *cmd, int argc, char **argv, cli_opt *opts, size_t nopts, int *help, const char **pos,
                   int max_pos, int *npos) {
    *help = 0;
    if (npos) *npos = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_pos && (!strcmp(arg, "--help") || !strcmp(arg, "-h"))) {
            *help = 1;
            return CLI_OK; /* help wins over anything else on the line */
        }
        if (!only_pos && !strcmp(arg, "--") && pos) {
            only_pos = 1;
            continue;
        }
        if (only_pos || strncmp(arg, "--", 2) != 0 || !arg[2]) {
            if (!pos || *npos >= max_pos) {
                cli_error(cmd, "unexpected argument '%s' (see 'cleardit %s --help')", arg, cmd);
                return CLI_BAD_INPUT;
            }
            pos[(*npos)++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        cli_opt *o = NULL;
        for (size_t k = 0; k < nopts && !o; k++)
            if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, arg, nlen)) o = &opts[k];
        if (!o) {
            cli_error(cmd, "unknown option '%.*s' (see 'cleardit %s --help')", (int)nlen, arg, cmd);
            return CLI_BAD_INPUT;
        }
        if (o->kind == CLI_OPT_SWITCH) {
            if (eq) {
                cli_error(cmd, "%s takes no value", o->name);
                return CLI_BAD_INPUT;
            }
            *(int *)o->dst = 1;
            o->seen = 1;
            continue;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            /* "--in --out x" is a forgotten value, not an input file called "--out" */
            if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)) {
                cli_error(cmd, "missing value for %s", o->name);
                return CLI_BAD_INPUT;
            }
            val = argv[++i];
        }
        if (set_value(cmd, o, val)) return CLI_BAD_INPUT;
        o->seen = 1;
    }
    return CLI_OK;
}

int cli_check_output_path(const char *cmd, const char *out) {
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_error(cmd, "--out '%s' is a directory", out);
        return CLI_BAD_INPUT;
    }
    char *copy = strdup(out);
    if (!copy) {
        cli_error(cmd, "out of memory");
        return CLI_RUNTIME;
    }
    const char *dir = dirname(copy);
    int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    if (!ok) cli_error(cmd, "cannot write --out '%s': directory '%s' does not exist", out, dir);
    free(copy);
    return ok ? CLI_OK : CLI_BAD_INPUT;
}

int cli_attention_opts(const char *cmd, const char *mode, int64_t radius, int64_t down, const char *axes, int *clear,
                       int rope_axes[3]) {
    *clear = radius > 0;
    if (mode) {
        if (!strcmp(mode, "clear")) {
            *clear = 1;
        } else if (strcmp(mode, "dense")) {
            cli_error(cmd, "--attention must be dense or clear (got '%s')", mode);
            return CLI_BAD_INPUT;
        } else if (radius > 0) {
            cli_error(cmd, "--attention dense does not take --radius");
            return CLI_BAD_INPUT;
        }
    }
    if (*clear && radius < 1) {
        cli_error(cmd, "--attention clear needs --radius R >= 1");
        return CLI_BAD_INPUT;
    }
    if (down && !*clear) {
        cli_error(cmd, "--down %lld needs CLEAR attention (--radius)", (long long)down);
        return CLI_BAD_INPUT;
    }
    if (axes) {
        int n = 0;
        if (sscanf(axes, "%d,%d,%d%n", &rope_axes[0], &rope_axes[1], &rope_axes[2], &n) != 3 || axes[n] ||
            rope_axes[0] < 0 || rope_axes[1] < 0 || rope_axes[2] < 0) {
            cli_error(cmd, "--rope-axes must be three non-negative integers A,B,C (got '%s')", axes);
            return CLI_BAD_INPUT;
        }
    }
    return CLI_OK;
}

void cli_train_progress(void *user, int64_t step, int64_t steps, double loss, double gn, double lr, double el) {
    cli_train_prog *p = user;
    if (step == 0) {
        if (p->prep) fprintf(stderr, "cleardit %s: %s\n", p->cmd, p->prep);
        return;
    }
    if (p->banner[0]) {
        fputs(p->banner, stderr);
        p->banner[0] = 0;
    }
    if (!p->first) {
        p->first = step;
        p->first_el = el;
    }
    if (!p->tty && step % 10 && step != steps) return;
    const double per = step > p->first ? (el - p->first_el) / (double)(step - p->first) : el;
    fprintf(stderr, "%scleardit %s: step %lld/%lld  loss %.5f  |g| %.3f  lr %.2e  %.2f s/step  ETA %.0f s%s",
            p->tty ? "\r" : "", p->cmd, (long long)step, (long long)steps, loss, gn, lr, per,
            per * (double)(steps - step), p->tty ? "   " : "\n");
    fflush(stderr);
}

int cli_parse_device(const char *cmd, const char *s, int *dev) {
    if (!s || !strcmp(s, "cpu"))
        *dev = CD_DEVICE_CPU;
    else if (!strcmp(s, "cuda"))
        *dev = CD_DEVICE_CUDA;
    else {
        cli_error(cmd, "--device must be cpu or cuda (got '%s')", s);
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

int cli_open_device(const char *cmd, cd_ctx *ctx, int dev) {
    if (cd_device_open(ctx, (cd_device)dev) == CD_OK) return CLI_OK;
    cli_error(cmd, "--device %s: %s", cd_device_name((cd_device)dev), cd_ctx_error(ctx));
    return CLI_BAD_INPUT;
}

int cli_parse_parallel(const char *cmd, const char *par, const char *text, int *mode) {
    *mode = CD_TEXT_EXACT;
    if (par && strcmp(par, "patch")) {
        cli_error(cmd, "--parallel must be patch (got '%s')", par);
        return CLI_BAD_INPUT;
    }
    if (text && !par) {
        cli_error(cmd, "--text-attention needs --parallel patch");
        return CLI_BAD_INPUT;
    }
    if (text && !strcmp(text, "approx"))
        *mode = CD_TEXT_APPROX;
    else if (text && strcmp(text, "exact")) {
        cli_error(cmd, "--text-attention must be exact or approx (got '%s')", text);
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

int cli_parallel_start(const char *cmd, cd_ctx *ctx, int argc, char **argv, double timeout, cd_comm **comm) {
    *comm = NULL;
    if (cd_comm_init(ctx, NULL, NULL, comm) != CD_OK) {
        cli_error(cmd, "--parallel patch: %s", cd_ctx_error(ctx));
        return CLI_BAD_INPUT;
    }
    cd_comm_set_timeout(*comm, timeout);
    /* every rank must run the same command: compare the arguments, joined */
    size_t n = 0;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 1;
    char *all = malloc(n + 1), *p = all;
    if (!all) {
        cli_error(cmd, "out of memory");
        cli_parallel_end(*comm, CLI_RUNTIME);
        *comm = NULL;
        return CLI_RUNTIME;
    }
    for (int i = 0; i < argc; i++) p += sprintf(p, "%s%c", argv[i], 0x1f);
    const cd_status s = cd_comm_check_same(ctx, *comm, all, n, "the command-line arguments");
    free(all);
    if (s != CD_OK) {
        cli_error(cmd, "%s", cd_ctx_error(ctx));
        cd_comm_free(*comm); /* every rank saw the mismatch: all leave normally */
        *comm = NULL;
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

void cli_parallel_end(cd_comm *comm, int rc) {
    if (!comm) return;
    if (rc != CLI_OK && cd_comm_size(comm) > 1) cd_comm_abort(comm, rc);
    cd_comm_free(comm);
}

double cli_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cli_fill_uniform(float *p, size_t n, uint64_t seed) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (float)((double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1p-53 * 2.0 - 1.0);
    }
}

void cli_pick_gpu(void) {
    if (getenv("CUDA_VISIBLE_DEVICES")) return;
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!lr) lr = getenv("SLURM_LOCALID");
    int64_t v;
    if (lr && cli_parse_i64(lr, 0, 1 << 20, &v) == 0) setenv("CUDA_VISIBLE_DEVICES", lr, 1);
}

int cli_parse_list(const char *s, int64_t lo, int64_t hi, int drop_zeros, int64_t *out, int max) {
    int n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max || cli_parse_i64(tok, lo, hi, &out[n])) return -1;
        if (out[n] || !drop_zeros) n++;
    }
    return n;
}
