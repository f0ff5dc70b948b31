/* test_layout.c — layout detection, config inference and the unknown / missing / wrong-shape
 * report of cd_ckpt_inspect, on small FLUX-shaped checkpoints with real key names
 * (tests/ckpt_gen.c, written from the spec independently of the library's tables): every
 * transformer and autoencoder variant must come back with exactly the config it was made with,
 * in BFL layout and (after conversion) in diffusers layout, with nothing unknown, missing or
 * wrong-shaped; damaged files must report exactly the damage, each kind in its own list. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_gen.h"
#include "cleardit.h"
#include "test_files.h"

static const gen_flux_cfg k_flux[] = {
    /* hidden, head_dim, depth, single, in, out, ctx, vec, mlp, guidance */
    {64, 16, 1, 1, 16, 16, 32, 24, 256, 1},
    {64, 32, 2, 3, 16, 16, 32, 24, 256, 0},
    {128, 32, 3, 4, 16, 16, 32, 24, 512, 1},
    {128, 16, 1, 2, 16, 8, 32, 24, 384, 0}, /* out != in, mlp ratio 3 */
};

static const gen_ae_cfg k_ae[] =
    {
        /* in, out, ch, mult, n_mult, nrb, z, enc, dec */
        {3, 3, 8, {1, 2, 4, 4}, 4, 2, 16, 1, 1}, {3, 3, 16, {1, 2}, 2, 1, 4, 1, 1},
        {3, 3, 32, {1, 1, 2}, 3, 2, 4, 1, 1},    {4, 3, 8, {1, 3}, 2, 3, 16, 1, 1},
        {3, 3, 8, {1, 2, 2}, 3, 1, 4, 0, 1}, /* decoder only (e.g. a decode-only export) */
        {3, 3, 8, {1, 2, 2}, 3, 1, 4, 1, 0}, /* encoder only */
};

static size_t gen_params(const gen_list *l) {
    size_t p = 0;
    for (size_t i = 0; i < l->n; i++) p += l->t[i].nbytes / 4;
    return p;
}

static int flux_cfg_eq(const cd_flux_config *f, const gen_flux_cfg *c) {
    return f->hidden == c->hidden && f->head_dim == c->head_dim && f->heads == c->hidden / c->head_dim &&
           f->depth == c->depth && f->depth_single == c->depth_single && f->in_channels == c->in &&
           f->out_channels == c->out && f->context_dim == c->ctx && f->pooled_dim == c->vec &&
           f->mlp_hidden == c->mlp && f->guidance == c->guidance;
}

static int ae_cfg_eq(const cd_ae_config *a, const gen_ae_cfg *c) {
    int eq = a->ch == c->ch && a->n_mult == c->n_mult && a->num_res_blocks == c->nrb && a->z_channels == c->z &&
             a->has_encoder == c->enc && a->has_decoder == c->dec && a->in_channels == (c->enc ? c->in : 0) &&
             a->out_channels == (c->dec ? c->out : 0);
    for (int i = 0; i < c->n_mult && eq; i++) eq = a->ch_mult[i] == c->mult[i];
    return eq;
}

static int clean(const cd_ckpt_info *i) { return !i->n_unknown && !i->n_missing && !i->n_bad_shape; }

static const char *first_issue(const cd_ckpt_info *i) {
    return i->n_missing ? i->missing[0] : i->n_unknown ? i->unknown[0] : i->n_bad_shape ? i->bad_shape[0] : "";
}

/* Writes l to dir/name, converts it to `to` as dir/conv.safetensors when to != UNKNOWN. */
static int write_list(const gen_list *l, const char *dir, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    return gen_write(l, path) == 0;
}

