/* test_model_dir.c — src/pipeline/model_dir.c: the parts of the tiny diffusers FLUX pipeline
 * (tests/fixtures/pipeline/tiny_dev/, written by tests/oracle/pipeline_fixtures.py with diffusers'
 * save_pretrained), a transformer folder or file, the one-line errors for each missing or foreign
 * part, and the tokenizer beside a single encoder file (exact messages). The tokenizers found are
 * loaded and give the ids FluxPipeline fed its encoders (tiny_dev_expect.safetensors). */
#include "test.h"
#include "test_files.h"
#include "cleardit.h"
#include "../src/pipeline/model_dir.h"
#include "../src/text/clip_bpe.h"
#include "../src/text/spm.h"

#include <stdio.h>
#include <string.h>

#define PIPE "tests/fixtures/pipeline/tiny_dev"

static cd_ctx *mkctx(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_create(NULL, &ctx);
    return ctx;
}

static int eq(const char *got, const char *want) { return got && want && !strcmp(got, want); }

TEST(model_dir_pipeline_root) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "ctx");
    cd_model_dir d;
    const char *root[] = {PIPE, PIPE "/"}; /* a trailing slash gives the same paths */
    for (int k = 0; k < 2; k++) {
        if (cd_model_dir_open(ctx, root[k], &d) != CD_OK) {
            EXPECT(0, "open %s: %s", root[k], cd_ctx_error(ctx));
            break;
        }
        EXPECT(d.is_pipeline == 1 && d.max_length_hint == 512, "pipeline %d hint %d", d.is_pipeline, d.max_length_hint);
        EXPECT(eq(d.root, root[k]), "root %s", d.root);
        EXPECT(eq(d.transformer, PIPE "/transformer"), "transformer %s", d.transformer);
        EXPECT(eq(d.vae, PIPE "/vae"), "vae %s", d.vae);
        EXPECT(eq(d.clip, PIPE "/text_encoder"), "clip %s", d.clip);
        EXPECT(eq(d.t5, PIPE "/text_encoder_2"), "t5 %s", d.t5);
        EXPECT(eq(d.clip_tokenizer, PIPE "/tokenizer/vocab.json"), "clip tok %s", d.clip_tokenizer);
        EXPECT(eq(d.clip_merges, PIPE "/tokenizer/merges.txt"), "clip merges %s", d.clip_merges);
        EXPECT(eq(d.t5_tokenizer, PIPE "/tokenizer_2/spiece.model"), "t5 tok %s", d.t5_tokenizer);
        /* the sharded T5 folder opens as one checkpoint (its index and both shards) */
        cd_ckpt *ck = NULL;
        EXPECT(cd_ckpt_open(ctx, d.t5, &ck) == CD_OK, "ckpt %s: %s", d.t5, cd_ctx_error(ctx));
        if (ck) EXPECT(cd_ckpt_find(ck, "encoder.final_layer_norm.weight") != NULL, "T5 final norm");
        cd_ckpt_close(ck);
        cd_model_dir_free(&d);
        EXPECT(d.root == NULL && d.t5 == NULL, "free zeroes");
    }
    cd_model_dir_free(NULL);
    cd_ctx_free(ctx);
}

