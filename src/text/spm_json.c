/* spm_json.c — reads a tokenizer.json with a Unigram model (what transformers' T5TokenizerFast
 * writes, and what diffusers' tokenizer_2/ holds) into struct cd_spm, and finds a tokenizer in a
 * folder. The file is untrusted: every field read is type-checked and bounded; anything outside
 * the T5 shape (another model type, normaliser or pre-tokenizer) is refused with a one-line error
 * naming it. docs/tokenizer_spm.md describes the fields and both semantics. */
#include "spm_internal.h"

#include "../util/internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define MAX_FILE ((long long)64 << 20) /* T5's tokenizer.json is 2.4 MB */
#define MAX_PIECES ((size_t)1 << 22)
#define MAX_PIECE_BYTES 4096
#define MAX_ADDED 4096

static cd_status bad(cd_ctx *ctx, const char *path, const char *what) {
    return cd_set_error(ctx, CD_ERR_FORMAT, "%s: tokenizer.json: %s", path, what);
}

/* Prefixes the path to a message set by a shared helper (copied first: the context holds it). */
static cd_status with_path(cd_ctx *ctx, cd_status s, const char *path) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", cd_ctx_error(ctx));
    return cd_set_error(ctx, s, "%s: tokenizer.json: %s", path, msg);
}

static int b64val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 (padding optional) into a malloc'd buffer; NULL when malformed or out of memory. */
static uint8_t *b64_decode(const char *s, size_t n, size_t *out_n) {
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) return NULL;
    uint8_t *o = malloc(n / 4 * 3 + 3);
    if (!o) return NULL;
    size_t k = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        const int v = b64val((unsigned char)s[i]);
        if (v < 0) return free(o), NULL;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) o[k++] = (uint8_t)(acc >> 16), o[k++] = (uint8_t)(acc >> 8), o[k++] = (uint8_t)acc, acc = 0;
    }
    if (n % 4 == 2) o[k++] = (uint8_t)(acc >> 4);
    if (n % 4 == 3) o[k++] = (uint8_t)(acc >> 10), o[k++] = (uint8_t)(acc >> 2);
    *out_n = k;
    return o;
}

static int str_is(const json_t *o, const char *key, const char *want) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

/* One normaliser step: Precompiled, or Replace(" {2,}" -> " ") (older converters), or a Sequence. */
static cd_status read_normalizer(cd_ctx *ctx, const char *path, cd_spm *m, const json_t *n, int depth) {
    if (!n || json_is_null(n)) return CD_OK; /* absent or null: no normaliser */
    const json_t *type = json_object_get(n, "type");
    if (!json_is_object(n) || !json_is_string(type) || depth > 4) return bad(ctx, path, "malformed normalizer");
    const char *t = json_string_value(type);
    if (!strcmp(t, "Sequence")) {
        const json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) return bad(ctx, path, "normalizer Sequence without a normalizers list");
        for (size_t i = 0; i < json_array_size(list); i++) {
            cd_status s = read_normalizer(ctx, path, m, json_array_get(list, i), depth + 1);
            if (s != CD_OK) return s;
        }
        return CD_OK;
    }
    if (!strcmp(t, "Precompiled")) {
        const json_t *cm = json_object_get(n, "precompiled_charsmap");
        if (m->hf_precompiled || m->hf_collapse_spaces)
            return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: tokenizer.json: normalizer order not supported", path);
        if (json_is_null(cm)) return CD_OK; /* no charsmap: identity */
        if (!json_is_string(cm)) return bad(ctx, path, "precompiled_charsmap is not a string");
        size_t len = 0;
        uint8_t *blob = b64_decode(json_string_value(cm), json_string_length(cm), &len);
        if (!blob) return bad(ctx, path, "precompiled_charsmap is not base64");
        cd_status s = len ? spm_read_charsmap(ctx, m, blob, len) : CD_OK;
        free(blob);
        if (s != CD_OK) return with_path(ctx, s, path);
        m->hf_precompiled = m->trie != NULL;
        return CD_OK;
    }
    if (!strcmp(t, "Replace")) {
        const json_t *pat = json_object_get(n, "pattern");
        if (str_is(n, "content", " ") && json_is_object(pat) && str_is(pat, "Regex", " {2,}") &&
            !m->hf_collapse_spaces) {
            m->hf_collapse_spaces = 1;
            return CD_OK;
        }
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "%s: tokenizer.json: only Replace(\" {2,}\" -> \" \") is supported as a Replace normalizer",
                            path);
    }
    return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: tokenizer.json: normalizer type \"%.40s\" is not supported", path,
                        t);
}

