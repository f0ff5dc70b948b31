/* cleardit.h — public C API of cleardit.
 *
 * cleardit runs Diffusion Transformers (FLUX.1-shaped) with CLEAR attention: every image token
 * attends to all text tokens plus the image tokens inside an open disc of radius r around it.
 *
 * Conventions
 *  - Every function that can fail returns cd_status; details are in cd_ctx_error(ctx).
 *  - The library keeps no global mutable state, never prints and never exits.
 *  - Dimension letters: T text tokens, H x W image token grid, N = T + H*W joint sequence (text
 *    first), NH heads, HD head_dim, R radius, DF pooling (down) factor.
 *  - Sizes that are products of dimensions are size_t / uint64_t.
 */
#ifndef CLEARDIT_H
#define CLEARDIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLEARDIT_VERSION "0.1.0"

/* ---- status ------------------------------------------------------------------------------ */
typedef enum {
    CD_OK = 0,
    CD_ERR_INVALID_ARG,  /* a parameter is out of range or inconsistent */
    CD_ERR_SHAPE,        /* tensor shapes do not match what the operation needs */
    CD_ERR_OOM,          /* an allocation failed */
    CD_ERR_IO,           /* open/read/write/rename failed */
    CD_ERR_FORMAT,       /* a file is malformed */
    CD_ERR_NOT_FOUND,    /* a named tensor or file is missing */
    CD_ERR_UNSUPPORTED,  /* valid request this build or machine cannot serve */
    CD_ERR_INTERNAL
} cd_status;

const char *cd_status_str(cd_status s);

/* ---- element types (the full safetensors set; compute accepts F32 and BF16) --------------- */
typedef enum {
    CD_DTYPE_F32 = 0,
    CD_DTYPE_BF16,
    CD_DTYPE_F16,
    CD_DTYPE_F64,
    CD_DTYPE_F8_E4M3,
    CD_DTYPE_F8_E5M2,
    CD_DTYPE_F8_E8M0,
    CD_DTYPE_F8_E4M3FNUZ,
    CD_DTYPE_F8_E5M2FNUZ,
    CD_DTYPE_F6_E2M3,
    CD_DTYPE_F6_E3M2,
    CD_DTYPE_F4,
    CD_DTYPE_BOOL,
    CD_DTYPE_U8,
    CD_DTYPE_I8,
    CD_DTYPE_I16,
    CD_DTYPE_U16,
    CD_DTYPE_I32,
    CD_DTYPE_U32,
    CD_DTYPE_I64,
    CD_DTYPE_U64,
    CD_DTYPE_C64,
    CD_DTYPE_COUNT
} cd_dtype;

const char *cd_dtype_name(cd_dtype t);     /* "F32", "BF16", ... (safetensors spelling) */
int cd_dtype_bits(cd_dtype t);             /* storage bits per element */

/* ---- context ------------------------------------------------------------------------------ */
/* Instruction-set path for the CPU kernels. AUTO picks the best this machine supports. */
typedef enum {
    CD_ISA_AUTO = 0,
    CD_ISA_GENERIC,   /* portable C (GCC vector extensions at the x86-64 baseline) */
    CD_ISA_AVX2,      /* AVX2 + FMA */
    CD_ISA_AVX512,    /* AVX-512 F/BW/DQ/VL (+ AVX512_BF16 when present) */
    CD_ISA_COUNT
} cd_isa;

const char *cd_isa_name(cd_isa isa);
int cd_isa_supported(cd_isa isa);          /* 1 if this machine can run the path */

typedef struct cd_ctx cd_ctx;

typedef struct {
    int threads;   /* 0 = OpenMP default (all cores) */
    cd_isa isa;    /* CD_ISA_AUTO unless testing a specific path */
} cd_ctx_params;

cd_ctx_params cd_ctx_params_default(void);
cd_status cd_ctx_create(const cd_ctx_params *p, cd_ctx **out);  /* out = NULL on failure */
void cd_ctx_free(cd_ctx *ctx);
const char *cd_ctx_error(const cd_ctx *ctx);   /* last error message, "" if none */
cd_isa cd_ctx_isa(const cd_ctx *ctx);          /* the path actually used (never AUTO) */
int cd_ctx_threads(const cd_ctx *ctx);         /* threads actually used */