TEST(model_dir_transformer_only) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "ctx");
    cd_model_dir d;
    /* a transformer folder: its config.json says guidance_embeds (dev-like) */
    CHECK(cd_model_dir_open(ctx, PIPE "/transformer", &d) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(d.is_pipeline == 0 && d.max_length_hint == 512, "pipeline %d hint %d", d.is_pipeline, d.max_length_hint);
    EXPECT(eq(d.transformer, PIPE "/transformer"), "transformer %s", d.transformer);
    EXPECT(!d.vae && !d.clip && !d.t5 && !d.clip_tokenizer && !d.clip_merges && !d.t5_tokenizer, "no encoders");
    cd_model_dir_free(&d);
    /* a transformer file inside that folder: the same config */
    const char *f = PIPE "/transformer/diffusion_pytorch_model.safetensors";
    CHECK(cd_model_dir_open(ctx, f, &d) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(eq(d.transformer, f) && d.max_length_hint == 512 && !d.t5, "file %s hint %d", d.transformer,
           d.max_length_hint);
    cd_model_dir_free(&d);
    /* schnell-like (guidance_embeds false): 256; no guidance_embeds key: unknown */
    char dir[64], path[160], src[2048], cwd[1024];
    CHECK(getcwd(cwd, sizeof cwd) && tmp_dir_tag(dir, sizeof dir, "mdir"), "tmp");
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    snprintf(src, sizeof src, "%s/%s", cwd, f);
    CHECK(symlink(src, path) == 0, "symlink");
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(write_text(path, "{\"_class_name\": \"FluxTransformer2DModel\", \"guidance_embeds\": false}"), "config");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_OK && d.max_length_hint == 256, "schnell hint %d: %s",
           d.max_length_hint, cd_ctx_error(ctx));
    cd_model_dir_free(&d);
    CHECK(write_text(path, "{\"_class_name\": \"FluxTransformer2DModel\"}"), "config");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_OK && d.max_length_hint == 0, "no key: hint %d", d.max_length_hint);
    cd_model_dir_free(&d);
    CHECK(write_text(path, "{\"_class_name\": \"FluxTransformer2DModel\","), "config");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_ERR_FORMAT && strstr(cd_ctx_error(ctx), "/config.json: line "),
           "broken config: %s", cd_ctx_error(ctx));
    tmp_rm(dir);
    /* a single file with no config beside: no hint */
    CHECK(cd_model_dir_open(ctx, "tests/fixtures/generate/tiny_dev.safetensors", &d) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(d.max_length_hint == 0 && d.transformer && !d.is_pipeline, "hint %d", d.max_length_hint);
    cd_model_dir_free(&d);
    cd_ctx_free(ctx);
}

/* A pipeline root in a temp dir whose parts are symlinks to the fixture's (parts[i] == 0 leaves
 * part i out); model_index.json is `index` (NULL: the fixture's). */
static const char *const k_parts[] = {"transformer", "vae",         "text_encoder", "text_encoder_2",
                                      "tokenizer",   "tokenizer_2", "scheduler"};

