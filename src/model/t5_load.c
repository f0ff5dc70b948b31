/* t5_load.c — binding a T5 v1.1 encoder checkpoint (docs/t5.md section 2): transformers /
 * diffusers names and ComfyUI's single files (fp16, fp8, scaled fp8), the config from the tensor
 * shapes (checked against a config.json beside the weights), and random weights for benchmarks.
 * Linear weights stay in the mapped file; only the small vectors (norm scales, the relative
 * attention bias) are converted to f32, in one allocation with the block table. */
#include "t5_internal.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EMBED_SHARED "shared.weight"
#define EMBED_ENC "encoder.embed_tokens.weight"
#define FINAL_LN "encoder.final_layer_norm.weight"
#define REL_BIAS "layer.0.SelfAttention.relative_attention_bias.weight"
#define MARKER "scaled_fp8"

/* The linears of a block, in cd_t5_block order, as stems (name = stem + "weight"). */
static const char *const k_lin[7] = {
    "layer.0.SelfAttention.q.",   "layer.0.SelfAttention.k.",     "layer.0.SelfAttention.v.",
    "layer.0.SelfAttention.o.",   "layer.1.DenseReluDense.wi_0.", "layer.1.DenseReluDense.wi_1.",
    "layer.1.DenseReluDense.wo.",
};
static const char *const k_ln[2] = {"layer.0.layer_norm.weight", "layer.1.layer_norm.weight"};

static cd_t5_lin *lin_at(cd_t5_block *b, int i) {
    cd_t5_lin *l[7] = {&b->q, &b->k, &b->v, &b->o, &b->wi0, &b->wi1, &b->wo};
    return l[i];
}

/* ---- names ---------------------------------------------------------------------------------- */

/* Parses "encoder.block.<n>.<rest>": the block index (< 0: not a block tensor) and rest. */
static int block_of(const char *name, const char **rest) {
    static const char pre[] = "encoder.block.";
    if (strncmp(name, pre, sizeof pre - 1)) return -1;
    const char *p = name + sizeof pre - 1;
    long n = 0;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9' && n < 100000) n = n * 10 + (*p++ - '0');
    if (*p != '.' || n >= 100000) return -1;
    *rest = p + 1;
    return (int)n;
}

typedef enum { NAME_UNKNOWN = 0, NAME_ENCODER, NAME_IGNORED, NAME_V10 } name_kind;

/* What a checkpoint name is: an encoder tensor (block index in *blk, -1 for the others), a tensor
 * of a full T5 that the encoder ignores (decoder, LM head), T5 v1.0's ReLU FFN, or unknown. */
static name_kind classify(const char *name, int *blk) {
    *blk = -1;
    if (!strcmp(name, EMBED_SHARED) || !strcmp(name, EMBED_ENC) || !strcmp(name, FINAL_LN) || !strcmp(name, MARKER))
        return NAME_ENCODER;
    if (!strncmp(name, "decoder.", 8) || !strcmp(name, "lm_head.weight")) return NAME_IGNORED;
    const char *rest;
    const int b = block_of(name, &rest);
    if (b < 0) return NAME_UNKNOWN;
    *blk = b;
    /* only block 0 has the bias table (transformers' has_relative_attention_bias) */
    if ((b == 0 && !strcmp(rest, REL_BIAS)) || !strcmp(rest, k_ln[0]) || !strcmp(rest, k_ln[1])) return NAME_ENCODER;
    if (!strcmp(rest, "layer.1.DenseReluDense.wi.weight")) return NAME_V10;
    for (int i = 0; i < 7; i++) {
        const size_t n = strlen(k_lin[i]);
        if (!strncmp(rest, k_lin[i], n) &&
            (!strcmp(rest + n, "weight") || !strcmp(rest + n, "scale_weight") || !strcmp(rest + n, "scale_input")))
            return NAME_ENCODER;
    }
    return NAME_UNKNOWN;
}

