/* test_spm_json.c — the T5 tokenizer read from tokenizer.json (src/text/spm_json.c) and its two
 * semantics against their oracles: tests/fixtures/spm/t5small_json.tsv holds, per prompt,
 * sentencepiece's ids, transformers' T5TokenizerFast ids and the older converter's pipeline ids
 * (HF tokenizers), written by tests/oracle/spm_json_fixtures.py. Every id must be identical. Then
 * the folder loader, T5's layout in the diffusers semantics, invalid UTF-8, broken files. */
#include "test.h"
#include "test_files.h"

#include "../src/text/spm.h"
#include "../src/util/internal.h"

#include <jansson.h>

#include <stdint.h>
#include <string.h>

#define SPM_DIR "tests/fixtures/spm/"
#define REGEN "run 'python3 tests/oracle/spm_json_fixtures.py'"

static cd_ctx *ctx_new(void) {
    cd_ctx *ctx = NULL;
    return cd_ctx_create(NULL, &ctx) == CD_OK ? ctx : NULL;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) free(b), b = NULL;
    fclose(f);
    if (b) b[sz] = 0, *n = (size_t)sz;
    return b;
}

static size_t unhex(char *s) {
    const size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(s + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    return n;
}

static size_t parse_ids(const char *s, int32_t *out, size_t cap) {
    size_t n = 0;
    for (char *e; *s && n < cap; s = e) {
        const long v = strtol(s, &e, 10);
        if (e == s) break;
        out[n++] = (int32_t)v;
    }
    return n;
}

/* Encodes every fixture prompt with m and compares with column col (1: sentencepiece,
 * 2: T5TokenizerFast, 3: the legacy pipeline, 4: prepend_scheme "first"; "=" means column 1,
 * "~" column 2).
 * Returns the mismatches. */
/* CLEARDIT_SPM_JSON_DIR replaces the fixture folder (a larger fuzz run: spm_json_fixtures.py --fuzz). */
static const char *fix_dir(void) {
    const char *d = getenv("CLEARDIT_SPM_JSON_DIR");
    return d && *d ? d : SPM_DIR;
}

static int run_column(cd_ctx *ctx, const cd_spm *m, int col, const char *what, int *n_prompts, int *n_differ) {
    size_t n;
    char path[512];
    snprintf(path, sizeof path, "%s/t5small_json.tsv", fix_dir());
    char *tsv = slurp(path, &n);
    if (!tsv) return -1;
    static int32_t want[16384], base[16384];
    int bad = 0, lines = 0;
    *n_differ = 0;
    for (char *line = tsv, *nl; line && *line; line = nl ? nl + 1 : NULL, lines++) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *f[5] = {line, NULL, NULL, NULL, NULL};
        for (int k = 1; k < 5 && f[k - 1]; k++)
            if ((f[k] = strchr(f[k - 1], '\t'))) *f[k]++ = 0;
        if (!f[4]) {
            bad++;
            continue;
        }
        const size_t pl = unhex(f[0]);
        const size_t nb = parse_ids(f[1], base, 16384);
        size_t nw = nb;
        const char *c = strcmp(f[col], "~") == 0 ? f[2] : f[col]; /* "~": as the fast column */
        if (strcmp(c, "=") == 0)
            memcpy(want, base, nb * sizeof *want);
        else if (c != f[col])
            nw = parse_ids(c, want, 16384), (*n_differ)++;
        else
            nw = parse_ids(f[col], want, 16384), *n_differ += col > 1;
        int32_t *ids = NULL;
        size_t nid = 0;
        const cd_status s = cd_spm_encode(ctx, m, f[0], pl, &ids, &nid);
        int ok = s == CD_OK && nid == nw;
        for (size_t i = 0; ok && i < nid; i++) ok = ids[i] == want[i];
        if (!ok && bad++ < 4) {
            printf("  %s line %d (%zu bytes): %zu ids, want %zu:", what, lines + 1, pl, nid, nw);
            for (size_t i = 0; i < nid && i < 16; i++) printf(" %d%s", ids[i], i < nw && ids[i] == want[i] ? "" : "*");
            printf(" %s\n", s == CD_OK ? "" : cd_ctx_error(ctx));
        }
        free(ids);
    }
    free(tsv);
    *n_prompts = lines;
    return bad;
}

