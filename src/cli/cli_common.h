/* cli_common.h — helpers shared by the CLI subcommands: strict number parsing with range checks,
 * "AxB" pair parsing, a small table-driven flag parser and the one-line error format
 * "cleardit <cmd>: error: <message>". Only the CLI prints; these helpers print to stderr. */
#ifndef CD_CLI_COMMON_H
#define CD_CLI_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of every subcommand. */
enum { CLI_OK = 0, CLI_RUNTIME = 1, CLI_BAD_INPUT = 2 };

/* Prints "cleardit <cmd>: error: <message>\n" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict parsing: the whole string must be the number (no blanks, no trailing text); decimal
 * integers only. Return 0 on success, -1 if the text is not a number, -2 if it is outside
 * [lo, hi] (including overflow). */
int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int cli_parse_f64(const char *s, double lo, double hi, double *out); /* finite values only */

/* "AxB" (also "AXB") with two strictly parsed integers in [lo, hi]; returns like cli_parse_i64.
 * The caller decides what A and B mean (--grid is HxW). */
int cli_parse_pair(const char *s, int64_t lo, int64_t hi, int64_t *a, int64_t *b);

/* ---- flag parser ---------------------------------------------------------------------------
 * Flags are "--name value" or "--name=value"; "--help"/"-h" sets *help. A flag given twice keeps
 * the last value. Unknown flags, missing values, positional arguments and bad values are
 * reported with cli_error and make cli_parse_flags return CLI_BAD_INPUT. */
typedef enum {
    CLI_OPT_SWITCH, /* no value; *(int *)dst = 1 */
    CLI_OPT_INT,    /* *(int64_t *)dst, range [lo, hi] */
    CLI_OPT_FLOAT,  /* *(double *)dst, range [flo, fhi] */
    CLI_OPT_STRING, /* *(const char **)dst = the argument (not copied); never empty */
    CLI_OPT_TEXT    /* the same, and "" is a value (a prompt: FLUX's unconditional one is "") */
} cli_opt_kind;

typedef struct {
    const char *name; /* "--width" */
    cli_opt_kind kind;
    void *dst;
    int64_t lo, hi;  /* CLI_OPT_INT */
    double flo, fhi; /* CLI_OPT_FLOAT */
    int seen;        /* set to 1 by the parser when the flag is present */
} cli_opt;

/* argv[0] is the subcommand name and is skipped. Returns CLI_OK or CLI_BAD_INPUT. */
int cli_parse_flags(const char *cmd, int argc, char **argv, cli_opt *opts, size_t nopts, int *help);

/* cli_parse_flags with "-o PATH" accepted as "--out PATH" (the commands whose usage shows -o).
 * Returns CLI_OK, CLI_BAD_INPUT, or CLI_RUNTIME when out of memory. */
int cli_parse_flags_o(const char *cmd, int argc, char **argv, cli_opt *opts, size_t nopts, int *help);

/* The same, also accepting positional arguments (file names): up to max_pos of them are stored
 * in pos[] and counted in *npos; more is an error. After "--" every argument is positional. */
int cli_parse_args(const char *cmd, int argc, char **argv, cli_opt *opts, size_t nopts, int *help, const char **pos,
                   int max_pos, int *npos);

/* The option named `name` in opts (NULL if absent), to read its `seen`. */
const cli_opt *cli_find_opt(const cli_opt *opts, size_t nopts, const char *name);

/* An output path must not be a directory and its directory must exist: checked before any work,
 * so a bad --out is bad input, not a failure found after the computation. Prints the error. */
int cli_check_output_path(const char *cmd, const char *out);

/* The attention and RoPE flags shared by the commands that run the transformer (forward,
 * generate): --attention dense|clear (clear is implied by --radius), --radius, --down,
 * --rope-axes A,B,C. Validates their combination, sets *clear and the load parameters' RoPE axes
 * (lp's other fields are left to the caller). Prints the error; returns CLI_OK or CLI_BAD_INPUT. */
int cli_attention_opts(const char *cmd, const char *mode, int64_t radius, int64_t down, const char *axes, int *clear,
                       int rope_axes[3]);

/* --device cpu|cuda: parses s (NULL = cpu) into *dev; prints the error, returns CLI_OK or
 * CLI_BAD_INPUT. */
struct cd_ctx;
int cli_parse_device(const char *cmd, const char *s, int *dev);
/* Opens device dev (cd_device) in ctx; on failure prints why (e.g. no CUDA in this build, no GPU)
 * and returns CLI_BAD_INPUT. */
int cli_open_device(const char *cmd, struct cd_ctx *ctx, int dev);

/* --parallel patch / --text-attention exact|approx: checks them (par NULL: no parallelism; then
 * --text-attention is an error) and sets *mode (cd_text_attention). Prints the error. */
int cli_parse_parallel(const char *cmd, const char *par, const char *text, int *mode);
/* MPI_Init and the world communicator, the wait timeout, and the check that every rank got the
 * same arguments. Prints the error (CLI_BAD_INPUT) on failure. */
struct cd_comm;
int cli_parallel_start(const char *cmd, struct cd_ctx *ctx, int argc, char **argv, double timeout,
                       struct cd_comm **comm);
/* One GPU per rank: before CUDA starts, a rank of a parallel job whose CUDA_VISIBLE_DEVICES is
 * unset sees only the GPU of its node-local rank (OpenMPI's OMPI_COMM_WORLD_LOCAL_RANK, or
 * SLURM_LOCALID); NCCL refuses two ranks on one GPU. */
void cli_pick_gpu(void);
/* Ends a parallel run: MPI_Finalize after success; after an error on a job of several ranks,
 * MPI_Abort (so that no rank waits for one that gave up). NULL-safe. */
void cli_parallel_end(struct cd_comm *comm, int rc);

/* "a,b,c": comma-separated integers, each strictly parsed in [lo, hi], into out[max]; with
 * drop_zeros, 0 entries are accepted and left out ("0 = skip"). Returns the count, -1 when an entry
 * is not such a number, the text is over 255 characters, or more than max entries are kept. */
int cli_parse_list(const char *s, int64_t lo, int64_t hi, int drop_zeros, int64_t *out, int max);

/* Monotonic seconds (benchmarks). */
double cli_now(void);
/* n uniform values in [-1, 1) from seed (xorshift64*; benchmark inputs, never zeros). */
void cli_fill_uniform(float *p, size_t n, uint64_t seed);

/* The default model embedded in the binary, as a path the library can open ("/proc/self/fd/N");
 * prints the error and returns 1 when this build has none. */
int cli_default_model(char *path, size_t n);

/* Progress lines of the training commands (train, distill), a cd_train_progress_fn: "step i/n,
 * loss, |g|, lr, s/step, ETA" (a live line on a terminal, every 10th step otherwise). `banner` is
 * printed with the first step, so an early error stays the only line; step 0 means "preparing"
 * and prints `prep`. s/step and ETA count this run's steps only (a resumed run starts late). */
typedef struct {
    const char *cmd;
    int tty;
    char banner[256];
    const char *prep;
    int64_t first;
    double first_el;
} cli_train_prog;
void cli_train_progress(void *user, int64_t step, int64_t steps, double loss, double grad_norm, double lr,
                        double elapsed_s);
#endif
