/* spm_model.c — reads a SentencePiece ModelProto (the protobuf wire format, parsed here: every
 * length and count is bounded by the bytes that hold it) into struct cd_spm. Fields read:
 * ModelProto.pieces (1), trainer_spec (2), normalizer_spec (3); others are skipped by wire type. */
#include "spm_internal.h"

#include "../util/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const uint8_t *p, *end;
} pb;

/* A varint of at most 10 bytes; 0 when truncated or longer. */
static int pb_varint(pb *b, uint64_t *v) {
    uint64_t r = 0;
    for (int i = 0; i < 10; i++) {
        if (b->p >= b->end) return 0;
        const uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

/* Reads a field key; then for wire type 2 the sub-buffer, for 0 the value, for 5 the 4 bytes
 * (as v), for 1 skips 8 bytes. 0 on malformed input. */
typedef struct {
    uint32_t field, wire;
    uint64_t v;
    pb sub;
} pb_field;

static int pb_next(pb *b, pb_field *f) {
    uint64_t key;
    if (!pb_varint(b, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) return 0;
    f->field = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    switch (f->wire) {
        case 0: return pb_varint(b, &f->v);
        case 1:
            if ((size_t)(b->end - b->p) < 8) return 0;
            b->p += 8;
            return 1;
        case 2: {
            uint64_t n;
            if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) return 0;
            f->sub.p = b->p;
            f->sub.end = b->p + n;
            b->p += n;
            return 1;
        }
        case 5:
            if ((size_t)(b->end - b->p) < 4) return 0;
            f->v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 | (uint64_t)b->p[2] << 16 | (uint64_t)b->p[3] << 24;
            b->p += 4;
            return 1;
        default: return 0; /* groups (3, 4) and reserved types: not in this format */
    }
}

/* protobuf int32 fields carry negative values as 64-bit two's complement */
static int pb_int32(uint64_t v, int *out) {
    const int64_t s = (int64_t)v;
    if (s < INT32_MIN || s > INT32_MAX) return 0;
    *out = (int)s;
    return 1;
}

static cd_status bad(cd_ctx *ctx, const char *what) {
    return cd_set_error(ctx, CD_ERR_FORMAT, "sentencepiece model: %s", what);
}

/* First pass over the pieces: count them and their bytes. */
static cd_status count_pieces(cd_ctx *ctx, pb b, size_t *n, size_t *bytes) {
    pb_field f;
    *n = *bytes = 0;
    while (b.p < b.end) {
        if (!pb_next(&b, &f)) return bad(ctx, "malformed protobuf (truncated or corrupt file)");
        if (f.field != 1) continue;
        if (f.wire != 2) return bad(ctx, "pieces field has the wrong wire type");
        (*n)++;
        *bytes += (size_t)(f.sub.end - f.sub.p); /* bounds the piece strings' total */
    }
    if (*n == 0) return bad(ctx, "no pieces");
    if (*n > INT32_MAX) return bad(ctx, "too many pieces");
    return CD_OK;
}

static cd_status read_piece(cd_ctx *ctx, cd_spm *m, pb b, size_t i) {
    spm_piece *pc = &m->pieces[i];
    pb_field f;
    int have = 0;
    pc->type = SPM_NORMAL;
    pc->score = 0.0f;
    while (b.p < b.end) {
        if (!pb_next(&b, &f)) return bad(ctx, "malformed piece");
        if (f.field == 1 && f.wire == 2) {
            const size_t n = (size_t)(f.sub.end - f.sub.p);
            memcpy(m->text + m->text_len, f.sub.p, n);
            pc->off = (uint32_t)m->text_len;
            pc->len = (uint32_t)n;
            m->text_len += n;
            have = 1;
        } else if (f.field == 2 && f.wire == 5) {
            const uint32_t u = (uint32_t)f.v;
            float sc;
            memcpy(&sc, &u, sizeof u);
            if (!isfinite(sc)) return bad(ctx, "piece score is not finite");
            pc->score = sc;
        } else if (f.field == 3 && f.wire == 0) {
            if (f.v < SPM_NORMAL || f.v > SPM_BYTE) return bad(ctx, "unknown piece type");
            pc->type = (int)f.v;
        }
    }
    if (!have) return bad(ctx, "a piece has no text");
    return CD_OK;
}

static cd_status read_trainer(cd_ctx *ctx, cd_spm *m, pb b) {
    pb_field f;
    while (b.p < b.end) {
        if (!pb_next(&b, &f)) return bad(ctx, "malformed trainer_spec");
        if (f.wire != 0) continue;
        int v;
        if (f.field == 3) { /* model_type: UNIGRAM = 1 */
            if (f.v != 1)
                return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "sentencepiece model: model_type %llu is not unigram",
                                    (unsigned long long)f.v);
        } else if (f.field == 24) { /* treat_whitespace_as_suffix */
            if (f.v)
                return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                                    "sentencepiece model: treat_whitespace_as_suffix is not supported");
        } else if (f.field == 35) {
            m->byte_fallback = f.v != 0;
        } else if (f.field >= 40 && f.field <= 43) {
            if (!pb_int32(f.v, &v)) return bad(ctx, "special id out of range");
            if (f.field == 40) m->unk_id = v;
            if (f.field == 41) m->bos_id = v;
            if (f.field == 42) m->eos_id = v;
            if (f.field == 43) m->pad_id = v;
        }
    }
    return CD_OK;
}

