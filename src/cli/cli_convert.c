/* cli_convert.c — `cleardit convert`: rewrites a FLUX transformer or FLUX autoencoder checkpoint
 * with BFL or diffusers names as one .safetensors file (cd_ckpt_convert_progress), optionally
 * converting the dtype and merging a CLEAR file's trained slices. Every check on the flags and
 * the inputs happens before the output is created, and the library writes atomically, so bad
 * input exits 2 with one line and leaves no file behind. Long conversions report progress on
 * stderr (a line per 10%); small ones stay quiet apart from the summary. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"

#define CMD "convert"
#define PROGRESS_MIN_BYTES (256ull << 20) /* below this a conversion takes about a second */

static const char k_usage[] =
    "usage: cleardit convert IN OUT --layout bfl|diffusers [--dtype bf16|f32]\n"
    "                        [--merge-clear CLEAR.safetensors] [--quiet]\n"
    "\n"
    "Rewrites a FLUX transformer or FLUX autoencoder checkpoint as one .safetensors file OUT\n"
    "with BFL names (flux/model.py, autoencoder.py) or diffusers names (FluxTransformer2DModel,\n"
    "AutoencoderKL). IN is a .safetensors file, a sharded *.safetensors.index.json or a\n"
    "directory; its layout and config are detected from the tensors (see 'cleardit inspect'),\n"
    "and it must match them exactly (no unknown, missing or wrong-shaped tensors).\n"
    "Fused BFL tensors are split or joined (double blocks: img_attn.qkv <-> attn.to_q/to_k/to_v,\n"
    "txt_attn.qkv <-> attn.add_q/k/v_proj; single blocks: linear1 <-> attn.to_q/to_k/to_v +\n"
    "proj_mlp), the final adaLN halves are swapped ([shift|scale] <-> [scale|shift]), and the\n"
    "autoencoder's mid attention 1x1 convs become linears and back. Every value is copied\n"
    "bit for bit unless --dtype converts it.\n"
    "\n"
    "options:\n"
    "  --layout NAME        bfl or diffusers (required); the model kind stays the same\n"
    "  --dtype NAME         bf16 (round to nearest even) or f32 (exact), from F32, BF16, F16,\n"
    "                       F8_E4M3 or F8_E5M2; default: keep each tensor's dtype\n"
    "  --merge-clear PATH   a CLEAR attention file (diffusers names, as distilled): its tensors\n"
    "                       overwrite exactly the trained slices of the base transformer (double\n"
    "                       blocks: image q, k, v = rows 0..3*hidden-1 of img_attn.qkv, and\n"
    "                       img_attn.proj; single blocks: q, k, v = rows 0..3*hidden-1 of\n"
    "                       linear1; weights and biases) and nothing else; they take the base\n"
    "                       tensor's dtype unless --dtype is given. Its hidden size and block\n"
    "                       counts must match the model. Its spatial_weight tensors, if any, are\n"
    "                       written under their diffusers names\n"
    "                       ([single_]transformer_blocks.N.attn.processor.spatial_weight) and\n"
    "                       shapes in either layout\n"
    "  --quiet              no progress or summary on stderr\n"
    "  -h, --help           show this help\n"
    "\n"
    "OUT is written to a temporary file next to it, synced and renamed: it is never left\n"
    "half-written, and on any error no file is left behind. Memory stays about one tensor (the\n"
    "largest output tensor) whatever the checkpoint size. On stderr: a progress line per 10%\n"
    "for inputs of 256 MB or more, then a one-line summary (nothing with --quiet).\n"
    "Exit status: 0 ok, 1 runtime failure (e.g. the write failed), 2 bad input.\n";

typedef struct {
    int enabled;
    int next_pct; /* next 10% step to report */
    struct timespec t0;
} progress_state;

static double since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void on_progress(void *user, uint64_t done, uint64_t total) {
    progress_state *p = user;
    if (!p->enabled || !total) return;
    const int pct = (int)(100.0 * (double)done / (double)total);
    if (pct < p->next_pct) return;
    fprintf(stderr, "cleardit convert: %3d%%  %.2f of %.2f GB  %.1f s\n", pct, (double)done / 1e9, (double)total / 1e9,
            since(&p->t0));
    p->next_pct = pct / 10 * 10 + 10;
}

/* The output's directory must exist and OUT must not be a directory. */
static int check_out_path(const char *out) {
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_error(CMD, "output '%s' is a directory", out);
        return CLI_BAD_INPUT;
    }
    char *copy = strdup(out);
    if (!copy) {
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    const char *dir = dirname(copy);
    int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    if (!ok) cli_error(CMD, "cannot write '%s': directory '%s' does not exist", out, dir);
    free(copy);
    return ok ? CLI_OK : CLI_BAD_INPUT;
}

