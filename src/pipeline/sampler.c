/* sampler.c — FLUX sampling helpers: schedule, counter-based Gaussian noise (Philox4x32-10 +
 * Box-Muller), latent pack/unpack and position ids, the Euler step. See sampler.h for the exact
 * contracts; docs/flux.md section 5 for the model-side definitions. */
#include "sampler.h"

#include "../util/internal.h"

#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- schedule ------------------------------------------------------------------------------ */
double cd_flux_schedule_mu(size_t image_seq_len, double base_shift, double max_shift) {
    const double m = (max_shift - base_shift) / (double)(CD_FLUX_MAX_SEQ - CD_FLUX_BASE_SEQ);
    const double b = base_shift - (double)CD_FLUX_BASE_SEQ * m;
    return m * (double)image_seq_len + b;
}

/* t_i = em / (em + (1/t_i - 1)) inside (0, 1) when shifted (em = e^mu), linear otherwise. */
static void schedule_fill(int steps, int shifted, double em, float *t) {
    for (int i = 0; i <= steps; i++) {
        double ti = 1.0 - (double)i / (double)steps;
        if (i == 0)
            ti = 1.0;
        else if (i == steps)
            ti = 0.0;
        else if (shifted)
            ti = em / (em + (1.0 / ti - 1.0));
        t[i] = (float)ti;
    }
}

cd_status cd_flux_schedule(cd_ctx *ctx, int steps, size_t image_seq_len, int shift, double base_shift, double max_shift,
                           float *t) {
    if (!t) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: output array is NULL");
    if (steps < 1) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: steps must be >= 1 (got %d)", steps);
    if (shift) {
        if (image_seq_len == 0) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: image_seq_len must be >= 1");
        if (!isfinite(base_shift) || !isfinite(max_shift))
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: shifts must be finite");
    }
    const double mu = shift ? cd_flux_schedule_mu(image_seq_len, base_shift, max_shift) : 0.0;
    const double em = exp(mu);
    if (shift && !(isfinite(em) && em > 0.0))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: shift mu = %g out of range (image_seq_len %zu)", mu,
                            image_seq_len);
    schedule_fill(steps, shift, em, t);
    return CD_OK;
}

cd_status cd_flux_schedule_static(cd_ctx *ctx, int steps, double factor, float *t) {
    if (!t) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: output array is NULL");
    if (steps < 1) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: steps must be >= 1 (got %d)", steps);
    if (!(isfinite(factor) && factor > 0.0))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "schedule: time shift must be > 0 (got %g)", factor);
    schedule_fill(steps, 1, factor, t);
    return CD_OK;
}

int cd_img2img_start(int steps, double strength) {
    if (steps < 1 || !(strength > 0.0 && strength <= 1.0)) return -1;
    double init = (double)steps * strength;
    if (init > (double)steps) init = (double)steps;
    double skip = (double)steps - init;
    if (skip < 0) skip = 0;
    const int start = (int)skip; /* truncation, as Python's int() */
    return start < steps ? start : -1;
}

/* ---- noise --------------------------------------------------------------------------------- */
static inline void mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void cd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo32(0xD2511F53u, c0, &hi0, &lo0);
        mulhilo32(0xCD9E8D57u, c2, &hi1, &lo1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* The two normals of one block (elements 2*block and 2*block + 1). */
static void noise_block(uint64_t seed, uint64_t block, float z[2]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0u, 0u};
    uint32_t x[4];
    cd_philox4x32_10(ctr, key, x);
    const uint64_t a = (((uint64_t)x[0] << 32) | x[1]) >> 11;
    const uint64_t b = (((uint64_t)x[2] << 32) | x[3]) >> 11;
    const double u1 = (double)(a + 1) * 0x1p-53; /* (0, 1] */
    const double u2 = (double)b * 0x1p-53;       /* [0, 1) */
    const double r = sqrt(-2.0 * log(u1));
    const double th = 6.283185307179586476925286766559 * u2;
    z[0] = (float)(r * cos(th));
    z[1] = (float)(r * sin(th));
}

cd_status cd_noise_normal(cd_ctx *ctx, uint64_t seed, uint64_t first, size_t n, float *out, int threads) {
    if (n == 0) return CD_OK;
    if (!out) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "noise: output array is NULL");
    if (first > UINT64_MAX - (uint64_t)n)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "noise: element range overflows 2^64");
    /* Chunks of whole blocks: element i = first + j lives in block i/2. */
    const size_t chunk = 4096;
    const size_t nchunks = (n + chunk - 1) / chunk;
#ifdef _OPENMP
    int nt = threads > 0 ? threads : omp_get_max_threads();
    if (nt < 1) nt = 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nchunks > 1)
#else
    (void)threads;
