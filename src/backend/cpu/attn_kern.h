/* attn_kern.h — the contract between the CPU attention driver (attn_cpu.c) and the per-ISA strip
 * kernels (attn_kern_impl.h compiled once per instruction set).
 *
 * Unit of work: a STRIP of up to CD_STRIP (16) consecutive query rows of one head. The driver lists
 * the strip's keys as SEGMENTS: contiguous rows of K/V (text keys, one disc run per row offset dy,
 * the pooled keys). The kernel streams them in chunks of up to CD_KC keys, with one online softmax
 * over all of them. Layout inside the kernel: queries are SIMD lanes, so scores are S[key][16 lanes]
 * and the running output is OT[head_dim][16 lanes]; softmax statistics are per-lane vectors. */
#ifndef CD_ATTN_KERN_H
#define CD_ATTN_KERN_H

#include <stddef.h>
#include <stdint.h>

#define CD_STRIP 16 /* queries per strip (= one AVX-512 vector of f32 lanes) */
#define CD_KC 256   /* keys per chunk: S chunk is 16 KiB, L1-resident */
#define CD_GROUP \
    8 /* at most this many strips of consecutive rows share each key chunk (up to
                         128 queries): K/V are streamed from memory once per job, not per strip */

#define CD_TILE_ROWS_MAX 4

typedef struct {
    const void *k, *v;            /* [n, HD] rows, dtype per `bf16` */
    int32_t n;                    /* number of key rows */
    int32_t bf16;                 /* 1: rows are bf16, 0: f32 */
    int32_t masked;               /* 1: part of a disc run: lane (ti, tj) sees key column c iff
                           |c - tj| <= hw[ti] (hw < 0: none) */
    int32_t off;                  /* column of the first key minus the tile's first column */
    int32_t hw[CD_TILE_ROWS_MAX]; /* disc half-width for each tile row at this key row */
} cd_seg;

/* The 16 lanes form a tile of `rows` x (16 / rows) queries of the image grid (rows = 1 for text
 * and dense strips, whose queries are consecutive tokens). */
typedef struct {
    const void *q; /* query of lane 0: [.., HD] rows, tile row i starts at q + i*q_rs*HD */
    int32_t q_bf16;
    int32_t dot_bf16; /* 1: bf16 inputs, even head_dim, CPU has AVX512_BF16: QK^T with vdpbf16ps */
    int32_t rows;     /* tile rows: 1, 2 or 4; lanes per row = 16 / rows */
    int32_t nrows;    /* valid tile rows (<= rows) */
    int32_t ncols;    /* valid columns per tile row (<= 16 / rows); rows == 1: valid
                           consecutive queries, up to 16 * CD_GROUP */
    int64_t q_rs;     /* tokens between tile rows (grid width) */
    int32_t hd;       /* head_dim */
    float qscale;     /* softmax scale * log2(e): scores are kept in base 2 */
    const cd_seg *segs;
    int32_t nseg;
    float *o;   /* output row of lane 0; same row stride as q */
    float *lse; /* natural-log LSE of lane 0 (tile rows q_rs apart), or NULL */
} cd_strip_job;

/* Per-thread scratch, 64-byte aligned, sized by cd_strip_scratch_floats(hd). */
size_t cd_strip_scratch_floats(int hd);

typedef void (*cd_strip_fn)(const cd_strip_job *job, float *scratch);

void cd_strip_generic(const cd_strip_job *job, float *scratch);
void cd_strip_avx2(const cd_strip_job *job, float *scratch);
void cd_strip_avx512(const cd_strip_job *job, float *scratch);

#endif
