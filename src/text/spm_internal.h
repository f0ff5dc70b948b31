/* spm_internal.h — the loaded SentencePiece model, shared by spm_model.c (protobuf reader) and
 * spm.c (normaliser and encoder). */
#ifndef CD_TEXT_SPM_INTERNAL_H
#define CD_TEXT_SPM_INTERNAL_H

#include "spm.h"

enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4, SPM_UNUSED = 5, SPM_BYTE = 6 };

typedef struct {
    uint32_t off, len; /* into cd_spm.text */
    float score;
    int type;
} spm_piece;

struct cd_spm {
    spm_piece *pieces;
    size_t n_pieces;
    char *text; /* every piece's bytes, back to back */
    size_t text_len;
    /* open-addressing hash of NORMAL and USER_DEFINED pieces: slot -> piece index + 1 (0 empty) */
    uint32_t *hash;
    size_t hash_cap; /* power of two */
    size_t max_piece_len;
    int has_user_defined;
    float min_score, max_score; /* over NORMAL pieces */
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
};

/* Looks up piece bytes; the piece index or -1. */
int spm_lookup(const cd_spm *m, const char *s, size_t len);

#endif
