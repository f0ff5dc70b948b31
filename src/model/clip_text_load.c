/* clip_text_load.c — binds a CLIP text model (clip_text.h) to a checkpoint's tensors, or builds
 * one with random weights for benchmarks.
 *
 * Binding is two passes over the same code (as flux_load.c does): the first resolves and checks
 * every tensor and counts the f32 floats the model keeps, the second fills one arena. Linear
 * weights and the token embedding stay in the mapped file; only small tensors (biases, LayerNorm
 * parameters, positions) and misaligned weights are converted to f32. Every tensor of the file
 * must be one the model knows (or one of the two ignored ones): an unknown name is an error, not
 * silently dropped, so a wrong file (a full CLIPModel, T5, a FLUX transformer) is refused. */
#include "clip_text_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Prefixes in front of transformers' names: ComfyUI's CLIP save ("clip_l.transformer.", and
 * "clip_l." for a text model saved without its wrapper); "transformer." is stripped by cd_ckpt. */
static const char *const k_prefixes[] = {"", "clip_l.transformer.", "clip_l."};

/* Tensors a CLIP text file may carry that FLUX does not use (docs/clip_text.md):
 * position_ids is the buffer arange(max_pos) that older transformers saved (current transformers
 * and ComfyUI ignore the stored values and count positions 0..n-1, as we do); text_projection is
 * CLIPTextModelWithProjection's head, while FLUX takes pooler_output, before any projection. */
static const char *const k_ignored[] = {"text_model.embeddings.position_ids", "text_projection.weight"};

static const char *const k_layer_lin[6] = {"self_attn.q_proj",   "self_attn.k_proj", "self_attn.v_proj",
                                           "self_attn.out_proj", "mlp.fc1",          "mlp.fc2"};
static const char *const k_layer_ln[2] = {"layer_norm1", "layer_norm2"};

typedef struct {
    cd_ctx *ctx;
    const cd_ckpt *ck;
    const char *pre;  /* the names' prefix, one of k_prefixes */
    const char *file; /* how messages call the checkpoint */
    float *arena;     /* NULL in the sizing pass */
    size_t used;      /* floats */
    cd_status err;
} binder;

static float *take(binder *b, size_t floats) {
    float *p = b->arena ? b->arena + b->used : NULL;
    b->used += (floats + 15) & ~(size_t)15; /* 64-byte aligned pieces */
    return p;
}

/* The tensor prefix + name (NULL, with the error recorded, when absent). */
static const cd_st_tensor *find(binder *b, const char *name) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", b->pre, name);
    const cd_st_tensor *t = cd_ckpt_find(b->ck, full);
    if (!t && !b->err) b->err = cd_set_error(b->ctx, CD_ERR_NOT_FOUND, "%s: missing tensor '%s'", b->file, full);
    return t;
}

/* Layer l's tensor "<base><suffix>". */
static const cd_st_tensor *find_l(binder *b, int l, const char *base, const char *suffix) {
    char name[160];
    snprintf(name, sizeof name, "text_model.encoder.layers.%d.%s%s", l, base, suffix);
    return find(b, name);
}

static int is_float(cd_dtype d) {
    return d == CD_DTYPE_F32 || d == CD_DTYPE_BF16 || d == CD_DTYPE_F16 || d == CD_DTYPE_F8_E4M3 ||
           d == CD_DTYPE_F8_E5M2;
}

static int check_shape(binder *b, const cd_st_tensor *t, int64_t d0, int64_t d1) {
    if (!t || b->err) return 0;
    const int nd = d1 ? 2 : 1;
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char got[96] = "", want[48];
        int k = 0;
        for (int i = 0; i < t->ndim && k < 80; i++)
            k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (nd == 2)
            snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
        else
            snprintf(want, sizeof want, "%lld", (long long)d0);
        b->err = cd_set_error(b->ctx, CD_ERR_SHAPE, "%s: '%s' is [%s], expected [%s]", b->file, t->name, got, want);
        return 0;
    }
    if (!is_float(t->dtype)) {
        b->err = cd_set_error(b->ctx, CD_ERR_UNSUPPORTED, "%s: '%s' has dtype %s (F32, BF16, F16 or F8 expected)",
                              b->file, t->name, cd_dtype_name(t->dtype));
        return 0;
    }
    return 1;
}

