/* ops_host_mem.h — memory members shared by the CPU ops tables (ops_host_mem.c). */
#ifndef CD_OPS_HOST_MEM_H
#define CD_OPS_HOST_MEM_H

#include "../../ops/ops.h"

cd_status cd_host_alloc(cd_ctx *ctx, size_t bytes, void **p);
void cd_host_free(cd_ctx *ctx, void *p);
cd_status cd_host_copy(cd_ctx *ctx, void *dst, const void *src, size_t bytes);
cd_status cd_host_sync(cd_ctx *ctx);
void cd_host_add(cd_ctx *ctx, float *x, const float *y, size_t n);
void cd_host_mul(cd_ctx *ctx, float *x, const float *y, size_t n);
void cd_host_scale(cd_ctx *ctx, float *x, size_t n, float s);
void cd_host_copy_rows(cd_ctx *ctx, float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows,
                       size_t cols);

/* Capabilities of the CPU tables: linear weights F32, BF16, F16, F8_E4M3 or F8_E5M2, every other
 * op and shape. */
cd_status cd_host_supports(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d);
/* Scratch of the CPU tables is ctx's work area (cd_ctx_work), shared by consecutive ops. */
cd_status cd_host_reserve(cd_ctx *ctx, size_t bytes);

/* The fast CPU table's attention timer (attn_time_cpu.c). */
cd_status cd_cpu_time_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, int reps, double *t);

/* The designated initializers of the members every CPU table shares. */
#define CD_HOST_MEM_OPS                                                                                               \
    .supports = cd_host_supports, .reserve = cd_host_reserve, .host_memory = 1, .alloc = cd_host_alloc,               \
    .free = cd_host_free, .upload = cd_host_copy, .download = cd_host_copy, .sync = cd_host_sync, .add = cd_host_add, \
    .mul = cd_host_mul, .scale = cd_host_scale, .copy_rows = cd_host_copy_rows

#endif
