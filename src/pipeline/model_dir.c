/* model_dir.c — finds the parts of a FLUX model on disk (model_dir.h): a diffusers pipeline root
 * read through its model_index.json, a transformer folder or file, and the tokenizer that goes
 * with a single encoder file. Paths only: nothing here maps weights or loads a tokenizer. */
#include "model_dir.h"

#include "../util/internal.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* model_index.json and config.json are a few KB; tokenizer.json files are a few MB (T5-XXL's
 * 2.4 MB). Anything far larger is not one of them. */
#define MD_MAX_CONFIG (1u << 20)
#define MD_MAX_TOKENIZER_JSON (64u << 20)

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    while (a > 1 && dir[a - 1] == '/') a--; /* "ROOT/" + "x" is "ROOT/x" */
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

int cd_path_is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int cd_path_is_file(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int cd_str_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* 1 when `dir` holds a .safetensors file or a *.safetensors.index.json (what cd_ckpt_open takes). */
static int has_weights(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)))
        found = e->d_name[0] != '.' &&
                (cd_str_ends_with(e->d_name, ".safetensors") || cd_str_ends_with(e->d_name, ".safetensors.index.json"));
    closedir(d);
    return found;
}

/* Parses a JSON file no larger than cap. NULL when absent (*missing = 1) or on error (message set). */
static json_t *load_json(cd_ctx *ctx, const char *path, size_t cap, int *missing) {
    struct stat st;
    *missing = 0;
    if (stat(path, &st) != 0) {
        *missing = errno == ENOENT;
        cd_set_error(ctx, *missing ? CD_ERR_NOT_FOUND : CD_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > cap) {
        cd_set_error(ctx, CD_ERR_FORMAT, "%s: not a JSON file of at most %zu bytes", path, cap);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) cd_set_error(ctx, CD_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    return j;
}

/* The "_class_name" of a diffusers config, else the first "architectures" entry of a transformers
 * config, else NULL. */
static const char *config_class(const json_t *cfg) {
    const char *c = json_string_value(json_object_get(cfg, "_class_name"));
    if (!c) c = json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0));
    return c;
}

/* FLUX's T5 length from a transformer config: 512 for guidance-embedded (dev-like), 256 without. */
static int32_t hint_from(const json_t *cfg) {
    const json_t *g = json_object_get(cfg, "guidance_embeds");
    return json_is_boolean(g) ? (json_is_true(g) ? 512 : 256) : 0;
}

/* ---- tokenizers ------------------------------------------------------------------------------ */

/* 1 when path is a tokenizer.json whose model type is `type` ("Unigram", "BPE"). */
static int tokenizer_json_is(cd_ctx *ctx, const char *path, const char *type) {
    int missing;
    json_t *j = load_json(ctx, path, MD_MAX_TOKENIZER_JSON, &missing);
    if (!j) return 0;
    const char *t = json_string_value(json_object_get(json_object_get(j, "model"), "type"));
    int ok = t && !strcmp(t, type);
    json_decref(j);
    return ok;
}

cd_status cd_tokenizer_in_dir(cd_ctx *ctx, cd_tokenizer_kind kind, const char *dir, char **tok, char **merges) {
    *tok = NULL;
    if (merges) *merges = NULL;
    const int t5 = kind == CD_TOKENIZER_T5;
    char *p = join(dir, t5 ? "spiece.model" : "vocab.json");
    if (!p) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    if (cd_path_is_file(p)) {
        if (t5) {
            *tok = p;
            return CD_OK;
        }
        char *m = join(dir, "merges.txt");
        if (!m || !cd_path_is_file(m) || !merges) {
            free(p);
            free(m);
            return m ? cd_set_error(ctx, CD_ERR_NOT_FOUND, "%s/vocab.json has no merges.txt beside it", dir)
                     : cd_set_error(ctx, CD_ERR_OOM, "out of memory");
        }
        *tok = p;
        *merges = m;
        return CD_OK;
    }
    free(p);
    if (!(p = join(dir, "tokenizer.json"))) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    if (cd_path_is_file(p) && tokenizer_json_is(ctx, p, t5 ? "Unigram" : "BPE")) {
        *tok = p;
        return CD_OK;
    }
    free(p);
    if (!t5) {
        if (!(p = join(dir, "bpe_simple_vocab_16e6.txt.gz"))) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
        if (cd_path_is_file(p)) {
            *tok = p;
            return CD_OK;
        }
        free(p);
    }
    return cd_set_error(ctx, CD_ERR_NOT_FOUND,
                        t5 ? "no T5 tokenizer in %s (spiece.model, or a tokenizer.json with a Unigram model)"
                           : "no CLIP tokenizer in %s (vocab.json + merges.txt, a tokenizer.json with a BPE model, "
                             "or bpe_simple_vocab_16e6.txt.gz)",
                        dir);
}