/* A [d0] or [d0, d1] tensor as f32 in the arena, minus `sub` (1: LayerNorm weight -> scale). */
static const float *vec(binder *b, const cd_st_tensor *t, int64_t d0, int64_t d1, float sub) {
    if (!check_shape(b, t, d0, d1)) return NULL;
    const size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *p = take(b, n);
    if (!p) return NULL;
    cd_status s = cd_st_to_f32(b->ctx, t, p);
    if (s) {
        b->err = s;
        return NULL;
    }
    for (size_t i = 0; sub != 0.0f && i < n; i++) p[i] -= sub;
    return p;
}

/* A linear layer: weight [out, in] in place (f32 copy when misaligned for its element size). */
static void lin(binder *b, int layer, const char *base, int64_t out, int64_t in, cd_weight *w, const float **bias) {
    const cd_st_tensor *t = find_l(b, layer, base, ".weight");
    const cd_st_tensor *tb = find_l(b, layer, base, ".bias");
    if (!check_shape(b, t, out, in)) return;
    const size_t es = (size_t)cd_dtype_bits(t->dtype) / 8;
    w->out = (int32_t)out;
    w->in = (int32_t)in;
    if ((uintptr_t)t->data % es) { /* never hand a misaligned pointer to a kernel */
        w->data = vec(b, t, out, in, 0.0f);
        w->dtype = CD_DTYPE_F32;
    } else {
        w->data = t->data;
        w->dtype = t->dtype;
    }
    *bias = vec(b, tb, out, 0, 0.0f);
}

static void bind_all(binder *b, cd_clip_text *m) {
    const cd_clip_config *c = &m->cfg;
    const int64_t H = c->hidden, I = c->inter;
    const cd_st_tensor *tok = find(b, "text_model.embeddings.token_embedding.weight");
    if (check_shape(b, tok, c->vocab, H)) m->tok = *tok;
    m->pos = vec(b, find(b, "text_model.embeddings.position_embedding.weight"), c->max_pos, H, 0.0f);
    for (int l = 0; l < c->layers && !b->err; l++) {
        cd_clip_layer *L = b->arena ? &m->lay[l] : &(cd_clip_layer){0};
        lin(b, l, k_layer_lin[0], H, H, &L->q, &L->qb);
        lin(b, l, k_layer_lin[1], H, H, &L->k, &L->kb);
        lin(b, l, k_layer_lin[2], H, H, &L->v, &L->vb);
        lin(b, l, k_layer_lin[3], H, H, &L->o, &L->ob);
        lin(b, l, k_layer_lin[4], I, H, &L->fc1, &L->fc1b);
        lin(b, l, k_layer_lin[5], H, I, &L->fc2, &L->fc2b);
        L->ln1_s = vec(b, find_l(b, l, k_layer_ln[0], ".weight"), H, 0, 1.0f);
        L->ln1_b = vec(b, find_l(b, l, k_layer_ln[0], ".bias"), H, 0, 0.0f);
        L->ln2_s = vec(b, find_l(b, l, k_layer_ln[1], ".weight"), H, 0, 1.0f);
        L->ln2_b = vec(b, find_l(b, l, k_layer_ln[1], ".bias"), H, 0, 0.0f);
    }
    m->lnf_s = vec(b, find(b, "text_model.final_layer_norm.weight"), H, 0, 1.0f);
    m->lnf_b = vec(b, find(b, "text_model.final_layer_norm.bias"), H, 0, 0.0f);
}

/* Parses "<digits>." at s (a layer index below `layers`); returns the rest or NULL. */
static const char *layer_rest(const char *s, int layers, int *idx) {
    long v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && v < 1000000) v = v * 10 + (*p++ - '0');
    if (p == s || *p != '.' || v >= layers || (p - s > 1 && *s == '0')) return NULL;
    *idx = (int)v;
    return p + 1;
}

