/* attn.h — internal description of an attention call shared by the reference and fast kernels. */
#ifndef CD_ATTN_H
#define CD_ATTN_H

#include "../util/internal.h"

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

/* Backend entry points (inputs validated by the caller). */
cd_status cd_attn_reference_run(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q,
                                const void *k, const void *v, const float *sw, float *o,
                                float *lse);
/* Floats of ctx work area the fast CPU kernel needs for d with `threads` threads. */
size_t cd_attn_cpu_scratch_floats(const cd_attn_desc *d, int threads);
cd_status cd_attn_cpu_run(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q,
                          const void *k, const void *v, const float *sw, float *o, float *lse);

#endif