static void check_column(const char *name, int diffusers, int col, const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s%s%s", name[0] == '/' ? "" : fix_dir(), name[0] == '/' ? "" : "/", name);
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    cd_spm *m = NULL;
    const size_t pl = strlen(path);
    cd_status s = pl > 6 && !strcmp(path + pl - 6, ".model") ? cd_spm_load(ctx, path, &m)
                                                             : cd_spm_load_tokenizer_json(ctx, path, &m);
    if (s != CD_OK) cd_ctx_free(ctx);
    CHECK(s == CD_OK, "%s: %s (%s)", path, cd_ctx_error(ctx), REGEN);
    if (diffusers) EXPECT(cd_spm_set_semantics(ctx, m, CD_SPM_SEMANTICS_DIFFUSERS) == CD_OK, "%s", cd_ctx_error(ctx));
    int n = 0, differ = 0;
    const int bad = run_column(ctx, m, col, what, &n, &differ);
    printf("  %s: %d prompts (%d where the oracle differs from sentencepiece), %d mismatches\n", what, n, differ, bad);
    EXPECT(bad == 0 && n > 400, "%s: %d of %d prompts differ from the oracle (%s)", what, bad, n, REGEN);
    cd_spm_free(m);
    cd_ctx_free(ctx);
}

TEST(spm_json_sentencepiece_semantics) {
    /* the same ids from tokenizer.json as from the spiece.model it was converted from */
    check_column("t5small.tokenizer.json", 0, 1, "tokenizer.json, sentencepiece semantics");
    check_column("t5small.model", 0, 1, "t5small.model, sentencepiece semantics");
}
TEST(spm_json_diffusers_semantics) {
    check_column("t5small.tokenizer.json", 1, 2, "tokenizer.json, diffusers semantics (T5TokenizerFast)");
}
TEST(spm_json_legacy_pipeline) {
    check_column("t5legacy.tokenizer.json", 1, 3, "older converter's tokenizer.json, diffusers semantics");
}

/* t5small.tokenizer.json with Metaspace prepend_scheme "first" (transformers' legacy=False
 * converter), made here with Jansson as the generator's first_variant() makes it */
TEST(spm_json_prepend_first) {
    char src[512], dir[64], path[128];
    snprintf(src, sizeof src, "%s/t5small.tokenizer.json", fix_dir());
    json_error_t je;
    json_t *doc = json_load_file(src, 0, &je);
    CHECK(doc, "%s: %s (%s)", src, je.text, REGEN);
    json_t *meta = json_array_get(json_object_get(json_object_get(doc, "pre_tokenizer"), "pretokenizers"), 1);
    CHECK(json_is_object(meta) && json_object_set_new(meta, "prepend_scheme", json_string("first")) == 0,
          "fixture has no Metaspace at pretokenizers[1]");
    CHECK(tmp_dir_tag(dir, sizeof dir, "spmfirst"), "mkdtemp");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(json_dump_file(doc, path, 0) == 0, "write %s", path);
    json_decref(doc);
    check_column(path, 1, 4, "tokenizer.json with prepend_scheme first, diffusers semantics");
    tmp_rm(dir);
}

