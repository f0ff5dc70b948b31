/* cli_eval.c — `cleardit eval`: quality of CLEAR attention on a pixel-space model with a built-in
 * prompt table (the Fashion-MNIST model `cleardit train` writes). Three variants sample the same
 * prompts and seeds: the teacher (dense attention), the student (teacher + distilled CLEAR
 * weights, CLEAR attention) and the plain swap (teacher weights, CLEAR attention: no
 * distillation). Reports PSNR / SSIM of student and swap against the teacher's images
 * (src/train/metrics.h: scikit-image's definitions), class accuracy of all three under a small
 * Fashion-MNIST classifier (src/train/classifier.h; trained and cached on first use), the
 * attention FLOPs of one layer, and wall times; optionally PNG grids of the samples.
 * A thin layer: the library generates (the public pipeline), measures and classifies; this file
 * orders, prints and writes. */
#include "cleardit.h"
#include "cli.h"
#include "cli_common.h"
#include "../train/classifier.h"
#include "../train/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "eval"
#define GRID_COLS 8  /* seeds shown per class in the grids */
#define GRID_SCALE 4 /* nearest-neighbour upscale of each sample in the grids */
#define MAX_PROMPTS 256

static const char *k_usage =
    "usage: cleardit eval --clear-weights FILE --radius R [--model TEACHER] [--down D]\n"
    "                     [--per-class N] [--steps S] [--seed S] [--classifier FILE |\n"
    "                     --classifier-out FILE] [--data DIR] [--grid-dir DIR] [--json]\n"
    "                     [--threads N] [--quiet]\n"
    "\n"
    "Measures what CLEAR attention costs in quality on a pixel-space model with a built-in prompt\n"
    "table (the Fashion-MNIST model of `cleardit train`). For each prompt and each of the N seeds\n"
    "S..S+N-1 it samples three variants from the same noise:\n"
    "  teacher  the model, dense attention\n"
    "  student  the model with the CLEAR weights, CLEAR attention of radius R (pooled keys with --down)\n"
    "  swap     the model's own weights with CLEAR attention of radius R, no distillation; never\n"
    "           pooled keys (a plain swap has no trained spatial weights), so with --down the swap\n"
    "           row is the radius-R disc alone\n"
    "and reports, against the teacher's images: PSNR (8-bit, MAX 255; identical images count as\n"
    "100 dB in the mean and are counted) and SSIM (Gaussian window sigma 1.5, 11 taps, population\n"
    "covariance, K1 0.01, K2 0.03, 5-pixel border cropped: scikit-image's structural_similarity\n"
    "with Wang et al.'s settings), mean and population std over the images; the class accuracy of\n"
    "all three variants under a Fashion-MNIST classifier (784-256-128-10 MLP; the label is the\n"
    "prompt's class), with the classifier's own accuracy on the t10k split; the attention FLOPs of\n"
    "one layer (the model's heads x head_dim, its token grid + 1 text token) dense vs CLEAR; and the\n"
    "wall time of each variant.\n"
    "\n"
    "options:\n"
    "  --model PATH          teacher (default: the default model)\n"
    "  --clear-weights FILE  the distilled CLEAR weights (cleardit distill)\n"
    "  --radius R            CLEAR radius in tokens (>= 1)\n"
    "  --down D              pooled keys for the student (the CLEAR file's spatial_weight side)\n"
    "  --per-class N         seeds per prompt (default 20)\n"
    "  --steps S             Euler steps per sample (default 32)\n"
    "  --seed S              first seed (default 0)\n"
    "  --classifier FILE     a classifier file to use (a previous run's cache)\n"
    "  --classifier-out FILE where to train and cache the classifier when --classifier is not\n"
    "                        given (default $XDG_CACHE_HOME/cleardit/fmnist_classifier.safetensors,\n"
    "                        else ~/.cache/cleardit/fmnist_classifier.safetensors); an existing\n"
    "                        classifier there is reused (the cache is keyed by the path only)\n"
    "  --data DIR            Fashion-MNIST IDX files: the train split trains the classifier, the\n"
    "                        t10k split measures it (default " CD_FMNIST_DIR ")\n"
    "  --grid-dir DIR        write teacher.png, student.png and swap.png there (created if\n"
    "                        missing): rows = prompts, columns = the first 8 seeds, x4 nearest\n"
    "  --json                print one JSON object instead of the report (fields below)\n"
    "  --threads N           threads (default: all cores)\n"
    "  --quiet               no progress lines on stderr\n"
    "  -h, --help            show this help\n"
    "\n"
    "JSON: model, clear_weights, radius, down, steps, seed, per_class, prompts [..], width,\n"
    "height, images (per variant), psnr_cap_db; teacher, student, swap: {attention, accuracy,\n"
    "per_class_accuracy [..], seconds} and for student and swap psnr and ssim: {mean, std, min,\n"
    "max, identical}; classifier: {path, trained, train_seconds, test_accuracy, test_images};\n"
    "attention_flops: {grid_h, grid_w, text_len, heads, head_dim, dense, student, swap,\n"
    "student_ratio, swap_ratio} (FLOPs of one layer's forward); seconds_total. Accuracies are\n"
    "fractions in [0, 1]; they are null when a prompt is not a Fashion-MNIST class or the\n"
    "classifier does not take the model's image size, test_accuracy when t10k is unavailable and\n"
    "the classifier file does not record it.\n"
    "\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad input.\n";

