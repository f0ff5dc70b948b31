/* test_clip_bpe_bad.c — the CLIP tokenizer's edges and bad input: FLUX's layout (empty prompt,
 * truncation count), invalid UTF-8 named by byte offset, and malformed vocabulary files (truncated
 * or garbage gzip, bad JSON, merges naming unknown symbols), each a one-line error and no
 * tokenizer. The files are made from the small fixture in tests/fixtures/clip_bpe/. */
#include "../src/text/clip_bpe.h"
#include "test.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FIX "tests/fixtures/clip_bpe/"

static cd_ctx *mkctx(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_create(NULL, &ctx);
    return ctx;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    const int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}
static int write_gz(const char *path, const char *text) {
    gzFile g = gzopen(path, "wb");
    if (!g) return 0;
    const int ok = gzwrite(g, text, (unsigned)strlen(text)) == (int)strlen(text);
    return gzclose(g) == Z_OK && ok;
}

TEST(clip_bpe_flux_layout_edges) {
    cd_ctx *ctx = mkctx();
    cd_clip_bpe *t = NULL;
    CHECK(cd_clip_bpe_load_gz(ctx, FIX "small.txt.gz", &t) == CD_OK, "%s", cd_ctx_error(ctx));
    int32_t ids[CD_CLIP_MAX_LEN];
    size_t dropped = 7;
    EXPECT(cd_clip_bpe_encode_flux(ctx, t, "", ids, &dropped) == CD_OK && dropped == 0, "empty prompt");
    EXPECT(ids[0] == cd_clip_bpe_bos(t), "BOS first: %d", ids[0]);
    for (int i = 1; i < CD_CLIP_MAX_LEN; i++) EXPECT(ids[i] == cd_clip_bpe_eos(t), "id %d: %d, want EOS", i, ids[i]);
    /* "a" is one token (a</w>): 200 of them keep 75 and drop 125 */
    char long_prompt[401];
    for (int i = 0; i < 200; i++) memcpy(long_prompt + 2 * i, "a ", 2);
    long_prompt[400] = 0;
    EXPECT(cd_clip_bpe_encode_flux(ctx, t, long_prompt, ids, &dropped) == CD_OK && dropped == 125, "dropped %zu",
           dropped);
    EXPECT(ids[75] == ids[1] && ids[76] == cd_clip_bpe_eos(t), "75 contents then EOS");
    /* exactly 75: nothing dropped, the EOS at 76 */
    long_prompt[150] = 0;
    EXPECT(cd_clip_bpe_encode_flux(ctx, t, long_prompt, ids, &dropped) == CD_OK && dropped == 0, "75: %zu", dropped);
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}

TEST(clip_bpe_invalid_utf8_names_offset) {
    cd_ctx *ctx = mkctx();
    cd_clip_bpe *t = NULL;
    CHECK(cd_clip_bpe_load_gz(ctx, FIX "small.txt.gz", &t) == CD_OK, "%s", cd_ctx_error(ctx));
    static const struct {
        const char *s;
        size_t off;
    } cases[] = {
        {"ab\xff", 2},           /* never valid */
        {"fox \xc3", 4},         /* truncated 2-byte sequence at the end */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"x\xe0\x80\xaf", 1},    /* overlong 3-byte */
        {"ok \xed\xa0\x80", 3},  /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"caf\xc3\x28", 3},      /* bad continuation byte */
        {"a\x80", 1},            /* lone continuation byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t ids[CD_CLIP_MAX_LEN];
        const cd_status s = cd_clip_bpe_encode_flux(ctx, t, cases[i].s, ids, NULL);
        char want[64];
        snprintf(want, sizeof want, "byte offset %zu ", cases[i].off);
        EXPECT(s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), want), "case %zu: status %d, message \"%s\"", i,
               (int)s, cd_ctx_error(ctx));
        size_t nt = 0; /* the other entry point says the same */
        EXPECT(cd_clip_bpe_tokenize(ctx, t, cases[i].s, strlen(cases[i].s), ids, CD_CLIP_MAX_LEN, &nt) ==
                       CD_ERR_INVALID_ARG &&
                   strstr(cd_ctx_error(ctx), want),
               "tokenize, case %zu: %s", i, cd_ctx_error(ctx));
    }
    size_t n = 0;
    char *big = (char *)calloc(CD_CLIP_MAX_PROMPT + 2, 1);
    CHECK(big, "oom");
    memset(big, 'a', CD_CLIP_MAX_PROMPT + 1);
    EXPECT(cd_clip_bpe_tokenize(ctx, t, big, CD_CLIP_MAX_PROMPT + 1, NULL, 0, &n) == CD_ERR_INVALID_ARG,
           "a prompt over the limit is an error");
    free(big);
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}

