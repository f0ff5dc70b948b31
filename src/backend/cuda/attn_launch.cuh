/* attn_launch.cuh — the host side that every attention kernel launch shares: the shipped dispatch
 * (attn_cuda.cu) and the kernel lab's versions (lab/attention/attn_lab.cu), so the lab validates
 * and times its kernels on exactly the parameters and grids the library uses. Private to those
 * two files. */
#ifndef CD_ATTN_LAUNCH_CUH
#define CD_ATTN_LAUNCH_CUH

#include "cuda_internal.h"
#include "attn_kparams.cuh"

/* Validates a call of cd_cuda_attention_bf16_ex (cuda.h; everything but the variant) and fills
 * the kernel parameters p (attn_cuda.cu). */
cd_status cd_cuda_attn_params(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q, const uint16_t *d_k,
                              const uint16_t *d_v, const uint16_t *d_ek, const uint16_t *d_ev, int64_t E, float *d_o,
                              float *d_lse, const cd_cuda_attn_opts *opts, cd_attn_kparams *p);

static inline cd_status cd_cuda_attn_launch_failed(cd_ctx *ctx, struct cd_cuda *cu, const char *what) {
    return cd_set_error(ctx, CD_ERR_INTERNAL, "cuda attention: launch of the %s kernel failed: %s", what,
                        cudaGetErrorString(cu->sticky));
}

/* One launch of a flash kernel with config C (BM, NT, SMEM) and QR x QC image tiles over NH heads
 * (grid: cd_attn_flash_grid). */
template <class C, int QR, int QC>
static cd_status cd_cuda_attn_flash(cd_ctx *ctx, void (*kern)(const cd_attn_kparams), cd_attn_kparams p, int NH) {
    struct cd_cuda *cu = cd_cuda_of(ctx);
    const long long ctas = cd_attn_flash_grid(p, C::BM, QR, QC);
    if (ctas > INT32_MAX)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "cuda attention: %lld query tiles exceed the grid limit",
                            (long long)ctas);
    if (ctas == 0) return CD_OK;
    if (C::SMEM > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM);
        if (e != cudaSuccess) {
            (void)cudaGetLastError(); /* not a launch error: do not let it reach the next check */
            return cd_set_error(ctx, CD_ERR_INTERNAL, "cuda attention: cannot allow %zu bytes of shared memory: %s",
                                (size_t)C::SMEM, cudaGetErrorString(e));
        }
    }
    kern<<<dim3((unsigned)ctas, (unsigned)NH), C::NT, C::SMEM, cu->stream>>>(p);
    return cd_cuda_launch_ok(cu) ? CD_OK : cd_cuda_attn_launch_failed(ctx, cu, "flash attention");
}

#endif