enum { V_TEACHER, V_STUDENT, V_SWAP, V_COUNT };
static const char *const k_vname[V_COUNT] = {"teacher", "student", "swap"};

typedef struct {
    cd_pipeline *pl; /* not owned by the swap (it shares the teacher's) */
    int32_t radius, down;
    uint8_t *img;  /* [prompts * per_class, h * w] grey */
    int32_t *pred; /* [prompts * per_class] classifier labels */
    double seconds;
    double acc; /* NAN = not measured */
    double class_acc[MAX_PROMPTS];
    cd_metric_stat psnr, ssim;
} variant;

typedef struct {
    char *names[MAX_PROMPTS];
    int n;
} prompt_table;

static void prompts_free(prompt_table *t) {
    for (int i = 0; i < t->n; i++) free(t->names[i]);
    t->n = 0;
}

/* The model's built-in prompt names (the library reads the table); -1 if there are none or too many. */
static int prompts_get(const cd_pipeline *pl, prompt_table *t) {
    t->n = 0;
    const int n = cd_pipeline_prompt_count(pl);
    if (n < 1 || n > MAX_PROMPTS) return -1;
    for (int i = 0; i < n; i++) {
        const int len = cd_pipeline_prompt_name(pl, i, NULL, 0);
        if (len < 0 || !(t->names[i] = malloc((size_t)len + 1))) return -1;
        t->n++;
        cd_pipeline_prompt_name(pl, i, t->names[i], (size_t)len + 1);
    }
    return 0;
}