/* ---- checks --------------------------------------------------------------------------------- */

typedef struct {
    cd_ctx *ctx;
    const cd_ckpt *ck;
    const char *path;
} binder;

static const cd_st_tensor *need(binder *b, const char *name, cd_status *s) {
    const cd_st_tensor *t = cd_ckpt_find(b->ck, name);
    if (!t && !*s) *s = cd_set_error(b->ctx, CD_ERR_NOT_FOUND, "t5: %s: missing tensor '%s'", b->path, name);
    return t;
}

static cd_status check_shape(binder *b, const cd_st_tensor *t, int ndim, int64_t d0, int64_t d1) {
    if (t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1)) return CD_OK;
    char got[96] = "", want[48];
    size_t o = 0;
    for (int i = 0; i < t->ndim && o < sizeof got - 24; i++)
        o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (ndim == 2)
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
    else
        snprintf(want, sizeof want, "[%lld]", (long long)d0);
    return cd_set_error(b->ctx, CD_ERR_SHAPE, "t5: %s: tensor '%s' has shape [%s], expected %s", b->path, t->name, got,
                        want);
}

static int readable(cd_dtype t) {
    return t == CD_DTYPE_F32 || t == CD_DTYPE_BF16 || t == CD_DTYPE_F16 || t == CD_DTYPE_F8_E4M3 ||
           t == CD_DTYPE_F8_E5M2;
}

static cd_status check_dtype(binder *b, const cd_st_tensor *t) {
    if (!readable(t->dtype))
        return cd_set_error(b->ctx, CD_ERR_FORMAT, "t5: %s: tensor '%s' is %s (expected F32, BF16, F16 or F8)", b->path,
                            t->name, cd_dtype_name(t->dtype));
    const size_t es = (size_t)cd_dtype_bits(t->dtype) / 8;
    if ((uintptr_t)t->data % es)
        return cd_set_error(b->ctx, CD_ERR_FORMAT,
                            "t5: %s: tensor '%s' is not aligned to its %zu-byte elements in the file", b->path, t->name,
                            es);
    return CD_OK;
}

/* A scalar (numel 1) F32/BF16/F16 tensor's value. */
static cd_status scalar(binder *b, const cd_st_tensor *t, float *v) {
    if (cd_st_numel(t) != 1 || (t->dtype != CD_DTYPE_F32 && t->dtype != CD_DTYPE_BF16 && t->dtype != CD_DTYPE_F16))
        return cd_set_error(b->ctx, CD_ERR_FORMAT, "t5: %s: '%s' must be one F32/BF16/F16 value (it is %s with %llu)",
                            b->path, t->name, cd_dtype_name(t->dtype), (unsigned long long)cd_st_numel(t));
    cd_status s = cd_st_to_f32(b->ctx, t, v);
    if (!s && !(isfinite(*v) && *v > 0.0f))
        s = cd_set_error(b->ctx, CD_ERR_FORMAT, "t5: %s: '%s' = %g (must be finite and positive)", b->path, t->name,
                         (double)*v);
    return s;
}

/* ---- config ------------------------------------------------------------------------------- */

/* The config from the shapes: embedding [vocab, D], q [I, D], relative bias [buckets, NH],
 * wi_0 [F, D], the number of blocks. max_distance and eps are T5 v1.1's (no tensor holds them). */
