/* ae_tile.c — tiled decoding and encoding of the FLUX autoencoder with overlap blending, exactly
 * diffusers' AutoencoderKL tiled_decode / _tiled_encode (ae.h has the rules), in bounded memory.
 *
 * ref: diffusers 0.42.1 models/autoencoders/autoencoder_kl.py: _encode / _decode (when to tile),
 * blend_v, blend_h, _tiled_encode, tiled_decode.
 *
 * diffusers first runs every tile, keeps them all, then blends them in place in row-major order
 * and concatenates the crops. Blending tile (i, j) reads only the bottom rows of the already
 * blended tile (i-1, j) and the right columns of the already blended tile (i, j-1), and those
 * rows / columns lie outside both neighbours' crops. So here each tile is run, blended and
 * cropped straight into `out` before the next one, and only those strips are kept: the bottom
 * strip of every tile of the previous tile row and the right strip of the left neighbour.
 *
 * Everything below works in OUTPUT units (pixels when decoding, latent cells when encoding):
 * tile side T (S, resp. L), blend extent be, crop rl = T - be, which is also the stride (checked),
 * so tile (ti, tj) covers out rows ti * rl .. + min(T, OH - ti * rl) and its crop lands there.
 *
 * Tiles are cut, blended and cropped on the host; each runs in the autoencoder's ops memory
 * (uploaded in, downloaded out: plain copies on the CPU backends). */
#include "ae.h"
#include "../ops/ops.h"

#include <stdlib.h>
#include <string.h>

/* The blending state of one tiled call, in output units. */
typedef struct {
    int threads;
    int C;         /* output channels (image channels, or the latent's z channels) */
    int T, be, rl; /* tile side, blend extent, crop (= stride) */
    int OH, OW;    /* output size */
    int Tw;        /* widest tile: min(T, OW) */
    int latent;    /* 1: out = 0.3611 (v - 0.1159) (encoding), else out = v */
    float *vs;     /* bottom strips of the previous tile row: column tj at vs + tj * C*be*Tw,
                       * [C, vh[tj], tile width] */
    int *vh;       /* rows kept per column: min(be, that tile's height) */
    float *hs;     /* right strip of the left neighbour [C, tile height, hw] */
    int hw;        /* columns kept: min(be, its width) */
} tiler;

static int imin(int a, int b) { return a < b ? a : b; }

/* t [C, th, tw], the run tile (ti, tj): blend_v with the tile above, blend_h with the tile to the
 * left (both already blended, through their kept strips), keep its own bottom and right strips
 * for the tiles after it, and write its crop [C, min(th, rl), min(tw, rl)] to out [C, OH, OW].
 * The blend itself in double (diffusers' oracle is float64), rounded once. */