/* T5 layout, empty prompt and invalid UTF-8 in the diffusers semantics; the semantics switch */
TEST(spm_json_t5_ids_and_utf8) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    cd_spm *m = NULL, *sm = NULL;
    CHECK(cd_spm_load_tokenizer_json(ctx, SPM_DIR "t5small.tokenizer.json", &m) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(cd_spm_vocab_size(m) == 1100 && cd_spm_eos_id(m) == 1 && cd_spm_pad_id(m) == 0 && cd_spm_unk_id(m) == 2,
           "vocab %zu eos %d pad %d unk %d", cd_spm_vocab_size(m), cd_spm_eos_id(m), cd_spm_pad_id(m),
           cd_spm_unk_id(m));
    EXPECT(cd_spm_semantics_of(m) == CD_SPM_SEMANTICS_SENTENCEPIECE, "default semantics");
    EXPECT(cd_spm_set_semantics(ctx, m, CD_SPM_SEMANTICS_DIFFUSERS) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(cd_spm_set_semantics(ctx, m, (cd_spm_semantics)7) == CD_ERR_INVALID_ARG, "semantics 7 accepted");
    /* "<extra_id_0> cat </s>": the special tokens are ids, the EOS follows, then PAD */
    int32_t out[8];
    size_t dropped = 9;
    const char *p = "<extra_id_0> cat </s>";
    EXPECT(cd_spm_t5_ids(ctx, m, p, strlen(p), 8, out, &dropped) == CD_OK && out[0] == 1099 && out[1] == 21 &&
               out[2] == 1 && out[3] == 1 && out[4] == 0 && out[7] == 0 && dropped == 0,
           "t5 ids %d %d %d %d %d, dropped %zu", out[0], out[1], out[2], out[3], out[4], dropped);
    EXPECT(cd_spm_t5_ids(ctx, m, p, strlen(p), 2, out, &dropped) == CD_OK && out[0] == 1099 && out[1] == 1 &&
               dropped == 2,
           "truncated: %d %d, dropped %zu", out[0], out[1], dropped);
    EXPECT(cd_spm_t5_ids(ctx, m, "", 0, 3, out, &dropped) == CD_OK && out[0] == 1 && out[1] == 0 && out[2] == 0 &&
               dropped == 0,
           "empty prompt");
    static const struct {
        const char *s;
        size_t len, off;
    } cases[] = {{"abc\xff", 4, 3},
                 {"</s>\xc3", 5, 4},
                 {"\xc0\xaf", 2, 0},
                 {"a\xed\xa0\x80z", 5, 1},
                 {"<pad> \xf4\x90\x80\x80", 10, 6}};
    for (int sem = 0; sem < 2; sem++) {
        cd_spm_set_semantics(ctx, m, (cd_spm_semantics)sem);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            char want[64];
            snprintf(want, sizeof want, "at offset %zu", cases[i].off);
            EXPECT(cd_spm_encode(ctx, m, cases[i].s, cases[i].len, &ids, &n) == CD_ERR_INVALID_ARG && !ids &&
                       strstr(cd_ctx_error(ctx), want),
                   "semantics %d case %zu: '%s'", sem, i, cd_ctx_error(ctx));
            EXPECT(cd_spm_t5_ids(ctx, m, cases[i].s, cases[i].len, 8, out, NULL) == CD_ERR_INVALID_ARG,
                   "semantics %d case %zu: t5 ids", sem, i);
        }
    }
    /* spiece.model has no diffusers pipeline */
    CHECK(cd_spm_load(ctx, SPM_DIR "t5small.model", &sm) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(cd_spm_set_semantics(ctx, sm, CD_SPM_SEMANTICS_DIFFUSERS) == CD_ERR_UNSUPPORTED &&
               strstr(cd_ctx_error(ctx), "tokenizer.json"),
           "diffusers on spiece.model: %s", cd_ctx_error(ctx));
    cd_spm_free(sm);
    cd_spm_free(m);
    cd_ctx_free(ctx);
}

static int copy_file(const char *from, const char *to) {
    size_t n = 0;
    char *b = slurp(from, &n);
    const int ok = b && write_bytes(to, b, n);
    free(b);
    return ok;
}

TEST(spm_json_load_dir) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    char dir[64], p[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "spmdir"), "mkdtemp");
    cd_spm *m = NULL;
    cd_status s = cd_spm_load_dir(ctx, dir, CD_SPM_SEMANTICS_SENTENCEPIECE, &m);
    EXPECT(s == CD_ERR_IO && !m && strstr(cd_ctx_error(ctx), "spiece.model") &&
               strstr(cd_ctx_error(ctx), "tokenizer.json") && strstr(cd_ctx_error(ctx), "tokenizer_2"),
           "empty folder: %s", cd_ctx_error(ctx));
    snprintf(p, sizeof p, "%s/spiece.model", dir);
    CHECK(copy_file(SPM_DIR "t5small.model", p), "copy");
    EXPECT(cd_spm_load_dir(ctx, dir, CD_SPM_SEMANTICS_DIFFUSERS, &m) == CD_ERR_IO && !m &&
               strstr(cd_ctx_error(ctx), "tokenizer.json"),
           "diffusers without tokenizer.json: %s", cd_ctx_error(ctx));
    EXPECT(cd_spm_load_dir(ctx, dir, CD_SPM_SEMANTICS_SENTENCEPIECE, &m) == CD_OK && cd_spm_vocab_size(m) == 1000,
           "spiece.model: %s", cd_ctx_error(ctx));
    cd_spm_free(m);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(copy_file(SPM_DIR "t5small.tokenizer.json", p), "copy");
    EXPECT(cd_spm_load_dir(ctx, dir, CD_SPM_SEMANTICS_SENTENCEPIECE, &m) == CD_OK && cd_spm_vocab_size(m) == 1000,
           "both: spiece.model preferred: %s", cd_ctx_error(ctx));
    cd_spm_free(m);
    EXPECT(cd_spm_load_dir(ctx, dir, CD_SPM_SEMANTICS_DIFFUSERS, &m) == CD_OK && cd_spm_vocab_size(m) == 1100 &&
               cd_spm_semantics_of(m) == CD_SPM_SEMANTICS_DIFFUSERS,
           "both, diffusers: %s", cd_ctx_error(ctx));
    cd_spm_free(m);
    snprintf(p, sizeof p, "%s/spiece.model", dir);
    unlink(p);
    EXPECT(cd_spm_load_dir(ctx, dir, CD_SPM_SEMANTICS_SENTENCEPIECE, &m) == CD_OK && cd_spm_vocab_size(m) == 1100 &&
               cd_spm_semantics_of(m) == CD_SPM_SEMANTICS_SENTENCEPIECE,
           "tokenizer.json only: %s", cd_ctx_error(ctx));
    cd_spm_free(m);
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* Writes text to dir/name and expects the load to fail with a one-line message holding needle. */
static void expect_bad_json(cd_ctx *ctx, const char *dir, const char *text, size_t len, const char *needle) {
    char p[128];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    if (!write_bytes(p, text, len)) {
        test_fail(__FILE__, __LINE__, "write %s", p);
        return;
    }
    cd_spm *m = NULL;
    const cd_status s = cd_spm_load_tokenizer_json(ctx, p, &m);
    const char *msg = cd_ctx_error(ctx);
    EXPECT(s != CD_OK && !m && msg[0] && !strchr(msg, '\n') && (!needle || strstr(msg, needle)),
           "status %d, message \"%s\" (want \"%s\") for %.80s", (int)s, msg, needle ? needle : "", text);
    cd_spm_free(m);
}

