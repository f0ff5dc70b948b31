/* ae.h — library-private: the FLUX autoencoder (docs/flux.md), f32: decoder and encoder.
 *
 *   z [z_channels, h, w] -> z / 0.3611 + 0.1159 -> conv_in -> mid (ResnetBlock, single-head
 *   attention over h*w, ResnetBlock) -> levels n-1 .. 0 (num_res_blocks + 1 ResnetBlocks each,
 *   nearest x2 upsample + conv3x3 after every level but level 0) -> GroupNorm -> SiLU -> conv_out
 *   -> image [out_channels, h * 2^(n-1), w * 2^(n-1)]  (n = cfg.n_mult; FLUX: 8h x 8w).
 *
 * Weights come from a checkpoint in BFL names (decoder.up.N.block.M ...) or diffusers
 * AutoencoderKL names (decoder.up_blocks.N.resnets.M ...): the config is the one cd_ckpt_inspect
 * infers, and every tensor is found under its diffusers name, in a BFL checkpoint through the
 * layout plan of io/layout_ae.c (the table `cleardit convert` uses). Every weight is copied to f32
 * at bind time (the checkpoint may be closed afterwards). The decoder and the encoder are bound
 * separately (each binding ignores the other part), and share every building block (conv3x3,
 * GroupNorm, ResnetBlock, mid-block attention).
 *
 * Each runs on the ops table it holds (ae->ops: the fast CPU table after binding; another through
 * cd_ae_*_set_ops, which uploads the weights once into that table's memory when it is not the
 * host's). The forward (ae_run.c) uses the table's conv2d, group_norm, add, transpose, linear and
 * attention only.
 *
 * ENCODER: image [in_channels, H, W] in [-1, 1] (H, W multiples of 2^(n-1)) -> conv_in -> levels
 *   0 .. n-1 (num_res_blocks ResnetBlocks each, a Downsample = zero pad (0,1,0,1) + conv3x3
 *   stride 2 after every level but the last) -> mid -> GroupNorm -> SiLU -> conv_out [2 z, h, w]
 *   -> z = 0.3611 * (mean - 0.1159), mean = the first z_channels channels (BFL sample_z=False;
 *   diffusers: (vae.encode(x).latent_dist.mode() - shift_factor) * scaling_factor, which is what
 *   FluxImg2ImgPipeline computes with retrieve_latents(sample_mode="argmax"); its default
 *   "sample" adds exp(logvar/2)-scaled noise, which is not done here).
 *
 * GroupNorm's group count holds no tensor, so it cannot be inferred: the caller passes it
 * (0 = 32, FLUX's value); every channel count of the decoder must be divisible by it. */
#ifndef CD_AE_H
#define CD_AE_H

#include "../util/internal.h"

struct cd_ops;

/* The latent's scale and shift of FLUX.1 (BFL AutoEncoderParams scale_factor / shift_factor,
 * diffusers' vae.config scaling_factor / shift_factor): cd_ae_decode decodes
 * z / CD_AE_SCALE + CD_AE_SHIFT, exactly what FluxPipeline hands to vae.decode. */
#define CD_AE_SCALE 0.3611f
#define CD_AE_SHIFT 0.1159f
#define CD_AE_GROUPS 32
#define CD_AE_EPS 1e-6f

typedef struct {
    int32_t cin, cout;
    const float *n1w, *n1b, *c1w, *c1b, *n2w, *n2b, *c2w, *c2b;
    const float *skw, *skb; /* 1x1 shortcut [cout, cin] when cin != cout, else NULL */
} cd_ae_resnet;

/* The mid-block attention: GroupNorm (an_*) and the q, k, v, out linears [C, C], [C]. */
typedef struct {
    const float *an_w, *an_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
} cd_ae_attn;

typedef struct cd_ae_decoder {
    cd_ae_config cfg;
    int32_t groups;
    const float *conv_in_w, *conv_in_b;
    cd_ae_resnet mid1, mid2;
    cd_ae_attn attn;
    cd_ae_resnet *blocks;           /* level lvl, block j at [lvl * (num_res_blocks + 1) + j] */
    const float *up_w[8], *up_b[8]; /* upsample conv of level lvl >= 1 */
    const float *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b;
    float *arena; /* every weight, f32 (host); the pointers above point into it */
    size_t arena_floats;
    const struct cd_ops *ops; /* the table it runs on (cd_ops_cpu() after binding) */
    float *dev;               /* the arena's copy in ops's memory; NULL for host memory */
    cd_ctx *dev_ctx;          /* the context dev was allocated with */
} cd_ae_decoder;

