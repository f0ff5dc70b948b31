/* spm_hf.c — the T5 tokenizer's diffusers semantics: HF tokenizers' pipeline as tokenizer.json
 * defines it (transformers' T5TokenizerFast; diffusers' FluxPipeline): special tokens written in
 * the prompt are cut out first; each stretch between them is normalised (the Precompiled charsmap
 * per grapheme cluster, then optionally runs of spaces to one) and split into words (Unicode
 * whitespace; Metaspace's U+2581 prefix and split), and each word is segmented by the Unigram
 * Viterbi alone. docs/tokenizer_spm.md lists where this differs from sentencepiece, with examples. */
#include "grapheme.h"
#include "spm_internal.h"
#include "unicode_tables.h"

#include "../util/internal.h"

#include <stdlib.h>

#define META "\xe2\x96\x81" /* U+2581 */

typedef struct {
    char *p;
    size_t n, cap;
} hbuf;

static int hb_put(hbuf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) return 0;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p, b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 1;
}

/* HF's Precompiled.transform: the replacement of the SHORTEST charsmap key prefixing s[0..n)
 * (the first hit of its prefix search); NULL when none. */
static const char *transform(const cd_spm *m, const uint8_t *s, size_t n, size_t *rl) {
    uint32_t v = 0;
    if (!spm_trie_match(m, s, n, &v, 1) || v >= m->norm_strs_len) return NULL;
    const char *r = m->norm_strs + v;
    *rl = strlen(r); /* the charsmap's strings end with a NUL (one is added after the last) */
    return r;
}

/* Normalises seg[0..n) into b: per grapheme cluster, a cluster under 6 bytes with a charsmap key
 * as prefix is replaced whole (what follows the key in the cluster is dropped); otherwise each
 * character is replaced by its own entry or kept. Then " {2,}" -> " " when the file asks. */
static int normalize(const cd_spm *m, const uint8_t *seg, size_t n, hbuf *b) {
    for (size_t i = 0; i < n;) {
        const size_t g = m->hf_precompiled ? cd_grapheme_len(seg + i, n - i) : n - i;
        size_t rl;
        const char *r;
        if (!m->hf_precompiled) {
            if (!hb_put(b, seg + i, g)) return 0;
        } else if (g < 6 && (r = transform(m, seg + i, g, &rl))) {
            if (!hb_put(b, r, rl)) return 0;
        } else {
            for (size_t k = i; k < i + g;) {
                const size_t c = spm_utf8_len(seg + k, i + g - k);
                if ((r = transform(m, seg + k, c, &rl)) ? !hb_put(b, r, rl) : !hb_put(b, seg + k, c)) return 0;
                k += c;
            }
        }
        i += g;
    }
    if (m->hf_collapse_spaces) {
        size_t o = 0;
        for (size_t i = 0; i < b->n; i++)
            if (!(b->p[i] == ' ' && o > 0 && b->p[o - 1] == ' ')) b->p[o++] = b->p[i];
        b->n = o;
    }
    return 1;
}

/* Character length in normalised text (a corrupt charsmap may have put invalid bytes there: one
 * byte each) and whether it is Unicode White_Space (Rust's char::is_whitespace). */
static size_t hf_char(const uint8_t *s, size_t n, int *space) {
    const size_t l = spm_utf8_len(s, n);
    if (!l) return *space = 0, 1;
    uint32_t cp = l == 1 ? s[0] : l == 2 ? s[0] & 0x1fu : l == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
    for (size_t i = 1; i < l; i++) cp = cp << 6 | (s[i] & 0x3fu);
    *space = cd_uc_is_space(cp);
    return l;
}

/* Metaspace on one pre-token w[0..n) (n > 0): spaces to U+2581, the prefix, then words that start
 * at each U+2581 (split); each word goes through the Viterbi. first: the pre-token starts the
 * prompt (prepend_scheme "first"). */
