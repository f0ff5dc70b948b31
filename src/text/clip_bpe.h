/* clip_bpe.h — CLIP's byte-level BPE tokenizer (library-private for now; no CLI yet).
 *
 * Semantics: transformers' CLIPTokenizer (5.x: built on HF tokenizers, what diffusers' FluxPipeline
 * gets from a FLUX pipeline's tokenizer/ folder): special tokens spelled exactly in the prompt are
 * matched first; the rest is normalised (NFC, whitespace runs to one space, lowercase),
 * split by CLIP's pattern (then GPT-2's, which only re-splits a lowercased special-token spelling),
 * mapped byte-to-unicode and merged by BPE rank with `</w>` on a word's last symbol.
 * docs/tokenizer_clip.md lists the differences from the other semantics, with examples.
 *
 * Loaders: diffusers' tokenizer/ (vocab.json + merges.txt) or open_clip's
 * bpe_simple_vocab_16e6.txt.gz; both give the same tokenizer. Files are untrusted: sizes and
 * counts are bounded and checked; errors are one line in the context. */
#ifndef CD_CLIP_BPE_H
#define CD_CLIP_BPE_H

#include "../util/internal.h"

#include <stddef.h>
#include <stdint.h>

#define CD_CLIP_MAX_LEN 77           /* FLUX's CLIP sequence: BOS + 75 content + EOS/pad */
#define CD_CLIP_MAX_MERGES 48894     /* merges CLIP uses: 49152 - 256 - 2 (later lines are ignored) */
#define CD_CLIP_MAX_PROMPT (1 << 16) /* bytes; a longer prompt is an error, not a silent cut */

typedef struct cd_clip_bpe cd_clip_bpe;

/* diffusers / transformers layout: vocab.json (token -> id) and merges.txt ("#version" line, then
 * "a b" per line, rank = line order). *out = NULL on failure. */
cd_status cd_clip_bpe_load_json(cd_ctx *ctx, const char *vocab_json, const char *merges_txt, cd_clip_bpe **out);
/* open_clip layout: gzip text, first line a header, then merges; the vocabulary is built as
 * open_clip builds it: 256 byte symbols, the same with `</w>`, one per merge, then
 * <|startoftext|>, <|endoftext|>. */
cd_status cd_clip_bpe_load_gz(cd_ctx *ctx, const char *gz_path, cd_clip_bpe **out);
/* HF tokenizers' tokenizer.json (CLIPTokenizerFast): model BPE, vocab object, merges as "a b"
 * strings or [a, b] pairs (rank = order); end_of_word_suffix "</w>". Same tokenizer as above. */
cd_status cd_clip_bpe_load_tokenizer_json(cd_ctx *ctx, const char *path, cd_clip_bpe **out);
/* A folder (diffusers' tokenizer/): vocab.json + merges.txt, else tokenizer.json. */
cd_status cd_clip_bpe_load_dir(cd_ctx *ctx, const char *dir, cd_clip_bpe **out);
void cd_clip_bpe_free(cd_clip_bpe *t);

size_t cd_clip_bpe_vocab_size(const cd_clip_bpe *t);
int32_t cd_clip_bpe_bos(const cd_clip_bpe *t); /* id of <|startoftext|> (49406 in CLIP) */
int32_t cd_clip_bpe_eos(const cd_clip_bpe *t); /* id of <|endoftext|> (49407), also FLUX's pad */

/* Content ids of `text` (len bytes of UTF-8; no BOS/EOS). Writes min(total, cap) ids and sets
 * *n_total to the total count. Invalid UTF-8: CD_ERR_INVALID_ARG naming the byte offset. */
cd_status cd_clip_bpe_tokenize(cd_ctx *ctx, const cd_clip_bpe *t, const char *text, size_t len, int32_t *ids,
                               size_t cap, size_t *n_total);

/* FLUX's layout (transformers: max_length=77, padding="max_length", truncation=True):
 * ids = [BOS] + content[:75] + [EOS] + [EOS]*pad to 77; *dropped = content tokens cut (may be
 * NULL). `prompt` is NUL-terminated; "" is valid (the unconditional prompt). */
cd_status cd_clip_bpe_encode_flux(cd_ctx *ctx, const cd_clip_bpe *t, const char *prompt, int32_t ids[CD_CLIP_MAX_LEN],
                                  size_t *dropped);

#endif
