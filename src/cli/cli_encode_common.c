/* cli_encode_common.c — the encoder flags and the prompt encode shared by `encode` and
 * `generate --prompt` (cli_encode.h). */
#include "cli_common.h"
#include "cli_encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_encoder_given(const cli_encoder_flags *f) {
    return f->t5 || f->clip || f->t5_tok || f->clip_tok || f->sem_s || f->max_length;
}

int cli_encoder_check(const char *cmd, const cli_encoder_flags *f) {
    if (f->sem_s && strcmp(f->sem_s, "sentencepiece") && strcmp(f->sem_s, "diffusers")) {
        cli_error(cmd, "--tokenizer-semantics must be sentencepiece or diffusers (got '%s')", f->sem_s);
        return CLI_BAD_INPUT;
    }
    int dev = 0;
    if (f->device_s && cli_parse_device(cmd, f->device_s, &dev)) return CLI_BAD_INPUT;
    if (!f->model && (!f->t5 || !f->clip)) {
        cli_error(cmd, "the text encoders are needed: --model DIR (a diffusers FLUX folder) or --t5 PATH and "
                       "--clip PATH");
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

void cli_encoded_free(cli_encoded *r) {
    free(r->txt);
    free(r->pooled);
    free(r->t5_ids);
    free(r->describe);
    memset(r, 0, sizeof *r);
}

int cli_encode_prompt(const char *cmd, cd_ctx *ctx, const cli_encoder_flags *f, const char *prompt, int32_t default_L,
                      const char *cache_dir, int want_ids, int quiet, cli_encoded *out) {
    memset(out, 0, sizeof *out);
    if (f->sem_s && strcmp(f->sem_s, "sentencepiece") && strcmp(f->sem_s, "diffusers")) {
        cli_error(cmd, "--tokenizer-semantics must be sentencepiece or diffusers (got '%s')", f->sem_s);
        return CLI_BAD_INPUT;
    }
    cd_encoder_params ep = cd_encoder_params_default();
    ep.model_dir = f->model;
    ep.t5 = f->t5;
    ep.clip = f->clip;
    ep.t5_tokenizer = f->t5_tok;
    ep.clip_tokenizer = f->clip_tok;
    ep.semantics = f->sem_s && !strcmp(f->sem_s, "diffusers") ? CD_TOK_DIFFUSERS : CD_TOK_SENTENCEPIECE;
    int dev = 0;
    if (f->device_s && cli_parse_device(cmd, f->device_s, &dev)) return CLI_BAD_INPUT;
    ep.device = (cd_device)dev;
    if (dev != CD_DEVICE_CPU && cli_open_device(cmd, ctx, dev)) return CLI_BAD_INPUT;
    cd_encoder *e = NULL;
    cd_status s = cd_encoder_open(ctx, &ep, &e);
    if (s != CD_OK) {
        cli_error(cmd, "%s", cd_ctx_error(ctx));
        return s == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
    }
    const int32_t L = f->max_length ? (int32_t)f->max_length : default_L ? default_L : cd_encoder_default_length(e);
    out->L = L;
    out->D = cd_encoder_txt_dim(e);
    out->P = cd_encoder_pooled_dim(e);
    out->txt = malloc((size_t)L * (size_t)out->D * sizeof(float));
    out->pooled = malloc((size_t)out->P * sizeof(float));
    out->t5_ids = want_ids ? malloc((size_t)L * sizeof(int32_t)) : NULL;
    out->describe = strdup(cd_encoder_describe(e));
    if (!out->txt || !out->pooled || (want_ids && !out->t5_ids) || !out->describe) {
        cd_encoder_free(e);
        cli_encoded_free(out);
        cli_error(cmd, "out of memory for the embeddings");
        return CLI_RUNTIME;
    }
    /* on a terminal, what is about to run (T5-XXL takes a while on a CPU); in logs only the result,
     * so that an error stays the only line */
    if (!quiet && isatty(2))
        fprintf(stderr, "cleardit %s: encoding the prompt (%s, max length %d)\n", cmd, out->describe, (int)L);
    cd_encode_info info = {0, 0, out->t5_ids, want_ids ? out->clip_ids : NULL};
    int hit = 0;
    const double t0 = cli_now();
    s = cd_encoder_encode_cached(ctx, e, cache_dir, prompt, L, out->txt, out->pooled, &info, &hit);
    cd_encoder_free(e); /* the encoders' mappings go before anything else runs */
    if (s != CD_OK) {
        cli_error(cmd, "%s", cd_ctx_error(ctx));
        cli_encoded_free(out);
        return s == CD_ERR_OOM || s == CD_ERR_IO ? CLI_RUNTIME : CLI_BAD_INPUT;
    }
    if (info.t5_dropped > 0)
        fprintf(stderr,
                "cleardit %s: warning: the prompt is longer than %d T5 tokens: %d tokens dropped (FLUX "
                "truncates too)\n",
                cmd, (int)L, (int)info.t5_dropped);
    if (info.clip_dropped > 0)
        fprintf(stderr,
                "cleardit %s: warning: the prompt is longer than 75 CLIP tokens: %d tokens dropped from the "
                "pooled embedding (FLUX truncates too)\n",
                cmd, (int)info.clip_dropped);
    if (!quiet)
        fprintf(stderr, "cleardit %s: %s in %.2f s (max length %d; %s)\n", cmd,
                hit ? "embeddings from the cache" : "encoded", cli_now() - t0, (int)L, out->describe);
    return CLI_OK;
}
