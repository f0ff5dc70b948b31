/* encode_find.c — where the text encoders' parts are: a diffusers FLUX pipeline root (model_dir.c),
 * explicit checkpoints, and tokenizers beside their checkpoints (diffusers keeps them in sibling
 * folders; ComfyUI ships them inside its source tree, so its users pass them explicitly); plus the
 * identity of those files, which keys the embedding cache (encode_cache.c). */
#include "encode_internal.h"
#include "model_dir.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *base_name(const char *p) {
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

/* dir/name (dir = the directory of `path` when path is a file), malloc'd, or NULL. */
static char *join_near(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    const int dir = cd_path_is_dir(path);
    const size_t dl = dir ? strlen(path) : slash ? (size_t)(slash - path) : 1;
    const char *d = dir || slash ? path : ".";
    char *r = malloc(dl + strlen(name) + 2);
    if (r) snprintf(r, dl + strlen(name) + 2, "%.*s/%s", (int)dl, d, name);
    return r;
}

static cd_status dup_into(cd_ctx *ctx, char **dst, const char *src) {
    free(*dst);
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? cd_set_error(ctx, CD_ERR_OOM, "encoder: out of memory") : CD_OK;
}

void cd_enc_paths_free(cd_enc_paths *ps) {
    free(ps->t5);
    free(ps->clip);
    free(ps->t5_tok);
    free(ps->clip_tok);
    free(ps->clip_merges);
    memset(ps, 0, sizeof *ps);
}

/* A tokenizer given as a folder becomes the file in it (model_dir.c's rules); a file stays. */
static cd_status tokenizer_file(cd_ctx *ctx, cd_tokenizer_kind kind, char **tok, char **merges) {
    if (!cd_path_is_dir(*tok)) return CD_OK;
    char *t = NULL, *m = NULL;
    cd_status s = cd_tokenizer_in_dir(ctx, kind, *tok, &t, &m);
    if (s) return s;
    free(*tok);
    *tok = t;
    if (merges) {
        free(*merges);
        *merges = m;
    } else {
        free(m);
    }
    return CD_OK;
}

cd_status cd_enc_resolve(cd_ctx *ctx, const cd_encoder_params *p, cd_enc_paths *out) {
    memset(out, 0, sizeof *out);
    cd_status s = CD_OK;
    if (p->model_dir) {
        cd_model_dir md;
        if ((s = cd_model_dir_open(ctx, p->model_dir, &md))) return s;
        if (!md.is_pipeline && !(p->t5 && p->clip)) {
            cd_model_dir_free(&md);
            return cd_set_error(ctx, CD_ERR_NOT_FOUND,
                                "%s is a transformer, not a diffusers FLUX pipeline folder: it has no text "
                                "encoders; pass --t5 PATH and --clip PATH",
                                p->model_dir);
        }
        if (md.is_pipeline && !(s = dup_into(ctx, &out->t5, md.t5)) && !(s = dup_into(ctx, &out->clip, md.clip)) &&
            !(s = dup_into(ctx, &out->t5_tok, md.t5_tokenizer)) &&
            !(s = dup_into(ctx, &out->clip_tok, md.clip_tokenizer)))
            s = dup_into(ctx, &out->clip_merges, md.clip_merges);
        out->max_length_hint = md.max_length_hint;
        cd_model_dir_free(&md);
    }
    if (!s && p->t5) s = dup_into(ctx, &out->t5, p->t5);
    if (!s && p->clip) s = dup_into(ctx, &out->clip, p->clip);
    if (!s && p->t5_tokenizer) s = dup_into(ctx, &out->t5_tok, p->t5_tokenizer);
    if (!s && p->clip_tokenizer && !(s = dup_into(ctx, &out->clip_tok, p->clip_tokenizer)))
        s = dup_into(ctx, &out->clip_merges, NULL);
    if (!s && !out->t5)
        s = cd_set_error(ctx, CD_ERR_NOT_FOUND,
                         "no T5 encoder: pass --model DIR (a diffusers FLUX folder) or --t5 PATH "
                         "(e.g. t5xxl_fp16.safetensors)");
    if (!s && !out->clip)
        s = cd_set_error(ctx, CD_ERR_NOT_FOUND,
                         "no CLIP text encoder: pass --model DIR (a diffusers FLUX folder) or --clip PATH "
                         "(e.g. clip_l.safetensors)");
    /* a tokenizer not given is looked for beside its checkpoint; the error says what to pass */
    if (!s && !out->t5_tok) s = cd_tokenizer_beside(ctx, CD_TOKENIZER_T5, out->t5, &out->t5_tok, NULL);
    if (!s && !out->clip_tok)
        s = cd_tokenizer_beside(ctx, CD_TOKENIZER_CLIP, out->clip, &out->clip_tok, &out->clip_merges);
    if (!s && (!cd_path_is_file(out->t5_tok) && !cd_path_is_dir(out->t5_tok)))
        s = cd_set_error(ctx, CD_ERR_NOT_FOUND, "T5 tokenizer %s: no such file or folder", out->t5_tok);
    if (!s && (!cd_path_is_file(out->clip_tok) && !cd_path_is_dir(out->clip_tok)))
        s = cd_set_error(ctx, CD_ERR_NOT_FOUND, "CLIP tokenizer %s: no such file or folder", out->clip_tok);
    if (!s) s = tokenizer_file(ctx, CD_TOKENIZER_CLIP, &out->clip_tok, &out->clip_merges);
    if (s) cd_enc_paths_free(out);
    return s;
}

