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

/* HF's alignment of the normalised text with the prompt, as far as prepend_scheme "first" needs
 * it: per output character a change (0: takes the next prompt character; +1: inserted, aligned
 * with the character taken last; -k: takes the next 1 + k), built as HF's Precompiled builds it. */
typedef struct {
    uint32_t off; /* of the output character in the normalised text */
    int32_t change;
} htr;
typedef struct {
    htr *p;
    size_t n, cap;
} trbuf;

/* The output of one replaced unit (k_old prompt characters) is b->p[from..b->n): one change per
 * output character; extra characters are insertions; fewer take the rest with the list's last
 * entry (which may be an earlier unit's, or none at the very start: then nothing takes them and
 * the next output character takes the first). */
static int tr_replace(trbuf *t, const hbuf *b, size_t from, size_t k_old) {
    size_t k_new = 0;
    for (size_t o = from; o < b->n; k_new++) {
        if (t->n == t->cap) {
            const size_t nc = t->cap ? 2 * t->cap : 256;
            htr *g = realloc(t->p, nc * sizeof *g);
            if (!g) return 0;
            t->p = g, t->cap = nc;
        }
        t->p[t->n++] = (htr){(uint32_t)o, 0};
        const size_t l = spm_utf8_len((const uint8_t *)b->p + o, b->n - o);
        o += l ? l : 1;
    }
    if (k_new > k_old)
        for (size_t j = 0; j < k_new - k_old; j++) t->p[t->n - 1 - j].change = 1;
    else if (k_new < k_old && t->n)
        t->p[t->n - 1].change -= (int32_t)(k_old - k_new);
    return 1;
}

/* The end of the normalised prefix aligned with prompt offset 0. */
static size_t zero_prefix(const trbuf *t, const uint8_t *seg, size_t n, size_t out_n) {
    size_t idx = 0, last = 0;
    for (size_t e = 0; e < t->n; e++) {
        size_t start;
        if (t->p[e].change > 0) {
            start = idx < 1 ? 0 : last;
        } else {
            start = idx;
            for (int32_t k = 0; k <= -t->p[e].change && idx < n; k++) {
                last = idx;
                idx += spm_utf8_len(seg + idx, n - idx);
            }
        }
        if (start > 0) return t->p[e].off;
    }
    return out_n;
}

/* Normalises seg[0..n) into b: per grapheme cluster, a cluster under 6 bytes with a charsmap key
 * as prefix is replaced whole (what follows the key in the cluster is dropped); otherwise each
 * character is replaced by its own entry or kept. Then " {2,}" -> " " when the file asks.
 * *zero_end: the end of the output HF aligns with prompt offset 0 (prepend_scheme "first"). */
static int normalize(const cd_spm *m, const uint8_t *seg, size_t n, hbuf *b, size_t *zero_end) {
    trbuf t = {0};
    int ok = 1;
    for (size_t i = 0; ok && i < n;) {
        const size_t g = m->hf_precompiled ? cd_grapheme_len(seg + i, n - i) : n - i;
        size_t rl;
        const char *r;
        if (!m->hf_precompiled) {
            ok = hb_put(b, seg + i, g); /* no charsmap: the text as is, only its first character at 0 */
            *zero_end = n ? spm_utf8_len(seg, n) : 0;
        } else if (g < 6 && (r = transform(m, seg + i, g, &rl))) {
            size_t k_old = 0, from = b->n;
            for (size_t k = i; k < i + g; k_old++) k += spm_utf8_len(seg + k, i + g - k);
            ok = hb_put(b, r, rl) && tr_replace(&t, b, from, k_old);
        } else {
            for (size_t k = i; ok && k < i + g;) {
                const size_t c = spm_utf8_len(seg + k, i + g - k), from = b->n;
                ok = ((r = transform(m, seg + k, c, &rl)) ? hb_put(b, r, rl) : hb_put(b, seg + k, c)) &&
                     tr_replace(&t, b, from, 1);
                k += c;
            }
        }
        i += g;
    }
    if (ok && m->hf_precompiled) *zero_end = zero_prefix(&t, seg, n, b->n);
    free(t.p);
    if (ok && m->hf_collapse_spaces) {
        size_t o = 0, z = 0;
        for (size_t i = 0; i < b->n; i++)
            if (!(b->p[i] == ' ' && o > 0 && b->p[o - 1] == ' ')) {
                z += i < *zero_end;
                b->p[o++] = b->p[i];
            }
        b->n = o, *zero_end = z;
    }
    return ok;
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
    size_t zero_end = 0;
    if (!normalize(m, seg, n, norm, &zero_end)) return cd_set_error(ctx, CD_ERR_OOM, "tokenizer: out of memory");
    const uint8_t *t = (const uint8_t *)norm->p;
    /* without WhitespaceSplit the stretch is one piece whose original range starts where it does */
    if (!m->hf_ws_split) return norm->n ? metaspace(ctx, m, norm->p, norm->n, at_start, tmp, ids, nid, cap) : CD_OK;
    /* WhitespaceSplit: words between runs of whitespace; "first" prepends only to a word that HF
     * aligns with prompt offset 0 (e.g. "\x7fO": nothing takes the deleted DEL, so O takes it;
     * U+00AF becomes " " + an inserted U+0304, aligned with U+00AF; in "\xb8\x05", U+0304's
     * insertion is taken back by the deleted \x05, whose offset 2 it gets). */
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
        cd_status s = metaspace(ctx, m, norm->p + b, i - b, at_start && b < zero_end, tmp, ids, nid, cap);
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
