/* layout_ae.c — the FLUX autoencoder in BFL names (flux/modules/autoencoder.py: Encoder, Decoder,
 * ResnetBlock, AttnBlock, Downsample, Upsample) and in diffusers AutoencoderKL names
 * (convert_ldm_vae_checkpoint in diffusers/loaders/single_file_utils.py), as one set of rules
 * used in both directions (layout.h), plus the config inference from tensor shapes.
 *
 * ref: docs/flux.md section 6. The correspondences:
 *   encoder.down.i.block.j          <-> encoder.down_blocks.i.resnets.j
 *   encoder.down.i.downsample.conv  <-> encoder.down_blocks.i.downsamplers.0.conv
 *   decoder.up.(n-1-i).block.j      <-> decoder.up_blocks.i.resnets.j      (order reversed)
 *   decoder.up.(n-1-i).upsample.conv <-> decoder.up_blocks.i.upsamplers.0.conv
 *   *.mid.block_{1,2}               <-> *.mid_block.resnets.{0,1}
 *   *.mid.attn_1.{norm,q,k,v,proj_out} <-> *.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,
 *                                      to_out.0}   (1x1 conv [C,C,1,1] <-> linear [C,C])
 *   nin_shortcut <-> conv_shortcut ; norm_out <-> conv_norm_out ; conv_in, conv_out unchanged.
 * The FLUX AE has no quant_conv / post_quant_conv. Level i has C_i = ch * ch_mult[i] channels; the
 * encoder has num_res_blocks ResnetBlocks per level, the decoder num_res_blocks + 1. A
 * ResnetBlock whose in and out channels differ has the 1x1 shortcut. */
#include "layout.h"

#include <stdarg.h>
#include <stdio.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define ALL2(s) \
    { s, s }

static const lay_rule k_resnet[] = {
    {RK_AFFINE, {"norm1", "norm1"}, ALL2(SYM_CIN), SYM_ALL, {0, 0}, SYM_ALL},
    {RK_CONV3, {"conv1", "conv1"}, ALL2(SYM_COUT), SYM_CIN, {0, 0}, SYM_ALL},
    {RK_AFFINE, {"norm2", "norm2"}, ALL2(SYM_COUT), SYM_ALL, {0, 0}, SYM_ALL},
    {RK_CONV3, {"conv2", "conv2"}, ALL2(SYM_COUT), SYM_COUT, {0, 0}, SYM_ALL},
};
static const lay_rule k_shortcut[] = {
    {RK_CONV1, {"nin_shortcut", "conv_shortcut"}, ALL2(SYM_COUT), SYM_CIN, {0, 0}, SYM_ALL},
};
static const lay_rule k_attn[] = {
    {RK_AFFINE, {"norm", "group_norm"}, ALL2(SYM_C), SYM_ALL, {0, 0}, SYM_ALL},
    {RK_CONV1_LIN, {"q", "to_q"}, ALL2(SYM_C), SYM_C, {0, 0}, SYM_ALL},
    {RK_CONV1_LIN, {"k", "to_k"}, ALL2(SYM_C), SYM_C, {0, 0}, SYM_ALL},
    {RK_CONV1_LIN, {"v", "to_v"}, ALL2(SYM_C), SYM_C, {0, 0}, SYM_ALL},
    {RK_CONV1_LIN, {"proj_out", "to_out.0"}, ALL2(SYM_C), SYM_C, {0, 0}, SYM_ALL},
};
static const lay_rule k_downsample[] = {
    {RK_CONV3, {"downsample.conv", "downsamplers.0.conv"}, ALL2(SYM_C), SYM_C, {0, 0}, SYM_ALL},
};
static const lay_rule k_upsample[] = {
    {RK_CONV3, {"upsample.conv", "upsamplers.0.conv"}, ALL2(SYM_C), SYM_C, {0, 0}, SYM_ALL},
};
/* conv_in: C out of IN (encoder: ch out of image channels; decoder: C_last out of z). */
static const lay_rule k_conv_in[] = {
    {RK_CONV3, {"conv_in", "conv_in"}, ALL2(SYM_C), SYM_IN, {0, 0}, SYM_ALL},
};
/* norm_out over C, conv_out to OUT (encoder: 2 z, mean and logvar; decoder: image channels). */
static const lay_rule k_end[] = {
    {RK_AFFINE, {"norm_out", "conv_norm_out"}, ALL2(SYM_C), SYM_ALL, {0, 0}, SYM_ALL},
    {RK_CONV3, {"conv_out", "conv_out"}, ALL2(SYM_OUT), SYM_C, {0, 0}, SYM_ALL},
};