/* Binds the decoder of checkpoint ck (layout CD_LAYOUT_AE_BFL or CD_LAYOUT_AE_DIFFUSERS, by
 * cd_ckpt_inspect). groups: GroupNorm groups, 0 = 32. On error *out = NULL. */
cd_status cd_ae_decoder_bind(cd_ctx *ctx, const cd_ckpt *ck, int groups, cd_ae_decoder **out);
/* cd_ckpt_open + cd_ae_decoder_bind + cd_ckpt_close. */
cd_status cd_ae_decoder_load(cd_ctx *ctx, const char *path, int groups, cd_ae_decoder **out);
void cd_ae_decoder_free(cd_ae_decoder *ae);
/* A decoder with random weights of config cfg (benchmarks): uniform weights of variance
 * 1/fan_in, norm scales around 1, small biases; the same seed gives the same weights. */
cd_status cd_ae_decoder_random(cd_ctx *ctx, const cd_ae_config *cfg, int groups, uint64_t seed, cd_ae_decoder **out);

/* Runs the decoder on ops from now on: uploads its weights into ops's memory once when that is
 * not host memory (freeing a previous device copy). ctx must outlive the decoder's copy (it frees
 * it). No-op when ops is already the decoder's table. */
cd_status cd_ae_decoder_set_ops(cd_ctx *ctx, cd_ae_decoder *ae, const struct cd_ops *ops);

/* Output height/width factor: 2^(n_mult - 1) (FLUX: 8). */
int cd_ae_upscale(const cd_ae_decoder *ae);

/* z [z_channels, h, w] f32 host (the sampler's latent, BEFORE scale and shift: they are applied
 * here) -> out [out_channels, h * up, w * up] f32 host (up = cd_ae_upscale; values around [-1, 1]).
 * Scratch is allocated per call in ae->ops's memory (cd_ae_decode_scratch: three activation
 * buffers of the largest stage plus the mid attention's q, k, v, o, and the input and output);
 * the convolutions' own scratch (im2col bands on the CPU) is the context's work area. For large
 * images see cd_ae_decode_tiled. */
cd_status cd_ae_decode(cd_ctx *ctx, const cd_ae_decoder *ae, const float *z, int h, int w, float *out);

/* The encoder: blocks of level lvl at [lvl * num_res_blocks + j]; down_* of levels < n-1. */
typedef struct cd_ae_encoder {
    cd_ae_config cfg;
    int32_t groups;
    const float *conv_in_w, *conv_in_b;
    cd_ae_resnet *blocks;
    const float *down_w[8], *down_b[8];
    cd_ae_resnet mid1, mid2;
    cd_ae_attn attn;
    const float *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b; /* conv_out: 2 z channels */
    float *arena;
    size_t arena_floats;
    const struct cd_ops *ops; /* as the decoder's */
    float *dev;
    cd_ctx *dev_ctx;
} cd_ae_encoder;

/* As the decoder's: binds the encoder of ck (every channel count, ch included, must be divisible
 * by groups; 0 = 32). On error *out = NULL. */
cd_status cd_ae_encoder_bind(cd_ctx *ctx, const cd_ckpt *ck, int groups, cd_ae_encoder **out);
cd_status cd_ae_encoder_load(cd_ctx *ctx, const char *path, int groups, cd_ae_encoder **out);
void cd_ae_encoder_free(cd_ae_encoder *ae);
cd_status cd_ae_encoder_set_ops(cd_ctx *ctx, cd_ae_encoder *ae, const struct cd_ops *ops);

/* Input height/width divisor: 2^(n_mult - 1) (FLUX: 8). */
int cd_ae_downscale(const cd_ae_encoder *ae);

/* img [in_channels, H, W] f32 in [-1, 1] -> out [z_channels, H / down, W / down] f32 =
 * 0.3611 * (mean - 0.1159) (down = cd_ae_downscale; the latent the sampler works on, the inverse
 * of what cd_ae_decode undoes). H and W must be positive multiples of down (CD_ERR_INVALID_ARG
 * otherwise). Scratch per call as cd_ae_decode's. */
cd_status cd_ae_encode(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W, float *out);