static const char k_t5_where[] =
    "pass --t5-tokenizer FILE (diffusers keeps it in tokenizer_2/spiece.model or tokenizer_2/tokenizer.json; "
    "ComfyUI in comfy/text_encoders/t5_tokenizer/tokenizer.json)";
static const char k_clip_where[] =
    "pass --clip-tokenizer FILE (diffusers keeps it in tokenizer/vocab.json, with merges.txt beside; ComfyUI in "
    "comfy/sd1_tokenizer/vocab.json; open_clip ships bpe_simple_vocab_16e6.txt.gz)";

cd_status cd_tokenizer_beside(cd_ctx *ctx, cd_tokenizer_kind kind, const char *ckpt, char **tok, char **merges) {
    *tok = NULL;
    if (merges) *merges = NULL;
    const int t5 = kind == CD_TOKENIZER_T5;
    /* the checkpoint's folder: ckpt itself, or the part of the path before its last '/' */
    char *dir;
    if (cd_path_is_dir(ckpt)) {
        dir = strdup(ckpt);
    } else {
        const char *slash = strrchr(ckpt, '/');
        dir = slash ? strndup(ckpt, slash == ckpt ? 1 : (size_t)(slash - ckpt)) : strdup(".");
    }
    if (!dir) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    /* candidates: the folder, ComfyUI's tokenizer folder name inside it, and the diffusers sibling
     * (text_encoder_2/ -> ../tokenizer_2/, text_encoder/ -> ../tokenizer/) */
    char *cand[3] = {NULL, NULL, NULL};
    cand[0] = strdup(dir);
    cand[1] = join(dir, t5 ? "t5_tokenizer" : "sd1_tokenizer");
    char real[PATH_MAX];
    if (realpath(dir, real)) {
        char *base = strrchr(real, '/');
        if (base && !strcmp(base + 1, t5 ? "text_encoder_2" : "text_encoder")) {
            *base = '\0';
            cand[2] = join(real[0] ? real : "/", t5 ? "tokenizer_2" : "tokenizer");
            if (!cand[2]) cand[0] = (free(cand[0]), NULL); /* reported as OOM below */
        }
    }
    free(dir);
    cd_status s = cand[0] && cand[1] ? CD_ERR_NOT_FOUND : cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    for (int i = 0; i < 3 && s == CD_ERR_NOT_FOUND; i++)
        if (cand[i] && cd_path_is_dir(cand[i])) s = cd_tokenizer_in_dir(ctx, kind, cand[i], tok, merges);
    for (int i = 0; i < 3; i++) free(cand[i]);
    if (s == CD_ERR_NOT_FOUND)
        return cd_set_error(ctx, CD_ERR_NOT_FOUND, "no tokenizer beside %s: %s", ckpt, t5 ? k_t5_where : k_clip_where);
    return s;
}

/* ---- pipeline root and transformer ----------------------------------------------------------- */

/* A pipeline component: its model_index.json key, what it is, the classes accepted. */
typedef struct {
    const char *key, *what, *cls[2];
} md_part;

