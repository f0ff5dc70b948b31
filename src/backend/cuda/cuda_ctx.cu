/* cuda_ctx.cu — the CUDA backend's device layer: the per-context state (device 0, one non-blocking
 * stream, a cuBLASLt handle and workspace, timing events), device memory, copies, the grow-only
 * scratch, the error reporting of queued work, and the device's peak bf16 rate.
 *
 * Error model: a failing runtime call is reported at once by the entry that made it; a failing
 * kernel launch is recorded in cu->sticky by cd_cuda_launch_ok (the ops return void), and an error
 * of queued work shows up when the stream is synchronized. cd_cuda_sync / cd_cuda_d2h /
 * cd_cuda_timer_stop report either. After a runtime call fails, its error is cleared from the
 * runtime's "last error" so that the next launch check does not blame a kernel for it. */
#include "cuda_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The cuBLASLt workspace: NVIDIA recommends 32 MiB for Hopper (4 MiB suffice before it). */
#define CD_LT_WS_BYTES ((size_t)32 << 20)

static const double kMiB = 1024.0 * 1024.0;

/* The state, or NULL with "not initialized" in ctx. */
static struct cd_cuda *need(cd_ctx *ctx) {
    if (ctx && ctx->dev_state) return cd_cuda_of(ctx);
    cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda: not initialized");
    return NULL;
}

/* A runtime call failed: clear it from the last-error slot, then report it. */
static cd_status fail(cd_ctx *ctx, cudaError_t e, const char *what) {
    (void)cudaGetLastError();
    return cd_cuda_err(ctx, e, what);
}

/* cudaMalloc of `bytes` (> 0); on failure *p = NULL and the error names the size and free memory. */
static cd_status dev_malloc(cd_ctx *ctx, size_t bytes, void **p) {
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e == cudaSuccess) return CD_OK;
    *p = NULL;
    (void)cudaGetLastError();
    if (e != cudaErrorMemoryAllocation) return cd_cuda_err(ctx, e, "cudaMalloc");
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        (void)cudaGetLastError();
        fr = tot = 0;
    }
    return cd_set_error(ctx, CD_ERR_OOM,
                        "cuda: cannot allocate %.1f MiB (%zu bytes) of device memory "
                        "(%.1f MiB free of %.1f MiB)",
                        bytes / kMiB, bytes, fr / kMiB, tot / kMiB);
}

/* The first error of queued work after a stream/event synchronization that returned `e`; the
 * launch-time error in cu->sticky wins since it happened first. Records `e` as sticky too (an
 * asynchronous kernel fault leaves the CUDA context unusable; every later call reports it). */
static cd_status queued_status(cd_ctx *ctx, struct cd_cuda *cu, cudaError_t e) {
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (cu->sticky == cudaSuccess) cu->sticky = e;
    }
    if (cu->sticky == cudaSuccess) return CD_OK;
    return cd_set_error(ctx, cu->sticky == cudaErrorMemoryAllocation ? CD_ERR_OOM : CD_ERR_INTERNAL,
                        "cuda: a kernel failed: %s", cudaGetErrorString(cu->sticky));
}

/* Frees whatever part of the state exists (init's failure path and release). */
static void destroy(struct cd_cuda *cu) {
    if (cu->stream) (void)cudaStreamSynchronize(cu->stream);
    if (cu->scratch) (void)cudaFree(cu->scratch);
    if (cu->lt_ws) (void)cudaFree(cu->lt_ws);
    if (cu->ev_start) (void)cudaEventDestroy(cu->ev_start);
    if (cu->ev_stop) (void)cudaEventDestroy(cu->ev_stop);
    if (cu->lt) (void)cublasLtDestroy(cu->lt);
    if (cu->stream) (void)cudaStreamDestroy(cu->stream);
    (void)cudaGetLastError();
    free(cu);
}

extern "C" int cd_cuda_built(void) { return 1; }

