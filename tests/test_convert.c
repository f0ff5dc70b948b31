/* test_convert.c — cd_ckpt_convert on small FLUX-shaped checkpoints (tests/ckpt_gen.c):
 *  - BFL -> diffusers -> BFL and diffusers -> BFL -> diffusers give back the same bytes, for the
 *    transformer and the autoencoder, in F32, BF16 and F16;
 *  - the BFL <-> diffusers correspondences written out by hand from docs/flux.md (qkv chunks,
 *    linear1 = q|k|v|mlp, the swapped final adaLN halves, reversed decoder levels, 1x1 convs as
 *    linears) hold element for element;
 *  - a CLEAR merge changes exactly the trained slices (every byte of every other tensor is the
 *    base's) in both layouts, carries spatial_weight, and takes the base dtype;
 *  - --dtype bf16 rounds to nearest even like an independent reference, f32 widens exactly, from
 *    F32, BF16, F16, F8_E4M3 and F8_E5M2 sources;
 *  - every error case fails with its own message and leaves no file behind. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_gen.h"
#include "cleardit.h"
#include "test_files.h"

static const gen_flux_cfg k_small = {64, 16, 2, 3, 16, 16, 32, 24, 256, 1};
static const gen_flux_cfg k_schnell = {128, 32, 1, 2, 16, 8, 32, 24, 512, 0};
static const gen_ae_cfg k_ae = {3, 3, 8, {1, 2, 4, 4}, 4, 2, 16, 1, 1};

typedef struct {
    char dir[64];
    cd_ctx *ctx;
} fixture;

static int fx_init(fixture *f) {
    if (!tmp_dir_tag(f->dir, sizeof f->dir, "ckpt")) return 0;
    return cd_ctx_create(NULL, &f->ctx) == CD_OK;
}

static void fx_free(fixture *f) {
    cd_ctx_free(f->ctx);
    tmp_rm(f->dir);
}

static const char *fx_path(const fixture *f, const char *name, char *buf) {
    snprintf(buf, 160, "%s/%s", f->dir, name);
    return buf;
}

/* Writes the list as dir/name and opens it. */
static cd_ckpt *fx_write_open(fixture *f, const gen_list *l, const char *name) {
    char p[160];
    if (gen_write(l, fx_path(f, name, p))) return NULL;
    return gen_open(f->ctx, p);
}

/* Converts `in` to dir/name and opens the result (NULL on failure, with a test failure). */
static cd_ckpt *fx_convert(fixture *f, const cd_ckpt *in, const char *name, cd_layout to, cd_dtype dt,
                           const cd_ckpt *clear) {
    char p[160];
    cd_status s = cd_ckpt_convert(f->ctx, in, fx_path(f, name, p), to, dt, clear);
    if (s) {
        test_fail(__FILE__, __LINE__, "convert to %s: %s", name, cd_ctx_error(f->ctx));
        return NULL;
    }
    return gen_open(f->ctx, p);
}

