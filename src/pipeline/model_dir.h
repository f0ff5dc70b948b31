/* model_dir.h — library-private: where the parts of a FLUX model are, as users have them.
 *
 * A diffusers FLUX pipeline root (model_index.json naming a Flux*Pipeline; transformer/, vae/,
 * text_encoder/ (CLIP), text_encoder_2/ (T5, usually sharded), tokenizer/, tokenizer_2/) gives
 * every part; a transformer folder or file (what `--model` took before the encoders) gives the
 * transformer only. Single encoder files as ComfyUI users have them (t5xxl_fp16.safetensors,
 * clip_l.safetensors) get their tokenizer from beside them (cd_tokenizer_beside) or from the
 * user, and the error says which file to pass and where diffusers and ComfyUI keep it.
 *
 * Only paths are resolved here: nothing is loaded or mapped. Opening the weights is cd_ckpt's
 * (a model folder is one of the inputs it takes), the tokenizers are src/text/'s. */
#ifndef CD_MODEL_DIR_H
#define CD_MODEL_DIR_H

#include "cleardit.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every path malloc'd (cd_model_dir_free), NULL where the input has no such part. Model paths are
 * folders (or, for a transformer given as a file, that file); tokenizer paths are files. */
typedef struct {
    char *root;           /* the directory (or file) given */
    char *transformer;    /* FLUX transformer: ROOT/transformer, or ROOT itself */
    char *vae;            /* ROOT/vae (AutoencoderKL) */
    char *clip;           /* ROOT/text_encoder (CLIPTextModel) */
    char *t5;             /* ROOT/text_encoder_2 (T5EncoderModel) */
    char *clip_tokenizer; /* ROOT/tokenizer/vocab.json (merges in clip_merges) or .../tokenizer.json */
    char *clip_merges;    /* ROOT/tokenizer/merges.txt when clip_tokenizer is a vocab.json, else NULL */
    char *t5_tokenizer;   /* ROOT/tokenizer_2/spiece.model, else ROOT/tokenizer_2/tokenizer.json */
    int32_t is_pipeline;  /* 1: a pipeline root (every part set); 0: a transformer only (no encoders) */
    /* T5 sequence length FLUX uses with this transformer: 512 when its config.json says
     * guidance_embeds (dev-like), 256 when it says not (schnell-like), 0 when there is no config */
    int32_t max_length_hint;
} cd_model_dir;

/* Resolves `path`: a pipeline root (model_index.json), a transformer folder or a transformer
 * checkpoint file. A pipeline part that is missing (not in model_index.json, no folder, no weights
 * in it, no tokenizer file) is a one-line error naming the part and the path expected; a folder of
 * another model (a config.json of a text encoder or an autoencoder) is an error saying what it is.
 * On failure *out is zeroed. */
cd_status cd_model_dir_open(cd_ctx *ctx, const char *path, cd_model_dir *out);
void cd_model_dir_free(cd_model_dir *d); /* frees the paths and zeroes *d; NULL is fine */

/* Small path questions shared with encode_find.c: 1 when p (may be NULL) is a directory / a regular
 * file (following links); 1 when s ends with suf. */
int cd_path_is_dir(const char *p);
int cd_path_is_file(const char *p);
int cd_str_ends_with(const char *s, const char *suf);

typedef enum { CD_TOKENIZER_T5 = 0, CD_TOKENIZER_CLIP = 1 } cd_tokenizer_kind;

/* The tokenizer file in folder `dir` (a diffusers tokenizer/ or tokenizer_2/ folder, ComfyUI's
 * t5_tokenizer/ or sd1_tokenizer/): T5: spiece.model, else a tokenizer.json whose model is Unigram;
 * CLIP: vocab.json with merges.txt beside (*merges set), else a tokenizer.json whose model is BPE,
 * else open_clip's bpe_simple_vocab_16e6.txt.gz. CD_ERR_NOT_FOUND (with a message naming dir)
 * when none is there. *tok and *merges are malloc'd or NULL; merges may be NULL for T5. */
cd_status cd_tokenizer_in_dir(cd_ctx *ctx, cd_tokenizer_kind kind, const char *dir, char **tok, char **merges);

/* The tokenizer for encoder checkpoint `ckpt` (a file or a folder): looked for in the checkpoint's
 * folder, in its t5_tokenizer/ or sd1_tokenizer/ subfolder, and, for a diffusers
 * text_encoder_2/ or text_encoder/, in the sibling tokenizer_2/ or tokenizer/. None there:
 * CD_ERR_NOT_FOUND with the message
 *   no tokenizer beside CKPT: pass --t5-tokenizer FILE (diffusers keeps it in
 *   tokenizer_2/spiece.model or tokenizer_2/tokenizer.json; ComfyUI in
 *   comfy/text_encoders/t5_tokenizer/tokenizer.json)
 * (CLIP: --clip-tokenizer, tokenizer/vocab.json with merges.txt beside, comfy/sd1_tokenizer/vocab.json,
 * open_clip's bpe_simple_vocab_16e6.txt.gz). */
cd_status cd_tokenizer_beside(cd_ctx *ctx, cd_tokenizer_kind kind, const char *ckpt, char **tok, char **merges);

#ifdef __cplusplus
}
#endif

#endif