TEST(layout_flux_config_inferred_bfl_and_diffusers) {
    char dir[64], path[128], conv[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "ckpt"), "mkdtemp");
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    for (size_t k = 0; k < sizeof k_flux / sizeof k_flux[0] && !test_failed(); k++) {
        gen_list l;
        gen_init(&l, 100 + k);
        gen_flux_bfl(&l, &k_flux[k]);
        EXPECT(write_list(&l, dir, "bfl.safetensors", path, sizeof path), "write");
        cd_ckpt *c = gen_open(ctx, path);
        cd_ckpt_info info;
        EXPECT(c && !cd_ckpt_inspect(ctx, c, &info), "case %zu: inspect: %s", k, cd_ctx_error(ctx));
        if (c) {
            EXPECT(info.layout == CD_LAYOUT_FLUX_BFL, "case %zu: layout %s", k, cd_layout_name(info.layout));
            EXPECT(flux_cfg_eq(&info.flux, &k_flux[k]),
                   "case %zu: config hidden %d hd %d depth %d/%d in %d out %d ctx %d vec %d mlp %d g %d", k,
                   info.flux.hidden, info.flux.head_dim, info.flux.depth, info.flux.depth_single, info.flux.in_channels,
                   info.flux.out_channels, info.flux.context_dim, info.flux.pooled_dim, info.flux.mlp_hidden,
                   info.flux.guidance);
            EXPECT(clean(&info), "case %zu: %zu unknown %zu missing %zu bad (%s)", k, info.n_unknown, info.n_missing,
                   info.n_bad_shape, first_issue(&info));
            EXPECT(info.params == gen_params(&l) && info.bytes == 4 * gen_params(&l) &&
                       info.dtype_count[CD_DTYPE_F32] == l.n,
                   "case %zu: params %llu bytes %llu", k, (unsigned long long)info.params,
                   (unsigned long long)info.bytes);
            EXPECT(info.clear.down == 0, "no spatial weights");
            /* the same model in diffusers names: same config, clean */
            snprintf(conv, sizeof conv, "%s/dif.safetensors", dir);
            EXPECT(!cd_ckpt_convert(ctx, c, conv, CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL),
                   "case %zu: convert: %s", k, cd_ctx_error(ctx));
            cd_ckpt_info_free(&info);
            cd_ckpt *d = gen_open(ctx, conv);
            EXPECT(d && !cd_ckpt_inspect(ctx, d, &info), "inspect diffusers");
            if (d) {
                EXPECT(info.layout == CD_LAYOUT_FLUX_DIFFUSERS, "case %zu: diffusers layout %s", k,
                       cd_layout_name(info.layout));
                EXPECT(flux_cfg_eq(&info.flux, &k_flux[k]), "case %zu: diffusers config", k);
                EXPECT(clean(&info), "case %zu: diffusers: %s", k, first_issue(&info));
                EXPECT(cd_ckpt_count(d) == l.n + 8 * (size_t)k_flux[k].depth + 6 * (size_t)k_flux[k].depth_single,
                       "case %zu: %zu diffusers tensors (2 qkv w+b split in 3, linear1 w+b in 4)", k, cd_ckpt_count(d));
                cd_ckpt_info_free(&info);
                cd_ckpt_close(d);
            }
        }
        cd_ckpt_close(c);
        gen_free(&l);
    }
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