static int make_root(const char *dir, const int parts[7], const char *index) {
    char src[4096], dst[4096], cwd[2048];
    if (!getcwd(cwd, sizeof cwd)) return 0;
    for (int i = 0; i < 7; i++) {
        if (!parts[i]) continue;
        snprintf(src, sizeof src, "%s/" PIPE "/%s", cwd, k_parts[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, k_parts[i]);
        if (symlink(src, dst) != 0) return 0;
    }
    snprintf(dst, sizeof dst, "%s/model_index.json", dir);
    if (index) return write_text(dst, index);
    snprintf(src, sizeof src, "%s/" PIPE "/model_index.json", cwd);
    return symlink(src, dst) == 0;
}

/* Opens a root built by make_root and checks the status and that the message contains `want`. */
static void expect_error(cd_ctx *ctx, const int parts[7], const char *index, cd_status want_s, const char *want) {
    char dir[64];
    if (!tmp_dir_tag(dir, sizeof dir, "mdir")) {
        EXPECT(0, "tmp dir");
        return;
    }
    char msg[1024];
    if (!make_root(dir, parts, index)) {
        EXPECT(0, "make_root");
    } else {
        cd_model_dir d;
        cd_status s = cd_model_dir_open(ctx, dir, &d);
        snprintf(msg, sizeof msg, want, dir, dir); /* formats use %s once or twice */
        EXPECT(s == want_s && strstr(cd_ctx_error(ctx), msg) && !d.root && !d.transformer,
               "status %d, message \"%s\", wanted %d \"%s\"", (int)s, cd_ctx_error(ctx), (int)want_s, msg);
        EXPECT(!strchr(cd_ctx_error(ctx), '\n'), "one line");
    }
    tmp_rm(dir);
}

TEST(model_dir_missing_parts) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "ctx");
    const int all[7] = {1, 1, 1, 1, 1, 1, 1};
    int p[7];
    /* the whole set through symlinks first: found */
    char dir[64];
    CHECK(tmp_dir_tag(dir, sizeof dir, "mdir") && make_root(dir, all, NULL), "root");
    cd_model_dir d;
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_OK && d.is_pipeline, "%s", cd_ctx_error(ctx));
    cd_model_dir_free(&d);
    tmp_rm(dir);
    static const char *const want[6] = {
        "the FLUX transformer is missing: expected the folder %s/transformer/ (model_index.json lists "
        "FluxTransformer2DModel)",
        "the autoencoder is missing: expected the folder %s/vae/",
        "the CLIP text encoder is missing: expected the folder %s/text_encoder/ (model_index.json lists CLIPTextModel)",
        "the T5 encoder is missing: expected the folder %s/text_encoder_2/ (model_index.json lists T5EncoderModel)",
        "the CLIP tokenizer is missing: expected the folder %s/tokenizer/",
        "the T5 tokenizer is missing: expected the folder %s/tokenizer_2/",
    };
    for (int i = 0; i < 6; i++) {
        memcpy(p, all, sizeof p);
        p[i] = 0;
        expect_error(ctx, p, NULL, CD_ERR_NOT_FOUND, want[i]);
    }
    /* the scheduler is not needed */
    memcpy(p, all, sizeof p);
    p[6] = 0;
    CHECK(tmp_dir_tag(dir, sizeof dir, "mdir") && make_root(dir, p, NULL), "root");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_OK, "no scheduler: %s", cd_ctx_error(ctx));
    cd_model_dir_free(&d);
    tmp_rm(dir);
    /* model_index.json: a part saved as None, a foreign class, a foreign pipeline, broken JSON */
    const char *idx_none =
        "{\"_class_name\": \"FluxPipeline\", \"transformer\": [\"diffusers\", \"FluxTransformer2DModel\"],"
        " \"vae\": [\"diffusers\", \"AutoencoderKL\"], \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
        " \"text_encoder_2\": [null, null], \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],"
        " \"tokenizer_2\": [\"transformers\", \"T5TokenizerFast\"]}";
    expect_error(
        ctx, all, idx_none, CD_ERR_NOT_FOUND,
        "the T5 encoder is missing: %s/model_index.json lists no text_encoder_2 (expected in %s/text_encoder_2/)");
    const char *idx_cls =
        "{\"_class_name\": \"FluxPipeline\", \"transformer\": [\"diffusers\", \"SD3Transformer2DModel\"]}";
    expect_error(ctx, all, idx_cls, CD_ERR_UNSUPPORTED,
                 "%s/model_index.json: transformer is a SD3Transformer2DModel, not a FluxTransformer2DModel");
    expect_error(ctx, all, "{\"_class_name\": \"StableDiffusionPipeline\"}", CD_ERR_UNSUPPORTED,
                 "%s/model_index.json: _class_name StableDiffusionPipeline is not a FLUX pipeline");
    expect_error(ctx, all, "{\"_class_name\": \"FluxPipeline\",", CD_ERR_FORMAT, "%s/model_index.json: line ");
    expect_error(ctx, all, "[1, 2]", CD_ERR_FORMAT, "%s/model_index.json: no _class_name");
    cd_ctx_free(ctx);
}