static cd_status infer_config(binder *b, const cd_st_tensor *emb, int layers, cd_t5_config *c) {
    cd_status s = CD_OK;
    char name[128];
    snprintf(name, sizeof name, "encoder.block.0.%s", REL_BIAS);
    const cd_st_tensor *rel = need(b, name, &s);
    snprintf(name, sizeof name, "encoder.block.0.%sweight", k_lin[0]);
    const cd_st_tensor *q = need(b, name, &s);
    snprintf(name, sizeof name, "encoder.block.0.%sweight", k_lin[4]);
    const cd_st_tensor *wi = need(b, name, &s);
    if (s) return s;
    const cd_st_tensor *two[4] = {emb, rel, q, wi};
    for (int i = 0; i < 4; i++)
        if (two[i]->ndim != 2 || two[i]->shape[0] < 1 || two[i]->shape[1] < 1 || two[i]->shape[0] > INT32_MAX / 4 ||
            two[i]->shape[1] > INT32_MAX / 4)
            return cd_set_error(b->ctx, CD_ERR_SHAPE, "t5: %s: tensor '%s' must be a non-empty matrix", b->path,
                                two[i]->name);
    memset(c, 0, sizeof *c);
    c->vocab = (int32_t)emb->shape[0];
    c->d_model = (int32_t)emb->shape[1];
    c->buckets = (int32_t)rel->shape[0];
    c->heads = (int32_t)rel->shape[1];
    c->d_ff = (int32_t)wi->shape[0];
    c->layers = layers;
    c->max_distance = 128;
    c->eps = 1e-6f;
    if (q->shape[0] % c->heads)
        return cd_set_error(b->ctx, CD_ERR_SHAPE, "t5: %s: '%s' has %lld rows, not a multiple of the %d heads of '%s'",
                            b->path, q->name, (long long)q->shape[0], c->heads, rel->name);
    c->d_kv = (int32_t)(q->shape[0] / c->heads);
    return CD_OK;
}

static int dir_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* config.json in the directory `path` or beside the file `path`; a JSON without "d_model" is not
 * a T5 config and is not read. Every field present must agree with the shapes. */
static cd_status apply_config_json(binder *b, cd_t5_config *c) {
    char p[4096];
    if (dir_exists(b->path)) {
        snprintf(p, sizeof p, "%s/config.json", b->path);
    } else {
        const char *slash = strrchr(b->path, '/');
        const int n = slash ? (int)(slash - b->path) : 0;
        snprintf(p, sizeof p, "%.*s%sconfig.json", n, b->path, slash ? "/" : "");
    }
    FILE *f = fopen(p, "rb");
    if (!f) return CD_OK;
    fclose(f);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return cd_set_error(b->ctx, CD_ERR_FORMAT, "t5: %s: not a JSON object (line %d: %s)", p, je.line, je.text);
    }
    cd_status s = CD_OK;
    if (!json_object_get(root, "d_model")) goto done;
    const struct {
        const char *key;
        int32_t *v;
        int from_shapes;
    } ints[] = {
        {"vocab_size", &c->vocab, 1},
        {"d_model", &c->d_model, 1},
        {"d_kv", &c->d_kv, 1},
        {"num_heads", &c->heads, 1},
        {"d_ff", &c->d_ff, 1},
        {"num_layers", &c->layers, 1},
        {"relative_attention_num_buckets", &c->buckets, 1},
        {"relative_attention_max_distance", &c->max_distance, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !s; i++) {
        json_t *v = json_object_get(root, ints[i].key);
        if (!v) continue;
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX)
            s = cd_set_error(b->ctx, CD_ERR_FORMAT, "t5: %s: \"%s\" must be a positive integer", p, ints[i].key);
        else if (ints[i].from_shapes && json_integer_value(v) != *ints[i].v)
            s = cd_set_error(b->ctx, CD_ERR_SHAPE, "t5: %s: \"%s\" is %lld but the tensors in %s say %d", p,
                             ints[i].key, (long long)json_integer_value(v), b->path, *ints[i].v);
        else
            *ints[i].v = (int32_t)json_integer_value(v);
    }
    json_t *eps = json_object_get(root, "layer_norm_epsilon");
    if (!s && eps) {
        if (!json_is_number(eps) || !(json_number_value(eps) > 0) || json_number_value(eps) > 1)
            s = cd_set_error(b->ctx, CD_ERR_FORMAT, "t5: %s: \"layer_norm_epsilon\" must be in (0, 1]", p);
        else
            c->eps = (float)json_number_value(eps);
    }
    json_t *ff = json_object_get(root, "feed_forward_proj");
    if (!s && ff && (!json_is_string(ff) || strcmp(json_string_value(ff), "gated-gelu")))
        s = cd_set_error(b->ctx, CD_ERR_UNSUPPORTED,
                         "t5: %s: \"feed_forward_proj\" is %s; only T5 v1.1's \"gated-gelu\" is supported", p,
                         json_is_string(ff) ? json_string_value(ff) : "not a string");
