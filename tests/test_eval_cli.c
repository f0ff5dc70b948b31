/* test_eval_cli.c — `cleardit eval` end to end on a tiny setup made here: a synthetic
 * Fashion-MNIST-format dataset (gzip IDX train and t10k splits of 10 easy classes), a model
 * trained on it for a few steps (`cleardit train --data`), CLEAR weights distilled from it
 * (`cleardit distill`), then eval with --per-class 1 --steps 2: the JSON fields exist and are in
 * range, the classifier is trained and cached where --classifier-out says and reused with
 * --classifier, the grids are PNGs of 10 rows x 1 column of 112x112 cells. Bad input (no radius,
 * radius 0, a missing file, a model without a prompt table, a bad classifier, no dataset, --down
 * without spatial weights) is one error line and exit 2. A few seconds. */
#include "test.h"
#include "test_idx.h"
#include "test_files.h"
#include "test_spawn.h"
#include "cleardit.h"

#include <jansson.h>
#include <math.h>

#define NTRAIN 60
#define NTEST 30

/* Split `split` of n images: class i % 10 is a bright 6x6 block at its own place, with noise. */
static int write_split(const char *dir, const char *split, uint32_t n, uint64_t seed) {
    uint8_t *img = malloc((size_t)n * 784), lab[NTRAIN];
    if (!img || n > NTRAIN) {
        free(img);
        return 0;
    }
    test_rng r = test_rng_seed(seed);
    for (uint32_t i = 0; i < n; i++) {
        const int c = (int)(i % 10), y0 = 4 + 6 * (c / 4), x0 = 2 + 6 * (c % 4);
        lab[i] = (uint8_t)c;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                const int v = (y >= y0 && y < y0 + 6 && x >= x0 && x < x0 + 6 ? 210 : 30) + (int)(30 * test_rng_f(&r));
                img[(i * 28 + y) * 28 + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    }
    const int ok = write_idx_split(dir, split, img, lab, n);
    free(img);
    return ok;
}

/* A copy of the model with its RoPE metadata only (so without the prompt table). */
static int strip_meta(const char *in, const char *out) {
    cd_st_file *f = NULL;
    if (cd_st_open(NULL, in, &f) != CD_OK) return 0;
    const size_t n = cd_st_count(f);
    cd_st_out *o = calloc(n, sizeof *o);
    int ok = o != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const cd_st_tensor *t = cd_st_at(f, i);
        o[i].name = t->name;
        o[i].dtype = t->dtype;
        o[i].ndim = t->ndim;
        memcpy(o[i].shape, t->shape, sizeof o[i].shape);
        o[i].data = t->data;
    }
    const char *meta[4];
    size_t nm = 0;
    static const char *const keep[2] = {"rope_axes", "rope_theta"};
    for (int i = 0; i < 2; i++)
        if (cd_st_meta(f, keep[i])) {
            meta[2 * nm] = keep[i];
            meta[2 * nm + 1] = cd_st_meta(f, keep[i]);
            nm++;
        }
    ok = ok && cd_st_write(NULL, out, o, n, meta, nm) == CD_OK;
    free(o);
    cd_st_close(f);
    return ok;
}

static double num(json_t *o, const char *path) { /* "a.b.c"; NAN if absent or not a number */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    for (char *s = strtok(buf, "."); s && cur; s = strtok(NULL, ".")) cur = json_object_get(cur, s);
    return cur && json_is_number(cur) ? json_number_value(cur) : NAN;
}

static int in_range(double x, double lo, double hi) { return x >= lo && x <= hi; }