/* The T5 tokenizer in semantics sem. DIFFUSERS is defined by a tokenizer.json (HF's pipeline): a
 * spiece.model with a tokenizer.json beside it (diffusers' tokenizer_2/) reads that one. */
cd_status cd_enc_load_spm(cd_ctx *ctx, const char *path, cd_tok_semantics sem, cd_spm **out) {
    const cd_spm_semantics ss = sem == CD_TOK_DIFFUSERS ? CD_SPM_SEMANTICS_DIFFUSERS : CD_SPM_SEMANTICS_SENTENCEPIECE;
    if (cd_path_is_dir(path)) return cd_spm_load_dir(ctx, path, ss, out);
    char *json = NULL;
    if (ss == CD_SPM_SEMANTICS_DIFFUSERS && !cd_str_ends_with(path, ".json")) {
        json = join_near(path, "tokenizer.json");
        if (!json) return cd_set_error(ctx, CD_ERR_OOM, "encoder: out of memory");
        if (!cd_path_is_file(json)) {
            free(json);
            return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                                "--tokenizer-semantics diffusers needs the T5 tokenizer.json (transformers' fast "
                                "tokenizer); %s is a SentencePiece model and no tokenizer.json is beside it",
                                path);
        }
        path = json;
    }
    cd_status s =
        cd_str_ends_with(path, ".json") ? cd_spm_load_tokenizer_json(ctx, path, out) : cd_spm_load(ctx, path, out);
    free(json);
    if (!s && (s = cd_spm_set_semantics(ctx, *out, ss))) {
        cd_spm_free(*out);
        *out = NULL;
    }
    return s;
}

cd_status cd_enc_load_bpe(cd_ctx *ctx, const char *path, const char *merges, cd_clip_bpe **out) {
    if (cd_str_ends_with(path, ".gz")) return cd_clip_bpe_load_gz(ctx, path, out);
    if (strcmp(base_name(path), "tokenizer.json") == 0) return cd_clip_bpe_load_tokenizer_json(ctx, path, out);
    /* vocab.json: merges.txt is its sibling, as diffusers and ComfyUI store them */
    char *m = merges ? NULL : join_near(path, "merges.txt");
    if (!merges && !m) return cd_set_error(ctx, CD_ERR_OOM, "encoder: out of memory");
    cd_status s = cd_clip_bpe_load_json(ctx, path, merges ? merges : m, out);
    free(m);
    return s;
}

cd_status cd_enc_t5_ids(cd_ctx *ctx, const cd_encoder *e, const char *text, size_t len, size_t L, int32_t *ids,
                        size_t *dropped) {
    return cd_spm_t5_ids(ctx, e->spm, text, len, L, ids, dropped);
}

