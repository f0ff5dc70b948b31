/* clip_bpe.c — CLIP's byte-level BPE encoder: UTF-8 check, normalisation, the pre-tokenizer
 * pattern written by hand over the Unicode tables of src/text/unicode_tables.c, BPE by merge rank,
 * and FLUX's 77-id layout. Semantics and their differences: docs/tokenizer_clip.md. */
#include "clip_bpe_internal.h"
#include "unicode_tables.h"

#include <stdlib.h>

static const uint32_t SOT[] = {'<', '|', 's', 't', 'a', 'r', 't', 'o', 'f', 't', 'e', 'x', 't', '|', '>'};
static const uint32_t EOT[] = {'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>'};
#define N_SOT (sizeof SOT / sizeof SOT[0])
#define N_EOT (sizeof EOT / sizeof EOT[0])

/* Strict UTF-8 (no overlong forms, no surrogates, <= U+10FFFF) into cps; returns the offset of the
 * first invalid byte, or len when all are valid. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cps, size_t *n) {
    size_t i = 0, k = 0;
    while (i < len) {
        const unsigned c = s[i];
        uint32_t cp;
        size_t m;
        if (c < 0x80)
            cp = c, m = 1;
        else if (c >= 0xC2 && c <= 0xDF)
            cp = c & 0x1F, m = 2;
        else if (c >= 0xE0 && c <= 0xEF)
            cp = c & 0x0F, m = 3;
        else if (c >= 0xF0 && c <= 0xF4)
            cp = c & 0x07, m = 4;
        else
            return i;
        if (m > len - i) return i;
        for (size_t j = 1; j < m; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((m == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (m == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        cps[k++] = cp;
        i += m;
    }
    *n = k;
    return len;
}

static size_t put_utf8(unsigned char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
    if (cp < 0x800) return o[0] = (unsigned char)(0xC0 | (cp >> 6)), o[1] = (unsigned char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12)), o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18)), o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)), o[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* The normaliser after NFC: every run of whitespace becomes one space, then lowercase (U+0130
 * lowers to "i" + U+0307). Writes at most 2 * n codepoints to out. */
static size_t normalise(const uint32_t *in, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (cd_uc_is_space(in[i])) {
            out[k++] = ' ';
            while (i + 1 < n && cd_uc_is_space(in[i + 1])) i++;
        } else if (in[i] == 0x130) {
            out[k++] = 'i';
            out[k++] = 0x307;
        } else {
            out[k++] = cd_uc_lower1(in[i]);
        }
    }
    return k;
}

typedef struct {
    int32_t rank, pos, out; /* a candidate merge of the symbol at pos with the next one */
} cand;

typedef struct {
    const cd_clip_bpe *t;
    int32_t *ids;
    size_t cap, n;              /* ids written up to cap; n counts all */
    int oom;                    /* a scratch buffer could not grow */
    size_t room;                /* bytes the scratch below holds */
    unsigned char *bytes;       /* one piece in UTF-8 */
    int32_t *sym, *prev, *next; /* its symbols as a linked list (sym -1: merged away) */
    cand *heap;                 /* 3 * room: n - 1 initial pairs, at most 2 new ones per merge */
} enc;