TEST(layout_ae_config_inferred_bfl_and_diffusers) {
    char dir[64], path[128], conv[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "ckpt"), "mkdtemp");
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    for (size_t k = 0; k < sizeof k_ae / sizeof k_ae[0] && !test_failed(); k++) {
        gen_list l;
        gen_init(&l, 200 + k);
        gen_ae_bfl(&l, &k_ae[k]);
        EXPECT(write_list(&l, dir, "ae.safetensors", path, sizeof path), "write");
        cd_ckpt *c = gen_open(ctx, path);
        cd_ckpt_info info;
        EXPECT(c && !cd_ckpt_inspect(ctx, c, &info), "inspect");
        if (!c) break;
        EXPECT(info.layout == CD_LAYOUT_AE_BFL, "case %zu: layout %s", k, cd_layout_name(info.layout));
        EXPECT(ae_cfg_eq(&info.ae, &k_ae[k]),
               "case %zu: ch %d n %d [%d %d %d %d] nrb %d z %d enc %d dec %d in %d out %d", k, info.ae.ch,
               info.ae.n_mult, info.ae.ch_mult[0], info.ae.ch_mult[1], info.ae.ch_mult[2], info.ae.ch_mult[3],
               info.ae.num_res_blocks, info.ae.z_channels, info.ae.has_encoder, info.ae.has_decoder,
               info.ae.in_channels, info.ae.out_channels);
        EXPECT(clean(&info), "case %zu: %zu unknown %zu missing %zu bad (%s)", k, info.n_unknown, info.n_missing,
               info.n_bad_shape, first_issue(&info));
        cd_ckpt_info_free(&info);
        snprintf(conv, sizeof conv, "%s/dif.safetensors", dir);
        EXPECT(!cd_ckpt_convert(ctx, c, conv, CD_LAYOUT_AE_DIFFUSERS, CD_DTYPE_COUNT, NULL), "case %zu: convert: %s", k,
               cd_ctx_error(ctx));
        cd_ckpt *d = gen_open(ctx, conv);
        EXPECT(d && !cd_ckpt_inspect(ctx, d, &info), "inspect diffusers");
        if (d) {
            EXPECT(info.layout == CD_LAYOUT_AE_DIFFUSERS, "case %zu: layout %s", k, cd_layout_name(info.layout));
            EXPECT(ae_cfg_eq(&info.ae, &k_ae[k]), "case %zu: diffusers config", k);
            EXPECT(clean(&info), "case %zu: diffusers: %s", k, first_issue(&info));
            EXPECT(cd_ckpt_count(d) == l.n, "same tensor count");
            cd_ckpt_info_free(&info);
            cd_ckpt_close(d);
        }
        cd_ckpt_close(c);
        gen_free(&l);
    }
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

static int has_name(char **v, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return 1;
    return 0;
}

/* Writes l, inspects it, and checks the three lists against the expected single entries. */
static void check_damage(const gen_list *l, cd_layout layout, const char *unknown, const char *missing,
                         const char *bad) {
    char dir[64], path[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "ckpt"), "mkdtemp");
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    CHECK(write_list(l, dir, "x.safetensors", path, sizeof path), "write");
    cd_ckpt *c = gen_open(ctx, path);
    cd_ckpt_info info;
    if (c && !cd_ckpt_inspect(ctx, c, &info)) {
        EXPECT(info.layout == layout, "layout %s", cd_layout_name(info.layout));
        EXPECT(info.n_unknown == 1 && has_name(info.unknown, info.n_unknown, unknown), "unknown: %zu (%s)",
               info.n_unknown, info.n_unknown ? info.unknown[0] : "");
        EXPECT(info.n_missing == 1 && has_name(info.missing, info.n_missing, missing), "missing: %zu (%s)",
               info.n_missing, info.n_missing ? info.missing[0] : "");
        EXPECT(info.n_bad_shape == 1 && !strcmp(info.bad_shape[0], bad), "bad: %zu (%s) want (%s)", info.n_bad_shape,
               info.n_bad_shape ? info.bad_shape[0] : "", bad);
        /* a damaged checkpoint cannot be converted, and says why */
        char out[160];
        snprintf(out, sizeof out, "%s/out.safetensors", dir);
        cd_status s = cd_ckpt_convert(ctx, c, out, layout, CD_DTYPE_COUNT, NULL);
        EXPECT(s == CD_ERR_FORMAT && strstr(cd_ctx_error(ctx), missing) && strstr(cd_ctx_error(ctx), "1 missing") &&
                   strstr(cd_ctx_error(ctx), "1 unknown") && strstr(cd_ctx_error(ctx), "1 wrong-shaped"),
               "convert: %d %s", (int)s, cd_ctx_error(ctx));
        EXPECT(dir_count(dir) == 1, "no output or temp file left");
        cd_ckpt_info_free(&info);
    } else {
        EXPECT(0, "open/inspect: %s", cd_ctx_error(ctx));
    }
    cd_ckpt_close(c);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

