/* patch.h — patch parallelism of the FLUX forward, internal side (patch.c): the per-model state
 * and the ops table whose attention exchanges halos (flux_model.c uses these). */
#ifndef CD_PATCH_H
#define CD_PATCH_H

#include "../ops/ops.h"
#include "comm.h"

typedef struct cd_patch cd_patch;

cd_status cd_patch_create(cd_ctx *ctx, cd_comm *comm, cd_text_attention mode, cd_patch **out);
void cd_patch_free(cd_patch *p);

/* The band split of an H-row grid for this run (rows aligned to `down` when down >= 2); fails with
 * a message when some rank would get no row. *y0, *y1: this rank's rows. */
cd_status cd_patch_split(cd_ctx *ctx, cd_patch *p, int H, int W, int radius, int down, int *y0,
                         int *y1);
/* The ops table to run the forward with (the CPU ops; attention exchanges halos). ctx must carry
 * p in ctx->patch while it runs. */
const cd_ops *cd_patch_ops(cd_patch *p);
cd_comm *cd_patch_comm(cd_patch *p);
/* Floats of CPU attention scratch the patch attention needs after cd_patch_split (reserve it before
 * the forward). */
size_t cd_patch_attn_scratch_floats(const cd_patch *p, int heads, int head_dim, int T, int radius,
                                    int down, int threads);
/* [P + 1] band starts of the last split (rank i: rows [band[i], band[i+1])). */
const int *cd_patch_bands(const cd_patch *p);

#endif