extern "C" cd_status cd_cuda_init(cd_ctx *ctx) {
    if (!ctx) return CD_ERR_INVALID_ARG;
    if (ctx->dev_state) return CD_OK;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count <= 0) {
        (void)cudaGetLastError();
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "no usable CUDA device: %s",
                            e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none");
    }
    struct cd_cuda *cu = (struct cd_cuda *)calloc(1, sizeof *cu);
    if (!cu) return cd_set_error(ctx, CD_ERR_OOM, "cuda: out of host memory");
    cu->device = 0;
    cu->sticky = cudaSuccess;
    cd_status s = CD_OK;
    cublasStatus_t bs;
    if ((e = cudaSetDevice(cu->device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&cu->prop, cu->device)) != cudaSuccess) {
        (void)cudaGetLastError();
        s = cd_set_error(ctx, CD_ERR_UNSUPPORTED, "no usable CUDA device: %s", cudaGetErrorString(e));
        goto fail;
    }
    if (cu->prop.major < 8) {
        s = cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                         "CUDA device 0 (%s) has compute capability %d.%d; cleardit needs 8.0 "
                         "(Ampere) or newer",
                         cu->prop.name, cu->prop.major, cu->prop.minor);
        goto fail;
    }
    if ((e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        s = fail(ctx, e, "cannot create a stream");
        goto fail;
    }
    if ((bs = cublasLtCreate(&cu->lt)) != CUBLAS_STATUS_SUCCESS) {
        cu->lt = NULL;
        s = cd_set_error(ctx, CD_ERR_INTERNAL, "cuda: cublasLtCreate failed (status %d)", (int)bs);
        goto fail;
    }
    if ((s = dev_malloc(ctx, CD_LT_WS_BYTES, &cu->lt_ws)) != CD_OK) goto fail;
    cu->lt_ws_bytes = CD_LT_WS_BYTES;
    if ((e = cudaEventCreate(&cu->ev_start)) != cudaSuccess || (e = cudaEventCreate(&cu->ev_stop)) != cudaSuccess) {
        s = fail(ctx, e, "cannot create events");
        goto fail;
    }
    snprintf(cu->desc, sizeof cu->desc, "%s (sm_%d%d, %d SMs, %.1f GiB)", cu->prop.name, cu->prop.major, cu->prop.minor,
             cu->prop.multiProcessorCount, cu->prop.totalGlobalMem / (1024.0 * kMiB));
    ctx->dev_state = cu;
    ctx->release_device = cd_cuda_release; /* cd_ctx_free releases the device state */
    return CD_OK;
fail:
    destroy(cu);
    ctx->dev_state = NULL;
    return s;
}

extern "C" void cd_cuda_release(cd_ctx *ctx) {
    if (!ctx || !ctx->dev_state) return;
    destroy(cd_cuda_of(ctx));
    ctx->dev_state = NULL;
}

extern "C" const char *cd_cuda_device_desc(const cd_ctx *ctx) {
    return ctx && ctx->dev_state ? ((const struct cd_cuda *)ctx->dev_state)->desc : "";
}

extern "C" cd_status cd_cuda_alloc(cd_ctx *ctx, size_t bytes, void **d_p) {
    if (!d_p) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda: alloc without a result pointer");
    *d_p = NULL;
    if (!need(ctx)) return CD_ERR_INVALID_ARG;
    if (bytes == 0) return CD_OK;
    return dev_malloc(ctx, bytes, d_p);
}

/* Frees even after cd_cuda_release (the runtime outlives our state), so that buffers freed late
 * do not leak. cudaFree waits for the device; its error (a fault of earlier work) surfaces at
 * the next sync. */
extern "C" void cd_cuda_free(cd_ctx *ctx, void *d_p) {
    (void)ctx;
    if (!d_p) return;
    if (cudaFree(d_p) != cudaSuccess) (void)cudaGetLastError();
}

static cd_status copy(cd_ctx *ctx, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what) {
    struct cd_cuda *cu = need(ctx);
    if (!cu) return CD_ERR_INVALID_ARG;
    if (bytes == 0) return CD_OK;
    if (!dst || !src) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda: %s of NULL", what);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, cu->stream);
    return e == cudaSuccess ? CD_OK : fail(ctx, e, what);
}

/* From pageable host memory the copy returns once the source has been staged, so the caller may
 * reuse `src` at once. */
extern "C" cd_status cd_cuda_h2d(cd_ctx *ctx, void *d_dst, const void *src, size_t bytes) {
    return copy(ctx, d_dst, src, bytes, cudaMemcpyHostToDevice, "host-to-device copy");
}

extern "C" cd_status cd_cuda_d2d(cd_ctx *ctx, void *d_dst, const void *d_src, size_t bytes) {
    return copy(ctx, d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, "device-to-device copy");
}

