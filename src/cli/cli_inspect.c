/* cli_inspect.c — `cleardit inspect`: what a checkpoint is (layout, config inferred from the
 * shapes, sizes, dtypes) and how it compares with what that layout and config expect (unknown,
 * missing and wrong-shaped tensors), from cd_ckpt_open + cd_ckpt_inspect. Reads headers only:
 * inspecting a 24 GB checkpoint costs its headers, not its weights. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"

#define CMD "inspect"

static const char k_usage[] =
    "usage: cleardit inspect PATH [--json] [--tensors]\n"
    "\n"
    "Describes a checkpoint without reading its tensor data. PATH is a .safetensors file, a\n"
    "sharded *.safetensors.index.json, or a directory holding one of them; known key prefixes\n"
    "(e.g. \"model.diffusion_model.\") are stripped. Prints:\n"
    "  layout       flux-bfl, flux-diffusers, ae-bfl, ae-diffusers, clear, t5-encoder,\n"
    "               clip-text or unknown\n"
    "  config       inferred from the tensor shapes alone (transformer: hidden, heads x head_dim,\n"
    "               double + single blocks, mlp, in/out channels, context and pooled dims,\n"
    "               guidance embedder; autoencoder: ch, ch_mult, num_res_blocks, z, in/out\n"
    "               channels, encoder/decoder; CLEAR file: hidden, blocks, spatial_weight side);\n"
    "               text encoders (transformers' names: diffusers' text_encoder_2/ and\n"
    "               text_encoder/, ComfyUI's t5xxl_*.safetensors and clip_l.safetensors) from the\n"
    "               shapes and a config.json beside the weights when there is one (T5: vocab,\n"
    "               d_model, heads x d_kv, d_ff, layers, buckets, max distance, scaled fp8; CLIP:\n"
    "               vocab, hidden, heads, intermediate, layers, positions, activation), with the\n"
    "               linear weights' dtype; a config.json that disagrees is listed under wrong shape\n"
    "  tensors, parameters, bytes, dtypes\n"
    "  unknown      tensors that layout and config do not have\n"
    "  missing      tensors that layout and config need but the checkpoint lacks\n"
    "  wrong shape  tensors whose shape differs from the expected one (got / want)\n"
    "Each of the last three is counted and its names listed.\n"
    "\n"
    "options:\n"
    "  --json       print one JSON object instead: path, files, prefix, layout, config (an\n"
    "               object, or null when the layout is unknown or the config cannot be\n"
    "               inferred), n_tensors, params, bytes, dtypes {DTYPE: tensors}, n_unknown,\n"
    "               unknown [], n_missing, missing [], n_bad_shape, bad_shape []\n"
    "               (\"name: got [..] want [..]\"), and with --tensors, tensors [{name, dtype,\n"
    "               shape}]\n"
    "  --tensors    also list every tensor: name, dtype, shape (in name order)\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 inspected (whatever it found), 1 runtime failure, 2 bad input (unreadable\n"
    "or malformed file, bad flags).\n";

/* Whether the config in info was inferred (layouts with a config whose key fields are set). */
static int has_config(const cd_ckpt_info *i) {
    switch (i->layout) {
        case CD_LAYOUT_FLUX_BFL:
        case CD_LAYOUT_FLUX_DIFFUSERS: return i->flux.hidden > 0;
        case CD_LAYOUT_AE_BFL:
        case CD_LAYOUT_AE_DIFFUSERS: return i->ae.n_mult > 0;
        case CD_LAYOUT_CLEAR: return i->clear.hidden > 0 || i->clear.down > 0;
        case CD_LAYOUT_T5: return i->t5.d_model > 0;
        case CD_LAYOUT_CLIP_TEXT: return i->clip.hidden > 0;
        default: return 0;
    }
}