static const md_part k_parts[] = {
    {"transformer", "the FLUX transformer", {"FluxTransformer2DModel", NULL}},
    {"vae", "the autoencoder", {"AutoencoderKL", NULL}},
    {"text_encoder", "the CLIP text encoder", {"CLIPTextModel", "CLIPTextModelWithProjection"}},
    {"text_encoder_2", "the T5 encoder", {"T5EncoderModel", NULL}},
    {"tokenizer", "the CLIP tokenizer", {"CLIPTokenizer", "CLIPTokenizerFast"}},
    {"tokenizer_2", "the T5 tokenizer", {"T5TokenizerFast", "T5Tokenizer"}},
};

/* Checks one component of model_index.json and resolves it under root into *model (a weights
 * folder) or *tok / *merges (a tokenizer file). */
static cd_status resolve_part(cd_ctx *ctx, const char *root, const json_t *index, const md_part *pt, char **model,
                              char **tok, char **merges) {
    /* diffusers writes [library, class]; a part saved as None is [null, null] */
    const char *cls = json_string_value(json_array_get(json_object_get(index, pt->key), 1));
    if (!cls)
        return cd_set_error(ctx, CD_ERR_NOT_FOUND,
                            "%s is missing: %s/model_index.json lists no %s (expected in %s/%s/)", pt->what, root,
                            pt->key, root, pt->key);
    if (strcmp(cls, pt->cls[0]) && (!pt->cls[1] || strcmp(cls, pt->cls[1])))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s/model_index.json: %s is a %s, not a %s (%s)", root, pt->key,
                            cls, pt->cls[0], pt->what);
    char *dir = join(root, pt->key);
    if (!dir) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    cd_status s = CD_OK;
    if (!cd_path_is_dir(dir)) {
        s = cd_set_error(ctx, CD_ERR_NOT_FOUND, "%s is missing: expected the folder %s/ (model_index.json lists %s)",
                         pt->what, dir, cls);
    } else if (model) {
        if (!has_weights(dir))
            s = cd_set_error(ctx, CD_ERR_NOT_FOUND,
                             "%s is missing: no .safetensors file or *.safetensors.index.json in %s/", pt->what, dir);
        else
            *model = dir, dir = NULL;
    } else {
        const int t5 = !strcmp(pt->key, "tokenizer_2");
        if (cd_tokenizer_in_dir(ctx, t5 ? CD_TOKENIZER_T5 : CD_TOKENIZER_CLIP, dir, tok, merges) != CD_OK)
            s = cd_set_error(ctx, CD_ERR_NOT_FOUND, "%s is missing: expected %s/%s", pt->what, dir,
                             t5 ? "spiece.model or tokenizer.json" : "vocab.json + merges.txt or tokenizer.json");
    }
    free(dir);
    return s;
}

static cd_status open_pipeline(cd_ctx *ctx, const char *root, const char *index_path, cd_model_dir *d) {
    int missing;
    json_t *index = load_json(ctx, index_path, MD_MAX_CONFIG, &missing);
    if (!index) return CD_ERR_FORMAT;
    cd_status s = CD_OK;
    const char *cls = json_string_value(json_object_get(index, "_class_name"));
    if (!json_is_object(index) || !cls) {
        s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: no _class_name (not a diffusers model_index.json)", index_path);
    } else if (strncmp(cls, "Flux", 4) || !cd_str_ends_with(cls, "Pipeline")) {
        s = cd_set_error(ctx, CD_ERR_UNSUPPORTED, "%s: _class_name %s is not a FLUX pipeline (Flux...Pipeline)",
                         index_path, cls);
    }
    char **models[] = {&d->transformer, &d->vae, &d->clip, &d->t5, NULL, NULL};
    char **toks[] = {NULL, NULL, NULL, NULL, &d->clip_tokenizer, &d->t5_tokenizer};
    for (size_t i = 0; s == CD_OK && i < sizeof k_parts / sizeof k_parts[0]; i++)
        s = resolve_part(ctx, root, index, &k_parts[i], models[i], toks[i], i == 4 ? &d->clip_merges : NULL);
    json_decref(index);
    if (s) return s;
    d->is_pipeline = 1;
    char *cfg_path = join(d->transformer, "config.json");
    if (!cfg_path) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    json_t *cfg = load_json(ctx, cfg_path, MD_MAX_CONFIG, &missing);
    free(cfg_path);
    if (!cfg && !missing) return CD_ERR_FORMAT;
    d->max_length_hint = cfg ? hint_from(cfg) : 0;
    json_decref(cfg);
    return CD_OK;
}