static int known_name(const char *name, int layers) {
    static const char *const top[] = {"text_model.embeddings.token_embedding.weight",
                                      "text_model.embeddings.position_embedding.weight",
                                      "text_model.final_layer_norm.weight", "text_model.final_layer_norm.bias"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!strcmp(name, top[i])) return 1;
    for (size_t i = 0; i < sizeof k_ignored / sizeof k_ignored[0]; i++)
        if (!strcmp(name, k_ignored[i])) return 1;
    static const char lp[] = "text_model.encoder.layers.";
    if (strncmp(name, lp, sizeof lp - 1)) return 0;
    int idx;
    const char *r = layer_rest(name + sizeof lp - 1, layers, &idx);
    if (!r) return 0;
    for (int i = 0; i < 8; i++) {
        const char *base = i < 6 ? k_layer_lin[i] : k_layer_ln[i - 6];
        const size_t k = strlen(base);
        if (!strncmp(r, base, k) && (!strcmp(r + k, ".weight") || !strcmp(r + k, ".bias"))) return 1;
    }
    return 0;
}

/* ---- the config: config.json when there is one, else the shapes --------------------------- */

static int json_int(cd_ctx *ctx, const char *file, json_t *o, const char *key, int32_t *v, cd_status *err) {
    json_t *j = json_object_get(o, key);
    if (!j || json_is_null(j)) return 0; /* absent or null: the shapes' / CLIP's value stays */
    if (!json_is_integer(j) || json_integer_value(j) < 0 || json_integer_value(j) > INT32_MAX) {
        *err = cd_set_error(ctx, CD_ERR_FORMAT, "%s: '%s' is not a non-negative integer", file, key);
        return 0;
    }
    *v = (int32_t)json_integer_value(j);
    return 1;
}

/* Reads config.json beside the weights (path is a directory, or an index inside one) into c;
 * *found = 0 when there is none. Values not in the file keep c's. */
static cd_status read_config(cd_ctx *ctx, const char *path, cd_clip_config *c, int *found) {
    *found = 0;
    struct stat st;
    char cfgp[4096];
    const size_t n = strlen(path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(cfgp, sizeof cfgp, "%s/config.json", path);
    } else if (n > 11 && !strcmp(path + n - 11, ".index.json")) {
        const char *sl = strrchr(path, '/');
        snprintf(cfgp, sizeof cfgp, "%.*sconfig.json", sl ? (int)(sl - path + 1) : 0, path);
    } else {
        return CD_OK;
    }
    if (stat(cfgp, &st) != 0) return CD_OK;
    json_error_t je;
    json_t *root = json_load_file(cfgp, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return cd_set_error(ctx, CD_ERR_FORMAT, "%s: not a JSON object (line %d: %s)", cfgp, je.line, je.text);
    }
    cd_status err = CD_OK;
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "quick_gelu"))) {
        err = cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (quick_gelu only)", cfgp,
                           json_is_string(act) ? json_string_value(act) : "?");
    }
    json_int(ctx, cfgp, root, "vocab_size", &c->vocab, &err);
    json_int(ctx, cfgp, root, "hidden_size", &c->hidden, &err);
    json_int(ctx, cfgp, root, "num_attention_heads", &c->heads, &err);
    json_int(ctx, cfgp, root, "intermediate_size", &c->inter, &err);
    json_int(ctx, cfgp, root, "num_hidden_layers", &c->layers, &err);
    json_int(ctx, cfgp, root, "max_position_embeddings", &c->max_pos, &err);
    json_int(ctx, cfgp, root, "eos_token_id", &c->eos_id, &err);
    json_t *eps = json_object_get(root, "layer_norm_eps");
    if (eps && !json_is_null(eps)) {
        if (!json_is_number(eps) || json_number_value(eps) <= 0)
            err = cd_set_error(ctx, CD_ERR_FORMAT, "%s: 'layer_norm_eps' is not a positive number", cfgp);
        else
            c->eps = (float)json_number_value(eps);
    }
    json_decref(root);
    *found = 1;
    return err;
}

