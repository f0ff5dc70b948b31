/* spm.h — library-private: SentencePiece unigram tokenizer (T5's spiece.model).
 *
 * Reads the ModelProto protobuf (src/text/spm_model.c), normalises a prompt as SentencePiece
 * does (precompiled charsmap, extra-whitespace removal, dummy prefix, U+2581 for spaces) and
 * encodes it by Viterbi over the piece scores (src/text/spm.c). docs/tokenizer_spm.md says what
 * is implemented and how it differs from transformers' T5 tokenizers. */
#ifndef CD_TEXT_SPM_H
#define CD_TEXT_SPM_H

#include "cleardit.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cd_spm cd_spm;

/* Which tokenizer's ids to reproduce (docs/tokenizer_spm.md lists every difference, with examples):
 * SENTENCEPIECE: sentencepiece's encode (BFL's FLUX reference; the default);
 * DIFFUSERS: HF tokenizers' pipeline from tokenizer.json (transformers' T5TokenizerFast, what
 * diffusers' FluxPipeline runs): special tokens in the text, the charsmap per grapheme cluster,
 * the pre-tokenizer's word split. */
typedef enum { CD_SPM_SEMANTICS_SENTENCEPIECE = 0, CD_SPM_SEMANTICS_DIFFUSERS = 1 } cd_spm_semantics;

/* Loads a SentencePiece model file (a unigram ModelProto). *out is NULL on failure. */
cd_status cd_spm_load(cd_ctx *ctx, const char *path, cd_spm **out);
/* The same from bytes in memory (copied; buf may be freed afterwards). */
cd_status cd_spm_load_mem(cd_ctx *ctx, const uint8_t *buf, size_t n, cd_spm **out);
/* A tokenizer.json with a Unigram model (HF's T5TokenizerFast; diffusers' tokenizer_2/): vocab
 * [[piece, score], ...], unk_id, added_tokens, the Precompiled charsmap (base64), Metaspace. */
cd_status cd_spm_load_tokenizer_json(cd_ctx *ctx, const char *path, cd_spm **out);
/* A folder (diffusers' tokenizer_2/): SENTENCEPIECE reads spiece.model, else tokenizer.json;
 * DIFFUSERS reads tokenizer.json (it defines that pipeline). The semantics is set on *out. */
cd_status cd_spm_load_dir(cd_ctx *ctx, const char *dir, cd_spm_semantics sem, cd_spm **out);
void cd_spm_free(cd_spm *m);

/* CD_ERR_UNSUPPORTED for DIFFUSERS on a model not read from tokenizer.json. */
cd_status cd_spm_set_semantics(cd_ctx *ctx, cd_spm *m, cd_spm_semantics sem);
cd_spm_semantics cd_spm_semantics_of(const cd_spm *m);

size_t cd_spm_vocab_size(const cd_spm *m);
int cd_spm_unk_id(const cd_spm *m); /* -1 where the model has none */
int cd_spm_eos_id(const cd_spm *m);
int cd_spm_pad_id(const cd_spm *m);

/* SentencePiece's normalised text, whatever the semantics (UTF-8, malloc'd, NUL-terminated; *len excludes the NUL). Invalid UTF-8 in
 * text is CD_ERR_INVALID_ARG naming the byte offset. */
cd_status cd_spm_normalize(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, char **out, size_t *out_len);

/* Encodes in the model's semantics: piece ids of text without BOS/EOS, malloc'd in *ids (NULL when *n is 0). */
cd_status cd_spm_encode(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, int32_t **ids, size_t *n);

/* T5's input ids for max length L >= 1: content[:L-1] + [EOS] + [PAD] * (L - 1 - kept) into
 * out[L]; *dropped (may be NULL) = content tokens cut by truncation. */
cd_status cd_spm_t5_ids(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, size_t L, int32_t *out,
                        size_t *dropped);

#endif