/* mkdir -p of the directory part of path (or of path itself when is_dir). */
static int make_dirs(const char *path, int is_dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    if (!is_dir) {
        char *slash = strrchr(buf, '/');
        if (!slash) return 0;
        *slash = 0;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (*buf && mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    struct stat st;
    return *buf && (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) ? -1 : 0;
}

static int default_cache(char *out, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int w;
    if (xdg && *xdg)
        w = snprintf(out, n, "%s/cleardit/fmnist_classifier.safetensors", xdg);
    else if (home && *home)
        w = snprintf(out, n, "%s/.cache/cleardit/fmnist_classifier.safetensors", home);
    else
        return -1;
    return w > 0 && (size_t)w < n ? 0 : -1;
}

static void on_epoch(void *user, int e, int epochs, double loss, double acc, double el) {
    if (*(const int *)user) return; /* quiet */
    fprintf(stderr, "cleardit eval: classifier epoch %d/%d  loss %.4f  train accuracy %.2f%%  %.1f s\n", e, epochs,
            loss, 100.0 * acc, el);
}

/* The classifier: --classifier, else the cache (reused when it loads), else trained on the train
 * split and saved to the cache. Prints the error; returns a CLI code. */
static int get_classifier(cd_ctx *ctx, const char *given, const char *cache, const char *data, int quiet,
                          cd_classifier **out, int *trained, double *train_s) {
    *trained = 0;
    *train_s = NAN;
    if (given) {
        if (cd_clf_load(ctx, given, out) != CD_OK) {
            cli_error(CMD, "%s", cd_ctx_error(ctx));
            return CLI_BAD_INPUT;
        }
        return CLI_OK;
    }
    if (access(cache, F_OK) == 0) {
        if (cd_clf_load(ctx, cache, out) == CD_OK) {
            if (!quiet) fprintf(stderr, "cleardit eval: using the cached classifier %s\n", cache);
            return CLI_OK;
        }
        if (!quiet)
            fprintf(stderr, "cleardit eval: cannot use the cached classifier (%s); training a new one\n",
                    cd_ctx_error(ctx));
    }
    cd_dataset tr = {0};
    cd_status st = cd_fmnist_load(ctx, data, "train", &tr);
    if (st != CD_OK) {
        cli_error(CMD, "no classifier to train: %s", cd_ctx_error(ctx));
        return st == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
    }
    cd_clf_train_params p = cd_clf_train_defaults();
    if (tr.n < (uint32_t)p.batch) p.batch = (int32_t)tr.n;
    p.progress = on_epoch;
    p.user = &quiet;
    if (!quiet)
        fprintf(stderr, "cleardit eval: training the classifier on %u images (%d epochs) ...\n", tr.n, p.epochs);
    const double t0 = cd_now();
    st = cd_clf_train(ctx, &tr, &p, out);
    *train_s = cd_now() - t0;
    cd_dataset_free(&tr);
    if (st != CD_OK) {
        cli_error(CMD, "training the classifier: %s", cd_ctx_error(ctx));
        return st == CD_ERR_INVALID_ARG ? CLI_BAD_INPUT : CLI_RUNTIME;
    }
    *trained = 1;
    /* its t10k accuracy goes into the file, for runs without the dataset */
    char accs[32] = "", secs[32];
    cd_dataset te = {0};
    double acc = 0;
    if (cd_fmnist_load(ctx, data, "t10k", &te) == CD_OK && cd_clf_accuracy(ctx, *out, &te, &acc) == CD_OK)
        snprintf(accs, sizeof accs, "%.6f", acc);
    cd_dataset_free(&te);
    snprintf(secs, sizeof secs, "%.3f", *train_s);
    const char *meta[] = {"test_accuracy", accs, "train_seconds", secs, "data", data ? data : CD_FMNIST_DIR};
    if (make_dirs(cache, 0) != 0 ||
        cd_clf_save(ctx, *out, cache, accs[0] ? meta : meta + 2, accs[0] ? 3 : 2) != CD_OK) {
        cli_error(CMD, "cannot cache the classifier at %s: %s", cache,
                  *cd_ctx_error(ctx) ? cd_ctx_error(ctx) : strerror(errno));
        return CLI_RUNTIME;
    }
    if (!quiet) fprintf(stderr, "cleardit eval: classifier trained in %.1f s, cached at %s\n", *train_s, cache);
    return CLI_OK;
}

/* Samples every (prompt, seed) of one variant into v->img. */
/* One sample of variant v: prompt k of the table (one-hot, as `cleardit generate --prompt`). */
static cd_gen_params eval_params(const variant *v, int k, int32_t w, int32_t h, int64_t steps) {
    cd_gen_params gp = cd_gen_params_default();
    gp.prompt_index = k;
    gp.guidance = 0; /* as the swap and student were always sampled (pixel models have no guidance) */
    gp.width = w;
    gp.height = h;
    gp.steps = (int32_t)steps;
    gp.radius = v->radius;
    gp.down = v->down;
    return gp;
}

/* Samples every (prompt, seed) of one variant into v->img. */
static int run_variant(cd_ctx *ctx, variant *v, int vi, const prompt_table *pt, int64_t per_class, int64_t seed0,
                       int64_t steps, int32_t w, int32_t h, int quiet) {
    const size_t hw = (size_t)w * h, total = (size_t)pt->n * (size_t)per_class;
    uint8_t *rgb = malloc(3 * hw);
    int rc = CLI_OK;
    if (!rgb) {
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    const int tty = isatty(2);
    const double t0 = cd_now();
    size_t done_n = 0;
    for (int k = 0; k < pt->n; k++) {
        for (int64_t s = 0; s < per_class; s++, done_n++) {
            cd_gen_params gp = eval_params(v, k, w, h, steps);
            gp.seed = (uint64_t)(seed0 + s);
            const cd_status st = cd_pipeline_generate(ctx, v->pl, &gp, rgb);
            if (st != CD_OK) {
                if (tty && !quiet) fputc('\n', stderr);
                cli_error(CMD, "%s, prompt '%s', seed %lld: %s", k_vname[vi], pt->names[k], (long long)(seed0 + s),
                          cd_ctx_error(ctx));
                rc = (st == CD_ERR_INVALID_ARG || st == CD_ERR_SHAPE) ? CLI_BAD_INPUT : CLI_RUNTIME;
                goto done;
            }
            uint8_t *g = v->img + (size_t)(k * per_class + s) * hw;
            for (size_t i = 0; i < hw; i++) g[i] = rgb[3 * i]; /* grey: R = G = B */
            if (!quiet && (tty || (done_n + 1) % (total / 10 ? total / 10 : 1) == 0 || done_n + 1 == total)) {
                fprintf(stderr, "%scleardit eval: %s %zu/%zu images  %.1f s%s", tty ? "\r" : "", k_vname[vi],
                        done_n + 1, total, cd_now() - t0, tty ? "  " : "\n");
                fflush(stderr);
            }
        }
    }
    if (tty && !quiet) fputc('\n', stderr);
    v->seconds = cd_now() - t0;
done:
    free(rgb);
    return rc;
}

/* rows = prompts, columns = the first min(8, per_class) seeds, each sample x4 nearest. */
static int write_grid(cd_ctx *ctx, const char *dir, const variant *v, int vi, int prompts, int64_t per_class, int32_t w,
                      int32_t h) {
    const int cols = per_class < GRID_COLS ? (int)per_class : GRID_COLS;
    const size_t gw = (size_t)cols * w * GRID_SCALE, gh = (size_t)prompts * h * GRID_SCALE;
    uint8_t *rgb = malloc(gw * gh * 3);
    if (!rgb) {
        cli_error(CMD, "out of memory for the %s grid", k_vname[vi]);
        return CLI_RUNTIME;
    }
    for (size_t y = 0; y < gh; y++)
        for (size_t x = 0; x < gw; x++) {
            const size_t k = y / ((size_t)h * GRID_SCALE), s = x / ((size_t)w * GRID_SCALE);
            const size_t py = (y / GRID_SCALE) % (size_t)h, px = (x / GRID_SCALE) % (size_t)w;
            const uint8_t g = v->img[(k * (size_t)per_class + s) * (size_t)w * h + py * (size_t)w + px];
            uint8_t *o = rgb + (y * gw + x) * 3;
            o[0] = o[1] = o[2] = g;
        }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.png", dir, k_vname[vi]);
    const char *text[] = {"Software", "cleardit " CLEARDIT_VERSION};
    const cd_status st = cd_png_write(ctx, path, rgb, (uint32_t)gw, (uint32_t)gh, text, 1);
    free(rgb);
    if (st != CD_OK) {
        cli_error(CMD, "%s", cd_ctx_error(ctx));
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *jstat(const cd_metric_stat *s, int identical) {
    json_t *o = json_object();
    json_object_set_new(o, "mean", jnum(s->mean));
    json_object_set_new(o, "std", jnum(s->std));
    json_object_set_new(o, "min", jnum(s->min));
    json_object_set_new(o, "max", jnum(s->max));
    if (identical) json_object_set_new(o, "identical", json_integer((json_int_t)s->n_capped));
    return o;
}

static void attention_name(const variant *v, char *buf, size_t n) {
    if (!v->radius)
        snprintf(buf, n, "dense");
    else if (v->down)
        snprintf(buf, n, "clear r=%d down=%d", (int)v->radius, (int)v->down);
    else
        snprintf(buf, n, "clear r=%d", (int)v->radius);
}

static int load_error(cd_ctx *ctx, cd_status st) {
    cli_error(CMD, "%s", cd_ctx_error(ctx));
    return st == CD_ERR_OOM ? CLI_RUNTIME : CLI_BAD_INPUT;
}
/* The flags, and the classifier cache path they resolve to. */
typedef struct {
    const char *model_p, *clear_p, *clf_p, *clf_out, *data, *grid_dir;
    int64_t radius, down, per_class, steps, seed, threads;
    int json, quiet, help;
    char cache[4096];
} eval_args;

/* Everything one run measures. */
typedef struct {
    variant v[V_COUNT];
    prompt_table pt;
    int32_t w, h;
    size_t nimg;
    cd_classifier *clf;
    int trained;
    double clf_train_s, test_acc, total_s;
    uint32_t test_n;
    cd_attn_desc dd;
    double f_dense, f_student, f_swap;
} eval_run;

/* Parses and checks the flags (files readable, the cache and grid paths usable). */
static int parse_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->per_class = 20;
    a->steps = 32;
    cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &a->model_p, 0, 0, 0, 0, 0},
        {"--clear-weights", CLI_OPT_STRING, &a->clear_p, 0, 0, 0, 0, 0},
        {"--radius", CLI_OPT_INT, &a->radius, 1, 1 << 20, 0, 0, 0},
        {"--down", CLI_OPT_INT, &a->down, 2, 64, 0, 0, 0},
        {"--per-class", CLI_OPT_INT, &a->per_class, 1, 100000, 0, 0, 0},
        {"--steps", CLI_OPT_INT, &a->steps, 1, 10000, 0, 0, 0},
        {"--seed", CLI_OPT_INT, &a->seed, 0, INT64_MAX / 2, 0, 0, 0},
        {"--classifier", CLI_OPT_STRING, &a->clf_p, 0, 0, 0, 0, 0},
        {"--classifier-out", CLI_OPT_STRING, &a->clf_out, 0, 0, 0, 0, 0},
        {"--data", CLI_OPT_STRING, &a->data, 0, 0, 0, 0, 0},
        {"--grid-dir", CLI_OPT_STRING, &a->grid_dir, 0, 0, 0, 0, 0},
        {"--json", CLI_OPT_SWITCH, &a->json, 0, 0, 0, 0, 0},
        {"--threads", CLI_OPT_INT, &a->threads, 1, 4096, 0, 0, 0},
        {"--quiet", CLI_OPT_SWITCH, &a->quiet, 0, 0, 0, 0, 0},
    };
    if (cli_parse_flags(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], &a->help)) return CLI_BAD_INPUT;
    if (a->help) return CLI_OK;
    if (!a->clear_p || !a->radius) {
        cli_error(CMD, "--clear-weights and --radius (>= 1) are required (see --help)");
        return CLI_BAD_INPUT;
    }
    if (a->clf_p && a->clf_out) {
        cli_error(CMD, "--classifier and --classifier-out exclude each other");
        return CLI_BAD_INPUT;
    }
    const char *files[] = {a->model_p, a->clear_p, a->clf_p};
    for (int i = 0; i < 3; i++)
        if (files[i] && access(files[i], R_OK) != 0) {
            cli_error(CMD, "cannot read '%s': %s", files[i], strerror(errno));
            return CLI_BAD_INPUT;
        }
    if (!a->clf_p) {
        if (a->clf_out)
            snprintf(a->cache, sizeof a->cache, "%s", a->clf_out);
        else if (default_cache(a->cache, sizeof a->cache)) {
            cli_error(CMD, "neither HOME nor XDG_CACHE_HOME is set: pass --classifier or --classifier-out");
            return CLI_BAD_INPUT;
        }
        struct stat cs;
        if (stat(a->cache, &cs) == 0 && S_ISDIR(cs.st_mode)) {
            cli_error(CMD, "--classifier-out %s is a directory", a->cache);
            return CLI_BAD_INPUT;
        }
    }
    if (a->grid_dir && make_dirs(a->grid_dir, 1) != 0) {
        cli_error(CMD, "--grid-dir %s: not a directory and cannot be created", a->grid_dir);
        return CLI_BAD_INPUT;
    }
    if (!a->model_p && !cd_embedded_available(CD_EMBEDDED_MODEL)) {
        cli_error(CMD, "this build has no default model (models/fmnist.safetensors was missing at build time): pass "
                       "--model");
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

/* The teacher and student pipelines (the swap shares the teacher's), the prompt table and image
 * size, the image buffers, and a check of each variant's settings before anything runs. */
static int open_variants(cd_ctx *ctx, const eval_args *a, eval_run *e) {
    const char *model_name = a->model_p ? a->model_p : "the default model";
    cd_pipeline_params pp = cd_pipeline_params_default();
    pp.model = a->model_p;
    cd_status st;
    variant *v = e->v;
    if ((st = cd_pipeline_open(ctx, &pp, &v[V_TEACHER].pl)) != CD_OK) return load_error(ctx, st);
    const cd_flux_config *c = cd_flux_model_config(cd_pipeline_model(v[V_TEACHER].pl));
    if (!cd_pipeline_prompt_table(v[V_TEACHER].pl) || !cd_pipeline_native_size(v[V_TEACHER].pl, &e->w, &e->h)) {
        cli_error(CMD,
                  "%s has no built-in prompt table (metadata cleardit_prompts and cleardit_image): eval needs a "
                  "pixel-space model from `cleardit train`",
                  model_name);
        return CLI_BAD_INPUT;
    }
    if (prompts_get(v[V_TEACHER].pl, &e->pt) || e->pt.n > c->context_dim || e->pt.n > c->pooled_dim) {
        cli_error(CMD, "%s: bad prompt table '%s'", model_name, cd_pipeline_prompt_table(v[V_TEACHER].pl));
        return CLI_BAD_INPUT;
    }
    const int32_t w = e->w, h = e->h;
    if (w < 2 || h < 2 || w % 2 || h % 2 || w > 4096 || h > 4096) {
        cli_error(CMD, "%s: bad image size '%dx%d' in cleardit_image", model_name, (int)w, (int)h);
        return CLI_BAD_INPUT;
    }
    if (w < 2 * CD_SSIM_RADIUS + 1 || h < 2 * CD_SSIM_RADIUS + 1) {
        cli_error(CMD, "%s: images of %dx%d are too small for SSIM (at least 11x11)", model_name, w, h);
        return CLI_BAD_INPUT;
    }
    pp.clear_weights = a->clear_p;
    if ((st = cd_pipeline_open(ctx, &pp, &v[V_STUDENT].pl)) != CD_OK) return load_error(ctx, st);
    const int32_t have = cd_flux_model_clear_down(cd_pipeline_model(v[V_STUDENT].pl));
    if (a->down && have != a->down) {
        cli_error(CMD, "--down %lld needs CLEAR weights with spatial_weight of side %lld (%s has %s)",
                  (long long)a->down, (long long)a->down, a->clear_p, have ? "another side" : "none");
        return CLI_BAD_INPUT;
    }
    v[V_TEACHER].radius = 0;
    v[V_STUDENT].radius = v[V_SWAP].radius = (int32_t)a->radius;
    v[V_STUDENT].down = (int32_t)a->down;
    v[V_SWAP].pl = v[V_TEACHER].pl;
    const size_t hw = (size_t)w * h;
    e->nimg = (size_t)e->pt.n * (size_t)a->per_class;
    for (int i = 0; i < V_COUNT; i++) {
        v[i].acc = NAN;
        v[i].img = malloc(e->nimg * hw);
        v[i].pred = malloc(e->nimg * sizeof(int32_t));
        if (!v[i].img || !v[i].pred) {
            cli_error(CMD, "out of memory for %zu images", e->nimg);
            return CLI_RUNTIME;
        }
        const cd_gen_params gp = eval_params(&v[i], 0, w, h, a->steps);
        if (cd_pipeline_check(ctx, v[i].pl, &gp) != CD_OK) {
            cli_error(CMD, "%s: %s", k_vname[i], cd_ctx_error(ctx));
            return CLI_BAD_INPUT;
        }
    }
    return CLI_OK;
}

/* The classifier (before sampling: a missing dataset fails fast) and its t10k accuracy. */
static int classifier_setup(cd_ctx *ctx, const eval_args *a, eval_run *e) {
    int rc = get_classifier(ctx, a->clf_p, a->cache, a->data, a->quiet, &e->clf, &e->trained, &e->clf_train_s);
    if (rc) return rc;
    cd_dataset te = {0};
    if (cd_fmnist_load(ctx, a->data, "t10k", &te) == CD_OK) {
        if (cd_clf_accuracy(ctx, e->clf, &te, &e->test_acc) == CD_OK)
            e->test_n = te.n;
        else
            e->test_acc = NAN;
    }
    cd_dataset_free(&te);
    if (!e->test_n) { /* recorded at training time */
        cd_st_file *f = NULL;
        const char *path = a->clf_p ? a->clf_p : a->cache;
        if (cd_st_open(ctx, path, &f) == CD_OK && cd_st_meta(f, "test_accuracy"))
            e->test_acc = strtod(cd_st_meta(f, "test_accuracy"), NULL);
        cd_st_close(f);
    }
    return CLI_OK;
}

/* PSNR / SSIM against the teacher, class accuracy, attention FLOPs of one layer. */
static int measure(cd_ctx *ctx, const eval_args *a, eval_run *e) {
    variant *v = e->v;
    const size_t nimg = e->nimg, hw = (size_t)e->w * e->h;
    int rc = CLI_OK;
    double *ps = malloc(nimg * sizeof(double)), *ss = malloc(nimg * sizeof(double));
    if (!ps || !ss) {
        free(ps);
        free(ss);
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    for (int i = V_STUDENT; i < V_COUNT && !rc; i++) {
        for (size_t j = 0; j < nimg && !rc; j++) {
            const uint8_t *x = v[V_TEACHER].img + j * hw, *y = v[i].img + j * hw;
            ps[j] = cd_psnr_u8(x, y, hw);
            if (cd_ssim_u8(ctx, x, y, e->w, e->h, &ss[j]) != CD_OK) {
                cli_error(CMD, "%s", cd_ctx_error(ctx));
                rc = CLI_RUNTIME;
            }
        }
        cd_metric_stats(ps, nimg, CD_PSNR_CAP, &v[i].psnr);
        cd_metric_stats(ss, nimg, INFINITY, &v[i].ssim);
    }
    free(ps);
    free(ss);
    if (rc) return rc;
    /* class accuracy: label = the prompt's Fashion-MNIST class */
    const cd_classifier *clf = e->clf;
    int labels[MAX_PROMPTS], classifiable = clf->rows == e->h && clf->cols == e->w;
    for (int k = 0; k < e->pt.n; k++) {
        labels[k] = cd_fmnist_class_of(e->pt.names[k]);
        if (labels[k] < 0 || labels[k] >= clf->classes) classifiable = 0;
    }
    if (!classifiable && !a->quiet)
        fprintf(stderr,
                "cleardit eval: class accuracy not measured: the prompts are not all Fashion-MNIST classes or "
                "the classifier takes %dx%d images\n",
                (int)clf->cols, (int)clf->rows);
    for (int i = 0; i < V_COUNT && classifiable; i++) {
        if (cd_clf_predict_u8(ctx, clf, v[i].img, nimg, v[i].pred) != CD_OK) {
            cli_error(CMD, "%s", cd_ctx_error(ctx));
            return CLI_RUNTIME;
        }
        size_t all = 0;
        for (int k = 0; k < e->pt.n; k++) {
            size_t ok = 0;
            for (int64_t s = 0; s < a->per_class; s++) ok += v[i].pred[k * a->per_class + s] == labels[k];
            v[i].class_acc[k] = (double)ok / (double)a->per_class;
            all += ok;
        }
        v[i].acc = (double)all / (double)nimg;
    }
    /* attention FLOPs of one layer: the model's heads, its token grid + 1 text token */
    const cd_flux_config *c = cd_flux_model_config(cd_pipeline_model(v[V_TEACHER].pl));
    cd_attn_desc dd = {c->heads, c->head_dim, 1, e->h / 2, e->w / 2, 0, 0, 0}, sd = dd, wd = dd;
    sd.radius = wd.radius = (int32_t)a->radius;
    sd.down = (int32_t)a->down;
    e->dd = dd;
    e->f_dense = cd_attn_flops(&dd);
    e->f_student = cd_attn_flops(&sd);
    e->f_swap = cd_attn_flops(&wd);
    return CLI_OK;
}

static int report_json(const eval_args *a, const eval_run *e, char att[V_COUNT][64]) {
    const variant *v = e->v;
    json_t *o = json_object(), *pr = json_array();
    json_object_set_new(o, "model", json_string(a->model_p ? a->model_p : "(default)"));
    json_object_set_new(o, "clear_weights", json_string(a->clear_p));
    json_object_set_new(o, "radius", json_integer(a->radius));
    json_object_set_new(o, "down", json_integer(a->down));
    json_object_set_new(o, "steps", json_integer(a->steps));
    json_object_set_new(o, "seed", json_integer(a->seed));
    json_object_set_new(o, "per_class", json_integer(a->per_class));
    for (int k = 0; k < e->pt.n; k++) json_array_append_new(pr, json_string(e->pt.names[k]));
    json_object_set_new(o, "prompts", pr);
    json_object_set_new(o, "width", json_integer(e->w));
    json_object_set_new(o, "height", json_integer(e->h));
    json_object_set_new(o, "images", json_integer((json_int_t)e->nimg));
    json_object_set_new(o, "psnr_cap_db", json_real(CD_PSNR_CAP));
    for (int i = 0; i < V_COUNT; i++) {
        json_t *vo = json_object(), *pca = json_array();
        json_object_set_new(vo, "attention", json_string(att[i]));
        json_object_set_new(vo, "accuracy", jnum(v[i].acc));
        for (int k = 0; k < e->pt.n; k++)
            json_array_append_new(pca, isfinite(v[i].acc) ? json_real(v[i].class_acc[k]) : json_null());
        json_object_set_new(vo, "per_class_accuracy", pca);
        json_object_set_new(vo, "seconds", json_real(v[i].seconds));
        if (i != V_TEACHER) {
            json_object_set_new(vo, "psnr", jstat(&v[i].psnr, 1));
            json_object_set_new(vo, "ssim", jstat(&v[i].ssim, 0));
        }
        json_object_set_new(o, k_vname[i], vo);
    }
    json_t *co = json_object();
    json_object_set_new(co, "path", json_string(a->clf_p ? a->clf_p : a->cache));
    json_object_set_new(co, "trained", json_boolean(e->trained));
    json_object_set_new(co, "train_seconds", jnum(e->clf_train_s));
    json_object_set_new(co, "test_accuracy", jnum(e->test_acc));
    json_object_set_new(co, "test_images", json_integer(e->test_n));
    json_object_set_new(o, "classifier", co);
    json_t *fo = json_object();
    json_object_set_new(fo, "grid_h", json_integer(e->dd.grid_h));
    json_object_set_new(fo, "grid_w", json_integer(e->dd.grid_w));
    json_object_set_new(fo, "text_len", json_integer(e->dd.text_len));
    json_object_set_new(fo, "heads", json_integer(e->dd.heads));
    json_object_set_new(fo, "head_dim", json_integer(e->dd.head_dim));
    json_object_set_new(fo, "dense", json_real(e->f_dense));
    json_object_set_new(fo, "student", json_real(e->f_student));
    json_object_set_new(fo, "swap", json_real(e->f_swap));
    json_object_set_new(fo, "student_ratio", json_real(e->f_student / e->f_dense));
    json_object_set_new(fo, "swap_ratio", json_real(e->f_swap / e->f_dense));
    json_object_set_new(o, "attention_flops", fo);
    json_object_set_new(o, "seconds_total", json_real(e->total_s));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!s) {
        cli_error(CMD, "out of memory");
        return CLI_RUNTIME;
    }
    printf("%s\n", s);
    free(s);
    return CLI_OK;
}

static void report_text(const eval_args *a, const eval_run *e, char att[V_COUNT][64]) {
    const variant *v = e->v;
    printf("cleardit eval: %s vs CLEAR weights %s, radius %lld\n", a->model_p ? a->model_p : "the default model",
           a->clear_p, (long long)a->radius);
    if (a->down) printf("  student pooled keys: down %lld (the swap has none)\n", (long long)a->down);
    printf("  %d prompts x %lld seeds (%lld..%lld), %lld steps, %dx%d: %zu images per variant\n\n", e->pt.n,
           (long long)a->per_class, (long long)a->seed, (long long)(a->seed + a->per_class - 1), (long long)a->steps,
           e->w, e->h, e->nimg);
    printf("  %-8s %-20s %-22s %-20s %-9s %8s\n", "variant", "attention", "PSNR dB (mean +- std)", "SSIM (mean +- std)",
           "accuracy", "seconds");
    for (int i = 0; i < V_COUNT; i++) {
        char p[48] = "-", s[48] = "-", acc[16] = "-";
        if (i != V_TEACHER) {
            snprintf(p, sizeof p, "%.2f +- %.2f", v[i].psnr.mean, v[i].psnr.std);
            snprintf(s, sizeof s, "%.4f +- %.4f", v[i].ssim.mean, v[i].ssim.std);
        }
        if (isfinite(v[i].acc)) snprintf(acc, sizeof acc, "%.1f%%", 100.0 * v[i].acc);
        printf("  %-8s %-20s %-22s %-20s %-9s %8.1f\n", k_vname[i], att[i], p, s, acc, v[i].seconds);
    }
    for (int i = V_STUDENT; i < V_COUNT; i++)
        if (v[i].psnr.n_capped)
            printf("  (%s: %zu image(s) identical to the teacher's, counted as %.0f dB)\n", k_vname[i],
                   v[i].psnr.n_capped, CD_PSNR_CAP);
    printf("\nclassifier: %s (%s", a->clf_p ? a->clf_p : a->cache, e->trained ? "trained now" : "loaded");
    if (isfinite(e->test_acc))
        printf("; test accuracy %.2f%%%s", 100.0 * e->test_acc, e->test_n ? " on t10k" : ", recorded");
    printf(")\n");
    printf("attention FLOPs per layer (%dx%d grid + 1 text token, %d heads x %d): dense %.4g, student %.4g "
           "(%.1f%%), swap %.4g (%.1f%%)\n",
           e->dd.grid_h, e->dd.grid_w, e->dd.heads, e->dd.head_dim, e->f_dense, e->f_student,
           100.0 * e->f_student / e->f_dense, e->f_swap, 100.0 * e->f_swap / e->f_dense);
    printf("wall time: %.1f s total\n", e->total_s);
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(k_usage, stdout);
        return CLI_OK;
    }
    const double t_all = cd_now();
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = (int)a.threads;
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) {
        cli_error(CMD, "cannot create a context");
        return CLI_RUNTIME;
    }
    eval_run e;
    memset(&e, 0, sizeof e);
    e.clf_train_s = e.test_acc = NAN;
    if ((rc = open_variants(ctx, &a, &e)) || (rc = classifier_setup(ctx, &a, &e))) goto done;
    for (int i = 0; i < V_COUNT; i++) /* sampling */
        if ((rc = run_variant(ctx, &e.v[i], i, &e.pt, a.per_class, a.seed, a.steps, e.w, e.h, a.quiet))) goto done;
    if ((rc = measure(ctx, &a, &e))) goto done;
    for (int i = 0; i < V_COUNT && a.grid_dir; i++)
        if ((rc = write_grid(ctx, a.grid_dir, &e.v[i], i, e.pt.n, a.per_class, e.w, e.h))) goto done;
    e.total_s = cd_now() - t_all;
    char att[V_COUNT][64];
    for (int i = 0; i < V_COUNT; i++) attention_name(&e.v[i], att[i], sizeof att[i]);
    if (a.json)
        rc = report_json(&a, &e, att);
    else
        report_text(&a, &e, att);
    if (!rc && a.grid_dir && !a.quiet)
        fprintf(stderr, "cleardit eval: grids in %s (teacher.png, student.png, swap.png)\n", a.grid_dir);
done:
    for (int i = 0; i < V_COUNT; i++) {
        free(e.v[i].img);
        free(e.v[i].pred);
    }
    cd_pipeline_free(e.v[V_TEACHER].pl);
    cd_pipeline_free(e.v[V_STUDENT].pl);
    cd_clf_free(e.clf);
    prompts_free(&e.pt);
    cd_ctx_free(ctx);
    return rc;
}
