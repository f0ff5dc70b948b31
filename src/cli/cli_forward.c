/* cli_forward.c — `cleardit forward`: one FLUX transformer forward on inputs from a safetensors
 * file, dense or CLEAR attention, output written atomically. Validates every input against the
 * model before running; a thin layer over cd_pipeline_open (load, device, parallel) / cd_flux_run. */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char *k_usage =
    "usage: cleardit forward --model CKPT --inputs IN.safetensors --out OUT.safetensors\n"
    "                        [--attention dense|clear] [--radius R] [--down D]\n"
    "                        [--clear-weights FILE] [--threads N] [--device cpu|cuda] [--rope-axes A,B,C]\n"
    "                        [--parallel patch [--text-attention exact|approx] [--comm-timeout S]]\n"
    "                        [--rope-theta X] [--verbose] [--quiet]\n"
    "\n"
    "Runs the FLUX transformer once. CKPT is a .safetensors file, a sharded index or a directory,\n"
    "with BFL or diffusers names; the config is inferred from the tensor shapes.\n"
    "\n"
    "IN holds (a leading batch dimension B on img/txt/pooled/timestep/guidance means a batch):\n"
    "  img [L, in_channels]   txt [T, context_dim]   pooled [pooled_dim]\n"
    "  img_ids [L, 3]   txt_ids [T, 3]   timestep [1] in 0..1 (x1000 inside, as diffusers)\n"
    "  guidance [1] (guidance-embedded models only; also x1000 inside)\n"
    "OUT holds out [L, out_channels] (or [B, L, out_channels]), F32.\n"
    "\n"
    "options:\n"
    "  --model PATH          transformer checkpoint\n"
    "  --inputs PATH         input tensors\n"
    "  --out PATH            output file (written atomically)\n"
    "  --attention MODE      dense (default) or clear (default when --radius is given)\n"
    "  --radius R            CLEAR radius in tokens (>= 1); the grid comes from img_ids, which must\n"
    "                        be a full H x W rectangle in row-major order\n"
    "  --down D              pooled keys (needs CLEAR weights with spatial_weight of side D)\n"
    "  --clear-weights FILE  CLEAR attention weights overwriting the trained projections\n"
    "  --threads N           threads (default: all cores)\n"
    "  --parallel patch      split the image across the processes of an MPI job (mpirun -np P) by\n"
    "                        bands of token rows with K/V halo exchange (CLEAR only; rank 0 writes)\n"
    "  --text-attention M    with --parallel: exact (default; equals one process) or approx (Eq. 7)\n"
    "  --comm-timeout S      with --parallel: seconds to wait for another rank (default 300)\n"
    "  --device cpu|cuda     where the transformer runs (default cpu; cuda: an NVIDIA GPU, sm_80+,\n"
    "                        with BF16 weights and tensor-core attention)\n"
    "  --rope-axes A,B,C     RoPE axes when neither config.json nor metadata has them\n"
    "  --rope-theta X        RoPE theta in that case (default 10000)\n"
    "  --verbose             print weight, arena and peak memory, the RoPE source, timings\n"
    "  --quiet               print nothing on success\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input.\n";

typedef struct {
    const cd_st_tensor *t;
    float *f; /* converted to f32, 64-byte aligned */
} input;