static void blend_tile(tiler *g, int ti, int tj, float *t, int th, int tw, float *out) {
    const int C = g->C;
    const size_t plane = (size_t)th * tw;
    float *vs = g->vs + (size_t)tj * C * g->be * g->Tw; /* [C, vh[tj], tw] */
    if (ti > 0) {
        /* blend_v: e = min(above height, th, be) = min(kept rows, th) */
        const int ah = g->vh[tj], e = imin(ah, th);
#pragma omp parallel for num_threads(g->threads) schedule(static)
        for (int cy = 0; cy < C * e; cy++) {
            const int c = cy / e, y = cy % e;
            const double wb = (double)y / e, wa = 1.0 - wb;
            const float *a = vs + ((size_t)c * ah + (ah - e + y)) * tw;
            float *b = t + c * plane + (size_t)y * tw;
            for (int x = 0; x < tw; x++) b[x] = (float)(a[x] * wa + b[x] * wb);
        }
    }
    if (tj > 0) {
        /* blend_h: the left tile has the same height; e = min(kept columns, tw) */
        const int lw = g->hw, e = imin(lw, tw);
#pragma omp parallel for num_threads(g->threads) schedule(static)
        for (int cy = 0; cy < C * th; cy++) {
            const float *a = g->hs + (size_t)cy * lw + (lw - e);
            float *b = t + (size_t)cy * tw;
            for (int x = 0; x < e; x++) {
                const double wb = (double)x / e;
                b[x] = (float)(a[x] * (1.0 - wb) + b[x] * wb);
            }
        }
    }
    /* keep: the last min(be, th) rows for the tile below, the last min(be, tw) columns for the
     * tile to the right (this tile is now fully blended: diffusers blends in place) */
    const int kh = imin(g->be, th), kw = imin(g->be, tw);
    for (int c = 0; c < C; c++)
        memcpy(vs + (size_t)c * kh * tw, t + c * plane + (size_t)(th - kh) * tw, (size_t)kh * tw * sizeof(float));
    g->vh[tj] = kh;
    for (size_t cy = 0; cy < (size_t)C * th; cy++)
        memcpy(g->hs + cy * kw, t + cy * tw + (tw - kw), (size_t)kw * sizeof(float));
    g->hw = kw;
    /* crop */
    const int ch = imin(th, g->rl), cw = imin(tw, g->rl), oy = ti * g->rl, ox = tj * g->rl;
    const int latent = g->latent;
#pragma omp parallel for num_threads(g->threads) schedule(static)
    for (int cy = 0; cy < C * ch; cy++) {
        const int c = cy / ch, y = cy % ch;
        const float *src = t + c * plane + (size_t)y * tw;
        float *dst = out + ((size_t)c * g->OH + oy + y) * g->OW + ox;
        if (latent)
            for (int x = 0; x < cw; x++) dst[x] = CD_AE_SCALE * (src[x] - CD_AE_SHIFT);
        else
            memcpy(dst, src, (size_t)cw * sizeof(float));
    }
}

/* Checks t against the factor f (up or down) and derives, as diffusers does, the tile side S in
 * pixels, the stride ov in input units (int(in_tile (1 - overlap))), the blend extent be and crop
 * rl in output units. enc: encoding (input pixels, output latent) else decoding. */
static cd_status geometry(cd_ctx *ctx, const cd_ae_tiling *t, int f, int enc, int *S, int *ov, int *be, int *rl) {
    if (t->tile < 0 || t->tile % f)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "ae: tile %d must be a positive multiple of %d pixels (0 = no tiling)", (int)t->tile, f);
    const double ovl = t->overlap == 0.0f ? 0.25 : (double)t->overlap;
    if (!(ovl > 0 && ovl < 1))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: tile overlap %g must be in (0, 1)", ovl);
    const int s = t->tile, l = s / f;
    const int in_tile = enc ? s : l, out_tile = enc ? l : s;
    *S = s;
    *ov = (int)(in_tile * (1.0 - ovl));
    *be = (int)(out_tile * ovl);
    *rl = out_tile - *be;
    /* the stride in output units must be the crop, else diffusers' result is not the input's
     * size (it concatenates crops of rl taken every ov) */
    const int64_t stride_out = enc ? *ov / f : (int64_t)*ov * f;
    if (*ov < 1 || (enc && *ov % f) || stride_out != *rl)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "ae: tile %d with overlap %g: the tile stride (%g px) is not the crop "
                            "(%d px), so the output would not have the input's size (overlap 0.25 "
                            "works with tiles that are multiples of %d, 0.5 with multiples of %d)",
                            s, ovl, enc ? (double)*ov : (double)*ov * f, enc ? *rl * f : *rl, 4 * f, 2 * f);
    return CD_OK;
}

/* The buffers of a tiled call: on the host one block for the input tile (in_floats), the output
 * tile and the strips of g (set up here); in ops's memory one block for the run scratch, the input
 * tile and the run's output (run_out floats). CD_OK or the error, with nothing left allocated. */
typedef struct {
    float *host, *in, *out;        /* host block, its input and output tiles */
    float *dev, *din, *dout, *scr; /* ops's block: input, run output, run scratch */
} tile_mem;

