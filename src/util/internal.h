/* internal.h — library-private helpers: the context struct, error reporting, small utilities.
 * Not installed; the CLI and tests use only include/cleardit.h (tests may include this too). */
#ifndef CD_INTERNAL_H
#define CD_INTERNAL_H

#include "cleardit.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cd_ctx {
    int threads;   /* resolved thread count (>= 1) */
    cd_isa isa;    /* resolved ISA (never AUTO) */
    int has_bf16;  /* AVX512_BF16 usable on this machine */
    char err[512]; /* last error message */
    int profile;   /* 1: ops accumulate their wall time in prof[] */
    double prof[CD_PROF_COUNT];
    float *work;                         /* grow-only scratch for ops (e.g. bf16 weight tiles); see cd_ctx_work */
    size_t work_cap;                     /* floats */
    void *dev_state;                     /* the opened device backend's state (CUDA: struct cd_cuda), or NULL */
    void (*release_device)(cd_ctx *ctx); /* set by a backend that keeps state in ctx; cd_ctx_free calls it */
};

/* Scratch of at least `floats` floats, 64-byte aligned, owned by ctx (grow-only: a model reserves
 * its worst case at load so that a forward never allocates). NULL (with an error) on OOM. */
float *cd_ctx_work(cd_ctx *ctx, size_t floats);
/* OpenBLAS (OpenMP build) takes its thread count from the calling thread's OpenMP setting: push
 * the context's count (ctx NULL or threads <= 0: unchanged) around a BLAS call, then pop. */
int cd_blas_threads_push(const cd_ctx *ctx);
void cd_blas_threads_pop(int prev);

/* Records a printf-style error message in ctx (ctx may be NULL) and returns `s`. */
cd_status cd_set_error(cd_ctx *ctx, cd_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Monotonic seconds, for profiling. */
double cd_now(void);
#define CD_PROF_BEGIN(ctx) const double cd_prof_t0_ = (ctx)->profile ? cd_now() : 0.0
#define CD_PROF_END(ctx, cls)                                           \
    do {                                                                \
        if ((ctx)->profile) (ctx)->prof[cls] += cd_now() - cd_prof_t0_; \
    } while (0)

/* bf16 <-> f32. bf16 is the upper half of an IEEE f32; conversion to bf16 rounds to nearest even
 * and keeps NaN a NaN. */
static inline float cd_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint16_t cd_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Raw element conversion to f32 (io/convert.c) for the float storage types a linear may read in
 * place: F32, BF16, F16, F8_E4M3, F8_E5M2 (exact; cd_dtype_float_convertible says which). Element
 * i of src (no alignment needed); n elements of src into dst. Other dtypes give NaN. */
int cd_dtype_float_convertible(cd_dtype dt);
float cd_elem_to_f32(cd_dtype dt, const void *src, size_t i);
void cd_elems_to_f32(cd_dtype dt, const void *src, size_t n, float *dst);

/* MurmurHash3's 64-bit finalizer: the mixing step of the counter-based generators (random
 * weights, benchmark inputs): element i of stream seed is a function of (seed, i) alone, so any
 * thread count gives the same values. */
static inline uint64_t cd_mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Overflow-checked size_t product; returns 0 on overflow (callers treat 0 as an error where the
 * true product is non-zero). */
static inline int cd_mul_ok(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

#ifdef __cplusplus
}
#endif

#endif