/* Expects a failed load with a one-line message containing `needle`. */
static void expect_bad(cd_ctx *ctx, cd_status s, cd_clip_bpe *t, const char *what, const char *needle) {
    const char *m = cd_ctx_error(ctx);
    EXPECT(s != CD_OK && t == NULL, "%s: loaded (status %d)", what, (int)s);
    EXPECT(m[0] && !strchr(m, '\n') && strstr(m, needle), "%s: message \"%s\" (want \"%s\")", what, m, needle);
    if (t) cd_clip_bpe_free(t);
}

TEST(clip_bpe_bad_gz_files) {
    cd_ctx *ctx = mkctx();
    char dir[] = "/tmp/cd_clip_bad_XXXXXX", p[256];
    CHECK(mkdtemp(dir), "mkdtemp");
    cd_clip_bpe *t = NULL;
    snprintf(p, sizeof p, "%s/missing.txt.gz", dir);
    expect_bad(ctx, cd_clip_bpe_load_gz(ctx, p, &t), t, "missing", "cannot open");

    FILE *f = fopen(FIX "small.txt.gz", "rb");
    CHECK(f, "fixture");
    unsigned char buf[8192];
    const size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/trunc.txt.gz", dir);
    CHECK(write_bytes(p, buf, n / 2), "write");
    expect_bad(ctx, cd_clip_bpe_load_gz(ctx, p, &t), t, "truncated gzip", "gzip");

    for (size_t i = 10; i < n; i++) buf[i] = (unsigned char)(i * 131 + 7); /* gzip header, garbage body */
    snprintf(p, sizeof p, "%s/garbage.txt.gz", dir);
    CHECK(write_bytes(p, buf, n), "write");
    expect_bad(ctx, cd_clip_bpe_load_gz(ctx, p, &t), t, "garbage gzip", "gzip");

    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"header\nzz q\n", "line 2: merge names a symbol not in the vocabulary (\"zz\")"},
        {"header\na b\nab c\nabc qq\n", "line 4: merge names a symbol not in the vocabulary (\"qq\")"},
        {"header\na b c\n", "line 2: expected two symbols"},
        {"header\na  b\n", "line 2: expected two symbols"},
        {"header\n", "no merges"},
        {"header only", "no merges"},
        {"header\na b\nx y\na b\n", "repeats a token"},
        {"header\n<|endoftext b\n", "not in the vocabulary"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(p, sizeof p, "%s/case%zu.txt.gz", dir, i);
        CHECK(write_gz(p, cases[i].text), "write");
        expect_bad(ctx, cd_clip_bpe_load_gz(ctx, p, &t), t, cases[i].text, cases[i].needle);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/trunc.txt.gz", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/garbage.txt.gz", dir);
    unlink(p);
    rmdir(dir);
    cd_ctx_free(ctx);
}

/* Loads the small vocab.json + merges.txt after `edit` changed the JSON and `merges_extra`
 * replaced (header != NULL) or was appended to the merges. */
static cd_status load_edited(cd_ctx *ctx, const char *dir, json_t *vocab, const char *merges_text, cd_clip_bpe **t) {
    char v[256], m[256];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    if (json_dump_file(vocab, v, 0) != 0 || !write_bytes(m, merges_text, strlen(merges_text))) return CD_ERR_IO;
    const cd_status s = cd_clip_bpe_load_json(ctx, v, m, t);
    unlink(v);
    unlink(m);
    return s;
}

TEST(clip_bpe_bad_json_files) {
    cd_ctx *ctx = mkctx();
    char dir[] = "/tmp/cd_clip_bad_XXXXXX", v[256], m[256];
    CHECK(mkdtemp(dir), "mkdtemp");
    json_error_t je;
    json_t *vocab = json_load_file(FIX "small_vocab.json", 0, &je);
    FILE *f = fopen(FIX "small_merges.txt", "rb");
    CHECK(vocab && f, "fixtures");
    static char merges[16384];
    const size_t mn = fread(merges, 1, sizeof merges - 256, f);
    fclose(f);
    merges[mn] = 0;
    cd_clip_bpe *t = NULL;

    /* sanity: the unedited copy loads */
    CHECK(load_edited(ctx, dir, vocab, merges, &t) == CD_OK, "%s", cd_ctx_error(ctx));
    cd_clip_bpe_free(t);
    t = NULL;

    char *mm = (char *)malloc(mn + 256);
    snprintf(mm, mn + 256, "%szzz qqq\n", merges);
    expect_bad(ctx, load_edited(ctx, dir, vocab, mm, &t), t, "unknown symbol", "line 1002: merge names a symbol");
    snprintf(mm, mn + 256, "%sq z\n", merges);
    expect_bad(ctx, load_edited(ctx, dir, vocab, mm, &t), t, "result not in vocab", "\"qz\" is not in vocab.json");
    expect_bad(ctx, load_edited(ctx, dir, vocab, strchr(merges, '\n') + 1, &t), t, "no header", "#version");
    free(mm);

    json_t *copy = json_deep_copy(vocab);
    json_object_set_new(copy, "a", json_integer(0)); /* two tokens with id 0 */
    expect_bad(ctx, load_edited(ctx, dir, copy, merges, &t), t, "duplicate id", "distinct integers");
    json_object_set_new(copy, "a", json_string("x"));
    expect_bad(ctx, load_edited(ctx, dir, copy, merges, &t), t, "string id", "distinct integers");
    json_decref(copy);
    copy = json_deep_copy(vocab);
    json_object_del(copy, "<|endoftext|>"); /* the last id: the rest stays dense */
    expect_bad(ctx, load_edited(ctx, dir, copy, merges, &t), t, "no EOS", "<|endoftext|> is missing");
    json_decref(copy);
    copy = json_array();
    expect_bad(ctx, load_edited(ctx, dir, copy, merges, &t), t, "array", "not a JSON object");
    json_decref(copy);

    /* truncated vocab.json */
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    char *text = json_dumps(vocab, 0);
    CHECK(text && write_bytes(v, text, strlen(text) / 2) && write_bytes(m, merges, mn), "write");
    free(text);
    expect_bad(ctx, cd_clip_bpe_load_json(ctx, v, m, &t), t, "truncated json", "not a JSON object");
    expect_bad(ctx, cd_clip_bpe_load_json(ctx, m, m, &t), t, "merges as json", "not a JSON object");
    unlink(v);
    unlink(m);
    rmdir(dir);
    json_decref(vocab);
    cd_ctx_free(ctx);
}

