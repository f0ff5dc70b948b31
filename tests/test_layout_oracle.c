/* test_layout_oracle.c — the BFL <-> diffusers mapping against an independent oracle: diffusers'
 * own conversion code (tests/oracle/layout_fixtures.py: convert_flux_transformer_checkpoint_to_
 * diffusers and convert_ldm_vae_checkpoint, with the converted dicts loaded strictly into
 * FluxTransformer2DModel / AutoencoderKL) wrote tests/fixtures/layout/.
 *  - each BFL fixture converted by cd_ckpt_convert must equal diffusers' output exactly (same
 *    names, dtypes, shapes and bytes), and each diffusers fixture converted back must equal the
 *    BFL fixture;
 *  - inspect must infer exactly the config recorded in the fixture's metadata;
 *  - for every model in diffusers_models.json, the library's expected diffusers tensor set for
 *    that config (names and shapes) must equal the state_dict of the diffusers model built from it.
 * Run from the repository root (make test does). */
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_gen.h"
#include "cleardit.h"
#include "test_files.h"
#include "../src/io/layout.h" /* lay_flux_plan, lay_ae_plan: the expected sets */

#define FIXTURE_DIR "tests/fixtures/layout"
#define REGEN "run 'python3 tests/oracle/layout_fixtures.py' from the repository root"

static int json_int(json_t *o, const char *k) { return (int)json_integer_value(json_object_get(o, k)); }