/* Prefix text per side; NULL for a side that is not wanted. */
typedef struct {
    int sides;
    char buf[2][96];
    const char *pre[2];
} prefixes;

/* Sets the prefix of one side (printf-style); the side stays NULL when it is not wanted. */
__attribute__((format(printf, 3, 4))) static void pref(prefixes *x, int side, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->buf[side], sizeof x->buf[side], fmt, ap);
    va_end(ap);
    x->pre[side] = x->sides & (1 << side) ? x->buf[side] : NULL;
}

static int emit(lay_plan *p, const prefixes *x, const lay_rule *r, size_t n, const lay_env *e) {
    return lay_plan_emit(p, r, n, x->pre, e);
}

static int resnet(lay_plan *p, const prefixes *x, lay_env *e, int64_t cin, int64_t cout) {
    e->v[SYM_CIN] = cin;
    e->v[SYM_COUT] = cout;
    if (emit(p, x, k_resnet, N_OF(k_resnet), e)) return -1;
    return cin != cout ? emit(p, x, k_shortcut, N_OF(k_shortcut), e) : 0;
}

/* mid.block_1, mid.attn_1, mid.block_2 of the encoder or decoder at C channels. */
static int mid(lay_plan *p, int sides, const char *part, lay_env *e, int64_t c) {
    prefixes x = {.sides = sides};
    for (int k = 0; k < 2; k++) {
        pref(&x, LAY_BFL, "%s.mid.block_%d.", part, k + 1);
        pref(&x, LAY_DIF, "%s.mid_block.resnets.%d.", part, k);
        if (resnet(p, &x, e, c, c)) return -1;
        if (k == 0) {
            pref(&x, LAY_BFL, "%s.mid.attn_1.", part);
            pref(&x, LAY_DIF, "%s.mid_block.attentions.0.", part);
            e->v[SYM_C] = c;
            if (emit(p, &x, k_attn, N_OF(k_attn), e)) return -1;
        }
    }
    return 0;
}

static int encoder(const cd_ae_config *a, int sides, lay_plan *p, lay_env *e) {
    prefixes x = {.sides = sides};
    const int n = a->n_mult;
    pref(&x, LAY_BFL, "encoder.");
    pref(&x, LAY_DIF, "encoder.");
    e->v[SYM_C] = a->ch;
    e->v[SYM_IN] = a->in_channels;
    if (emit(p, &x, k_conv_in, N_OF(k_conv_in), e)) return -1;
    int64_t cin = a->ch;
    for (int i = 0; i < n; i++) {
        const int64_t c = (int64_t)a->ch * a->ch_mult[i];
        for (int j = 0; j < a->num_res_blocks; j++) {
            pref(&x, LAY_BFL, "encoder.down.%d.block.%d.", i, j);
            pref(&x, LAY_DIF, "encoder.down_blocks.%d.resnets.%d.", i, j);
            if (resnet(p, &x, e, cin, c)) return -1;
            cin = c;
        }
        if (i != n - 1) {
            pref(&x, LAY_BFL, "encoder.down.%d.", i);
            pref(&x, LAY_DIF, "encoder.down_blocks.%d.", i);
            e->v[SYM_C] = c;
            if (emit(p, &x, k_downsample, N_OF(k_downsample), e)) return -1;
        }
    }
    if (mid(p, sides, "encoder", e, cin)) return -1;
    pref(&x, LAY_BFL, "encoder.");
    pref(&x, LAY_DIF, "encoder.");
    e->v[SYM_C] = cin;
    e->v[SYM_OUT] = 2 * (int64_t)a->z_channels;
    return emit(p, &x, k_end, N_OF(k_end), e);
}

