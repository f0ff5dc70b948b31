/* cli_attention.c — `cleardit attention`: runs one attention layer (dense or CLEAR) on q/k/v read
 * from a safetensors file and writes o and lse to another, atomically.
 *
 * Every check on flags, the input file, tensor names, dtypes and shapes happens before anything
 * is computed or written: bad input exits 2 and leaves no output file behind. Mapped tensor
 * data is not aligned in general, so q/k/v are copied into 64-byte aligned buffers first. */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"

#define CMD "attention"

static const char k_usage[] =
    "usage: cleardit attention --in IN.safetensors --out OUT.safetensors --grid HxW --text-len T\n"
    "                          [--radius R] [--down D] [--scale S] [--threads N]\n"
    "                          [--isa auto|generic|avx2|avx512] [--reference] [--quiet]\n"
    "\n"
    "Runs one attention layer over the joint sequence [text (T) | image (H*W, row-major)].\n"
    "\n"
    "input  (IN):  q, k, v        [heads, T+H*W, head_dim], F32 or BF16 (one dtype, one shape)\n"
    "              spatial_weight [D, D], any float dtype (only with --down D >= 2)\n"
    "output (OUT): o              [heads, T+H*W, head_dim] F32\n"
    "              lse            [heads, T+H*W] F32 (natural-log sum of exp of scaled scores)\n"
    "              metadata: grid, text_len, radius, down, scale, dtype, kernel, isa\n"
    "\n"
    "options:\n"
    "  --in PATH          input safetensors file\n"
    "  --out PATH         output safetensors file (written atomically; never left half-written)\n"
    "  --grid HxW         image token grid, rows x columns\n"
    "  --text-len T       text tokens before the image tokens (>= 0)\n"
    "  --radius R         CLEAR radius (>= 1); without it attention is dense\n"
    "  --down D           pooled keys from D x D cells (needs --radius; D divides H and W)\n"
    "  --scale S          softmax scale (default 0 = 1/sqrt(head_dim))\n"
    "  --threads N        threads (default 0 = all cores)\n"
    "  --isa NAME         kernel instruction set: auto (default), generic, avx2, avx512\n"
    "  --reference        use the plain reference kernel (double accumulation) instead\n"
    "  --quiet            no summary on stderr\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input (flags, file, tensors, shapes).\n";

/* Everything the command owns, released in one place. */
typedef struct {
    cd_ctx *ctx;
    cd_st_file *in;
    void *q, *k, *v; /* [NH, N, HD] aligned copies of the inputs */
    float *sw;       /* [DF, DF] or NULL */
    float *o;        /* [NH, N, HD] */
    float *lse;      /* [NH, N] */
} attn_job;

static void job_free(attn_job *j) {
    free(j->q);
    free(j->k);
    free(j->v);
    free(j->sw);
    free(j->o);
    free(j->lse);
    cd_st_close(j->in);
    cd_ctx_free(j->ctx);
}

static void *aligned_alloc64(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 64) ? NULL : p;
}

