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

#define CD_STRIP 16   /* queries per strip (= one AVX-512 vector of f32 lanes) */
#define CD_KC 256     /* keys per chunk: S chunk is 16 KiB, L1-resident */

typedef struct {
    const void *k, *v;  /* [n, HD] rows, dtype per `bf16` */
    int32_t n;          /* number of key rows */
    int32_t bf16;       /* 1: rows are bf16, 0: f32 */
    int32_t masked;     /* 1: disc run, lanes outside |kx - qx| <= hw are masked */
    int32_t hw;         /* disc half-width of this row offset */
    int32_t off;        /* column of the first key minus the column of lane 0 */
} cd_seg;

typedef struct {
    const void *q;      /* [nq, HD] query rows (dtype per q_bf16) */
    int32_t q_bf16;
    int32_t nq;         /* valid lanes, 1..16 */
    int32_t hd;         /* head_dim */
    float qscale;       /* softmax scale * log2(e): scores are kept in base 2 */
    const cd_seg *segs;
    int32_t nseg;
    float *o;           /* [nq, HD] output rows */
    float *lse;         /* [nq] natural-log LSE, or NULL */
} cd_strip_job;

/* Per-thread scratch, 64-byte aligned, sized by cd_strip_scratch_floats(hd). */
size_t cd_strip_scratch_floats(int hd);

typedef void (*cd_strip_fn)(const cd_strip_job *job, float *scratch);

void cd_strip_generic(const cd_strip_job *job, float *scratch);
void cd_strip_avx2(const cd_strip_job *job, float *scratch);
void cd_strip_avx512(const cd_strip_job *job, float *scratch);

#endif