done:
    json_decref(root);
    return s;
}

static cd_status check_config(cd_ctx *ctx, const cd_t5_config *c) {
    const int32_t me = c->buckets / 4;
    if (c->vocab < 1 || c->d_model < 1 || c->d_kv < 1 || c->heads < 1 || c->d_ff < 1 || c->layers < 1 ||
        c->buckets < 4 || c->max_distance <= me || !(c->eps > 0) || c->d_model > (1 << 20) || c->d_ff > (1 << 22) ||
        (int64_t)c->heads * c->d_kv > (1 << 20) || c->layers > 4096 || c->buckets > (1 << 16))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "t5: invalid config (vocab %d, d_model %d, d_kv %d, heads %d, d_ff %d, layers %d, "
                            "buckets %d (>= 4), max_distance %d (> buckets/4), eps %g)",
                            c->vocab, c->d_model, c->d_kv, c->heads, c->d_ff, c->layers, c->buckets, c->max_distance,
                            (double)c->eps);
    return CD_OK;
}

/* ---- the model's memory: block table + f32 vectors (+ random weights) ----------------------- */

static cd_status alloc_model(cd_ctx *ctx, const cd_t5_config *c, size_t extra_bytes, cd_t5 **out) {
    const size_t D = (size_t)c->d_model;
    const size_t floats = (2 * (size_t)c->layers + 1) * D + (size_t)c->buckets * (size_t)c->heads;
    const size_t blocks = ((size_t)c->layers * sizeof(cd_t5_block) + 63) & ~(size_t)63;
    const size_t bytes = blocks + ((floats * sizeof(float) + 63) & ~(size_t)63) + extra_bytes;
    cd_t5 *m = calloc(1, sizeof *m);
    void *mem = m ? aligned_alloc(64, (bytes + 63) & ~(size_t)63) : NULL;
    if (!mem) {
        free(m);
        return cd_set_error(ctx, CD_ERR_OOM, "t5: out of memory for the model (%zu bytes)", bytes);
    }
    memset(mem, 0, blocks);
    m->cfg = *c;
    m->mem = mem;
    m->blocks = mem;
    float *f = (float *)((char *)mem + blocks);
    m->ln_final = f;
    for (int i = 0; i < c->layers; i++) {
        m->blocks[i].ln_attn = f + D * (1 + 2 * (size_t)i);
        m->blocks[i].ln_ff = f + D * (2 + 2 * (size_t)i);
    }
    m->rel_bias = f + D * (1 + 2 * (size_t)c->layers);
    *out = m;
    return CD_OK;
}

void cd_t5_free(cd_t5 *m) {
    if (!m) return;
    cd_ckpt_close(m->ckpt);
    free(m->mem);
    free(m);
}

const cd_t5_config *cd_t5_cfg(const cd_t5 *m) { return m ? &m->cfg : NULL; }
const char *cd_t5_describe(const cd_t5 *m) { return m ? m->desc : ""; }

/* ---- binding a checkpoint -------------------------------------------------------------------- */

static cd_status to_f32(binder *b, const cd_st_tensor *t, float *dst) {
    cd_status s = check_dtype(b, t);
    return s ? s : cd_st_to_f32(b->ctx, t, dst);
}

