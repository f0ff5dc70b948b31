/* resize.c — 8-bit RGB resizing that reproduces Pillow's Image.resize((w, h)) for RGB images bit
 * for bit: the default BICUBIC filter (Keys cubic, a = -0.5, support 2), antialiased when
 * downscaling, in Pillow's 8-bit fixed point. It is how init images (img2img) and the
 * high-resolution path get to the generation size, so that results match the Python pipelines
 * that call PIL. Written from the semantics of Pillow's src/libImaging/Resample.c (read, not
 * copied); tests/test_resize.c checks it against fixtures that Pillow itself wrote
 * (tests/oracle/resize_fixtures.py).
 *
 * What has to match for exact 8-bit results (each of these changes some pixels when done
 * otherwise):
 *  1. Coefficients per output index i along one axis (in -> out samples), in double:
 *       scale = in / out; fs = max(scale, 1) (antialiasing: the filter is stretched by the
 *       reduction factor); support = 2 fs; center = (i + 0.5) scale;
 *       first = max(0, (int)(center - support + 0.5)), end = min(in, (int)(center + support + 0.5))
 *       ((int) truncates toward zero, as in C), taps j = first .. end-1 with weight
 *       w_j = cubic((j - center + 0.5) / fs), each divided by their sum (unless it is 0).
 *     The expressions are evaluated in the same order as Pillow (no FMA contraction: this file is
 *     built with -std=c11, where GCC's default is -ffp-contract=off, and without -mfma).
 *  2. Fixed point: PB = 22 fractional bits (32 - 8 - 2); each weight becomes
 *     (int32)(w * 2^PB + 0.5) when w >= 0 and (int32)(w * 2^PB - 0.5) when w < 0, truncated.
 *  3. A sample is 2^(PB-1) + sum_j pixel_j * k_j (integers, so the summation order is free),
 *     then floor-shifted by PB and clamped to 0..255.
 *  4. Two passes with an 8-bit image between them, each only when its axis changes size (the
 *     same size in both axes is a plain copy). The order is Pillow 13's: vertical first when
 *     the height shrinks by more than twice as many pixels as the width does,
 *     (sh - dh) > 0 && (sh - dh) > 2 (sw - dw) (so always when the height shrinks while the
 *     width grows); otherwise horizontal first, on only the source rows the vertical pass reads.
 *     Pillow 12 and older always went horizontal first (except, in Image.resize, images more than
 *     100 times taller than wide being made shorter), so where the two orders differ this
 *     matches Pillow >= 13 and may differ from older Pillow by a few levels in some pixels.
 *
 * Memory: the coefficient tables are O(in + out) per axis (each output has at most
 * 2 ceil(support) + 1 taps) and the intermediate image is dw x (rows read) x 3 bytes
 * (horizontal first) or sw x dh x 3 bytes (vertical first), as in Pillow. Threads: OpenMP over
 * output rows; every output byte is a function of the inputs alone, so results do not depend on
 * the thread count. */
#include "../util/internal.h"

#include <math.h>
#include <stdlib.h>

#define RS_PREC_BITS 22 /* Pillow's PRECISION_BITS: 8 bits result, 2 bits headroom, int32 */

/* Keys' cubic convolution kernel with a = -0.5, written as Pillow evaluates it. */
static double cubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Fixed-point resampling coefficients of one axis. */
typedef struct {
    int ksize;   /* taps reserved per output: 2 ceil(support) + 1 */
    int32_t *k;  /* [out, ksize] fixed-point weights (unused tail zero) */
    int32_t *lo; /* [out] first input index */
    int32_t *n;  /* [out] number of taps (lo + n <= in) */
} rs_axis;

static void axis_free(rs_axis *a) {
    free(a->k);
    free(a->lo);
    free(a->n);
    a->k = a->lo = a->n = NULL;
}

/* Builds the coefficients for resampling `in` samples to `out` (item 1-2 of the file comment).
 * Returns 0 on allocation failure. */