TEST(eval_cli_end_to_end) {
    char dir[64];
    CHECK(tmp_dir_tag(dir, sizeof dir, "eval"), "mkdtemp");
    char model[128], clear[128], clf[128], grids[128], bare[128], nodata[128];
    snprintf(model, sizeof model, "%s/m.safetensors", dir);
    snprintf(clear, sizeof clear, "%s/c.safetensors", dir);
    snprintf(clf, sizeof clf, "%s/cache/clf.safetensors", dir);
    snprintf(grids, sizeof grids, "%s/grids", dir);
    snprintf(bare, sizeof bare, "%s/bare.safetensors", dir);
    snprintf(nodata, sizeof nodata, "%s/nodata", dir);
    static cli_run r;
    json_t *j = NULL;
    if (!write_split(dir, "train", NTRAIN, 11) || !write_split(dir, "t10k", NTEST, 12)) {
        EXPECT(0, "write the dataset");
        goto done;
    }
    RUN(&r, "train", "--data", dir, "-o", model, "--steps", "3", "--hidden", "32", "--heads", "2", "--depth", "1",
        "--single", "1", "--batch", "4", "--workers", "1", "--save-every", "0", "--quiet");
    if (r.code != 0) {
        EXPECT(0, "train: exit %d: %s", r.code, r.err);
        goto done;
    }
    RUN(&r, "distill", "--model", model, "--radius", "3", "-o", clear, "--samples", "8", "--sample-steps", "2",
        "--steps", "2", "--batch", "4", "--workers", "1", "--save-every", "0", "--quiet");
    if (r.code != 0) {
        EXPECT(0, "distill: exit %d: %s", r.code, r.err);
        goto done;
    }
    RUN(&r, "eval", "--model", model, "--clear-weights", clear, "--radius", "3", "--per-class", "1", "--steps", "2",
        "--data", dir, "--classifier-out", clf, "--grid-dir", grids, "--json", "--quiet", "--threads", "1");
    if (r.code != 0) {
        EXPECT(0, "eval: exit %d: %s", r.code, r.err);
        goto done;
    }
    json_error_t je;
    j = json_loads(r.out, 0, &je);
    if (!j) {
        EXPECT(0, "eval --json is not JSON (%s): %.300s", je.text, r.out);
        goto done;
    }
    EXPECT(num(j, "radius") == 3 && num(j, "down") == 0 && num(j, "per_class") == 1 && num(j, "steps") == 2 &&
               num(j, "images") == 10 && num(j, "width") == 28 && num(j, "height") == 28,
           "settings echoed wrongly: %.400s", r.out);
    EXPECT(json_array_size(json_object_get(j, "prompts")) == 10, "prompts");
    static const char *const vars[3] = {"teacher", "student", "swap"};
    for (int i = 0; i < 3; i++) {
        char k[96];
        snprintf(k, sizeof k, "%s.accuracy", vars[i]);
        EXPECT(in_range(num(j, k), 0, 1), "%s = %g", k, num(j, k));
        snprintf(k, sizeof k, "%s.seconds", vars[i]);
        EXPECT(in_range(num(j, k), 0, 60), "%s = %g", k, num(j, k));
        json_t *pca = json_object_get(json_object_get(j, vars[i]), "per_class_accuracy");
        EXPECT(json_array_size(pca) == 10, "%s per_class_accuracy", vars[i]);
        if (!i) continue;
        snprintf(k, sizeof k, "%s.psnr.mean", vars[i]);
        EXPECT(in_range(num(j, k), 0, 100), "%s = %g", k, num(j, k));
        snprintf(k, sizeof k, "%s.psnr.std", vars[i]);
        EXPECT(in_range(num(j, k), 0, 100), "%s = %g", k, num(j, k));
        snprintf(k, sizeof k, "%s.psnr.identical", vars[i]);
        EXPECT(in_range(num(j, k), 0, 10), "%s = %g", k, num(j, k));
        snprintf(k, sizeof k, "%s.ssim.mean", vars[i]);
        EXPECT(in_range(num(j, k), -1, 1), "%s = %g", k, num(j, k));
        snprintf(k, sizeof k, "%s.ssim.std", vars[i]);
        EXPECT(in_range(num(j, k), 0, 1), "%s = %g", k, num(j, k));
    }
    EXPECT(json_is_true(json_object_get(json_object_get(j, "classifier"), "trained")), "classifier.trained");
    EXPECT(in_range(num(j, "classifier.test_accuracy"), 0, 1) && num(j, "classifier.test_images") == NTEST,
           "classifier test accuracy %g on %g images", num(j, "classifier.test_accuracy"),
           num(j, "classifier.test_images"));
    const double fd = num(j, "attention_flops.dense"), fs = num(j, "attention_flops.student");
    EXPECT(fd > fs && fs > 0 && num(j, "attention_flops.swap") == fs && num(j, "attention_flops.grid_h") == 14 &&
               num(j, "attention_flops.text_len") == 1 && in_range(num(j, "attention_flops.student_ratio"), 0.01, 0.99),
           "attention FLOPs dense %g student %g", fd, fs);
    EXPECT(in_range(num(j, "seconds_total"), 0, 120), "seconds_total");
    EXPECT(file_size(clf) > 0, "no classifier cached at %s", clf);
    for (int i = 0; i < 3; i++) {
        char p[192];
        snprintf(p, sizeof p, "%s/%s.png", grids, vars[i]);
        uint8_t *rgb = NULL;
        uint32_t w = 0, h = 0;
        EXPECT(cd_png_read(NULL, p, &rgb, &w, &h) == CD_OK && w == 112 && h == 1120, "%s: %ux%u", p, w, h);
        free(rgb);
    }
    /* the cached classifier is reused; the human report */
    RUN(&r, "eval", "--model", model, "--clear-weights", clear, "--radius", "3", "--per-class", "1", "--steps", "2",
        "--data", dir, "--classifier", clf, "--quiet", "--threads", "1");
    EXPECT(r.code == 0 && strstr(r.out, "PSNR") && strstr(r.out, "loaded") && strstr(r.out, "swap"),
           "eval with --classifier: exit %d: %s%s", r.code, r.out, r.err);

    /* bad input: one error line, exit 2 */
    RUN(&r, "eval", "--model", model, "--clear-weights", clear);
    EXPECT(r.code == 2 && one_error_line(r.err, "eval"), "no --radius: exit %d: %s", r.code, r.err);
    RUN(&r, "eval", "--model", model, "--clear-weights", clear, "--radius", "0");
    EXPECT(r.code == 2 && one_error_line(r.err, "eval"), "radius 0: exit %d: %s", r.code, r.err);
    RUN(&r, "eval", "--model", model, "--clear-weights", nodata, "--radius", "3");
    EXPECT(r.code == 2 && one_error_line(r.err, "eval") && strstr(r.err, nodata), "missing file: exit %d: %s", r.code,
           r.err);
    if (strip_meta(model, bare)) {
        RUN(&r, "eval", "--model", bare, "--clear-weights", clear, "--radius", "3", "--classifier", clf);
        EXPECT(r.code == 2 && one_error_line(r.err, "eval") && strstr(r.err, "prompt table"),
               "model without prompts: exit %d: %s", r.code, r.err);
    } else {
        EXPECT(0, "cannot write the model without metadata");
    }
    RUN(&r, "eval", "--model", model, "--clear-weights", clear, "--radius", "3", "--classifier", model);
    EXPECT(r.code == 2 && one_error_line(r.err, "eval") && strstr(r.err, "not a cleardit classifier"),
           "a model as the classifier: exit %d: %s", r.code, r.err);
    char other[160];
    snprintf(other, sizeof other, "%s/other.safetensors", dir);
    RUN(&r, "eval", "--model", model, "--clear-weights", clear, "--radius", "3", "--data", nodata, "--classifier-out",
        other);
    EXPECT(r.code == 2 && one_error_line(r.err, "eval"), "no dataset: exit %d: %s", r.code, r.err);
    RUN(&r, "eval", "--model", model, "--clear-weights", clear, "--radius", "3", "--down", "2", "--classifier", clf);
    EXPECT(r.code == 2 && one_error_line(r.err, "eval") && strstr(r.err, "spatial_weight"),
           "--down without spatial weights: exit %d: %s", r.code, r.err);
done:
    json_decref(j);
    tmp_rm(dir);
}