cd_status spm_read_charsmap(cd_ctx *ctx, cd_spm *m, const uint8_t *p, size_t n) {
    const pb s = {p, p + n};
    if (n == 0) return CD_OK;
    if (n < 4) return bad(ctx, "precompiled_charsmap is truncated");
    const uint32_t trie_bytes =
        (uint32_t)s.p[0] | (uint32_t)s.p[1] << 8 | (uint32_t)s.p[2] << 16 | (uint32_t)s.p[3] << 24;
    if (trie_bytes % 4 != 0 || trie_bytes == 0 || trie_bytes > n - 4)
        return bad(ctx, "precompiled_charsmap trie size is out of range");
    /* the double array is read as uint32 units: copied to aligned storage, converted from little endian */
    uint32_t *trie = malloc(trie_bytes);
    m->charsmap = malloc(n - 4 - trie_bytes + 1);
    if (!trie || !m->charsmap) {
        free(trie);
        return cd_set_error(ctx, CD_ERR_OOM, "sentencepiece model: out of memory");
    }
    for (size_t i = 0; i < trie_bytes / 4; i++) {
        const uint8_t *q = s.p + 4 + 4 * i;
        trie[i] = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    }
    m->trie = trie;
    m->trie_units = trie_bytes / 4;
    m->charsmap_len = n - 4 - trie_bytes;
    memcpy(m->charsmap, s.p + 4 + trie_bytes, m->charsmap_len);
    m->charsmap[m->charsmap_len] = 0; /* a replacement that runs off the end stops here */
    m->norm_strs = (const char *)m->charsmap;
    m->norm_strs_len = m->charsmap_len;
    return CD_OK;
}

static cd_status read_normalizer(cd_ctx *ctx, cd_spm *m, pb b) {
    pb_field f;
    while (b.p < b.end) {
        if (!pb_next(&b, &f)) return bad(ctx, "malformed normalizer_spec");
        if (f.field == 2 && f.wire == 2) {
            if (m->trie) return bad(ctx, "two precompiled_charsmaps");
            cd_status s = spm_read_charsmap(ctx, m, f.sub.p, (size_t)(f.sub.end - f.sub.p));
            if (s != CD_OK) return s;
        } else if (f.wire == 0 && f.field >= 3 && f.field <= 5) {
            if (f.field == 3) m->add_dummy_prefix = f.v != 0;
            if (f.field == 4) m->remove_extra_whitespaces = f.v != 0;
            if (f.field == 5) m->escape_whitespaces = f.v != 0;
        }
    }
    return CD_OK;
}

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

