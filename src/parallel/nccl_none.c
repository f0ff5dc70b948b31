/* nccl_none.c — devcomm.h and the GPU patch attention op in a build without NCCL (CUDA=0, or no
 * nccl.h under CUDA_HOME, or NCCL=0): every entry fails with CD_ERR_UNSUPPORTED saying why. */
#include "devcomm.h"
#include "patch.h"

#define NO_NCCL(ctx)                                                                                 \
    cd_set_error(ctx, CD_ERR_UNSUPPORTED,                                                            \
                 "this build of cleardit has no NCCL support, which patch parallelism on GPU ranks " \
                 "needs (built without CUDA, or nccl.h was not found under CUDA_HOME, or NCCL=0)")

int cd_devcomm_built(void) { return 0; }
cd_status cd_devcomm_setup(cd_ctx *ctx, cd_comm *c) {
    (void)c;
    return NO_NCCL(ctx);
}
cd_status cd_devcomm_exchange(cd_ctx *ctx, cd_comm *c, const cd_xfer *sends, int ns, const cd_xfer *recvs, int nr,
                              const char *what) {
    (void)c;
    (void)sends;
    (void)ns;
    (void)recvs;
    (void)nr;
    (void)what;
    return NO_NCCL(ctx);
}
cd_status cd_devcomm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *send, const size_t *counts, void *recv,
                                const char *what) {
    (void)c;
    (void)send;
    (void)counts;
    (void)recv;
    (void)what;
    return NO_NCCL(ctx);
}
cd_status cd_devcomm_wait(cd_ctx *ctx, cd_comm *c, const char *what) {
    (void)c;
    (void)what;
    return NO_NCCL(ctx);
}
cd_status cd_patch_cuda_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q,
                                  const float *k, const float *v, const float *sw, float *o, float *lse) {
    (void)self;
    (void)d;
    (void)q;
    (void)k;
    (void)v;
    (void)sw;
    (void)o;
    (void)lse;
    return NO_NCCL(ctx);
}
size_t cd_patch_cuda_scratch_bytes(const cd_patch *p, int heads, int head_dim, int T, int radius, int down) {
    (void)p;
    (void)heads;
    (void)head_dim;
    (void)T;
    (void)radius;
    (void)down;
    return 0;
}
