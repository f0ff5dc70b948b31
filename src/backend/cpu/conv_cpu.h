/* conv_cpu.h — the fast CPU backend's autoencoder ops (conv_cpu.c), for its ops table. */
#ifndef CD_CONV_CPU_H
#define CD_CONV_CPU_H

#include "../../ops/ops.h"

cd_status cd_cpu_conv2d(cd_ctx *ctx, const cd_conv_desc *d, const float *x, const float *w, const float *b, int acc,
                        float *y);
void cd_cpu_group_norm(cd_ctx *ctx, const float *x, int C, size_t n, int G, const float *w, const float *b, float eps,
                       int silu, float *y);
void cd_cpu_transpose(cd_ctx *ctx, const float *x, size_t rows, size_t cols, float *y);
/* Scratch bytes cd_cpu_conv2d takes from the context's work area for shape d (0: none). */
size_t cd_cpu_conv2d_workspace_bytes(const cd_conv_desc *d);

#endif