/* ---- identity ---------------------------------------------------------------------------- */
typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static int sb_add(sbuf *b, const char *fmt, const char *str, long long size, long long sec, long long nsec) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, ":%lld:%lld.%09lld;", size, sec, nsec);
    const size_t need = b->len + strlen(fmt) + strlen(str) + strlen(tmp) + 1;
    if (need > b->cap) {
        const size_t cap = need * 2;
        char *p = realloc(b->s, cap);
        if (!p) return 0;
        b->s = p;
        b->cap = cap;
    }
    b->len += (size_t)sprintf(b->s + b->len, "%s%s%s", fmt, str, tmp);
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A file: its resolved path, size and modification time. A directory (or a sharded index, whose
 * shards are its siblings): every regular file directly in it, in name order. */
static int add_identity(sbuf *b, const char *tag, const char *path) {
    char *real = realpath(path, NULL);
    if (!real) return 0;
    struct stat st;
    int ok = stat(real, &st) == 0;
    if (ok && (S_ISDIR(st.st_mode) || cd_str_ends_with(real, ".index.json"))) {
        char *dir = S_ISDIR(st.st_mode) ? strdup(real) : join_near(real, ".");
        DIR *d = dir ? opendir(dir) : NULL;
        char **names = NULL;
        size_t n = 0, cap = 0;
        for (struct dirent *de; ok && d && (de = readdir(d));) {
            if (de->d_name[0] == '.') continue;
            if (n == cap) {
                char **p = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names);
                if (!p)
                    ok = 0;
                else
                    names = p;
            }
            if (ok && !(names[n++] = strdup(de->d_name))) ok = 0;
        }
        if (d) closedir(d);
        ok = ok && d;
        if (ok) qsort(names, n, sizeof *names, cmp_str);
        ok = ok && sb_add(b, tag, real, 0, 0, 0);
        for (size_t i = 0; i < n; i++) {
            char *f = ok ? join_near(dir, names[i]) : NULL;
            struct stat fs;
            if (f && stat(f, &fs) == 0 && S_ISREG(fs.st_mode))
                ok = sb_add(b, " ", names[i], (long long)fs.st_size, (long long)fs.st_mtim.tv_sec,
                            (long long)fs.st_mtim.tv_nsec);
            free(f);
            free(names[i]);
        }
        free(names);
        free(dir);
    } else if (ok) {
        ok = sb_add(b, tag, real, (long long)st.st_size, (long long)st.st_mtim.tv_sec, (long long)st.st_mtim.tv_nsec);
    }
    free(real);
    return ok;
}

cd_status cd_enc_identity(cd_ctx *ctx, cd_encoder *e, const cd_enc_paths *ps) {
    sbuf b = {0};
    const char *sem = e->semantics == CD_TOK_DIFFUSERS ? "diffusers" : "sentencepiece";
    int ok = add_identity(&b, "t5=", ps->t5) && add_identity(&b, "clip=", ps->clip) &&
             add_identity(&b, "t5-tokenizer=", ps->t5_tok) && add_identity(&b, "clip-tokenizer=", ps->clip_tok) &&
             sb_add(&b, "semantics=", sem, 0, 0, 0);
    if (!ok) {
        free(b.s);
        return cd_set_error(ctx, CD_ERR_IO, "encoder: cannot stat the encoder files (%s, %s, %s, %s)", ps->t5, ps->clip,
                            ps->t5_tok, ps->clip_tok);
    }
    e->identity = b.s;
    const char *t5d = cd_t5_describe(e->t5), *cd = cd_clip_text_describe(e->clip);
    const size_t n = strlen(t5d) + strlen(cd) + strlen(ps->t5_tok) + strlen(ps->clip_tok) + 96;
    if (!(e->describe = malloc(n))) return cd_set_error(ctx, CD_ERR_OOM, "encoder: out of memory");
    snprintf(e->describe, n, "%s; %s; tokenizers %s, %s (%s semantics)", t5d, cd, ps->t5_tok, ps->clip_tok, sem);
    return CD_OK;
}
