/* layout_textenc.c — FLUX's text encoders as checkpoint layouts, for inspect: a T5 encoder and a
 * CLIP text model with transformers' tensor names (what diffusers' text_encoder_2/ and
 * text_encoder/ hold, and what ComfyUI's t5xxl_*.safetensors and clip_l.safetensors hold). The
 * config comes from the shapes, completed and cross-checked by a config.json beside the weights
 * (transformers' config: the head count of CLIP and T5's max_distance are not in any shape).
 *
 * The names are written from transformers' module structure (T5Block: layer.0 =
 * T5LayerSelfAttention, layer.1 = T5LayerFF; CLIPEncoderLayer: self_attn, layer_norm1, mlp,
 * layer_norm2). ComfyUI's scaled fp8 files add a `scaled_fp8` marker tensor and a scalar
 * `<linear>.scale_weight` (and possibly `.scale_input`) per linear layer. */
#include "layout.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define TE_MAX_CONFIG (1u << 20) /* a transformers config.json is a few KB */

/* config.json in the folder of the checkpoint's first file, or NULL (absent, unreadable, too
 * large, not JSON: inspect describes the tensors either way). */
static json_t *config_beside(const cd_ckpt *c) {
    if (!cd_ckpt_files(c)) return NULL;
    const char *f = cd_ckpt_file(c, 0);
    const char *slash = strrchr(f, '/');
    const size_t dl = slash ? (size_t)(slash - f) : 0;
    char *p = malloc(dl + sizeof "/config.json" + 2);
    if (!p) return NULL;
    if (slash)
        memcpy(p, f, dl), strcpy(p + dl, "/config.json");
    else
        strcpy(p, "config.json");
    struct stat st;
    json_t *j = NULL;
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= TE_MAX_CONFIG)
        j = json_load_file(p, JSON_REJECT_DUPLICATES, NULL);
    free(p);
    if (j && !json_is_object(j)) j = (json_decref(j), NULL);
    return j;
}

static const cd_st_tensor *find2(const cd_ckpt *c, const char *name, int32_t ndim) {
    const cd_st_tensor *t = cd_ckpt_find(c, name);
    return t && t->ndim == ndim && t->shape[0] > 0 && (ndim < 2 || t->shape[1] > 0) ? t : NULL;
}

/* A config integer: compares with the shapes' value (the first disagreement goes to conflict) or,
 * where the shapes say nothing (*v == 0), takes it. */
static void cfg_int(const json_t *cfg, const char *key, int32_t *v, char *conflict) {
    const json_t *j = json_object_get(cfg, key);
    if (!json_is_integer(j) || json_integer_value(j) <= 0 || json_integer_value(j) > INT32_MAX) return;
    const int32_t x = (int32_t)json_integer_value(j);
    if (!*v)
        *v = x;
    else if (*v != x && !conflict[0])
        snprintf(conflict, LAY_NAME_MAX, "config.json: %s %d, the tensors say %d", key, x, *v);
}

static int add(lay_plan *p, const char *name, int32_t ndim, int64_t d0, int64_t d1) {
    const int64_t sh[2] = {d0, d1};
    return lay_set_add(&p->side[LAY_DIF], name, ndim, sh) < 0 ? -1 : 0;
}

/* A present scalar `<base>.<suffix>` (ComfyUI's per-weight scales), expected in its own shape if
 * it holds one element (else as [] so that the wrong shape shows); any_shape: in its own shape. */
static int add_scale(const cd_ckpt *c, lay_plan *p, const char *weight, const char *suffix, int required,
                     int any_shape) {
    char name[LAY_NAME_MAX];
    const size_t n = strlen(weight) - strlen("weight");
    snprintf(name, sizeof name, "%.*s%s", (int)n, weight, suffix);
    const cd_st_tensor *t = cd_ckpt_find(c, name);
    if (!t && !required) return 0;
    if (t && (any_shape || cd_st_numel(t) == 1))
        return lay_set_add(&p->side[LAY_DIF], name, t->ndim, t->shape) < 0 ? -1 : 0;
    return add(p, name, 0, 0, 0);
}

/* The quantisation companions of a linear weight that ComfyUI files carry: the legacy scaled fp8
 * scalars (scale_weight, required when the file has the scaled_fp8 marker; scale_input) and the
 * newer format's (weight_scale, input_scale, and comfy_quant, the layer's settings as JSON bytes). */
