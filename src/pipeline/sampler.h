/* sampler.h — FLUX sampling helpers (docs/flux.md section 5): the timestep schedule, deterministic
 * Gaussian noise, latent packing and the Euler step. Internal (not installed); the CLI and tests
 * include it directly. No globals; every function that can fail returns cd_status with a message
 * in ctx (ctx may be NULL).
 *
 * Letters: C latent channels (16 for FLUX), h x w token grid, latent image [C, 2h, 2w],
 * packed tokens [h*w, 4C] (64 for FLUX). */
#ifndef CD_SAMPLER_H
#define CD_SAMPLER_H

#include "cleardit.h"

#include <stddef.h>
#include <stdint.h>

#define CD_FLUX_BASE_SHIFT 0.5
#define CD_FLUX_MAX_SHIFT 1.15
#define CD_FLUX_BASE_SEQ 256
#define CD_FLUX_MAX_SEQ 4096

/* ---- schedule ----------------------------------------------------------------------------------
 * t[0..steps] (steps + 1 values, t[0] = 1, t[steps] = 0 exactly): t_i = 1 - i/steps. With shift
 * (dev-like models): mu = m*image_seq_len + b, m = (max_shift - base_shift)/(4096 - 256),
 * b = base_shift - 256 m, and t_i <- e^mu / (e^mu + (1/t_i - 1)) for 0 < t_i < 1 (endpoints kept).
 * shift == 0 (schnell-like): the linear schedule. Computed in double, rounded once to f32.
 * This is BFL's get_schedule and diffusers' FlowMatchEulerDiscreteScheduler sigmas (+ 0) as
 * FluxPipeline sets them (tests/oracle/sampler_fixtures.py); those compute in f32 and agree with
 * this to within 8 * 2^-24 * max(|t|, 2^-10).
 * Errors: steps < 1, image_seq_len == 0, non-finite shifts or t == NULL -> CD_ERR_INVALID_ARG. */
cd_status cd_flux_schedule(cd_ctx *ctx, int steps, size_t image_seq_len, int shift, double base_shift, double max_shift,
                           float *t);
/* The same with a static shift factor f instead of the resolution rule: t_i <- f t_i / (1 + (f-1) t_i)
 * (= the shifted form with e^mu = f): diffusers' FlowMatchEulerDiscreteScheduler with
 * use_dynamic_shifting=False and shift=f, which the CLEAR reference high-resolution pipeline uses
 * (FLUX.1-dev's scheduler config: shift 3). f > 0 (1 = linear) else CD_ERR_INVALID_ARG. */
cd_status cd_flux_schedule_static(cd_ctx *ctx, int steps, double factor, float *t);
/* img2img: the index of the first schedule step run at strength s in (0, 1]: diffusers'
 * FluxImg2ImgPipeline.get_timesteps, t_start = int(steps - min(steps * s, steps)) in double
 * (BFL's cli computes int((1 - s) * steps), equal except at rounding ties). The latent starts at
 * t[start] * noise + (1 - t[start]) * encoded image. -1 if s is out of range or no step is left. */
int cd_img2img_start(int steps, double strength);
/* mu of the schedule above (the resolution-dependent shift). */
double cd_flux_schedule_mu(size_t image_seq_len, double base_shift, double max_shift);

/* ---- deterministic noise -----------------------------------------------------------------------
 * out[j] = N(0,1) sample number (first + j) of stream `seed`, for j < n. The value of element i
 * depends only on (seed, i), never on n, first or threads, so any split of a range over any number
 * of threads gives bit-identical results.
 *
 * Algorithm (fixed; changing it changes every image made from a seed):
 *   block = i / 2 (uint64).  Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32 with
 *   10 rounds, multipliers 0xD2511F53, 0xCD9E8D57, Weyl key increments 0x9E3779B9, 0xBB67AE85)
 *   with key = (lo32(seed), hi32(seed)) and counter = (lo32(block), hi32(block), 0, 0) gives
 *   x0..x3 (uint32).
 *   a = (x0 << 32 | x1) >> 11, b = (x2 << 32 | x3) >> 11      (53-bit integers)
 *   u1 = (a + 1) * 2^-53   in (0, 1]      u2 = b * 2^-53   in [0, 1)
 *   r = sqrt(-2 ln u1);  element 2*block = (float)(r cos(2 pi u2)),
 *                        element 2*block + 1 = (float)(r sin(2 pi u2))     (Box-Muller, double)
 * |value| <= sqrt(106 ln 2) ~ 8.57: never NaN or Inf. Across machines the output is identical
 * wherever libm's log/sin/cos (double) agree to well under f32 precision (glibc does; a rare
 * differing last double bit could only change a value whose f32 rounding is a near-tie).
 * threads <= 0: OpenMP default. Errors: out == NULL with n > 0, first + n overflowing. */
cd_status cd_noise_normal(cd_ctx *ctx, uint64_t seed, uint64_t first, size_t n, float *out, int threads);
/* One Philox4x32-10 block (exposed for the known-answer test). */
void cd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* ---- latent packing ----------------------------------------------------------------------------
 * pack:   lat [C, 2h, 2w] -> tok [h*w, 4C], tok[(y*w + x)*4C + c*4 + py*2 + px] =
 *         lat[c][2y + py][2x + px]   (einops "c (h ph) (w pw) -> (h w) (c ph pw)", diffusers
 *         FluxPipeline._pack_latents).  unpack is the exact inverse (_unpack_latents).
 * lat_h, lat_w are the latent sizes (2h, 2w): both must be even and >= 2, channels >= 1. */
cd_status cd_latent_pack(cd_ctx *ctx, const float *lat, size_t channels, size_t lat_h, size_t lat_w, float *tok);
cd_status cd_latent_unpack(cd_ctx *ctx, const float *tok, size_t channels, size_t lat_h, size_t lat_w, float *lat);
/* img_ids [h*w, 3] = (0, row, col) row-major (h, w are token-grid sizes, >= 1);
 * txt_ids [text_len, 3] = 0 (text_len may be 0; ids may then be NULL). */
cd_status cd_flux_img_ids(cd_ctx *ctx, size_t h, size_t w, float *ids);
cd_status cd_flux_txt_ids(cd_ctx *ctx, size_t text_len, float *ids);

/* ---- Euler step (flow matching) ----------------------------------------------------------------
 * x[i] += dt * v[i] with dt = t_next - t_cur rounded to f32 once, product and sum each rounded
 * (no FMA): bit-identical to diffusers' FlowMatchEulerDiscreteScheduler.step in f32. */
void cd_euler_step(float *x, const float *v, size_t n, float t_cur, float t_next);

#endif
