/* metrics.h — image quality metrics of generated 8-bit grey images against a reference
 * (library-private): PSNR and SSIM exactly as scikit-image computes them, and the mean/std of a
 * set. Used by `cleardit eval` (teacher vs distilled CLEAR student vs the plain CLEAR swap).
 *
 * PSNR, ref: skimage/metrics/simple_metrics.py peak_signal_noise_ratio(true, test, data_range=255):
 *   mse = mean((a - b)^2) in float64, psnr = 10 log10(255^2 / mse). Identical images (mse == 0)
 *   give +INFINITY, as skimage (numpy's division by zero). A set's statistics (cd_metric_stats)
 *   clamp each value to a cap first; `cleardit eval` uses CD_PSNR_CAP = 100 dB (a pair that
 *   differs in one pixel by one level is 77.1 dB at 28x28 and stays under 100 dB up to 153,787
 *   pixels, so for such images the cap catches identical pairs only; the stats count them).
 *
 * SSIM, ref: skimage/metrics/_structural_similarity.py structural_similarity(a, b,
 * gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255) (Wang et al.
 * 2004's settings; scikit-image 0.26), on one channel, all in float64:
 *   - window: scipy.ndimage.gaussian_filter with truncate = 3.5: radius r = int(3.5 * 1.5 + 0.5)
 *     = 5 (11 taps), weights exp(-x^2 / (2 sigma^2)) for x = -5..5 normalized to sum 1; applied
 *     separably (rows axis 0 first, then axis 1) with mode 'reflect' (half-sample symmetric:
 *     d c b a | a b c d | d c b a);
 *   - ux, uy, uxx, uyy, uxy = filtered a, b, a*a, b*b, a*b; vx = uxx - ux^2, vy = uyy - uy^2,
 *     vxy = uxy - ux uy (population covariance: cov_norm 1);
 *   - C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2;
 *     S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2));
 *   - the result is the mean of S over the image cropped by r = 5 pixels on every side
 *     (skimage's crop(S, pad) with pad = (win_size - 1) / 2): (h - 10) x (w - 10) values.
 *   skimage refuses images with a side under win_size = 11; so does cd_ssim_u8. */
#ifndef CD_METRICS_H
#define CD_METRICS_H

#include "../util/internal.h"

#include <stddef.h>
#include <stdint.h>

#define CD_PSNR_CAP 100.0 /* dB: the value a set's statistics use for identical pairs */
#define CD_SSIM_RADIUS 5  /* the Gaussian window's radius (11 taps) and the border cropped */

/* PSNR (dB) of n 8-bit samples b against a, MAX = 255; +INFINITY when a == b. */
double cd_psnr_u8(const uint8_t *a, const uint8_t *b, size_t n);

/* Mean SSIM of b against a, both [h, w] 8-bit grey, into *out. CD_ERR_INVALID_ARG when a side
 * is under 2 * CD_SSIM_RADIUS + 1 = 11; CD_ERR_OOM when the five filtered maps cannot be
 * allocated. */
cd_status cd_ssim_u8(cd_ctx *ctx, const uint8_t *a, const uint8_t *b, int32_t w, int32_t h, double *out);

/* Statistics of a set of values, each first clamped to at most `cap` (cap = INFINITY: none). */
typedef struct {
    double mean, std;   /* std: population (ddof = 0, numpy's default) */
    double min, max;    /* after the clamp */
    size_t n, n_capped; /* values, and how many were above the cap (e.g. identical images) */
} cd_metric_stat;

void cd_metric_stats(const double *v, size_t n, double cap, cd_metric_stat *s);

#endif