static cd_status alloc_tiler(cd_ctx *ctx, const cd_ops *ops, tiler *g, cd_ae_scratch sc, size_t in_floats,
                             size_t run_out, tile_mem *m) {
    memset(m, 0, sizeof *m);
    const int Th = imin(g->T, g->OH);
    g->Tw = imin(g->T, g->OW);
    const int ncol = (g->OW + g->rl - 1) / g->rl;
    const size_t tile = (size_t)g->C * Th * g->Tw;
    const size_t vs = (size_t)ncol * g->C * g->be * g->Tw, hs = (size_t)g->C * Th * g->be;
    const size_t scr = cd_ae_scratch_floats(sc);
    m->host = malloc((in_floats + tile + vs + hs) * sizeof(float));
    g->vh = calloc((size_t)ncol, sizeof(int));
    if (!m->host || !g->vh) {
        free(m->host);
        free(g->vh);
        return cd_set_error(ctx, CD_ERR_OOM, "ae: out of memory for a %dx%d tiled output", g->OH, g->OW);
    }
    void *p = NULL;
    const cd_status s = ops->alloc(ctx, (scr + in_floats + run_out) * sizeof(float), &p);
    if (s) {
        free(m->host);
        free(g->vh);
        return s;
    }
    m->in = m->host;
    m->out = m->in + in_floats;
    g->vs = m->out + tile;
    g->hs = g->vs + vs;
    m->dev = p;
    m->scr = m->dev;
    m->din = m->scr + scr;
    m->dout = m->din + in_floats;
    return CD_OK;
}

static void free_tiler(cd_ctx *ctx, const cd_ops *ops, tiler *g, tile_mem *m) {
    ops->free(ctx, m->dev);
    free(m->host);
    free(g->vh);
}

/* dst [C, th, tw] = src [C, H, W] at (i, j). */
static void crop_in(const float *src, int C, int H, int W, int i, int j, int th, int tw, float *dst) {
    for (size_t cy = 0; cy < (size_t)C * th; cy++) {
        const size_t c = cy / th, y = cy % th;
        memcpy(dst + cy * tw, src + (c * H + i + y) * W + j, (size_t)tw * sizeof(float));
    }
}

cd_status cd_ae_decode_tiled(cd_ctx *ctx, const cd_ae_decoder *ae, const float *z, int h, int w, const cd_ae_tiling *t,
                             float *out) {
    if (!t || t->tile == 0) return cd_ae_decode(ctx, ae, z, h, w, out);
    const int up = cd_ae_upscale(ae), zc = ae->cfg.z_channels;
    int S, ov, be, rl;
    cd_status s = geometry(ctx, t, up, 0, &S, &ov, &be, &rl);
    if (s) return s;
    const int L = S / up;
    /* diffusers' _decode: tiles only when the latent is larger than a tile */
    if (h <= L && w <= L) return cd_ae_decode(ctx, ae, z, h, w, out);
    if (h < 1 || w < 1 || (int64_t)h * up > 65536 || (int64_t)w * up > 65536)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "ae: latent %dx%d out of range", h, w);
    tiler g = {.threads = cd_ctx_threads(ctx),
               .C = ae->cfg.out_channels,
               .T = S,
               .be = be,
               .rl = rl,
               .OH = h * up,
               .OW = w * up,
               .latent = 0};
    const cd_ops *ops = ae->ops;
    const cd_ae_scratch sc = cd_ae_decode_scratch(ae, imin(L, h), imin(L, w));
    const size_t nzt = (size_t)zc * imin(L, h) * imin(L, w);
    tile_mem m;
    if ((s = alloc_tiler(ctx, ops, &g, sc, nzt, (size_t)g.C * imin(S, g.OH) * imin(S, g.OW), &m))) return s;
    for (int ti = 0; ti * ov < h && !s; ti++) {
        const int i = ti * ov, th = imin(L, h - i);
        for (int tj = 0; tj * ov < w && !s; tj++) {
            const int j = tj * ov, tw = imin(L, w - j);
            const size_t nin = (size_t)zc * th * tw, nout = (size_t)g.C * th * up * tw * up;
            crop_in(z, zc, h, w, i, j, th, tw, m.in);                                       /* [zc, th, tw] */
            for (size_t e = 0; e < nin; e++) m.in[e] = m.in[e] / CD_AE_SCALE + CD_AE_SHIFT; /* ae.h */
            s = ops->upload(ctx, m.din, m.in, nin * sizeof(float));
            if (!s) s = cd_ae_decode_run(ctx, ae, m.din, th, tw, sc, m.scr, m.dout); /* [C, th up, tw up] */
            if (!s) s = ops->download(ctx, m.out, m.dout, nout * sizeof(float));
            if (!s) blend_tile(&g, ti, tj, m.out, th * up, tw * up, out);
        }
    }
    free_tiler(ctx, ops, &g, &m);
    return s;
}