static int load_input(cd_ctx *ctx, const cd_st_file *f, const char *name, int required, input *in) {
    in->t = cd_st_find(f, name);
    in->f = NULL;
    if (!in->t) {
        if (required) cli_error("forward", "inputs: missing tensor '%s'", name);
        return required ? CLI_BAD_INPUT : CLI_OK;
    }
    const uint64_t n = cd_st_numel(in->t);
    in->f = aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63);
    if (!in->f) {
        cli_error("forward", "out of memory reading '%s'", name);
        return CLI_RUNTIME;
    }
    if (cd_st_to_f32(ctx, in->t, in->f) != CD_OK) {
        cli_error("forward", "inputs: tensor '%s': %s", name, cd_ctx_error(ctx));
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

/* Checks t's shape is [B?, d1, d2] (d2 = 0: [B?, d1]) and returns the batch (1 without it). */
static int64_t batch_of(const input *in, const char *name, int64_t d1, int64_t d2, int64_t *dims1) {
    const cd_st_tensor *t = in->t;
    const int core = d2 ? 2 : 1, nd = t->ndim;
    if (nd != core && nd != core + 1) {
        cli_error("forward", "inputs: '%s' must have %d or %d dimensions (got %d)", name, core, core + 1, nd);
        return -1;
    }
    const int64_t b = nd == core + 1 ? t->shape[0] : 1;
    const int64_t s1 = t->shape[nd - core], s2 = d2 ? t->shape[nd - 1] : 0;
    if ((d1 > 0 && s1 != d1) || (d2 && s2 != d2)) {
        cli_error("forward", "inputs: '%s' is %s[%lld%s%lld], the model needs [%s%lld%s%lld]", name,
                  nd == core + 1 ? "batched " : "", (long long)s1, d2 ? ", " : "", (long long)s2, d1 > 0 ? "" : "N, ",
                  (long long)(d1 > 0 ? d1 : s1), d2 ? ", " : "", (long long)d2);
        return -1;
    }
    if (dims1) *dims1 = s1;
    return b;
}

/* The flags. */
typedef struct {
    const char *model_p, *in_p, *out_p, *mode, *clear_p, *axes_s, *device_s, *par_s, *text_s;
    int64_t radius, down, threads;
    double theta, ctimeout;
    int verbose, quiet, help, clear, dev, text_mode, rope_axes[3];
} fwd_args;

/* The inputs, converted, with the sizes and grid they imply. */
typedef struct {
    input img, txt, pooled, iid, tid, ts, gd;
    int64_t B, L, T, gh, gw;
    int grid_ok;
} fwd_inputs;

static int parse_args(int argc, char **argv, fwd_args *a) {
    memset(a, 0, sizeof *a);
    a->ctimeout = 300;
    cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &a->model_p, 0, 0, 0, 0, 0},
        {"--inputs", CLI_OPT_STRING, &a->in_p, 0, 0, 0, 0, 0},
        {"--out", CLI_OPT_STRING, &a->out_p, 0, 0, 0, 0, 0},
        {"--attention", CLI_OPT_STRING, &a->mode, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &a->radius, 1, 1 << 20, 0, 0, 0},
        {"--down", CLI_OPT_INT, &a->down, 2, 64, 0, 0, 0},
        {"--clear-weights", CLI_OPT_STRING, &a->clear_p, 0, 0, 0, 0, 0},
        {"--threads", CLI_OPT_INT, &a->threads, 1, 4096, 0, 0, 0},
        {"--device", CLI_OPT_STRING, &a->device_s, 0, 0, 0, 0, 0},
        {"--parallel", CLI_OPT_STRING, &a->par_s, 0, 0, 0, 0, 0},
        {"--text-attention", CLI_OPT_STRING, &a->text_s, 0, 0, 0, 0, 0},
        {"--comm-timeout", CLI_OPT_FLOAT, &a->ctimeout, 0, 0, 0.1, 1e6, 0},
        {"--rope-axes", CLI_OPT_STRING, &a->axes_s, 0, 0, 0, 0, 0},
        {"--rope-theta", CLI_OPT_FLOAT, &a->theta, 0, 0, 1e-6, 1e12, 0},
        {"--verbose", CLI_OPT_SWITCH, &a->verbose, 0, 0, 0, 0, 0},
        {"--quiet", CLI_OPT_SWITCH, &a->quiet, 0, 0, 0, 0, 0},
    };
    if (cli_parse_flags("forward", argc, argv, opts, sizeof opts / sizeof opts[0], &a->help)) return CLI_BAD_INPUT;
    if (a->help) return CLI_OK;
    if (!a->model_p || !a->in_p || !a->out_p) {
        cli_error("forward", "--model, --inputs and --out are required (see --help)");
        return CLI_BAD_INPUT;
    }
    if (cli_attention_opts("forward", a->mode, a->radius, a->down, a->axes_s, &a->clear, a->rope_axes))
        return CLI_BAD_INPUT;
    if (cli_check_output_path("forward", a->out_p)) return CLI_BAD_INPUT;
    if (a->par_s && !a->clear) {
        cli_error("forward", "--parallel patch needs CLEAR attention (--attention clear / --radius R): with dense "
                             "attention every image token needs every key on every process");
        return CLI_BAD_INPUT;
    }
    if (cli_parse_device("forward", a->device_s, &a->dev)) return CLI_BAD_INPUT;
    if (cli_parse_parallel("forward", a->par_s, a->text_s, &a->text_mode)) return CLI_BAD_INPUT;
    return CLI_OK;
}

