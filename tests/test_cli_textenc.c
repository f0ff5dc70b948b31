/* test_cli_textenc.c — `cleardit inspect` on FLUX's text encoders: T5 encoder and CLIP text model
 * checkpoints with transformers' names, as diffusers' pipeline folders hold them (the committed
 * tiny pipeline, sharded T5 with config.json) and as ComfyUI's single files do (generated here:
 * t5xxl-style f32/fp8, scaled fp8 with its marker and per-weight scales, a full T5 with a decoder,
 * clip_l-style with text_projection / logit_scale / position_ids), config.json beside or not, a
 * config.json that disagrees, a missing tensor, and convert refusing a text encoder.
 *
 * The names below are written from transformers' modules (T5Block, CLIPEncoderLayer), not from
 * src/io/layout_textenc.c. */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_gen.h"
#include "cleardit.h"
#include "test_files.h"
#include "test_spawn.h"

#define PIPE "tests/fixtures/pipeline/tiny_dev"

/* T5 v1.1 encoder tensors: vocab V, d_model D, H heads x K, FFN F, L layers, B buckets. */
static void gen_t5(gen_list *l, int V, int D, int H, int K, int F, int L, int B) {
    char n[160];
    gen_add(l, "shared.weight", 2, V, D, 0, 0);
    gen_add(l, "encoder.final_layer_norm.weight", 1, D, 0, 0, 0);
    gen_add(l, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2, B, H, 0, 0);
    for (int b = 0; b < L; b++) {
        const char *qkv[] = {"q", "k", "v"};
        for (int k = 0; k < 3; k++) {
            snprintf(n, sizeof n, "encoder.block.%d.layer.0.SelfAttention.%s.weight", b, qkv[k]);
            gen_add(l, n, 2, H * K, D, 0, 0);
        }
        snprintf(n, sizeof n, "encoder.block.%d.layer.0.SelfAttention.o.weight", b);
        gen_add(l, n, 2, D, H * K, 0, 0);
        snprintf(n, sizeof n, "encoder.block.%d.layer.0.layer_norm.weight", b);
        gen_add(l, n, 1, D, 0, 0, 0);
        snprintf(n, sizeof n, "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", b);
        gen_add(l, n, 2, F, D, 0, 0);
        snprintf(n, sizeof n, "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", b);
        gen_add(l, n, 2, F, D, 0, 0);
        snprintf(n, sizeof n, "encoder.block.%d.layer.1.DenseReluDense.wo.weight", b);
        gen_add(l, n, 2, D, F, 0, 0);
        snprintf(n, sizeof n, "encoder.block.%d.layer.1.layer_norm.weight", b);
        gen_add(l, n, 1, D, 0, 0, 0);
    }
}

