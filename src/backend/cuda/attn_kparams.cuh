/* attn_kparams.cuh — what every attention kernel version (attn_v*_*.cuh, here and in
 * lab/attention/) receives, and the small device helpers they share. Private to the CUDA attention
 * (attn_cuda.cu, the lab's attn_lab.cu; patch_cuda.cu uses the bf16 helpers).
 *
 * Layout (cuda.h "attention"): q, k, v bf16 [NH, N, HD], N = T + H*W (text first, image
 * row-major); ek, ev bf16 extra keys of the image queries (text keys, then pooled keys), head h
 * at ek + h * ek_hstride; o f32 [NH, N, HD]; lse f32 [NH, N] or NULL. All element offsets are
 * computed in 64 bits (NH*N*HD passes 2^31 at 8192^2 images). */
#ifndef CD_ATTN_KPARAMS_CUH
#define CD_ATTN_KPARAMS_CUH

#include <stdint.h>

struct cd_attn_kparams {
    const uint16_t *q, *k, *v;
    const uint16_t *ek, *ev; /* image queries' extra keys/values (unused when r == 0) */
    long long ek_hstride;    /* elements between two heads of ek/ev */
    float *o;
    float *lse; /* may be NULL */
    int N;      /* tokens, T + H*W (<= INT32_MAX, cd_attn_validate) */
    int T, H, W;
    int r;            /* effective radius (cd_attn_eff_radius); 0 = dense */
    int E;            /* extra keys per head (image queries only) */
    float scale;      /* softmax scale (cd_attn_scale) */
    float scale_log2; /* scale * log2(e): scores in base-2 units for exp2 */
    /* flash kernels: the first n_dense_tiles CTAs take query rows [tile*BM, ...) below
     * q_dense_end over all N keys (dense: q_dense_end = N; CLEAR: = T, the text rows); the
     * others take image tiles, tiles_x of them per tile row. */
    int n_dense_tiles;
    int q_dense_end;
    int tiles_x;
    /* options (cd_cuda_attention_bf16_ex; 0, 0 and H without them): the dense rows see keys
     * [dense_key0, N) only; the image tiles cover the query rows [img_row0, img_row1) (tile row
     * ty starts at img_row0 + ty*QR; the keys still span all H rows) */
    int dense_key0;
    int img_row0, img_row1;
};

/* The flash launch's grid (host side; attn_launch.cuh and the emulator): sets p.n_dense_tiles and
 * p.tiles_x for tiles of BM dense rows / QR x QC image queries and returns the number of CTAs
 * per head (dense tiles first, then tiles_x image tiles per tile row). */
static inline long long cd_attn_flash_grid(cd_attn_kparams &p, int BM, int QR, int QC) {
    const long long n_dense = ((long long)p.q_dense_end + BM - 1) / BM;
    const long long rows = p.r > 0 && p.img_row1 > p.img_row0 ? p.img_row1 - p.img_row0 : 0;
    const long long tiles_x = rows > 0 ? ((long long)p.W + QC - 1) / QC : 0;
    const long long tiles_y = (rows + QR - 1) / QR;
    p.n_dense_tiles = (int)(n_dense < INT32_MAX ? n_dense : INT32_MAX);
    p.tiles_x = (int)tiles_x;
    return n_dense + tiles_x * tiles_y;
}

__device__ __forceinline__ float cd_dev_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

/* Round to nearest even, NaN stays NaN: the device twin of cd_f32_to_bf16 (internal.h). */
__device__ __forceinline__ uint16_t cd_dev_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Largest dx >= 0 with dx^2 + dy^2 < r^2, or -1 when |dy| >= r: the device twin of
 * cd_disc_halfwidth (ops/attention.c), same arithmetic (r <= H + W <= 2^21 so r^2 < 2^43 is exact
 * in int64 and in double). The image keys an image query (qy, qx) sees on key row ky are exactly
 * the columns kx with |qx - kx| <= halfwidth(r, qy - ky). */
__device__ __forceinline__ int cd_dev_disc_halfwidth(long long r, long long dy) {
    if (dy < 0) dy = -dy;
    if (dy >= r) return -1;
    const long long rem = r * r - dy * dy; /* > 0 */
    long long x = (long long)sqrt((double)rem);
    while (x * x >= rem) x--;
    while ((x + 1) * (x + 1) < rem) x++;
    return (int)x;
}

#endif
