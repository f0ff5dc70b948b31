/* ckpt.c — checkpoint sets (cd_ckpt_*): the tensors of one .safetensors file, of the shards of
 * a `*.safetensors.index.json` (diffusers/transformers), or of the one model found in a
 * directory, as one list sorted by name, with a known key prefix stripped.
 *
 * Opening a checkpoint maps and validates every file's header (safetensors.c) and checks the set
 * as a whole: the index's weight_map and the shards must agree key for key, names must be unique
 * across shards. No tensor data is read: t->data points into the mapped files (zero-copy), so
 * opening a 24 GB model costs its headers, not its weights.
 *
 * What it is not: it does not know model layouts or configs (layout_*.c), does not convert or
 * copy tensors, and does not read PyTorch .bin/.pt checkpoints. */
#include "st_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* An index lists every tensor name once, so it is about as large as a header; the same cap. */
#define CD_CKPT_MAX_INDEX CD_ST_MAX_HEADER

/* Prefixes that repackers put in front of every key (ComfyUI/LDM: "model.diffusion_model.",
 * "first_stage_model."; some exports: "diffusion_model.", "model.", "transformer."). Longest
 * first where one is a prefix of another, so that "model.diffusion_model." wins over "model.". */
static const char *const k_prefixes[] = {
    "model.diffusion_model.", "diffusion_model.", "model.", "transformer.", "first_stage_model.",
};

/* One tensor of the set: the file's tensor view with `name` moved past the stripped prefix. */
typedef struct {
    cd_st_tensor t;
    size_t file; /* index into files[] / paths[] */
} ck_entry;

struct cd_ckpt {
    cd_st_file **files; /* [n_files], in file-name order (shard order) */
    char **paths;       /* [n_files], as opened (directory of the index + shard name) */
    char **labels;      /* [n_files], how messages call each file (the shard name) */
    size_t n_files;
    ck_entry *entries; /* [count], sorted by name */
    size_t count;
    const char *prefix; /* one of k_prefixes, or "" */
};

/* Where errors go and how the checkpoint is called in them. */
typedef struct {
    cd_ctx *ctx;
    char path[CD_ST_PRINT_MAX];
} ck_parse;

__attribute__((format(printf, 3, 4))) static cd_status ck_fail(const ck_parse *p, cd_status s, const char *fmt, ...) {
    char reason[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    cd_st_one_line(reason);
    return cd_set_error(p->ctx, s, "%s: %s", p->path, reason);
}

/* ---- small helpers ------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    s[a] = '/';
    memcpy(s + a + 1, name, b + 1);
    return s;
}

/* The directory part of path: "." without a slash, "/" for "/x". */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_entries(const void *a, const void *b) {
    const ck_entry *x = a, *y = b;
    return strcmp(x->t.name, y->t.name);
}

/* "a, b, c" of names[n] into buf (cut with "..." when it does not fit). */
static const char *list_names(char *const *names, size_t n, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char one[CD_ST_PRINT_MAX];
        int k = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", cd_st_printable(names[i], one, sizeof one));
        if (k < 0 || (size_t)k >= cap - len) {
            if (cap > 4) memcpy(buf + cap - 4, "...", 4);
            break;
        }
        len += (size_t)k;
    }
    return buf;
}

