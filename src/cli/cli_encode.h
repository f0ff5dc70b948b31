/* cli_encode.h — the text-encoder flags and the (cached) prompt encode shared by `encode` and
 * `generate --prompt` (cli_encode_common.c). */
#ifndef CD_CLI_ENCODE_H
#define CD_CLI_ENCODE_H

#include "cleardit.h"

#include <string.h>

typedef struct {
    const char *model, *t5, *clip, *t5_tok, *clip_tok, *sem_s, *device_s;
    int64_t max_length;
} cli_encoder_flags;

/* The encoder flags of both commands (generate declares --model and --device itself). */
#define ENCODER_FILE_OPTS(f)                                                                                \
    {"--t5", CLI_OPT_STRING, &(f).t5, 0, 0, 0, 0, 0}, {"--clip", CLI_OPT_STRING, &(f).clip, 0, 0, 0, 0, 0}, \
        {"--t5-tokenizer", CLI_OPT_STRING, &(f).t5_tok, 0, 0, 0, 0, 0},                                     \
        {"--clip-tokenizer", CLI_OPT_STRING, &(f).clip_tok, 0, 0, 0, 0, 0},                                 \
        {"--tokenizer-semantics", CLI_OPT_STRING, &(f).sem_s, 0, 0, 0, 0, 0}, {                             \
        "--max-length", CLI_OPT_INT, &(f).max_length, 1, 4096, 0, 0, 0                                      \
    }
#define ENCODER_FLAGS_OPTS(f)                               \
    {"--model", CLI_OPT_STRING, &(f).model, 0, 0, 0, 0, 0}, \
        {"--device", CLI_OPT_STRING, &(f).device_s, 0, 0, 0, 0, 0}, ENCODER_FILE_OPTS(f)

#define ENCODER_FILES_HELP                                                                                      \
    "  --t5 PATH             T5 encoder: a file (t5xxl_fp16.safetensors, t5xxl_fp8_e4m3fn[_scaled]...), a\n"    \
    "                        sharded index or a folder (diffusers text_encoder_2/); overrides --model's\n"      \
    "  --clip PATH           CLIP text encoder (clip_l.safetensors, diffusers text_encoder/)\n"                 \
    "  --t5-tokenizer PATH   spiece.model, tokenizer.json or their folder (default: --model's\n"                \
    "                        tokenizer_2/, else beside the T5 file)\n"                                          \
    "  --clip-tokenizer PATH vocab.json (merges.txt beside it), tokenizer.json, bpe_simple_vocab_16e6.txt.gz\n" \
    "                        or their folder (default: --model's tokenizer/, else beside the CLIP file)\n"      \
    "  --tokenizer-semantics sentencepiece|diffusers\n"                                                         \
    "                        T5 ids as SentencePiece (BFL's reference; default) or as transformers'\n"          \
    "                        T5TokenizerFast (diffusers) tokenizes them (docs/tokenizer_spm.md)\n"              \
    "  --max-length L        T5 tokens (default 512 for dev-like models, 256 for schnell-like)\n"
#define ENCODER_FLAGS_HELP                                                                                \
    "  --model DIR           a diffusers FLUX pipeline folder (model_index.json): finds text_encoder/,\n" \
    "                        text_encoder_2/, tokenizer/ and tokenizer_2/\n" ENCODER_FILES_HELP           \
    "  --device cpu|cuda     where the encoders run (default cpu; the GPU does not have their ops yet)\n"

/* The flags' combination (semantics and device names). Prints the error; CLI_OK or CLI_BAD_INPUT. */
int cli_encoder_check(const char *cmd, const cli_encoder_flags *f);
/* 1 when any encoder flag was given (generate: a prompt for a FLUX model then needs them). */
int cli_encoder_given(const cli_encoder_flags *f);

typedef struct {
    float *txt, *pooled; /* [L, D], [P] */
    int32_t L, D, P;
    int32_t *t5_ids;      /* [L] when ids were asked for */
    int32_t clip_ids[77]; /* when ids were asked for */
    char *describe;       /* the encoders, for metadata */
} cli_encoded;
void cli_encoded_free(cli_encoded *r);

/* Opens the encoders from the flags, encodes prompt (through the cache when cache_dir is set) with
 * L = --max-length, else default_L (0: the encoder's default), warns about truncated tokens and
 * frees the encoders before returning. Prints errors and progress (unless quiet); CLI exit code. */
int cli_encode_prompt(const char *cmd, cd_ctx *ctx, const cli_encoder_flags *f, const char *prompt, int32_t default_L,
                      const char *cache_dir, int want_ids, int quiet, cli_encoded *out);

/* f32 -> bf16, round to nearest even (NaN stays NaN). */
static inline uint16_t cd_encode_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#endif
