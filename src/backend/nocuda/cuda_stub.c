/* cuda_stub.c — the CUDA backend's interface in a build without nvcc (Makefile: CUDA=0): every
 * entry fails with CD_ERR_UNSUPPORTED saying why, so `--device cuda` explains itself. */
#include "../cuda/cuda.h"

#define NO_CUDA(ctx)                                                                                       \
    cd_set_error(ctx, CD_ERR_UNSUPPORTED,                                                                  \
                 "this build of cleardit has no CUDA support (it was built without nvcc, or with CUDA=0; " \
                 "install the CUDA toolkit and rebuild, or make CUDA=1 NVCC=/path/to/nvcc)")

int cd_cuda_built(void) { return 0; }
cd_status cd_cuda_init(cd_ctx *ctx) { return NO_CUDA(ctx); }
void cd_cuda_release(cd_ctx *ctx) { (void)ctx; }
const char *cd_cuda_device_desc(const cd_ctx *ctx) {
    (void)ctx;
    return "";
}
cd_status cd_cuda_alloc(cd_ctx *ctx, size_t bytes, void **d_p) {
    (void)bytes;
    *d_p = NULL;
    return NO_CUDA(ctx);
}
void cd_cuda_free(cd_ctx *ctx, void *d_p) {
    (void)ctx;
    (void)d_p;
}
cd_status cd_cuda_h2d(cd_ctx *ctx, void *d, const void *s, size_t n) {
    (void)d;
    (void)s;
    (void)n;
    return NO_CUDA(ctx);
}
cd_status cd_cuda_d2h(cd_ctx *ctx, void *d, const void *s, size_t n) {
    (void)d;
    (void)s;
    (void)n;
    return NO_CUDA(ctx);
}
cd_status cd_cuda_d2d(cd_ctx *ctx, void *d, const void *s, size_t n) {
    (void)d;
    (void)s;
    (void)n;
    return NO_CUDA(ctx);
}
cd_status cd_cuda_sync(cd_ctx *ctx) { return NO_CUDA(ctx); }
void *cd_cuda_scratch(cd_ctx *ctx, size_t bytes) {
    (void)bytes;
    NO_CUDA(ctx);
    return NULL;
}
cd_status cd_cuda_timer_start(cd_ctx *ctx) { return NO_CUDA(ctx); }
cd_status cd_cuda_timer_stop(cd_ctx *ctx, double *s) {
    *s = 0;
    return NO_CUDA(ctx);
}
double cd_cuda_peak_bf16(cd_ctx *ctx) {
    (void)ctx;
    return 0;
}
void cd_cuda_f32_to_bf16(cd_ctx *ctx, const float *s, uint16_t *d, size_t n) {
    (void)ctx;
    (void)s;
    (void)d;
    (void)n;
}
void cd_cuda_bf16_to_f32(cd_ctx *ctx, const uint16_t *s, float *d, size_t n) {
    (void)ctx;
    (void)s;
    (void)d;
    (void)n;
}
const cd_ops *cd_ops_cuda(void) { return NULL; }
size_t cd_cuda_linear_scratch(size_t n, int in) {
    (void)n;
    (void)in;
    return 0;
}
size_t cd_cuda_conv2d_workspace_bytes(const cd_conv_desc *d) {
    (void)d;
    return 0;
}
int cd_cuda_attention_supports(int head_dim) {
    (void)head_dim;
    return 0;
}
size_t cd_cuda_attention_scratch(const cd_attn_desc *d) {
    (void)d;
    return 0;
}
cd_status cd_cuda_attention(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                            const float *sw, float *o, float *lse) {
    (void)d;
    (void)q;
    (void)k;
    (void)v;
    (void)sw;
    (void)o;
    (void)lse;
    return NO_CUDA(ctx);
}
cd_status cd_cuda_attention_bf16(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *q, const uint16_t *k,
                                 const uint16_t *v, const uint16_t *ek, const uint16_t *ev, int64_t E, float *o,
                                 float *lse, int variant) {
    (void)d;
    (void)q;
    (void)k;
    (void)v;
    (void)ek;
    (void)ev;
    (void)E;
    (void)o;
    (void)lse;
    (void)variant;
    return NO_CUDA(ctx);
}
const char *cd_cuda_attention_variant_name(int variant) {
    (void)variant;
    return NULL;
}
