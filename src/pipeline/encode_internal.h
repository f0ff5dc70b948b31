/* encode_internal.h — the text-encoder pipeline's private parts (encode.c, encode_find.c,
 * encode_cache.c). */
#ifndef CD_ENCODE_INTERNAL_H
#define CD_ENCODE_INTERNAL_H

#include "../model/clip_text.h"
#include "../model/t5.h"
#include "../ops/ops.h"
#include "../text/clip_bpe.h"
#include "../text/spm.h"

#define CD_ENC_MAX_L 4096 /* T5 sequence length bound (FLUX uses 256 or 512) */

struct cd_encoder {
    const cd_ops *ops;
    cd_t5 *t5;
    cd_clip_text *clip;
    cd_spm *spm;
    cd_clip_bpe *bpe;
    cd_tok_semantics semantics;
    int32_t default_L; /* cd_encoder_default_length */
    char *describe;    /* cd_encoder_describe */
    char *identity;    /* cd_encoder_identity */
};

/* The four inputs, resolved to paths (malloc'd). */
typedef struct {
    char *t5, *clip, *t5_tok, *clip_tok;
    char *clip_merges;       /* merges.txt when clip_tok is a vocab.json (NULL: beside it) */
    int32_t max_length_hint; /* model_dir's (512 dev-like, 256 schnell-like), 0 unknown */
} cd_enc_paths;

/* model_dir's parts, overridden by the explicit paths; a tokenizer left NULL is looked for beside
 * its checkpoint; what cannot be found is a one-line error naming the flag that supplies it. */
cd_status cd_enc_resolve(cd_ctx *ctx, const cd_encoder_params *p, cd_enc_paths *out);
void cd_enc_paths_free(cd_enc_paths *ps);
/* A tokenizer from a file (by its kind) or a directory. */
cd_status cd_enc_load_spm(cd_ctx *ctx, const char *path, cd_tok_semantics sem, cd_spm **out);
cd_status cd_enc_load_bpe(cd_ctx *ctx, const char *path, const char *merges, cd_clip_bpe **out);
/* e->identity and e->describe from the resolved paths. */
cd_status cd_enc_identity(cd_ctx *ctx, cd_encoder *e, const cd_enc_paths *ps);
/* T5 ids in e's semantics. */
cd_status cd_enc_t5_ids(cd_ctx *ctx, const cd_encoder *e, const char *text, size_t len, size_t L, int32_t *ids,
                        size_t *dropped);

#endif
