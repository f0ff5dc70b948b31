/* spm.c — SentencePiece unigram encoding: the normaliser (precompiled charsmap, whitespace rules)
 * and Viterbi segmentation over the piece scores, as SentencePiece 0.2 does them; the T5 ids on top.
 * tests/test_spm.c checks the ids against sentencepiece's own encode (tests/oracle/spm_fixtures.py). */
#include "spm_internal.h"

#include "../util/internal.h"

#include <stdlib.h>

/* Prompts longer than this are refused: the lattice holds a few words per byte. */
#define SPM_MAX_TEXT ((size_t)1 << 24)
/* SentencePiece scores an unknown character below every piece by this much. */
#define SPM_UNK_PENALTY 10.0f

/* Length of the valid UTF-8 character at s[0..n) (n >= 1), or 0 when it is invalid (overlong
 * forms, surrogates and code points above U+10FFFF included). */
size_t spm_utf8_len(const uint8_t *s, size_t n) {
    const uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* A character of the normalised text: the charsmap's replacements come from the model file and
 * may be invalid UTF-8; a bad byte is then one character of its own (sentencepiece does the same). */
static size_t char_len(const uint8_t *s, size_t n) {
    const size_t l = spm_utf8_len(s, n);
    return l ? l : 1;
}

cd_status spm_check_utf8(cd_ctx *ctx, const char *text, size_t len) {
    if (len > SPM_MAX_TEXT)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "prompt is %zu bytes; the tokenizer takes at most %zu", len,
                            SPM_MAX_TEXT);
    for (size_t i = 0; i < len;) {
        const size_t l = spm_utf8_len((const uint8_t *)text + i, len - i);
        if (!l)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "prompt is not valid UTF-8: byte 0x%02x at offset %zu",
                                (uint8_t)text[i], i);
        i += l;
    }
    return CD_OK;
}

/* The longest (or the shortest) key of the charsmap's double array that prefixes s[0..n): its
 * length, and the offset of its replacement in *val; 0 when none. The units: bit 8 "has a leaf child", bits 0-7 the
 * label (bit 31 set on leaves, whose bits 0-30 are the value), bits 10-31 the child offset
 * (shifted left by 8 when bit 9 is set); children of node p are at p ^ offset ^ label. */
size_t spm_trie_match(const cd_spm *m, const uint8_t *s, size_t n, uint32_t *val, int shortest) {
    const uint32_t *t = m->trie;
    size_t best = 0, pos = 0;
#define SPM_OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
    pos ^= SPM_OFFSET(t[0]);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0) break; /* keys are C strings */
        pos ^= s[i];
        if (pos >= m->trie_units) break;
        const uint32_t u = t[pos];
        if ((u & (0x80000000u | 0xffu)) != s[i]) break;
        pos ^= SPM_OFFSET(u);
        if (pos >= m->trie_units) break;
        if ((u >> 8) & 1) {
            best = i + 1;
            *val = t[pos] & 0x7fffffffu;
            if (shortest) break;
        }
    }
#undef SPM_OFFSET
    return best;
}

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) return 0;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

/* Longest USER_DEFINED piece that prefixes s[0..n) (at character boundaries): its length or 0. */
static size_t user_prefix(const cd_spm *m, const uint8_t *s, size_t n) {
    size_t best = 0;
    for (size_t e = 0; e < n && e < m->max_piece_len;) {
        e += spm_utf8_len(s + e, n - e); /* s is valid UTF-8 here */
        if (e > m->max_piece_len) break;
        const int id = spm_lookup(m, (const char *)s, e);
        if (id >= 0 && m->pieces[id].type == SPM_USER_DEFINED) best = e;
    }
    return best;
}

/* One step of the normaliser at s[0..n): the replacement (*rep, *rep_len) and the bytes consumed. */
static size_t norm_prefix(const cd_spm *m, const uint8_t *s, size_t n, const char **rep, size_t *rep_len) {
    size_t l = m->has_user_defined ? user_prefix(m, s, n) : 0;
    if (l) { /* user-defined symbols pass unnormalised */
        *rep = (const char *)s, *rep_len = l;
        return l;
    }
    uint32_t v = 0;
    l = m->trie ? spm_trie_match(m, s, n, &v, 0) : 0;
    if (l && v < m->norm_strs_len) {
        *rep = m->norm_strs + v;
        *rep_len = strlen(*rep); /* charsmap[len] is NUL: bounded */
        return l;
    }
    l = spm_utf8_len(s, n);
    *rep = (const char *)s, *rep_len = l;
    return l;
}