/* ---- tiled decode / encode (ae_tile.c) -------------------------------------------------------
 *
 * Exactly diffusers' AutoencoderKL with use_tiling (v0.42.1 tiled_decode / _tiled_encode):
 * tile_sample_min_size S = tile, tile_latent_min_size L = tile / up, tile_overlap_factor f =
 * overlap. Tiling happens only when the input exceeds the tile in either dimension (decode: h > L
 * or w > L; encode: H > S or W > S); otherwise the call is cd_ae_decode / cd_ae_encode, bit for
 * bit. Tiles start every `ov` input units (decode ov = int(L (1 - f)) latent cells, encode
 * ov = int(S (1 - f)) pixels), are L (S) wide or smaller at the right and bottom edges, and are
 * decoded (encoded) alone; in row-major order each tile is blended in place with the tile above
 * (blend_v) and then the tile to its left (blend_h), both ALREADY blended, over
 * e = min(neighbour side, own side, be) rows / columns (be = int(S f) pixels when decoding,
 * int(L f) latent cells when encoding): row y < e becomes above[side - e + y] (1 - y/e) +
 * own[y] (y/e); then its top-left row_limit x row_limit (row_limit = S - be, resp. L - be) goes
 * into the output. Encoding blends the means (diffusers blends all 2 z moments and takes the
 * mode; blending is per channel, so that is the same) and applies 0.3611 (mean - 0.1159) after.
 *
 * The output has the untiled shape only when the tile stride equals the crop (decode:
 * ov * up == S - be; encode: ov == (L - be) * down); diffusers silently returns a differently
 * sized, misaligned image otherwise, so such (tile, overlap) pairs are refused. Every S that is a
 * multiple of 4 * up works with f = 0.25 (the default) and every multiple of 2 * up with 0.5.
 *
 * Memory: one tile's scratch (cd_ae_*_scratch of the largest tile, allocated once per call and
 * reused by every tile), one decoded tile, and the strips later tiles blend with (the previous
 * tile row's bottom strips, about C * be * W / (1 - f) floats, and the left neighbour's right
 * strip, C * S * be) besides `out`: never all tiles at once. */
typedef struct {
    int32_t tile;  /* tile side in PIXELS (image space), a positive multiple of the AE's up /
                       * down factor (FLUX: 8); 0 = never tile */
    float overlap; /* fraction of the tile shared with each neighbour, in (0, 1); 0 = 0.25.
                       * Used as the double of this float (0.3f is not 0.3) */
} cd_ae_tiling;

/* Same contracts as cd_ae_decode / cd_ae_encode; t == NULL or t->tile == 0: untiled.
 * CD_ERR_INVALID_ARG for a tile that is negative or not a multiple of the factor, an overlap
 * outside (0, 1), or a (tile, overlap) pair whose stride is not its crop (see above). */
cd_status cd_ae_decode_tiled(cd_ctx *ctx, const cd_ae_decoder *ae, const float *z, int h, int w, const cd_ae_tiling *t,
                             float *out);
cd_status cd_ae_encode_tiled(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W,
                             const cd_ae_tiling *t, float *out);
/* Whether t is usable (for decoding and encoding) with factor f (up / down), before any work:
 * CD_OK, or CD_ERR_INVALID_ARG with the message the tiled calls would give. */
cd_status cd_ae_tiling_check(cd_ctx *ctx, const cd_ae_tiling *t, int f);

/* Scratch of one untiled decode or encode, in floats: three activation buffers of `act` floats
 * (the largest stage) and the mid attention's q, k, v, o (`attn` floats). Both grow with the
 * image, so the size for the largest tile serves every smaller tile. */
typedef struct {
    size_t act, attn;
} cd_ae_scratch;

static inline size_t cd_ae_scratch_floats(cd_ae_scratch s) { return 3 * s.act + s.attn; }
cd_ae_scratch cd_ae_decode_scratch(const cd_ae_decoder *ae, int h, int w);
cd_ae_scratch cd_ae_encode_scratch(const cd_ae_encoder *ae, int H, int W);

/* The forward on caller-provided scratch mem [cd_ae_scratch_floats(sc)], sc at least the size for
 * (h, w) / (H, W); every pointer in ae->ops's memory; arguments are not checked (the callers do).
 * Decode: zz [z_channels, h, w] is the latent AFTER scale and shift (z / 0.3611 + 0.1159) -> out
 * [out_channels, h up, w up]. Encode: img [in_channels, H, W] -> out [2 z_channels, H / down,
 * W / down], the moments (mean first, before the latent's scale and shift; then logvar). */
cd_status cd_ae_decode_run(cd_ctx *ctx, const cd_ae_decoder *ae, const float *zz, int h, int w, cd_ae_scratch sc,
                           float *mem, float *out);
cd_status cd_ae_encode_run(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W, cd_ae_scratch sc,
                           float *mem, float *out);

#endif
