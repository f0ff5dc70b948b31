/* context.c — cd_ctx lifecycle, status strings, error messages, CPU feature detection. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

const char *cd_status_str(cd_status s) {
    switch (s) {
        case CD_OK: return "ok";
        case CD_ERR_INVALID_ARG: return "invalid argument";
        case CD_ERR_SHAPE: return "shape mismatch";
        case CD_ERR_OOM: return "out of memory";
        case CD_ERR_IO: return "I/O error";
        case CD_ERR_FORMAT: return "malformed file";
        case CD_ERR_NOT_FOUND: return "not found";
        case CD_ERR_UNSUPPORTED: return "unsupported";
        case CD_ERR_INTERNAL: return "internal error";
        case CD_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

cd_status cd_set_error(cd_ctx *ctx, cd_status s, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
        va_end(ap);
    }
    return s;
}

const char *cd_isa_name(cd_isa isa) {
    switch (isa) {
        case CD_ISA_AUTO: return "auto";
        case CD_ISA_GENERIC: return "generic";
        case CD_ISA_AVX2: return "avx2";
        case CD_ISA_AVX512: return "avx512";
        default: return "?";
    }
}

static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

static int cpu_has_bf16(void) {
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
}

static int hw_supports(cd_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
        case CD_ISA_AUTO:
        case CD_ISA_GENERIC: return 1;
        case CD_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case CD_ISA_AVX512: return cpu_has_avx512() && __builtin_cpu_supports("fma");
        default: return 0;
    }
}

/* CLEARDIT_ISA (docs/backends.md "Choosing and forcing kernels"): the one place every CPU kernel
 * choice can be forced from. It caps what the library believes this CPU has, so that a machine
 * with AVX-512 + AVX512_BF16 runs exactly what an older CPU would: "generic" (x86-64 baseline),
 * "avx2" (AVX2 + FMA), "avx512" (AVX-512 without the AVX512_BF16 paths: f32 weight tiles in the
 * linear, f32 dot products in attention), "avx512bf16" or "auto"/unset (everything present).
 * Read on each call (getenv is cheap), so the library keeps no global state.
 * 0: ok (*cap, *bf16 set); -1: not one of the names; -2: names a path this CPU lacks. */
static int env_cap(cd_isa *cap, int *bf16) {
    const char *e = getenv("CLEARDIT_ISA");
    *cap = CD_ISA_AVX512;
    *bf16 = 1;
    if (!e || !*e || !strcmp(e, "auto")) return 0;
    if (!strcmp(e, "generic"))
        *cap = CD_ISA_GENERIC, *bf16 = 0;
    else if (!strcmp(e, "avx2"))
        *cap = CD_ISA_AVX2, *bf16 = 0;
    else if (!strcmp(e, "avx512"))
        *bf16 = 0;
    else if (strcmp(e, "avx512bf16"))
        return -1;
    if (!hw_supports(*cap) || (*bf16 && !cpu_has_bf16())) return -2;
    return 0;
}

const char *cd_isa_env_error(void) {
    cd_isa cap;
    int bf16;
    switch (env_cap(&cap, &bf16)) {
        case -1: return "CLEARDIT_ISA must be one of auto, generic, avx2, avx512, avx512bf16";
        case -2: return "CLEARDIT_ISA names an instruction set this CPU does not have";
        default: return NULL;
    }
}

int cd_isa_supported(cd_isa isa) {
    cd_isa cap;
    int bf16;
    if (env_cap(&cap, &bf16)) return isa == CD_ISA_AUTO || isa == CD_ISA_GENERIC;
    return hw_supports(isa) && (isa == CD_ISA_AUTO || isa <= cap);
}

/* AVX512_BF16 kernels (the linear's BF16 GEMM, bf16 dot products in attention) for an isa. */
static int bf16_usable(cd_isa isa) {
    cd_isa cap;
    int bf16;
    return isa == CD_ISA_AVX512 && cpu_has_bf16() && env_cap(&cap, &bf16) == 0 && bf16;
}

cd_ctx_params cd_ctx_params_default(void) {
    cd_ctx_params p = {0, CD_ISA_AUTO};
    return p;
}

cd_status cd_ctx_create(const cd_ctx_params *p, cd_ctx **out) {
    *out = NULL;
    cd_ctx_params d = p ? *p : cd_ctx_params_default();
    if (d.threads < 0 || d.threads > 4096) return CD_ERR_INVALID_ARG;
    if ((int)d.isa < 0 || d.isa >= CD_ISA_COUNT) return CD_ERR_INVALID_ARG;
    if (cd_isa_env_error()) return CD_ERR_INVALID_ARG;
    if (!cd_isa_supported(d.isa)) return CD_ERR_UNSUPPORTED;
    cd_ctx *c = calloc(1, sizeof *c);
    if (!c) return CD_ERR_OOM;
    if (d.isa == CD_ISA_AUTO)
        d.isa = cd_isa_supported(CD_ISA_AVX512) ? CD_ISA_AVX512
                : cd_isa_supported(CD_ISA_AVX2) ? CD_ISA_AVX2
                                                : CD_ISA_GENERIC;
    c->isa = d.isa;
    c->has_bf16 = bf16_usable(d.isa);
#ifdef _OPENMP
    c->threads = d.threads > 0 ? d.threads : omp_get_max_threads();
#else
    c->threads = 1;
#endif
    if (c->threads < 1) c->threads = 1;
    *out = c;
    return CD_OK;
}

void cd_ctx_free(cd_ctx *ctx) {
    if (ctx) {
        if (ctx->release_device) ctx->release_device(ctx);
        free(ctx->work);
    }
    free(ctx);
}

float *cd_ctx_work(cd_ctx *ctx, size_t floats) {
    if (floats <= ctx->work_cap) return ctx->work;
    size_t bytes;
    if (!cd_mul_ok(floats, sizeof(float), &bytes) || bytes > SIZE_MAX - 64) {
        cd_set_error(ctx, CD_ERR_OOM, "scratch of %zu floats is too large", floats);
        return NULL;
    }
    float *w = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!w) {
        cd_set_error(ctx, CD_ERR_OOM, "cannot allocate %zu MB of scratch", bytes >> 20);
        return NULL;
    }
    free(ctx->work);
    ctx->work = w;
    ctx->work_cap = floats;
    return w;
}
const char *cd_ctx_error(const cd_ctx *ctx) { return ctx ? ctx->err : ""; }
int cd_ctx_bf16(const cd_ctx *ctx) { return ctx->has_bf16; }
cd_isa cd_ctx_isa(const cd_ctx *ctx) { return ctx->isa; }
int cd_ctx_threads(const cd_ctx *ctx) { return ctx->threads; }

double cd_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cd_ctx_profile(cd_ctx *ctx, int enable) {
    ctx->profile = enable != 0;
    if (enable)
        for (int i = 0; i < CD_PROF_COUNT; i++) ctx->prof[i] = 0.0;
}

double cd_ctx_profile_seconds(const cd_ctx *ctx, cd_prof_class c) {
    return (c >= 0 && c < CD_PROF_COUNT) ? ctx->prof[c] : 0.0;
}

int cd_blas_threads_push(const cd_ctx *ctx) {
#ifdef _OPENMP
    const int prev = omp_get_max_threads();
    omp_set_num_threads(ctx && ctx->threads > 0 ? ctx->threads : prev);
    return prev;
#else
    (void)ctx;
    return 1;
#endif
}

void cd_blas_threads_pop(int prev) {
#ifdef _OPENMP
    omp_set_num_threads(prev);
#else
    (void)prev;
#endif
}