TEST(layout_reports_unknown_missing_bad_shape_separately) {
    gen_list l;
    gen_init(&l, 7);
    gen_flux_bfl(&l, &k_flux[1]);
    gen_add(&l, "double_blocks.0.img_attn.lora_down.weight", 2, 4, 64, 0, 0); /* extra */
    CHECK(gen_remove(&l, "double_blocks.1.txt_mlp.2.bias"), "drop");
    gen_tensor *t = gen_find(&l, "single_blocks.2.linear2.weight");
    CHECK(t, "find");
    t->shape[0] = 32; /* [64, 320] -> [32, 640]: same bytes, wrong shape */
    t->shape[1] = 640;
    check_damage(&l, CD_LAYOUT_FLUX_BFL, "double_blocks.0.img_attn.lora_down.weight", "double_blocks.1.txt_mlp.2.bias",
                 "single_blocks.2.linear2.weight: got [32, 640] want [64, 320]");
    gen_free(&l);
}

TEST(layout_reports_damage_in_the_autoencoder) {
    gen_list l;
    gen_init(&l, 8);
    gen_ae_bfl(&l, &k_ae[0]);
    gen_add(&l, "decoder.up.1.attn.0.q.weight", 4, 8, 8, 1, 1);
    CHECK(gen_remove(&l, "encoder.down.2.downsample.conv.bias"), "drop");
    gen_tensor *t = gen_find(&l, "decoder.mid.attn_1.k.weight"); /* [32, 32, 1, 1] */
    CHECK(t, "find");
    t->ndim = 2; /* a linear-shaped attention weight in a BFL file */
    check_damage(&l, CD_LAYOUT_AE_BFL, "decoder.up.1.attn.0.q.weight", "encoder.down.2.downsample.conv.bias",
                 "decoder.mid.attn_1.k.weight: got [32, 32] want [32, 32, 1, 1]");
    gen_free(&l);
}

TEST(layout_clear_files) {
    char dir[64], path[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "ckpt"), "mkdtemp");
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    /* no spatial_weight; the reference's [1,1,1,d,1,d,1]; a plain [d, d] */
    for (int v = 0; v < 5; v++) {
        const int down = v == 0 ? 0 : v <= 2 ? 2 : 4, flat = v % 2 == 0 && v;
        gen_list l;
        gen_init(&l, 9);
        gen_clear(&l, 64, 2, 3, down, flat);
        snprintf(path, sizeof path, "%s/clear%d.safetensors", dir, v);
        EXPECT(gen_write(&l, path) == 0, "write");
        cd_ckpt *c = gen_open(ctx, path);
        cd_ckpt_info info;
        if (c && !cd_ckpt_inspect(ctx, c, &info)) {
            EXPECT(info.layout == CD_LAYOUT_CLEAR, "layout %s", cd_layout_name(info.layout));
            EXPECT(info.clear.hidden == 64 && info.clear.depth == 2 && info.clear.depth_single == 3 &&
                       info.clear.down == down,
                   "case %d: clear config %d %d %d %d", v, info.clear.hidden, info.clear.depth, info.clear.depth_single,
                   info.clear.down);
            EXPECT(clean(&info), "case %d: %s", v, first_issue(&info));
            cd_ckpt_info_free(&info);
        }
        cd_ckpt_close(c);
        if (down) {
            /* one layer's spatial_weight missing, another's of the other side: each reported */
            CHECK(gen_remove(&l, "single_transformer_blocks.1.attn.processor.spatial_weight"), "drop");
            gen_tensor *t = gen_find(&l, "transformer_blocks.0.attn.processor.spatial_weight");
            CHECK(t, "find");
            t->shape[flat ? 0 : 3] = t->shape[flat ? 1 : 5] = down == 2 ? 4 : 2; /* d*d changes: */
            t->nbytes = (size_t)(t->shape[flat ? 0 : 3] * t->shape[flat ? 0 : 3]) * 4;
            t->data = realloc(t->data, t->nbytes);
            memset(t->data, 0, t->nbytes);
            EXPECT(gen_write(&l, path) == 0, "write");
            c = gen_open(ctx, path);
            if (c && !cd_ckpt_inspect(ctx, c, &info)) {
                EXPECT(info.layout == CD_LAYOUT_CLEAR && info.clear.down == down && info.n_missing == 1 &&
                           !strcmp(info.missing[0], "single_transformer_blocks.1.attn.processor.spatial_weight") &&
                           info.n_bad_shape == 1 &&
                           !strncmp(info.bad_shape[0], "transformer_blocks.0.attn.processor.spatial_weight: got ", 56),
                       "case %d: %zu missing, %zu bad (%s)", v, info.n_missing, info.n_bad_shape,
                       info.n_bad_shape ? info.bad_shape[0] : "");
                cd_ckpt_info_free(&info);
            }
            cd_ckpt_close(c);
        }
        gen_free(&l);
    }
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

