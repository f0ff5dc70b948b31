/* encode.c — the public text-encoder API (include/cleardit.h, cd_encoder_*): a prompt becomes
 * FLUX's conditioning through the T5 encoder (src/model/t5.c) and the CLIP text model
 * (src/model/clip_text.c) with their tokenizers (src/text/). Finds the parts (a diffusers pipeline
 * root through model_dir.c, or single files with their tokenizers beside them), checks that each
 * tokenizer fits its encoder, and records the identity that keys the embedding cache
 * (encode_cache.c). docs/text_encoders.md is the user-facing description. */
#include "encode_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cd_encoder_params cd_encoder_params_default(void) {
    cd_encoder_params p;
    memset(&p, 0, sizeof p);
    p.semantics = CD_TOK_SENTENCEPIECE;
    p.device = CD_DEVICE_CPU;
    return p;
}

void cd_encoder_free(cd_encoder *e) {
    if (!e) return;
    cd_t5_free(e->t5);
    cd_clip_text_free(e->clip);
    cd_spm_free(e->spm);
    cd_clip_bpe_free(e->bpe);
    free(e->describe);
    free(e->identity);
    free(e);
}

int32_t cd_encoder_txt_dim(const cd_encoder *e) { return cd_t5_cfg(e->t5)->d_model; }
int32_t cd_encoder_pooled_dim(const cd_encoder *e) { return cd_clip_text_cfg(e->clip)->hidden; }
const char *cd_encoder_describe(const cd_encoder *e) { return e->describe; }
int32_t cd_encoder_default_length(const cd_encoder *e) { return e->default_L; }
const char *cd_encoder_identity(const cd_encoder *e) { return e->identity; }

/* Each tokenizer's ids must index its encoder's embedding rows (T5-XXL: 32100 pieces, 32128 rows). */
static cd_status check_vocab(cd_ctx *ctx, const cd_encoder *e, const char *t5_tok, const char *clip_tok) {
    const size_t sv = cd_spm_vocab_size(e->spm), cv = cd_clip_bpe_vocab_size(e->bpe);
    if (sv > (size_t)cd_t5_cfg(e->t5)->vocab)
        return cd_set_error(ctx, CD_ERR_SHAPE,
                            "T5 tokenizer %s has %zu pieces but the T5 encoder embeds only %d: a tokenizer of "
                            "another model?",
                            t5_tok, sv, (int)cd_t5_cfg(e->t5)->vocab);
    if (cv > (size_t)cd_clip_text_cfg(e->clip)->vocab)
        return cd_set_error(ctx, CD_ERR_SHAPE,
                            "CLIP tokenizer %s has %zu tokens but the CLIP text model embeds only %d: a tokenizer "
                            "of another model?",
                            clip_tok, cv, (int)cd_clip_text_cfg(e->clip)->vocab);
    return CD_OK;
}

cd_status cd_encoder_open(cd_ctx *ctx, const cd_encoder_params *p, cd_encoder **out) {
    if (!out) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "encoder: out is NULL");
    *out = NULL;
    if (!p) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "encoder: params are NULL");
    cd_enc_paths ps;
    cd_status s = cd_enc_resolve(ctx, p, &ps);
    if (s) return s;
    cd_encoder *e = calloc(1, sizeof *e);
    if (!e) {
        cd_enc_paths_free(&ps);
        return cd_set_error(ctx, CD_ERR_OOM, "encoder: out of memory");
    }
    e->semantics = p->semantics;
    e->default_L = ps.max_length_hint ? ps.max_length_hint : 512;
    if (!(s = cd_backend_ops(ctx, p->device, &e->ops)) && !(s = cd_t5_open(ctx, ps.t5, &e->t5)) &&
        !(s = cd_clip_text_open(ctx, ps.clip, &e->clip)) &&
        !(s = cd_enc_load_spm(ctx, ps.t5_tok, p->semantics, &e->spm)) &&
        !(s = cd_enc_load_bpe(ctx, ps.clip_tok, ps.clip_merges, &e->bpe)) &&
        !(s = check_vocab(ctx, e, ps.t5_tok, ps.clip_tok)))
        s = cd_enc_identity(ctx, e, &ps);
    cd_enc_paths_free(&ps);
    if (s) {
        cd_encoder_free(e);
        return s;
    }
    *out = e;
    return CD_OK;
}

cd_status cd_encoder_encode(cd_ctx *ctx, cd_encoder *e, const char *prompt, int32_t L, float *txt, float *pooled,
                            cd_encode_info *info) {
    if (!e || !prompt || !txt || !pooled)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "encode: encoder, prompt, txt and pooled are required");
    if (L < 1 || L > CD_ENC_MAX_L)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "encode: max length %d out of range [1, %d]", (int)L,
                            CD_ENC_MAX_L);
    const size_t len = strlen(prompt);
    int32_t *t5_ids = malloc((size_t)L * sizeof *t5_ids), clip_ids[CD_CLIP_MAX_LEN];
    if (!t5_ids) return cd_set_error(ctx, CD_ERR_OOM, "encode: out of memory");
    size_t t5_drop = 0, clip_drop = 0;
    const cd_clip_config *cc = cd_clip_text_cfg(e->clip);
    cd_status s = cd_enc_t5_ids(ctx, e, prompt, len, (size_t)L, t5_ids, &t5_drop);
    if (!s) s = cd_clip_bpe_encode_flux(ctx, e->bpe, prompt, clip_ids, &clip_drop);
    if (!s && cc->max_pos < CD_CLIP_MAX_LEN)
        s = cd_set_error(ctx, CD_ERR_SHAPE, "encode: the CLIP text model has %d positions; FLUX's prompts need %d",
                         (int)cc->max_pos, CD_CLIP_MAX_LEN);
    if (!s) s = cd_t5_encode(ctx, e->t5, e->ops, t5_ids, L, txt);
    if (!s) s = cd_clip_text_encode(ctx, e->clip, e->ops, clip_ids, CD_CLIP_MAX_LEN, NULL, pooled);
    if (!s && info) {
        info->t5_dropped = (int32_t)t5_drop;
        info->clip_dropped = (int32_t)clip_drop;
        if (info->t5_ids) memcpy(info->t5_ids, t5_ids, (size_t)L * sizeof *t5_ids);
        if (info->clip_ids) memcpy(info->clip_ids, clip_ids, sizeof clip_ids);
    }
    free(t5_ids);
    return s;
}