/* Reads and checks the inputs against the model: shapes, batch sizes, the grid of img_ids. */
static int read_inputs(cd_ctx *ctx, const cd_st_file *inf, const cd_flux_config *c, const fwd_args *a, int quiet,
                       fwd_inputs *in) {
    int rc;
    if ((rc = load_input(ctx, inf, "img", 1, &in->img)) || (rc = load_input(ctx, inf, "txt", 1, &in->txt)) ||
        (rc = load_input(ctx, inf, "pooled", 1, &in->pooled)) || (rc = load_input(ctx, inf, "img_ids", 1, &in->iid)) ||
        (rc = load_input(ctx, inf, "txt_ids", 1, &in->tid)) || (rc = load_input(ctx, inf, "timestep", 1, &in->ts)) ||
        (rc = load_input(ctx, inf, "guidance", c->guidance, &in->gd)))
        return rc;
    int64_t L = 0, T = 0, L2 = 0, T2 = 0;
    const int64_t B = batch_of(&in->img, "img", 0, c->in_channels, &L);
    const int64_t Bt = B < 0 ? -1 : batch_of(&in->txt, "txt", 0, c->context_dim, &T);
    const int64_t Bp = Bt < 0 ? -1 : batch_of(&in->pooled, "pooled", c->pooled_dim, 0, NULL);
    if (B < 0 || Bt < 0 || Bp < 0 || batch_of(&in->iid, "img_ids", L, 3, &L2) < 0 ||
        batch_of(&in->tid, "txt_ids", T, 3, &T2) < 0)
        return CLI_BAD_INPUT;
    if (in->iid.t->ndim != 2 || in->tid.t->ndim != 2) {
        cli_error("forward", "inputs: img_ids and txt_ids are [L, 3] and [T, 3] (shared by the batch)");
        return CLI_BAD_INPUT;
    }
    const input *ts = &in->ts, *gd = &in->gd;
    if (Bt != B || Bp != B || (int64_t)cd_st_numel(ts->t) != B || (gd->t && (int64_t)cd_st_numel(gd->t) != B)) {
        cli_error("forward", "inputs: batch sizes differ (img %lld, txt %lld, pooled %lld, timestep %llu%s)",
                  (long long)B, (long long)Bt, (long long)Bp, (unsigned long long)cd_st_numel(ts->t),
                  gd->t ? ", guidance too" : "");
        return CLI_BAD_INPUT;
    }
    if (!c->guidance && gd->t && !quiet)
        fprintf(stderr, "cleardit forward: note: the model has no guidance embedder; 'guidance' is ignored\n");
    /* the image grid from img_ids: (., row, col) must enumerate a full rectangle row-major */
    const float *ids = in->iid.f;
    int64_t gw = 0;
    for (int64_t i = 0; i < L; i++)
        if ((int64_t)ids[i * 3 + 2] + 1 > gw) gw = (int64_t)ids[i * 3 + 2] + 1;
    int64_t gh = gw > 0 ? L / gw : 0;
    int grid_ok = gw > 0 && gh * gw == L;
    for (int64_t i = 0; i < L && grid_ok; i++)
        grid_ok = ids[i * 3 + 1] == (float)(i / gw) && ids[i * 3 + 2] == (float)(i % gw);
    if (a->clear && !grid_ok) {
        cli_error("forward", "inputs: img_ids are not a full H x W grid in row-major order (token i must "
                             "sit at row i / W, column i %% W); CLEAR needs the grid");
        return CLI_BAD_INPUT;
    }
    in->B = B, in->L = L, in->T = T, in->gh = gh, in->gw = gw, in->grid_ok = grid_ok;
    return CLI_OK;
}