TEST(model_dir_empty_and_foreign_folders) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "ctx");
    const int none[7] = {0};
    /* a part folder without weights, a tokenizer folder without a tokenizer */
    char dir[64], sub[128], msg[512];
    int p[7] = {1, 1, 1, 0, 1, 0, 1};
    CHECK(tmp_dir_tag(dir, sizeof dir, "mdir") && make_root(dir, p, NULL), "root");
    snprintf(sub, sizeof sub, "%s/text_encoder_2", dir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    snprintf(sub, sizeof sub, "%s/tokenizer_2", dir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    cd_model_dir d;
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_ERR_NOT_FOUND, "empty T5 folder");
    snprintf(msg, sizeof msg,
             "the T5 encoder is missing: no .safetensors file or *.safetensors.index.json in %s/text_encoder_2/", dir);
    EXPECT(!strcmp(cd_ctx_error(ctx), msg), "got \"%s\"", cd_ctx_error(ctx));
    /* weights present, tokenizer folder empty */
    snprintf(sub, sizeof sub, "%s/text_encoder_2/model.safetensors", dir);
    CHECK(write_st(sub, "{}", 0), "write");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_ERR_NOT_FOUND, "empty tokenizer folder");
    snprintf(msg, sizeof msg, "the T5 tokenizer is missing: expected %s/tokenizer_2/spiece.model or tokenizer.json",
             dir);
    EXPECT(!strcmp(cd_ctx_error(ctx), msg), "got \"%s\"", cd_ctx_error(ctx));
    /* a tokenizer.json of the other kind does not count */
    snprintf(sub, sizeof sub, "%s/tokenizer_2/tokenizer.json", dir);
    CHECK(write_text(sub, "{\"model\": {\"type\": \"BPE\"}}"), "write");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_ERR_NOT_FOUND && !strcmp(cd_ctx_error(ctx), msg), "BPE json: %s",
           cd_ctx_error(ctx));
    CHECK(write_text(sub, "{\"model\": {\"type\": \"Unigram\"}}"), "write");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_OK, "Unigram json: %s", cd_ctx_error(ctx));
    snprintf(msg, sizeof msg, "%s/tokenizer_2/tokenizer.json", dir);
    EXPECT(eq(d.t5_tokenizer, msg), "t5 tok %s", d.t5_tokenizer);
    cd_model_dir_free(&d);
    tmp_rm(dir);

    /* an empty folder; a folder with only transformer/; a text encoder's folder; no such path */
    CHECK(tmp_dir_tag(dir, sizeof dir, "mdir") && make_root(dir, none, "{}"), "root");
    snprintf(sub, sizeof sub, "%s/model_index.json", dir);
    unlink(sub);
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_ERR_NOT_FOUND, "empty");
    snprintf(msg, sizeof msg, "%s: no model_index.json (a diffusers FLUX pipeline) and no .safetensors file", dir);
    EXPECT(strstr(cd_ctx_error(ctx), msg) != NULL, "got \"%s\"", cd_ctx_error(ctx));
    snprintf(sub, sizeof sub, "%s/transformer", dir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    EXPECT(cd_model_dir_open(ctx, dir, &d) == CD_ERR_NOT_FOUND, "transformer/ only");
    snprintf(msg, sizeof msg, "%s has a transformer/ folder but no model_index.json: pass %s/transformer", dir, dir);
    EXPECT(strstr(cd_ctx_error(ctx), msg) != NULL, "got \"%s\"", cd_ctx_error(ctx));
    tmp_rm(dir);
    EXPECT(cd_model_dir_open(ctx, PIPE "/text_encoder_2", &d) == CD_ERR_UNSUPPORTED &&
               !strcmp(cd_ctx_error(ctx), PIPE "/text_encoder_2 holds a T5EncoderModel (config.json), not a FLUX "
                                               "transformer or a diffusers FLUX pipeline"),
           "got \"%s\"", cd_ctx_error(ctx));
    EXPECT(cd_model_dir_open(ctx, PIPE "/vae", &d) == CD_ERR_UNSUPPORTED &&
               strstr(cd_ctx_error(ctx), "holds a AutoencoderKL"),
           "got \"%s\"", cd_ctx_error(ctx));
    EXPECT(cd_model_dir_open(ctx, PIPE "/nope", &d) == CD_ERR_NOT_FOUND &&
               !strcmp(cd_ctx_error(ctx), PIPE "/nope: No such file or directory"),
           "got \"%s\"", cd_ctx_error(ctx));
    cd_ctx_free(ctx);
}

