/* cli_flops.c — `cleardit flops`: exact forward FLOPs of one FLUX.1 attention layer (24 heads x
 * 128 head_dim) at a pixel resolution, dense vs CLEAR, from the library's pair counter
 * (cd_attn_pairs / cd_attn_flops; docs/clear.md "Exact FLOP accounting"). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"

#define FLUX_HEADS 24
#define FLUX_HEAD_DIM 128
#define FLUX_PATCH_PX 16    /* one image token = 2x2 latent patch = 16x16 pixels */
#define FLOPS_MAX_PX 262144 /* 16384 tokens a side: (T + HW)^2 stays far below 2^64 */

static const char k_usage[] =
    "usage: cleardit flops --width PX --height PX [--radius R] [--down D] [--text-len T] [--json]\n"
    "\n"
    "Forward FLOPs of one FLUX.1 attention layer (24 heads x 128 head_dim), dense and CLEAR.\n"
    "FLOPs = 4 * allowed (query, key) pairs * 3072; GFLOPs = FLOPs / 1e9.\n"
    "\n"
    "options:\n"
    "  --width PX      image width in pixels, a positive multiple of 16 (at most 262144)\n"
    "  --height PX     image height in pixels, a positive multiple of 16 (at most 262144)\n"
    "  --radius R      CLEAR radius in tokens (>= 1); without it only dense is reported\n"
    "  --down D        CLEAR down-sampling factor (needs --radius; must divide the token grid)\n"
    "  --text-len T    text tokens (default 512, FLUX.1-dev; schnell uses 256)\n"
    "  --json          print one JSON object instead of the table: width, height, grid_h,\n"
    "                  grid_w, text_len, heads, head_dim, image_tokens, total_tokens, radius,\n"
    "                  down (0 = not given), dense_pairs, dense_gflops,\n"
    "                  dense_keys_per_image_query, clear_pairs, clear_gflops,\n"
    "                  clear_keys_per_image_query, reduction_pct (the clear_* fields and\n"
    "                  reduction_pct are null without --radius)\n"
    "  -h, --help      show this help\n";

/* Average keys an image query attends to: all pairs minus the T dense text rows, per image row
 * (pooled keys count; text rows never see pooled keys). */
static double keys_per_image_query(const cd_attn_desc *d, uint64_t pairs) {
    const uint64_t hw = (uint64_t)d->grid_h * (uint64_t)d->grid_w;
    const uint64_t n = (uint64_t)d->text_len + hw;
    return (double)(pairs - (uint64_t)d->text_len * n) / (double)hw;
}

static int print_json(const cd_attn_desc *dense, const cd_attn_desc *clear, int64_t width, int64_t height) {
    const uint64_t hw = (uint64_t)dense->grid_h * (uint64_t)dense->grid_w;
    const uint64_t dp = cd_attn_pairs(dense);
    const double dg = cd_attn_flops(dense) / 1e9;
    json_t *o = json_object();
    json_object_set_new(o, "width", json_integer(width));
    json_object_set_new(o, "height", json_integer(height));
    json_object_set_new(o, "grid_h", json_integer(dense->grid_h));
    json_object_set_new(o, "grid_w", json_integer(dense->grid_w));
    json_object_set_new(o, "text_len", json_integer(dense->text_len));
    json_object_set_new(o, "heads", json_integer(dense->heads));
    json_object_set_new(o, "head_dim", json_integer(dense->head_dim));
    json_object_set_new(o, "image_tokens", json_integer((json_int_t)hw));
    json_object_set_new(o, "total_tokens", json_integer((json_int_t)(hw + (uint64_t)dense->text_len)));
    json_object_set_new(o, "radius", json_integer(clear ? clear->radius : 0));
    json_object_set_new(o, "down", json_integer(clear ? clear->down : 0));
    json_object_set_new(o, "dense_pairs", json_integer((json_int_t)dp));
    json_object_set_new(o, "dense_gflops", json_real(dg));
    json_object_set_new(o, "dense_keys_per_image_query", json_real(keys_per_image_query(dense, dp)));
    if (clear) {
        const uint64_t cp = cd_attn_pairs(clear);
        const double cg = cd_attn_flops(clear) / 1e9;
        json_object_set_new(o, "clear_pairs", json_integer((json_int_t)cp));
        json_object_set_new(o, "clear_gflops", json_real(cg));
        json_object_set_new(o, "clear_keys_per_image_query", json_real(keys_per_image_query(clear, cp)));
        json_object_set_new(o, "reduction_pct", json_real(100.0 * (1.0 - cg / dg)));
    } else {
        json_object_set_new(o, "clear_pairs", json_null());
        json_object_set_new(o, "clear_gflops", json_null());
        json_object_set_new(o, "clear_keys_per_image_query", json_null());
        json_object_set_new(o, "reduction_pct", json_null());
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!s) {
        cli_error("flops", "out of memory");
        return CLI_RUNTIME;
    }
    puts(s);
    free(s);
    return CLI_OK;
}