#define HEAD                                                                                              \
    "{\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":" \
    "\"\xe2\x96\x81\"},"
TEST(spm_json_bad_files) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    char dir[64];
    CHECK(tmp_dir_tag(dir, sizeof dir, "spmjson"), "mkdtemp");
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"", "not valid JSON"},
        {"[1, 2]", "no \"model\" object"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}", "model type \"BPE\" is not Unigram"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model.vocab is not a non-empty array"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\"]]}}", "model.vocab[0]"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0], [\"a\", \"x\"]]}}", "model.vocab[1]"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\\u0000b\", 0]], \"unk_id\": 0}}", "not valid JSON"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 3}}", "unk_id"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0]]}}", "unk_id"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0, \"byte_fallback\": 3}}",
         "byte_fallback"},
        {"{\"added_tokens\": [{\"id\": 0, \"content\": \"</s>\"}], \"model\": {\"type\": \"Unigram\", \"vocab\": "
         "[[\"<unk>\", 0]], \"unk_id\": 0}}",
         "added token \"</s>\" (id 0) is not that piece"},
        {"{\"added_tokens\": [{\"id\": 5, \"content\": \"<unk>\"}], \"model\": {\"type\": \"Unigram\", \"vocab\": "
         "[[\"<unk>\", 0]], \"unk_id\": 0}}",
         "is not that piece"},
        {"{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"lstrip\": true}], \"model\": {\"type\": "
         "\"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0}}",
         "lstrip"},
        {"{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0]], "
         "\"unk_id\": 0}}",
         "normalizer type \"NFKC\" is not supported"},
        {"{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"@@@@\"}, \"model\": {\"type\": "
         "\"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0}}",
         "not base64"},
        {"{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"AAAAAAAA\"}, \"model\": {\"type\": "
         "\"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0}}",
         "precompiled_charsmap"},
        {"{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"b\"}, \"model\": "
         "{\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0}}",
         "Replace"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0}}", "no Metaspace"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", "
         "0]], \"unk_id\": 0}}",
         "pre_tokenizer \"ByteLevel\" is not supported"},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\"}, \"model\": {\"type\": \"Unigram\", "
         "\"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0}}",
         "replacement"},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": "
         "\"sometimes\"}, \"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0]], \"unk_id\": 0}}",
         "prepend_scheme"},
        {HEAD "\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0], [\"a\", 1], [\"a\", 2]], \"unk_id\": 0}}",
         "a piece occurs twice"},
        {HEAD "\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0], [\"a\", 1e999]], \"unk_id\": 0}}", NULL},
        {HEAD "\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0], [\"a\", 1]], \"unk_id\": 0}, "
              "\"model\": 1}",
         "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_bad_json(ctx, dir, cases[i].text, strlen(cases[i].text), cases[i].needle);
    /* a minimal valid file loads and encodes */
    static const char ok[] = HEAD "\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0], [\"\xe2\x96\x81"
                                  "a\", -1], [\"b\", -2]], \"unk_id\": 0}}";
    char p[128];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(write_bytes(p, ok, sizeof ok - 1), "write");
    cd_spm *m = NULL;
    EXPECT(cd_spm_load_tokenizer_json(ctx, p, &m) == CD_OK, "minimal file: %s", cd_ctx_error(ctx));
    for (int sem = 0; m && sem < 2; sem++) {
        int32_t *ids = NULL;
        size_t n = 0;
        cd_spm_set_semantics(ctx, m, (cd_spm_semantics)sem);
        EXPECT(cd_spm_encode(ctx, m, "ab c", 4, &ids, &n) == CD_OK && n == 3 && ids[0] == 1 && ids[1] == 2 &&
                   ids[2] == 0,
               "semantics %d: %zu ids", sem, n);
        free(ids);
    }
    cd_spm_free(m);
    /* every truncation (a stride) of the real fixture and random byte flips: load or fail, never crash */
    size_t n = 0;
    char *full = slurp(SPM_DIR "t5small.tokenizer.json", &n);
    CHECK(full, "fixture (%s)", REGEN);
    for (size_t cut = 0; cut < n; cut += 1 + cut / 3) expect_bad_json(ctx, dir, full, cut, NULL);
    test_rng r = test_rng_seed(3);
    for (int it = 0; it < 60; it++) {
        char *cp = malloc(n);
        memcpy(cp, full, n);
        for (int k = 0; k < 1 + it % 5; k++) cp[test_rng_u64(&r) % n] ^= (char)(1u << (test_rng_u64(&r) % 8));
        CHECK(write_bytes(p, cp, n), "write");
        free(cp);
        if (cd_spm_load_tokenizer_json(ctx, p, &m) == CD_OK) {
            for (int sem = 0; sem < 2; sem++) {
                int32_t *ids = NULL;
                size_t k = 0;
                cd_spm_set_semantics(ctx, m, (cd_spm_semantics)sem);
                static const char q[] = "\xef\xbc\xa1\xcc\x81 caf\xc3\xa9 </s> \xe3\x80\x80<extra_id_3>x";
                cd_spm_encode(ctx, m, q, sizeof q - 1, &ids, &k);
                free(ids);
            }
            cd_spm_free(m);
        } else {
            EXPECT(!m && !strchr(cd_ctx_error(ctx), '\n'), "flip %d: '%s'", it, cd_ctx_error(ctx));
        }
    }
    free(full);
    EXPECT(cd_spm_load_tokenizer_json(ctx, "tests/fixtures/spm/missing.json", &m) == CD_ERR_IO &&
               strstr(cd_ctx_error(ctx), "missing.json"),
           "missing: %s", cd_ctx_error(ctx));
    EXPECT(cd_spm_load_tokenizer_json(ctx, SPM_DIR, &m) == CD_ERR_IO, "a folder loaded");
    tmp_rm(dir);
    cd_ctx_free(ctx);
}