/* Converts fixture `from` to `to` and compares with fixture `want`. */
static void convert_and_compare(const char *from, cd_layout to, const char *want) {
    char a[160], b[160], dir[64], out[160], why[256];
    snprintf(a, sizeof a, "%s/%s", FIXTURE_DIR, from);
    snprintf(b, sizeof b, "%s/%s", FIXTURE_DIR, want);
    CHECK(tmp_dir_tag(dir, sizeof dir, "ckpt"), "mkdtemp");
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    cd_ckpt *in = NULL, *ref = NULL, *got = NULL;
    if (cd_ckpt_open(ctx, a, &in) || cd_ckpt_open(ctx, b, &ref)) {
        EXPECT(0, "%s (%s)", cd_ctx_error(ctx), REGEN);
    } else if (cd_ckpt_convert(ctx, in, out, to, CD_DTYPE_COUNT, NULL)) {
        EXPECT(0, "convert %s: %s", from, cd_ctx_error(ctx));
    } else if (cd_ckpt_open(ctx, out, &got)) {
        EXPECT(0, "open output: %s", cd_ctx_error(ctx));
    } else {
        EXPECT(!gen_ckpt_equal(got, ref, why, sizeof why), "%s -> %s vs diffusers' %s: %s", from, cd_layout_name(to),
               want, why);
    }
    cd_ckpt_close(got);
    cd_ckpt_close(ref);
    cd_ckpt_close(in);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

TEST(layout_oracle_flux_bfl_to_diffusers) {
    convert_and_compare("flux_bfl.safetensors", CD_LAYOUT_FLUX_DIFFUSERS, "flux_diffusers.safetensors");
}
TEST(layout_oracle_flux_diffusers_to_bfl) {
    convert_and_compare("flux_diffusers.safetensors", CD_LAYOUT_FLUX_BFL, "flux_bfl.safetensors");
}
TEST(layout_oracle_ae_bfl_to_diffusers) {
    convert_and_compare("ae_bfl.safetensors", CD_LAYOUT_AE_DIFFUSERS, "ae_diffusers.safetensors");
}
TEST(layout_oracle_ae_diffusers_to_bfl) {
    convert_and_compare("ae_diffusers.safetensors", CD_LAYOUT_AE_BFL, "ae_bfl.safetensors");
}

static void flux_cfg_from(json_t *c, lay_flux_cfg *f) {
    memset(f, 0, sizeof *f);
    f->c.hidden = json_int(c, "hidden");
    f->c.head_dim = json_int(c, "head_dim");
    f->c.heads = f->c.hidden / f->c.head_dim;
    f->c.depth = json_int(c, "depth");
    f->c.depth_single = json_int(c, "depth_single");
    f->c.in_channels = json_int(c, "in_channels");
    f->c.out_channels = json_int(c, "out_channels");
    f->c.context_dim = json_int(c, "context_dim");
    f->c.pooled_dim = json_int(c, "pooled_dim");
    f->c.mlp_hidden = json_int(c, "mlp_hidden");
    f->c.guidance = json_int(c, "guidance");
}

static void ae_cfg_from(json_t *c, cd_ae_config *a) {
    memset(a, 0, sizeof *a);
    a->in_channels = json_int(c, "in_channels");
    a->out_channels = json_int(c, "out_channels");
    a->ch = json_int(c, "ch");
    json_t *m = json_object_get(c, "ch_mult");
    a->n_mult = (int32_t)json_array_size(m);
    for (int i = 0; i < a->n_mult && i < 8; i++)
        a->ch_mult[i] = (int32_t)json_integer_value(json_array_get(m, (size_t)i));
    a->num_res_blocks = json_int(c, "num_res_blocks");
    a->z_channels = json_int(c, "z_channels");
    a->has_encoder = a->has_decoder = 1;
}

/* Inspect infers the configs the fixtures were made with. */
TEST(layout_oracle_configs_inferred) {
    static const char *const names[] = {"flux_bfl", "flux_diffusers", "ae_bfl", "ae_diffusers"};
    static const cd_layout layouts[] = {CD_LAYOUT_FLUX_BFL, CD_LAYOUT_FLUX_DIFFUSERS, CD_LAYOUT_AE_BFL,
                                        CD_LAYOUT_AE_DIFFUSERS};
    cd_ctx *ctx;
    CHECK(!cd_ctx_create(NULL, &ctx), "ctx");
    for (int k = 0; k < 4; k++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s.safetensors", FIXTURE_DIR, names[k]);
        cd_ckpt *c = NULL;
        cd_ckpt_info info;
        if (cd_ckpt_open(ctx, p, &c) || cd_ckpt_inspect(ctx, c, &info)) {
            EXPECT(0, "%s (%s)", cd_ctx_error(ctx), REGEN);
            cd_ckpt_close(c);
            continue;
        }
        json_error_t je;
        json_t *cfg = json_loads(cd_ckpt_meta(c, "config") ? cd_ckpt_meta(c, "config") : "", 0, &je);
        EXPECT(cfg, "%s: no config metadata (%s)", names[k], REGEN);
        EXPECT(info.layout == layouts[k] && !info.n_unknown && !info.n_missing && !info.n_bad_shape,
               "%s: layout %s, %zu unknown, %zu missing, %zu bad", names[k], cd_layout_name(info.layout),
               info.n_unknown, info.n_missing, info.n_bad_shape);
        if (cfg && k < 2) {
            lay_flux_cfg f;
            flux_cfg_from(cfg, &f);
            EXPECT(!memcmp(&f.c, &info.flux, sizeof f.c), "%s: config differs (hidden %d depth %d/%d out %d)", names[k],
                   info.flux.hidden, info.flux.depth, info.flux.depth_single, info.flux.out_channels);
        } else if (cfg) {
            cd_ae_config a;
            ae_cfg_from(cfg, &a);
            EXPECT(!memcmp(&a, &info.ae, sizeof a), "%s: config differs (ch %d n %d z %d)", names[k], info.ae.ch,
                   info.ae.n_mult, info.ae.z_channels);
        }
        json_decref(cfg);
        cd_ckpt_info_free(&info);
        cd_ckpt_close(c);
    }
    cd_ctx_free(ctx);
}

/* The library's expected diffusers set == the diffusers model's state_dict, names and shapes. */
TEST(layout_oracle_diffusers_key_sets) {
    json_error_t je;
    json_t *root = json_load_file(FIXTURE_DIR "/diffusers_models.json", 0, &je);
    CHECK(root, "%s: %s (%s)", FIXTURE_DIR "/diffusers_models.json", je.text, REGEN);
    json_t *models = json_object_get(root, "models");
    EXPECT(json_array_size(models) >= 4, "models");
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        const char *kind = json_string_value(json_object_get(m, "kind"));
        json_t *sd = json_object_get(m, "state_dict");
        lay_plan p;
        lay_plan_init(&p);
        int r;
        if (!strcmp(kind, "flux")) {
            lay_flux_cfg f;
            flux_cfg_from(json_object_get(m, "config"), &f);
            r = lay_flux_plan(&f, 1 << LAY_DIF, &p);
        } else {
            cd_ae_config a;
            ae_cfg_from(json_object_get(m, "config"), &a);
            r = lay_ae_plan(&a, 1 << LAY_DIF, &p);
        }
        EXPECT(!r, "plan");
        const lay_set *s = &p.side[LAY_DIF];
        EXPECT(s->n == json_object_size(sd), "model %zu (%s): %zu expected tensors, state_dict has %zu", i, kind, s->n,
               json_object_size(sd));
        const char *key;
        json_t *shape;
        json_object_foreach(sd, key, shape) {
            long k = lay_set_find(s, key);
            EXPECT(k >= 0, "model %zu (%s): state_dict key %s not expected", i, kind, key);
            if (k < 0) continue;
            int same = s->t[k].ndim == (int32_t)json_array_size(shape);
            for (int32_t d = 0; same && d < s->t[k].ndim; d++)
                same = s->t[k].shape[d] == json_integer_value(json_array_get(shape, (size_t)d));
            EXPECT(same, "model %zu (%s): %s has another shape", i, kind, key);
        }
        lay_plan_free(&p);
    }
    json_decref(root);
}
