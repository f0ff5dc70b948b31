/* test_train.c — `cleardit train` on a tiny synthetic Fashion-MNIST-format dataset (gzip IDX files
 * written here): the loss falls, a run killed (SIGKILL) part-way and resumed from its state file
 * ends with byte-identical model and state files and the same per-step losses as an uninterrupted
 * run, the trained model loads and generates, and bad input (no dataset, a state from another
 * configuration, a bad shape) is a clear error. */
#include "test.h"
#include "test_idx.h"
#include "cleardit.h"
#include "test_spawn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NIMG 40

/* Two easy classes: a bright square (class 7) or a bright bar (class 1), with noise. */
static int make_dataset(const char *dir) {
    static uint8_t img[NIMG * 28 * 28], lab[NIMG];
    test_rng r = test_rng_seed(99);
    for (int i = 0; i < NIMG; i++) {
        lab[i] = i % 2 ? 7 : 1;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                const int on = lab[i] == 7 ? (y > 8 && y < 20 && x > 8 && x < 20) : (x > 11 && x < 17);
                const int v = (on ? 220 : 20) + (int)(20 * test_rng_f(&r));
                img[(i * 28 + y) * 28 + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    }
    return write_idx_split(dir, "train", img, lab, NIMG);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[len] = 0;
    *n = (size_t)len;
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    const int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* The log line of `step` (without the trailing seconds column) from a CSV, last occurrence. */
static int log_line(const char *csv, int step, char *out, size_t n) {
    char key[32];
    snprintf(key, sizeof key, "%d,", step);
    const char *found = NULL;
    for (const char *s = csv; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
        if (!strncmp(s, key, strlen(key))) found = s;
    if (!found) return 0;
    const char *end = found;
    for (int commas = 0; *end && *end != '\n'; end++)
        if (*end == ',' && ++commas == 4) break;
    snprintf(out, n, "%.*s", (int)(end - found), found);
    return 1;
}

#define TINY                                                                                                         \
    "--hidden", "32", "--heads", "2", "--depth", "1", "--single", "1", "--batch", "4", "--workers", "2", "--warmup", \
        "2", "--lr", "2e-3", "--quiet"

TEST(train_resume_is_bit_identical) {
    char dir[] = "/tmp/cdtrainXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    CHECK(make_dataset(dir), "write the dataset");
    char ma[256], mb[256], sa[256], sb[256], la[256], lb[256];
    snprintf(ma, sizeof ma, "%s/a.safetensors", dir);
    snprintf(mb, sizeof mb, "%s/b.safetensors", dir);
    snprintf(sa, sizeof sa, "%s/a.state", dir);
    snprintf(sb, sizeof sb, "%s/b.state", dir);
    snprintf(la, sizeof la, "%s/a.csv", dir);
    snprintf(lb, sizeof lb, "%s/b.csv", dir);
    cli_run r;
    RUN(&r, "train", "--data", dir, "-o", ma, "--state", sa, "--steps", "8", "--save-every", "3", "--log", la, TINY);
    CHECK(r.code == 0, "uninterrupted run: exit %d: %s", r.code, r.err);
    /* killed right after step 4 (the last state is step 3's), then resumed */
    RUN(&r, "train", "--data", dir, "-o", mb, "--state", sb, "--steps", "8", "--save-every", "3", "--log", lb, TINY,
        "--test-kill-after", "4");
    CHECK(r.code == -9, "the run should die of SIGKILL (exit %d): %s", r.code, r.err);
    struct stat st;
    EXPECT(stat(mb, &st) != 0, "a killed run left a model file");
    RUN(&r, "train", "--data", dir, "-o", mb, "--state", sb, "--steps", "8", "--save-every", "3", "--log", lb, TINY,
        "--resume");
    CHECK(r.code == 0, "resumed run: exit %d: %s", r.code, r.err);
    EXPECT(same_file(ma, mb), "the resumed run's model differs from the uninterrupted run's");
    EXPECT(same_file(sa, sb), "the resumed run's state differs from the uninterrupted run's");
    size_t n;
    char *a = slurp(la, &n), *b = slurp(lb, &n);
    CHECK(a && b, "logs");
    for (int s = 1; s <= 8; s++) {
        char x[256], y[256];
        EXPECT(log_line(a, s, x, sizeof x) && log_line(b, s, y, sizeof y) && !strcmp(x, y), "step %d: '%s' vs '%s'", s,
               x, y);
    }
    /* the loss goes down on this easy data (first vs last step, both logged) */
    char f[256], l[256];
    if (log_line(a, 1, f, sizeof f) && log_line(a, 8, l, sizeof l))
        EXPECT(atof(strchr(l, ',') + 1) < atof(strchr(f, ',') + 1), "loss did not fall: %s -> %s", f, l);
    free(a);
    free(b);
    /* the model is a FLUX checkpoint: generate loads it (pixel space, no autoencoder) */
    char png[256];
    snprintf(png, sizeof png, "%s/g.png", dir);
    RUN(&r, "generate", "--model", ma, "--prompt", "sneaker", "--steps", "4", "--quiet", "-o", png);
    EXPECT(r.code == 0, "generate with the trained model: exit %d: %s", r.code, r.err);
    uint8_t *rgb = NULL;
    uint32_t w = 0, h = 0;
    if (r.code == 0) {
        EXPECT(cd_png_read(NULL, png, &rgb, &w, &h) == CD_OK && w == 28 && h == 28, "PNG %ux%u", w, h);
        free(rgb);
    }
    /* an unknown prompt lists the model's prompts */
    RUN(&r, "generate", "--model", ma, "--prompt", "unicorn", "-o", png);
    EXPECT(r.code == 2 && strstr(r.err, "unknown prompt 'unicorn'") && strstr(r.err, "t-shirt,trouser") &&
               one_error_line(r.err, "generate"),
           "unknown prompt: exit %d: %s", r.code, r.err);
    /* a state from another configuration */
    RUN(&r, "train", "--data", dir, "-o", mb, "--state", sb, "--steps", "9", "--log", lb, "--hidden", "48", "--heads",
        "2", "--depth", "1", "--single", "1", "--batch", "4", "--workers", "2", "--resume");
    EXPECT(r.code == 2 && strstr(r.err, "state was made with"), "mismatched resume: exit %d: %s", r.code, r.err);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    EXPECT(system(cmd) == 0, "cleanup");
}

TEST(train_bad_input) {
    cli_run r;
    RUN(&r, "train", "--data", "/nonexistent/fmnist", "-o", "/tmp/cd_never.safetensors", "--steps", "1");
    EXPECT(r.code == 2 && strstr(r.err, "dataset-fashion-mnist"), "missing dataset: exit %d: %s", r.code, r.err);
    EXPECT(one_error_line(r.err, "train"), "not one error line: %s", r.err);
    RUN(&r, "train", "-o", "/tmp/cd_never.safetensors", "--hidden", "30", "--heads", "4");
    EXPECT(r.code == 2 && strstr(r.err, "head size"), "bad shape: exit %d: %s", r.code, r.err);
    RUN(&r, "train", "-o", "/tmp/cd_never.safetensors", "--resume", "--state", "/nonexistent.state");
    EXPECT(r.code == 2 && strstr(r.err, "state file"), "missing state: exit %d: %s", r.code, r.err);
    RUN(&r, "train", "--steps", "5");
    EXPECT(r.code == 2 && strstr(r.err, "-o"), "no output: exit %d: %s", r.code, r.err);
    struct stat st;
    EXPECT(stat("/tmp/cd_never.safetensors", &st) != 0, "a failed run wrote a model");
}

/* Elements of the CLEAR file's tensors that differ from the same-named tensors of the teacher
 * (as f32), or -1 when a tensor is missing from the teacher or cannot be read. */
static long moved_elements(const char *clear_path, const char *teacher_path) {
    cd_st_file *c = NULL, *t = NULL;
    long moved = -1;
    if (cd_st_open(NULL, clear_path, &c) != CD_OK || cd_st_open(NULL, teacher_path, &t) != CD_OK) goto done;
    moved = 0;
    for (size_t i = 0; i < cd_st_count(c) && moved >= 0; i++) {
        const cd_st_tensor *a = cd_st_at(c, i), *b = cd_st_find(t, a->name);
        if (!b || cd_st_numel(a) != cd_st_numel(b)) {
            moved = -1;
            break;
        }
        float *x = malloc(cd_st_numel(a) * sizeof(float)), *y = malloc(cd_st_numel(a) * sizeof(float));
        if (x && y && cd_st_to_f32(NULL, a, x) == CD_OK && cd_st_to_f32(NULL, b, y) == CD_OK) {
            for (uint64_t j = 0; j < cd_st_numel(a); j++) moved += x[j] != y[j];
        } else {
            moved = -1;
        }
        free(x);
        free(y);
    }
done:
    cd_st_close(c);
    cd_st_close(t);
    return moved;
}

/* `cleardit distill` end to end on a tiny trained model: the CLEAR file holds exactly the trained
 * subset, its weights moved away from the teacher's (the optimizer ran), and it loads for
 * generation with CLEAR attention. (Whether 3 steps change the pixels of a 28x28 PNG depends on
 * the CPU's rounding paths, so the test asserts on the weights, which move on every CPU.) */
TEST(distill_cli) {
    char dir[] = "/tmp/cddistXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    CHECK(make_dataset(dir), "write the dataset");
    char m[256], c[256], c0[256], png1[256], png2[256], cmd[300];
    snprintf(m, sizeof m, "%s/m.safetensors", dir);
    snprintf(c, sizeof c, "%s/c.safetensors", dir);
    snprintf(c0, sizeof c0, "%s/c0.safetensors", dir);
    snprintf(png1, sizeof png1, "%s/s.png", dir);
    snprintf(png2, sizeof png2, "%s/w.png", dir);
    cli_run r;
    RUN(&r, "train", "--data", dir, "-o", m, "--steps", "4", TINY);
    CHECK(r.code == 0, "train: exit %d: %s", r.code, r.err);
    RUN(&r, "distill", "--model", m, "--radius", "2", "-o", c, "--samples", "6", "--sample-steps", "2", "--steps", "3",
        "--batch", "4", "--workers", "2", "--lr", "1e-2", "--quiet");
    CHECK(r.code == 0, "distill: exit %d: %s", r.code, r.err);
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, c, &f) == CD_OK, "the CLEAR file does not open");
    /* 1 double block: img to_q/k/v/out (w, b) = 8; 1 single block: to_q/k/v (w, b) = 6 */
    EXPECT(cd_st_count(f) == 14, "CLEAR file has %zu tensors, want 14", cd_st_count(f));
    EXPECT(cd_st_find(f, "transformer_blocks.0.attn.to_out.0.weight") &&
               cd_st_find(f, "single_transformer_blocks.0.attn.to_q.bias") &&
               !cd_st_find(f, "single_transformer_blocks.0.proj_out.weight"),
           "CLEAR file has the wrong tensors");
    cd_st_close(f);
    RUN(&r, "generate", "--model", m, "--clear-weights", c, "--radius", "2", "--prompt", "sneaker", "--steps", "3",
        "--quiet", "-o", png1);
    EXPECT(r.code == 0, "generate with the CLEAR file: exit %d: %s", r.code, r.err);
    RUN(&r, "generate", "--model", m, "--radius", "2", "--prompt", "sneaker", "--steps", "3", "--quiet", "-o", png2);
    EXPECT(r.code == 0, "generate with the plain swap: exit %d: %s", r.code, r.err);
    uint8_t *a = NULL, *b = NULL;
    uint32_t w = 0, h = 0, w2 = 0, h2 = 0;
    EXPECT(cd_png_read(NULL, png1, &a, &w, &h) == CD_OK && cd_png_read(NULL, png2, &b, &w2, &h2) == CD_OK && w == w2 &&
               h == h2 && w > 0,
           "the student's and the swap's images do not both read back at the same size");
    free(a);
    free(b);
    const long moved = moved_elements(c, m);
    EXPECT(moved > 0, "the distilled weights equal the teacher's (%ld elements moved)", moved);
    /* the flow-matching-only mode reuses the cached set */
    RUN(&r, "distill", "--model", m, "--radius", "2", "-o", c0, "--cache", "nonexistent-dir/x", "--quiet");
    EXPECT(r.code == 2, "distill with an unwritable cache: exit %d: %s", r.code, r.err);
    snprintf(cmd, sizeof cmd, "%s.set", c);
    RUN(&r, "distill", "--model", m, "--radius", "2", "-o", c0, "--cache", cmd, "--samples", "6", "--sample-steps", "2",
        "--steps", "2", "--batch", "4", "--workers", "2", "--no-distill-loss", "--quiet");
    EXPECT(r.code == 0, "distill --no-distill-loss: exit %d: %s", r.code, r.err);
    /* bad input */
    RUN(&r, "distill", "--model", m, "-o", c0);
    EXPECT(r.code == 2 && strstr(r.err, "--radius"), "no radius: exit %d: %s", r.code, r.err);
    RUN(&r, "distill", "--model", "tests/fixtures/generate/tiny_dev.safetensors", "--radius", "2", "-o", c0, "--quiet");
    EXPECT(r.code == 2 && strstr(r.err, "prompt table"), "teacher without prompts: exit %d: %s", r.code, r.err);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    EXPECT(system(cmd) == 0, "cleanup");
}

/* --freeze: frozen parameters get no optimizer moments (and so never move); freezing everything
 * is an error. */
TEST(train_freeze_patterns) {
    char dir[] = "/tmp/cdfrzXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    CHECK(make_dataset(dir), "write the dataset");
    char m[256], st[256], cmd[300];
    snprintf(m, sizeof m, "%s/m.safetensors", dir);
    snprintf(st, sizeof st, "%s/m.state", dir);
    cli_run r;
    RUN(&r, "train", "--data", dir, "-o", m, "--state", st, "--steps", "3", "--freeze", "x_embedder.*, *.norm_q.*",
        TINY);
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    cd_st_file *f = NULL;
    CHECK(cd_st_open(NULL, st, &f) == CD_OK, "state");
    const char *names[3] = {"adam_m.x_embedder.weight", "adam_m.single_transformer_blocks.0.attn.norm_q.weight",
                            "adam_m.context_embedder.weight"};
    for (int i = 0; i < 3; i++) {
        const cd_st_tensor *t = cd_st_find(f, names[i]);
        EXPECT(t, "no %s", names[i]);
        if (!t) continue;
        float *v = malloc(cd_st_numel(t) * sizeof(float));
        int nz = 0;
        if (v && cd_st_to_f32(NULL, t, v) == CD_OK)
            for (uint64_t j = 0; j < cd_st_numel(t); j++) nz += v[j] != 0.0f;
        EXPECT(i < 2 ? nz == 0 : nz > 0, "%s: %d non-zero moments", names[i], nz);
        free(v);
    }
    cd_st_close(f);
    RUN(&r, "train", "--data", dir, "-o", m, "--state", st, "--steps", "3", "--freeze", "*", TINY);
    EXPECT(r.code == 2 && strstr(r.err, "leaves no parameter"), "freeze all: exit %d: %s", r.code, r.err);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    EXPECT(system(cmd) == 0, "cleanup");
}
