/* patch.h — patch parallelism of the FLUX forward, internal side (patch.c): the per-model state
 * and the ops table whose attention exchanges halos (flux_model.c uses these). */
#ifndef CD_PATCH_H
#define CD_PATCH_H

#include "../ops/ops.h"
#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cd_patch {
    cd_comm *comm;
    cd_text_attention mode;
    int P, me;
    cd_ops ops;         /* the decorated table: `base` with attention and its workspace replaced */
    const cd_ops *base; /* the backend the model computes on (cd_patch_decorate) */
    int H, W;           /* this run's grid */
    int *band;          /* [P + 1] */
    float *buf;         /* grow-only scratch of the CPU attention op */
    size_t cap;         /* floats */
    /* one layer's message lists, sized for P once (the attention ops fill them every layer) */
    struct cd_patch_rows_ *rows; /* [4P]: receives [0, 2P), sends [2P, 4P) */
    cd_xfer *xfers;              /* [4P] */
    size_t *counts;              /* [2P] */
} cd_patch;

/* Rows [a, b) of the grid exchanged with rank `peer` in one layer. */
typedef struct cd_patch_rows_ {
    int peer, a, b;
} cd_patch_rows;
/* Halo rows of rank j: [band[j] - above, band[j]) and [band[j+1], band[j+1] + below). */
void cd_patch_halo_of(const cd_patch *p, int j, int halo, int *above, int *below);
/* The messages of one layer (at most 2 (P - 1)): the rows this rank receives (recv = 1; from the
 * owners of its halo) or sends (recv = 0; its rows in the others' halos), in rank order. */
int cd_patch_msgs(const cd_patch *p, int halo, int recv, cd_patch_rows *m);

cd_status cd_patch_create(cd_ctx *ctx, cd_comm *comm, cd_text_attention mode, cd_patch **out);
void cd_patch_free(cd_patch *p);

/* The band split of an H-row grid for this run (rows aligned to `down` when down >= 2); fails with
 * a message when some rank would get no row. *y0, *y1: this rank's rows. */
cd_status cd_patch_split(cd_ctx *ctx, cd_patch *p, int H, int W, int radius, int down, int *y0, int *y1);
/* The decorator (docs/backends.md "Decorators"): the table to run the forward with is `base` with
 * an attention op that exchanges halos and a workspace that counts the halo scratch. Host-memory
 * backends exchange host buffers through the communicator (this file); device-memory backends
 * exchange device buffers over the device communicator (devcomm.h: NCCL; patch_cuda.cu), which is
 * set up here (collectively: every rank calls this) and fails with the reason when the build has
 * none. *out points into p (valid until cd_patch_free). */
cd_status cd_patch_decorate(cd_ctx *ctx, cd_patch *p, const cd_ops *base, const cd_ops **out);
/* The decorated table's patch state. */
cd_patch *cd_patch_of(const cd_ops *decorated);
cd_comm *cd_patch_comm(cd_patch *p);
/* Floats of CPU attention scratch the patch attention needs after cd_patch_split (reserve it before
 * the forward). */
size_t cd_patch_attn_scratch_floats(const cd_patch *p, int heads, int head_dim, int T, int radius, int down,
                                    int threads);
/* [P + 1] band starts of the last split (rank i: rows [band[i], band[i+1])). */
const int *cd_patch_bands(const cd_patch *p);

/* ---- GPU ranks (patch_cuda.cu in builds with CUDA and NCCL; nccl_none.c otherwise) ---- */
/* The patch attention op on device f32 buffers (the CUDA ops' layout), halos and text partials
 * over NCCL (devcomm.h); the same algorithm as the CPU op (patch.c). */
cd_status cd_patch_cuda_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q,
                                  const float *k, const float *v, const float *sw, float *o, float *lse);
/* Device scratch bytes (cd_cuda_scratch) that op needs after cd_patch_split (reserve it before the
 * forward); 0 in builds without it. */
size_t cd_patch_cuda_scratch_bytes(const cd_patch *p, int heads, int head_dim, int T, int radius, int down);

#ifdef __cplusplus
}
#endif

#endif