TEST(model_dir_tokenizer_beside) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "ctx");
    char dir[64], f[128], g[128], msg[1024], cwd[2048], src[4096];
    CHECK(getcwd(cwd, sizeof cwd), "cwd");
    CHECK(tmp_dir_tag(dir, sizeof dir, "mtok"), "tmp");
    char *tok = NULL, *merges = NULL;
    /* ComfyUI single files with nothing beside: the exact messages */
    snprintf(f, sizeof f, "%s/t5xxl_fp16.safetensors", dir);
    CHECK(write_st(f, "{}", 0), "write");
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_T5, f, &tok, &merges) == CD_ERR_NOT_FOUND && !tok, "t5 none");
    snprintf(msg, sizeof msg,
             "no tokenizer beside %s: pass --t5-tokenizer FILE (diffusers keeps it in tokenizer_2/spiece.model or "
             "tokenizer_2/tokenizer.json; ComfyUI in comfy/text_encoders/t5_tokenizer/tokenizer.json)",
             f);
    EXPECT(!strcmp(cd_ctx_error(ctx), msg), "got \"%s\"", cd_ctx_error(ctx));
    snprintf(g, sizeof g, "%s/clip_l.safetensors", dir);
    CHECK(write_st(g, "{}", 0), "write");
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_CLIP, g, &tok, &merges) == CD_ERR_NOT_FOUND && !tok, "clip none");
    snprintf(
        msg, sizeof msg,
        "no tokenizer beside %s: pass --clip-tokenizer FILE (diffusers keeps it in tokenizer/vocab.json, with "
        "merges.txt beside; ComfyUI in comfy/sd1_tokenizer/vocab.json; open_clip ships bpe_simple_vocab_16e6.txt.gz)",
        g);
    EXPECT(!strcmp(cd_ctx_error(ctx), msg), "got \"%s\"", cd_ctx_error(ctx));
    /* a vocab.json without merges.txt is not a tokenizer */
    snprintf(src, sizeof src, "%s/vocab.json", dir);
    CHECK(symlink(strcat(strcpy(msg, cwd), "/" PIPE "/tokenizer/vocab.json"), src) == 0, "symlink");
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_CLIP, g, &tok, &merges) == CD_ERR_NOT_FOUND, "vocab alone");
    /* ComfyUI's folder names beside the file */
    snprintf(src, sizeof src, "%s/t5_tokenizer", dir);
    CHECK(mkdir(src, 0755) == 0, "mkdir");
    snprintf(src, sizeof src, "%s/t5_tokenizer/tokenizer.json", dir);
    CHECK(symlink(strcat(strcpy(msg, cwd), "/" PIPE "/tokenizer_2/tokenizer.json"), src) == 0, "symlink");
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_T5, f, &tok, &merges) == CD_OK && eq(tok, src) && !merges,
           "t5 comfy %s: %s", tok, cd_ctx_error(ctx));
    free(tok);
    snprintf(src, sizeof src, "%s/sd1_tokenizer", dir);
    CHECK(symlink(strcat(strcpy(msg, cwd), "/" PIPE "/tokenizer"), src) == 0, "symlink");
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_CLIP, g, &tok, &merges) == CD_OK, "clip comfy: %s", cd_ctx_error(ctx));
    snprintf(src, sizeof src, "%s/sd1_tokenizer/vocab.json", dir);
    EXPECT(eq(tok, src), "clip tok %s", tok);
    snprintf(src, sizeof src, "%s/sd1_tokenizer/merges.txt", dir);
    EXPECT(eq(merges, src), "clip merges %s", merges);
    free(tok);
    free(merges);
    /* a spiece.model beside the file wins over the subfolder */
    snprintf(src, sizeof src, "%s/spiece.model", dir);
    CHECK(symlink(strcat(strcpy(msg, cwd), "/tests/fixtures/spm/t5like.model"), src) == 0, "symlink");
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_T5, f, &tok, NULL) == CD_OK && eq(tok, src), "spiece %s", tok);
    free(tok);
    tmp_rm(dir);
    /* diffusers: a text encoder's shard or folder finds the sibling tokenizer folder */
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_T5, PIPE "/text_encoder_2/model-00001-of-00002.safetensors", &tok,
                               NULL) == CD_OK &&
               tok && strstr(tok, "/" PIPE "/tokenizer_2/spiece.model"),
           "sibling t5 %s: %s", tok, cd_ctx_error(ctx));
    free(tok);
    EXPECT(cd_tokenizer_beside(ctx, CD_TOKENIZER_CLIP, PIPE "/text_encoder", &tok, &merges) == CD_OK && tok &&
               strstr(tok, "/" PIPE "/tokenizer/vocab.json") && merges && strstr(merges, "/tokenizer/merges.txt"),
           "sibling clip %s %s: %s", tok, merges, cd_ctx_error(ctx));
    free(tok);
    free(merges);
    cd_ctx_free(ctx);
}