/* WhitespaceSplit, then Metaspace (U+2581; prepend_scheme always / first / never, or the older
 * add_prefix_space; split), or a Sequence of those. */
static cd_status read_pretok(cd_ctx *ctx, const char *path, cd_spm *m, const json_t *p, int depth, int *meta) {
    const json_t *type = json_object_get(p, "type");
    if (!json_is_object(p) || !json_is_string(type) || depth > 4) return bad(ctx, path, "malformed pre_tokenizer");
    const char *t = json_string_value(type);
    if (!strcmp(t, "Sequence")) {
        const json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list)) return bad(ctx, path, "pre_tokenizer Sequence without a pretokenizers list");
        for (size_t i = 0; i < json_array_size(list); i++) {
            cd_status s = read_pretok(ctx, path, m, json_array_get(list, i), depth + 1, meta);
            if (s != CD_OK) return s;
        }
        return CD_OK;
    }
    if (!strcmp(t, "WhitespaceSplit") && !*meta && !m->hf_ws_split) {
        m->hf_ws_split = 1;
        return CD_OK;
    }
    if (!strcmp(t, "Metaspace") && !*meta) {
        if (!str_is(p, "replacement", "\xe2\x96\x81"))
            return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: tokenizer.json: Metaspace replacement is not U+2581",
                                path);
        const json_t *ps = json_object_get(p, "prepend_scheme"), *aps = json_object_get(p, "add_prefix_space"),
                     *sp = json_object_get(p, "split");
        if (json_is_string(ps)) {
            const char *v = json_string_value(ps);
            m->hf_prepend = !strcmp(v, "always")  ? SPM_PREPEND_ALWAYS
                            : !strcmp(v, "first") ? SPM_PREPEND_FIRST
                            : !strcmp(v, "never") ? SPM_PREPEND_NEVER
                                                  : -1;
            if (m->hf_prepend < 0) return bad(ctx, path, "unknown Metaspace prepend_scheme");
        } else if (ps && !json_is_null(ps)) {
            return bad(ctx, path, "Metaspace prepend_scheme is not a string");
        } else { /* tokenizers before 0.14: add_prefix_space (default true) meant "always" */
            if (aps && !json_is_boolean(aps)) return bad(ctx, path, "Metaspace add_prefix_space is not a boolean");
            m->hf_prepend = !aps || json_is_true(aps) ? SPM_PREPEND_ALWAYS : SPM_PREPEND_NEVER;
        }
        if (sp && !json_is_boolean(sp)) return bad(ctx, path, "Metaspace split is not a boolean");
        m->hf_meta_split = !sp || json_is_true(sp);
        *meta = 1;
        return CD_OK;
    }
    return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                        "%s: tokenizer.json: pre_tokenizer \"%.40s\" is not supported here (T5's is WhitespaceSplit "
                        "and Metaspace)",
                        path, t);
}

/* The Unigram vocabulary: [[piece, score], ...] into m->pieces / m->text. */
static cd_status read_vocab(cd_ctx *ctx, const char *path, cd_spm *m, const json_t *vocab) {
    const size_t n = json_array_size(vocab);
    if (!json_is_array(vocab) || n == 0) return bad(ctx, path, "model.vocab is not a non-empty array");
    if (n > MAX_PIECES) return bad(ctx, path, "model.vocab has too many pieces");
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(vocab, i), *s = json_array_get(e, 0), *sc = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(s) || !json_is_number(sc) ||
            !isfinite(json_number_value(sc)) || json_string_length(s) > MAX_PIECE_BYTES)
            return cd_set_error(ctx, CD_ERR_FORMAT,
                                "%s: tokenizer.json: model.vocab[%zu] is not [piece, finite score] (pieces up to %d "
                                "bytes)",
                                path, i, MAX_PIECE_BYTES);
        if (strlen(json_string_value(s)) != json_string_length(s))
            return cd_set_error(ctx, CD_ERR_FORMAT, "%s: tokenizer.json: model.vocab[%zu] contains a NUL", path, i);
        bytes += json_string_length(s);
    }
    m->pieces = calloc(n, sizeof *m->pieces);
    m->text = malloc(bytes + 1);
    if (!m->pieces || !m->text) return cd_set_error(ctx, CD_ERR_OOM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(vocab, i), *s = json_array_get(e, 0);
        spm_piece *p = &m->pieces[i];
        p->off = (uint32_t)m->text_len;
        p->len = (uint32_t)json_string_length(s);
        memcpy(m->text + m->text_len, json_string_value(s), p->len);
        m->text_len += p->len;
        p->score = json_number_value(json_array_get(e, 1));
        p->type = SPM_NORMAL;
    }
    m->n_pieces = n;
    return CD_OK;
}