static cd_status metaspace(cd_ctx *ctx, const cd_spm *m, const char *w, size_t n, int first, hbuf *tmp, int32_t **ids,
                           size_t *nid, size_t *cap) {
    tmp->n = 0;
    const int starts_meta = n >= 3 ? memcmp(w, META, 3) == 0 : 0;
    const int pre = !starts_meta && !(w[0] == ' ') &&
                    (m->hf_prepend == SPM_PREPEND_ALWAYS || (m->hf_prepend == SPM_PREPEND_FIRST && first));
    int ok = !pre || hb_put(tmp, META, 3);
    for (size_t i = 0; ok && i < n; i++) ok = w[i] == ' ' ? hb_put(tmp, META, 3) : hb_put(tmp, w + i, 1);
    if (!ok) return cd_set_error(ctx, CD_ERR_OOM, "tokenizer: out of memory");
    if (!m->hf_meta_split) return spm_viterbi(ctx, m, tmp->p, tmp->n, 1, ids, nid, cap);
    size_t start = 0;
    for (size_t i = 3; i + 3 <= tmp->n; i++)
        if (memcmp(tmp->p + i, META, 3) == 0) {
            cd_status s = spm_viterbi(ctx, m, tmp->p + start, i - start, 1, ids, nid, cap);
            if (s != CD_OK) return s;
            start = i, i += 2;
        }
    return spm_viterbi(ctx, m, tmp->p + start, tmp->n - start, 1, ids, nid, cap);
}

/* One stretch of the prompt between special tokens; at_start: it begins at offset 0. */
static cd_status segment(cd_ctx *ctx, const cd_spm *m, const uint8_t *seg, size_t n, int at_start, hbuf *norm,
                         hbuf *tmp, int32_t **ids, size_t *nid, size_t *cap) {
    norm->n = 0;
    if (!normalize(m, seg, n, norm)) return cd_set_error(ctx, CD_ERR_OOM, "tokenizer: out of memory");
    const uint8_t *t = (const uint8_t *)norm->p;
    if (!m->hf_ws_split) return norm->n ? metaspace(ctx, m, norm->p, norm->n, at_start, tmp, ids, nid, cap) : CD_OK;
    /* WhitespaceSplit: words between runs of whitespace. "first" prepends only to a word at
     * offset 0 of the original prompt. */
    for (size_t i = 0; i < norm->n;) {
        int sp;
        size_t l = hf_char(t + i, norm->n - i, &sp);
        if (sp) {
            i += l;
            continue;
        }
        const size_t b = i;
        while (i < norm->n && !sp) {
            i += l;
            if (i < norm->n) l = hf_char(t + i, norm->n - i, &sp);
        }
        cd_status s = metaspace(ctx, m, norm->p + b, i - b, at_start && b == 0, tmp, ids, nid, cap);
        if (s != CD_OK) return s;
    }
    return CD_OK;
}

/* The longest added token at s[0..n); its index or -1. */
static int added_at(const cd_spm *m, const uint8_t *s, size_t n) {
    if (!(m->added_first[s[0] >> 3] & (1u << (s[0] & 7)))) return -1;
    int best = -1;
    for (size_t k = 0; k < m->n_added; k++) {
        const spm_added *a = &m->added[k];
        if (a->len <= n && (best < 0 || a->len > m->added[best].len) && !memcmp(s, m->text + a->off, a->len))
            best = (int)k;
    }
    return best;
}

cd_status spm_hf_encode(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = NULL, *n = 0;
    cd_status s = spm_check_utf8(ctx, text, len);
    if (s != CD_OK) return s;
    const uint8_t *u = (const uint8_t *)text;
    hbuf norm = {0}, tmp = {0};
    size_t cap = 0, start = 0;
    for (size_t i = 0; s == CD_OK && i <= len;) {
        const int a = i < len ? added_at(m, u + i, len - i) : -1;
        if (i < len && a < 0) {
            i++;
            continue;
        }
        /* the stretch before the special token (or the end); empty stretches give nothing */
        if (i > start) s = segment(ctx, m, u + start, i - start, start == 0, &norm, &tmp, ids, n, &cap);
        if (s != CD_OK || i == len) break;
        if (*n + 1 > cap) {
            const size_t nc = cap ? 2 * cap : 64;
            int32_t *g = realloc(*ids, nc * sizeof *g);
            if (!g) {
                s = cd_set_error(ctx, CD_ERR_OOM, "tokenizer: out of memory");
                break;
            }
            *ids = g, cap = nc;
        }
        (*ids)[(*n)++] = m->added[a].id;
        i += m->added[a].len;
        start = i;
    }
    free(norm.p), free(tmp.p);
    if (s != CD_OK) free(*ids), *ids = NULL, *n = 0;
    if (s == CD_OK && *n == 0) free(*ids), *ids = NULL;
    return s;
}