#endif
    for (size_t ci = 0; ci < nchunks; ci++) {
        const size_t j0 = ci * chunk, j1 = j0 + chunk < n ? j0 + chunk : n;
        size_t j = j0;
        float z[2];
        if ((first + j) & 1u) { /* odd start: the second half of a block */
            noise_block(seed, (first + j) >> 1, z);
            out[j++] = z[1];
        }
        for (; j + 1 < j1; j += 2) {
            noise_block(seed, (first + j) >> 1, z);
            out[j] = z[0];
            out[j + 1] = z[1];
        }
        if (j < j1) {
            noise_block(seed, (first + j) >> 1, z);
            out[j] = z[0];
        }
    }
    return CD_OK;
}

/* ---- packing ------------------------------------------------------------------------------- */
static cd_status pack_check(cd_ctx *ctx, const char *what, const void *a, const void *b, size_t channels, size_t lat_h,
                            size_t lat_w) {
    if (!a || !b) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: NULL array", what);
    if (channels < 1) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "%s: channels must be >= 1", what);
    if (lat_h < 2 || lat_w < 2 || (lat_h & 1u) || (lat_w & 1u))
        return cd_set_error(ctx, CD_ERR_SHAPE, "%s: latent size %zu x %zu must be even and >= 2 in both dimensions",
                            what, lat_h, lat_w);
    size_t hw, tot;
    if (!cd_mul_ok(lat_h, lat_w, &hw) || !cd_mul_ok(hw, channels, &tot) || !cd_mul_ok(tot, sizeof(float), &tot))
        return cd_set_error(ctx, CD_ERR_SHAPE, "%s: latent size overflows", what);
    return CD_OK;
}

/* One loop for both directions: dir 0 packs (lat -> tok), 1 unpacks (tok -> lat). */
static void pack_loop(int dir, float *lat, float *tok, size_t C, size_t lat_h, size_t lat_w) {
    const size_t h = lat_h / 2, w = lat_w / 2, F = 4 * C;
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            float *row = tok + (y * w + x) * F;
            for (size_t c = 0; c < C; c++)
                for (size_t py = 0; py < 2; py++)
                    for (size_t px = 0; px < 2; px++) {
                        float *l = lat + (c * lat_h + 2 * y + py) * lat_w + 2 * x + px;
                        float *t = row + c * 4 + py * 2 + px;
                        if (dir == 0)
                            *t = *l;
                        else
                            *l = *t;
                    }
        }
}

cd_status cd_latent_pack(cd_ctx *ctx, const float *lat, size_t channels, size_t lat_h, size_t lat_w, float *tok) {
    cd_status s = pack_check(ctx, "latent pack", lat, tok, channels, lat_h, lat_w);
    if (s != CD_OK) return s;
    pack_loop(0, (float *)lat, tok, channels, lat_h, lat_w); /* lat only read when dir == 0 */
    return CD_OK;
}

cd_status cd_latent_unpack(cd_ctx *ctx, const float *tok, size_t channels, size_t lat_h, size_t lat_w, float *lat) {
    cd_status s = pack_check(ctx, "latent unpack", tok, lat, channels, lat_h, lat_w);
    if (s != CD_OK) return s;
    pack_loop(1, lat, (float *)tok, channels, lat_h, lat_w); /* tok only read when dir == 1 */
    return CD_OK;
}

cd_status cd_flux_img_ids(cd_ctx *ctx, size_t h, size_t w, float *ids) {
    if (!ids) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "img_ids: NULL array");
    if (h < 1 || w < 1) return cd_set_error(ctx, CD_ERR_SHAPE, "img_ids: grid %zu x %zu must be >= 1 x 1", h, w);
    if (h > (1u << 24) || w > (1u << 24)) /* row/col must be exact in f32 */
        return cd_set_error(ctx, CD_ERR_SHAPE, "img_ids: grid %zu x %zu too large", h, w);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            float *r = ids + (y * w + x) * 3;
            r[0] = 0.0f;
            r[1] = (float)y;
            r[2] = (float)x;
        }
    return CD_OK;
}

cd_status cd_flux_txt_ids(cd_ctx *ctx, size_t text_len, float *ids) {
    if (text_len == 0) return CD_OK;
    if (!ids) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "txt_ids: NULL array");
    memset(ids, 0, text_len * 3 * sizeof(float));
    return CD_OK;
}

/* ---- Euler --------------------------------------------------------------------------------- */
void cd_euler_step(float *x, const float *v, size_t n, float t_cur, float t_next) {
    const float dt = t_next - t_cur;
    for (size_t i = 0; i < n; i++) {
        const float d = dt * v[i]; /* -std=c11: no contraction into an FMA */
        x[i] = x[i] + d;
    }
}