static int add_quant(const cd_ckpt *c, lay_plan *p, const char *weight, int scaled_fp8) {
    return add_scale(c, p, weight, "scale_weight", scaled_fp8, 0) || add_scale(c, p, weight, "scale_input", 0, 0) ||
                   add_scale(c, p, weight, "weight_scale", 0, 0) || add_scale(c, p, weight, "input_scale", 0, 0) ||
                   add_scale(c, p, weight, "comfy_quant", 0, 1)
               ? -1
               : 0;
}

/* ---- T5 ------------------------------------------------------------------------------------- */

#define T5_BLOCK "encoder.block."
#define T5_REL "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"

int lay_t5_build(const cd_ckpt *c, cd_t5_info *t, lay_plan *p, char *need, char *conflict) {
    memset(t, 0, sizeof *t);
    const cd_st_tensor *emb = find2(c, "shared.weight", 2), *emb2 = find2(c, "encoder.embed_tokens.weight", 2);
    const cd_st_tensor *rel = find2(c, T5_REL, 2), *q = find2(c, T5_BLOCK "0.layer.0.SelfAttention.q.weight", 2);
    const cd_st_tensor *wi = find2(c, T5_BLOCK "0.layer.1.DenseReluDense.wi_0.weight", 2);
    t->gated = wi != NULL;
    if (!wi) wi = find2(c, T5_BLOCK "0.layer.1.DenseReluDense.wi.weight", 2);
    if (!emb) emb = emb2;
    const char *miss = !emb   ? "shared.weight"
                       : !rel ? T5_REL
                       : !q   ? T5_BLOCK "0.layer.0.SelfAttention.q.weight"
                       : !wi  ? T5_BLOCK "0.layer.1.DenseReluDense.wi_0.weight"
                              : NULL;
    if (miss) {
        snprintf(need, LAY_NAME_MAX, "%s", miss);
        return 0;
    }
    t->vocab = (int32_t)emb->shape[0];
    t->d_model = (int32_t)emb->shape[1];
    t->buckets = (int32_t)rel->shape[0];
    t->heads = (int32_t)rel->shape[1];
    t->d_kv = q->shape[0] % t->heads ? 0 : (int32_t)(q->shape[0] / t->heads);
    t->d_ff = (int32_t)wi->shape[0];
    t->layers = lay_count_blocks(c, T5_BLOCK);
    t->wdtype = q->dtype;
    /* the legacy marker, or the newer format's per-weight scale on block 0's q */
    t->scaled_fp8 = cd_ckpt_find(c, "scaled_fp8") || cd_ckpt_find(c, T5_BLOCK "0.layer.0.SelfAttention.q.weight_scale");
    json_t *cfg = config_beside(c);
    const char *mt = cfg ? json_string_value(json_object_get(cfg, "model_type")) : NULL;
    if (mt && !strcmp(mt, "t5")) {
        t->from_config = 1;
        cfg_int(cfg, "vocab_size", &t->vocab, conflict);
        cfg_int(cfg, "d_model", &t->d_model, conflict);
        cfg_int(cfg, "num_heads", &t->heads, conflict);
        cfg_int(cfg, "d_kv", &t->d_kv, conflict);
        cfg_int(cfg, "d_ff", &t->d_ff, conflict);
        cfg_int(cfg, "num_layers", &t->layers, conflict);
        cfg_int(cfg, "relative_attention_num_buckets", &t->buckets, conflict);
        cfg_int(cfg, "relative_attention_max_distance", &t->max_distance, conflict);
        const json_t *eps = json_object_get(cfg, "layer_norm_epsilon");
        if (json_is_number(eps)) t->eps = (float)json_number_value(eps);
        const char *ff = json_string_value(json_object_get(cfg, "feed_forward_proj"));
        if (ff && !conflict[0] && (!strncmp(ff, "gated-", 6)) != t->gated)
            snprintf(conflict, LAY_NAME_MAX, "config.json: feed_forward_proj %s, the tensors say %s", ff,
                     t->gated ? "gated (wi_0, wi_1)" : "not gated (wi)");
    }
    json_decref(cfg);
    if (!t->max_distance) t->max_distance = 128; /* T5's default, and FLUX's T5-XXL's */
    if (!t->eps) t->eps = 1e-6f;
    if (!t->d_kv) {
        snprintf(need, LAY_NAME_MAX, "%s (rows a multiple of the %d heads)",
                 T5_BLOCK "0.layer.0.SelfAttention.q.weight", t->heads);
        return 0;
    }

    /* the expected tensors */
    const int64_t D = t->d_model, I = (int64_t)t->heads * t->d_kv, F = t->d_ff;
    /* transformers ties the two embedding names; a file holds either or both */
    if (emb != emb2 && add(p, "shared.weight", 2, t->vocab, D)) return -1;
    if (emb2 && add(p, "encoder.embed_tokens.weight", 2, t->vocab, D)) return -1;
    if (add(p, T5_REL, 2, t->buckets, t->heads) || add(p, "encoder.final_layer_norm.weight", 1, D, 0)) return -1;
    const cd_st_tensor *marker = cd_ckpt_find(c, "scaled_fp8"); /* any shape (ComfyUI: 0 or 2 elements) */
    if (marker && lay_set_add(&p->side[LAY_DIF], marker->name, marker->ndim, marker->shape) < 0) return -1;
    static const char *const lin[] = {"layer.0.SelfAttention.q",     "layer.0.SelfAttention.k",
                                      "layer.0.SelfAttention.v",     "layer.0.SelfAttention.o",
                                      "layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1",
                                      "layer.1.DenseReluDense.wo"};
    char name[LAY_NAME_MAX];
    for (int32_t b = 0; b < t->layers; b++) {
        for (int k = 0; k < 7; k++) {
            const char *l = (!t->gated && k == 4) ? "layer.1.DenseReluDense.wi" : lin[k];
            if (!t->gated && k == 5) continue;
            const int64_t rows = k < 3 ? I : k == 3 ? D : k < 6 ? F : D, cols = k < 3 ? D : k == 3 ? I : k < 6 ? D : F;
            snprintf(name, sizeof name, T5_BLOCK "%d.%s.weight", b, l);
            if (add(p, name, 2, rows, cols) || add_quant(c, p, name, cd_ckpt_find(c, "scaled_fp8") != NULL)) return -1;
        }
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, T5_BLOCK "%d.layer.%d.layer_norm.weight", b, k);
            if (add(p, name, 1, D, 0)) return -1;
        }
    }
    return 0;
}

