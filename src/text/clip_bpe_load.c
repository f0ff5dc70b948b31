/* clip_bpe_load.c — reads CLIP's BPE tables from diffusers' tokenizer/ (vocab.json + merges.txt)
 * or open_clip's bpe_simple_vocab_16e6.txt.gz into the same struct cd_clip_bpe. The files are
 * untrusted: every size, id and line is bounded and checked, and errors name the file and line. */
#include "clip_bpe_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#define MAX_FILE ((size_t)64 << 20) /* bytes of vocab.json, merges.txt or the unzipped .gz */
#define MAX_VOCAB ((size_t)1 << 20)
#define MAX_TOKEN 1024 /* bytes of one vocabulary entry */

/* ---- string -> id map, used only while loading ---- */
typedef struct {
    char *s; /* NUL-terminated copy; NULL: empty slot */
    size_t len;
    int32_t id;
} smap_slot;
typedef struct {
    smap_slot *slot;
    size_t mask, count;
} smap;

static size_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return (size_t)cd_mix64(h);
}
static int smap_init(smap *m, size_t expect) {
    size_t cap = 64;
    while (cap < expect * 2) cap *= 2;
    m->slot = (smap_slot *)calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    m->count = 0;
    return m->slot != NULL;
}
static void smap_free(smap *m) {
    if (!m->slot) return;
    for (size_t i = 0; i <= m->mask; i++) free(m->slot[i].s);
    free(m->slot);
    m->slot = NULL;
}
static smap_slot *smap_find(const smap *m, const char *s, size_t n) {
    for (size_t i = str_hash(s, n) & m->mask;; i = (i + 1) & m->mask) {
        smap_slot *e = &m->slot[i];
        if (!e->s || (e->len == n && memcmp(e->s, s, n) == 0)) return e;
    }
}
/* 1 inserted, 0 already present, -1 OOM. The table never fills: callers size it for all keys. */
static int smap_put(smap *m, const char *s, size_t n, int32_t id) {
    smap_slot *e = smap_find(m, s, n);
    if (e->s) return 0;
    if (!(e->s = (char *)malloc(n + 1))) return -1;
    memcpy(e->s, s, n);
    e->s[n] = 0;
    e->len = n;
    e->id = id;
    m->count++;
    return 1;
}
static int32_t smap_get(const smap *m, const char *s, size_t n) {
    const smap_slot *e = smap_find(m, s, n);
    return e->s ? e->id : -1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 63)), 2;
    o[0] = (char)(0xE0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 63)), o[2] = (char)(0x80 | (cp & 63));
    return 3; /* byte symbols are < U+0200 */
}

/* Whole file into a NUL-terminated buffer of at most MAX_FILE bytes. */
static cd_status read_file(cd_ctx *ctx, const char *path, char **buf, size_t *len) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cd_set_error(ctx, CD_ERR_IO, "cannot open %s", path);
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) return fclose(f), cd_set_error(ctx, CD_ERR_IO, "cannot size %s", path);
    if ((unsigned long)sz > MAX_FILE)
        return fclose(f), cd_set_error(ctx, CD_ERR_FORMAT, "%s: larger than %zu bytes", path, MAX_FILE);
    char *b = (char *)malloc((size_t)sz + 1);
    if (!b) return fclose(f), cd_set_error(ctx, CD_ERR_OOM, "out of memory reading %s", path);
    const size_t n = fread(b, 1, (size_t)sz, f);
    const int err = ferror(f);
    fclose(f);
    if (err || n != (size_t)sz) return free(b), cd_set_error(ctx, CD_ERR_IO, "read error on %s", path);
    b[n] = 0;
    *buf = b;
    *len = n;
    return CD_OK;
}