extern "C" cd_status cd_cuda_d2h(cd_ctx *ctx, void *dst, const void *d_src, size_t bytes) {
    struct cd_cuda *cu = need(ctx);
    if (!cu) return CD_ERR_INVALID_ARG;
    if (bytes > 0) {
        cd_status s = copy(ctx, dst, d_src, bytes, cudaMemcpyDeviceToHost, "device-to-host copy");
        if (s != CD_OK) {
            /* A sticky fault of earlier work makes the copy fail too: name the kernel fault. */
            if (cu->sticky != cudaSuccess) return queued_status(ctx, cu, cudaSuccess);
            return s;
        }
    }
    return queued_status(ctx, cu, cudaStreamSynchronize(cu->stream));
}

extern "C" cd_status cd_cuda_sync(cd_ctx *ctx) {
    struct cd_cuda *cu = need(ctx);
    if (!cu) return CD_ERR_INVALID_ARG;
    return queued_status(ctx, cu, cudaStreamSynchronize(cu->stream));
}

extern "C" void *cd_cuda_scratch(cd_ctx *ctx, size_t bytes) {
    struct cd_cuda *cu = need(ctx);
    if (!cu) return NULL;
    if (bytes > SIZE_MAX - 255) {
        cd_set_error(ctx, CD_ERR_OOM, "cuda: scratch of %zu bytes is too large", bytes);
        return NULL;
    }
    size_t want = (bytes + 255) & ~(size_t)255;
    if (want == 0) want = 256; /* a valid pointer even for an empty request */
    if (cu->scratch && want <= cu->scratch_bytes) return cu->scratch;
    /* Queued kernels may still use the old block: wait for them before freeing it. */
    cudaError_t e = cudaStreamSynchronize(cu->stream);
    if (e != cudaSuccess) {
        queued_status(ctx, cu, e);
        return NULL;
    }
    if (cu->scratch) (void)cudaFree(cu->scratch);
    cu->scratch = NULL;
    cu->scratch_bytes = 0;
    void *p = NULL;
    if (dev_malloc(ctx, want, &p) != CD_OK) return NULL;
    cu->scratch = p;
    cu->scratch_bytes = want;
    return p;
}

extern "C" cd_status cd_cuda_timer_start(cd_ctx *ctx) {
    struct cd_cuda *cu = need(ctx);
    if (!cu) return CD_ERR_INVALID_ARG;
    cudaError_t e = cudaEventRecord(cu->ev_start, cu->stream);
    return e == cudaSuccess ? CD_OK : fail(ctx, e, "cudaEventRecord");
}

extern "C" cd_status cd_cuda_timer_stop(cd_ctx *ctx, double *seconds) {
    if (seconds) *seconds = 0.0;
    struct cd_cuda *cu = need(ctx);
    if (!cu) return CD_ERR_INVALID_ARG;
    cudaError_t e = cudaEventRecord(cu->ev_stop, cu->stream);
    if (e != cudaSuccess) return fail(ctx, e, "cudaEventRecord");
    cd_status s = queued_status(ctx, cu, cudaEventSynchronize(cu->ev_stop));
    if (s != CD_OK) return s;
    float ms = 0.0f;
    if ((e = cudaEventElapsedTime(&ms, cu->ev_start, cu->ev_stop)) != cudaSuccess)
        return fail(ctx, e, "cudaEventElapsedTime (was the timer started?)");
    if (seconds) *seconds = ms * 1e-3;
    return CD_OK;
}

extern "C" double cd_cuda_peak_bf16(cd_ctx *ctx) {
    if (!ctx || !ctx->dev_state) return 0.0;
    struct cd_cuda *cu = cd_cuda_of(ctx);
    /* Dense bf16 tensor-core FLOP per clock per SM: A100 (8.0) 1024 FMA = 2048 FLOP; H100/H200
     * (9.0) 4096; the consumer Ampere/Ada parts (8.6, 8.9) 1024 with f32 accumulation. */
    double per_sm;
    const int cc = cu->prop.major * 10 + cu->prop.minor;
    if (cc == 90)
        per_sm = 4096.0;
    else if (cc == 80)
        per_sm = 2048.0;
    else if (cc == 86 || cc == 89)
        per_sm = 1024.0;
    else
        return 0.0;
    int khz = 0; /* cudaDeviceProp.clockRate is gone in CUDA 13; the attribute stays */
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, cu->device) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0.0;
    }
    return (double)cu->prop.multiProcessorCount * (double)khz * 1e3 * per_sm;
}