cd_status cd_spm_normalize(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, char **out, size_t *out_len) {
    *out = NULL, *out_len = 0;
    cd_status st = spm_check_utf8(ctx, text, len);
    if (st != CD_OK) return st;
    const uint8_t *s = (const uint8_t *)text;
    sbuf b = {0};
    const char *rep;
    size_t rl, i = 0;
    int ok = sb_put(&b, "", 0);
    if (m->remove_extra_whitespaces) /* leading characters that normalise to one space go */
        while (i < len) {
            const size_t c = norm_prefix(m, s + i, len - i, &rep, &rl);
            if (!(rl == 1 && rep[0] == ' ')) break;
            i += c;
        }
    if (i < len && m->add_dummy_prefix)
        ok = ok && sb_put(&b, m->escape_whitespaces ? "\xe2\x96\x81" : " ", m->escape_whitespaces ? 3 : 1);
    int prev_space = m->remove_extra_whitespaces;
    while (ok && i < len) {
        i += norm_prefix(m, s + i, len - i, &rep, &rl);
        if (prev_space)
            while (rl && rep[0] == ' ') rep++, rl--;
        if (rl) {
            for (size_t k = 0; ok && k < rl; k++)
                ok = rep[k] == ' ' && m->escape_whitespaces ? sb_put(&b, "\xe2\x96\x81", 3) : sb_put(&b, rep + k, 1);
            prev_space = rep[rl - 1] == ' ';
        }
        if (!m->remove_extra_whitespaces) prev_space = 0;
    }
    if (ok && m->remove_extra_whitespaces) {
        const char *sp = m->escape_whitespaces ? "\xe2\x96\x81" : " ";
        const size_t sl = strlen(sp);
        while (b.n >= sl && memcmp(b.p + b.n - sl, sp, sl) == 0) b.n -= sl;
        b.p[b.n] = 0;
    }
    if (!ok) {
        free(b.p);
        return cd_set_error(ctx, CD_ERR_OOM, "tokenizer: out of memory");
    }
    *out = b.p, *out_len = b.n;
    return CD_OK;
}

/* Viterbi over the normalised text: node[e] = best (score, start, piece) of a path ending at byte e. */
typedef struct {
    double score;
    int32_t start; /* -1: not reached */
    int32_t id;
} spm_node;

static cd_status oom(cd_ctx *ctx) { return cd_set_error(ctx, CD_ERR_OOM, "tokenizer: out of memory"); }

