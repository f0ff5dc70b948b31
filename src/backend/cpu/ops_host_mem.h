/* ops_host_mem.h — memory members shared by the CPU ops tables (ops_host_mem.c). */
#ifndef CD_OPS_HOST_MEM_H
#define CD_OPS_HOST_MEM_H

#include "../../ops/ops.h"

cd_status cd_host_alloc(cd_ctx *ctx, size_t bytes, void **p);
void cd_host_free(cd_ctx *ctx, void *p);
cd_status cd_host_copy(cd_ctx *ctx, void *dst, const void *src, size_t bytes);
cd_status cd_host_sync(cd_ctx *ctx);
void cd_host_add(cd_ctx *ctx, float *x, const float *y, size_t n);
void cd_host_copy_rows(cd_ctx *ctx, float *dst, size_t dst_ld, const float *src, size_t src_ld,
                       size_t rows, size_t cols);

/* The initializer of those members, after `attention` in a cd_ops literal. */
#define CD_HOST_MEM_OPS \
    1, cd_host_alloc, cd_host_free, cd_host_copy, cd_host_copy, cd_host_sync, cd_host_add, \
    cd_host_copy_rows

#endif