/* A transformer folder or file. A folder's config.json, when there, must be a FLUX transformer's. */
static cd_status open_transformer(cd_ctx *ctx, const char *path, int dir, cd_model_dir *d) {
    char *cfg_path = NULL;
    if (dir) {
        cfg_path = join(path, "config.json");
    } else {
        const char *slash = strrchr(path, '/');
        char *parent = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
        if (parent) cfg_path = join(parent, "config.json");
        free(parent);
    }
    if (!cfg_path) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    int missing;
    json_t *cfg = load_json(ctx, cfg_path, MD_MAX_CONFIG, &missing);
    cd_status s = CD_OK;
    if (!cfg && !missing) {
        s = CD_ERR_FORMAT;
    } else if (cfg) {
        const char *cls = config_class(cfg);
        if (cls && strstr(cls, "Flux") && strstr(cls, "Transformer"))
            d->max_length_hint = hint_from(cfg);
        else if (dir && cls)
            s = cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                             "%s holds a %s (config.json), not a FLUX transformer or a diffusers FLUX pipeline", path,
                             cls);
        /* a file next to an unrelated config.json (a ComfyUI models folder): no hint, no error */
    }
    json_decref(cfg);
    free(cfg_path);
    if (s) return s;
    if (dir && !has_weights(path)) {
        char *sub = join(path, "transformer");
        int pipe_like = sub && cd_path_is_dir(sub);
        free(sub);
        return pipe_like
                   ? cd_set_error(ctx, CD_ERR_NOT_FOUND,
                                  "%s has a transformer/ folder but no model_index.json: pass %s/transformer, or "
                                  "restore the pipeline's model_index.json",
                                  path, path)
                   : cd_set_error(ctx, CD_ERR_NOT_FOUND,
                                  "%s: no model_index.json (a diffusers FLUX pipeline) and no .safetensors file or "
                                  "*.safetensors.index.json (a FLUX transformer)",
                                  path);
    }
    if (!(d->transformer = strdup(path))) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    return CD_OK;
}

cd_status cd_model_dir_open(cd_ctx *ctx, const char *path, cd_model_dir *out) {
    memset(out, 0, sizeof *out);
    if (!path || !*path) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "no model path given");
    struct stat st;
    if (stat(path, &st) != 0)
        return cd_set_error(ctx, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO, "%s: %s", path, strerror(errno));
    if (!(out->root = strdup(path))) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    cd_status s;
    if (S_ISDIR(st.st_mode)) {
        char *index = join(path, "model_index.json");
        if (!index) {
            s = cd_set_error(ctx, CD_ERR_OOM, "out of memory");
        } else {
            s = cd_path_is_file(index) ? open_pipeline(ctx, path, index, out) : open_transformer(ctx, path, 1, out);
            free(index);
        }
    } else if (S_ISREG(st.st_mode)) {
        s = open_transformer(ctx, path, 0, out);
    } else {
        s = cd_set_error(ctx, CD_ERR_IO, "%s: not a file or a directory", path);
    }
    if (s) cd_model_dir_free(out);
    return s;
}

void cd_model_dir_free(cd_model_dir *d) {
    if (!d) return;
    free(d->root);
    free(d->transformer);
    free(d->vae);
    free(d->clip);
    free(d->t5);
    free(d->clip_tokenizer);
    free(d->clip_merges);
    free(d->t5_tokenizer);
    memset(d, 0, sizeof *d);
}