/* The unzipped text, NUL-terminated, at most MAX_FILE bytes (the buffer doubles as it fills). */
static cd_status gz_read(cd_ctx *ctx, const char *path, char **buf, size_t *len) {
    *buf = NULL;
    gzFile g = gzopen(path, "rb");
    if (!g) return cd_set_error(ctx, CD_ERR_IO, "cannot open %s", path);
    size_t n = 0, cap = (size_t)1 << 16;
    char *b = (char *)malloc(cap + 1);
    for (;;) {
        if (!b) return gzclose(g), cd_set_error(ctx, CD_ERR_OOM, "out of memory reading %s", path);
        if (n == cap) {
            if (cap > MAX_FILE) break; /* over the limit: reported below */
            cap *= 2;
            char *nb = (char *)realloc(b, cap + 1);
            if (!nb) free(b);
            b = nb;
            continue;
        }
        const size_t want = cap - n < ((size_t)1 << 20) ? cap - n : ((size_t)1 << 20);
        const int r = gzread(g, b + n, (unsigned)want);
        if (r < 0) {
            int zerr;
            cd_set_error(ctx, CD_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, gzerror(g, &zerr));
            return gzclose(g), free(b), CD_ERR_FORMAT;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    const int rc = gzclose(g); /* Z_BUF_ERROR: the stream ended early (a truncated file) */
    if (n > MAX_FILE)
        return free(b), cd_set_error(ctx, CD_ERR_FORMAT, "%s: unzips to more than %zu bytes", path, MAX_FILE);
    if (rc != Z_OK) return free(b), cd_set_error(ctx, CD_ERR_FORMAT, "%s: truncated or corrupt gzip file", path);
    b[n] = 0;
    *buf = b;
    *len = n;
    return CD_OK;
}

/* Lines in txt, at most CD_CLIP_MAX_MERGES + 2: sizes the tables to the file. */
static size_t count_lines(const char *txt, size_t len) {
    size_t n = 1;
    for (const char *p = txt; n < CD_CLIP_MAX_MERGES + 2 && (p = memchr(p, '\n', len - (size_t)(p - txt))); p++) n++;
    return n;
}

static cd_status add_merge(cd_ctx *ctx, cd_clip_bpe *t, int32_t a, int32_t b, int32_t rank, int32_t out) {
    for (size_t i = cd_clip_pair_hash(a, b) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        cd_clip_merge *e = &t->merges[i];
        if (e->a < 0 || (e->a == a && e->b == b)) { /* a repeated pair keeps its last rank, as a dict does */
            *e = (cd_clip_merge){a, b, rank, out};
            return CD_OK;
        }
    }
}

/* Parses merges: a header line, then up to CD_CLIP_MAX_MERGES "a b" lines (the rest ignored).
 * gz_vocab: build the vocabulary as open_clip does (each merge's result gets the next id);
 * otherwise every symbol must already be in `m` (from vocab.json). */
static cd_status parse_merges(cd_ctx *ctx, const char *path, char *txt, size_t len, smap *m, int gz_vocab,
                              cd_clip_bpe *t) {
    /* lines = text.strip().split("\n")[1:]: trailing newlines do not make an empty merge */
    while (len > 0 && (txt[len - 1] == '\n' || txt[len - 1] == ' ' || txt[len - 1] == '\r')) len--;
    size_t pos = 0, n_lines = 0;
    while (pos < len && txt[pos] != '\n') pos++;
    if (pos >= len) return cd_set_error(ctx, CD_ERR_FORMAT, "%s: no merges after the header line", path);
    if (!gz_vocab && strncmp(txt, "#version", 8) != 0) /* a missing header would silently drop a merge */
        return cd_set_error(ctx, CD_ERR_FORMAT, "%s: first line is not a \"#version\" header", path);
    pos++;
    size_t cap = 64;
    while (cap < 2 * count_lines(txt, len) + 2) cap *= 2;
    t->merges = (cd_clip_merge *)malloc(cap * sizeof *t->merges);
    if (!t->merges) return cd_set_error(ctx, CD_ERR_OOM, "out of memory for merges");
    for (size_t i = 0; i < cap; i++) t->merges[i].a = -1;
    t->merge_mask = cap - 1;
    char buf[2 * MAX_TOKEN + 1];
    while (pos < len && n_lines < CD_CLIP_MAX_MERGES) {
        const size_t line_no = n_lines + 2, start = pos;
        while (pos < len && txt[pos] != '\n') pos++;
        const size_t end = pos++;
        size_t sp = start;
        while (sp < end && txt[sp] != ' ') sp++;
        const size_t la = sp - start, lb = sp < end ? end - sp - 1 : 0;
        if (sp >= end || la == 0 || lb == 0 || memchr(txt + sp + 1, ' ', lb) || memchr(txt + start, '\r', end - start))
            return cd_set_error(ctx, CD_ERR_FORMAT, "%s line %zu: expected two symbols separated by one space", path,
                                line_no);
        if (la + lb > 2 * MAX_TOKEN)
            return cd_set_error(ctx, CD_ERR_FORMAT, "%s line %zu: symbol longer than %d bytes", path, line_no,
                                MAX_TOKEN);
        const int32_t a = smap_get(m, txt + start, la), b = smap_get(m, txt + sp + 1, lb);
        if (a < 0 || b < 0)
            return cd_set_error(ctx, CD_ERR_FORMAT,
                                "%s line %zu: merge names a symbol not in the vocabulary (\"%.*s\")", path, line_no,
                                (int)(a < 0 ? la : lb), a < 0 ? txt + start : txt + sp + 1);
        memcpy(buf, txt + start, la);
        memcpy(buf + la, txt + sp + 1, lb);
        int32_t out;
        if (gz_vocab) {
            out = (int32_t)(512 + n_lines);
            const int r = smap_put(m, buf, la + lb, out);
            if (r < 0) return cd_set_error(ctx, CD_ERR_OOM, "out of memory for the vocabulary");
            if (r == 0)
                return cd_set_error(ctx, CD_ERR_FORMAT, "%s line %zu: merge result \"%.*s\" repeats a token", path,
                                    line_no, (int)(la + lb), buf);
        } else if ((out = smap_get(m, buf, la + lb)) < 0) {
            return cd_set_error(ctx, CD_ERR_FORMAT, "%s line %zu: merge result \"%.*s\" is not in vocab.json", path,
                                line_no, (int)(la + lb), buf);
        }
        add_merge(ctx, t, a, b, (int32_t)n_lines, out);
        n_lines++;
    }
    return CD_OK;
}

/* Byte symbols and special tokens, looked up in the finished map. */
static cd_status finish(cd_ctx *ctx, const char *what, const smap *m, cd_clip_bpe *t) {
    uint32_t cps[256];
    cd_clip_byte_cps(cps);
    for (unsigned b = 0; b < 256; b++) {
        char s[8];
        const size_t n = put_utf8(s, cps[b]);
        memcpy(s + n, "</w>", 4);
        t->byte_id[b] = smap_get(m, s, n);
        t->byte_end_id[b] = smap_get(m, s, n + 4);
        if (t->byte_id[b] < 0 || t->byte_end_id[b] < 0)
            return cd_set_error(ctx, CD_ERR_FORMAT, "%s: the symbol of byte 0x%02X (with and without </w>) is missing",
                                what, b);
    }
    t->bos = smap_get(m, "<|startoftext|>", 15);
    t->eos = smap_get(m, "<|endoftext|>", 13);
    if (t->bos < 0 || t->eos < 0)
        return cd_set_error(ctx, CD_ERR_FORMAT, "%s: <|startoftext|> or <|endoftext|> is missing", what);
    return CD_OK;
}

void cd_clip_bpe_free(cd_clip_bpe *t) {
    if (!t) return;
    free(t->merges);
    free(t);
}

cd_status cd_clip_bpe_load_gz(cd_ctx *ctx, const char *gz_path, cd_clip_bpe **out) {
    *out = NULL;
    char *txt = NULL;
    size_t len = 0;
    cd_status s = gz_read(ctx, gz_path, &txt, &len);
    if (s != CD_OK) return s;
    cd_clip_bpe *t = (cd_clip_bpe *)calloc(1, sizeof *t);
    smap m = {0};
    if (!t || !smap_init(&m, 512 + count_lines(txt, len) + 2)) {
        s = cd_set_error(ctx, CD_ERR_OOM, "out of memory loading %s", gz_path);
        goto done;
    }
    /* open_clip's order: the bytes that map to themselves (33..126, 161..172, 174..255), then the
     * others, i.e. by the codepoint of their symbol */
    uint32_t cps[256];
    cd_clip_byte_cps(cps);
    int32_t id = 0;
    for (uint32_t cp = 33; cp < 256 + 68; cp++) {
        if (cp < 256 && cps[cp] != cp) continue; /* this codepoint is not a byte's symbol */
        char sym[8];
        const size_t n = put_utf8(sym, cp);
        memcpy(sym + n, "</w>", 4);
        const int32_t k = id++;
        if (smap_put(&m, sym, n, k) < 0 || smap_put(&m, sym, n + 4, 256 + k) < 0) {
            s = cd_set_error(ctx, CD_ERR_OOM, "out of memory loading %s", gz_path);
            goto done;
        }
    }
    if ((s = parse_merges(ctx, gz_path, txt, len, &m, 1, t)) != CD_OK) goto done;
    const int32_t n = (int32_t)m.count;
    if (smap_put(&m, "<|startoftext|>", 15, n) != 1 || smap_put(&m, "<|endoftext|>", 13, n + 1) != 1) {
        s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: a merge spells a special token", gz_path);
        goto done;
    }
    t->n_vocab = m.count;
    s = finish(ctx, gz_path, &m, t);
done:
    smap_free(&m);
    free(txt);
    if (s != CD_OK) return cd_clip_bpe_free(t), s;
    *out = t;
    return CD_OK;
}

/* The vocabulary object (token -> id; vocab.json, or tokenizer.json's model.vocab) and merges
 * text (merges.txt's layout) into a tokenizer. */
static cd_status from_vocab(cd_ctx *ctx, const char *vwhat, const json_t *root, const char *mwhat, char *mt,
                            size_t mlen, cd_clip_bpe **out) {
    unsigned char *seen = NULL;
    smap m = {0};
    cd_clip_bpe *t = NULL;
    cd_status s = CD_OK;
    const size_t nv = json_object_size(root);
    if (nv < 514 || nv > MAX_VOCAB) {
        s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: %zu entries (expected 514 to %zu)", vwhat, nv, MAX_VOCAB);
        goto done;
    }
    t = (cd_clip_bpe *)calloc(1, sizeof *t);
    seen = (unsigned char *)calloc(nv, 1);
    if (!t || !seen || !smap_init(&m, nv + 1)) {
        s = cd_set_error(ctx, CD_ERR_OOM, "out of memory loading %s", vwhat);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        const size_t kl = strlen(key);
        const json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (kl == 0 || kl > MAX_TOKEN || id < 0 || (size_t)id >= nv || seen[id]) {
            s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: entry \"%.64s\": ids must be distinct integers in [0, %zu)",
                             vwhat, key, nv);
            goto done;
        }
        seen[id] = 1;
        if (smap_put(&m, key, kl, (int32_t)id) < 0) {
            s = cd_set_error(ctx, CD_ERR_OOM, "out of memory loading %s", vwhat);
            goto done;
        }
    }
    t->n_vocab = nv;
    if ((s = parse_merges(ctx, mwhat, mt, mlen, &m, 0, t)) != CD_OK) goto done;
    s = finish(ctx, vwhat, &m, t);
done:
    smap_free(&m);
    free(seen);
    if (s != CD_OK) return cd_clip_bpe_free(t), s;
    *out = t;
    return CD_OK;
}

cd_status cd_clip_bpe_load_json(cd_ctx *ctx, const char *vocab_json, const char *merges_txt, cd_clip_bpe **out) {
    *out = NULL;
    char *vj = NULL, *mt = NULL;
    size_t vlen = 0, mlen = 0;
    json_t *root = NULL;
    cd_status s = read_file(ctx, vocab_json, &vj, &vlen);
    if (s == CD_OK) s = read_file(ctx, merges_txt, &mt, &mlen);
    if (s == CD_OK) {
        json_error_t je;
        root = json_loadb(vj, vlen, JSON_REJECT_DUPLICATES, &je);
        if (!root || !json_is_object(root))
            s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: not a JSON object (line %d: %s)", vocab_json, root ? 1 : je.line,
                             root ? "top level is not an object" : je.text);
    }
    if (s == CD_OK) s = from_vocab(ctx, vocab_json, root, merges_txt, mt, mlen, out);
    json_decref(root);
    free(vj);
    free(mt);
    return s;
}

