/* spm_internal.h — the loaded SentencePiece model, shared by spm_model.c (protobuf reader) and
 * spm.c (normaliser and encoder). */
#ifndef CD_TEXT_SPM_INTERNAL_H
#define CD_TEXT_SPM_INTERNAL_H

#include "spm.h"

enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4, SPM_UNUSED = 5, SPM_BYTE = 6 };

typedef struct {
    uint32_t off, len; /* into cd_spm.text */
    double score;      /* float in spiece.model; tokenizer.json's are read as double (HF's Unigram sums in f64) */
    int type;
} spm_piece;

/* A special token of tokenizer.json's added_tokens: matched in the raw prompt (diffusers semantics). */
typedef struct {
    uint32_t off, len; /* into cd_spm.text (the piece's bytes) */
    int32_t id;
} spm_added;

/* tokenizer.json's Metaspace prepend_scheme */
enum { SPM_PREPEND_NEVER = 0, SPM_PREPEND_FIRST = 1, SPM_PREPEND_ALWAYS = 2 };

struct cd_spm {
    spm_piece *pieces;
    size_t n_pieces;
    char *text; /* every piece's bytes, back to back */
    size_t text_len;
    /* open-addressing hash of every piece (a NORMAL or USER_DEFINED one wins over another type
     * with the same bytes): slot -> piece index + 1 (0 empty) */
    uint32_t *hash;
    size_t hash_cap; /* power of two */
    size_t max_piece_len;
    int has_user_defined;
    float min_score, max_score; /* over NORMAL pieces */
    double min_score_all;       /* over every piece: HF's Unigram scores unknowns below this */
    int unk_id, bos_id, eos_id, pad_id;
    int byte_fallback;
    int byte_ids[256]; /* <0xXX> piece ids (byte_fallback), -1 when absent */
    /* normalizer_spec */
    uint8_t *charsmap; /* precompiled_charsmap blob (NULL: identity) */
    size_t charsmap_len;
    const uint32_t *trie; /* the double array inside charsmap (aligned copy) */
    size_t trie_units;
    const char *norm_strs; /* NUL-terminated replacements after the trie */
    size_t norm_strs_len;
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    /* the diffusers semantics (spm_hf.c): tokenizer.json's pipeline */
    int semantics;    /* cd_spm_semantics */
    int from_json;    /* loaded from tokenizer.json: the diffusers semantics is available */
    spm_added *added; /* special tokens matched in the raw text, longest first at each position */
    size_t n_added;
    uint8_t added_first[32]; /* bitmap of the added tokens' first bytes */
    int hf_precompiled;      /* normalizer: the Precompiled charsmap per grapheme cluster */
    int hf_collapse_spaces;  /* normalizer: Replace(" {2,}", " ") after it */
    int hf_ws_split;         /* pre-tokenizer: WhitespaceSplit before Metaspace */
    int hf_prepend;          /* Metaspace prepend_scheme (SPM_PREPEND_*) */
    int hf_meta_split;       /* Metaspace split: a new word at every U+2581 */
};

/* Looks up piece bytes; the piece index or -1. */
int spm_lookup(const cd_spm *m, const char *s, size_t len);

/* spm_model.c, shared with the tokenizer.json loader (spm_json.c) */
cd_status spm_read_charsmap(cd_ctx *ctx, cd_spm *m, const uint8_t *p, size_t n);
cd_status spm_build_index(cd_ctx *ctx, cd_spm *m);

/* spm.c, shared with spm_hf.c */
size_t spm_utf8_len(const uint8_t *s, size_t n); /* a valid character's length, 0 when invalid */
cd_status spm_check_utf8(cd_ctx *ctx, const char *text, size_t len);
/* The longest (shortest: HF's Precompiled takes the first match) charsmap key prefixing s[0..n):
 * its length and the replacement's offset in *val; 0 when none. */
size_t spm_trie_match(const cd_spm *m, const uint8_t *s, size_t n, uint32_t *val, int shortest);
/* Viterbi over text t[0..tl) (normalised), ids appended to *out (grown as needed; *n ids in it,
 * *cap its room). hf: HF Unigram's rules (every piece a candidate, f64 path scores, unknowns
 * below min_score_all) instead of sentencepiece's. */
cd_status spm_viterbi(cd_ctx *ctx, const cd_spm *m, const char *t, size_t tl, int hf, int32_t **out, size_t *n,
                      size_t *cap);

/* spm_hf.c: the diffusers semantics' encode (no EOS) */
cd_status spm_hf_encode(cd_ctx *ctx, const cd_spm *m, const char *text, size_t len, int32_t **ids, size_t *n);

#endif