cd_status spm_viterbi(cd_ctx *ctx, const cd_spm *m, const char *t, size_t tl, int hf, int32_t **ids, size_t *n,
                      size_t *cap) {
    if (tl == 0) return CD_OK;
    spm_node *node = tl < INT32_MAX ? malloc((tl + 1) * sizeof *node) : NULL;
    int32_t *out = malloc(tl * sizeof *out); /* at most one piece per byte */
    int32_t *sp = malloc(tl * sizeof *sp);
    if (!node || !out || !sp) {
        free(node), free(out), free(sp);
        return oom(ctx);
    }
    for (size_t i = 0; i <= tl; i++) node[i].start = -1, node[i].score = 0, node[i].id = -1;
    node[0].start = 0;
    const uint8_t *s = (const uint8_t *)t;
    /* sentencepiece sums path scores in float (each sum rounded to float below); HF in double */
    const double unk_score = hf ? m->min_score_all - SPM_UNK_PENALTY : (double)(m->min_score - SPM_UNK_PENALTY);
    for (size_t b = 0; b < tl;) {
        const size_t c1 = char_len(s + b, tl - b);
        const double here = node[b].score;
        int single = 0;
        /* candidates by increasing length, the first of equal scores kept: SentencePiece's order */
        for (size_t e = b; e < tl && e - b < m->max_piece_len;) {
            e += char_len(s + e, tl - e);
            if (e - b > m->max_piece_len) break;
            const int id = spm_lookup(m, t + b, e - b);
            if (id < 0) continue;
            const int type = m->pieces[id].type;
            if (!hf && type != SPM_NORMAL && type != SPM_USER_DEFINED) continue;
            if (e - b == c1) single = 1;
            double sc = hf ? m->pieces[id].score : (double)(float)m->pieces[id].score;
            if (!hf && type == SPM_USER_DEFINED) {
                size_t chars = 0;
                for (size_t k = b; k < e; k++) chars += (s[k] & 0xc0) != 0x80;
                sc = (float)chars * m->max_score - 0.1f; /* always preferred, longest first */
            }
            const double cand = hf ? sc + here : (double)(float)(sc + here);
            if (node[e].start < 0 || cand > node[e].score)
                node[e].score = cand, node[e].start = (int32_t)b, node[e].id = id;
        }
        if (!single) {
            const double cand = hf ? unk_score + here : (double)(float)(unk_score + here);
            const size_t e = b + c1;
            if (node[e].start < 0 || cand > node[e].score)
                node[e].score = cand, node[e].start = (int32_t)b, node[e].id = m->unk_id;
        }
        b += c1;
    }
    /* back from the end (pieces come out reversed), runs of unknowns merged into one; sp[] holds
     * each kept piece's start (pieces are contiguous: piece i ends where piece i + 1 starts) */
    size_t k = 0, e = tl, unk_bytes = 0;
    while (e > 0) {
        const int32_t id = node[e].id, b = node[e].start;
        if (id == m->unk_id) unk_bytes += e - (size_t)b;
        if (id == m->unk_id && k > 0 && out[k - 1] == m->unk_id)
            sp[k - 1] = b;
        else
            out[k] = id, sp[k++] = b;
        e = (size_t)b;
    }
    free(node);
    for (size_t i = 0; i < k / 2; i++) {
        const int32_t x = out[i], y = sp[i];
        out[i] = out[k - 1 - i], out[k - 1 - i] = x;
        sp[i] = sp[k - 1 - i], sp[k - 1 - i] = y;
    }
    /* with byte_fallback an unknown becomes the <0xXX> pieces of its UTF-8 bytes */
    const size_t need = *n + k + (m->byte_fallback ? unk_bytes : 0);
    if (need > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < need) nc *= 2;
        int32_t *g = realloc(*ids, nc * sizeof *g);
        if (!g) {
            free(out), free(sp);
            return oom(ctx);
        }
        *ids = g, *cap = nc;
    }
    int32_t *o = *ids;
    for (size_t i = 0; i < k; i++) {
        if (out[i] != m->unk_id || !m->byte_fallback) {
            o[(*n)++] = out[i];
            continue;
        }
        const size_t end = i + 1 < k ? (size_t)sp[i + 1] : tl;
        for (size_t p = (size_t)sp[i]; p < end; p++) o[(*n)++] = m->byte_ids[s[p]];
    }
    free(out), free(sp);
    return CD_OK;
}

cd_status cd_spm_encode(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = NULL, *n = 0;
    if (m->semantics == CD_SPM_SEMANTICS_DIFFUSERS) return spm_hf_encode(ctx, m, text, len, ids, n);
    char *t;
    size_t tl, cap = 0;
    cd_status st = cd_spm_normalize(ctx, m, text, len, &t, &tl);
    if (st != CD_OK) return st;
    st = spm_viterbi(ctx, m, t, tl, 0, ids, n, &cap);
    free(t);
    if (st != CD_OK) free(*ids), *ids = NULL, *n = 0;
    return st;
}

cd_status cd_spm_t5_ids(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, size_t L, int32_t *out,
                        size_t *dropped) {
    if (dropped) *dropped = 0;
    if (L < 1) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "T5 ids: max length must be at least 1");
    if (m->eos_id < 0 || m->pad_id < 0)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "T5 ids: the model has no EOS or PAD id");
    int32_t *ids;
    size_t n;
    cd_status st = cd_spm_encode(ctx, m, text, len, &ids, &n);
    if (st != CD_OK) return st;
    const size_t keep = n < L - 1 ? n : L - 1;
    if (keep) memcpy(out, ids, keep * sizeof *out);
    out[keep] = m->eos_id;
    for (size_t i = keep + 1; i < L; i++) out[i] = m->pad_id;
    if (dropped) *dropped = n - keep;
    free(ids);
    return CD_OK;
}
