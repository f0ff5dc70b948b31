/* attn.h — internal description of an attention call shared by the reference and fast kernels. */
#ifndef CD_ATTN_H
#define CD_ATTN_H

#include "../util/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest dx >= 0 with dx^2 + dy^2 < r^2 (the open disc's half-width on row offset dy), or -1
 * when row offset dy holds no key (|dy| >= r). Equals ceil(sqrt(r^2 - dy^2)) - 1. */
int cd_disc_halfwidth(int64_t r, int64_t dy);

/* A radius that covers the whole H x W grid is equivalent to any larger one; kernels use this
 * clamped value so that huge radii cost nothing extra and never overflow. */
int32_t cd_attn_eff_radius(const cd_attn_desc *d);

/* Resolved softmax scale. */
static inline float cd_attn_scale(const cd_attn_desc *d) {
    return d->scale != 0.0f ? d->scale : 1.0f / __builtin_sqrtf((float)d->head_dim);
}
static inline int cd_attn_pooled(const cd_attn_desc *d) { return d->radius > 0 && d->down >= 2; }
static inline size_t cd_attn_tokens(const cd_attn_desc *d) {
    return (size_t)d->text_len + (size_t)d->grid_h * (size_t)d->grid_w;
}

/* n random bf16 values in [-1, 1) from a counter-based stream (benchmark inputs). */
void cd_attn_fill_bf16(uint16_t *p, size_t n, uint64_t seed);

/* Backend entry points (inputs validated by the caller). */
cd_status cd_attn_reference_run(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                                const void *v, const float *sw, float *o, float *lse);
/* Floats of ctx work area the fast CPU kernel needs for d with `threads` threads. */
size_t cd_attn_cpu_scratch_floats(const cd_attn_desc *d, int threads);
cd_status cd_attn_cpu_run(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k, const void *v,
                          const float *sw, float *o, float *lse);

/* Patch parallelism's variants of the fast CPU kernel (parallel/patch.c). */
typedef struct {
    int skip_text_queries;  /* CLEAR: text query rows are not computed (o/lse left untouched) */
    int img_row0, img_row1; /* CLEAR: image query rows computed, [row0, row1); row1 0 = all */
    const float *pk, *pv;   /* pooled keys/values [heads][np][HD] f32 from the caller (NULL: pooled
                                from this grid) */
    size_t np;
} cd_attn_cpu_opts;
cd_status cd_attn_cpu_run_ex(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                             const void *v, const float *sw, float *o, float *lse, const cd_attn_cpu_opts *opt);
/* The text queries [0, T) over a chosen key set: the T text keys when with_text, then the image
 * keys of grid rows [ky0, ky1). o_t [heads][T][HD], lse_t [heads][T] (natural log). Scratch from
 * ctx's work area (per-thread strip scratch). */
cd_status cd_attn_cpu_text_partial(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                                   const void *v, int with_text, int ky0, int ky1, float *o_t, float *lse_t);

#ifdef __cplusplus
}
#endif

#endif