/* Binds block i's linears (checking shapes and scales) and converts its norm scales. */
static cd_status bind_block(binder *b, cd_t5 *m, int i, int scaled, int *n_scale_input, cd_dtype *dt) {
    const cd_t5_config *c = &m->cfg;
    const int64_t D = c->d_model, I = (int64_t)c->heads * c->d_kv, F = c->d_ff;
    const int64_t shape[7][2] = {{I, D}, {I, D}, {I, D}, {D, I}, {F, D}, {F, D}, {D, F}};
    cd_t5_block *blk = &m->blocks[i];
    char name[160];
    cd_status s = CD_OK;
    for (int j = 0; j < 7 && !s; j++) {
        snprintf(name, sizeof name, "encoder.block.%d.%sweight", i, k_lin[j]);
        const cd_st_tensor *t = need(b, name, &s);
        if (s || (s = check_shape(b, t, 2, shape[j][0], shape[j][1])) || (s = check_dtype(b, t))) break;
        cd_t5_lin *l = lin_at(blk, j);
        l->w = (cd_weight){.data = t->data, .dtype = t->dtype, .out = (int32_t)shape[j][0], .in = (int32_t)shape[j][1]};
        l->scale = 1.0f;
        if (*dt != t->dtype) *dt = (*dt == CD_DTYPE_COUNT) ? t->dtype : CD_DTYPE_U8; /* U8: "mixed" */
        snprintf(name, sizeof name, "encoder.block.%d.%sscale_weight", i, k_lin[j]);
        const cd_st_tensor *sw = cd_ckpt_find(b->ck, name);
        if (sw && !scaled)
            s = cd_set_error(b->ctx, CD_ERR_FORMAT,
                             "t5: %s: '%s' without the '%s' marker tensor (not a ComfyUI scaled fp8 file?)", b->path,
                             name, MARKER);
        else if (sw)
            s = scalar(b, sw, &l->scale);
        snprintf(name, sizeof name, "encoder.block.%d.%sscale_input", i, k_lin[j]);
        const cd_st_tensor *si = cd_ckpt_find(b->ck, name);
        float unused;
        if (!s && si && !scaled)
            s = cd_set_error(b->ctx, CD_ERR_FORMAT, "t5: %s: '%s' without the '%s' marker tensor", b->path, name,
                             MARKER);
        else if (!s && si && !(s = scalar(b, si, &unused)))
            (*n_scale_input)++;
    }
    const float *ln[2] = {blk->ln_attn, blk->ln_ff};
    for (int j = 0; j < 2 && !s; j++) {
        snprintf(name, sizeof name, "encoder.block.%d.%s", i, k_ln[j]);
        const cd_st_tensor *t = need(b, name, &s);
        if (!s && !(s = check_shape(b, t, 1, D, 0))) s = to_f32(b, t, (float *)ln[j]);
    }
    return s;
}

static cd_status bind(binder *b, cd_t5 *m, const cd_st_tensor *emb, int scaled, int n_ignored) {
    const cd_t5_config *c = &m->cfg;
    cd_status s = check_shape(b, emb, 2, c->vocab, c->d_model);
    if (!s) s = check_dtype(b, emb);
    const cd_st_tensor *other = cd_ckpt_find(b->ck, EMBED_ENC);
    if (!s && other && other != emb) s = check_shape(b, other, 2, c->vocab, c->d_model);
    m->embed = emb;
    char name[160];
    snprintf(name, sizeof name, "encoder.block.0.%s", REL_BIAS);
    const cd_st_tensor *rel = s ? NULL : need(b, name, &s);
    if (!s && !(s = check_shape(b, rel, 2, c->buckets, c->heads))) s = to_f32(b, rel, (float *)m->rel_bias);
    const cd_st_tensor *fin = s ? NULL : need(b, FINAL_LN, &s);
    if (!s && !(s = check_shape(b, fin, 1, c->d_model, 0))) s = to_f32(b, fin, (float *)m->ln_final);
    int n_scale_input = 0;
    cd_dtype dt = CD_DTYPE_COUNT;
    for (int i = 0; i < c->layers && !s; i++) s = bind_block(b, m, i, scaled, &n_scale_input, &dt);
    if (s) return s;
    char extra[96] = "";
    if (n_scale_input)
        snprintf(extra, sizeof extra, ", %d scale_input ignored (activation quantization only)", n_scale_input);
    if (n_ignored)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), ", %d decoder/lm_head tensors ignored",
                 n_ignored);
    snprintf(m->desc, sizeof m->desc,
             "T5 encoder, %d layers, d_model %d, %d heads x %d, d_ff %d, weights %s%s, %s names (%s)%s", c->layers,
             c->d_model, c->heads, c->d_kv, c->d_ff, dt == CD_DTYPE_U8 ? "mixed" : cd_dtype_name(dt),
             scaled ? " (scaled)" : "", scaled ? "ComfyUI scaled fp8" : "HF/ComfyUI", emb->name, extra);
    return CD_OK;
}