/* tokenizer.json (CLIPTokenizerFast's): model BPE with "</w>" word ends; merges as "a b" strings
 * or [a, b] pairs (newer tokenizers), rewritten into merges.txt's layout for parse_merges. */
cd_status cd_clip_bpe_load_tokenizer_json(cd_ctx *ctx, const char *path, cd_clip_bpe **out) {
    *out = NULL;
    char *txt = NULL, *mt = NULL;
    size_t len = 0;
    json_t *root = NULL;
    cd_status s = read_file(ctx, path, &txt, &len);
    if (s != CD_OK) return s;
    json_error_t je;
    root = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
    free(txt);
    const json_t *model = json_object_get(root, "model"), *type = json_object_get(model, "type");
    const json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    const json_t *eow = json_object_get(model, "end_of_word_suffix"),
                 *csp = json_object_get(model, "continuing_subword_prefix");
    const json_t *drop = json_object_get(model, "dropout"), *ign = json_object_get(model, "ignore_merges");
    if (!root) {
        s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: not valid JSON (line %d: %s)", path, je.line, je.text);
    } else if (!json_is_object(root) || !json_is_object(model)) {
        s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: tokenizer.json: no \"model\" object", path);
    } else if (!json_is_string(type) || strcmp(json_string_value(type), "BPE") != 0) {
        s = cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: tokenizer.json: model type \"%.40s\" is not BPE", path,
                         json_is_string(type) ? json_string_value(type) : "?");
    } else if (!json_is_string(eow) || strcmp(json_string_value(eow), "</w>") != 0 ||
               (csp && !json_is_null(csp) && !(json_is_string(csp) && json_string_length(csp) == 0)) ||
               (drop && !json_is_null(drop)) || json_is_true(ign)) {
        s = cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                         "%s: tokenizer.json: not CLIP's BPE (end_of_word_suffix must be \"</w>\"; no subword prefix, "
                         "dropout or ignore_merges)",
                         path);
    } else if (!json_is_object(vocab) || !json_is_array(merges)) {
        s = cd_set_error(ctx, CD_ERR_FORMAT,
                         "%s: tokenizer.json: model.vocab is not an object or model.merges not a list", path);
    }
    /* merges -> "#version\na b\n..." (only the first CD_CLIP_MAX_MERGES are used) */
    const size_t nm = json_array_size(merges) < CD_CLIP_MAX_MERGES ? json_array_size(merges) : CD_CLIP_MAX_MERGES;
    size_t cap = 16, n = 0;
    for (size_t i = 0; s == CD_OK && i < nm; i++) {
        const json_t *e = json_array_get(merges, i);
        const json_t *a = json_is_array(e) && json_array_size(e) == 2 ? json_array_get(e, 0) : NULL;
        const json_t *b = a ? json_array_get(e, 1) : NULL;
        if (json_is_string(e))
            cap += json_string_length(e) + 1;
        else if (json_is_string(a) && json_is_string(b))
            cap += json_string_length(a) + json_string_length(b) + 2;
        else
            s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: tokenizer.json: merges[%zu] is not \"a b\" or [a, b]", path, i);
        if (s == CD_OK && cap > MAX_FILE) s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: merges too large", path);
    }
    if (s == CD_OK && !(mt = (char *)malloc(cap + 1)))
        s = cd_set_error(ctx, CD_ERR_OOM, "out of memory loading %s", path);
    if (s == CD_OK) n = (size_t)sprintf(mt, "#version\n");
    for (size_t i = 0; s == CD_OK && i < nm; i++) {
        const json_t *e = json_array_get(merges, i);
        const char *parts[2];
        size_t pl[2];
        int np = json_is_string(e) ? 1 : 2;
        for (int k = 0; k < np; k++) {
            const json_t *x = np == 1 ? e : json_array_get(e, (size_t)k);
            parts[k] = json_string_value(x), pl[k] = json_string_length(x);
            /* a symbol with a space, newline or NUL cannot be a CLIP symbol, nor be written as a line */
            if ((np == 2 && memchr(parts[k], ' ', pl[k])) || memchr(parts[k], '\n', pl[k]) ||
                memchr(parts[k], '\r', pl[k]) || strlen(parts[k]) != pl[k])
                s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: tokenizer.json: merges[%zu] holds a space, newline or NUL",
                                 path, i);
        }
        for (int k = 0; s == CD_OK && k < np; k++) {
            if (k) mt[n++] = ' ';
            memcpy(mt + n, parts[k], pl[k]);
            n += pl[k];
        }
        if (s == CD_OK) mt[n++] = '\n';
    }
    if (s == CD_OK) {
        mt[n] = 0;
        char what[4200];
        snprintf(what, sizeof what, "%s model.merges (line N is merges[N-2])", path);
        s = from_vocab(ctx, path, vocab, what, mt, n, out);
    }
    json_decref(root);
    free(mt);
    return s;
}

