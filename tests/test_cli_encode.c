/* test_cli_encode.c — `cleardit encode` and `cleardit generate --prompt` for a FLUX model, as a user
 * runs them on the tiny diffusers pipeline folder (tests/fixtures/pipeline/): the embeddings file
 * (what --prompt-embeds reads) holds what the library computes (test_encode.c checks that against
 * diffusers), generate finds every part from the folder and caches the embeddings, and bad input is
 * one error line, exit 2, nothing written. */
#include "test.h"
#include "test_files.h"
#include "test_spawn.h"
#include "cleardit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPE "tests/fixtures/pipeline/tiny_dev"

static cd_ctx *mkctx(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 2;
    return cd_ctx_create(&cp, &ctx) == CD_OK ? ctx : NULL;
}

TEST(cli_encode_writes_the_library_embeddings) {
    char dir[64], out[128], outb[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "cli_enc"), "temp dir");
    snprintf(out, sizeof out, "%s/fox.safetensors", dir);
    snprintf(outb, sizeof outb, "%s/fox_bf16.safetensors", dir);
    cli_run r;
    RUN(&r, "encode", "--model", PIPE, "--prompt", "a red fox in the snow", "--max-length", "16", "--ids", "-o", out);
    EXPECT(r.code == 0, "exit %d: %s", r.code, r.err);
    RUN(&r, "encode", "--model", PIPE, "--prompt", "a red fox in the snow", "--max-length", "16", "--out-dtype", "bf16",
        "-o", outb);
    EXPECT(r.code == 0, "bf16: exit %d: %s", r.code, r.err);
    cd_ctx *ctx = mkctx();
    cd_encoder_params p = cd_encoder_params_default();
    p.model_dir = PIPE;
    cd_encoder *e = NULL;
    cd_st_file *f = NULL, *fb = NULL;
    float txt[16 * 24], pooled[20];
    int32_t t5[16], clip[77];
    cd_encode_info info = {0, 0, t5, clip};
    if (ctx && cd_encoder_open(ctx, &p, &e) == CD_OK &&
        cd_encoder_encode(ctx, e, "a red fox in the snow", 16, txt, pooled, &info) == CD_OK &&
        cd_st_open(ctx, out, &f) == CD_OK && cd_st_open(ctx, outb, &fb) == CD_OK) {
        const cd_st_tensor *t = cd_st_find(f, "txt"), *pl = cd_st_find(f, "pooled"), *ti = cd_st_find(f, "t5_ids"),
                           *ci = cd_st_find(f, "clip_ids"), *tb = cd_st_find(fb, "txt");
        EXPECT(t && t->dtype == CD_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 16 && t->shape[1] == 24 &&
                   !memcmp(t->data, txt, sizeof txt),
               "txt [16, 24] f32 equal to the library's");
        EXPECT(pl && pl->ndim == 1 && pl->shape[0] == 20 && !memcmp(pl->data, pooled, sizeof pooled), "pooled");
        EXPECT(ti && ci && !memcmp(ti->data, t5, sizeof t5) && !memcmp(ci->data, clip, sizeof clip), "--ids");
        EXPECT(tb && tb->dtype == CD_DTYPE_BF16 && !cd_st_find(fb, "t5_ids"), "--out-dtype bf16, no ids");
        const char *m = cd_st_meta(f, "prompt");
        EXPECT(m && !strcmp(m, "a red fox in the snow") && cd_st_meta(f, "encoders") &&
                   !strcmp(cd_st_meta(f, "max_length"), "16"),
               "metadata");
    } else {
        test_fail(__FILE__, __LINE__, "reading back: %s", ctx ? cd_ctx_error(ctx) : "no context");
    }
    cd_st_close(f);
    cd_st_close(fb);
    cd_encoder_free(e);
    cd_ctx_free(ctx);
    /* the parts as separate files (ComfyUI users' way): the same embeddings */
    char out2[128];
    snprintf(out2, sizeof out2, "%s/files.safetensors", dir);
    RUN(&r, "encode", "--t5", PIPE "/text_encoder_2/model.safetensors.index.json", "--clip", PIPE "/text_encoder",
        "--t5-tokenizer", PIPE "/tokenizer_2/spiece.model", "--clip-tokenizer", PIPE "/tokenizer/vocab.json",
        "--prompt", "a red fox in the snow", "--max-length", "16", "-o", out2);
    EXPECT(r.code == 0, "separate files: exit %d: %s", r.code, r.err);
    ctx = mkctx();
    cd_st_file *f2 = NULL;
    f = NULL;
    if (ctx && cd_st_open(ctx, out, &f) == CD_OK && cd_st_open(ctx, out2, &f2) == CD_OK) {
        const cd_st_tensor *a = cd_st_find(f, "txt"), *b = cd_st_find(f2, "txt");
        EXPECT(a && b && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes),
               "the folder and the separate files give the same txt");
    } else {
        test_fail(__FILE__, __LINE__, "reading back: %s", ctx ? cd_ctx_error(ctx) : "no context");
    }
    cd_st_close(f);
    cd_st_close(f2);
    cd_ctx_free(ctx);
    /* the empty prompt is FLUX's unconditional prompt */
    RUN(&r, "encode", "--model", PIPE, "--prompt", "", "--max-length", "8", "-o", out);
    EXPECT(r.code == 0, "empty prompt: exit %d: %s", r.code, r.err);
    /* longer than L: a warning with the count */
    RUN(&r, "encode", "--model", PIPE, "--prompt", "one two three four five six seven eight nine ten", "--max-length",
        "4", "-o", out);
    EXPECT(r.code == 0 && strstr(r.err, "warning") && strstr(r.err, "tokens dropped"), "truncation: %s", r.err);
    tmp_rm(dir);
}