TEST(layout_unknown_and_underdetermined) {
    char dir[64], path[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "ckpt"), "mkdtemp");
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    gen_list l;
    gen_init(&l, 10);
    gen_add(&l, "q", 2, 4, 4, 0, 0);
    gen_add(&l, "layers.0.weight", 2, 4, 4, 0, 0);
    snprintf(path, sizeof path, "%s/u.safetensors", dir);
    EXPECT(gen_write(&l, path) == 0, "write");
    cd_ckpt *c = gen_open(ctx, path);
    cd_ckpt_info info;
    if (c && !cd_ckpt_inspect(ctx, c, &info)) {
        EXPECT(info.layout == CD_LAYOUT_UNKNOWN && clean(&info) && info.params == 32, "unknown layout: %s",
               cd_layout_name(info.layout));
        cd_ckpt_info_free(&info);
        snprintf(path, sizeof path, "%s/o.safetensors", dir);
        cd_status s = cd_ckpt_convert(ctx, c, path, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL);
        EXPECT(s == CD_ERR_FORMAT && strstr(cd_ctx_error(ctx), "not a FLUX transformer"), "convert unknown: %s",
               cd_ctx_error(ctx));
    }
    cd_ckpt_close(c);
    gen_free(&l);

    /* A FLUX block without any tensor that gives the hidden size: the config cannot be
     * inferred, and inspect names the tensor that would have given it. */
    gen_init(&l, 11);
    gen_add(&l, "double_blocks.0.img_mod.lin.weight", 2, 384, 64, 0, 0);
    snprintf(path, sizeof path, "%s/p.safetensors", dir);
    EXPECT(gen_write(&l, path) == 0, "write");
    c = gen_open(ctx, path);
    if (c && !cd_ckpt_inspect(ctx, c, &info)) {
        EXPECT(info.layout == CD_LAYOUT_FLUX_BFL && info.flux.hidden == 0 && info.n_missing == 1 &&
                   !strcmp(info.missing[0], "img_in.weight") && !info.n_unknown,
               "underdetermined: layout %s hidden %d missing %zu", cd_layout_name(info.layout), info.flux.hidden,
               info.n_missing);
        cd_ckpt_info_free(&info);
    }
    cd_ckpt_close(c);
    gen_free(&l);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* Checkpoints as the hub ships them: a prefixed single file, and shards with an index. */