static void emit(enc *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static const cd_clip_merge *find_merge(const cd_clip_bpe *t, int32_t a, int32_t b) {
    for (size_t i = cd_clip_pair_hash(a, b) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const cd_clip_merge *m = &t->merges[i];
        if (m->a < 0) return NULL;
        if (m->a == a && m->b == b) return m;
    }
}

/* Grow-only scratch for a piece of `nb` bytes (nb <= 4 * CD_CLIP_MAX_PROMPT: no overflow). */
static int reserve(enc *e, size_t nb) {
    if (nb <= e->room) return 1;
    unsigned char *b = (unsigned char *)realloc(e->bytes, nb);
    if (b) e->bytes = b;
    int32_t *s = (int32_t *)realloc(e->sym, nb * sizeof *s);
    if (s) e->sym = s;
    int32_t *p = (int32_t *)realloc(e->prev, nb * sizeof *p);
    if (p) e->prev = p;
    int32_t *x = (int32_t *)realloc(e->next, nb * sizeof *x);
    if (x) e->next = x;
    cand *h = (cand *)realloc(e->heap, 3 * nb * sizeof *h);
    if (h) e->heap = h;
    if (!b || !s || !p || !x || !h) return e->oom = 1, 0;
    e->room = nb;
    return 1;
}

/* min-heap on (rank, pos): the lowest rank first, the leftmost among equal ranks */
static int cand_less(cand a, cand b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }
static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(c, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}
static cand heap_pop(cand *h, size_t *n) {
    const cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(h[c + 1], h[c])) c++;
        if (!cand_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}
static void push_pair(enc *e, size_t *hn, int32_t pos) {
    const int32_t nx = e->next[pos];
    if (nx < 0) return;
    const cd_clip_merge *m = find_merge(e->t, e->sym[pos], e->sym[nx]);
    if (m) heap_push(e->heap, hn, (cand){m->rank, pos, m->out});
}

/* One word: its bytes as symbols (the last with </w>), then the lowest-ranked adjacent pair
 * anywhere in the word is merged, the leftmost first among equals, until no pair is a merge.
 * This is HF tokenizers' order (a pair made by a merge competes at once); Python's CLIP
 * tokenizer instead merges every occurrence of the best pair before looking again. The two agree
 * whenever a merge's parts come from earlier merges, as in a learned merge list. O(n log n). */
static void bpe_word(enc *e, const uint32_t *cp, size_t n) {
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) nb += cp[i] < 0x80 ? 1 : cp[i] < 0x800 ? 2 : cp[i] < 0x10000 ? 3 : 4;
    if (nb == 0 || !reserve(e, nb)) return;
    nb = 0;
    for (size_t i = 0; i < n; i++) nb += put_utf8(e->bytes + nb, cp[i]);
    for (size_t i = 0; i < nb; i++) {
        e->sym[i] = i + 1 < nb ? e->t->byte_id[e->bytes[i]] : e->t->byte_end_id[e->bytes[i]];
        e->prev[i] = (int32_t)i - 1;
        e->next[i] = i + 1 < nb ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < nb; i++) push_pair(e, &hn, (int32_t)i);
    while (hn > 0) {
        const cand c = heap_pop(e->heap, &hn);
        const int32_t nx = e->next[c.pos];
        if (e->sym[c.pos] < 0 || nx < 0) continue; /* stale: merged away or now last */
        const cd_clip_merge *m = find_merge(e->t, e->sym[c.pos], e->sym[nx]);
        if (!m || m->out != c.out) continue; /* stale: the pair changed since it was pushed */
        e->sym[c.pos] = c.out;
        e->sym[nx] = -1;
        e->next[c.pos] = e->next[nx];
        if (e->next[nx] >= 0) e->prev[e->next[nx]] = c.pos;
        if (e->prev[c.pos] >= 0) push_pair(e, &hn, e->prev[c.pos]);
        push_pair(e, &hn, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i]) emit(e, e->sym[i]);
}

static int starts_with(const uint32_t *s, size_t n, const uint32_t *w, size_t nw) {
    if (n < nw) return 0;
    for (size_t i = 0; i < nw; i++)
        if (s[i] != w[i]) return 0;
    return 1;
}
static int is_other(uint32_t c) { return c != ' ' && !cd_uc_is_letter(c) && !cd_uc_is_number(c); }

/* CLIP's pattern, first matching alternative at each position (unmatched text, i.e. spaces, is
 * dropped): <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d | [\p{L}]+ | [\p{N}] |
 * [^\s\p{L}\p{N}]+. The text is normalised, so its only whitespace is ' '. A special-token
 * spelling matched here (the prompt spelled it in another case) is then split by GPT-2's pattern
 * of the byte-level step into "<|", the word, "|>": three BPE words, not the special id. */
static void pretokenize(enc *e, const uint32_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const uint32_t c = s[i];
        size_t j = i + 1;
        if (starts_with(s + i, n - i, SOT, N_SOT) || starts_with(s + i, n - i, EOT, N_EOT)) {
            const size_t len = s[i + 2] == 's' ? N_SOT : N_EOT;
            bpe_word(e, s + i, 2);
            bpe_word(e, s + i + 2, len - 4);
            bpe_word(e, s + i + len - 2, 2);
            i += len;
            continue;
        }
        if (c == ' ') {
            i++;
            continue;
        }
        if (c == '\'' && i + 1 < n) {
            const uint32_t d = s[i + 1], d2 = i + 2 < n ? s[i + 2] : 0;
            if (d == 's' || d == 't' || d == 'm' || d == 'd')
                j = i + 2;
            else if ((d == 'r' && d2 == 'e') || (d == 'v' && d2 == 'e') || (d == 'l' && d2 == 'l'))
                j = i + 3;
        }
        if (j == i + 1) {
            if (cd_uc_is_letter(c))
                while (j < n && cd_uc_is_letter(s[j])) j++;
            else if (!cd_uc_is_number(c))
                while (j < n && is_other(s[j])) j++;
        }
        bpe_word(e, s + i, j - i);
        i = j;
    }
}