int spm_lookup(const cd_spm *m, const char *s, size_t len) {
    const size_t mask = m->hash_cap - 1;
    for (size_t i = hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        const uint32_t e = m->hash[i];
        if (!e) return -1;
        const spm_piece *p = &m->pieces[e - 1];
        if (p->len == len && memcmp(m->text + p->off, s, len) == 0) return (int)(e - 1);
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1; /* sentencepiece writes <0xXX> in upper case */
}

cd_status spm_build_index(cd_ctx *ctx, cd_spm *m) {
    const size_t n = m->n_pieces;
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    m->hash = calloc(cap, sizeof *m->hash);
    if (!m->hash) return cd_set_error(ctx, CD_ERR_OOM, "sentencepiece model: out of memory");
    m->hash_cap = cap;
    int first_normal = 1;
    for (int b = 0; b < 256; b++) m->byte_ids[b] = -1;
    for (size_t i = 0; i < n; i++) {
        const spm_piece *p = &m->pieces[i];
        const char *s = m->text + p->off;
        if (p->type == SPM_UNKNOWN && (size_t)m->unk_id != i) return bad(ctx, "an UNKNOWN piece is not at unk_id");
        if (p->type == SPM_BYTE) {
            const int hi = p->len == 6 ? hexval(s[3]) : -1, lo = p->len == 6 ? hexval(s[4]) : -1;
            if (hi < 0 || lo < 0 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return bad(ctx, "malformed byte piece");
            m->byte_ids[hi * 16 + lo] = (int)i;
        }
        if (i == 0 || p->score < m->min_score_all) m->min_score_all = p->score;
        if (p->len == 0) {
            if (p->type == SPM_NORMAL || p->type == SPM_USER_DEFINED) return bad(ctx, "an empty piece");
            continue;
        }
        /* every piece is indexed (HF's Unigram matches all of them); sentencepiece's encoder takes
         * only NORMAL and USER_DEFINED ones, which must be unique and win over the other types */
        const int cand = p->type == SPM_NORMAL || p->type == SPM_USER_DEFINED;
        const int was = spm_lookup(m, s, p->len);
        if (was >= 0) {
            const int was_cand = m->pieces[was].type == SPM_NORMAL || m->pieces[was].type == SPM_USER_DEFINED;
            if (cand && was_cand) return bad(ctx, "a piece occurs twice");
            if (cand) { /* replace the other type's slot */
                size_t j = hash_bytes(s, p->len) & (cap - 1);
                while (m->hash[j] != (uint32_t)was + 1) j = (j + 1) & (cap - 1);
                m->hash[j] = (uint32_t)(i + 1);
            }
        } else {
            size_t j = hash_bytes(s, p->len) & (cap - 1);
            while (m->hash[j]) j = (j + 1) & (cap - 1);
            m->hash[j] = (uint32_t)(i + 1);
        }
        if (p->len > m->max_piece_len) m->max_piece_len = p->len;
        if (p->type == SPM_USER_DEFINED) m->has_user_defined = 1;
        if (p->type == SPM_NORMAL) {
            const float sc = (float)p->score;
            if (first_normal || sc < m->min_score) m->min_score = sc;
            if (first_normal || sc > m->max_score) m->max_score = sc;
            first_normal = 0;
        }
    }
    if (m->unk_id < 0 || (size_t)m->unk_id >= n || m->pieces[m->unk_id].type != SPM_UNKNOWN)
        return bad(ctx, "unk_id does not name an UNKNOWN piece");
    if (m->eos_id >= 0 && (size_t)m->eos_id >= n) return bad(ctx, "eos_id is out of range");
    if (m->pad_id >= 0 && (size_t)m->pad_id >= n) return bad(ctx, "pad_id is out of range");
    if (m->bos_id >= 0 && (size_t)m->bos_id >= n) return bad(ctx, "bos_id is out of range");
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (m->byte_ids[b] < 0) return bad(ctx, "byte_fallback without all 256 byte pieces");
    return CD_OK;
}

cd_status cd_spm_load_mem(cd_ctx *ctx, const uint8_t *buf, size_t n, cd_spm **out) {
    *out = NULL;
    if (!buf && n) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "sentencepiece model: NULL buffer");
    cd_spm *m = calloc(1, sizeof *m);
    if (!m) return cd_set_error(ctx, CD_ERR_OOM, "sentencepiece model: out of memory");
    /* the protobuf defaults of the fields read here */
    m->unk_id = 0, m->bos_id = 1, m->eos_id = 2, m->pad_id = -1;
    m->add_dummy_prefix = m->remove_extra_whitespaces = m->escape_whitespaces = 1;
    pb all = {buf, buf + n};
    size_t np, bytes;
    cd_status s = count_pieces(ctx, all, &np, &bytes);
    if (s == CD_OK && bytes > UINT32_MAX) s = bad(ctx, "pieces are too large");
    if (s == CD_OK) {
        m->pieces = calloc(np, sizeof *m->pieces);
        m->text = malloc(bytes + 1);
        if (!m->pieces || !m->text) s = cd_set_error(ctx, CD_ERR_OOM, "sentencepiece model: out of memory");
    }
    pb b = all;
    pb_field f;
    int have_norm = 0;
    while (s == CD_OK && b.p < b.end) {
        if (!pb_next(&b, &f)) {
            s = bad(ctx, "malformed protobuf");
            break;
        }
        if (f.wire != 2) continue;
        if (f.field == 1)
            s = read_piece(ctx, m, f.sub, m->n_pieces++);
        else if (f.field == 2)
            s = read_trainer(ctx, m, f.sub);
        else if (f.field == 3) {
            s = have_norm ? bad(ctx, "two normalizer_specs") : read_normalizer(ctx, m, f.sub);
            have_norm = 1;
        }
    }
    if (s == CD_OK) s = spm_build_index(ctx, m);
    if (s != CD_OK) {
        cd_spm_free(m);
        return s;
    }
    *out = m;
    return CD_OK;
}

cd_status cd_spm_load(cd_ctx *ctx, const char *path, cd_spm **out) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return cd_set_error(ctx, CD_ERR_IO, "%s: cannot open", path);
    /* model files are a few MB (T5: 792 KB); the cap keeps a wrong path from reading a huge
     * file. Read in growing chunks: a pipe or special file has no size to ask for. */
    const size_t cap = (size_t)64 << 20;
    uint8_t *buf = NULL;
    size_t n = 0, have = 0;
    int err = 0, more = 0;
    for (;;) {
        if (n == have) {
            if (have == cap) {
                more = fgetc(fp) != EOF;
                break;
            }
            have = have ? 2 * have : (size_t)1 << 20;
            uint8_t *nb = realloc(buf, have);
            if (!nb) {
                free(buf);
                fclose(fp);
                return cd_set_error(ctx, CD_ERR_OOM, "%s: out of memory", path);
            }
            buf = nb;
        }
        const size_t got = fread(buf + n, 1, have - n, fp);
        n += got;
        if (got == 0) {
            err = ferror(fp);
            break;
        }
    }
    fclose(fp);
    cd_status s;
    if (err)
        s = cd_set_error(ctx, CD_ERR_IO, "%s: read error", path);
    else if (more)
        s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: larger than 64 MiB, not a sentencepiece model", path);
    else {
        s = cd_spm_load_mem(ctx, buf, n, out);
        if (s != CD_OK) {
            /* prefix the path to the loader's message */
            char msg[sizeof ctx->err];
            snprintf(msg, sizeof msg, "%s", ctx ? ctx->err : "");
            cd_set_error(ctx, s, "%s: %s", path, msg);
        }
    }
    free(buf);
    return s;
}

void cd_spm_free(cd_spm *m) {
    if (!m) return;
    free(m->pieces);
    free(m->text);
    free(m->hash);
    free((void *)m->trie);
    free(m->charsmap);
    free(m->added);
    free(m);
}

size_t cd_spm_vocab_size(const cd_spm *m) { return m->n_pieces; }
int cd_spm_unk_id(const cd_spm *m) { return m->unk_id; }
int cd_spm_eos_id(const cd_spm *m) { return m->eos_id; }
int cd_spm_pad_id(const cd_spm *m) { return m->pad_id; }
