/* cuda.h — the CUDA backend's C interface. Implemented by the .cu files beside it when the build
 * has nvcc (Makefile: CUDA=1), and by cuda_stub.c otherwise (every entry then fails with
 * CD_ERR_UNSUPPORTED saying the build has no CUDA support).
 * Pointers named d_* are device memory. All work is queued on the context's one stream; an error
 * of a queued kernel surfaces at the next cd_cuda_sync / cd_cuda_d2h. bf16 tensors are uint16_t
 * bit patterns (the upper half of an IEEE f32). */
#ifndef CD_CUDA_H
#define CD_CUDA_H

#include "../../util/internal.h"
#include "../../ops/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device, memory, stream (cuda_ctx.cu) ------------------------------------------------- */
int cd_cuda_built(void); /* 1 when this build has CUDA code */
/* Creates ctx's CUDA state on device 0 once (stream, cuBLASLt handle, timing events). Fails with
 * CD_ERR_UNSUPPORTED and a message naming the reason: the build has no CUDA, no device or driver
 * (with CUDA's own error text), or compute capability below 8.0. Later calls return at once. */
cd_status cd_cuda_init(cd_ctx *ctx);
void cd_cuda_release(cd_ctx *ctx); /* frees the state (cd_ctx_free calls it); NULL-safe */
/* "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)"; "" before a successful init. */
const char *cd_cuda_device_desc(const cd_ctx *ctx);
/* Device memory: failure is CD_ERR_OOM naming the bytes asked for and the bytes free. */
cd_status cd_cuda_alloc(cd_ctx *ctx, size_t bytes, void **d_p);
void cd_cuda_free(cd_ctx *ctx, void *d_p); /* NULL-safe */
cd_status cd_cuda_h2d(cd_ctx *ctx, void *d_dst, const void *src, size_t bytes);
cd_status cd_cuda_d2h(cd_ctx *ctx, void *dst, const void *d_src, size_t bytes); /* waits */
cd_status cd_cuda_d2d(cd_ctx *ctx, void *d_dst, const void *d_src, size_t bytes);
cd_status cd_cuda_sync(cd_ctx *ctx); /* waits for queued work; reports the first error */
/* Grow-only device scratch owned by ctx, 256-byte aligned (a model reserves its worst case at
 * load so that a forward never allocates). Ops use it from offset 0 for the duration of one op;
 * nothing persists in it between ops. NULL (with an error in ctx) on OOM. */
void *cd_cuda_scratch(cd_ctx *ctx, size_t bytes);
/* Device timing with events on the stream: start, then stop returns the seconds between. */
cd_status cd_cuda_timer_start(cd_ctx *ctx);
cd_status cd_cuda_timer_stop(cd_ctx *ctx, double *seconds);
/* Peak dense bf16 tensor FLOP/s of the device by its SM count, clock and architecture (for
 * reporting fractions of peak); 0 when unknown. */
double cd_cuda_peak_bf16(cd_ctx *ctx);

/* ---- conversions and elementwise kernels (ops_cuda.cu) -------------------------------------- */
void cd_cuda_f32_to_bf16(cd_ctx *ctx, const float *d_src, uint16_t *d_dst, size_t n);
void cd_cuda_bf16_to_f32(cd_ctx *ctx, const uint16_t *d_src, float *d_dst, size_t n);

/* The ops table (ops.h) on device pointers: activations f32 in device memory, linear weights BF16
 * (the transformer's) or F32 (the autoencoder's attention) in device memory (cd_weight.data is a
 * device pointer), biases/norm scales and conv weights f32 device arrays. */
const cd_ops *cd_ops_cuda(void);
/* Device scratch bytes the cuda linear needs for n rows of width `in` (bf16 copy of x). */
size_t cd_cuda_linear_scratch(size_t n, int in);
/* Device scratch bytes the cuda conv2d needs for d (conv_cuda.cu; 0: the direct kernel). */
size_t cd_cuda_conv2d_workspace_bytes(const cd_conv_desc *d);

/* ---- attention (attn_cuda.cu) --------------------------------------------------------------- */
/* head_dim values the kernels are built for (32, 64, 128). */
int cd_cuda_attention_supports(int head_dim);
/* Device scratch bytes cd_cuda_attention needs for d (bf16 q/k/v plus the extra keys). */
size_t cd_cuda_attention_scratch(const cd_attn_desc *d);
/* One attention layer with exactly cd_attention_forward's semantics, on device f32 buffers:
 * d_q, d_k, d_v, d_o [NH, N, HD]; d_sw [DF, DF] when d->down >= 2 (else ignored); d_lse [NH, N]
 * or NULL. Converts q/k/v to bf16 (scratch), builds the extra keys (text keys, then pooled keys
 * when down >= 2), and runs the kernels below. Validates d (cd_attn_validate) first. */
cd_status cd_cuda_attention(cd_ctx *ctx, const cd_attn_desc *d, const float *d_q, const float *d_k, const float *d_v,
                            const float *d_sw, float *d_o, float *d_lse);
/* The kernels alone, on bf16 inputs (benchmarks, the kernel lab):
 * q, k, v bf16 [NH, N, HD], N = T + H*W (text first, image row-major).
 * dense (d->radius == 0): every query sees all N keys.
 * CLEAR: text queries see all N keys; an image query sees the E extra keys d_ek/d_ev [NH, E, HD]
 *   (text keys, then pooled keys when down >= 2) plus the image keys of its open disc.
 * o f32 [NH, N, HD], lse f32 [NH, N] (natural log; may be NULL).
 * variant: 0 = the default kernel (its tile shape chosen by radius); 1, 2 force one of the two
 * shipped tile shapes (cd_cuda_attention_variant_name; CD_ERR_INVALID_ARG past them). The kernel
 * lab's other versions are built by the lab only (lab/attention/attn_lab.cu). */
cd_status cd_cuda_attention_bf16(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q, const uint16_t *d_k,
                                 const uint16_t *d_v, const uint16_t *d_ek, const uint16_t *d_ev, int64_t E, float *d_o,
                                 float *d_lse, int variant);
/* Options of a CLEAR call (radius >= 1) for patch parallelism (src/parallel/patch_cuda.cu):
 * text_q: 1 computes the text query rows [0, T), 0 leaves them unwritten (o and lse);
 * text_key0: the text rows see the keys [text_key0, N) only (0 <= text_key0 <= T; T drops the
 *   text keys: a rank other than 0 in exact text mode);
 * img_row0, img_row1: only the image queries of grid rows [img_row0, img_row1) are computed
 *   (clipped to [0, H]; img_row1 <= img_row0: none); their keys still span the whole grid.
 * With options, d_ek/d_ev (when given) may hold any E >= T extra keys, the T text keys first
 * (patch parallelism passes the whole image's pooled keys with a band's grid and d->down 0). */
typedef struct {
    int text_q;
    int text_key0;
    int img_row0, img_row1;
} cd_cuda_attn_opts;
/* cd_cuda_attention_bf16 with options (NULL: exactly cd_cuda_attention_bf16). */
cd_status cd_cuda_attention_bf16_ex(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q, const uint16_t *d_k,
                                    const uint16_t *d_v, const uint16_t *d_ek, const uint16_t *d_ev, int64_t E,
                                    float *d_o, float *d_lse, int variant, const cd_cuda_attn_opts *opts);
/* The table's time_attention (attn_time_cuda.cu): the kernels alone, timed with device events. */
cd_status cd_cuda_time_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, int reps, double *t);
/* Names of the variants for reports: NULL past the last one. */
const char *cd_cuda_attention_variant_name(int variant);

#ifdef __cplusplus
}
#endif

#endif
