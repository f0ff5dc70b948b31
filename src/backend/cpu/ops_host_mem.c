/* ops_host_mem.c — the memory and data-movement members of the CPU ops tables: the backend's
 * memory is the host's, so uploads and downloads are copies and sync has nothing to wait for. */
#include "ops_host_mem.h"

#include <stdlib.h>
#include <string.h>

cd_status cd_host_alloc(cd_ctx *ctx, size_t bytes, void **p) {
    *p = NULL;
    if (bytes == 0) return CD_OK;
    if (bytes > SIZE_MAX - 63 || !(*p = aligned_alloc(64, (bytes + 63) & ~(size_t)63)))
        return cd_set_error(ctx, CD_ERR_OOM, "cannot allocate %zu MiB of host memory", bytes >> 20);
    return CD_OK;
}

void cd_host_free(cd_ctx *ctx, void *p) {
    (void)ctx;
    free(p);
}

cd_status cd_host_copy(cd_ctx *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes && dst != src) memmove(dst, src, bytes);
    return CD_OK;
}

cd_status cd_host_sync(cd_ctx *ctx) {
    (void)ctx;
    return CD_OK;
}

void cd_host_add(cd_ctx *ctx, float *x, const float *y, size_t n) {
#pragma omp parallel for num_threads(ctx ? ctx->threads : 1) schedule(static) if (n >= ((size_t)1 << 16))
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void cd_host_mul(cd_ctx *ctx, float *x, const float *y, size_t n) {
#pragma omp parallel for num_threads(ctx ? ctx->threads : 1) schedule(static) if (n >= ((size_t)1 << 16))
    for (size_t i = 0; i < n; i++) x[i] *= y[i];
}

void cd_host_scale(cd_ctx *ctx, float *x, size_t n, float s) {
#pragma omp parallel for num_threads(ctx ? ctx->threads : 1) schedule(static) if (n >= ((size_t)1 << 16))
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void cd_host_copy_rows(cd_ctx *ctx, float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows,
                       size_t cols) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (rows * cols >= ((size_t)1 << 16))
    for (size_t r = 0; r < rows; r++) memcpy(dst + r * dst_ld, src + r * src_ld, cols * sizeof(float));
}

cd_status cd_host_supports(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d) {
    if (d->op < 0 || d->op >= CD_OP_COUNT)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: unknown op %d", self->name, (int)d->op);
    if (d->op == CD_OP_LINEAR && !cd_dtype_float_convertible(d->wdtype))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "%s: linear weights must be F32, BF16, F16, F8_E4M3 or F8_E5M2, not %s", self->name,
                            cd_dtype_name(d->wdtype));
    if (d->op == CD_OP_ATTENTION_BIAS &&
        (!d->abias || d->abias->heads < 1 || d->abias->n < 1 || d->abias->head_dim < 1))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: attention_bias needs heads, n and head_dim >= 1", self->name);
    if (d->op == CD_OP_ATTENTION && (!d->attn || cd_attn_validate(ctx, d->attn))) return CD_ERR_UNSUPPORTED;
    return CD_OK;
}

cd_status cd_host_reserve(cd_ctx *ctx, size_t bytes) {
    if (bytes == 0) return CD_OK;
    return cd_ctx_work(ctx, (bytes + sizeof(float) - 1) / sizeof(float)) ? CD_OK : CD_ERR_OOM;
}