static void free_strs(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Binary search of entries[n] (sorted by name). */
static const ck_entry *find_entry(const ck_entry *e, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, e[mid].t.name);
        if (c == 0) return &e[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- files --------------------------------------------------------------------------------- */

static cd_status alloc_files(const ck_parse *p, cd_ckpt *c, size_t n) {
    c->files = calloc(n, sizeof *c->files);
    c->paths = calloc(n, sizeof *c->paths);
    c->labels = calloc(n, sizeof *c->labels);
    if (!c->files || !c->paths || !c->labels) return ck_fail(p, CD_ERR_OOM, "out of memory");
    return CD_OK;
}

/* Opens file i of the set: `path` on disk, `label` in messages. Takes neither string. */
static cd_status open_file(const ck_parse *p, cd_ckpt *c, size_t i, const char *path, const char *label) {
    c->paths[i] = strdup(path);
    c->labels[i] = strdup(label);
    c->n_files = i + 1; /* counted now so that cd_ckpt_close frees the strings */
    if (!c->paths[i] || !c->labels[i]) return ck_fail(p, CD_ERR_OOM, "out of memory");
    return cd_st_open(p->ctx, path, &c->files[i]);
}

/* Gathers every file's tensors into entries (sorted by name) and rejects a name that two files
 * share: the reference loaders would silently keep one of them. */
static cd_status collect(const ck_parse *p, cd_ckpt *c) {
    size_t total = 0;
    for (size_t i = 0; i < c->n_files; i++)
        if (__builtin_add_overflow(total, cd_st_count(c->files[i]), &total))
            return ck_fail(p, CD_ERR_FORMAT, "too many tensors");
    c->entries = calloc(total ? total : 1, sizeof *c->entries);
    if (!c->entries) return ck_fail(p, CD_ERR_OOM, "out of memory for %zu tensors", total);
    for (size_t i = 0; i < c->n_files; i++)
        for (size_t k = 0; k < cd_st_count(c->files[i]); k++) {
            c->entries[c->count].t = *cd_st_at(c->files[i], k);
            c->entries[c->count].file = i;
            c->count++;
        }
    qsort(c->entries, c->count, sizeof *c->entries, cmp_entries);
    for (size_t i = 1; i < c->count; i++) {
        const ck_entry *a = &c->entries[i - 1], *b = &c->entries[i];
        if (!strcmp(a->t.name, b->t.name)) {
            char n[CD_ST_PRINT_MAX], fa[CD_ST_PRINT_MAX], fb[CD_ST_PRINT_MAX];
            const size_t x = a->file < b->file ? a->file : b->file;
            const size_t y = a->file < b->file ? b->file : a->file;
            return ck_fail(p, CD_ERR_FORMAT, "tensor '%s' is in two shards: '%s' and '%s'",
                           cd_st_printable(a->t.name, n, sizeof n), cd_st_printable(c->labels[x], fa, sizeof fa),
                           cd_st_printable(c->labels[y], fb, sizeof fb));
        }
    }
    return CD_OK;
}

/* Strips the first known prefix that EVERY name has (and that leaves no name empty). Stripping
 * one common prefix keeps the names sorted and unique. */
static void strip_prefix(cd_ckpt *c) {
    c->prefix = "";
    if (!c->count) return;
    for (size_t k = 0; k < sizeof k_prefixes / sizeof k_prefixes[0]; k++) {
        const char *pre = k_prefixes[k];
        const size_t len = strlen(pre);
        size_t i = 0;
        while (i < c->count && !strncmp(c->entries[i].t.name, pre, len) && c->entries[i].t.name[len]) i++;
        if (i < c->count) continue;
        for (i = 0; i < c->count; i++) c->entries[i].t.name += len;
        c->prefix = pre;
        return;
    }
}

/* ---- index ----------------------------------------------------------------------------------- */

/* Reads the whole index (a regular file of at most CD_CKPT_MAX_INDEX bytes) and parses it. */
static cd_status load_index_json(const ck_parse *p, const char *path, json_t **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ck_fail(p, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ck_fail(p, CD_ERR_IO, "not a regular file");
    }
    if ((uint64_t)st.st_size > CD_CKPT_MAX_INDEX) {
        close(fd);
        return ck_fail(p, CD_ERR_FORMAT, "index of %lld bytes exceeds the limit of %llu bytes", (long long)st.st_size,
                       CD_CKPT_MAX_INDEX);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return ck_fail(p, CD_ERR_OOM, "out of memory for the index (%zu bytes)", n);
    }
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    int e = errno;
    close(fd);
    if (got < n) {
        free(buf);
        return ck_fail(p, CD_ERR_IO, "read failed: %s", got ? "file shrank" : strerror(e));
    }
    cd_status s = CD_OK;
    size_t bad;
    json_error_t je;
    if (!cd_st_utf8_valid_at(buf, n, &bad)) {
        s = ck_fail(p, CD_ERR_FORMAT, "index is not valid UTF-8 (at byte %zu)", bad);
    } else if (!(*out = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je))) {
        if (json_error_code(&je) == json_error_duplicate_key) {
            char tok[CD_ST_PRINT_MAX];
            s = ck_fail(p, CD_ERR_FORMAT, "duplicate key %s in the index (at byte %d)",
                        cd_st_json_near(je.text, tok, sizeof tok), je.position);
        } else {
            s = ck_fail(p, CD_ERR_FORMAT, "index is not valid JSON: %s (at byte %d)", je.text, je.position);
        }
    }
    free(buf);
    return s;
}

/* A shard name must stay inside the index's directory: relative, no ".." component. */
static int shard_name_ok(const char *s) {
    if (!s[0] || s[0] == '/') return 0;
    for (const char *q = s; *q;) {
        const char *end = strchr(q, '/');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len == 2 && q[0] == '.' && q[1] == '.') return 0;
        q += len + (end ? 1 : 0);
    }
    return 1;
}