/* ---- CLIP ----------------------------------------------------------------------------------- */

int lay_clip_build(const cd_ckpt *c, cd_clip_info *t, lay_plan *p, char *need, char *conflict) {
    memset(t, 0, sizeof *t);
    t->quick_gelu = t->eos_id = -1;
    /* transformers 5 saves CLIPTextModel without the "text_model." that the files users have carry */
    const char *base = lay_has_prefix(c, "text_model.") ? "text_model." : "";
    char name[LAY_NAME_MAX], tok_n[LAY_NAME_MAX], pos_n[LAY_NAME_MAX], fc1_n[LAY_NAME_MAX], q_n[LAY_NAME_MAX];
    snprintf(tok_n, sizeof tok_n, "%sembeddings.token_embedding.weight", base);
    snprintf(pos_n, sizeof pos_n, "%sembeddings.position_embedding.weight", base);
    snprintf(fc1_n, sizeof fc1_n, "%sencoder.layers.0.mlp.fc1.weight", base);
    snprintf(q_n, sizeof q_n, "%sencoder.layers.0.self_attn.q_proj.weight", base);
    const cd_st_tensor *tok = find2(c, tok_n, 2), *pos = find2(c, pos_n, 2), *fc1 = find2(c, fc1_n, 2);
    const cd_st_tensor *q = find2(c, q_n, 2);
    const char *miss = !tok ? tok_n : !pos ? pos_n : !fc1 ? fc1_n : !q ? q_n : NULL;
    if (miss) {
        snprintf(need, LAY_NAME_MAX, "%s", miss);
        return 0;
    }
    t->vocab = (int32_t)tok->shape[0];
    t->hidden = (int32_t)tok->shape[1];
    t->max_pos = (int32_t)pos->shape[0];
    t->inter = (int32_t)fc1->shape[0];
    snprintf(name, sizeof name, "%sencoder.layers.", base);
    t->layers = lay_count_blocks(c, name);
    t->wdtype = q->dtype;
    const cd_st_tensor *proj = find2(c, "text_projection.weight", 2);
    t->projection = proj ? (int32_t)proj->shape[0] : 0;
    json_t *cfg = config_beside(c);
    const char *mt = cfg ? json_string_value(json_object_get(cfg, "model_type")) : NULL;
    const json_t *tc = mt && !strcmp(mt, "clip")              ? json_object_get(cfg, "text_config")
                       : mt && !strcmp(mt, "clip_text_model") ? cfg
                                                              : NULL;
    if (json_is_object(tc)) {
        t->from_config = 1;
        cfg_int(tc, "vocab_size", &t->vocab, conflict);
        cfg_int(tc, "hidden_size", &t->hidden, conflict);
        cfg_int(tc, "intermediate_size", &t->inter, conflict);
        cfg_int(tc, "num_hidden_layers", &t->layers, conflict);
        cfg_int(tc, "max_position_embeddings", &t->max_pos, conflict);
        cfg_int(tc, "num_attention_heads", &t->heads, conflict);
        const char *act = json_string_value(json_object_get(tc, "hidden_act"));
        if (act) t->quick_gelu = !strcmp(act, "quick_gelu");
        const json_t *eos = json_object_get(tc, "eos_token_id");
        if (json_is_integer(eos) && json_integer_value(eos) >= 0 && json_integer_value(eos) <= INT32_MAX)
            t->eos_id = (int32_t)json_integer_value(eos);
        const json_t *eps = json_object_get(tc, "layer_norm_eps");
        if (json_is_number(eps)) t->eps = (float)json_number_value(eps);
    }
    json_decref(cfg);
    if (!t->heads) t->heads = t->hidden % 64 ? 1 : t->hidden / 64; /* CLIP-L / CLIP-G: 64 per head */
    if (!t->eps) t->eps = 1e-5f;
    if (t->hidden % t->heads && !conflict[0])
        snprintf(conflict, LAY_NAME_MAX, "config.json: num_attention_heads %d does not divide the hidden size %d",
                 t->heads, t->hidden);

    const int64_t D = t->hidden, I = t->inter;
    if (add(p, tok_n, 2, t->vocab, D) || add(p, pos_n, 2, t->max_pos, D)) return -1;
    static const char *const lin[] = {"self_attn.q_proj",   "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.out_proj", "mlp.fc1",          "mlp.fc2"};
    for (int32_t b = 0; b < t->layers; b++) {
        for (int k = 0; k < 6; k++) {
            const int64_t rows = k == 4 ? I : D, cols = k == 5 ? I : D;
            snprintf(name, sizeof name, "%sencoder.layers.%d.%s.weight", base, b, lin[k]);
            if (add(p, name, 2, rows, cols) || add_quant(c, p, name, cd_ckpt_find(c, "scaled_fp8") != NULL)) return -1;
            snprintf(name, sizeof name, "%sencoder.layers.%d.%s.bias", base, b, lin[k]);
            if (add(p, name, 1, rows, 0)) return -1;
        }
        for (int k = 1; k <= 2; k++) {
            snprintf(name, sizeof name, "%sencoder.layers.%d.layer_norm%d.weight", base, b, k);
            if (add(p, name, 1, D, 0)) return -1;
            snprintf(name, sizeof name, "%sencoder.layers.%d.layer_norm%d.bias", base, b, k);
            if (add(p, name, 1, D, 0)) return -1;
        }
    }
    snprintf(name, sizeof name, "%sfinal_layer_norm.weight", base);
    if (add(p, name, 1, D, 0)) return -1;
    snprintf(name, sizeof name, "%sfinal_layer_norm.bias", base);
    if (add(p, name, 1, D, 0)) return -1;
    /* what CLIP files carry that FLUX does not use: the projection to the joint image-text space
     * (FLUX takes the pooled state before it), CLIP's logit temperature, and the position-id buffer
     * older transformers saved; expected when present, never missing */
    if (proj && add(p, "text_projection.weight", 2, t->projection, D)) return -1;
    const cd_st_tensor *ls = cd_ckpt_find(c, "logit_scale");
    if (ls && cd_st_numel(ls) == 1 && lay_set_add(&p->side[LAY_DIF], ls->name, ls->ndim, ls->shape) < 0) return -1;
    snprintf(name, sizeof name, "%sembeddings.position_ids", base);
    const cd_st_tensor *pid = cd_ckpt_find(c, name);
    if (pid && (pid->ndim == 1 ? add(p, name, 1, t->max_pos, 0) : add(p, name, 2, 1, t->max_pos))) return -1;
    const cd_st_tensor *marker = cd_ckpt_find(c, "scaled_fp8");
    if (marker && lay_set_add(&p->side[LAY_DIF], marker->name, marker->ndim, marker->shape) < 0) return -1;
    return 0;
}