cd_status cd_ae_encode_tiled(cd_ctx *ctx, const cd_ae_encoder *ae, const float *img, int H, int W,
                             const cd_ae_tiling *t, float *out) {
    if (!t || t->tile == 0) return cd_ae_encode(ctx, ae, img, H, W, out);
    const int dn = cd_ae_downscale(ae), cin = ae->cfg.in_channels;
    int S, ov, be, rl;
    cd_status s = geometry(ctx, t, dn, 1, &S, &ov, &be, &rl);
    if (s) return s;
    /* diffusers' _encode: tiles only when the image is larger than a tile */
    if (H <= S && W <= S) return cd_ae_encode(ctx, ae, img, H, W, out);
    if (H < 1 || W < 1 || H > 65536 || W > 65536 || H % dn || W % dn)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "ae: image %dx%d: height and width must be positive multiples of %d "
                            "(at most 65536)",
                            H, W, dn);
    /* ov is a multiple of dn (geometry) and so is H: every tile's sides are multiples of dn */
    tiler g = {.threads = cd_ctx_threads(ctx),
               .C = ae->cfg.z_channels,
               .T = S / dn,
               .be = be,
               .rl = rl,
               .OH = H / dn,
               .OW = W / dn,
               .latent = 1};
    const cd_ops *ops = ae->ops;
    const cd_ae_scratch sc = cd_ae_encode_scratch(ae, imin(S, H), imin(S, W));
    const size_t nxt = (size_t)cin * imin(S, H) * imin(S, W);
    tile_mem m;
    if ((s = alloc_tiler(ctx, ops, &g, sc, nxt, 2 * (size_t)g.C * imin(S / dn, g.OH) * imin(S / dn, g.OW), &m)))
        return s;
    for (int ti = 0; ti * ov < H && !s; ti++) {
        const int i = ti * ov, th = imin(S, H - i);
        for (int tj = 0; tj * ov < W && !s; tj++) {
            const int j = tj * ov, tw = imin(S, W - j);
            crop_in(img, cin, H, W, i, j, th, tw, m.in); /* [cin, th, tw] */
            s = ops->upload(ctx, m.din, m.in, (size_t)cin * th * tw * sizeof(float));
            if (!s) s = cd_ae_encode_run(ctx, ae, m.din, th, tw, sc, m.scr, m.dout); /* moments */
            /* the mean [z, th/dn, tw/dn]: the moments' first z channels */
            if (!s) s = ops->download(ctx, m.out, m.dout, (size_t)g.C * (th / dn) * (tw / dn) * sizeof(float));
            if (!s) blend_tile(&g, ti, tj, m.out, th / dn, tw / dn, out);
        }
    }
    free_tiler(ctx, ops, &g, &m);
    return s;
}

cd_status cd_ae_tiling_check(cd_ctx *ctx, const cd_ae_tiling *t, int f) {
    if (!t || t->tile == 0) return CD_OK;
    int S, ov, be, rl;
    cd_status s = geometry(ctx, t, f, 0, &S, &ov, &be, &rl);
    return s ? s : geometry(ctx, t, f, 1, &S, &ov, &be, &rl);
}