/* Checks the weight_map's structure; fills the sorted, distinct shard names. */
static cd_status index_shards(const ck_parse *p, json_t *root, json_t **wm_out, char ***names, size_t *n_names) {
    *names = NULL;
    *n_names = 0;
    if (!json_is_object(root)) return ck_fail(p, CD_ERR_FORMAT, "index is not a JSON object");
    json_t *md = json_object_get(root, "metadata");
    if (md && !json_is_object(md)) return ck_fail(p, CD_ERR_FORMAT, "index 'metadata' is not an object");
    json_t *wm = json_object_get(root, "weight_map");
    if (!wm) return ck_fail(p, CD_ERR_FORMAT, "index has no 'weight_map'");
    if (!json_is_object(wm)) return ck_fail(p, CD_ERR_FORMAT, "index 'weight_map' is not an object");
    const size_t n = json_object_size(wm);
    if (n == 0) return ck_fail(p, CD_ERR_FORMAT, "index 'weight_map' is empty");
    char **v = calloc(n, sizeof *v);
    if (!v) return ck_fail(p, CD_ERR_OOM, "out of memory");
    size_t k = 0;
    const char *key;
    json_t *val;
    char kn[CD_ST_PRINT_MAX], sn[CD_ST_PRINT_MAX];
    cd_status s = CD_OK;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            s = ck_fail(p, CD_ERR_FORMAT, "weight_map value of '%s' is not a string (a shard file)",
                        cd_st_printable(key, kn, sizeof kn));
            goto done;
        }
        const char *shard = json_string_value(val);
        if (!shard_name_ok(shard)) {
            s = ck_fail(p, CD_ERR_FORMAT,
                        "weight_map shard '%s' of '%s' is not a relative path inside the index's "
                        "directory",
                        cd_st_printable(shard, sn, sizeof sn), cd_st_printable(key, kn, sizeof kn));
            goto done;
        }
        if (!ends_with(shard, ".safetensors")) {
            s = ck_fail(p, CD_ERR_UNSUPPORTED,
                        "weight_map shard '%s' is not a .safetensors file (only safetensors "
                        "checkpoints are read)",
                        cd_st_printable(shard, sn, sizeof sn));
            goto done;
        }
        v[k++] = (char *)shard; /* borrowed from root until copied below */
    }
    qsort(v, k, sizeof *v, cmp_str_ptr);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (!u || strcmp(v[u - 1], v[i])) v[u++] = v[i];
    for (size_t i = 0; i < u; i++) v[i] = strdup(v[i]);
    *n_names = u;
    for (size_t i = 0; i < u; i++)
        if (!v[i]) {
            s = ck_fail(p, CD_ERR_OOM, "out of memory");
            break;
        }
    *names = v;
    v = NULL;
    *wm_out = wm;
done:
    free(v);
    return s;
}

/* The weight_map and the shards must agree exactly: every key is in the shard it names, and
 * every tensor of every shard is listed (for its own shard: names are unique across shards). */
static cd_status index_cross_check(const ck_parse *p, const cd_ckpt *c, json_t *wm) {
    const char *key;
    json_t *val;
    char kn[CD_ST_PRINT_MAX], sa[CD_ST_PRINT_MAX], sb[CD_ST_PRINT_MAX];
    json_object_foreach(wm, key, val) {
        const char *shard = json_string_value(val);
        const ck_entry *e = find_entry(c->entries, c->count, key);
        if (!e)
            return ck_fail(p, CD_ERR_FORMAT, "index says '%s' is in shard '%s' but it is not in any shard",
                           cd_st_printable(key, kn, sizeof kn), cd_st_printable(shard, sb, sizeof sb));
        if (strcmp(c->labels[e->file], shard))
            return ck_fail(p, CD_ERR_FORMAT, "index says '%s' is in shard '%s' but it is in shard '%s'",
                           cd_st_printable(key, kn, sizeof kn), cd_st_printable(shard, sb, sizeof sb),
                           cd_st_printable(c->labels[e->file], sa, sizeof sa));
    }
    for (size_t i = 0; i < c->count; i++)
        if (!json_object_get(wm, c->entries[i].t.name))
            return ck_fail(p, CD_ERR_FORMAT, "shard '%s' holds tensor '%s' that the index's weight_map does not list",
                           cd_st_printable(c->labels[c->entries[i].file], sa, sizeof sa),
                           cd_st_printable(c->entries[i].t.name, kn, sizeof kn));
    return CD_OK;
}

