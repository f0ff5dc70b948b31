/* test_clip_bpe.c — the CLIP BPE tokenizer (src/text/clip_bpe.c) against transformers'
 * CLIPTokenizer: fixtures written by tests/oracle/clip_bpe_fixtures.py into tests/fixtures/clip_bpe/.
 * Always on: a small vocabulary (the first 1000 real merges) loaded both ways (.txt.gz and
 * vocab.json + merges.txt). With CLEARDIT_CLIP_VOCAB set (open_clip's bpe_simple_vocab_16e6.txt.gz,
 * or a diffusers tokenizer/ folder) the real vocabulary is checked too; without it the test says
 * so on stdout. Then FLUX's layout, invalid UTF-8 and malformed files. */
#include "../src/text/clip_bpe.h"
#include "test.h"

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

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = (char *)malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) b[0] = 0;
    if (b) b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* Runs every fixture line through the tokenizer (and FLUX's layout); returns the number of
 * mismatching prompts (the first few are printed), or -1 when the fixture cannot be read. */
static int run_fixture(cd_ctx *ctx, const cd_clip_bpe *t, const char *path, int *n_cases, int *n_nfc) {
    size_t flen;
    char *txt = slurp(path, &flen);
    if (!txt) return -1;
    int bad = 0;
    *n_cases = *n_nfc = 0;
    char *save = NULL;
    size_t cap = 4096;
    int32_t *got = (int32_t *)malloc(cap * sizeof *got), *want = (int32_t *)malloc(cap * sizeof *want);
    char *prompt = (char *)malloc(flen + 1);
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char *hex = strchr(line, '\t');
        char *ids = hex ? strchr(hex + 1, '\t') : NULL;
        if (!hex || !ids) {
            bad++;
            continue;
        }
        size_t plen = 0;
        for (char *h = hex + 1; h + 1 < ids; h += 2) prompt[plen++] = (char)(hexval(h[0]) * 16 + hexval(h[1]));
        prompt[plen] = 0;
        size_t nw = 0;
        for (char *p = ids + 1; *p;) {
            char *e;
            const long v = strtol(p, &e, 10);
            if (e == p) break;
            if (nw < cap) want[nw++] = (int32_t)v;
            p = e;
        }
        (*n_cases)++;
        if (line[0] == 'N') (*n_nfc)++;
        size_t n = 0;
        const cd_status s = cd_clip_bpe_tokenize(ctx, t, prompt, plen, got, cap, &n);
        int ok = s == CD_OK && n == nw;
        for (size_t i = 0; ok && i < n; i++) ok = got[i] == want[i];
        if (ok && !memchr(prompt, 0, plen)) { /* FLUX's layout from the same content ids */
            int32_t flux[CD_CLIP_MAX_LEN];
            size_t dropped = 99;
            ok = cd_clip_bpe_encode_flux(ctx, t, prompt, flux, &dropped) == CD_OK &&
                 dropped == (nw > 75 ? nw - 75 : 0) && flux[0] == cd_clip_bpe_bos(t);
            const size_t kept = nw > 75 ? 75 : nw;
            for (size_t i = 0; ok && i < CD_CLIP_MAX_LEN - 1; i++)
                ok = flux[1 + i] == (i < kept ? want[i] : cd_clip_bpe_eos(t));
        }
        if (!ok && ++bad <= 5) {
            printf("  %s: mismatch on prompt hex %.*s: status %d n %zu want %zu;", path, (int)(ids - hex - 1), hex + 1,
                   (int)s, n, nw);
            for (size_t i = 0; i < n && i < 24; i++) printf(" %d%s", got[i], i < nw && got[i] == want[i] ? "" : "*");
            printf("\n");
        }
    }
    free(got);
    free(want);
    free(prompt);
    free(txt);
    return bad;
}

static void check_fixture(cd_ctx *ctx, const cd_clip_bpe *t, const char *path, const char *what, int min_cases) {
    int n = 0, nfc = 0;
    const int bad = run_fixture(ctx, t, path, &n, &nfc);
    printf("  clip_bpe %s: %d prompts, %d mismatches (%d of them not in NFC)\n", what, n, bad, nfc);
    EXPECT(bad == 0 && n >= min_cases, "%s: %d of %d prompts differ from transformers (fixture %s)", what, bad, n,
           path);
}

TEST(clip_bpe_small_json_matches_transformers) {
    cd_ctx *ctx = mkctx();
    cd_clip_bpe *t = NULL;
    CHECK(cd_clip_bpe_load_json(ctx, FIX "small_vocab.json", FIX "small_merges.txt", &t) == CD_OK, "load: %s",
          cd_ctx_error(ctx));
    EXPECT(cd_clip_bpe_vocab_size(t) == 1514 && cd_clip_bpe_bos(t) == 1512 && cd_clip_bpe_eos(t) == 1513,
           "vocab %zu bos %d eos %d", cd_clip_bpe_vocab_size(t), cd_clip_bpe_bos(t), cd_clip_bpe_eos(t));
    check_fixture(ctx, t, FIX "small_ids.txt", "small vocab.json+merges.txt", 360);
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}

