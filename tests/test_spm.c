/* test_spm.c — the SentencePiece unigram tokenizer (src/text/spm.c) against sentencepiece itself:
 * tests/fixtures/spm/<model>.tsv holds, per prompt, sentencepiece's normalize() and encode() for
 * that model (written by tests/oracle/spm_fixtures.py); every id must be identical. Then the T5
 * ids (EOS, PAD, truncation) and bad input: broken model files, invalid UTF-8. */
#include "test.h"

#include "../src/text/spm.h"
#include "../src/util/internal.h"

#include <stdint.h>
#include <string.h>

#define SPM_DIR "tests/fixtures/spm/"
#define SPM_REGEN "run '/tmp/venv-spm/bin/python tests/oracle/spm_fixtures.py' (see that script)"

static cd_ctx *ctx_new(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = 1;
    return cd_ctx_create(&p, &ctx) == CD_OK ? ctx : NULL;
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

/* hex -> bytes in place; the byte count or -1 */
static long unhex(char *s, size_t n) {
    if (n % 2) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        s[i] = (char)v;
    }
    return (long)(n / 2);
}

static void check_model(const char *name) {
    char path[256];
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    cd_spm *m = NULL;
    snprintf(path, sizeof path, SPM_DIR "%s.model", name);
    cd_status s = cd_spm_load(ctx, path, &m);
    if (s != CD_OK) cd_ctx_free(ctx);
    CHECK(s == CD_OK, "%s: %s (%s)", path, cd_ctx_error(ctx), SPM_REGEN);
    snprintf(path, sizeof path, SPM_DIR "%s.tsv", name);
    size_t n;
    char *tsv = slurp(path, &n);
    int lines = 0, bad = 0;
    for (char *line = tsv; tsv && line && *line; lines++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        EXPECT(t2, "%s:%d: malformed line", path, lines + 1);
        if (!t2) break;
        *t1 = *t2 = 0;
        const long pl = unhex(line, strlen(line)), nlen = unhex(t1 + 1, strlen(t1 + 1));
        int32_t want[8192];
        size_t nw = 0;
        for (char *q = t2 + 1, *e; *q && nw < 8192; q = e) {
            want[nw++] = (int32_t)strtol(q, &e, 10);
            if (e == q) break;
        }
        char *norm = NULL;
        size_t norm_len = 0;
        int32_t *ids = NULL;
        size_t nid = 0;
        s = cd_spm_normalize(ctx, m, line, (size_t)pl, &norm, &norm_len);
        const int norm_ok = s == CD_OK && (long)norm_len == nlen && memcmp(norm, t1 + 1, norm_len) == 0;
        s = s == CD_OK ? cd_spm_encode(ctx, m, line, (size_t)pl, &ids, &nid) : s;
        int ids_ok = s == CD_OK && nid == nw;
        for (size_t i = 0; ids_ok && i < nid; i++) ids_ok = ids[i] == want[i];
        if ((!norm_ok || !ids_ok) && bad++ < 3) {
            size_t d = 0;
            while (ids && d < nid && d < nw && ids[d] == want[d]) d++;
            test_fail(__FILE__, __LINE__,
                      "%s line %d (%ld bytes): normalize %s, ids %s (%zu vs %zu, first difference at %zu: %d vs %d) %s",
                      name, lines + 1, pl, norm_ok ? "ok" : "DIFFERS", ids_ok ? "ok" : "DIFFER", nid, nw, d,
                      d < nid ? ids[d] : -1, d < nw ? want[d] : -1, s == CD_OK ? "" : cd_ctx_error(ctx));
        }
        free(norm);
        free(ids);
        line = nl ? nl + 1 : NULL;
    }
    EXPECT(tsv && lines > 400, "%s: %d prompts read (%s)", path, lines, SPM_REGEN);
    EXPECT(bad == 0, "%s: %d of %d prompts differ from sentencepiece", name, bad, lines);
    free(tsv);
    cd_spm_free(m);
    cd_ctx_free(ctx);
}

TEST(spm_oracle_t5like) { check_model("t5like"); }
TEST(spm_oracle_bytes_user) { check_model("bytes_user"); }
TEST(spm_oracle_identity) { check_model("identity"); }

