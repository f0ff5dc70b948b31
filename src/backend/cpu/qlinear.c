/* qlinear.c — cd_qlinear_cpu: checks, activation quantization, the ISA dispatch and the OpenMP
 * split over output-row tiles; cd_qlinear_ref, the plain reference (qlinear.h). */
#include "qlinear.h"

#include "../../quant/ggml_types.h"

#include <math.h>
#include <stdlib.h>

#include <omp.h>

/* Output rows per OpenMP work item: 16 weight rows (53 KB of Q8_0 at in = 3072) stay in L2 while
 * every activation row streams past them. */
#define QL_TILE 16

size_t cd_qlinear_cpu_scratch_floats(size_t n, int32_t in, int threads) {
    (void)threads;
    size_t r;
    if (in <= 0 || !cd_mul_ok(n, (size_t)in / 32, &r) || !cd_mul_ok(r, CD_QX_FLOATS, &r)) return 0;
    return r;
}

void cd_qlinear_quantize_x(const float *x, size_t n, size_t in, cd_qx_block *xq) {
    const size_t nb = in / 32;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < nb; k++) {
            const float *v = x + i * in + k * 32;
            cd_qx_block *q = xq + i * nb + k;
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            q->d = d;
            /* nearbyintf: round half to even in the default mode, as vroundps would. */
            for (int j = 0; j < 32; j++) q->q[j] = (int8_t)nearbyintf(v[j] * id);
        }
}

void cd_qlinear_dequant_row(const void *w, uint32_t wtype, size_t nb, float *dst) {
    const uint8_t *p = (const uint8_t *)w;
    const size_t bs = wtype == CD_GGML_Q8_0 ? 34 : 18;
    for (size_t k = 0; k < nb; k++, p += bs, dst += 32) {
        uint16_t h;
        memcpy(&h, p, 2);
        const float d = cd_qf16_to_f32(h);
        if (wtype == CD_GGML_Q8_0) {
            for (int j = 0; j < 32; j++) dst[j] = d * (float)(int8_t)p[2 + j];
        } else { /* Q4_0: low nibbles are elements 0..15, high nibbles 16..31, both offset by 8 */
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)((p[2 + j] & 0x0f) - 8);
                dst[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
    }
}

static cd_status check(cd_ctx *ctx, const float *x, size_t n, const void *w, uint32_t wtype, int32_t out, int32_t in,
                       float *y) {
    if (wtype != CD_GGML_Q8_0 && wtype != CD_GGML_Q4_0) {
        const cd_ggml_type_info *t = cd_ggml_type_get(wtype);
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "qlinear: weight type %s (%u) is not Q8_0 or Q4_0",
                            t && t->name ? t->name : "unknown", (unsigned)wtype);
    }
    if (in <= 0 || in % 32 != 0 || out < 1)
        return cd_set_error(ctx, CD_ERR_SHAPE, "qlinear: in %d must be a positive multiple of 32 and out %d >= 1",
                            (int)in, (int)out);
    if (n > 0 && (!x || !w || !y)) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "qlinear: NULL x, w or y");
    return CD_OK;
}

cd_status cd_qlinear_cpu(cd_ctx *ctx, const float *x, size_t n, const void *w, uint32_t wtype, int32_t out, int32_t in,
                         const float *b, float *y) {
    cd_status s = check(ctx, x, n, w, wtype, out, in, y);
    if (s != CD_OK || n == 0) return s;
    const size_t nf = cd_qlinear_cpu_scratch_floats(n, in, ctx->threads);
    if (nf == 0) return cd_set_error(ctx, CD_ERR_OOM, "qlinear: activation scratch size overflows");
    cd_qx_block *xq = (cd_qx_block *)cd_ctx_work(ctx, nf);
    if (!xq) return CD_ERR_OOM;
    const size_t nb = (size_t)in / 32, wrow = cd_ggml_row_bytes(wtype, (uint64_t)in);
    /* AVX-512 machines run the AVX2 kernel (no VNNI kernel yet: docs/qlinear.md). */
    const cd_qlinear_kern kern = ctx->isa == CD_ISA_GENERIC ? cd_qlinear_kern_generic : cd_qlinear_kern_avx2;
    const int ntiles = (out + QL_TILE - 1) / QL_TILE;
    const long long nn = (long long)n;
#pragma omp parallel num_threads(ctx->threads)
    {
        /* x rows split statically for the quantization (each row's blocks belong to one thread). */
#pragma omp for schedule(static)
        for (long long i = 0; i < nn; i++)
            cd_qlinear_quantize_x(x + (size_t)i * (size_t)in, 1, (size_t)in, xq + (size_t)i * nb);
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntiles; t++) {
            const int32_t o0 = t * QL_TILE, o1 = o0 + QL_TILE < out ? o0 + QL_TILE : out;
            kern(xq, n, nb, (const uint8_t *)w, wrow, wtype, o0, o1, b, y, (size_t)out);
        }
    }
    return CD_OK;
}

cd_status cd_qlinear_ref(cd_ctx *ctx, const float *x, size_t n, const void *w, uint32_t wtype, int32_t out, int32_t in,
                         const float *b, float *y) {
    cd_status s = check(ctx, x, n, w, wtype, out, in, y);
    if (s != CD_OK || n == 0) return s;
    const size_t nb = (size_t)in / 32, wrow = cd_ggml_row_bytes(wtype, (uint64_t)in);
    cd_qx_block *xq = malloc(n * nb * sizeof *xq);
    float *wd = malloc((size_t)in * sizeof *wd);
    if (!xq || !wd) {
        free(xq), free(wd);
        return cd_set_error(ctx, CD_ERR_OOM, "qlinear_ref: out of memory");
    }
    cd_qlinear_quantize_x(x, n, (size_t)in, xq);
    for (int32_t o = 0; o < out; o++) {
        cd_qlinear_dequant_row((const uint8_t *)w + (size_t)o * wrow, wtype, nb, wd);
        for (size_t i = 0; i < n; i++) {
            double acc = 0.0;
            for (size_t k = 0; k < nb; k++) {
                const cd_qx_block *q = xq + i * nb + k;
                for (int j = 0; j < 32; j++) acc += (double)wd[k * 32 + j] * ((double)q->d * q->q[j]);
            }
            y[i * (size_t)out + (size_t)o] = (float)(acc + (b ? (double)b[o] : 0.0));
        }
    }
    free(xq), free(wd);
    return CD_OK;
}