/* ---- attention ---------------------------------------------------------------------------- */
/* One attention layer over the joint sequence [text (T) | image (H*W, row-major)].
 *  radius == 0          : dense attention (every query sees every key).
 *  radius >= 1          : CLEAR. Text queries see all keys; an image query at (y,x) sees all text
 *                         keys and the image keys with (y-ky)^2 + (x-kx)^2 < radius^2.
 *  down >= 2 (CLEAR only): H and W divisible by down; (H/down)*(W/down) pooled keys/values, each the
 *                         spatial_weight-weighted sum of a down x down cell of image keys/values,
 *                         are appended for image queries only.
 *  scale == 0           : 1/sqrt(head_dim). */
typedef struct {
    int32_t heads;      /* NH >= 1 */
    int32_t head_dim;   /* HD >= 1 (64 and 128 are the fast shapes) */
    int32_t text_len;   /* T >= 0 */
    int32_t grid_h;     /* H >= 1 */
    int32_t grid_w;     /* W >= 1 */
    int32_t radius;     /* 0 = dense */
    int32_t down;       /* 0 or 1 = no pooling */
    float scale;        /* 0 = 1/sqrt(head_dim) */
} cd_attn_desc;

/* Checks a descriptor; fills ctx's error and returns CD_ERR_INVALID_ARG when it is not usable. */
cd_status cd_attn_validate(cd_ctx *ctx, const cd_attn_desc *d);

/* Exact number of allowed (query, key) pairs summed over the joint sequence, for one head. */
uint64_t cd_attn_pairs(const cd_attn_desc *d);
/* Forward FLOPs of one layer: 4 * pairs * heads * head_dim (2 for QK^T, 2 for PV). */
double cd_attn_flops(const cd_attn_desc *d);

/* q, k, v: [NH, N, HD] of `dtype` (F32 or BF16), contiguous.
 * spatial_weight: [DF, DF] f32 when d->down >= 2, else ignored (may be NULL).
 * o:   [NH, N, HD] f32.   lse: [NH, N] f32 natural-log sum of exp of the scaled scores (may be NULL).
 * Fast kernels (OpenMP threads, SIMD path of ctx), f32 accumulation, O(N) extra memory. */
cd_status cd_attention_forward(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dtype,
                               const void *q, const void *k, const void *v,
                               const float *spatial_weight, float *o, float *lse);

/* Same contract, plain loops with double accumulation: the oracle of the fast kernels. */
cd_status cd_attention_reference(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dtype,
                                 const void *q, const void *k, const void *v,
                                 const float *spatial_weight, float *o, float *lse);

/* ---- safetensors (small reader/writer; hardened in a later issue) ------------------------- */
#define CD_MAX_DIMS 8

typedef struct {
    const char *name;
    cd_dtype dtype;
    int32_t ndim;
    int64_t shape[CD_MAX_DIMS];
    const void *data;      /* points into the mapped file; NOT necessarily aligned */
    uint64_t nbytes;
} cd_st_tensor;

typedef struct cd_st_file cd_st_file;

/* Maps and validates `path`. On error *out = NULL and ctx's error names the file and the reason. */
cd_status cd_st_open(cd_ctx *ctx, const char *path, cd_st_file **out);
void cd_st_close(cd_st_file *f);
size_t cd_st_count(const cd_st_file *f);
const cd_st_tensor *cd_st_at(const cd_st_file *f, size_t i);
const cd_st_tensor *cd_st_find(const cd_st_file *f, const char *name);   /* NULL if absent */
const char *cd_st_meta(const cd_st_file *f, const char *key);            /* NULL if absent */

/* Converts a tensor's elements to f32 (F32/BF16/F16/F8_E4M3/F8_E5M2 sources). dst holds numel. */
cd_status cd_st_to_f32(cd_ctx *ctx, const cd_st_tensor *t, float *dst);
uint64_t cd_st_numel(const cd_st_tensor *t);

typedef struct {
    const char *name;
    cd_dtype dtype;
    int32_t ndim;
    int64_t shape[CD_MAX_DIMS];
    const void *data;      /* numel * bits / 8 bytes */
} cd_st_out;

/* Writes a safetensors file atomically (temp file in the same directory, fsync, rename).
 * meta: n_meta (key, value) string pairs as meta[2i], meta[2i+1]; may be NULL when n_meta == 0. */
cd_status cd_st_write(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n,
                      const char *const *meta, size_t n_meta);

/* ---- machine ------------------------------------------------------------------------------ */
/* Measures this machine's fp32 FMA peak (GFLOP/s) with `threads` threads over ~`seconds`. */
double cd_measure_fma_peak(cd_ctx *ctx, double seconds);

#ifdef __cplusplus
}
#endif
#endif /* CLEARDIT_H */
