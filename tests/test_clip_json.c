/* test_clip_json.c — the CLIP tokenizer's tokenizer.json loader and folder loader
 * (src/text/clip_bpe_load.c) on broken input: edited copies of tests/fixtures/clip_bpe/
 * small_tokenizer.json, truncations and byte flips give a one-line error (or a tokenizer that
 * works), never a crash. Ids against transformers: tests/test_clip_bpe.c. */
#include "../src/text/clip_bpe.h"
#include "test.h"
#include "test_files.h"

#include <jansson.h>

#define FIX "tests/fixtures/clip_bpe/"

static cd_status load_doc(cd_ctx *ctx, const char *dir, const json_t *doc, cd_clip_bpe **t) {
    char p[128];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    char *text = json_dumps(doc, 0);
    const int ok = text && write_bytes(p, text, strlen(text));
    free(text);
    if (!ok) return CD_ERR_IO;
    return cd_clip_bpe_load_tokenizer_json(ctx, p, t);
}

static void expect_fail(cd_ctx *ctx, cd_status s, cd_clip_bpe *t, const char *what, const char *needle) {
    const char *m = cd_ctx_error(ctx);
    EXPECT(s != CD_OK && !t && m[0] && !strchr(m, '\n') && (!needle || strstr(m, needle)),
           "%s: status %d, message \"%s\" (want \"%s\")", what, (int)s, m, needle ? needle : "");
    cd_clip_bpe_free(t);
}

TEST(clip_bpe_bad_tokenizer_json) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    char dir[64];
    CHECK(tmp_dir_tag(dir, sizeof dir, "clipjson"), "mkdtemp");
    json_error_t je;
    json_t *doc = json_load_file(FIX "small_tokenizer.json", 0, &je);
    CHECK(doc, "fixture: %s", je.text);
    json_t *model = json_object_get(doc, "model");
    cd_clip_bpe *t = NULL;
    CHECK(load_doc(ctx, dir, doc, &t) == CD_OK, "unedited copy: %s", cd_ctx_error(ctx));
    cd_clip_bpe_free(t);
    t = NULL;
#define EDIT(what, needle, ...)                                             \
    do {                                                                    \
        json_t *d = json_deep_copy(doc), *md = json_object_get(d, "model"); \
        (void)md;                                                           \
        __VA_ARGS__;                                                        \
        expect_fail(ctx, load_doc(ctx, dir, d, &t), t, what, needle);       \
        t = NULL;                                                           \
        json_decref(d);                                                     \
    } while (0)
    EDIT("no model", "no \"model\" object", json_object_del(d, "model"));
    EDIT("unigram", "is not BPE", json_object_set_new(md, "type", json_string("Unigram")));
    EDIT("no </w>", "not CLIP's BPE", json_object_set_new(md, "end_of_word_suffix", json_null()));
    EDIT("subword prefix", "not CLIP's BPE", json_object_set_new(md, "continuing_subword_prefix", json_string("##")));
    EDIT("dropout", "not CLIP's BPE", json_object_set_new(md, "dropout", json_real(0.1)));
    EDIT("ignore_merges", "not CLIP's BPE", json_object_set_new(md, "ignore_merges", json_true()));
    EDIT("vocab array", "model.vocab is not an object", json_object_set_new(md, "vocab", json_array()));
    EDIT("merges object", "model.merges", json_object_set_new(md, "merges", json_object()));
    EDIT("merge number", "merges[3] is not", json_array_set_new(json_object_get(md, "merges"), 3, json_integer(4)));
    EDIT("merge triple", "merges[2] is not", {
        json_t *x = json_array_get(json_object_get(md, "merges"), 2);
        json_array_append_new(x, json_string("q"));
    });
    EDIT("merge with space", "holds a space", {
        json_t *x = json_array_get(json_object_get(md, "merges"), 2);
        json_array_set_new(x, 0, json_string("a b"));
    });
    EDIT("unknown symbol", "line 7: merge names a symbol not in the vocabulary (\"zzz\")", {
        json_t *x = json_array_get(json_object_get(md, "merges"), 5);
        json_array_set_new(x, 0, json_string("zzz"));
    });
    EDIT("string merge, 3 parts", "expected two symbols",
         json_array_set_new(json_object_get(md, "merges"), 0, json_string("a b c")));
    EDIT("no merges", "no merges", json_object_set_new(md, "merges", json_array()));
    EDIT("duplicate id", "distinct integers", json_object_set_new(json_object_get(md, "vocab"), "a", json_integer(0)));
    EDIT("no EOS", "<|endoftext|> is missing", json_object_del(json_object_get(md, "vocab"), "<|endoftext|>"));