cd_status cd_t5_open(cd_ctx *ctx, const char *path, cd_t5 **out) {
    *out = NULL;
    cd_ckpt *ck = NULL;
    cd_status s = cd_ckpt_open(ctx, path, &ck);
    if (s) return s;
    binder b = {ctx, ck, path};
    /* every name must be known: a wrong file (a CLIP, a FLUX transformer) fails here by name */
    int layers = 0, n_ignored = 0, scaled = 0;
    for (size_t i = 0; i < cd_ckpt_count(ck) && !s; i++) {
        const cd_st_tensor *t = cd_ckpt_at(ck, i);
        int blk;
        const name_kind k = classify(t->name, &blk);
        if (k == NAME_UNKNOWN)
            s = cd_set_error(ctx, CD_ERR_FORMAT, "t5: %s: unknown tensor '%s' (not a T5 encoder tensor)", path,
                             t->name);
        else if (k == NAME_V10)
            s = cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                             "t5: %s: '%s' is T5 v1.0's ReLU FFN; FLUX uses T5 v1.1 (gated GELU: wi_0, wi_1)", path,
                             t->name);
        n_ignored += k == NAME_IGNORED;
        if (blk + 1 > layers) layers = blk + 1;
        if (!strcmp(t->name, MARKER)) {
            scaled = 1;
            if (t->dtype != CD_DTYPE_F8_E4M3 && t->dtype != CD_DTYPE_F8_E5M2)
                s = cd_set_error(ctx, CD_ERR_FORMAT, "t5: %s: the '%s' marker is %s (expected F8_E4M3 or F8_E5M2)",
                                 path, MARKER, cd_dtype_name(t->dtype));
        }
    }
    const cd_st_tensor *emb = cd_ckpt_find(ck, EMBED_SHARED);
    if (!emb) emb = cd_ckpt_find(ck, EMBED_ENC);
    if (!s && !emb)
        s = cd_set_error(ctx, CD_ERR_NOT_FOUND, "t5: %s: missing tensor '%s' (or '%s')", path, EMBED_SHARED, EMBED_ENC);
    if (!s && layers == 0)
        s = cd_set_error(ctx, CD_ERR_FORMAT, "t5: %s: no 'encoder.block.N.*' tensors (not a T5 encoder)", path);
    cd_t5_config cfg;
    if (!s) s = infer_config(&b, emb, layers, &cfg);
    if (!s) s = apply_config_json(&b, &cfg);
    if (!s) s = check_config(ctx, &cfg);
    cd_t5 *m = NULL;
    if (!s) s = alloc_model(ctx, &cfg, 0, &m);
    if (!s) {
        m->ckpt = ck;
        m->scaled = scaled;
        s = bind(&b, m, emb, scaled, n_ignored);
        if (s) {
            cd_t5_free(m);
            return s;
        }
        *out = m;
        return CD_OK;
    }
    cd_ckpt_close(ck);
    return s;
}