cd_status cd_clip_bpe_tokenize(cd_ctx *ctx, const cd_clip_bpe *t, const char *text, size_t len, int32_t *ids,
                               size_t cap, size_t *n_total) {
    *n_total = 0;
    if (len > CD_CLIP_MAX_PROMPT)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "prompt: %zu bytes, more than the %d this tokenizer accepts", len,
                            CD_CLIP_MAX_PROMPT);
    /* len <= 64 KiB, so none of these sizes overflow: NFC writes <= 4 codepoints per codepoint
     * (its decomposition step), the normaliser <= 2 per codepoint; the BPE scratch grows to the
     * longest piece (49 bytes per UTF-8 byte of it). */
    uint32_t *cps = (uint32_t *)malloc((len + 1) * sizeof *cps);
    uint32_t *nfc = (uint32_t *)malloc((4 * len + 1) * sizeof *nfc);
    uint32_t *norm = (uint32_t *)malloc((8 * len + 1) * sizeof *norm);
    enc e = {t, ids, cap, 0, 0, 0, NULL, NULL, NULL, NULL, NULL};
    cd_status st = CD_OK;
    if (!cps || !nfc || !norm) {
        st = cd_set_error(ctx, CD_ERR_OOM, "out of memory tokenizing a %zu-byte prompt", len);
        goto done;
    }
    size_t ncp = 0;
    const size_t bad = utf8_decode((const unsigned char *)text, len, cps, &ncp);
    if (bad < len) {
        st = cd_set_error(ctx, CD_ERR_INVALID_ARG, "prompt: invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                          (unsigned char)text[bad]);
        goto done;
    }
    /* Special tokens spelled exactly are taken out of the raw text first (HF tokenizers' added
     * tokens); each stretch between them is normalised and split on its own. */
    size_t seg = 0;
    for (size_t i = 0; i <= ncp; i++) {
        const int sot = i < ncp && starts_with(cps + i, ncp - i, SOT, N_SOT);
        const int eot = i < ncp && !sot && starts_with(cps + i, ncp - i, EOT, N_EOT);
        if (i < ncp && !sot && !eot) continue;
        const size_t nn = normalise(nfc, cd_uc_nfc(cps + seg, i - seg, nfc), norm);
        pretokenize(&e, norm, nn);
        if (sot) emit(&e, t->bos);
        if (eot) emit(&e, t->eos);
        seg = i + (sot ? N_SOT : eot ? N_EOT : 0);
        if (sot || eot) i = seg - 1;
    }
    if (e.oom) {
        st = cd_set_error(ctx, CD_ERR_OOM, "out of memory tokenizing a %zu-byte prompt", len);
        goto done;
    }
    *n_total = e.n;
done:
    free(cps);
    free(nfc);
    free(norm);
    free(e.bytes);
    free(e.sym);
    free(e.prev);
    free(e.next);
    free(e.heap);
    return st;
}

cd_status cd_clip_bpe_encode_flux(cd_ctx *ctx, const cd_clip_bpe *t, const char *prompt, int32_t ids[CD_CLIP_MAX_LEN],
                                  size_t *dropped) {
    enum { CONTENT = CD_CLIP_MAX_LEN - 2 };
    size_t n = 0;
    const cd_status st = cd_clip_bpe_tokenize(ctx, t, prompt, strlen(prompt), ids + 1, CONTENT, &n);
    if (dropped) *dropped = 0;
    if (st != CD_OK) return st;
    ids[0] = t->bos;
    const size_t kept = n < CONTENT ? n : CONTENT;
    for (size_t i = kept + 1; i < CD_CLIP_MAX_LEN; i++) ids[i] = t->eos; /* EOS, then EOS as pad */
    if (dropped) *dropped = n - kept;
    return CD_OK;
}