#undef EDIT
    /* truncations and byte flips of the file */
    char *text = json_dumps(doc, 0);
    CHECK(text, "dump");
    const size_t n = strlen(text);
    char p[128];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    for (size_t cut = 0; cut < n; cut += 1 + cut / 4) {
        CHECK(write_bytes(p, text, cut), "write");
        expect_fail(ctx, cd_clip_bpe_load_tokenizer_json(ctx, p, &t), t, "truncated", NULL);
        t = NULL;
    }
    test_rng r = test_rng_seed(5);
    for (int it = 0; it < 80; it++) {
        char *cp = strdup(text);
        for (int k = 0; k < 1 + it % 4; k++) cp[test_rng_u64(&r) % n] ^= (char)(1u << (test_rng_u64(&r) % 7));
        CHECK(write_bytes(p, cp, n), "write");
        free(cp);
        if (cd_clip_bpe_load_tokenizer_json(ctx, p, &t) == CD_OK) {
            int32_t ids[77];
            cd_clip_bpe_encode_flux(ctx, t, "a red fox, \xef\xbc\xa1 caf\xc3\xa9 <|endoftext|>", ids, NULL);
            cd_clip_bpe_free(t);
        } else {
            EXPECT(!t && !strchr(cd_ctx_error(ctx), '\n'), "flip %d: %s", it, cd_ctx_error(ctx));
        }
        t = NULL;
    }
    free(text);
    (void)model;
    json_decref(doc);
    expect_fail(ctx, cd_clip_bpe_load_tokenizer_json(ctx, FIX "missing.json", &t), t, "missing", "missing.json");
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

static int copy_file(const char *from, const char *to) {
    FILE *f = fopen(from, "rb");
    if (!f) return 0;
    static char buf[1 << 16];
    const size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n < sizeof buf && write_bytes(to, buf, n);
}

TEST(clip_bpe_load_dir) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    char dir[64], p[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "clipdir"), "mkdtemp");
    cd_clip_bpe *t = NULL;
    cd_status s = cd_clip_bpe_load_dir(ctx, dir, &t);
    EXPECT(s == CD_ERR_IO && !t && strstr(cd_ctx_error(ctx), "vocab.json + merges.txt") &&
               strstr(cd_ctx_error(ctx), "tokenizer.json") && strstr(cd_ctx_error(ctx), "tokenizer/"),
           "empty folder: %s", cd_ctx_error(ctx));
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(copy_file(FIX "order_tokenizer.json", p), "copy");
    EXPECT(cd_clip_bpe_load_dir(ctx, dir, &t) == CD_OK && cd_clip_bpe_vocab_size(t) == 517, "tokenizer.json: %s",
           cd_ctx_error(ctx));
    cd_clip_bpe_free(t);
    t = NULL;
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    CHECK(copy_file(FIX "small_vocab.json", p), "copy");
    EXPECT(cd_clip_bpe_load_dir(ctx, dir, &t) == CD_OK && cd_clip_bpe_vocab_size(t) == 517,
           "vocab.json without merges.txt: tokenizer.json used: %s", cd_ctx_error(ctx));
    cd_clip_bpe_free(t);
    t = NULL;
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    CHECK(copy_file(FIX "small_merges.txt", p), "copy");
    EXPECT(cd_clip_bpe_load_dir(ctx, dir, &t) == CD_OK && cd_clip_bpe_vocab_size(t) == 1514,
           "vocab.json + merges.txt preferred: %s", cd_ctx_error(ctx));
    cd_clip_bpe_free(t);
    tmp_rm(dir);
    cd_ctx_free(ctx);
}