/* added_tokens: each must name its own piece of the vocabulary (as T5's converter writes them),
 * be matched on the raw text (normalized false) without stripping or word rules. */
static cd_status read_added(cd_ctx *ctx, const char *path, cd_spm *m, const json_t *list) {
    if (!list || json_is_null(list)) return CD_OK;
    const size_t n = json_array_size(list);
    if (!json_is_array(list) || n > MAX_ADDED) return bad(ctx, path, "added_tokens is not an array (of up to 4096)");
    m->added = calloc(n ? n : 1, sizeof *m->added);
    if (!m->added) return cd_set_error(ctx, CD_ERR_OOM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(list, i), *id = json_object_get(a, "id"),
                     *content = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_integer(id) || !json_is_string(content))
            return cd_set_error(ctx, CD_ERR_FORMAT, "%s: tokenizer.json: added_tokens[%zu] lacks an id or content",
                                path, i);
        const json_int_t k = json_integer_value(id);
        const size_t len = json_string_length(content);
        if (k < 0 || (size_t)k >= m->n_pieces || m->pieces[k].len != len ||
            memcmp(m->text + m->pieces[k].off, json_string_value(content), len) != 0 || len == 0)
            return cd_set_error(ctx, CD_ERR_FORMAT,
                                "%s: tokenizer.json: added token \"%.40s\" (id %lld) is not that piece of the "
                                "vocabulary",
                                path, json_string_value(content), (long long)k);
        static const char *const off[] = {"lstrip", "rstrip", "single_word", "normalized"};
        for (int f = 0; f < 4; f++)
            if (json_is_true(json_object_get(a, off[f])))
                return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                                    "%s: tokenizer.json: added token \"%.40s\" has %s set (not supported)", path,
                                    json_string_value(content), off[f]);
        if ((int)k != m->unk_id) m->pieces[k].type = SPM_CONTROL; /* sentencepiece never produces them from text */
        m->added[m->n_added++] = (spm_added){m->pieces[k].off, (uint32_t)len, (int32_t)k};
        const uint8_t c = (uint8_t)json_string_value(content)[0];
        m->added_first[c >> 3] |= (uint8_t)(1u << (c & 7));
    }
    return CD_OK;
}

static int piece_id(const cd_spm *m, const char *s) {
    const size_t n = strlen(s);
    for (size_t i = 0; i < m->n_pieces; i++)
        if (m->pieces[i].len == n && memcmp(m->text + m->pieces[i].off, s, n) == 0) return (int)i;
    return -1;
}

static cd_status load_json(cd_ctx *ctx, const char *path, cd_spm *m) {
    struct stat st;
    if (stat(path, &st) != 0) return cd_set_error(ctx, CD_ERR_IO, "%s: cannot open", path);
    if (!S_ISREG(st.st_mode)) return cd_set_error(ctx, CD_ERR_IO, "%s: not a regular file", path);
    if ((long long)st.st_size > MAX_FILE)
        return cd_set_error(ctx, CD_ERR_FORMAT, "%s: larger than 64 MiB, not a tokenizer.json", path);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return cd_set_error(ctx, CD_ERR_FORMAT, "%s: not valid JSON (line %d: %s)", path, je.line, je.text);
    cd_status s = CD_OK;
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(root) || !json_is_object(model)) {
        s = bad(ctx, path, "no \"model\" object");
    } else if (!str_is(model, "type", "Unigram")) {
        const json_t *t = json_object_get(model, "type");
        s = cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: tokenizer.json: model type \"%.40s\" is not Unigram", path,
                         json_is_string(t) ? json_string_value(t) : "?");
    } else {
        s = read_vocab(ctx, path, m, json_object_get(model, "vocab"));
    }
    if (s == CD_OK) {
        const json_t *unk = json_object_get(model, "unk_id"), *bf = json_object_get(model, "byte_fallback");
        if (!json_is_integer(unk) || json_integer_value(unk) < 0 || (size_t)json_integer_value(unk) >= m->n_pieces)
            s = bad(ctx, path, "model.unk_id is missing or out of range");
        else if (bf && !json_is_boolean(bf) && !json_is_null(bf))
            s = bad(ctx, path, "model.byte_fallback is not a boolean");
        else {
            m->unk_id = (int)json_integer_value(unk);
            m->pieces[m->unk_id].type = SPM_UNKNOWN;
            m->byte_fallback = json_is_true(bf);
        }
    }
    if (s == CD_OK) s = read_added(ctx, path, m, json_object_get(root, "added_tokens"));
    if (s == CD_OK) s = read_normalizer(ctx, path, m, json_object_get(root, "normalizer"), 0);
    int meta = 0;
    if (s == CD_OK) {
        const json_t *p = json_object_get(root, "pre_tokenizer");
        s = json_is_object(p) ? read_pretok(ctx, path, m, p, 0, &meta) : CD_OK;
        if (s == CD_OK && !meta)
            s = cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                             "%s: tokenizer.json: no Metaspace pre-tokenizer (not a T5 "
                             "tokenizer)",
                             path);
    }
    if (s == CD_OK && m->byte_fallback) /* <0xXX> pieces: the bytes of unknown text */
        for (size_t i = 0; i < m->n_pieces; i++) {
            const char *t = m->text + m->pieces[i].off;
            if (m->pieces[i].len == 6 && !memcmp(t, "<0x", 3) && t[5] == '>' && m->pieces[i].type == SPM_NORMAL)
                m->pieces[i].type = SPM_BYTE;
        }
    json_decref(root);
    if (s != CD_OK) return s;
    /* sentencepiece's flags for T5 (spiece.model has them; tokenizer.json only implies them) */
    m->add_dummy_prefix = m->hf_prepend != SPM_PREPEND_NEVER;
    m->remove_extra_whitespaces = m->escape_whitespaces = 1;
    m->eos_id = piece_id(m, "</s>");
    m->pad_id = piece_id(m, "<pad>");
    m->bos_id = -1;
    m->from_json = 1;
    s = spm_build_index(ctx, m);
    return s == CD_OK ? CD_OK : with_path(ctx, s, path);
}