static int decoder(const cd_ae_config *a, int sides, lay_plan *p, lay_env *e) {
    prefixes x = {.sides = sides};
    const int n = a->n_mult;
    int64_t cin = (int64_t)a->ch * a->ch_mult[n - 1];
    pref(&x, LAY_BFL, "decoder.");
    pref(&x, LAY_DIF, "decoder.");
    e->v[SYM_C] = cin;
    e->v[SYM_IN] = a->z_channels;
    if (emit(p, &x, k_conv_in, N_OF(k_conv_in), e)) return -1;
    if (mid(p, sides, "decoder", e, cin)) return -1;
    for (int lvl = n - 1; lvl >= 0; lvl--) { /* BFL processes up.(n-1) first = up_blocks.0 */
        const int k = n - 1 - lvl;
        const int64_t c = (int64_t)a->ch * a->ch_mult[lvl];
        for (int j = 0; j < a->num_res_blocks + 1; j++) {
            pref(&x, LAY_BFL, "decoder.up.%d.block.%d.", lvl, j);
            pref(&x, LAY_DIF, "decoder.up_blocks.%d.resnets.%d.", k, j);
            if (resnet(p, &x, e, cin, c)) return -1;
            cin = c;
        }
        if (lvl != 0) {
            pref(&x, LAY_BFL, "decoder.up.%d.", lvl);
            pref(&x, LAY_DIF, "decoder.up_blocks.%d.", k);
            e->v[SYM_C] = c;
            if (emit(p, &x, k_upsample, N_OF(k_upsample), e)) return -1;
        }
    }
    pref(&x, LAY_BFL, "decoder.");
    pref(&x, LAY_DIF, "decoder.");
    e->v[SYM_C] = cin;
    e->v[SYM_OUT] = a->out_channels;
    return emit(p, &x, k_end, N_OF(k_end), e);
}

int lay_ae_plan(const cd_ae_config *a, int sides, lay_plan *p) {
    if (a->n_mult < 1 || a->n_mult > 8) return -1;
    lay_env e;
    memset(&e, 0, sizeof e);
    if (a->has_encoder && encoder(a, sides, p, &e)) return -1;
    if (a->has_decoder && decoder(a, sides, p, &e)) return -1;
    return 0;
}