static void print_table(const cd_attn_desc *dense, const cd_attn_desc *clear, int64_t width, int64_t height) {
    const uint64_t hw = (uint64_t)dense->grid_h * (uint64_t)dense->grid_w;
    const uint64_t dp = cd_attn_pairs(dense);
    const double dg = cd_attn_flops(dense) / 1e9;
    printf("FLUX.1 attention, one layer, forward (%d heads x %d head_dim)\n", dense->heads, dense->head_dim);
    printf("  image      %lld x %lld px -> %d x %d tokens (H x W)\n", (long long)width, (long long)height,
           dense->grid_h, dense->grid_w);
    printf("  tokens     text %d + image %llu = %llu total\n\n", dense->text_len, (unsigned long long)hw,
           (unsigned long long)(hw + (uint64_t)dense->text_len));
    printf("  %-16s %14s %20s %22s\n", "mode", "GFLOPs", "allowed pairs", "keys per image query");
    printf("  %-16s %14.1f %20llu %22.1f\n", "dense", dg, (unsigned long long)dp, keys_per_image_query(dense, dp));
    if (clear) {
        const uint64_t cp = cd_attn_pairs(clear);
        const double cg = cd_attn_flops(clear) / 1e9;
        char mode[48];
        if (clear->down >= 2)
            snprintf(mode, sizeof mode, "CLEAR r=%d d=%d", clear->radius, clear->down);
        else
            snprintf(mode, sizeof mode, "CLEAR r=%d", clear->radius);
        printf("  %-16s %14.1f %20llu %22.1f\n", mode, cg, (unsigned long long)cp, keys_per_image_query(clear, cp));
        printf("\n  reduction  %.1f %% fewer FLOPs than dense (dense / CLEAR = %.2fx)\n", 100.0 * (1.0 - cg / dg),
               dg / cg);
    }
}

int cmd_flops(int argc, char **argv) {
    int64_t width = 0, height = 0, radius = 0, down = 0, text_len = 512;
    int json = 0, help = 0;
    cli_opt opts[] = {
        {"--width", CLI_OPT_INT, &width, 1, FLOPS_MAX_PX, 0, 0, 0},
        {"--height", CLI_OPT_INT, &height, 1, FLOPS_MAX_PX, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &radius, 1, INT32_MAX, 0, 0, 0},
        {"--down", CLI_OPT_INT, &down, INT32_MIN, INT32_MAX, 0, 0, 0}, /* cd_attn_validate judges */
        {"--text-len", CLI_OPT_INT, &text_len, 0, 1 << 20, 0, 0, 0},
        {"--json", CLI_OPT_SWITCH, &json, 0, 0, 0, 0, 0},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_flags("flops", argc, argv, opts, nopts, &help)) return CLI_BAD_INPUT;
    if (help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    if (!cli_find_opt(opts, nopts, "--width")->seen || !cli_find_opt(opts, nopts, "--height")->seen) {
        cli_error("flops", "--width and --height are required (see 'cleardit flops --help')");
        return CLI_BAD_INPUT;
    }
    if (width % FLUX_PATCH_PX || height % FLUX_PATCH_PX) {
        const int64_t bad = width % FLUX_PATCH_PX ? width : height;
        cli_error("flops", "%s %lld is not a multiple of 16 (one FLUX token is 16x16 pixels)",
                  width % FLUX_PATCH_PX ? "width" : "height", (long long)bad);
        return CLI_BAD_INPUT;
    }
    const int has_radius = cli_find_opt(opts, nopts, "--radius")->seen;

    cd_attn_desc dense = {FLUX_HEADS,
                          FLUX_HEAD_DIM,
                          (int32_t)text_len,
                          (int32_t)(height / FLUX_PATCH_PX),
                          (int32_t)(width / FLUX_PATCH_PX),
                          0,
                          0,
                          0.0f};
    cd_attn_desc clear = dense;
    clear.radius = (int32_t)radius;
    clear.down = (int32_t)down;

    cd_ctx *ctx = NULL;
    cd_status s = cd_ctx_create(NULL, &ctx);
    if (s) {
        cli_error("flops", "cannot create a context: %s", cd_status_str(s));
        return CLI_RUNTIME;
    }
    /* The CLEAR descriptor carries --down even without --radius, so that the library rejects
     * that combination with its own message. */
    s = cd_attn_validate(ctx, &dense);
    if (!s) s = cd_attn_validate(ctx, &clear);
    if (s) {
        cli_error("flops", "%s", cd_ctx_error(ctx));
        cd_ctx_free(ctx);
        return CLI_BAD_INPUT;
    }
    cd_ctx_free(ctx);
    if (json) return print_json(&dense, has_radius ? &clear : NULL, width, height);
    print_table(&dense, has_radius ? &clear : NULL, width, height);
    return CLI_OK;
}