/* The config: shapes first (CLIP's constants for what no tensor holds), then config.json, whose
 * values the shapes must agree with (checked by the binding). */
static cd_status infer_config(cd_ctx *ctx, const char *path, const cd_ckpt *ck, const char *pre, cd_clip_config *c,
                              int *from_json) {
    char name[256];
    memset(c, 0, sizeof *c);
    snprintf(name, sizeof name, "%stext_model.embeddings.token_embedding.weight", pre);
    const cd_st_tensor *tok = cd_ckpt_find(ck, name);
    snprintf(name, sizeof name, "%stext_model.embeddings.position_embedding.weight", pre);
    const cd_st_tensor *pos = cd_ckpt_find(ck, name);
    snprintf(name, sizeof name, "%stext_model.encoder.layers.0.mlp.fc1.weight", pre);
    const cd_st_tensor *fc1 = cd_ckpt_find(ck, name);
    if (tok && tok->ndim == 2) c->vocab = (int32_t)tok->shape[0], c->hidden = (int32_t)tok->shape[1];
    if (pos && pos->ndim == 2) c->max_pos = (int32_t)pos->shape[0];
    if (fc1 && fc1->ndim == 2) c->inter = (int32_t)fc1->shape[0];
    for (int l = 0; l < 100000; l++) {
        snprintf(name, sizeof name, "%stext_model.encoder.layers.%d.self_attn.q_proj.weight", pre, l);
        if (!cd_ckpt_find(ck, name)) break;
        c->layers = l + 1;
    }
    c->heads = c->hidden % 64 == 0 ? c->hidden / 64 : 0; /* CLIP's head_dim is 64 (L, H, bigG) */
    c->eps = 1e-5f;
    c->eos_id = c->vocab - 1; /* CLIP's EOS is its last token: 49407 of 49408 */
    c->quick_gelu = 1;
    cd_status s = read_config(ctx, path, c, from_json);
    if (s) return s;
    if (c->heads <= 0 || c->hidden % c->heads)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "%s: cannot infer the head count of hidden %d (not a multiple of 64); pass the folder "
                            "with its config.json",
                            path, c->hidden);
    if (c->layers < 1 || c->vocab < 1 || c->hidden < 1 || c->max_pos < 1 || c->inter < 1)
        return cd_set_error(ctx, CD_ERR_SHAPE, "%s: not a CLIP text model (%d layers, vocab %d, hidden %d)", path,
                            c->layers, c->vocab, c->hidden);
    return CD_OK;
}

static void describe(cd_clip_text *m, const char *src, const char *pre) {
    const cd_clip_config *c = &m->cfg;
    char rule[64];
    if (c->eos_id == 2)
        snprintf(rule, sizeof rule, "pooled at argmax(ids)");
    else
        snprintf(rule, sizeof rule, "pooled at the first id %d", c->eos_id);
    snprintf(m->desc, sizeof m->desc,
             "CLIP text: %d layers, hidden %d, %d heads, inter %d, vocab %d, %d positions, %s weights, %s, "
             "config from %s%s%s",
             c->layers, c->hidden, c->heads, c->inter, c->vocab, c->max_pos, cd_dtype_name(m->lay[0].q.dtype), rule,
             src, *pre ? ", prefix " : "", pre);
}