static void roundtrip_flux(const gen_flux_cfg *cfg, cd_dtype dt) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l;
    gen_init(&l, 31);
    gen_flux_bfl(&l, cfg);
    gen_cast(&l, dt);
    char why[256], a[160], b[160];
    cd_ckpt *bfl = fx_write_open(&f, &l, "bfl.safetensors");
    cd_ckpt *dif = bfl ? fx_convert(&f, bfl, "dif.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL) : NULL;
    cd_ckpt *back = dif ? fx_convert(&f, dif, "back.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL) : NULL;
    cd_ckpt *same = bfl ? fx_convert(&f, bfl, "same.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL) : NULL;
    cd_ckpt *dif2 =
        back ? fx_convert(&f, back, "dif2.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL) : NULL;
    if (bfl && back && same && dif2) {
        EXPECT(!gen_ckpt_equal(bfl, back, why, sizeof why), "BFL -> diffusers -> BFL: %s", why);
        EXPECT(gen_files_equal(fx_path(&f, "back.safetensors", a), fx_path(&f, "same.safetensors", b)),
               "BFL -> diffusers -> BFL and BFL -> BFL files differ");
        EXPECT(!gen_ckpt_equal(dif, dif2, why, sizeof why), "diffusers -> BFL -> diffusers: %s", why);
        EXPECT(gen_files_equal(fx_path(&f, "dif.safetensors", a), fx_path(&f, "dif2.safetensors", b)),
               "diffusers -> BFL -> diffusers files differ");
        EXPECT(!strcmp(cd_ckpt_meta(dif, "cleardit_layout"), "flux-diffusers") &&
                   !strcmp(cd_ckpt_meta(back, "format"), "pt"),
               "metadata");
    }
    cd_ckpt_close(dif2);
    cd_ckpt_close(same);
    cd_ckpt_close(back);
    cd_ckpt_close(dif);
    cd_ckpt_close(bfl);
    gen_free(&l);
    fx_free(&f);
}

TEST(convert_flux_roundtrip_f32) { roundtrip_flux(&k_small, CD_DTYPE_F32); }
TEST(convert_flux_roundtrip_bf16_schnell) { roundtrip_flux(&k_schnell, CD_DTYPE_BF16); }
TEST(convert_flux_roundtrip_f16) { roundtrip_flux(&k_small, CD_DTYPE_F16); }

/* rows [row, row+rows) of `a` (leading dim) equal all of `b`. */
static int rows_equal(const cd_st_tensor *a, int64_t row, const cd_st_tensor *b) {
    if (!a || !b || a->dtype != b->dtype) return 0;
    const uint64_t row_bytes = a->nbytes / (uint64_t)a->shape[0];
    return b->nbytes <= a->nbytes - (uint64_t)row * row_bytes &&
           !memcmp((const uint8_t *)a->data + (uint64_t)row * row_bytes, b->data, b->nbytes);
}

/* The correspondences of docs/flux.md section 3, written out by hand for block 0. */
TEST(convert_flux_mapping_by_hand) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l;
    gen_init(&l, 32);
    gen_flux_bfl(&l, &k_schnell);
    const int64_t D = k_schnell.hidden, M = k_schnell.mlp;
    cd_ckpt *b = fx_write_open(&f, &l, "bfl.safetensors");
    cd_ckpt *d = b ? fx_convert(&f, b, "dif.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL) : NULL;
    if (d) {
        static const struct {
            const char *bfl;
            int64_t row; /* in units: 0 1 2 = x D; 3 = 3D */
            const char *dif;
        } map[] = {
            {"img_in.weight", 0, "x_embedder.weight"},
            {"txt_in.bias", 0, "context_embedder.bias"},
            {"time_in.in_layer.weight", 0, "time_text_embed.timestep_embedder.linear_1.weight"},
            {"vector_in.out_layer.weight", 0, "time_text_embed.text_embedder.linear_2.weight"},
            {"double_blocks.0.img_mod.lin.weight", 0, "transformer_blocks.0.norm1.linear.weight"},
            {"double_blocks.0.txt_mod.lin.bias", 0, "transformer_blocks.0.norm1_context.linear.bias"},
            {"double_blocks.0.img_attn.qkv.weight", 0, "transformer_blocks.0.attn.to_q.weight"},
            {"double_blocks.0.img_attn.qkv.weight", 1, "transformer_blocks.0.attn.to_k.weight"},
            {"double_blocks.0.img_attn.qkv.weight", 2, "transformer_blocks.0.attn.to_v.weight"},
            {"double_blocks.0.img_attn.qkv.bias", 1, "transformer_blocks.0.attn.to_k.bias"},
            {"double_blocks.0.txt_attn.qkv.weight", 2, "transformer_blocks.0.attn.add_v_proj.weight"},
            {"double_blocks.0.txt_attn.qkv.bias", 0, "transformer_blocks.0.attn.add_q_proj.bias"},
            {"double_blocks.0.img_attn.norm.query_norm.scale", 0, "transformer_blocks.0.attn.norm_q.weight"},
            {"double_blocks.0.txt_attn.norm.key_norm.scale", 0, "transformer_blocks.0.attn.norm_added_k.weight"},
            {"double_blocks.0.img_attn.proj.weight", 0, "transformer_blocks.0.attn.to_out.0.weight"},
            {"double_blocks.0.txt_attn.proj.bias", 0, "transformer_blocks.0.attn.to_add_out.bias"},
            {"double_blocks.0.img_mlp.0.weight", 0, "transformer_blocks.0.ff.net.0.proj.weight"},
            {"double_blocks.0.txt_mlp.2.weight", 0, "transformer_blocks.0.ff_context.net.2.weight"},
            {"single_blocks.1.linear1.weight", 0, "single_transformer_blocks.1.attn.to_q.weight"},
            {"single_blocks.1.linear1.weight", 1, "single_transformer_blocks.1.attn.to_k.weight"},
            {"single_blocks.1.linear1.weight", 2, "single_transformer_blocks.1.attn.to_v.weight"},
            {"single_blocks.1.linear1.weight", 3, "single_transformer_blocks.1.proj_mlp.weight"},
            {"single_blocks.1.linear1.bias", 3, "single_transformer_blocks.1.proj_mlp.bias"},
            {"single_blocks.1.linear2.weight", 0, "single_transformer_blocks.1.proj_out.weight"},
            {"single_blocks.1.norm.key_norm.scale", 0, "single_transformer_blocks.1.attn.norm_k.weight"},
            {"single_blocks.1.modulation.lin.weight", 0, "single_transformer_blocks.1.norm.linear.weight"},
            {"final_layer.linear.weight", 0, "proj_out.weight"},
            /* [shift | scale] in BFL, [scale | shift] in diffusers: BFL's second half first */
            {"final_layer.adaLN_modulation.1.weight", 1, "norm_out.linear.weight"},
            {"final_layer.adaLN_modulation.1.bias", 1, "norm_out.linear.bias"},
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
            const cd_st_tensor *x = cd_ckpt_find(b, map[i].bfl), *y = cd_ckpt_find(d, map[i].dif);
            EXPECT(x && y, "missing %s or %s", map[i].bfl, map[i].dif);
            if (!x || !y) continue;
            if (!strstr(map[i].dif, "norm_out")) {
                EXPECT(rows_equal(x, map[i].row * D, y), "%s rows %lld.. != %s", map[i].bfl,
                       (long long)(map[i].row * D), map[i].dif);
                continue;
            }
            /* the swap: diffusers rows [0, D) = BFL rows [D, 2D) and diffusers [D, 2D) = BFL [0, D) */
            const uint64_t half = x->nbytes / 2;
            EXPECT(!memcmp(y->data, (const uint8_t *)x->data + half, half) &&
                       !memcmp((const uint8_t *)y->data + half, x->data, half),
                   "%s: halves not swapped", map[i].dif);
        }
        const cd_st_tensor *mlp = cd_ckpt_find(d, "single_transformer_blocks.1.proj_mlp.weight");
        EXPECT(mlp && mlp->shape[0] == M && mlp->shape[1] == D, "proj_mlp shape");
    }
    cd_ckpt_close(d);
    cd_ckpt_close(b);
    gen_free(&l);
    fx_free(&f);
}

TEST(convert_ae_roundtrip_and_mapping) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l;
    gen_init(&l, 33);
    gen_ae_bfl(&l, &k_ae);
    char why[256], a[160], c2[160];
    cd_ckpt *b = fx_write_open(&f, &l, "ae.safetensors");
    cd_ckpt *d = b ? fx_convert(&f, b, "dif.safetensors", CD_LAYOUT_AE_DIFFUSERS, CD_DTYPE_COUNT, NULL) : NULL;
    cd_ckpt *back = d ? fx_convert(&f, d, "back.safetensors", CD_LAYOUT_AE_BFL, CD_DTYPE_COUNT, NULL) : NULL;
    cd_ckpt *d2 = back ? fx_convert(&f, back, "dif2.safetensors", CD_LAYOUT_AE_DIFFUSERS, CD_DTYPE_COUNT, NULL) : NULL;
    if (b && d && back && d2) {
        EXPECT(!gen_ckpt_equal(b, back, why, sizeof why), "AE BFL -> diffusers -> BFL: %s", why);
        EXPECT(gen_files_equal(fx_path(&f, "dif.safetensors", a), fx_path(&f, "dif2.safetensors", c2)),
               "AE diffusers -> BFL -> diffusers files differ");
        static const char *const pairs[][2] = {
            {"decoder.up.3.block.0.conv1.weight", "decoder.up_blocks.0.resnets.0.conv1.weight"},
            {"decoder.up.0.block.2.norm2.bias", "decoder.up_blocks.3.resnets.2.norm2.bias"},
            {"decoder.up.1.block.0.nin_shortcut.weight", "decoder.up_blocks.2.resnets.0.conv_shortcut.weight"},
            {"decoder.up.3.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"},
            {"decoder.up.1.upsample.conv.bias", "decoder.up_blocks.2.upsamplers.0.conv.bias"},
            {"encoder.down.1.block.0.nin_shortcut.bias", "encoder.down_blocks.1.resnets.0.conv_shortcut.bias"},
            {"encoder.down.2.downsample.conv.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight"},
            {"encoder.mid.block_2.conv1.weight", "encoder.mid_block.resnets.1.conv1.weight"},
            {"decoder.mid.attn_1.norm.weight", "decoder.mid_block.attentions.0.group_norm.weight"},
            {"decoder.mid.attn_1.q.weight", "decoder.mid_block.attentions.0.to_q.weight"},
            {"encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight"},
            {"encoder.mid.attn_1.v.bias", "encoder.mid_block.attentions.0.to_v.bias"},
            {"decoder.norm_out.weight", "decoder.conv_norm_out.weight"},
            {"encoder.conv_out.weight", "encoder.conv_out.weight"},
        };
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            const cd_st_tensor *x = cd_ckpt_find(b, pairs[i][0]), *y = cd_ckpt_find(d, pairs[i][1]);
            EXPECT(x && y && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes), "%s != %s", pairs[i][0],
                   pairs[i][1]);
        }
        const cd_st_tensor *q = cd_ckpt_find(d, "decoder.mid_block.attentions.0.to_q.weight");
        EXPECT(q && q->ndim == 2 && q->shape[0] == 32 && q->shape[1] == 32, "1x1 conv [32,32,1,1] -> linear [32,32]");
    }
    cd_ckpt_close(d2);
    cd_ckpt_close(back);
    cd_ckpt_close(d);
    cd_ckpt_close(b);
    gen_free(&l);
    fx_free(&f);
}