/* Mutated merges files and random-byte prompts: every load and every prompt ends in CD_OK or a
 * one-line error (run under SAN=1 this is the memory-safety check of the parsers). */
TEST(clip_bpe_mutations_fail_cleanly) {
    cd_ctx *ctx = mkctx();
    char dir[] = "/tmp/cd_clip_mut_XXXXXX", v[256], m[256];
    CHECK(mkdtemp(dir), "mkdtemp");
    FILE *f = fopen(FIX "small_merges.txt", "rb");
    CHECK(f, "fixture");
    static char merges[16384], mut[16384];
    const size_t mn = fread(merges, 1, sizeof merges, f);
    fclose(f);
    snprintf(v, sizeof v, "%s/merges.txt", dir);
    snprintf(m, sizeof m, "%s/merges.txt.gz", dir);
    test_rng g = test_rng_seed(14);
    int loaded = 0, failed = 0;
    for (int it = 0; it < 150; it++) {
        memcpy(mut, merges, mn);
        size_t n = mn;
        if (it % 3 == 0) n = 1 + test_rng_u64(&g) % mn; /* truncated */
        for (int k = 0; k < 1 + it % 4; k++) mut[test_rng_u64(&g) % n] = (char)(test_rng_u64(&g) & 0xff);
        CHECK(write_bytes(v, mut, n), "write");
        cd_clip_bpe *t = NULL;
        cd_status s = cd_clip_bpe_load_json(ctx, FIX "small_vocab.json", v, &t);
        if (s == CD_OK) {
            loaded++;
            int32_t ids[CD_CLIP_MAX_LEN];
            EXPECT(cd_clip_bpe_encode_flux(ctx, t, "a red fox in the snow", ids, NULL) == CD_OK, "%s",
                   cd_ctx_error(ctx));
            cd_clip_bpe_free(t);
        } else {
            failed++;
            EXPECT(t == NULL && cd_ctx_error(ctx)[0] && !strchr(cd_ctx_error(ctx), '\n'), "iteration %d: \"%s\"", it,
                   cd_ctx_error(ctx));
        }
        mut[n < sizeof mut ? n : n - 1] = 0;
        CHECK(write_gz(m, mut), "write gz");
        s = cd_clip_bpe_load_gz(ctx, m, &t);
        EXPECT((s == CD_OK) == (t != NULL) && (s == CD_OK || !strchr(cd_ctx_error(ctx), '\n')), "gz iteration %d", it);
        cd_clip_bpe_free(t);
    }
    EXPECT(failed > 0, "some mutations must fail (%d loaded, %d failed)", loaded, failed);
    unlink(v);
    unlink(m);
    rmdir(dir);

    cd_clip_bpe *t = NULL;
    CHECK(cd_clip_bpe_load_gz(ctx, FIX "small.txt.gz", &t) == CD_OK, "%s", cd_ctx_error(ctx));
    for (int it = 0; it < 300; it++) {
        char p[96];
        const size_t n = test_rng_u64(&g) % sizeof p;
        for (size_t i = 0; i < n; i++) p[i] = (char)(test_rng_u64(&g) % 7 == 0 ? 0xc3 : test_rng_u64(&g) & 0xff);
        int32_t ids[16];
        size_t nt = 0;
        const cd_status s = cd_clip_bpe_tokenize(ctx, t, p, n, ids, 16, &nt);
        EXPECT(s == CD_OK || (s == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "byte offset")), "prompt %d: %s", it,
               cd_ctx_error(ctx));
    }
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}