cd_status cd_clip_text_open(cd_ctx *ctx, const char *path, cd_clip_text **out) {
    *out = NULL;
    cd_ckpt *ck = NULL;
    cd_status s = cd_ckpt_open(ctx, path, &ck);
    if (s) return s;
    const char *pre = NULL;
    for (size_t i = 0; i < sizeof k_prefixes / sizeof k_prefixes[0] && !pre; i++) {
        char name[128];
        snprintf(name, sizeof name, "%stext_model.embeddings.token_embedding.weight", k_prefixes[i]);
        if (cd_ckpt_find(ck, name)) pre = k_prefixes[i];
    }
    if (!pre) {
        cd_ckpt_close(ck);
        return cd_set_error(ctx, CD_ERR_NOT_FOUND,
                            "%s: not a CLIP text model (no text_model.embeddings.token_embedding.weight)", path);
    }
    cd_clip_text *m = calloc(1, sizeof *m);
    if (!m) {
        cd_ckpt_close(ck);
        return cd_set_error(ctx, CD_ERR_OOM, "clip_text: out of memory");
    }
    m->ck = ck;
    int from_json = 0;
    s = infer_config(ctx, path, ck, pre, &m->cfg, &from_json);
    for (size_t i = 0; !s && i < cd_ckpt_count(ck); i++) { /* every tensor must be known */
        const char *nm = cd_ckpt_at(ck, i)->name;
        if (strncmp(nm, pre, strlen(pre)) || !known_name(nm + strlen(pre), m->cfg.layers))
            s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: unknown tensor '%s' for a CLIP text model (%d layers)", path, nm,
                             m->cfg.layers);
    }
    binder b = {ctx, ck, pre, path, NULL, 0, s};
    if (!b.err) bind_all(&b, m); /* sizing pass */
    if (!b.err) {
        const size_t lay_floats = ((sizeof(cd_clip_layer) * (size_t)m->cfg.layers + 63) & ~(size_t)63) / sizeof(float);
        m->arena = aligned_alloc(64, ((b.used + lay_floats) * sizeof(float) + 63) & ~(size_t)63);
        if (!m->arena) {
            b.err = cd_set_error(ctx, CD_ERR_OOM, "clip_text: cannot allocate %zu bytes", b.used * sizeof(float));
        } else {
            m->lay = (cd_clip_layer *)m->arena;
            memset(m->lay, 0, sizeof(cd_clip_layer) * (size_t)m->cfg.layers);
            b.arena = (float *)m->arena + lay_floats;
            b.used = 0;
            bind_all(&b, m);
        }
    }
    if (b.err) {
        cd_clip_text_free(m);
        return b.err;
    }
    describe(m, from_json ? "config.json" : "the shapes", pre);
    *out = m;
    return CD_OK;
}

/* ---- random weights ------------------------------------------------------------------------ */