/* Writes out [B?, L, out_channels] with the run's settings as metadata (rank 0) and reports. */
static int write_output(cd_ctx *ctx, cd_flux_model *m, const fwd_args *a, const fwd_inputs *in, const float *out,
                        int rank, int quiet, int verbose, double secs) {
    const cd_flux_config *c = cd_flux_model_config(m);
    char mbuf[64], rbuf[32], dbuf[32], ax[32];
    int axes[3];
    double th;
    const char *src;
    cd_flux_model_rope(m, axes, &th, &src);
    snprintf(mbuf, sizeof mbuf, "%s", a->clear ? "clear" : "dense");
    snprintf(rbuf, sizeof rbuf, "%lld", (long long)a->radius);
    snprintf(dbuf, sizeof dbuf, "%lld", (long long)a->down);
    snprintf(ax, sizeof ax, "%d,%d,%d", axes[0], axes[1], axes[2]);
    const char *meta[] = {"producer", "cleardit forward", "attention", mbuf, "radius", rbuf, "down",
                          dbuf,       "rope_axes",        ax};
    cd_st_out o = {"out", CD_DTYPE_F32, in->B > 1 || in->img.t->ndim == 3 ? 3 : 2, {0}, out};
    if (o.ndim == 3) {
        o.shape[0] = in->B;
        o.shape[1] = in->L;
        o.shape[2] = c->out_channels;
    } else {
        o.shape[0] = in->L;
        o.shape[1] = c->out_channels;
    }
    if (rank == 0 && cd_st_write(ctx, a->out_p, &o, 1, meta, 5) != CD_OK) {
        cli_error("forward", "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    if (!quiet)
        fprintf(stderr, "cleardit forward: %lld x (%lld image + %lld text tokens), %s%s, %.3f s -> %s\n",
                (long long)in->B, (long long)in->L, (long long)in->T, a->clear ? "CLEAR r=" : "dense",
                a->clear ? rbuf : "", secs, a->out_p);
    if (verbose) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "  model      hidden %d, %d x %d heads, %d double + %d single blocks%s\n", c->hidden, c->heads,
                c->head_dim, c->depth, c->depth_single, c->guidance ? ", guidance" : "");
        fprintf(stderr, "  rope       axes %s, theta %g (from %s)\n", ax, th, src);
        fprintf(stderr, "  memory     weights %.1f MB (mapped), arena %.1f MB, peak RSS %.1f MB\n",
                cd_flux_weight_bytes(m) / 1e6, cd_flux_arena_bytes(m) / 1e6, ru.ru_maxrss / 1024.0);
    }
    return CLI_OK;
}

