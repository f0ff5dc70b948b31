/* gemm_cuda.cu — the linear op on the GPU: y [n, out] = x [n, in] . W^T + b with cuBLASLt.
 *
 * x (f32) is converted to bf16 in the context's scratch, then one cublasLtMatmul with bf16 A/B,
 * f32 C/D, f32 accumulation (CUBLAS_COMPUTE_32F) and f32 alpha/beta, the bias added by the
 * epilogue. F32 weights (the autoencoder's attention) take x as it is: A/B f32, same call. cuBLASLt is column-major, so every row-major matrix is read as its transpose:
 *   A = W: row-major [out, in] = column-major in x out (ld in), used transposed: op(A) is out x in;
 *   B = x: row-major [n, in]   = column-major in x n   (ld in), not transposed;
 *   D = y: row-major [n, out]  = column-major out x n  (ld out) = op(A) . B, m = out, k = in.
 * The bias has one value per row of D (out), broadcast over its columns (tokens), which is what
 * CUBLASLT_EPILOGUE_BIAS does; its element type defaults to D's (f32 here: cublasLt.h,
 * CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE; the exceptions are integer and fp8 kernels only).
 *
 * Descriptors are made per call (tens of microseconds against milliseconds of GEMM): struct
 * cd_cuda has no room for a cache and the library keeps no globals. If the heuristic offers no
 * algorithm with the bias epilogue, the product runs plain and a small kernel adds the bias. */
#include "cuda_internal.h"

#include <stdint.h>

/* Largest power of two (<= 256) dividing the address: the heuristic otherwise assumes 256-byte
 * aligned matrices and may pick a kernel that faults on a weight or output at an odd offset. */
static uint32_t align_of(const void *p) {
    const uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1)) != 0) al >>= 1;
    return al;
}

extern "C" size_t cd_cuda_linear_scratch(size_t n, int in) {
    size_t e;
    if (in <= 0) return 0;
    if (!cd_mul_ok(n, (size_t)in, &e) || !cd_mul_ok(e, sizeof(uint16_t), &e) || e > SIZE_MAX - 255)
        return SIZE_MAX; /* cannot be reserved: the allocation then fails and says so */
    return (e + 255) & ~(size_t)255;
}

/* y [n, out] += b [out] (the fallback when the epilogue has no algorithm). */
static __global__ void k_add_bias(float *y, const float *b, size_t n, int out) {
    for (size_t r = blockIdx.x; r < n; r += gridDim.x) {
        float *yr = y + r * (size_t)out;
        for (int o = threadIdx.x; o < out; o += blockDim.x) yr[o] += b[o];
    }
}

/* The cuBLASLt objects of one call; released together. */
struct lt_call {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulPreference_t pref;
};

static void lt_release(lt_call *c) {
    if (c->pref) cublasLtMatmulPreferenceDestroy(c->pref);
    if (c->ld) cublasLtMatrixLayoutDestroy(c->ld);
    if (c->lb) cublasLtMatrixLayoutDestroy(c->lb);
    if (c->la) cublasLtMatrixLayoutDestroy(c->la);
    if (c->op) cublasLtMatmulDescDestroy(c->op);
}