TEST(cli_encode_bad_input) {
    char dir[64], out[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "cli_enc_bad"), "temp dir");
    snprintf(out, sizeof out, "%s/x.safetensors", dir);
    cli_run r;
    struct {
        const char *args[12];
        const char *needle;
    } cases[] = {
        {{"encode", "--model", PIPE, "-o", out, NULL}, "--prompt"},
        {{"encode", "--prompt", "x", "-o", out, NULL}, "--model"},
        {{"encode", "--model", PIPE, "--prompt", "x", "--out-dtype", "f64", "-o", out, NULL}, "--out-dtype"},
        {{"encode", "--model", PIPE, "--prompt", "x", "--tokenizer-semantics", "hf", "-o", out, NULL}, "semantics"},
        {{"encode", "--model", PIPE, "--prompt", "x", "--max-length", "0", "-o", out, NULL}, "--max-length"},
        {{"encode", "--model", PIPE "/transformer", "--prompt", "x", "-o", out, NULL}, "--t5"},
        {{"encode", "--model", PIPE, "--prompt", "caf\xc3\x28", "-o", out, NULL}, "offset"},
        {{"encode", "--model", "/nonexistent/flux", "--prompt", "x", "-o", out, NULL}, "/nonexistent/flux"},
        {{"encode", "--t5", PIPE "/text_encoder_2", "--clip", PIPE "/text_encoder", "--t5-tokenizer",
          "tests/fixtures/spm/none.model", "--prompt", "x", "-o", out, NULL},
         "none.model"},
        {{"encode", "--model", PIPE, "--prompt", "x", "--ids", "--cache", dir, "-o", out, NULL}, "--cache"},
        /* a tokenizer of another model: 1000 pieces for an encoder that embeds 64 */
        {{"encode", "--t5", "tests/fixtures/t5/a_f32.safetensors", "--clip", PIPE "/text_encoder", "--t5-tokenizer",
          "tests/fixtures/spm/t5like.model", "--prompt", "x", "-o", out, NULL},
         "embeds only 64"},
        /* a single T5 file with no tokenizer beside it */
        {{"encode", "--t5", "tests/fixtures/t5/a_f32.safetensors", "--clip", PIPE "/text_encoder", "--prompt", "x",
          "-o", out, NULL},
         "--t5-tokenizer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(run_cli(cases[i].args, &r), "run");
        EXPECT(r.code == 2 && one_error_line(r.err, "encode") && strstr(r.err, cases[i].needle),
               "case %zu: exit %d, stderr: %s", i, r.code, r.err);
        EXPECT(dir_count(dir) == 0, "case %zu wrote something", i);
    }
    tmp_rm(dir);
}

TEST(cli_generate_prompt_from_a_flux_folder) {
    char dir[64], png[128], png2[128], cache[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "cli_genp"), "temp dir");
    snprintf(png, sizeof png, "%s/fox.png", dir);
    snprintf(png2, sizeof png2, "%s/fox2.png", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    cli_run r;
    RUN(&r, "generate", "--model", PIPE, "--prompt", "a red fox", "--width", "32", "--height", "32", "--steps", "2",
        "--max-length", "16", "--cache", cache, "--ae-groups", "4", "-o", png);
    EXPECT(r.code == 0 && strstr(r.err, "encoded"), "first: exit %d: %s", r.code, r.err);
    RUN(&r, "generate", "--model", PIPE, "--prompt", "a red fox", "--width", "32", "--height", "32", "--steps", "2",
        "--max-length", "16", "--cache", cache, "--ae-groups", "4", "-o", png2);
    EXPECT(r.code == 0 && strstr(r.err, "from the cache"), "second: exit %d: %s", r.code, r.err);
    cd_ctx *ctx = mkctx();
    uint8_t *a = NULL, *b = NULL;
    uint32_t w = 0, h = 0, w2 = 0, h2 = 0;
    EXPECT(ctx && cd_png_read(ctx, png, &a, &w, &h) == CD_OK && cd_png_read(ctx, png2, &b, &w2, &h2) == CD_OK &&
               w == 32 && h == 32 && w2 == 32 && !memcmp(a, b, (size_t)w * h * 3),
           "the cached run makes the same image");
    free(a);
    free(b);
    cd_ctx_free(ctx);
    /* bad combinations: one line, exit 2, no image */
    RUN(&r, "generate", "--model", PIPE, "--prompt-embeds", png, "--t5", "x", "--width", "32", "--height", "32", "-o",
        png);
    EXPECT(r.code == 2 && one_error_line(r.err, "generate") && strstr(r.err, "--prompt"), "embeds + --t5: %s", r.err);
    RUN(&r, "generate", "--model", PIPE "/transformer", "--ae", PIPE "/vae", "--ae-groups", "4", "--prompt", "x",
        "--width", "32", "--height", "32", "-o", png);
    EXPECT(r.code == 2 && one_error_line(r.err, "generate") && strstr(r.err, "--t5"), "no encoders: %s", r.err);
    RUN(&r, "generate", "--prompt", "sneaker", "--t5", "x", "-o", png);
    EXPECT(r.code == 2 && one_error_line(r.err, "generate") && strstr(r.err, "built-in"), "table + --t5: %s", r.err);
    tmp_rm(dir);
}