static int axis_build(uint32_t in, uint32_t out, rs_axis *a) {
    a->k = a->lo = a->n = NULL;
    const double scale = (double)in / (double)out;
    const double fs = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * fs;
    const int ksize = (int)ceil(support) * 2 + 1; /* <= 4 * 65536 + 3 */
    a->ksize = ksize;
    size_t nk;
    if (!cd_mul_ok((size_t)out, (size_t)ksize, &nk)) return 0;
    a->k = calloc(nk, sizeof(int32_t));
    a->lo = malloc((size_t)out * sizeof(int32_t));
    a->n = malloc((size_t)out * sizeof(int32_t));
    double *w = malloc((size_t)ksize * sizeof(double));
    if (!a->k || !a->lo || !a->n || !w) {
        free(w);
        axis_free(a);
        return 0;
    }
    const double inv_fs = 1.0 / fs;
    const double one = (double)(1 << RS_PREC_BITS);
    for (uint32_t i = 0; i < out; i++) {
        const double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > (int)in) hi = (int)in;
        int n = hi - lo;
        if (n > ksize) n = ksize; /* cannot happen: hi - lo <= 2 support + 1 */
        if (n < 0) n = 0;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            w[j] = cubic((j + lo - center + 0.5) * inv_fs);
            sum += w[j];
        }
        int32_t *k = a->k + (size_t)i * ksize;
        for (int j = 0; j < n; j++) {
            const double v = sum != 0.0 ? w[j] / sum : w[j];
            k[j] = v < 0 ? (int32_t)(-0.5 + v * one) : (int32_t)(0.5 + v * one);
        }
        a->lo[i] = lo;
        a->n[i] = n;
    }
    free(w);
    return 1;
}

/* Item 3: rounding offset, floor shift, clamp. acc >= 0 shifts like a floor; acc < 0 is 0. */
static inline uint8_t rs_clip8(int64_t acc) {
    if (acc < 0) return 0;
    const int64_t v = acc >> RS_PREC_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Horizontal pass: rows [0, rows) of dst (width dw) from source rows row0 .. row0+rows-1. */
static void pass_h(int threads, const uint8_t *src, uint32_t sw, uint32_t row0, uint32_t rows, const rs_axis *ax,
                   uint8_t *dst, uint32_t dw) {
    const int64_t half = (int64_t)1 << (RS_PREC_BITS - 1);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t y = 0; y < (int64_t)rows; y++) {
        const uint8_t *s = src + ((size_t)row0 + (size_t)y) * sw * 3; /* [sw, 3] */
        uint8_t *d = dst + (size_t)y * dw * 3;                        /* [dw, 3] */
        for (uint32_t x = 0; x < dw; x++) {
            const int32_t *k = ax->k + (size_t)x * ax->ksize;
            const uint8_t *p = s + (size_t)ax->lo[x] * 3;
            const int n = ax->n[x];
            int64_t r = half, g = half, b = half;
            for (int j = 0; j < n; j++) {
                r += (int64_t)p[3 * j + 0] * k[j];
                g += (int64_t)p[3 * j + 1] * k[j];
                b += (int64_t)p[3 * j + 2] * k[j];
            }
            d[3 * x + 0] = rs_clip8(r);
            d[3 * x + 1] = rs_clip8(g);
            d[3 * x + 2] = rs_clip8(b);
        }
    }
}

/* Vertical pass: dst [dh, w, 3] from src [.., w, 3], whose row 0 is input row `row0` of the
 * axis (the coefficients' indices are shifted by row0). */
static void pass_v(int threads, const uint8_t *src, uint32_t w, uint32_t row0, const rs_axis *ax, uint8_t *dst,
                   uint32_t dh) {
    const int64_t half = (int64_t)1 << (RS_PREC_BITS - 1);
    const size_t stride = (size_t)w * 3;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t y = 0; y < (int64_t)dh; y++) {
        const int32_t *k = ax->k + (size_t)y * ax->ksize;
        const uint8_t *s = src + ((size_t)ax->lo[y] - row0) * stride; /* first tap row */
        const int n = ax->n[y];
        uint8_t *d = dst + (size_t)y * stride;
        for (size_t c = 0; c < stride; c++) {
            int64_t acc = half;
            const uint8_t *p = s + c;
            for (int j = 0; j < n; j++, p += stride) acc += (int64_t)*p * k[j];
            d[c] = rs_clip8(acc);
        }
    }
}

