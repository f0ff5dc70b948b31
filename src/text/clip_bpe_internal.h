/* clip_bpe_internal.h — the tokenizer's tables, shared by the loaders (clip_bpe_load.c) and the
 * encoder (clip_bpe.c). Library-private. */
#ifndef CD_CLIP_BPE_INTERNAL_H
#define CD_CLIP_BPE_INTERNAL_H

#include "clip_bpe.h"

typedef struct {
    int32_t a, b;      /* symbol ids of the pair; a = -1: empty slot */
    int32_t rank, out; /* merge priority (lower first) and the merged symbol's id */
} cd_clip_merge;

struct cd_clip_bpe {
    size_t n_vocab;
    int32_t bos, eos;
    int32_t byte_id[256];     /* id of the byte's symbol (byte-to-unicode) */
    int32_t byte_end_id[256]; /* id of the same symbol + "</w>" (a word's last byte) */
    cd_clip_merge *merges;    /* open addressing on (a, b) */
    size_t merge_mask;        /* table size - 1 (power of two) */
};

static inline size_t cd_clip_pair_hash(int32_t a, int32_t b) {
    return (size_t)cd_mix64(((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
}

/* CLIP's byte-to-unicode map: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. */
static inline void cd_clip_byte_cps(uint32_t cp[256]) {
    uint32_t next = 256;
    for (unsigned b = 0; b < 256; b++)
        cp[b] = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) ? b : next++;
}

#endif