cd_status cd_spm_load_tokenizer_json(cd_ctx *ctx, const char *path, cd_spm **out) {
    *out = NULL;
    cd_spm *m = calloc(1, sizeof *m);
    if (!m) return cd_set_error(ctx, CD_ERR_OOM, "tokenizer.json: out of memory");
    cd_status s = load_json(ctx, path, m);
    if (s != CD_OK) {
        cd_spm_free(m);
        return s;
    }
    *out = m;
    return CD_OK;
}

cd_status cd_spm_set_semantics(cd_ctx *ctx, cd_spm *m, cd_spm_semantics sem) {
    if (sem != CD_SPM_SEMANTICS_SENTENCEPIECE && sem != CD_SPM_SEMANTICS_DIFFUSERS)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "T5 tokenizer: unknown semantics %d", (int)sem);
    if (sem == CD_SPM_SEMANTICS_DIFFUSERS && !m->from_json)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "T5 tokenizer: the diffusers semantics needs tokenizer.json (HF's pipeline is defined "
                            "there), not spiece.model");
    m->semantics = (int)sem;
    return CD_OK;
}

cd_spm_semantics cd_spm_semantics_of(const cd_spm *m) { return (cd_spm_semantics)m->semantics; }

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

cd_status cd_spm_load_dir(cd_ctx *ctx, const char *dir, cd_spm_semantics sem, cd_spm **out) {
    *out = NULL;
    char model[4096], json[4096];
    if (snprintf(model, sizeof model, "%s/spiece.model", dir) >= (int)sizeof model ||
        snprintf(json, sizeof json, "%s/tokenizer.json", dir) >= (int)sizeof json)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "T5 tokenizer: folder path too long");
    const int have_model = is_file(model), have_json = is_file(json);
    cd_status s;
    if (sem == CD_SPM_SEMANTICS_DIFFUSERS) {
        if (!have_json)
            return cd_set_error(ctx, CD_ERR_IO,
                                "%s: no tokenizer.json (the diffusers T5 semantics reads it; diffusers keeps it in "
                                "tokenizer_2/)",
                                dir);
        s = cd_spm_load_tokenizer_json(ctx, json, out);
    } else if (have_model) {
        s = cd_spm_load(ctx, model, out);
    } else if (have_json) {
        s = cd_spm_load_tokenizer_json(ctx, json, out);
    } else {
        return cd_set_error(ctx, CD_ERR_IO,
                            "%s: no T5 tokenizer (looked for spiece.model, then tokenizer.json; diffusers keeps them "
                            "in tokenizer_2/)",
                            dir);
    }
    if (s == CD_OK && (s = cd_spm_set_semantics(ctx, *out, sem)) != CD_OK) {
        cd_spm_free(*out);
        *out = NULL;
    }
    return s;
}