static int size_ok(uint32_t w, uint32_t h) {
    return w >= 1 && h >= 1 && w <= CD_PNG_MAX_SIDE && h <= CD_PNG_MAX_SIDE && (uint64_t)w * h <= CD_PNG_MAX_PIXELS;
}

cd_status cd_rgb8_resize(cd_ctx *ctx, const uint8_t *src, uint32_t sw, uint32_t sh, uint8_t *dst, uint32_t dw,
                         uint32_t dh) {
    if (!src || !dst)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "resize: %s is NULL", !src ? "source" : "destination");
    if (!size_ok(sw, sh))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "resize: source size %ux%u out of range (1..%u per side, at most "
                            "%llu pixels)",
                            sw, sh, CD_PNG_MAX_SIDE, (unsigned long long)CD_PNG_MAX_PIXELS);
    if (!size_ok(dw, dh))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "resize: target size %ux%u out of range (1..%u per side, at most "
                            "%llu pixels)",
                            dw, dh, CD_PNG_MAX_SIDE, (unsigned long long)CD_PNG_MAX_PIXELS);
    const int threads = ctx ? cd_ctx_threads(ctx) : 1;
    const int need_h = dw != sw, need_v = dh != sh;
    if (!need_h && !need_v) {
        if (dst != src) memcpy(dst, src, (size_t)sw * sh * 3);
        return CD_OK;
    }
    rs_axis ax_h = {0}, ax_v = {0};
    if ((need_h && !axis_build(sw, dw, &ax_h)) || (need_v && !axis_build(sh, dh, &ax_v))) {
        axis_free(&ax_h);
        axis_free(&ax_v);
        return cd_set_error(ctx, CD_ERR_OOM,
                            "resize %ux%u -> %ux%u: out of memory for the "
                            "filter coefficients",
                            sw, sh, dw, dh);
    }
    cd_status st = CD_OK;
    /* Item 4: Pillow 13's order rule, in its int arithmetic on the sizes. */
    const int64_t cut_h = (int64_t)sh - dh, cut_w = (int64_t)sw - dw;
    const int v_first = cut_h > 0 && cut_h > cut_w * 2;
    if (!need_v) {
        pass_h(threads, src, sw, 0, sh, &ax_h, dst, dw);
    } else if (!need_h) {
        pass_v(threads, src, sw, 0, &ax_v, dst, dh);
    } else {
        /* Horizontal first: only the source rows the vertical pass reads, [lo of the first
         * output row, end of the last); vertical first: every column, dh rows. */
        const uint32_t r0 = v_first ? 0 : (uint32_t)ax_v.lo[0];
        const uint32_t r1 = v_first ? 0 : (uint32_t)(ax_v.lo[dh - 1] + ax_v.n[dh - 1]);
        const size_t tw = v_first ? sw : dw, th = v_first ? dh : (size_t)(r1 - r0);
        uint8_t *tmp = th ? malloc(tw * th * 3) : NULL; /* [th, tw, 3] */
        if (!tmp) {
            st = cd_set_error(ctx, CD_ERR_OOM,
                              "resize %ux%u -> %ux%u: out of memory for the "
                              "%zux%zu intermediate image",
                              sw, sh, dw, dh, tw, th);
        } else if (v_first) {
            pass_v(threads, src, sw, 0, &ax_v, tmp, dh);
            pass_h(threads, tmp, sw, 0, dh, &ax_h, dst, dw);
        } else {
            pass_h(threads, src, sw, r0, (uint32_t)th, &ax_h, tmp, dw);
            pass_v(threads, tmp, dw, r0, &ax_v, dst, dh);
        }
        free(tmp);
    }
    axis_free(&ax_h);
    axis_free(&ax_v);
    return st;
}