static cd_status open_index(const ck_parse *p, cd_ckpt *c, const char *path) {
    json_t *root = NULL, *wm = NULL;
    char **shards = NULL, *dir = NULL, *sp = NULL;
    size_t n_shards = 0;
    cd_status s = load_index_json(p, path, &root);
    if (!s) s = index_shards(p, root, &wm, &shards, &n_shards);
    if (!s) s = alloc_files(p, c, n_shards);
    if (!s && !(dir = dir_of(path))) s = ck_fail(p, CD_ERR_OOM, "out of memory");
    for (size_t i = 0; i < n_shards && !s; i++) {
        free(sp);
        if (!(sp = path_join(dir, shards[i]))) {
            s = ck_fail(p, CD_ERR_OOM, "out of memory");
            break;
        }
        struct stat st;
        char sn[CD_ST_PRINT_MAX], spn[CD_ST_PRINT_MAX];
        if (stat(sp, &st) != 0) {
            s = ck_fail(p, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO,
                        "shard '%s' listed in the weight_map cannot be opened (%s): %s",
                        cd_st_printable(shards[i], sn, sizeof sn), cd_st_printable(sp, spn, sizeof spn),
                        strerror(errno));
            break;
        }
        s = open_file(p, c, i, sp, shards[i]);
        if (s && s != CD_ERR_OOM) {
            /* the shard's own message names the shard file and the reason; say whose shard */
            char inner[sizeof p->ctx->err];
            snprintf(inner, sizeof inner, "%s", cd_ctx_error(p->ctx));
            s = ck_fail(p, s, "bad shard: %s", inner);
        }
    }
    if (!s) s = collect(p, c);
    if (!s) s = index_cross_check(p, c, wm);
    free(sp);
    free(dir);
    free_strs(shards, n_shards);
    json_decref(root);
    return s;
}

/* ---- directory ------------------------------------------------------------------------------- */

/* A directory holds one model: exactly one index (its shards sit next to it), else exactly one
 * .safetensors file. A diffusers pipeline root holds models only in subdirectories, which the
 * message names. On success *chosen = the path to open. */
static cd_status resolve_dir(const ck_parse *p, const char *dir, char **chosen) {
    *chosen = NULL;
    DIR *d = opendir(dir);
    if (!d) return ck_fail(p, CD_ERR_IO, "cannot list the directory: %s", strerror(errno));
    char **idx = NULL, **st = NULL;
    size_t n_idx = 0, n_st = 0, cap_idx = 0, cap_st = 0;
    int has_transformer = 0, has_vae = 0, has_t5 = 0, has_clip = 0;
    cd_status s = CD_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (name[0] == '.') continue; /* ".", "..", hidden files and editors' temp files */
        char *full = path_join(dir, name);
        if (!full) {
            s = ck_fail(p, CD_ERR_OOM, "out of memory");
            break;
        }
        struct stat sb;
        int ok = stat(full, &sb) == 0; /* follows symlinks (the Hugging Face cache uses them) */
        free(full);
        if (!ok) continue;
        if (S_ISDIR(sb.st_mode)) {
            has_transformer |= !strcmp(name, "transformer");
            has_vae |= !strcmp(name, "vae");
            has_t5 |= !strcmp(name, "text_encoder_2");
            has_clip |= !strcmp(name, "text_encoder");
            continue;
        }
        if (!S_ISREG(sb.st_mode)) continue;
        char ***list = NULL;
        size_t *n = NULL, *cap = NULL;
        if (ends_with(name, ".safetensors.index.json"))
            list = &idx, n = &n_idx, cap = &cap_idx;
        else if (ends_with(name, ".safetensors"))
            list = &st, n = &n_st, cap = &cap_st;
        if (!list) continue;
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 8;
            char **g = realloc(*list, nc * sizeof *g);
            if (!g) {
                s = ck_fail(p, CD_ERR_OOM, "out of memory");
                break;
            }
            *list = g;
            *cap = nc;
        }
        if (!((*list)[*n] = strdup(name))) {
            s = ck_fail(p, CD_ERR_OOM, "out of memory");
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (n_idx > 1) qsort(idx, n_idx, sizeof *idx, cmp_str_ptr); /* idx is NULL when empty */
    if (n_st > 1) qsort(st, n_st, sizeof *st, cmp_str_ptr);
    char names[320];
    if (s) {
        /* out of memory above */
    } else if (n_idx > 1) {
        s = ck_fail(p, CD_ERR_INVALID_ARG, "the directory holds several checkpoint indexes (%s); pass one of them",
                    list_names(idx, n_idx, names, sizeof names));
    } else if (n_idx == 1 || n_st == 1) {
        if (!(*chosen = path_join(dir, n_idx ? idx[0] : st[0]))) s = ck_fail(p, CD_ERR_OOM, "out of memory");
    } else if (n_st > 1) {
        s = ck_fail(p, CD_ERR_INVALID_ARG,
                    "the directory holds several .safetensors files and no "
                    "*.safetensors.index.json (%s); pass one of them",
                    list_names(st, n_st, names, sizeof names));
    } else if (has_transformer || has_vae) {
        /* the parts this root has, in the order a user asks for them */
        const char *parts[4];
        int np = 0;
        if (has_transformer) parts[np++] = "its transformer/ subdirectory (the FLUX transformer)";
        if (has_vae) parts[np++] = "its vae/ subdirectory (the autoencoder)";
        if (has_t5) parts[np++] = "text_encoder_2/ (T5)";
        if (has_clip) parts[np++] = "text_encoder/ (CLIP)";
        char list[400];
        size_t n = 0;
        for (int k = 0; k < np && n < sizeof list; k++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s",
                                  k == 0        ? ""
                                  : k == np - 1 ? " or "
                                                : ", ",
                                  parts[k]);
        s = ck_fail(p, CD_ERR_NOT_FOUND,
                    "no .safetensors file or *.safetensors.index.json here; this looks like a "
                    "diffusers pipeline: pass %s",
                    list);
    } else {
        s = ck_fail(p, CD_ERR_NOT_FOUND, "no .safetensors file or *.safetensors.index.json here");
    }
    free_strs(idx, n_idx);
    free_strs(st, n_st);
    return s;
}