int cmd_convert(int argc, char **argv) {
    const char *layout = NULL, *dtype_name = NULL, *clear_path = NULL;
    int quiet = 0, help = 0, npos = 0;
    cli_opt opts[] = {
        {"--layout", CLI_OPT_STRING, &layout, 0, 0, 0, 0, 0},
        {"--dtype", CLI_OPT_STRING, &dtype_name, 0, 0, 0, 0, 0},
        {"--merge-clear", CLI_OPT_STRING, &clear_path, 0, 0, 0, 0, 0},
        {"--quiet", CLI_OPT_SWITCH, &quiet, 0, 0, 0, 0, 0},
    };
    const char *pos[2];
    if (cli_parse_args(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], &help, pos, 2, &npos)) return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (npos != 2) {
        cli_error(CMD, "expected IN and OUT (see 'cleardit convert --help')");
        return CLI_BAD_INPUT;
    }
    if (!layout) {
        cli_error(CMD, "missing required option --layout bfl|diffusers");
        return CLI_BAD_INPUT;
    }
    int diffusers;
    if (!strcmp(layout, "bfl"))
        diffusers = 0;
    else if (!strcmp(layout, "diffusers"))
        diffusers = 1;
    else {
        cli_error(CMD, "unknown --layout '%s' (expected bfl or diffusers)", layout);
        return CLI_BAD_INPUT;
    }
    cd_dtype dtype = CD_DTYPE_COUNT;
    if (dtype_name) {
        if (!strcasecmp(dtype_name, "bf16"))
            dtype = CD_DTYPE_BF16;
        else if (!strcasecmp(dtype_name, "f32"))
            dtype = CD_DTYPE_F32;
        else {
            cli_error(CMD, "unknown --dtype '%s' (expected bf16 or f32)", dtype_name);
            return CLI_BAD_INPUT;
        }
    }
    int rc = check_out_path(pos[1]);
    if (rc) return rc;

    cd_ctx *ctx;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 1;
    cd_status s = cd_ctx_create(&cp, &ctx);
    if (s) {
        cli_error(CMD, "cannot create a context: %s", cd_status_str(s));
        return CLI_RUNTIME;
    }
    cd_ckpt *in = NULL, *clear = NULL;
    cd_ckpt_info info;
    memset(&info, 0, sizeof info);
    if ((s = cd_ckpt_open(ctx, pos[0], &in)) || (s = cd_ckpt_inspect(ctx, in, &info)) ||
        (clear_path && (s = cd_ckpt_open(ctx, clear_path, &clear)))) {
        cli_error(CMD, "%s", cd_ctx_error(ctx)); /* names the file and the reason */
        rc = s == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
        goto done;
    }
    /* The kind of model decides the target; the library rejects what is neither. */
    const int ae = info.layout == CD_LAYOUT_AE_BFL || info.layout == CD_LAYOUT_AE_DIFFUSERS;
    const cd_layout to = ae ? (diffusers ? CD_LAYOUT_AE_DIFFUSERS : CD_LAYOUT_AE_BFL)
                            : (diffusers ? CD_LAYOUT_FLUX_DIFFUSERS : CD_LAYOUT_FLUX_BFL);
    progress_state ps = {!quiet && info.bytes >= PROGRESS_MIN_BYTES, 10, {0, 0}};
    clock_gettime(CLOCK_MONOTONIC, &ps.t0);
    s = cd_ckpt_convert_progress(ctx, in, pos[1], to, dtype, clear, on_progress, &ps);
    if (s) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        /* the inputs are open and valid by now: what remains is the write (or a bug) */
        rc = s == CD_ERR_IO || s == CD_ERR_OOM || s == CD_ERR_INTERNAL ? CLI_RUNTIME : CLI_BAD_INPUT;
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "cleardit convert: %s (%s) -> %s (%s%s%s), %zu tensors in, %.2f GB, %.1f s\n", pos[0],
                cd_layout_name(info.layout), pos[1], cd_layout_name(to), dtype == CD_DTYPE_COUNT ? "" : ", ",
                dtype == CD_DTYPE_COUNT ? "" : cd_dtype_name(dtype), cd_ckpt_count(in), (double)info.bytes / 1e9,
                since(&ps.t0));
    if (!quiet && clear) fprintf(stderr, "cleardit convert: merged CLEAR file %s\n", clear_path);
done:
    cd_ckpt_info_free(&info);
    cd_ckpt_close(clear);
    cd_ckpt_close(in);
    cd_ctx_free(ctx);
    return rc;
}