static const char *shape_str(const cd_st_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static json_t *config_json(const cd_ckpt_info *i) {
    if (!has_config(i)) return json_null();
    if (i->layout == CD_LAYOUT_FLUX_BFL || i->layout == CD_LAYOUT_FLUX_DIFFUSERS) {
        const cd_flux_config *f = &i->flux;
        return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:b,s:i}", "hidden", f->hidden, "heads", f->heads,
                         "head_dim", f->head_dim, "depth", f->depth, "depth_single", f->depth_single, "in_channels",
                         f->in_channels, "out_channels", f->out_channels, "context_dim", f->context_dim, "pooled_dim",
                         f->pooled_dim, "mlp_hidden", f->mlp_hidden, "guidance", f->guidance, "spatial_down",
                         i->clear.down);
    }
    if (i->layout == CD_LAYOUT_T5) {
        const cd_t5_info *t = &i->t5;
        return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:b,s:b,s:s,s:s}", "vocab", t->vocab, "d_model",
                         t->d_model, "heads", t->heads, "d_kv", t->d_kv, "d_ff", t->d_ff, "layers", t->layers,
                         "buckets", t->buckets, "max_distance", t->max_distance, "eps", (double)t->eps, "gated",
                         t->gated, "scaled_fp8", t->scaled_fp8, "weights", cd_dtype_name(t->wdtype), "source",
                         t->from_config ? "config.json" : "shapes");
    }
    if (i->layout == CD_LAYOUT_CLIP_TEXT) {
        const cd_clip_info *c = &i->clip;
        return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:i,s:f,s:s,s:s}", "vocab", c->vocab, "hidden", c->hidden,
                         "heads", c->heads, "intermediate", c->inter, "layers", c->layers, "max_positions", c->max_pos,
                         "projection", c->projection, "hidden_act",
                         c->quick_gelu < 0 ? "unknown"
                         : c->quick_gelu   ? "quick_gelu"
                                           : "other",
                         "eos_id", c->eos_id, "eps", (double)c->eps, "weights", cd_dtype_name(c->wdtype), "source",
                         c->from_config ? "config.json" : "shapes");
    }
    if (i->layout == CD_LAYOUT_CLEAR)
        return json_pack("{s:i,s:i,s:i,s:i}", "hidden", i->clear.hidden, "depth", i->clear.depth, "depth_single",
                         i->clear.depth_single, "down", i->clear.down);
    const cd_ae_config *a = &i->ae;
    json_t *mult = json_array();
    for (int k = 0; k < a->n_mult && k < 8; k++) json_array_append_new(mult, json_integer(a->ch_mult[k]));
    return json_pack("{s:i,s:i,s:i,s:o,s:i,s:i,s:b,s:b}", "in_channels", a->in_channels, "out_channels",
                     a->out_channels, "ch", a->ch, "ch_mult", mult, "num_res_blocks", a->num_res_blocks, "z_channels",
                     a->z_channels, "encoder", a->has_encoder, "decoder", a->has_decoder);
}

static json_t *names_json(char **v, size_t n) {
    json_t *a = json_array();
    for (size_t k = 0; k < n; k++) json_array_append_new(a, json_string(v[k]));
    return a;
}