/* ---- public API ---------------------------------------------------------------------------- */

/* Opens `path` (a file; not a directory) as a single safetensors file or as an index. */
static cd_status open_path(const ck_parse *p, cd_ckpt *c, const char *path) {
    if (ends_with(path, ".json")) return open_index(p, c, path);
    cd_status s = alloc_files(p, c, 1);
    if (!s) {
        const char *base = strrchr(path, '/');
        s = open_file(p, c, 0, path, base ? base + 1 : path);
    }
    if (!s) s = collect(p, c);
    return s;
}

cd_status cd_ckpt_open(cd_ctx *ctx, const char *path, cd_ckpt **out) {
    if (!out) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "checkpoint: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "checkpoint: empty path");
    ck_parse p = {ctx, {0}};
    cd_st_printable(path, p.path, sizeof p.path);
    struct stat st;
    if (stat(path, &st) != 0)
        return ck_fail(&p, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO, "cannot open: %s", strerror(errno));
    cd_ckpt *c = calloc(1, sizeof *c);
    if (!c) return ck_fail(&p, CD_ERR_OOM, "out of memory");
    cd_status s;
    if (S_ISDIR(st.st_mode)) {
        char *chosen = NULL;
        s = resolve_dir(&p, path, &chosen);
        if (!s) {
            cd_st_printable(chosen, p.path, sizeof p.path); /* messages name the chosen file */
            s = open_path(&p, c, chosen);
        }
        free(chosen);
    } else {
        s = open_path(&p, c, path);
    }
    if (s) {
        cd_ckpt_close(c);
        return s;
    }
    strip_prefix(c);
    *out = c;
    return CD_OK;
}

void cd_ckpt_close(cd_ckpt *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_files; i++) cd_st_close(c->files[i]);
    free(c->files);
    free_strs(c->paths, c->n_files);
    free_strs(c->labels, c->n_files);
    free(c->entries);
    free(c);
}

size_t cd_ckpt_count(const cd_ckpt *c) { return c ? c->count : 0; }

const cd_st_tensor *cd_ckpt_at(const cd_ckpt *c, size_t i) { return (c && i < c->count) ? &c->entries[i].t : NULL; }

const cd_st_tensor *cd_ckpt_find(const cd_ckpt *c, const char *name) {
    if (!c || !name) return NULL;
    const ck_entry *e = find_entry(c->entries, c->count, name);
    return e ? &e->t : NULL;
}

size_t cd_ckpt_files(const cd_ckpt *c) { return c ? c->n_files : 0; }

const char *cd_ckpt_file(const cd_ckpt *c, size_t i) { return (c && i < c->n_files) ? c->paths[i] : NULL; }

const char *cd_ckpt_prefix(const cd_ckpt *c) { return c ? c->prefix : ""; }

const char *cd_ckpt_meta(const cd_ckpt *c, const char *key) {
    return (c && c->n_files) ? cd_st_meta(c->files[0], key) : NULL;
}