static int is_file(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

cd_status cd_clip_bpe_load_dir(cd_ctx *ctx, const char *dir, cd_clip_bpe **out) {
    *out = NULL;
    char v[4096], m[4096], j[4096];
    if (snprintf(v, sizeof v, "%s/vocab.json", dir) >= (int)sizeof v ||
        snprintf(m, sizeof m, "%s/merges.txt", dir) >= (int)sizeof m ||
        snprintf(j, sizeof j, "%s/tokenizer.json", dir) >= (int)sizeof j)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "CLIP tokenizer: folder path too long");
    if (is_file(v) && is_file(m)) return cd_clip_bpe_load_json(ctx, v, m, out);
    if (is_file(j)) return cd_clip_bpe_load_tokenizer_json(ctx, j, out);
    return cd_set_error(ctx, CD_ERR_IO,
                        "%s: no CLIP tokenizer (looked for vocab.json + merges.txt, then tokenizer.json; diffusers "
                        "keeps them in tokenizer/)",
                        dir);
}

size_t cd_clip_bpe_vocab_size(const cd_clip_bpe *t) { return t->n_vocab; }
int32_t cd_clip_bpe_bos(const cd_clip_bpe *t) { return t->bos; }
int32_t cd_clip_bpe_eos(const cd_clip_bpe *t) { return t->eos; }