static int print_json(const char *path, const cd_ckpt *c, const cd_ckpt_info *i, int tensors) {
    json_t *o = json_object(), *files = json_array(), *dt = json_object();
    for (size_t k = 0; k < cd_ckpt_files(c); k++) json_array_append_new(files, json_string(cd_ckpt_file(c, k)));
    for (int k = 0; k < CD_DTYPE_COUNT; k++)
        if (i->dtype_count[k])
            json_object_set_new(dt, cd_dtype_name((cd_dtype)k), json_integer((json_int_t)i->dtype_count[k]));
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "files", files);
    json_object_set_new(o, "prefix", json_string(cd_ckpt_prefix(c)));
    json_object_set_new(o, "layout", json_string(cd_layout_name(i->layout)));
    json_object_set_new(o, "config", config_json(i));
    json_object_set_new(o, "n_tensors", json_integer((json_int_t)cd_ckpt_count(c)));
    json_object_set_new(o, "params", json_integer((json_int_t)i->params));
    json_object_set_new(o, "bytes", json_integer((json_int_t)i->bytes));
    json_object_set_new(o, "dtypes", dt);
    json_object_set_new(o, "n_unknown", json_integer((json_int_t)i->n_unknown));
    json_object_set_new(o, "unknown", names_json(i->unknown, i->n_unknown));
    json_object_set_new(o, "n_missing", json_integer((json_int_t)i->n_missing));
    json_object_set_new(o, "missing", names_json(i->missing, i->n_missing));
    json_object_set_new(o, "n_bad_shape", json_integer((json_int_t)i->n_bad_shape));
    json_object_set_new(o, "bad_shape", names_json(i->bad_shape, i->n_bad_shape));
    if (tensors) {
        json_t *a = json_array();
        for (size_t k = 0; k < cd_ckpt_count(c); k++) {
            const cd_st_tensor *t = cd_ckpt_at(c, k);
            json_t *shape = json_array();
            for (int32_t d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
            json_array_append_new(
                a, json_pack("{s:s,s:s,s:o}", "name", t->name, "dtype", cd_dtype_name(t->dtype), "shape", shape));
        }
        json_object_set_new(o, "tensors", a);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) {
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    puts(s);
    free(s);
    return CLI_OK;
}

static void print_config(const cd_ckpt_info *i) {
    if (i->layout == CD_LAYOUT_UNKNOWN) return;
    if (!has_config(i)) {
        printf("config       cannot be inferred (see missing)\n");
        return;
    }
    if (i->layout == CD_LAYOUT_FLUX_BFL || i->layout == CD_LAYOUT_FLUX_DIFFUSERS) {
        const cd_flux_config *f = &i->flux;
        printf("config       hidden %d, %d heads x head_dim %d, %d double + %d single blocks, "
               "mlp %d\n"
               "             in %d, out %d, context %d, pooled %d, guidance embedder %s\n",
               f->hidden, f->heads, f->head_dim, f->depth, f->depth_single, f->mlp_hidden, f->in_channels,
               f->out_channels, f->context_dim, f->pooled_dim, f->guidance ? "yes (dev-like)" : "no (schnell-like)");
        if (i->clear.down) printf("             carries CLEAR spatial_weight %dx%d\n", i->clear.down, i->clear.down);
    } else if (i->layout == CD_LAYOUT_T5) {
        const cd_t5_info *t = &i->t5;
        printf("config       T5 encoder (%s): vocab %d, d_model %d, %d heads x d_kv %d, d_ff %d, %d layers\n"
               "             relative positions: %d buckets, max distance %d%s; eps %g (%s)\n"
               "             linear weights %s%s\n",
               t->gated ? "v1.1, gated-GELU FFN" : "v1.0, one-matrix FFN", t->vocab, t->d_model, t->heads, t->d_kv,
               t->d_ff, t->layers, t->buckets, t->max_distance, t->from_config ? "" : " (T5's default)", (double)t->eps,
               t->from_config ? "config.json" : "no config.json: defaults", cd_dtype_name(t->wdtype),
               t->scaled_fp8 ? ", scaled fp8 (ComfyUI: per-weight scales)" : "");
    } else if (i->layout == CD_LAYOUT_CLIP_TEXT) {
        const cd_clip_info *c = &i->clip;
        printf("config       CLIP text model: vocab %d, hidden %d, %d heads%s, intermediate %d, %d layers, %d "
               "positions\n"
               "             hidden_act %s, eos_token_id ",
               c->vocab, c->hidden, c->heads, c->from_config ? "" : " (hidden / 64: no config.json)", c->inter,
               c->layers, c->max_pos,
               c->quick_gelu < 0 ? "unknown"
               : c->quick_gelu   ? "quick_gelu"
                                 : "not quick_gelu");
        if (c->eos_id < 0)
            printf("unknown");
        else
            printf("%d%s", c->eos_id, c->eos_id == 2 ? " (pooled at the argmax id)" : "");
        printf(", eps %g; text_projection ", (double)c->eps);
        if (c->projection)
            printf("%d (not used by FLUX)", c->projection);
        else
            printf("none");
        printf("\n             linear weights %s\n", cd_dtype_name(c->wdtype));
    } else if (i->layout == CD_LAYOUT_CLEAR) {
        const cd_clear_config *c = &i->clear;
        printf("config       hidden %d, %d double + %d single blocks, ", c->hidden, c->depth, c->depth_single);
        if (c->down)
            printf("spatial_weight %dx%d\n", c->down, c->down);
        else
            printf("no spatial_weight\n");
    } else {
        const cd_ae_config *a = &i->ae;
        printf("config       ch %d, ch_mult [", a->ch);
        for (int k = 0; k < a->n_mult && k < 8; k++) printf("%s%d", k ? ", " : "", a->ch_mult[k]);
        printf("], num_res_blocks %d, z %d\n             encoder %s", a->num_res_blocks, a->z_channels,
               a->has_encoder ? "yes" : "no");
        if (a->has_encoder) printf(" (in %d)", a->in_channels);
        printf(", decoder %s", a->has_decoder ? "yes" : "no");
        if (a->has_decoder) printf(" (out %d)", a->out_channels);
        printf("\n");
    }
}

static void print_list(const char *label, char **v, size_t n) {
    printf("%-12s %zu\n", label, n);
    for (size_t k = 0; k < n; k++) printf("  %s\n", v[k]);
}

static void print_text(const char *path, const cd_ckpt *c, const cd_ckpt_info *i, int tensors) {
    printf("path         %s\n", path);
    const size_t nf = cd_ckpt_files(c);
    if (nf > 1) {
        printf("files        %zu\n", nf);
        for (size_t k = 0; k < nf; k++) printf("  %s\n", cd_ckpt_file(c, k));
    }
    if (cd_ckpt_prefix(c)[0]) printf("prefix       %s (stripped)\n", cd_ckpt_prefix(c));
    printf("layout       %s%s\n", cd_layout_name(i->layout),
           i->layout == CD_LAYOUT_UNKNOWN ? " (no FLUX transformer, FLUX autoencoder, CLEAR, T5 or CLIP tensor names)"
                                          : "");
    print_config(i);
    printf("tensors      %zu\n", cd_ckpt_count(c));
    printf("parameters   %llu (%.3f B)\n", (unsigned long long)i->params, (double)i->params / 1e9);
    printf("bytes        %llu (%.3f GiB)\n", (unsigned long long)i->bytes,
           (double)i->bytes / (1024.0 * 1024.0 * 1024.0));
    printf("dtypes      ");
    for (int k = 0; k < CD_DTYPE_COUNT; k++)
        if (i->dtype_count[k]) printf(" %s %llu", cd_dtype_name((cd_dtype)k), (unsigned long long)i->dtype_count[k]);
    printf("\n");
    if (i->layout != CD_LAYOUT_UNKNOWN) {
        print_list("unknown", i->unknown, i->n_unknown);
        print_list("missing", i->missing, i->n_missing);
        print_list("wrong shape", i->bad_shape, i->n_bad_shape);
    }
    if (tensors) {
        int w = 0;
        for (size_t k = 0; k < cd_ckpt_count(c); k++) {
            int len = (int)strlen(cd_ckpt_at(c, k)->name);
            if (len > w) w = len;
        }
        printf("tensor list\n");
        char sh[160];
        for (size_t k = 0; k < cd_ckpt_count(c); k++) {
            const cd_st_tensor *t = cd_ckpt_at(c, k);
            printf("  %-*s  %-11s %s\n", w, t->name, cd_dtype_name(t->dtype), shape_str(t, sh, sizeof sh));
        }
    }
}

int cmd_inspect(int argc, char **argv) {
    int json = 0, tensors = 0, help = 0, npos = 0;
    cli_opt opts[] = {
        {"--json", CLI_OPT_SWITCH, &json, 0, 0, 0, 0, 0},
        {"--tensors", CLI_OPT_SWITCH, &tensors, 0, 0, 0, 0, 0},
    };
    const char *pos[1];
    if (cli_parse_args(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], &help, pos, 1, &npos)) return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (npos != 1) {
        cli_error(CMD, "expected a checkpoint path (see 'cleardit inspect --help')");
        return CLI_BAD_INPUT;
    }
    cd_ctx *ctx;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 1;
    cd_status s = cd_ctx_create(&cp, &ctx);
    if (s) {
        cli_error(CMD, "cannot create a context: %s", cd_status_str(s));
        return CLI_RUNTIME;
    }
    cd_ckpt *c = NULL;
    cd_ckpt_info info;
    memset(&info, 0, sizeof info);
    int rc = CLI_OK;
    if ((s = cd_ckpt_open(ctx, pos[0], &c)) || (s = cd_ckpt_inspect(ctx, c, &info))) {
        cli_error(CMD, "%s", cd_ctx_error(ctx)); /* names the file and the reason */
        rc = s == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
    } else if (json) {
        rc = print_json(pos[0], c, &info, tensors);
    } else {
        print_text(pos[0], c, &info, tensors);
    }
    if (rc == CLI_OK && fflush(stdout) != 0) rc = CLI_RUNTIME;
    cd_ckpt_info_free(&info);
    cd_ckpt_close(c);
    cd_ctx_free(ctx);
    return rc;
}