/* ---- config inference ---------------------------------------------------------------------- */

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Reports the tensor that would have given a field, and fails. */
__attribute__((format(printf, 2, 3))) static int need_fail(char *need, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(need, LAY_NAME_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

/* Channels of level `lvl` (C_i = ch * ch_mult[i]): a vote of the first ResnetBlock's conv1,
 * norm2 and conv2 in the encoder and in the decoder. 0 when none is present. */
static int64_t level_channels(const cd_ckpt *c, int side, int n, int lvl) {
    static const char *const part[3] = {"conv1.weight", "norm2.weight", "conv2.weight"};
    char names[6][96];
    lay_probe p[6];
    for (int i = 0; i < 3; i++) {
        if (side == LAY_BFL) {
            snprintf(names[i], 96, "encoder.down.%d.block.0.%s", lvl, part[i]);
            snprintf(names[3 + i], 96, "decoder.up.%d.block.0.%s", lvl, part[i]);
        } else {
            snprintf(names[i], 96, "encoder.down_blocks.%d.resnets.0.%s", lvl, part[i]);
            snprintf(names[3 + i], 96, "decoder.up_blocks.%d.resnets.0.%s", n - 1 - lvl, part[i]);
        }
    }
    for (int i = 0; i < 6; i++) p[i] = (lay_probe){names[i], 0, 0, 0};
    return lay_vote(c, p, 6, 0);
}

int lay_ae_infer(const cd_ckpt *c, int side, cd_ae_config *a, char *need) {
    memset(a, 0, sizeof *a);
    need[0] = 0;
    const int bfl = side == LAY_BFL;
    /* printf patterns of a level's ResnetBlocks, encoder and decoder */
    const char *enc_blk = bfl ? "encoder.down.%d.block." : "encoder.down_blocks.%d.resnets.";
    const char *dec_blk = bfl ? "decoder.up.%d.block." : "decoder.up_blocks.%d.resnets.";
    a->has_encoder = lay_has_prefix(c, "encoder.");
    a->has_decoder = lay_has_prefix(c, "decoder.");
    const int enc = a->has_encoder || !a->has_decoder; /* which part names a missing tensor */
    const int32_t n_enc = a->has_encoder ? lay_count_blocks(c, bfl ? "encoder.down." : "encoder.down_blocks.") : 0;
    const int32_t n_dec = a->has_decoder ? lay_count_blocks(c, bfl ? "decoder.up." : "decoder.up_blocks.") : 0;
    int32_t n = n_enc ? n_enc : n_dec;
    if (n > 8) n = 8; /* cd_ae_config holds 8 levels; deeper names show up as unknown */
    char pre[96];
    if (n < 1) {
        snprintf(pre, sizeof pre, enc ? enc_blk : dec_blk, 0);
        return need_fail(need, "%s0.conv1.weight", pre);
    }
    a->n_mult = n;

    /* Blocks per level: the encoder has num_res_blocks, the decoder one more. */
    int32_t rb_enc = 0, rb_dec = 0;
    for (int i = 0; i < n; i++) {
        snprintf(pre, sizeof pre, enc_blk, i);
        int32_t b = a->has_encoder ? lay_count_blocks(c, pre) : 0;
        if (b > rb_enc) rb_enc = b;
        snprintf(pre, sizeof pre, dec_blk, i);
        b = a->has_decoder ? lay_count_blocks(c, pre) : 0;
        if (b > rb_dec) rb_dec = b;
    }
    a->num_res_blocks = rb_enc ? rb_enc : rb_dec - 1;
    if (a->num_res_blocks < 1) {
        snprintf(pre, sizeof pre, enc ? enc_blk : dec_blk, 0);
        return need_fail(need, "%s%d.conv1.weight", pre, enc ? 0 : 1);
    }

    int64_t lvl[8], g = 0;
    for (int i = 0; i < n; i++) {
        lvl[i] = level_channels(c, side, n, i);
        if (!lvl[i]) {
            snprintf(pre, sizeof pre, enc ? enc_blk : dec_blk, enc || bfl ? i : n - 1 - i);
            return need_fail(need, "%s0.conv1.weight", pre);
        }
        g = gcd64(g, lvl[i]);
    }
    static const lay_probe k_ch[] = {{"encoder.conv_in.weight", 0, 0, 0}, {"encoder.conv_in.bias", 0, 0, 0}};
    static const lay_probe k_in[] = {{"encoder.conv_in.weight", 1, 0, 0}};
    static const lay_probe k_out[] = {{"decoder.conv_out.weight", 0, 0, 0}, {"decoder.conv_out.bias", 0, 0, 0}};
    static const lay_probe k_z[] = {
        {"decoder.conv_in.weight", 1, 0, 0}, {"encoder.conv_out.weight", 0, 0, 2}, {"encoder.conv_out.bias", 0, 0, 2}};
    /* Without the encoder only the products ch * ch_mult[i] exist: ch = their gcd. */
    int64_t ch = a->has_encoder ? lay_vote(c, k_ch, N_OF(k_ch), 0) : g;
    if (!ch) return need_fail(need, "%s", k_ch[0].name);
    /* ch_mult must be whole: otherwise fall back to a common divisor, and conv_in shows up as
     * wrong-shaped rather than the whole model. */
    for (int i = 0; i < n; i++)
        if (lvl[i] % ch) ch = gcd64(ch, lvl[i]);
    a->ch = (int32_t)ch;
    for (int i = 0; i < n; i++) a->ch_mult[i] = (int32_t)(lvl[i] / ch);
    a->z_channels = (int32_t)lay_vote(c, k_z, N_OF(k_z), 0);
    if (!a->z_channels) return need_fail(need, "%s", k_z[a->has_decoder ? 0 : 1].name);
    if (a->has_encoder && !(a->in_channels = (int32_t)lay_vote(c, k_in, N_OF(k_in), 0)))
        return need_fail(need, "%s", k_in[0].name);
    if (a->has_decoder && !(a->out_channels = (int32_t)lay_vote(c, k_out, N_OF(k_out), 0)))
        return need_fail(need, "%s", k_out[0].name);
    return 0;
}