TEST(clip_bpe_small_gz_matches_transformers) {
    cd_ctx *ctx = mkctx();
    cd_clip_bpe *t = NULL;
    CHECK(cd_clip_bpe_load_gz(ctx, FIX "small.txt.gz", &t) == CD_OK, "load: %s", cd_ctx_error(ctx));
    EXPECT(cd_clip_bpe_vocab_size(t) == 1514 && cd_clip_bpe_bos(t) == 1512 && cd_clip_bpe_eos(t) == 1513,
           "vocab %zu bos %d eos %d", cd_clip_bpe_vocab_size(t), cd_clip_bpe_bos(t), cd_clip_bpe_eos(t));
    check_fixture(ctx, t, FIX "small_ids.txt", "small .txt.gz", 360);
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}

/* The real vocabulary is ~1.3 MB and not committed: CLEARDIT_CLIP_VOCAB names it. */
TEST(clip_bpe_real_vocab_matches_transformers) {
    const char *p = getenv("CLEARDIT_CLIP_VOCAB");
    if (!p || !*p) {
        printf("  clip_bpe real vocabulary: NOT RUN: CLEARDIT_CLIP_VOCAB is unset (set it to open_clip's "
               "bpe_simple_vocab_16e6.txt.gz or a diffusers tokenizer/ folder; the small-vocabulary tests ran)\n");
        return;
    }
    cd_ctx *ctx = mkctx();
    cd_clip_bpe *t = NULL;
    const size_t pl = strlen(p);
    const cd_status s =
        pl > 3 && !strcmp(p + pl - 3, ".gz") ? cd_clip_bpe_load_gz(ctx, p, &t) : cd_clip_bpe_load_dir(ctx, p, &t);
    CHECK(s == CD_OK, "CLEARDIT_CLIP_VOCAB=%s: %s", p, cd_ctx_error(ctx));
    EXPECT(cd_clip_bpe_vocab_size(t) == 49408 && cd_clip_bpe_bos(t) == 49406 && cd_clip_bpe_eos(t) == 49407,
           "vocab %zu bos %d eos %d", cd_clip_bpe_vocab_size(t), cd_clip_bpe_bos(t), cd_clip_bpe_eos(t));
    check_fixture(ctx, t, FIX "real_ids.txt", p, 360);
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}

/* tokenizer.json as transformers saves it (merges as [a, b] pairs) and with "a b" string merges */
TEST(clip_bpe_tokenizer_json_matches_transformers) {
    cd_ctx *ctx = mkctx();
    cd_clip_bpe *t = NULL;
    CHECK(cd_clip_bpe_load_tokenizer_json(ctx, FIX "small_tokenizer.json", &t) == CD_OK, "load: %s", cd_ctx_error(ctx));
    EXPECT(cd_clip_bpe_vocab_size(t) == 1514 && cd_clip_bpe_bos(t) == 1512 && cd_clip_bpe_eos(t) == 1513,
           "vocab %zu bos %d eos %d", cd_clip_bpe_vocab_size(t), cd_clip_bpe_bos(t), cd_clip_bpe_eos(t));
    check_fixture(ctx, t, FIX "small_ids.txt", "small tokenizer.json ([a, b] merges)", 360);
    cd_clip_bpe_free(t);
    t = NULL;
    CHECK(cd_clip_bpe_load_tokenizer_json(ctx, FIX "order_tokenizer.json", &t) == CD_OK, "load: %s", cd_ctx_error(ctx));
    check_fixture(ctx, t, FIX "order_ids.txt", "crafted merge order, tokenizer.json (\"a b\" merges)", 4);
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}

/* A merge list where a pair made by a merge outranks the pair that made it: HF tokenizers merges
 * it at once ("ababx" -> aba b x</w>), where Python's CLIP tokenizer would give ab ab x</w>. */
TEST(clip_bpe_merge_order_is_hf_tokenizers) {
    cd_ctx *ctx = mkctx();
    cd_clip_bpe *t = NULL;
    CHECK(cd_clip_bpe_load_json(ctx, FIX "order_vocab.json", FIX "order_merges.txt", &t) == CD_OK, "load: %s",
          cd_ctx_error(ctx));
    check_fixture(ctx, t, FIX "order_ids.txt", "crafted merge order", 4);
    cd_clip_bpe_free(t);
    cd_ctx_free(ctx);
}