TEST(layout_prefixed_and_sharded_checkpoints) {
    char dir[64], path[256], conv[160];
    CHECK(tmp_dir_tag(dir, sizeof dir, "ckpt"), "mkdtemp");
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    gen_list l;
    gen_init(&l, 12);
    gen_flux_bfl(&l, &k_flux[0]);
    for (size_t i = 0; i < l.n; i++) {
        char tmp[sizeof l.t[i].name];
        memcpy(tmp, l.t[i].name, sizeof tmp);
        snprintf(l.t[i].name, sizeof l.t[i].name, "model.diffusion_model.%.130s", tmp);
    }
    snprintf(path, sizeof path, "%s/comfy.safetensors", dir);
    EXPECT(gen_write(&l, path) == 0, "write");
    cd_ckpt *c = gen_open(ctx, path);
    cd_ckpt_info info;
    if (c && !cd_ckpt_inspect(ctx, c, &info)) {
        EXPECT(info.layout == CD_LAYOUT_FLUX_BFL && clean(&info) && flux_cfg_eq(&info.flux, &k_flux[0]),
               "prefixed: %s %s", cd_layout_name(info.layout), first_issue(&info));
        cd_ckpt_info_free(&info);
        /* split the diffusers conversion into two shards + index */
        snprintf(conv, sizeof conv, "%s/dif.safetensors", dir);
        EXPECT(!cd_ckpt_convert(ctx, c, conv, CD_LAYOUT_FLUX_DIFFUSERS, CD_DTYPE_COUNT, NULL), "convert");
    }
    cd_ckpt_close(c);
    gen_free(&l);

    cd_ckpt *d = gen_open(ctx, conv);
    CHECK(d, "open dif");
    char sub[128];
    snprintf(sub, sizeof sub, "%s/sharded", dir);
    CHECK(mkdir(sub, 0700) == 0, "mkdir");
    gen_list s1, s2;
    gen_init(&s1, 0);
    gen_init(&s2, 0);
    FILE *idx;
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors.index.json", sub);
    idx = fopen(path, "w");
    CHECK(idx, "index");
    fprintf(idx, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (size_t i = 0; i < cd_ckpt_count(d); i++) {
        const cd_st_tensor *t = cd_ckpt_at(d, i);
        gen_list *dst = i % 2 ? &s2 : &s1;
        gen_tensor *g = gen_add(dst, t->name, t->ndim, t->shape[0], t->ndim > 1 ? t->shape[1] : 0, 0, 0);
        memcpy(g->data, t->data, t->nbytes);
        fprintf(idx, "%s\"%s\": \"diffusion_pytorch_model-0000%d-of-00002.safetensors\"", i ? ", " : "", t->name,
                i % 2 ? 2 : 1);
    }
    fprintf(idx, "}}\n");
    fclose(idx);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00001-of-00002.safetensors", sub);
    EXPECT(gen_write(&s1, path) == 0, "shard 1");
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00002-of-00002.safetensors", sub);
    EXPECT(gen_write(&s2, path) == 0, "shard 2");
    gen_free(&s1);
    gen_free(&s2);
    cd_ckpt *sh = gen_open(ctx, sub); /* the directory */
    if (sh && !cd_ckpt_inspect(ctx, sh, &info)) {
        EXPECT(cd_ckpt_files(sh) == 2, "2 files");
        EXPECT(info.layout == CD_LAYOUT_FLUX_DIFFUSERS && clean(&info) && flux_cfg_eq(&info.flux, &k_flux[0]),
               "sharded: %s %s", cd_layout_name(info.layout), first_issue(&info));
        cd_ckpt_info_free(&info);
        /* converting the shards gives the same single file as converting the single file */
        char a[160], b[160];
        snprintf(a, sizeof a, "%s/a.safetensors", dir);
        snprintf(b, sizeof b, "%s/b.safetensors", dir);
        EXPECT(!cd_ckpt_convert(ctx, sh, a, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL), "convert shards: %s",
               cd_ctx_error(ctx));
        EXPECT(!cd_ckpt_convert(ctx, d, b, CD_LAYOUT_FLUX_BFL, CD_DTYPE_COUNT, NULL), "convert single");
        EXPECT(gen_files_equal(a, b), "sharded and single-file conversions differ");
    }
    cd_ckpt_close(sh);
    cd_ckpt_close(d);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}