/* ---- CLEAR merge -------------------------------------------------------------------------- */

/* What a merged BFL tensor must be: the base, with the CLEAR slices of docs/distillation.md written
 * over it. Returns a malloc'd copy of the expected bytes. */
static uint8_t *expected_bfl(const cd_st_tensor *base, const cd_ckpt *clear, int64_t D) {
    uint8_t *e = malloc(base->nbytes ? base->nbytes : 1);
    memcpy(e, base->data, base->nbytes);
    int blk, n = 0;
    char kind[64], suf[16], name[160];
    const uint64_t row = base->nbytes / (uint64_t)base->shape[0];
    static const char *const qkv[3] = {"to_q", "to_k", "to_v"};
    if (sscanf(base->name, "double_blocks.%d.%63[a-z_.12]%n", &blk, kind, &n) == 2 && !base->name[n]) {
        if (sscanf(kind, "img_attn.qkv.%15s", suf) == 1) {
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "transformer_blocks.%d.attn.%s.%s", blk, qkv[k], suf);
                const cd_st_tensor *c = cd_ckpt_find(clear, name);
                memcpy(e + (uint64_t)k * D * row, c->data, c->nbytes);
            }
        } else if (sscanf(kind, "img_attn.proj.%15s", suf) == 1) {
            snprintf(name, sizeof name, "transformer_blocks.%d.attn.to_out.0.%s", blk, suf);
            const cd_st_tensor *c = cd_ckpt_find(clear, name);
            memcpy(e, c->data, c->nbytes);
        }
    } else if (sscanf(base->name, "single_blocks.%d.linear1.%15s", &blk, suf) == 2) {
        for (int k = 0; k < 3; k++) { /* rows 0..3D-1 only: the mlp rows stay */
            snprintf(name, sizeof name, "single_transformer_blocks.%d.attn.%s.%s", blk, qkv[k], suf);
            const cd_st_tensor *c = cd_ckpt_find(clear, name);
            memcpy(e + (uint64_t)k * D * row, c->data, c->nbytes);
        }
    }
    return e;
}