/* Sets up the descriptors for the shapes and pointers of the call (bias: NULL for no epilogue). */
static cublasStatus_t lt_setup(lt_call *c, const struct cd_cuda *cu, size_t n, int in, int out, const void *w,
                               const void *xb, const float *bias, const float *y, cudaDataType_t abt) {
    cublasStatus_t s;
    const int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    if ((s = cublasLtMatmulDescCreate(&c->op, CUBLAS_COMPUTE_32F, CUDA_R_32F)) != CUBLAS_STATUS_SUCCESS) return s;
    if ((s = cublasLtMatmulDescSetAttribute(c->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) ||
        (s = cublasLtMatmulDescSetAttribute(c->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)))
        return s;
    if (bias) {
        const uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        const void *bp = bias; /* set before the heuristic: it reads the pointer's alignment */
        if ((s = cublasLtMatmulDescSetAttribute(c->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi)) ||
            (s = cublasLtMatmulDescSetAttribute(c->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp)))
            return s;
    }
    /* Layouts describe the matrices as stored (column-major, before op()): see the top. */
    if ((s = cublasLtMatrixLayoutCreate(&c->la, abt, (uint64_t)in, (uint64_t)out, in)) ||
        (s = cublasLtMatrixLayoutCreate(&c->lb, abt, (uint64_t)in, (uint64_t)n, in)) ||
        (s = cublasLtMatrixLayoutCreate(&c->ld, CUDA_R_32F, (uint64_t)out, (uint64_t)n, out)))
        return s;
    const uint64_t ws = cu->lt_ws_bytes;
    const uint32_t aa = align_of(w), ab = align_of(xb), ay = align_of(y);
    if ((s = cublasLtMatmulPreferenceCreate(&c->pref)) ||
        (s = cublasLtMatmulPreferenceSetAttribute(c->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws)) ||
        (s = cublasLtMatmulPreferenceSetAttribute(c->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa,
                                                  sizeof aa)) ||
        (s = cublasLtMatmulPreferenceSetAttribute(c->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab,
                                                  sizeof ab)) ||
        (s = cublasLtMatmulPreferenceSetAttribute(c->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay,
                                                  sizeof ay)) ||
        (s = cublasLtMatmulPreferenceSetAttribute(c->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, sizeof ay)))
        return s;
    return CUBLAS_STATUS_SUCCESS;
}

/* The best algorithm the heuristic offers for the call, or 0 when it offers none. */
static int lt_pick(const struct cd_cuda *cu, const lt_call *c, cublasLtMatmulAlgo_t *algo) {
    cublasLtMatmulHeuristicResult_t r;
    int got = 0;
    memset(&r, 0, sizeof r);
    if (cublasLtMatmulAlgoGetHeuristic(cu->lt, c->op, c->la, c->lb, c->ld, c->ld, c->pref, 1, &r, &got) !=
            CUBLAS_STATUS_SUCCESS ||
        got < 1 || r.state != CUBLAS_STATUS_SUCCESS)
        return 0;
    *algo = r.algo;
    return 1;
}

/* The ops table's linear (ops_cuda.cu declares it; C++ linkage, see there). */
cd_status cd_cuda_linear_op(cd_ctx *ctx, const float *x, size_t n, const cd_weight *w, const float *b, float *y) {
    if (!ctx || !ctx->dev_state) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda: not initialized");
    struct cd_cuda *cu = cd_cuda_of(ctx);
    if (!w || !w->data) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda linear: no weight");
    if (w->dtype != CD_DTYPE_BF16 && w->dtype != CD_DTYPE_F32)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "cuda linear: weights must be BF16 or F32 on the device");
    const cudaDataType_t ab = w->dtype == CD_DTYPE_F32 ? CUDA_R_32F : CUDA_R_16BF;
    const int in = w->in, out = w->out;
    if (in <= 0 || out <= 0) return cd_set_error(ctx, CD_ERR_SHAPE, "cuda linear: weight shape [%d, %d]", out, in);
    if (n == 0) return CD_OK;
    size_t nin, nout;
    if (!cd_mul_ok(n, (size_t)in, &nin) || !cd_mul_ok(n, (size_t)out, &nout))
        return cd_set_error(ctx, CD_ERR_SHAPE, "cuda linear: n=%zu rows overflow", n);

    const void *xb = x;
    if (ab == CUDA_R_16BF) {
        uint16_t *xh = (uint16_t *)cd_cuda_scratch(ctx, cd_cuda_linear_scratch(n, in));
        if (!xh) return CD_ERR_OOM; /* the scratch set the message */
        cd_cuda_f32_to_bf16(ctx, x, xh, nin);
        xb = xh;
    }

    lt_call c;
    memset(&c, 0, sizeof c);
    cublasLtMatmulAlgo_t algo;
    const float *bias = b;
    cublasStatus_t s = lt_setup(&c, cu, n, in, out, w->data, xb, bias, y, ab);
    int ok = s == CUBLAS_STATUS_SUCCESS && lt_pick(cu, &c, &algo);
    if (!ok && bias) { /* no algorithm with the bias epilogue: plain product, then the bias kernel */
        lt_release(&c);
        memset(&c, 0, sizeof c);
        bias = NULL;
        s = lt_setup(&c, cu, n, in, out, w->data, xb, NULL, y, ab);
        ok = s == CUBLAS_STATUS_SUCCESS && lt_pick(cu, &c, &algo);
    }
    if (!ok) {
        lt_release(&c);
        if (s != CUBLAS_STATUS_SUCCESS)
            return cd_set_error(ctx, CD_ERR_INTERNAL,
                                "cuda linear: cuBLASLt descriptor setup failed (status %d) for "
                                "n=%zu in=%d out=%d",
                                (int)s, n, in, out);
        return cd_set_error(ctx, CD_ERR_INTERNAL, "cuda linear: cuBLASLt offers no algorithm for n=%zu in=%d out=%d", n,
                            in, out);
    }
    const float alpha = 1.0f, beta = 0.0f; /* beta 0: C (= y) is not read */
    s = cublasLtMatmul(cu->lt, c.op, &alpha, w->data, c.la, xb, c.lb, &beta, y, c.ld, y, c.ld, &algo, cu->lt_ws,
                       cu->lt_ws_bytes, cu->stream);
    lt_release(&c); /* the call has been queued; the descriptors are no longer needed */
    if (s != CUBLAS_STATUS_SUCCESS) {
        (void)cudaGetLastError(); /* not a kernel's error: keep it out of the next launch check */
        return cd_set_error(ctx, CD_ERR_INTERNAL,
                            "cuda linear: cublasLtMatmul failed (status %d) for n=%zu in=%d out=%d", (int)s, n, in,
                            out);
    }
    if (b && !bias) {
        size_t blocks = n;
        const size_t cap = (size_t)cu->prop.multiProcessorCount * 16;
        if (blocks > cap) blocks = cap;
        k_add_bias<<<(unsigned)blocks, 256, 0, cu->stream>>>(y, b, n, out);
        if (!cd_cuda_launch_ok(cu))
            return cd_set_error(ctx, CD_ERR_INTERNAL, "cuda linear: bias kernel launch failed: %s",
                                cudaGetErrorString(cu->sticky));
    }
    return CD_OK;
}