/* T5's layout on top of encode: content[:L-1] + [EOS] + [PAD]..., the dropped count */
TEST(spm_t5_ids) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    cd_spm *m = NULL;
    cd_status s = cd_spm_load(ctx, SPM_DIR "t5like.model", &m);
    if (s != CD_OK) cd_ctx_free(ctx);
    CHECK(s == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(cd_spm_eos_id(m) == 1 && cd_spm_pad_id(m) == 0 && cd_spm_unk_id(m) == 2 && cd_spm_vocab_size(m) == 1000,
           "special ids %d %d %d, vocab %zu", cd_spm_eos_id(m), cd_spm_pad_id(m), cd_spm_unk_id(m),
           cd_spm_vocab_size(m));
    const char *p = "A photo of a cat on a red bicycle in the city";
    int32_t *ids = NULL;
    size_t n = 0;
    EXPECT(cd_spm_encode(ctx, m, p, strlen(p), &ids, &n) == CD_OK && n > 6, "encode: %s", cd_ctx_error(ctx));
    int32_t out[64];
    size_t dropped = 99;
    for (size_t L = 1; ids && L <= 40; L += (L < 16 ? 1 : 7)) {
        memset(out, 0x7f, sizeof out);
        EXPECT(cd_spm_t5_ids(ctx, m, p, strlen(p), L, out, &dropped) == CD_OK, "L=%zu: %s", L, cd_ctx_error(ctx));
        const size_t keep = n < L - 1 ? n : L - 1;
        EXPECT(dropped == n - keep, "L=%zu: dropped %zu, want %zu", L, dropped, n - keep);
        for (size_t i = 0; i < L; i++) {
            const int32_t want = i < keep ? ids[i] : i == keep ? 1 : 0;
            EXPECT(out[i] == want, "L=%zu: id %zu is %d, want %d", L, i, out[i], want);
        }
        EXPECT(out[L] == 0x7f7f7f7f, "L=%zu: wrote past L", L);
    }
    free(ids);
    /* the empty prompt: EOS then PAD */
    EXPECT(cd_spm_t5_ids(ctx, m, "", 0, 4, out, &dropped) == CD_OK && out[0] == 1 && out[1] == 0 && out[3] == 0 &&
               dropped == 0,
           "empty prompt: %d %d %d, dropped %zu", out[0], out[1], out[3], dropped);
    EXPECT(cd_spm_t5_ids(ctx, m, "x", 1, 0, out, NULL) == CD_ERR_INVALID_ARG, "L = 0 accepted");
    cd_spm_free(m);
    cd_ctx_free(ctx);
}