/* CLIP text model tensors ("text_model." names): vocab V, hidden D, intermediate I, L layers, P positions. */
static void gen_clip(gen_list *l, int V, int D, int I, int L, int P) {
    char n[160];
    gen_add(l, "text_model.embeddings.token_embedding.weight", 2, V, D, 0, 0);
    gen_add(l, "text_model.embeddings.position_embedding.weight", 2, P, D, 0, 0);
    gen_add(l, "text_model.final_layer_norm.weight", 1, D, 0, 0, 0);
    gen_add(l, "text_model.final_layer_norm.bias", 1, D, 0, 0, 0);
    for (int b = 0; b < L; b++) {
        const char *lin[] = {"self_attn.q_proj",   "self_attn.k_proj", "self_attn.v_proj",
                             "self_attn.out_proj", "mlp.fc1",          "mlp.fc2"};
        for (int k = 0; k < 6; k++) {
            snprintf(n, sizeof n, "text_model.encoder.layers.%d.%s.weight", b, lin[k]);
            gen_add(l, n, 2, k == 4 ? I : D, k == 5 ? I : D, 0, 0);
            snprintf(n, sizeof n, "text_model.encoder.layers.%d.%s.bias", b, lin[k]);
            gen_add(l, n, 1, k == 4 ? I : D, 0, 0, 0);
        }
        for (int k = 1; k <= 2; k++) {
            snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm%d.weight", b, k);
            gen_add(l, n, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm%d.bias", b, k);
            gen_add(l, n, 1, D, 0, 0, 0);
        }
    }
}

TEST(cli_inspect_textenc_pipeline) {
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    RUN(r, "inspect", PIPE "/text_encoder_2");
    EXPECT(r->code == 0 && strstr(r->out, "layout       t5-encoder\n") &&
               strstr(r->out, "T5 encoder (v1.1, gated-GELU FFN): vocab 1000, d_model 24, 3 heads x d_kv 8, d_ff 40, "
                              "2 layers\n") &&
               strstr(r->out, "relative positions: 32 buckets, max distance 128; eps 1e-06 (config.json)\n") &&
               strstr(r->out, "linear weights BF16\n") && strstr(r->out, "files        2\n") &&
               strstr(r->out, "unknown      0\n") && strstr(r->out, "missing      0\n") &&
               strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    RUN(r, "inspect", PIPE "/text_encoder");
    EXPECT(r->code == 0 && strstr(r->out, "layout       clip-text\n") &&
               strstr(r->out, "CLIP text model: vocab 1514, hidden 20, 2 heads, intermediate 36, 2 layers, 77 "
                              "positions\n") &&
               strstr(r->out, "hidden_act quick_gelu, eos_token_id 2 (pooled at the argmax id), eps 1e-05; "
                              "text_projection none\n") &&
               strstr(r->out, "unknown      0\n") && strstr(r->out, "missing      0\n") &&
               strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    /* the root names every model folder it has */
    RUN(r, "inspect", PIPE);
    EXPECT(r->code == 2 && one_error_line(r->err, "inspect") &&
               strstr(r->err, "pass its transformer/ subdirectory (the FLUX transformer), its vae/ subdirectory (the "
                              "autoencoder), text_encoder_2/ (T5) or text_encoder/ (CLIP)"),
           "exit %d: %s", r->code, r->err);
    /* JSON */
    RUN(r, "inspect", PIPE "/text_encoder_2", "--json");
    json_t *j = r->code == 0 ? json_loads(r->out, 0, NULL) : NULL;
    json_t *cfg = json_object_get(j, "config");
    EXPECT(j && !strcmp(json_string_value(json_object_get(j, "layout")), "t5-encoder") &&
               json_integer_value(json_object_get(cfg, "d_model")) == 24 &&
               json_integer_value(json_object_get(cfg, "heads")) == 3 &&
               json_integer_value(json_object_get(cfg, "d_kv")) == 8 &&
               json_integer_value(json_object_get(cfg, "max_distance")) == 128 &&
               json_is_true(json_object_get(cfg, "gated")) && json_is_false(json_object_get(cfg, "scaled_fp8")) &&
               !strcmp(json_string_value(json_object_get(cfg, "weights")), "BF16") &&
               !strcmp(json_string_value(json_object_get(cfg, "source")), "config.json"),
           "json: %s", r->out);
    json_decref(j);
    RUN(r, "inspect", PIPE "/text_encoder", "--json");
    j = r->code == 0 ? json_loads(r->out, 0, NULL) : NULL;
    cfg = json_object_get(j, "config");
    EXPECT(j && !strcmp(json_string_value(json_object_get(j, "layout")), "clip-text") &&
               json_integer_value(json_object_get(cfg, "hidden")) == 20 &&
               json_integer_value(json_object_get(cfg, "heads")) == 2 &&
               json_integer_value(json_object_get(cfg, "eos_id")) == 2 &&
               !strcmp(json_string_value(json_object_get(cfg, "hidden_act")), "quick_gelu"),
           "json: %s", r->out);
    json_decref(j);
    free(r);
}

TEST(cli_inspect_textenc_comfy_files) {
    char dir[64], t5[128], t5s[128], t5q[128], t5full[128], clip[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "tenc"), "tmp");
    snprintf(t5, sizeof t5, "%s/t5xxl_fp8_e4m3fn.safetensors", dir);
    snprintf(t5s, sizeof t5s, "%s/t5xxl_fp8_e4m3fn_scaled.safetensors", dir);
    snprintf(t5full, sizeof t5full, "%s/t5_full.safetensors", dir);
    snprintf(t5q, sizeof t5q, "%s/t5xxl_quant.safetensors", dir);
    snprintf(clip, sizeof clip, "%s/clip_l.safetensors", dir);
    gen_list l;
    int ok = 1;
    /* fp8 weights, no config.json: max distance and eps are T5's defaults */
    gen_init(&l, 11);
    gen_t5(&l, 100, 16, 2, 4, 24, 3, 8);
    gen_cast(&l, CD_DTYPE_F8_E4M3);
    ok &= gen_write(&l, t5) == 0;
    /* scaled fp8: the marker and a scalar scale per linear weight, but one scale left out */
    gen_add_shape(&l, "scaled_fp8", 1, (const int64_t[]){0})->dtype = CD_DTYPE_F8_E4M3;
    char n[160];
    for (int b = 0; b < 3; b++) {
        const char *lin[] = {"layer.0.SelfAttention.q",  "layer.0.SelfAttention.k",     "layer.0.SelfAttention.v",
                             "layer.0.SelfAttention.o",  "layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1",
                             "layer.1.DenseReluDense.wo"};
        for (int k = 0; k < 7; k++) {
            if (b == 2 && k == 6) continue;
            snprintf(n, sizeof n, "encoder.block.%d.%s.scale_weight", b, lin[k]);
            gen_add_shape(&l, n, 0, NULL);
        }
    }
    ok &= gen_write(&l, t5s) == 0;
    gen_free(&l);
    /* ComfyUI's newer quantised format: weight_scale / input_scale scalars and comfy_quant JSON bytes, no marker */
    gen_init(&l, 14);
    gen_t5(&l, 100, 16, 2, 4, 24, 1, 8);
    gen_cast(&l, CD_DTYPE_F8_E4M3);
    gen_add_shape(&l, "encoder.block.0.layer.0.SelfAttention.q.weight_scale", 0, NULL);
    gen_add_shape(&l, "encoder.block.0.layer.0.SelfAttention.q.input_scale", 1, (const int64_t[]){1});
    gen_tensor *cq = gen_add_shape(&l, "encoder.block.0.layer.0.SelfAttention.q.comfy_quant", 1, (const int64_t[]){7});
    cq->dtype = CD_DTYPE_U8;
    cq->nbytes = 7;
    ok &= gen_write(&l, t5q) == 0;
    gen_free(&l);
    /* a full T5 (encoder-decoder): the decoder and lm_head are not the encoder's */
    gen_init(&l, 12);
    gen_t5(&l, 100, 16, 2, 4, 24, 1, 8);
    gen_add(&l, "decoder.final_layer_norm.weight", 1, 16, 0, 0, 0);
    gen_add(&l, "lm_head.weight", 2, 100, 16, 0, 0);
    ok &= gen_write(&l, t5full) == 0;
    gen_free(&l);
    /* clip_l-style: the extras FLUX does not use */
    gen_init(&l, 13);
    gen_clip(&l, 300, 64, 96, 2, 77);
    gen_add(&l, "text_projection.weight", 2, 48, 64, 0, 0);
    gen_add_shape(&l, "logit_scale", 0, NULL);
    gen_add(&l, "text_model.embeddings.position_ids", 2, 1, 77, 0, 0);
    gen_cast(&l, CD_DTYPE_F16);
    ok &= gen_write(&l, clip) == 0;
    gen_free(&l);
    CHECK(ok, "write inputs");

    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    RUN(r, "inspect", t5);
    EXPECT(r->code == 0 && strstr(r->out, "layout       t5-encoder\n") &&
               strstr(r->out, "vocab 100, d_model 16, 2 heads x d_kv 4, d_ff 24, 3 layers\n") &&
               strstr(r->out, "8 buckets, max distance 128 (T5's default); eps 1e-06 (no config.json: defaults)\n") &&
               strstr(r->out, "linear weights F8_E4M3\n") && strstr(r->out, "unknown      0\n") &&
               strstr(r->out, "missing      0\n") && strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    RUN(r, "inspect", t5s);
    EXPECT(r->code == 0 && strstr(r->out, "linear weights F8_E4M3, scaled fp8 (ComfyUI: per-weight scales)\n") &&
               strstr(r->out, "unknown      0\n") &&
               strstr(r->out, "missing      1\n  encoder.block.2.layer.1.DenseReluDense.wo.scale_weight\n") &&
               strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    RUN(r, "inspect", t5q);
    EXPECT(r->code == 0 && strstr(r->out, "linear weights F8_E4M3, scaled fp8 (ComfyUI: per-weight scales)\n") &&
               strstr(r->out, "unknown      0\n") && strstr(r->out, "missing      0\n") &&
               strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    RUN(r, "inspect", t5full);
    EXPECT(r->code == 0 && strstr(r->out, "layout       t5-encoder\n") &&
               strstr(r->out, "unknown      2\n  decoder.final_layer_norm.weight\n  lm_head.weight\n") &&
               strstr(r->out, "missing      0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    RUN(r, "inspect", clip);
    EXPECT(r->code == 0 && strstr(r->out, "layout       clip-text\n") &&
               strstr(r->out, "vocab 300, hidden 64, 1 heads (hidden / 64: no config.json), intermediate 96, 2 "
                              "layers, 77 positions\n") &&
               strstr(r->out, "hidden_act unknown, eos_token_id unknown, eps 1e-05; text_projection 48 (not used by "
                              "FLUX)\n") &&
               strstr(r->out, "linear weights F16\n") && strstr(r->out, "unknown      0\n") &&
               strstr(r->out, "missing      0\n") && strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);

    /* a config.json beside: its head count is used, and a disagreement is listed */
    char cfg[160];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    CHECK(write_text(cfg, "{\"model_type\": \"clip_text_model\", \"hidden_size\": 64, \"num_attention_heads\": 4, "
                          "\"hidden_act\": \"quick_gelu\", \"eos_token_id\": 299, \"intermediate_size\": 96}"),
          "config");
    RUN(r, "inspect", clip);
    EXPECT(r->code == 0 && strstr(r->out, "hidden 64, 4 heads, intermediate 96") &&
               strstr(r->out, "hidden_act quick_gelu, eos_token_id 299, eps") && strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    CHECK(write_text(cfg, "{\"model_type\": \"clip_text_model\", \"hidden_size\": 32, \"num_attention_heads\": 4}"),
          "config");
    RUN(r, "inspect", clip);
    EXPECT(r->code == 0 && strstr(r->out, "wrong shape  1\n  config.json: hidden_size 32, the tensors say 64\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    /* a T5 config.json next to a CLIP file is not the CLIP's (and vice versa) */
    CHECK(write_text(cfg, "{\"model_type\": \"t5\", \"d_model\": 16, \"num_heads\": 2, \"d_kv\": 4, \"d_ff\": 24, "
                          "\"num_layers\": 3, \"relative_attention_num_buckets\": 8, "
                          "\"relative_attention_max_distance\": 20, \"feed_forward_proj\": \"gated-gelu\"}"),
          "config");
    RUN(r, "inspect", clip);
    EXPECT(r->code == 0 && strstr(r->out, "1 heads (hidden / 64: no config.json)") &&
               strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    RUN(r, "inspect", t5);
    EXPECT(r->code == 0 && strstr(r->out, "8 buckets, max distance 20; eps 1e-06 (config.json)\n") &&
               strstr(r->out, "wrong shape  0\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    CHECK(write_text(cfg, "{\"model_type\": \"t5\", \"num_heads\": 4, \"feed_forward_proj\": \"relu\"}"), "config");
    RUN(r, "inspect", t5);
    EXPECT(r->code == 0 && strstr(r->out, "wrong shape  1\n  config.json: num_heads 4, the tensors say 2\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);

    /* convert refuses a text encoder with one line, exit 2, nothing written */
    unlink(cfg);
    char out[160];
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    RUN(r, "convert", t5, out, "--layout", "diffusers");
    EXPECT(r->code == 2 && one_error_line(r->err, "convert") && strstr(r->err, "t5-encoder checkpoint") &&
               file_size(out) < 0,
           "exit %d: %s", r->code, r->err);
    free(r);
    tmp_rm(dir);
}

TEST(cli_inspect_textenc_missing) {
    char dir[64], t5[128], clip[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "tenc"), "tmp");
    snprintf(t5, sizeof t5, "%s/t5.safetensors", dir);
    snprintf(clip, sizeof clip, "%s/clip.safetensors", dir);
    gen_list l;
    int ok = 1;
    gen_init(&l, 21);
    gen_t5(&l, 50, 8, 2, 4, 16, 2, 8);
    gen_remove(&l, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    ok &= gen_write(&l, t5) == 0;
    gen_free(&l);
    gen_init(&l, 22);
    gen_clip(&l, 50, 64, 32, 2, 77);
    gen_remove(&l, "text_model.encoder.layers.1.mlp.fc2.bias");
    gen_remove(&l, "text_model.encoder.layers.0.self_attn.k_proj.weight");
    gen_add(&l, "text_model.encoder.layers.0.self_attn.k_proj.weight", 2, 64, 32, 0, 0);
    ok &= gen_write(&l, clip) == 0;
    gen_free(&l);
    CHECK(ok, "write inputs");
    cli_run *r = malloc(sizeof *r);
    CHECK(r, "malloc");
    RUN(r, "inspect", t5);
    EXPECT(
        r->code == 0 && strstr(r->out, "layout       t5-encoder\n") &&
            strstr(r->out, "config       cannot be inferred (see missing)\n") &&
            strstr(r->out, "missing      1\n  encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight\n"),
        "exit %d\n%s%s", r->code, r->out, r->err);
    RUN(r, "inspect", clip);
    EXPECT(r->code == 0 && strstr(r->out, "layout       clip-text\n") &&
               strstr(r->out, "missing      1\n  text_model.encoder.layers.1.mlp.fc2.bias\n") &&
               strstr(r->out, "wrong shape  1\n  text_model.encoder.layers.0.self_attn.k_proj.weight: got [64, 32] "
                              "want [64, 64]\n"),
           "exit %d\n%s%s", r->code, r->out, r->err);
    free(r);
    tmp_rm(dir);
}
