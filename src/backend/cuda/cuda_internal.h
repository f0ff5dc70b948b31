/* cuda_internal.h — the CUDA backend's private state, for the .cu files only. */
#ifndef CD_CUDA_INTERNAL_H
#define CD_CUDA_INTERNAL_H

#include "cuda.h"
#include "../../ops/attn.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

struct cd_cuda {
    int device;
    cudaDeviceProp prop;
    char desc[160];      /* cd_cuda_device_desc */
    cudaStream_t stream; /* every kernel, copy and cuBLASLt call goes here */
    cublasLtHandle_t lt;
    void *lt_ws; /* cuBLASLt workspace */
    size_t lt_ws_bytes;
    void *scratch; /* cd_cuda_scratch (grow-only) */
    size_t scratch_bytes;
    cudaEvent_t ev_start, ev_stop;
    cudaError_t sticky; /* first asynchronous error seen by a launch check, reported at sync */
};

static inline struct cd_cuda *cd_cuda_of(cd_ctx *ctx) { return (struct cd_cuda *)ctx->dev_state; }

/* Records a launch error (cudaGetLastError) into cu->sticky; returns 0 if there was one. */
static inline int cd_cuda_launch_ok(struct cd_cuda *cu) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess && cu->sticky == cudaSuccess) cu->sticky = e;
    return e == cudaSuccess;
}

/* Turns a CUDA error into a status with a message naming `what`. */
static inline cd_status cd_cuda_err(cd_ctx *ctx, cudaError_t e, const char *what) {
    return cd_set_error(ctx, e == cudaErrorMemoryAllocation ? CD_ERR_OOM : CD_ERR_INTERNAL, "cuda: %s: %s", what,
                        cudaGetErrorString(e));
}

#endif