/* Every batch entry through the transformer, timed. */
static int run_batch(cd_ctx *ctx, cd_flux_model *m, const fwd_args *a, const fwd_inputs *in, float *out, double *secs) {
    const cd_flux_config *c = cd_flux_model_config(m);
    const size_t per = (size_t)in->L * (size_t)c->out_channels, L = (size_t)in->L, T = (size_t)in->T;
    const double t0 = cli_now();
    for (int64_t b = 0; b < in->B; b++) {
        cd_flux_run_params p = {in->img.f + (size_t)b * L * c->in_channels,
                                in->txt.f + (size_t)b * T * c->context_dim,
                                in->pooled.f + (size_t)b * c->pooled_dim,
                                in->iid.f,
                                in->tid.f,
                                in->ts.f[b],
                                in->gd.f ? in->gd.f[b] : 0.0f,
                                (int32_t)L,
                                (int32_t)T,
                                (int32_t)(in->grid_ok ? in->gh : 1),
                                (int32_t)(in->grid_ok ? in->gw : in->L),
                                a->clear ? (int32_t)a->radius : 0,
                                (int32_t)a->down,
                                NULL,
                                0,
                                0};
        const cd_status st = cd_flux_run(ctx, m, &p, out + (size_t)b * per);
        if (st != CD_OK) {
            cli_error("forward", "%s", cd_ctx_error(ctx));
            return (st == CD_ERR_OOM || st == CD_ERR_INTERNAL) ? CLI_RUNTIME : CLI_BAD_INPUT;
        }
    }
    *secs = cli_now() - t0;
    return CLI_OK;
}

int cmd_forward(int argc, char **argv) {
    fwd_args a;
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
        cli_error("forward", "cannot create a context");
        return CLI_RUNTIME;
    }
    cd_comm *comm = NULL; /* --parallel patch: MPI's world; rank 0 writes */
    if (a.par_s && (rc = cli_parallel_start("forward", ctx, argc, argv, a.ctimeout, &comm))) {
        cd_ctx_free(ctx);
        return rc;
    }
    const int rank = comm ? cd_comm_rank(comm) : 0, quiet = a.quiet || rank, verbose = a.verbose && !rank;
    cd_pipeline *pl = NULL;
    cd_st_file *inf = NULL;
    fwd_inputs in;
    memset(&in, 0, sizeof in);
    float *out = NULL;
    double secs = 0;
    if (comm && a.dev == CD_DEVICE_CUDA) cli_pick_gpu();
    if ((rc = cli_open_device("forward", ctx, a.dev))) goto done;
    cd_pipeline_params pp = cd_pipeline_params_default(); /* the transformer alone */
    pp.model = a.model_p;
    pp.clear_weights = a.clear_p;
    memcpy(pp.rope_axes, a.rope_axes, sizeof pp.rope_axes);
    pp.rope_theta = a.theta;
    pp.device = (cd_device)a.dev;
    pp.comm = comm;
    pp.text_attention = (cd_text_attention)a.text_mode;
    cd_status st = cd_pipeline_open(ctx, &pp, &pl);
    if (st != CD_OK) {
        cli_error("forward", "%s", cd_ctx_error(ctx));
        rc = st == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
        goto done;
    }
    cd_flux_model *m = cd_pipeline_model(pl);
    if (cd_st_open(ctx, a.in_p, &inf) != CD_OK) {
        cli_error("forward", "%s", cd_ctx_error(ctx));
        rc = CLI_BAD_INPUT;
        goto done;
    }
    if ((rc = read_inputs(ctx, inf, cd_flux_model_config(m), &a, quiet, &in))) goto done;
    out = malloc((size_t)in.L * (size_t)cd_flux_model_config(m)->out_channels * (size_t)in.B * sizeof(float) + 1);
    if (!out) {
        cli_error("forward", "out of memory for the output");
        rc = CLI_RUNTIME;
        goto done;
    }
    if (!(rc = run_batch(ctx, m, &a, &in, out, &secs)))
        rc = write_output(ctx, m, &a, &in, out, rank, quiet, verbose, secs);
done:
    free(in.img.f);
    free(in.txt.f);
    free(in.pooled.f);
    free(in.iid.f);
    free(in.tid.f);
    free(in.ts.f);
    free(in.gd.f);
    free(out);
    cd_st_close(inf);
    cd_pipeline_free(pl);
    cli_parallel_end(comm, rc); /* on an error: ends the whole job, no rank left waiting */
    cd_ctx_free(ctx);
    return rc;
}