static const char *shape_str(const cd_st_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static int parse_isa(const char *s, cd_isa *out) {
    for (int i = 0; i < CD_ISA_COUNT; i++)
        if (!strcmp(s, cd_isa_name((cd_isa)i))) {
            *out = (cd_isa)i;
            return 1;
        }
    return 0;
}

/* q, k and v: present, rank 3, F32 or BF16, one dtype and one shape. */
static int check_qkv(const char *in, const cd_st_file *f, const cd_st_tensor *t[3]) {
    static const char *const names[3] = {"q", "k", "v"};
    char a[96], b[96];
    for (int i = 0; i < 3; i++) {
        t[i] = cd_st_find(f, names[i]);
        if (!t[i]) {
            cli_error(CMD,
                      "input '%s' has no tensor '%s' (need q, k, v of shape [heads, tokens, "
                      "head_dim])",
                      in, names[i]);
            return CLI_BAD_INPUT;
        }
        if (t[i]->ndim != 3) {
            cli_error(CMD,
                      "tensor '%s' has rank %d (shape %s); need rank 3 [heads, tokens, "
                      "head_dim]",
                      names[i], t[i]->ndim, shape_str(t[i], a, sizeof a));
            return CLI_BAD_INPUT;
        }
        if (t[i]->dtype != CD_DTYPE_F32 && t[i]->dtype != CD_DTYPE_BF16) {
            cli_error(CMD, "tensor '%s' has dtype %s; need F32 or BF16", names[i], cd_dtype_name(t[i]->dtype));
            return CLI_BAD_INPUT;
        }
    }
    for (int i = 1; i < 3; i++) {
        if (t[i]->dtype != t[0]->dtype) {
            cli_error(CMD, "q, k and v must share one dtype: q is %s but %s is %s", cd_dtype_name(t[0]->dtype),
                      names[i], cd_dtype_name(t[i]->dtype));
            return CLI_BAD_INPUT;
        }
        if (memcmp(t[i]->shape, t[0]->shape, 3 * sizeof t[0]->shape[0])) {
            cli_error(CMD, "q, k and v must share one shape: q is %s but %s is %s", shape_str(t[0], a, sizeof a),
                      names[i], shape_str(t[i], b, sizeof b));
            return CLI_BAD_INPUT;
        }
    }
    if (t[0]->shape[0] < 1 || t[0]->shape[0] > INT32_MAX || t[0]->shape[2] < 1 || t[0]->shape[2] > INT32_MAX) {
        cli_error(CMD, "q has shape %s; heads and head_dim must be >= 1", shape_str(t[0], a, sizeof a));
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

/* spatial_weight [DF, DF] in any float dtype cd_st_to_f32 converts; *out is malloc'ed. */
static int load_spatial_weight(cd_ctx *ctx, const char *in, const cd_st_file *f, int32_t df, float **out) {
    const cd_st_tensor *t = cd_st_find(f, "spatial_weight");
    char a[96];
    if (!t) {
        cli_error(CMD,
                  "input '%s' has no tensor 'spatial_weight' (--down %d needs one of shape "
                  "[%d, %d])",
                  in, df, df, df);
        return CLI_BAD_INPUT;
    }
    if (t->ndim != 2 || t->shape[0] != df || t->shape[1] != df) {
        cli_error(CMD, "tensor 'spatial_weight' has shape %s; --down %d needs [%d, %d]", shape_str(t, a, sizeof a), df,
                  df, df);
        return CLI_BAD_INPUT;
    }
    *out = malloc((size_t)df * (size_t)df * sizeof **out);
    if (!*out) {
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    cd_status s = cd_st_to_f32(ctx, t, *out);
    if (s) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        return s == CD_ERR_UNSUPPORTED || s == CD_ERR_INVALID_ARG ? CLI_BAD_INPUT : CLI_RUNTIME;
    }
    return CLI_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Computes and writes the output; the descriptor and inputs are already validated. */
static int run_and_write(attn_job *j, const cd_attn_desc *d, cd_dtype dt, const cd_st_tensor *const t[3],
                         const char *out, int reference, int quiet) {
    const size_t nh = (size_t)d->heads, hd = (size_t)d->head_dim;
    const size_t ntok = (size_t)d->text_len + (size_t)d->grid_h * (size_t)d->grid_w;
    const size_t in_bytes = (size_t)t[0]->nbytes; /* NH*N*HD*elt, checked by the reader */
    size_t o_elems, lse_elems;
    if (__builtin_mul_overflow(nh * ntok, hd, &o_elems) || __builtin_mul_overflow(nh, ntok, &lse_elems) ||
        o_elems > SIZE_MAX / sizeof(float)) {
        cli_error(CMD, "tensors too large for this machine");
        return CLI_RUNTIME;
    }
    void **bufs[3] = {&j->q, &j->k, &j->v};
    for (int i = 0; i < 3; i++) {
        *bufs[i] = aligned_alloc64(in_bytes);
        if (!*bufs[i]) break;
        memcpy(*bufs[i], t[i]->data, in_bytes); /* unaligned map -> aligned buffer */
    }
    j->o = aligned_alloc64(o_elems * sizeof(float));
    j->lse = aligned_alloc64(lse_elems * sizeof(float));
    if (!j->q || !j->k || !j->v || !j->o || !j->lse) {
        cli_error(CMD, "out of memory for %zu-byte tensors", in_bytes);
        return CLI_RUNTIME;
    }

    const double t0 = now_s();
    cd_status s = reference ? cd_attention_reference(j->ctx, d, dt, j->q, j->k, j->v, j->sw, j->o, j->lse)
                            : cd_attention_forward(j->ctx, d, dt, j->q, j->k, j->v, j->sw, j->o, j->lse);
    const double secs = now_s() - t0;
    if (s) {
        cli_error(CMD, "%s", cd_ctx_error(j->ctx));
        return s == CD_ERR_INVALID_ARG || s == CD_ERR_SHAPE ? CLI_BAD_INPUT : CLI_RUNTIME;
    }

    /* Metadata records how the output was made; the scale is the one actually used. */
    const float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim);
    char grid[48], tl[16], rad[16], dn[16], sc[32];
    snprintf(grid, sizeof grid, "%dx%d", d->grid_h, d->grid_w);
    snprintf(tl, sizeof tl, "%d", d->text_len);
    snprintf(rad, sizeof rad, "%d", d->radius);
    snprintf(dn, sizeof dn, "%d", d->down);
    snprintf(sc, sizeof sc, "%.9g", (double)scale);
    const char *isa = reference ? "none" : cd_isa_name(cd_ctx_isa(j->ctx));
    const char *meta[] = {"grid",     grid,
                          "text_len", tl,
                          "radius",   rad,
                          "down",     dn,
                          "scale",    sc,
                          "dtype",    cd_dtype_name(dt),
                          "kernel",   reference ? "reference" : "forward",
                          "isa",      isa,
                          "producer", "cleardit " CLEARDIT_VERSION};
    cd_st_out outs[2] = {
        {"o", CD_DTYPE_F32, 3, {d->heads, (int64_t)ntok, d->head_dim}, j->o},
        {"lse", CD_DTYPE_F32, 2, {d->heads, (int64_t)ntok}, j->lse},
    };
    s = cd_st_write(j->ctx, out, outs, 2, meta, sizeof meta / sizeof meta[0] / 2);
    if (s) {
        cli_error(CMD, "%s", cd_ctx_error(j->ctx));
        return CLI_RUNTIME;
    }

    if (!quiet) {
        char mode[48];
        if (d->radius == 0)
            snprintf(mode, sizeof mode, "dense");
        else if (d->down >= 2)
            snprintf(mode, sizeof mode, "CLEAR r=%d d=%d", d->radius, d->down);
        else
            snprintf(mode, sizeof mode, "CLEAR r=%d", d->radius);
        const double gflop = cd_attn_flops(d) / 1e9;
        fprintf(stderr,
                "cleardit attention: %d heads x %zu tokens (text %d + grid %dx%d) x %d, %s, %s, "
                "%s/%s, %d threads: %.3f ms, %.2f GFLOP/s -> %s\n",
                d->heads, ntok, d->text_len, d->grid_h, d->grid_w, d->head_dim, cd_dtype_name(dt), mode,
                reference ? "reference" : "forward", isa, cd_ctx_threads(j->ctx), secs * 1e3,
                secs > 0 ? gflop / secs : 0.0, out);
    }
    return CLI_OK;
}

/* The command's flags, checked. */
typedef struct {
    const char *in, *out;
    int64_t gh, gw, text_len, radius, down, threads;
    double scale;
    cd_isa isa;
    int reference, quiet;
} attn_args;

/* Parses and checks every flag (the output path included) before any file is opened; with
 * --help prints the usage and sets *help. Returns CLI_OK or CLI_BAD_INPUT (the error printed). */
static int parse_args(int argc, char **argv, attn_args *a, int *help) {
    const char *grid = NULL, *isa_name = "auto";
    *a = (attn_args){0};
    cli_opt opts[] = {
        {"--in", CLI_OPT_STRING, &a->in, 0, 0, 0, 0, 0},
        {"--out", CLI_OPT_STRING, &a->out, 0, 0, 0, 0, 0},
        {"--grid", CLI_OPT_STRING, &grid, 0, 0, 0, 0, 0},
        {"--text-len", CLI_OPT_INT, &a->text_len, 0, INT32_MAX, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &a->radius, INT32_MIN, INT32_MAX, 0, 0, 0}, /* sign checked below */
        {"--down", CLI_OPT_INT, &a->down, INT32_MIN, INT32_MAX, 0, 0, 0},
        {"--scale", CLI_OPT_FLOAT, &a->scale, 0, 0, 0.0, 1e30, 0},
        {"--threads", CLI_OPT_INT, &a->threads, 0, 4096, 0, 0, 0},
        {"--isa", CLI_OPT_STRING, &isa_name, 0, 0, 0, 0, 0},
        {"--reference", CLI_OPT_SWITCH, &a->reference, 0, 0, 0, 0, 0},
        {"--quiet", CLI_OPT_SWITCH, &a->quiet, 0, 0, 0, 0, 0},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_flags(CMD, argc, argv, opts, nopts, help)) return CLI_BAD_INPUT;
    if (*help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    static const char *const required[] = {"--in", "--out", "--grid", "--text-len"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!cli_find_opt(opts, nopts, required[i])->seen) {
            cli_error(CMD, "missing required option %s (see 'cleardit attention --help')", required[i]);
            return CLI_BAD_INPUT;
        }
    int r = cli_parse_pair(grid, 1, 1 << 20, &a->gh, &a->gw);
    if (r) {
        cli_error(CMD,
                  r == -1 ? "invalid --grid '%s': expected HxW, e.g. 64x64"
                          : "invalid --grid '%s': sides must be in 1..1048576",
                  grid);
        return CLI_BAD_INPUT;
    }
    const int has_radius = cli_find_opt(opts, nopts, "--radius")->seen;
    const int has_down = cli_find_opt(opts, nopts, "--down")->seen;
    if (has_radius && a->radius <= 0) {
        cli_error(CMD, "--radius must be >= 1 (omit it for dense attention), got %lld", (long long)a->radius);
        return CLI_BAD_INPUT;
    }
    if (has_down && !has_radius) {
        cli_error(CMD, "--down needs --radius (pooled keys are part of CLEAR)");
        return CLI_BAD_INPUT;
    }
    if (has_down && a->down < 1) {
        cli_error(CMD, "--down must be >= 1, got %lld", (long long)a->down);
        return CLI_BAD_INPUT;
    }
    if (!parse_isa(isa_name, &a->isa)) {
        cli_error(CMD, "unknown --isa '%s' (expected auto, generic, avx2 or avx512)", isa_name);
        return CLI_BAD_INPUT;
    }
    if (!cd_isa_supported(a->isa)) {
        cli_error(CMD, "--isa %s is not supported on this CPU", isa_name);
        return CLI_BAD_INPUT;
    }
    return cli_check_output_path(CMD, a->out);
}

/* The context, the input file and its tensors, checked against the flags into *d (and the
 * spatial weight with --down >= 2). Returns CLI_OK, or the exit code after printing why. */
static int open_input(attn_job *j, const attn_args *a, cd_attn_desc *d, const cd_st_tensor *t[3]) {
    cd_ctx_params cp = {(int)a->threads, a->isa};
    cd_status s = cd_ctx_create(&cp, &j->ctx);
    if (s) {
        cli_error(CMD, "cannot create a context: %s", cd_status_str(s));
        return CLI_RUNTIME;
    }
    s = cd_st_open(j->ctx, a->in, &j->in);
    if (s) {
        cli_error(CMD, "%s", cd_ctx_error(j->ctx)); /* names the file and the reason */
        return s == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
    }
    int rc = check_qkv(a->in, j->in, t);
    if (rc) return rc;
    *d = (cd_attn_desc){(int32_t)t[0]->shape[0], (int32_t)t[0]->shape[2], (int32_t)a->text_len, (int32_t)a->gh,
                        (int32_t)a->gw,          (int32_t)a->radius,      (int32_t)a->down,     (float)a->scale};
    const int64_t want = a->text_len + a->gh * a->gw;
    if (t[0]->shape[1] != want) {
        cli_error(CMD, "grid %lldx%lld + text %lld = %lld tokens but q has %lld", (long long)a->gh, (long long)a->gw,
                  (long long)a->text_len, (long long)want, (long long)t[0]->shape[1]);
        return CLI_BAD_INPUT;
    }
    if (cd_attn_validate(j->ctx, d)) { /* head counts, divisibility by --down, ... */
        cli_error(CMD, "%s", cd_ctx_error(j->ctx));
        return CLI_BAD_INPUT;
    }
    if (d->down >= 2) return load_spatial_weight(j->ctx, a->in, j->in, d->down, &j->sw);
    return CLI_OK;
}

int cmd_attention(int argc, char **argv) {
    attn_args a;
    int help = 0, rc = parse_args(argc, argv, &a, &help);
    if (rc || help) return rc;
    attn_job j = {0};
    cd_attn_desc d;
    const cd_st_tensor *t[3];
    if ((rc = open_input(&j, &a, &d, t)) == CLI_OK)
        rc = run_and_write(&j, &d, t[0]->dtype, t, a.out, a.reference, a.quiet);
    job_free(&j);
    return rc;
}