/* invalid UTF-8: an error that names the offending byte's offset */
TEST(spm_invalid_utf8) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    cd_spm *m = NULL;
    cd_status s = cd_spm_load(ctx, SPM_DIR "t5like.model", &m);
    if (s != CD_OK) cd_ctx_free(ctx);
    CHECK(s == CD_OK, "%s", cd_ctx_error(ctx));
    static const struct {
        const char *s;
        size_t len, off;
    } cases[] = {
        {"abc\xff", 4, 3},          {"ok \xc3", 4, 3},
        {"\xc0\xaf", 2, 0},                                       /* overlong */
        {"a\xed\xa0\x80z", 5, 1},   {"ab\xf4\x90\x80\x80", 6, 2}, /* surrogate, > U+10FFFF */
        {"caf\xc3\xa9 \x80", 7, 6}, {"\xe2\x96", 2, 0},
        {"x\xf0\x9f\x98", 4, 1}, /* truncated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t *ids = NULL, out[8];
        size_t n = 0;
        char want[64];
        snprintf(want, sizeof want, "at offset %zu", cases[i].off);
        s = cd_spm_encode(ctx, m, cases[i].s, cases[i].len, &ids, &n);
        EXPECT(s == CD_ERR_INVALID_ARG && !ids && strstr(cd_ctx_error(ctx), want), "case %zu: status %d, '%s'", i,
               (int)s, cd_ctx_error(ctx));
        EXPECT(cd_spm_t5_ids(ctx, m, cases[i].s, cases[i].len, 8, out, NULL) == CD_ERR_INVALID_ARG, "case %zu: t5 ids",
               i);
        free(ids);
    }
    cd_spm_free(m);
    cd_ctx_free(ctx);
}

/* broken model files: a one-line error, never a crash (run under `make sanitize` too) */
TEST(spm_bad_models) {
    cd_ctx *ctx = ctx_new();
    CHECK(ctx, "ctx");
    size_t n = 0;
    uint8_t *buf = (uint8_t *)slurp(SPM_DIR "bytes_user.model", &n);
    if (!buf) cd_ctx_free(ctx);
    CHECK(buf, "read bytes_user.model (%s)", SPM_REGEN);
    cd_spm *m = NULL;
    /* every truncation length of the first 4 KB and a stride after: a load that succeeds (a cut
     * between whole fields) must still give a usable model; the others fail with a message */
    for (size_t cut = 0; cut < n; cut += cut < 4096 ? 1 : 997) {
        cd_status s = cd_spm_load_mem(ctx, buf, cut, &m);
        if (s == CD_OK) {
            int32_t *ids = NULL;
            size_t k = 0;
            cd_spm_encode(ctx, m, "a photo \xef\xbc\xa1", 11, &ids, &k);
            free(ids);
            cd_spm_free(m);
        } else {
            EXPECT(!m && cd_ctx_error(ctx)[0] && !strchr(cd_ctx_error(ctx), '\n'), "cut %zu: status %d, '%s'", cut,
                   (int)s, cd_ctx_error(ctx));
        }
    }
    EXPECT(cd_spm_load_mem(ctx, buf, 3, &m) == CD_ERR_FORMAT, "3 bytes loaded");
    /* random bytes flipped: loads or fails, never crashes */
    test_rng r = test_rng_seed(14);
    uint8_t *cp = malloc(n);
    for (int it = 0; cp && it < 300; it++) {
        memcpy(cp, buf, n);
        for (int k = 0; k < 1 + it % 8; k++) cp[test_rng_u64(&r) % n] ^= (uint8_t)(1u << (test_rng_u64(&r) % 8));
        if (cd_spm_load_mem(ctx, cp, n, &m) == CD_OK) {
            int32_t *ids = NULL;
            size_t k = 0;
            cd_spm_encode(ctx, m, "\xe6\x9d\xb1\xe4\xba\xac  xyz\tcafe\xcc\x81", 14, &ids, &k);
            free(ids);
            cd_spm_free(m);
        }
    }
    free(cp);
    /* the same on t5like, whose file is mostly nmt_nfkc's charsmap: flips land in the double array
     * and the replacement strings (offsets out of range, invalid UTF-8 replacements) */
    size_t n5 = 0;
    uint8_t *t5 = (uint8_t *)slurp(SPM_DIR "t5like.model", &n5);
    EXPECT(t5, "read t5like.model");
    for (int it = 0; t5 && it < 150; it++) {
        const size_t at = test_rng_u64(&r) % n5;
        const uint8_t was = t5[at];
        t5[at] ^= (uint8_t)(1u << (test_rng_u64(&r) % 8));
        if (cd_spm_load_mem(ctx, t5, n5, &m) == CD_OK) {
            int32_t *ids = NULL;
            size_t k = 0;
            static const char p[] = "\xef\xbc\xa1\xcc\x81 caf\xc3\xa9 \xe3\x80\x80 \xef\xac\x81 \xe2\x91\xa0 \xc2\x85x";
            cd_spm_encode(ctx, m, p, sizeof p - 1, &ids, &k);
            free(ids);
            cd_spm_free(m);
        }
        t5[at] = was;
    }
    free(t5);
    /* garbage and wrong files */
    static const uint8_t garbage[] = "\x0a\xff\xff\xff\xff\x0f"; /* pieces with a huge length */
    EXPECT(cd_spm_load_mem(ctx, garbage, sizeof garbage - 1, &m) == CD_ERR_FORMAT && !m, "garbage loaded");
    EXPECT(strstr(cd_ctx_error(ctx), "sentencepiece model"), "message: %s", cd_ctx_error(ctx));
    static const uint8_t no_pieces[] = "\x12\x02\x18\x01"; /* trainer_spec only */
    EXPECT(cd_spm_load_mem(ctx, no_pieces, 4, &m) == CD_ERR_FORMAT, "a model without pieces loaded");
    /* a BPE model: trainer_spec.model_type = 2 after one piece */
    static const uint8_t bpe[] = "\x0a\x09\x0a\x05<unk>\x18\x02\x12\x02\x18\x02";
    EXPECT(cd_spm_load_mem(ctx, bpe, sizeof bpe - 1, &m) == CD_ERR_UNSUPPORTED && strstr(cd_ctx_error(ctx), "unigram"),
           "bpe: %s", cd_ctx_error(ctx));
    /* one piece: the default eos_id (2) names no piece; with bos and eos -1 (10-byte varints) it loads */
    static const uint8_t uni[] = "\x0a\x09\x0a\x05<unk>\x18\x02\x12\x02\x18\x01";
    EXPECT(cd_spm_load_mem(ctx, uni, sizeof uni - 1, &m) == CD_ERR_FORMAT && strstr(cd_ctx_error(ctx), "eos_id"),
           "eos out of range: %s", cd_ctx_error(ctx));
    static const uint8_t uni1[] = "\x0a\x09\x0a\x05<unk>\x18\x02\x12\x1a\x18\x01"
                                  "\xc8\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
                                  "\xd0\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
    EXPECT(cd_spm_load_mem(ctx, uni1, sizeof uni1 - 1, &m) == CD_OK && m, "one-piece unigram model: %s",
           cd_ctx_error(ctx));
    if (m) { /* every character is unknown: one merged unk; T5 ids need an EOS */
        int32_t *ids = NULL, out[4];
        size_t k = 0;
        EXPECT(cd_spm_encode(ctx, m, "ab c", 4, &ids, &k) == CD_OK && k == 1 && ids[0] == 0, "encode: %zu ids", k);
        EXPECT(cd_spm_t5_ids(ctx, m, "ab", 2, 4, out, NULL) == CD_ERR_INVALID_ARG, "t5 ids without EOS");
        free(ids);
    }
    cd_spm_free(m);
    EXPECT(cd_spm_load(ctx, "tests/fixtures/spm/missing.model", &m) == CD_ERR_IO &&
               strstr(cd_ctx_error(ctx), "missing.model"),
           "missing file: %s", cd_ctx_error(ctx));
    EXPECT(cd_spm_load(ctx, SPM_DIR "t5like.tsv", &m) != CD_OK && !m, "a TSV loaded as a model");
    EXPECT(cd_spm_load(ctx, "/dev/null", &m) == CD_ERR_FORMAT && !m, "an empty file loaded");
    EXPECT(cd_spm_load(ctx, SPM_DIR, &m) != CD_OK && !m && !strchr(cd_ctx_error(ctx), '\n'), "a directory loaded: %s",
           cd_ctx_error(ctx));
    free(buf);
    cd_ctx_free(ctx);
}
