/* cli_encode.c — `cleardit encode`: a prompt -> FLUX's conditioning (txt [L, 4096], pooled [768])
 * with the native T5 and CLIP encoders, written atomically in the --prompt-embeds format. Also the
 * encoder flags and the cached encode that `generate --prompt` shares (cli_encode.h). A thin layer
 * over the public cd_encoder API (include/cleardit.h). */
#include "cli.h"
#include "cli_common.h"
#include "cli_encode.h"
#include "cleardit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "encode"

static const char k_usage[] =
    "usage: cleardit encode (--model DIR | --t5 PATH --clip PATH) --prompt TEXT -o OUT.safetensors\n"
    "                       [--t5-tokenizer PATH] [--clip-tokenizer PATH] [--max-length L]\n"
    "                       [--tokenizer-semantics sentencepiece|diffusers] [--out-dtype f32|bf16] [--ids]\n"
    "                       [--cache DIR] [--device cpu|cuda] [--threads N]\n"
    "\n"
    "Turns a prompt into FLUX's conditioning with the native T5 v1.1 encoder (txt [L, 4096] for\n"
    "T5-XXL) and CLIP text model (pooled [768] for CLIP-L), exactly as FLUX runs them (BFL's reference\n"
    "and diffusers' FluxPipeline: docs/text_encoders.md). The output is what `generate --prompt-embeds`\n"
    "reads; its metadata records the prompt, the max length and the encoders. Weights are read in place\n"
    "from the files (F32, BF16, F16, F8_E4M3 and ComfyUI's scaled fp8); nothing else is needed.\n"
    "\n" ENCODER_FLAGS_HELP
    "  --prompt TEXT         the prompt (UTF-8; \"\" is FLUX's unconditional prompt); longer prompts are\n"
    "                        truncated as FLUX does, with a warning\n"
    "  -o, --out PATH        output .safetensors (written atomically)\n"
    "  --out-dtype f32|bf16  dtype of txt and pooled (default f32)\n"
    "  --ids                 also write the token ids (t5_ids [L], clip_ids [77], I32)\n"
    "  --cache DIR           reuse/store the embeddings in DIR (keyed by the encoder files, tokenizers,\n"
    "                        prompt and length)\n"
    "  --threads N           threads (default: all cores)\n"
    "\n"
    "Example (a diffusers FLUX.1-dev folder, or ComfyUI's single files):\n"
    "  cleardit encode --model FLUX.1-dev/ --prompt \"a red fox in the snow\" -o fox.safetensors\n"
    "  cleardit encode --t5 t5xxl_fp16.safetensors --clip clip_l.safetensors \\\n"
    "      --t5-tokenizer tokenizer_2/spiece.model --clip-tokenizer tokenizer/vocab.json \\\n"
    "      --prompt \"a red fox in the snow\" -o fox.safetensors\n";

typedef struct {
    cli_encoder_flags ef;
    const char *prompt, *out_p, *dtype_s, *cache;
    int64_t threads;
    int ids, help;
} enc_args;

static int parse(int argc, char **argv, enc_args *a) {
    memset(a, 0, sizeof *a);
    cli_opt opts[] = {
        ENCODER_FLAGS_OPTS(a->ef),
        {"--prompt", CLI_OPT_TEXT, &a->prompt, 0, 0, 0, 0, 0},
        {"--out", CLI_OPT_STRING, &a->out_p, 0, 0, 0, 0, 0},
        {"--out-dtype", CLI_OPT_STRING, &a->dtype_s, 0, 0, 0, 0, 0},
        {"--cache", CLI_OPT_STRING, &a->cache, 0, 0, 0, 0, 0},
        {"--ids", CLI_OPT_SWITCH, &a->ids, 0, 0, 0, 0, 0},
        {"--threads", CLI_OPT_INT, &a->threads, 1, 4096, 0, 0, 0},
    };
    int rc = cli_parse_flags_o(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], &a->help);
    if (rc || a->help) return rc;
    if (!a->prompt || !a->out_p) {
        cli_error(CMD, "--prompt and -o are required (see --help)");
        return CLI_BAD_INPUT;
    }
    if (a->dtype_s && strcmp(a->dtype_s, "f32") && strcmp(a->dtype_s, "bf16")) {
        cli_error(CMD, "--out-dtype must be f32 or bf16 (got '%s')", a->dtype_s);
        return CLI_BAD_INPUT;
    }
    if (a->ids && a->cache) {
        cli_error(CMD, "--ids and --cache exclude each other (a cache hit runs no tokenizer)");
        return CLI_BAD_INPUT;
    }
    if ((rc = cli_encoder_check(CMD, &a->ef))) return rc;
    return cli_check_output_path(CMD, a->out_p) ? CLI_BAD_INPUT : CLI_OK;
}

/* txt, pooled (and the ids) into OUT, f32 or bf16, with the prompt and encoders in the metadata. */
static int write_out(cd_ctx *ctx, const enc_args *a, const cli_encoded *r) {
    const int bf = a->dtype_s && !strcmp(a->dtype_s, "bf16");
    const size_t nt = (size_t)r->L * (size_t)r->D;
    uint16_t *tb = bf ? malloc(nt * 2) : NULL, *pb = bf ? malloc((size_t)r->P * 2) : NULL;
    if (bf && (!tb || !pb)) {
        free(tb);
        free(pb);
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    for (size_t i = 0; bf && i < nt; i++) tb[i] = cd_encode_f32_to_bf16(r->txt[i]);
    for (int32_t i = 0; bf && i < r->P; i++) pb[i] = cd_encode_f32_to_bf16(r->pooled[i]);
    const cd_dtype dt = bf ? CD_DTYPE_BF16 : CD_DTYPE_F32;
    const cd_st_out outs[4] = {{"txt", dt, 2, {r->L, r->D}, bf ? (const void *)tb : r->txt},
                               {"pooled", dt, 1, {r->P}, bf ? (const void *)pb : r->pooled},
                               {"t5_ids", CD_DTYPE_I32, 1, {r->L}, r->t5_ids},
                               {"clip_ids", CD_DTYPE_I32, 1, {77}, r->clip_ids}};
    char lbuf[16];
    snprintf(lbuf, sizeof lbuf, "%d", (int)r->L);
    const char *meta[] = {"prompt",   a->prompt,   "max_length", lbuf,
                          "encoders", r->describe, "producer",   "cleardit encode " CLEARDIT_VERSION};
    const cd_status s = cd_st_write(ctx, a->out_p, outs, a->ids ? 4 : 2, meta, 4);
    free(tb);
    free(pb);
    if (s != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

int cmd_encode(int argc, char **argv) {
    enc_args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)a.threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    cli_encoded r;
    if (!(rc = cli_encode_prompt(CMD, ctx, &a.ef, a.prompt, 0, a.cache, a.ids, 0, &r))) {
        rc = write_out(ctx, &a, &r);
        if (!rc)
            fprintf(stderr, "cleardit encode: wrote %s (txt [%d, %d], pooled [%d])\n", a.out_p, (int)r.L, (int)r.D,
                    (int)r.P);
        cli_encoded_free(&r);
    }
    cd_ctx_free(ctx);
    return rc;
}