/* The tokenizers found in the pipeline give the ids FluxPipeline fed its encoders. */
TEST(model_dir_pipeline_tokenizer_ids) {
    cd_ctx *ctx = mkctx();
    CHECK(ctx, "ctx");
    cd_model_dir d;
    CHECK(cd_model_dir_open(ctx, PIPE, &d) == CD_OK, "%s", cd_ctx_error(ctx));
    cd_st_file *e = NULL;
    cd_spm *spm = NULL;
    cd_clip_bpe *bpe = NULL;
    EXPECT(cd_st_open(ctx, PIPE "_expect.safetensors", &e) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(cd_spm_load(ctx, d.t5_tokenizer, &spm) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(cd_clip_bpe_load_json(ctx, d.clip_tokenizer, d.clip_merges, &bpe) == CD_OK, "%s", cd_ctx_error(ctx));
    const char *np = e ? cd_st_meta(e, "n_prompts") : NULL;
    const char *ml = e ? cd_st_meta(e, "max_sequence_length") : NULL;
    const int n = np ? atoi(np) : 0, L = ml ? atoi(ml) : 0;
    EXPECT(n == 6 && L == 32, "n_prompts %d, L %d", n, L);
    for (int i = 0; spm && bpe && i < n && L == 32; i++) {
        char key[64];
        snprintf(key, sizeof key, "prompt_%d", i);
        const char *prompt = cd_st_meta(e, key);
        snprintf(key, sizeof key, "p%d_t5_ids", i);
        const cd_st_tensor *t5 = cd_st_find(e, key);
        snprintf(key, sizeof key, "p%d_clip_ids", i);
        const cd_st_tensor *cl = cd_st_find(e, key);
        if (!prompt || !t5 || !cl || t5->dtype != CD_DTYPE_I32 || cd_st_numel(t5) != 32 || cl->dtype != CD_DTYPE_I32 ||
            cd_st_numel(cl) != CD_CLIP_MAX_LEN) {
            EXPECT(0, "prompt %d: fixture entries", i);
            continue;
        }
        int32_t got[CD_CLIP_MAX_LEN], want[CD_CLIP_MAX_LEN];
        size_t dropped;
        memcpy(want, t5->data, 32 * sizeof(int32_t));
        EXPECT(cd_spm_t5_ids(ctx, spm, prompt, strlen(prompt), 32, got, &dropped) == CD_OK, "%s", cd_ctx_error(ctx));
        EXPECT(!memcmp(got, want, 32 * sizeof(int32_t)), "prompt %d: T5 ids differ from FluxPipeline's", i);
        memcpy(want, cl->data, CD_CLIP_MAX_LEN * sizeof(int32_t));
        EXPECT(cd_clip_bpe_encode_flux(ctx, bpe, prompt, got, &dropped) == CD_OK, "%s", cd_ctx_error(ctx));
        EXPECT(!memcmp(got, want, sizeof got), "prompt %d: CLIP ids differ from FluxPipeline's", i);
    }
    cd_clip_bpe_free(bpe);
    cd_spm_free(spm);
    cd_st_close(e);
    cd_model_dir_free(&d);
    cd_ctx_free(ctx);
}