/* Element i of stream `seed`: uniform in [-a, a), never 0. */
static float rnd(uint64_t seed, uint64_t i, float a) {
    const uint64_t u = cd_mix64(seed * 0x9E3779B97F4A7C15ull + i);
    float v = (float)((double)(u >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    if (v == 0.0f) v = 0.5f;
    return a * v;
}

static void fill(void *dst, cd_dtype dt, size_t n, uint64_t seed, float a, float add) {
    for (size_t i = 0; i < n; i++) {
        const float v = add + rnd(seed, i, a);
        if (dt == CD_DTYPE_BF16)
            ((uint16_t *)dst)[i] = cd_f32_to_bf16(v);
        else
            ((float *)dst)[i] = v;
    }
}

cd_status cd_clip_text_random(cd_ctx *ctx, const cd_clip_config *cfg, cd_dtype wdtype, uint64_t seed,
                              cd_clip_text **out) {
    *out = NULL;
    const cd_clip_config *c = cfg;
    if (wdtype != CD_DTYPE_F32 && wdtype != CD_DTYPE_BF16)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "clip_text: random weights in F32 or BF16, not %s",
                            cd_dtype_name(wdtype));
    if (c->layers < 1 || c->hidden < 1 || c->heads < 1 || c->hidden % c->heads || c->inter < 1 || c->vocab < 1 ||
        c->max_pos < 1 || !(c->eps > 0) || !c->quick_gelu)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "clip_text: bad config (%d layers, hidden %d, %d heads)",
                            c->layers, c->hidden, c->heads);
    const size_t H = (size_t)c->hidden, I = (size_t)c->inter, es = (size_t)cd_dtype_bits(wdtype) / 8;
    /* per layer: 6 weights, 6 biases and 4 LayerNorm vectors, each rounded up to 64 bytes */
    const size_t per_layer = (4 * H * H + 2 * H * I) * es + (9 * H + I) * 4 + 16 * 64;
    const size_t tokb = (size_t)c->vocab * H * es, posf = (size_t)c->max_pos * H;
    const size_t lay = (sizeof(cd_clip_layer) * (size_t)c->layers + 63) & ~(size_t)63;
    const size_t total = lay + (size_t)c->layers * per_layer + tokb + (posf + 2 * H) * 4 + 4 * 64;
    cd_clip_text *m = calloc(1, sizeof *m);
    char *ar = m ? aligned_alloc(64, (total + 63) & ~(size_t)63) : NULL;
    if (!ar) {
        free(m);
        return cd_set_error(ctx, CD_ERR_OOM, "clip_text: cannot allocate %zu bytes of random weights", total);
    }
    m->cfg = *c;
    m->arena = ar;
    m->lay = (cd_clip_layer *)ar;
    size_t off = lay;
#define CD_TAKE(bytes) (off += ((bytes) + 63) & ~(size_t)63, (void *)(ar + off - (((bytes) + 63) & ~(size_t)63)))
    uint64_t st = seed * 1000003u;
    for (int l = 0; l < c->layers; l++) {
        cd_clip_layer *L = &m->lay[l];
        cd_weight *ws[6] = {&L->q, &L->k, &L->v, &L->o, &L->fc1, &L->fc2};
        const float **bs[6] = {&L->qb, &L->kb, &L->vb, &L->ob, &L->fc1b, &L->fc2b};
        for (int i = 0; i < 6; i++) {
            const int32_t o = i == 4 ? c->inter : c->hidden, in = i == 5 ? c->inter : c->hidden;
            void *w = CD_TAKE((size_t)o * (size_t)in * es);
            fill(w, wdtype, (size_t)o * (size_t)in, ++st, sqrtf(3.0f / (float)in), 0.0f);
            *ws[i] = (cd_weight){w, wdtype, o, in};
            float *b = CD_TAKE((size_t)o * 4);
            fill(b, CD_DTYPE_F32, (size_t)o, ++st, 0.1f, 0.0f);
            *bs[i] = b;
        }
        const float **ln[4] = {&L->ln1_s, &L->ln1_b, &L->ln2_s, &L->ln2_b};
        for (int i = 0; i < 4; i++) {
            float *v = CD_TAKE(H * 4);
            fill(v, CD_DTYPE_F32, H, ++st, 0.1f, 0.0f); /* scale = weight - 1 around 0 */
            *ln[i] = v;
        }
    }
    void *tok = CD_TAKE(tokb);
    fill(tok, wdtype, (size_t)c->vocab * H, ++st, 1.0f, 0.0f);
    float *pos = CD_TAKE(posf * 4), *s = CD_TAKE(H * 4), *b = CD_TAKE(H * 4);
#undef CD_TAKE
    fill(pos, CD_DTYPE_F32, posf, ++st, 1.0f, 0.0f);
    fill(s, CD_DTYPE_F32, H, ++st, 0.1f, 0.0f);
    fill(b, CD_DTYPE_F32, H, ++st, 0.1f, 0.0f);
    m->pos = pos;
    m->lnf_s = s;
    m->lnf_b = b;
    m->tok = (cd_st_tensor){"token_embedding", wdtype, 2, {c->vocab, c->hidden}, tok, (uint64_t)tokb};
    describe(m, "cd_clip_text_random", "");
    *out = m;
    return CD_OK;
}

const cd_clip_config *cd_clip_text_cfg(const cd_clip_text *m) { return &m->cfg; }
const char *cd_clip_text_describe(const cd_clip_text *m) { return m->desc; }

void cd_clip_text_free(cd_clip_text *m) {
    if (!m) return;
    cd_ckpt_close(m->ck);
    free(m->arena);
    free(m);
}