TEST(convert_merge_clear_writes_exactly_the_trained_slices) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l, cl;
    gen_init(&l, 41);
    gen_init(&cl, 42);
    gen_flux_bfl(&l, &k_small);
    gen_clear(&cl, k_small.hidden, k_small.depth, k_small.depth_single, 0, 0);
    char a[160], b[160];
    cd_ckpt *base = fx_write_open(&f, &l, "base.safetensors");
    cd_ckpt *clear = fx_write_open(&f, &cl, "clear.safetensors");
    CHECK(base && clear, "inputs");
    cd_ckpt *mb = fx_convert(&f, base, "mb.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, clear);
    cd_ckpt *md = fx_convert(&f, base, "md.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, clear);
    cd_ckpt *d0 = fx_convert(&f, base, "d0.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL);
    cd_ckpt *mdb = md ? fx_convert(&f, md, "mdb.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL) : NULL;
    if (mb && md && d0 && mdb) {
        /* BFL output: every byte of every tensor is the base's except the CLEAR slices */
        EXPECT(cd_ckpt_count(mb) == cd_ckpt_count(base), "same tensor set");
        size_t changed = 0;
        for (size_t i = 0; i < cd_ckpt_count(base); i++) {
            const cd_st_tensor *t = cd_ckpt_at(base, i), *m = cd_ckpt_find(mb, t->name);
            EXPECT(m && m->nbytes == t->nbytes && m->dtype == t->dtype, "%s", t->name);
            if (!m || m->nbytes != t->nbytes) continue;
            uint8_t *e = expected_bfl(t, clear, k_small.hidden);
            EXPECT(!memcmp(e, m->data, m->nbytes), "merged %s differs from base + CLEAR slices", t->name);
            changed += memcmp(e, t->data, t->nbytes) != 0;
            free(e);
        }
        /* qkv w+b and proj w+b per double block, linear1 w+b per single block */
        EXPECT(changed == 4 * (size_t)k_small.depth + 2 * (size_t)k_small.depth_single, "%zu tensors changed", changed);
        /* diffusers output: CLEAR tensors where CLEAR has them, the plain conversion elsewhere */
        EXPECT(cd_ckpt_count(md) == cd_ckpt_count(d0), "same diffusers set");
        for (size_t i = 0; i < cd_ckpt_count(d0); i++) {
            const cd_st_tensor *t = cd_ckpt_at(d0, i), *m = cd_ckpt_find(md, t->name);
            const cd_st_tensor *c = cd_ckpt_find(clear, t->name), *want = c ? c : t;
            EXPECT(m && m->nbytes == want->nbytes && !memcmp(m->data, want->data, m->nbytes), "merged diffusers %s",
                   t->name);
        }
        EXPECT(gen_files_equal(fx_path(&f, "mb.safetensors", a), fx_path(&f, "mdb.safetensors", b)),
               "merge-to-BFL and merge-to-diffusers-then-BFL differ");
    }
    cd_ckpt_close(mdb);
    cd_ckpt_close(d0);
    cd_ckpt_close(md);
    cd_ckpt_close(mb);
    cd_ckpt_close(clear);
    cd_ckpt_close(base);
    gen_free(&cl);
    gen_free(&l);
    fx_free(&f);
}

static void merge_spatial(int flat) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l, cl;
    gen_init(&l, 43);
    gen_init(&cl, 44);
    gen_flux_bfl(&l, &k_small);
    gen_clear(&cl, k_small.hidden, k_small.depth, k_small.depth_single, 2, flat);
    char a[160], b[160];
    cd_ckpt *base = fx_write_open(&f, &l, "base.safetensors");
    cd_ckpt *clear = fx_write_open(&f, &cl, "clear.safetensors");
    CHECK(base && clear, "inputs");
    cd_ckpt *mb = fx_convert(&f, base, "mb.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, clear);
    cd_ckpt *md = mb ? fx_convert(&f, mb, "md.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL) : NULL;
    cd_ckpt *mb2 = md ? fx_convert(&f, md, "mb2.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL) : NULL;
    if (mb && md && mb2) {
        const size_t nsw = (size_t)k_small.depth + (size_t)k_small.depth_single;
        EXPECT(cd_ckpt_count(mb) == cd_ckpt_count(base) + nsw, "%zu tensors", cd_ckpt_count(mb));
        for (size_t i = 0; i < cd_ckpt_count(clear); i++) {
            const cd_st_tensor *c = cd_ckpt_at(clear, i);
            if (!strstr(c->name, "spatial_weight")) continue;
            const cd_st_tensor *m = cd_ckpt_find(mb, c->name), *d = cd_ckpt_find(md, c->name);
            EXPECT(m && d && m->ndim == c->ndim && d->ndim == c->ndim && !memcmp(m->shape, c->shape, sizeof c->shape) &&
                       !memcmp(m->data, c->data, c->nbytes) && !memcmp(d->data, c->data, c->nbytes),
                   "%s carried under its diffusers name, in its shape", c->name);
        }
        cd_ckpt_info info;
        EXPECT(!cd_ckpt_inspect(f.ctx, mb, &info), "inspect");
        EXPECT(info.layout == CD_LAYOUT_FLUX_BFL && !info.n_unknown && !info.n_missing && !info.n_bad_shape &&
                   info.clear.down == 2,
               "merged BFL: %s, %zu unknown, down %d", cd_layout_name(info.layout), info.n_unknown, info.clear.down);
        cd_ckpt_info_free(&info);
        EXPECT(gen_files_equal(fx_path(&f, "mb.safetensors", a), fx_path(&f, "mb2.safetensors", b)),
               "merged BFL -> diffusers -> BFL differs");
        /* merging again into the merged model: the new CLEAR file's weights replace the carried ones */
        gen_list c2;
        gen_init(&c2, 45);
        gen_clear(&c2, k_small.hidden, k_small.depth, k_small.depth_single, 2, !flat);
        cd_ckpt *clear2 = fx_write_open(&f, &c2, "clear2.safetensors");
        cd_ckpt *m3 = clear2 ? fx_convert(&f, mb, "m3.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, clear2) : NULL;
        const cd_st_tensor *x =
            m3 ? cd_ckpt_find(m3, "single_transformer_blocks.2.attn.processor.spatial_weight") : NULL;
        const cd_st_tensor *y =
            clear2 ? cd_ckpt_find(clear2, "single_transformer_blocks.2.attn.processor.spatial_weight") : NULL;
        EXPECT(x && y && x->ndim == y->ndim && !memcmp(x->data, y->data, y->nbytes), "re-merge");
        /* ... but not spatial weights of another side */
        gen_list c3;
        gen_init(&c3, 46);
        gen_clear(&c3, k_small.hidden, k_small.depth, k_small.depth_single, 4, flat);
        cd_ckpt *clear3 = fx_write_open(&f, &c3, "clear3.safetensors");
        EXPECT(clear3 && cd_ckpt_convert(f.ctx, mb, a, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, clear3) == CD_ERR_SHAPE &&
                   strstr(cd_ctx_error(f.ctx), "spatial_weight is 4x4 but the model already carries 2x2"),
               "other side: %s", cd_ctx_error(f.ctx));
        cd_ckpt_close(clear3);
        cd_ckpt_close(m3);
        cd_ckpt_close(clear2);
        gen_free(&c3);
        gen_free(&c2);
    }
    cd_ckpt_close(mb2);
    cd_ckpt_close(md);
    cd_ckpt_close(mb);
    cd_ckpt_close(clear);
    cd_ckpt_close(base);
    gen_free(&cl);
    gen_free(&l);
    fx_free(&f);
}

/* the reference trainer's [1,1,1,d,1,d,1] and a plain [d, d] */
TEST(convert_merge_clear_carries_spatial_weight) { merge_spatial(0); }
TEST(convert_merge_clear_carries_flat_spatial_weight) { merge_spatial(1); }

/* ---- dtype conversion --------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Reference f32 -> bf16, written differently from the library's bit trick: the two bf16
 * neighbours of x, compared in double; ties to the even one; overflow past the largest finite
 * bf16 by at least half an ulp gives infinity. */
static uint16_t ref_bf16(float x) {
    if (isnan(x)) return 0x7fc0;
    const uint32_t u = f32_bits(x);
    const uint16_t lo = (uint16_t)(u >> 16);
    if ((u & 0xffff) == 0) return lo;
    const uint16_t hi = (uint16_t)(lo + 1); /* next away from zero (may become inf) */
    const double dl = fabs((double)x - (double)bits_f32((uint32_t)lo << 16));
    const double dh = fabs((double)bits_f32((uint32_t)hi << 16) - (double)x);
    if (isinf(bits_f32((uint32_t)hi << 16)))       /* inf is "one ulp up" */
        return dl < ldexp(1.0, 127 - 8) ? lo : hi; /* half an ulp of the top binade */
    if (dl != dh) return dl < dh ? lo : hi;
    return (lo & 1) ? hi : lo;
}

static double ref_f16(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double v = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m, -24);
    return s ? -v : v;
}

static double ref_e4m3(uint8_t b) {
    const int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
    const double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m, -9);
    return s ? -v : v;
}

static double ref_e5m2(uint8_t b) { return ref_f16((uint16_t)(b << 8)); }

static double src_value(const cd_st_tensor *t, size_t i) {
    const uint8_t *p = t->data;
    uint16_t h;
    float f;
    switch (t->dtype) {
        case CD_DTYPE_F32: memcpy(&f, p + 4 * i, 4); return f;
        case CD_DTYPE_BF16: memcpy(&h, p + 2 * i, 2); return bits_f32((uint32_t)h << 16);
        case CD_DTYPE_F16: memcpy(&h, p + 2 * i, 2); return ref_f16(h);
        case CD_DTYPE_F8_E4M3: return ref_e4m3(p[i]);
        default: return ref_e5m2(p[i]);
    }
}

/* Every element of every tensor of `out` against the reference conversion of `in`. */
static void check_dtype(const cd_ckpt *in, const cd_ckpt *out, cd_dtype dt) {
    size_t bad = 0;
    for (size_t i = 0; i < cd_ckpt_count(in); i++) {
        const cd_st_tensor *s = cd_ckpt_at(in, i), *o = cd_ckpt_find(out, s->name);
        EXPECT(o && o->dtype == dt && cd_st_numel(o) == cd_st_numel(s), "%s", s->name);
        if (!o || o->dtype != dt) continue;
        for (size_t k = 0; k < cd_st_numel(s); k++) {
            const double v = src_value(s, k);
            if (dt == CD_DTYPE_F32) {
                float g;
                memcpy(&g, (const uint8_t *)o->data + 4 * k, 4);
                bad += !(g == (float)v && f32_bits(g) == f32_bits((float)v)) && !(isnan(g) && isnan(v));
            } else {
                uint16_t g;
                memcpy(&g, (const uint8_t *)o->data + 2 * k, 2);
                const uint16_t want = ref_bf16((float)v); /* f16/f8 -> float is exact */
                bad += isnan(v) ? !isnan(bits_f32((uint32_t)g << 16)) : g != want;
            }
        }
    }
    EXPECT(bad == 0, "%zu elements differ from the reference conversion to %s", bad, cd_dtype_name(dt));
}

TEST(convert_dtype_bf16_rounds_to_nearest_even) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l;
    gen_init(&l, 51);
    gen_flux_cfg wide = k_small;
    wide.ctx = 40000; /* txt_in.weight [64, 40000] F32 = 10 MB: copied in more than one chunk */
    gen_flux_bfl(&l, &wide);
    /* special values at the start of img_in.weight: ties both ways, near-overflow, inf, NaN,
     * signed zero, subnormals, and values with random low bits everywhere else */
    static const uint32_t special[] = {0x3f808000, 0x3f818000, 0x3f80c000, 0x3f807fff, 0xbf808000, 0xbf818000,
                                       0x7f7fffff, 0x7f7f7fff, 0x7f7f8000, 0xff7fffff, 0x7f800000, 0xff800000,
                                       0x7fc00001, 0xffa00000, 0x00000000, 0x80000000, 0x00000001, 0x00008000,
                                       0x00018000, 0x807fffff, 0x00800000, 0x3f800001, 0x477fe000, 0x33800000};
    gen_tensor *t = gen_find(&l, "img_in.weight");
    CHECK(t, "find");
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) memcpy(t->data + 4 * i, &special[i], 4);
    cd_ckpt *in = fx_write_open(&f, &l, "f32.safetensors");
    CHECK(in, "input");
    cd_ckpt *bf = fx_convert(&f, in, "bf.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_BF16, NULL);
    cd_ckpt *bfb = bf ? fx_convert(&f, bf, "bfb.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL) : NULL;
    cd_ckpt *widened = bfb ? fx_convert(&f, bfb, "w.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_F32, NULL) : NULL;
    if (bfb && widened) {
        check_dtype(in, bfb, CD_DTYPE_BF16);     /* F32 -> BF16 */
        check_dtype(bfb, widened, CD_DTYPE_F32); /* BF16 -> F32, exact */
        const cd_st_tensor *w = cd_ckpt_find(bfb, "img_in.weight");
        uint16_t h[3];
        memcpy(h, w->data, sizeof h);
        EXPECT(h[0] == 0x3f80 && h[1] == 0x3f82 && h[2] == 0x3f81, "ties: %04x %04x %04x", h[0], h[1], h[2]);
    }
    cd_ckpt_close(widened);
    cd_ckpt_close(bfb);
    cd_ckpt_close(bf);
    cd_ckpt_close(in);
    gen_free(&l);
    fx_free(&f);
}

TEST(convert_dtype_from_f16_and_f8) {
    static const cd_dtype src[] = {CD_DTYPE_F16, CD_DTYPE_F8_E4M3, CD_DTYPE_F8_E5M2};
    for (size_t k = 0; k < 3 && !test_failed(); k++) {
        fixture f;
        CHECK(fx_init(&f), "fixture");
        gen_list l;
        gen_init(&l, 60 + k);
        gen_flux_bfl(&l, &k_small);
        gen_cast(&l, src[k]);
        cd_ckpt *in = fx_write_open(&f, &l, "in.safetensors");
        cd_ckpt *a = in ? fx_convert(&f, in, "a.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_F32, NULL) : NULL;
        cd_ckpt *b = in ? fx_convert(&f, in, "b.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_BF16, NULL) : NULL;
        if (a && b) {
            check_dtype(in, a, CD_DTYPE_F32);
            check_dtype(in, b, CD_DTYPE_BF16);
        }
        cd_ckpt_close(b);
        cd_ckpt_close(a);
        cd_ckpt_close(in);
        gen_free(&l);
        fx_free(&f);
    }
}

/* Keeping the dtype, a CLEAR file in F32 merged into a BF16 base arrives rounded to BF16. */
TEST(convert_merge_clear_takes_the_base_dtype) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l, cl;
    gen_init(&l, 71);
    gen_init(&cl, 72);
    gen_flux_bfl(&l, &k_small);
    gen_cast(&l, CD_DTYPE_BF16);
    gen_clear(&cl, k_small.hidden, k_small.depth, k_small.depth_single, 0, 0);
    cd_ckpt *base = fx_write_open(&f, &l, "base.safetensors");
    cd_ckpt *clear = fx_write_open(&f, &cl, "clear.safetensors");
    CHECK(base && clear, "inputs");
    cd_ckpt *m = fx_convert(&f, base, "m.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, clear);
    if (m) {
        const cd_st_tensor *qkv = cd_ckpt_find(m, "single_blocks.2.linear1.weight");
        const cd_st_tensor *k = cd_ckpt_find(clear, "single_transformer_blocks.2.attn.to_k.weight");
        const cd_st_tensor *b = cd_ckpt_find(base, "single_blocks.2.linear1.weight");
        CHECK(qkv && k && b && qkv->dtype == CD_DTYPE_BF16, "dtype");
        const int64_t D = k_small.hidden;
        size_t bad = 0;
        for (int64_t i = 0; i < D * D; i++) { /* rows D..2D-1 = rounded to_k */
            float v;
            uint16_t g;
            memcpy(&v, (const uint8_t *)k->data + 4 * i, 4);
            memcpy(&g, (const uint8_t *)qkv->data + 2 * (D * D + i), 2);
            bad += g != ref_bf16(v);
        }
        EXPECT(bad == 0, "%zu rounded CLEAR values differ", bad);
        const size_t mlp_off = (size_t)(3 * D * D * 2); /* the mlp rows are the base's bytes */
        EXPECT(!memcmp((const uint8_t *)qkv->data + mlp_off, (const uint8_t *)b->data + mlp_off, qkv->nbytes - mlp_off),
               "mlp rows changed");
    }
    cd_ckpt_close(m);
    cd_ckpt_close(clear);
    cd_ckpt_close(base);
    gen_free(&cl);
    gen_free(&l);
    fx_free(&f);
}

/* ---- errors ------------------------------------------------------------------------------- */

/* Expects `s` with all of the message fragments, and no file but the inputs in the directory. */
static void expect_fail(const fixture *f, cd_status s, cd_status want, int files, const char *frag1,
                        const char *frag2) {
    const char *msg = cd_ctx_error(f->ctx);
    EXPECT(s == want, "status %d (want %d): %s", (int)s, (int)want, msg);
    EXPECT(strstr(msg, frag1) && (!frag2 || strstr(msg, frag2)), "message: %s", msg);
    EXPECT(!strchr(msg, '\n'), "one line: %s", msg);
    EXPECT(dir_count(f->dir) == files, "%d files in the directory, want %d", dir_count(f->dir), files);
}

TEST(convert_errors_have_messages_and_leave_nothing) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l, ae, cl, cl2, bad;
    gen_init(&l, 81);
    gen_init(&ae, 82);
    gen_init(&cl, 83);
    gen_init(&cl2, 84);
    gen_init(&bad, 85);
    gen_flux_bfl(&l, &k_small);
    gen_ae_bfl(&ae, &k_ae);
    gen_clear(&cl, 128, k_small.depth, k_small.depth_single, 0, 0); /* wrong hidden */
    gen_clear(&cl2, k_small.hidden, 1, k_small.depth_single, 0, 0); /* wrong depth */
    gen_flux_bfl(&bad, &k_small);
    gen_tensor *it = gen_find(&bad, "img_in.bias"); /* an I32 tensor */
    CHECK(it, "find");
    it->dtype = CD_DTYPE_I32;
    cd_ckpt *base = fx_write_open(&f, &l, "base.safetensors");
    cd_ckpt *a = fx_write_open(&f, &ae, "ae.safetensors");
    cd_ckpt *c1 = fx_write_open(&f, &cl, "c1.safetensors");
    cd_ckpt *c2 = fx_write_open(&f, &cl2, "c2.safetensors");
    cd_ckpt *ib = fx_write_open(&f, &bad, "i32.safetensors");
    CHECK(base && a && c1 && c2 && ib, "inputs");
    const int n = 5;
    char out[160];
    fx_path(&f, "out.safetensors", out);
    cd_ctx *ctx = f.ctx;

    expect_fail(&f, cd_ckpt_convert(ctx, base, out, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, c1), CD_ERR_SHAPE, n,
                "hidden 128", "hidden 64");
    expect_fail(&f, cd_ckpt_convert(ctx, base, out, CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, c2), CD_ERR_SHAPE, n,
                "1 double + 3 single", "2 double + 3 single");
    expect_fail(&f, cd_ckpt_convert(ctx, a, out, CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL), CD_ERR_INVALID_ARG, n,
                "cannot convert ae-bfl to flux-diffusers", NULL);
    expect_fail(&f, cd_ckpt_convert(ctx, base, out, CD_LAYOUT_AE_BFL, CD_DTYPE_COUNT, NULL), CD_ERR_INVALID_ARG, n,
                "cannot convert flux-bfl to ae-bfl", NULL);
    expect_fail(&f, cd_ckpt_convert(ctx, a, out, CD_LAYOUT_AE_DIFFUSERS, CD_DTYPE_COUNT, c1), CD_ERR_INVALID_ARG, n,
                "merges into a FLUX transformer", NULL);
    expect_fail(&f, cd_ckpt_convert(ctx, c1, out, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL), CD_ERR_INVALID_ARG, n,
                "is a CLEAR file", NULL);
    expect_fail(&f, cd_ckpt_convert(ctx, base, out, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, base), CD_ERR_INVALID_ARG, n,
                "not a CLEAR file", NULL);
    expect_fail(&f, cd_ckpt_convert(ctx, base, out, CD_LAYOUT_CLEAR, CD_DTYPE_COUNT, NULL), CD_ERR_INVALID_ARG, n,
                "target layout", NULL);
    expect_fail(&f, cd_ckpt_convert(ctx, base, out, CD_LAYOUT_FLUX_BFL, CD_DTYPE_F16, NULL), CD_ERR_INVALID_ARG, n,
                "F32 or BF16", NULL);
    expect_fail(&f, cd_ckpt_convert(ctx, ib, out, CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_BF16, NULL), CD_ERR_UNSUPPORTED, n,
                "img_in.bias", "cannot convert I32 to BF16");
    expect_fail(
        &f, cd_ckpt_convert(ctx, base, "/nonexistent-cd-dir/out.safetensors", CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL),
        CD_ERR_IO, n, "cannot create a temporary file", NULL);
    fx_path(&f, "base.safetensors/x", out); /* a directory component that is a file */
    expect_fail(&f, cd_ckpt_convert(ctx, base, out, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL), CD_ERR_IO, n,
                "cannot create a temporary file", NULL);
    /* keeping the dtype, the I32 tensor is copied as it is */
    cd_ckpt *ok = fx_convert(&f, ib, "ok.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL);
    EXPECT(ok && cd_ckpt_find(ok, "x_embedder.bias")->dtype == CD_DTYPE_I32, "I32 kept");
    cd_ckpt_close(ok);

    /* An autoencoder whose level 0 is wider than conv_in (ch_mult[0] != 1) is a valid BFL file
     * but has no AutoencoderKL equivalent. */
    gen_list w;
    gen_init(&w, 86);
    const gen_ae_cfg wide = {3, 3, 8, {2, 4}, 2, 1, 4, 1, 1};
    gen_ae_bfl(&w, &wide);
    cd_ckpt *wc = fx_write_open(&f, &w, "wide.safetensors");
    cd_ckpt_info info;
    EXPECT(wc && !cd_ckpt_inspect(ctx, wc, &info) && info.layout == CD_LAYOUT_AE_BFL && !info.n_missing &&
               !info.n_unknown && !info.n_bad_shape && info.ae.ch == 8 && info.ae.ch_mult[0] == 2,
           "wide AE inspects clean");
    cd_ckpt_info_free(&info);
    fx_path(&f, "out.safetensors", out);
    if (wc)
        expect_fail(&f, cd_ckpt_convert(ctx, wc, out, CD_LAYOUT_AE_DIFFUSERS, CD_DTYPE_COUNT, NULL), CD_ERR_UNSUPPORTED,
                    n + 2, "ch_mult[0] = 2", "AutoencoderKL");
    cd_ckpt_close(wc);
    gen_free(&w);

    cd_ckpt_close(ib);
    cd_ckpt_close(c2);
    cd_ckpt_close(c1);
    cd_ckpt_close(a);
    cd_ckpt_close(base);
    gen_free(&bad);
    gen_free(&cl2);
    gen_free(&cl);
    gen_free(&ae);
    gen_free(&l);
    fx_free(&f);
}

/* Progress: once per output tensor, increasing, ending at the file's data size. */
typedef struct {
    size_t calls;
    uint64_t last, total;
    int monotonic;
} prog;

static void on_prog(void *user, uint64_t done, uint64_t total) {
    prog *p = user;
    p->monotonic &= done >= p->last;
    p->calls++;
    p->last = done;
    p->total = total;
}

TEST(convert_reports_progress_and_writes_in_plan_order) {
    fixture f;
    CHECK(fx_init(&f), "fixture");
    gen_list l;
    gen_init(&l, 91);
    gen_flux_bfl(&l, &k_small);
    cd_ckpt *in = fx_write_open(&f, &l, "in.safetensors");
    char out[160];
    prog p = {0, 0, 0, 1};
    CHECK(in && !cd_ckpt_convert_progress(f.ctx, in, fx_path(&f, "out.safetensors", out), CD_LAYOUT_FLUX_DIFFUSERS,
                                          CD_DTYPE_BF16, NULL, on_prog, &p),
          "convert: %s", cd_ctx_error(f.ctx));
    cd_ckpt *o = gen_open(f.ctx, out);
    cd_ckpt_info info;
    CHECK(o && !cd_ckpt_inspect(f.ctx, o, &info), "open output");
    EXPECT(p.calls == cd_ckpt_count(o) && p.monotonic && p.last == p.total && p.total == info.bytes,
           "progress: %zu calls, %llu of %llu, file %llu", p.calls, (unsigned long long)p.last,
           (unsigned long long)p.total, (unsigned long long)info.bytes);
    cd_ckpt_info_free(&info);
    /* the data is in module order: x_embedder first, the final projection last */
    const cd_st_tensor *first = cd_ckpt_find(o, "x_embedder.weight"), *last = cd_ckpt_find(o, "norm_out.linear.bias");
    for (size_t i = 0; i < cd_ckpt_count(o); i++) {
        const cd_st_tensor *t = cd_ckpt_at(o, i);
        EXPECT(first->data <= t->data && t->data <= last->data, "%s outside [first, last]", t->name);
    }
    cd_ckpt_close(o);
    cd_ckpt_close(in);
    gen_free(&l);
    fx_free(&f);
}