/* ---- random weights (benchmarks) ------------------------------------------------------------ */

cd_status cd_t5_random(cd_ctx *ctx, const cd_t5_config *cfg, cd_dtype wdtype, uint64_t seed, cd_t5 **out) {
    *out = NULL;
    cd_status s = check_config(ctx, cfg);
    if (s) return s;
    if (wdtype != CD_DTYPE_F32 && wdtype != CD_DTYPE_BF16)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "t5: random weights are F32 or BF16, not %s",
                            cd_dtype_name(wdtype));
    const size_t D = (size_t)cfg->d_model, I = (size_t)cfg->heads * (size_t)cfg->d_kv, F = (size_t)cfg->d_ff;
    const size_t es = wdtype == CD_DTYPE_F32 ? 4 : 2;
    const size_t sizes[7] = {I * D, I * D, I * D, D * I, F * D, F * D, D * F};
    size_t total = 0;
    for (int j = 0; j < 7; j++) total += (sizes[j] * es + 63) & ~(size_t)63;
    cd_t5 *m = NULL;
    if ((s = alloc_model(ctx, cfg, total, &m))) return s;
    char *w =
        (char *)m->mem + (((size_t)cfg->layers * sizeof(cd_t5_block) + 63) & ~(size_t)63) +
        ((((2 * (size_t)cfg->layers + 1) * D + (size_t)cfg->buckets * cfg->heads) * sizeof(float) + 63) & ~(size_t)63);
    const int32_t outs[7] = {(int32_t)I, (int32_t)I, (int32_t)I, (int32_t)D, (int32_t)F, (int32_t)F, (int32_t)D};
    cd_t5_lin shared[7];
    for (int j = 0; j < 7; j++) {
        const int32_t in = (int32_t)(sizes[j] / (size_t)outs[j]);
        const float a = 1.0f / sqrtf((float)in);
        const uint64_t sj = seed * 8 + (uint64_t)j + 1;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (size_t e = 0; e < sizes[j]; e++) {
            const float v = cd_t5_rnd(sj, e, a);
            if (es == 4)
                ((float *)w)[e] = v;
            else
                ((uint16_t *)w)[e] = cd_f32_to_bf16(v);
        }
        shared[j] = (cd_t5_lin){.w = {.data = w, .dtype = wdtype, .out = outs[j], .in = in}, .scale = 1.0f};
        w += (sizes[j] * es + 63) & ~(size_t)63;
    }
    for (int i = 0; i < cfg->layers; i++)
        for (int j = 0; j < 7; j++) *lin_at(&m->blocks[i], j) = shared[j];
    /* norm scales near 1 and one bias table, the same for every block */
    for (size_t e = 0; e < D; e++) ((float *)m->ln_final)[e] = 1.0f + cd_t5_rnd(seed * 8, e, 0.25f);
    for (int i = 0; i < cfg->layers; i++)
        for (size_t e = 0; e < D; e++) {
            ((float *)m->blocks[i].ln_attn)[e] = 1.0f + cd_t5_rnd(seed * 8 + 9, e, 0.25f);
            ((float *)m->blocks[i].ln_ff)[e] = 1.0f + cd_t5_rnd(seed * 8 + 10, e, 0.25f);
        }
    for (size_t e = 0; e < (size_t)cfg->buckets * cfg->heads; e++)
        ((float *)m->rel_bias)[e] = cd_t5_rnd(seed * 8 + 11, e, 1.0f);
    m->embed = NULL;
    m->embed_seed = seed * 8 + 12;
    snprintf(m->desc, sizeof m->desc,
             "T5 encoder, %d layers, d_model %d, %d heads x %d, d_ff %d, weights %s, random (one block shared)",
             cfg->layers, cfg->d_model, cfg->heads, cfg->d_kv, cfg->d_ff, cd_dtype_name(wdtype));
    *out = m;
    return CD_OK;
}
