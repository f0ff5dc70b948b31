/* test_generate.c — `cleardit generate` end to end on tiny random checkpoints (ckpt_gen): the
 * image is a pure function of the seed (repeatable, thread-count independent, seed-sensitive),
 * the PNG has the requested size and the parameter text chunk, CLEAR differs from dense,
 * image-to-image at strength 1 is text-to-image, --upscale-from makes the target size, and every
 * bad input exits 2 with one error line and no PNG. (Numbers against diffusers:
 * test_generate_oracle.c.) */
#include "test.h"
#include "cleardit.h"
#include "ckpt_gen.h"
#include "test_spawn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* hidden 64, head_dim 16 (RoPE 4,6,6), 1 + 1 blocks, 64 latent channels in/out, T5 width 32,
 * CLIP width 24, guidance embedder (dev-like). */
static const gen_flux_cfg k_flux = {64, 16, 1, 1, 64, 64, 32, 24, 128, 1};
/* 32 channels (divisible by FLUX's 32 groups), 4 levels (x8), 16 latent channels, encoder and
 * decoder. */
static const gen_ae_cfg k_ae = {3, 3, 32, {1, 1, 1, 1}, 4, 1, 16, 1, 1};

typedef struct {
    char dir[32], model[96], ae[96], emb[96], out[96];
} gen_files;

static int write_emb(const char *path, int T, int ctxw, int pw, int drop_pooled) {
    test_rng r = test_rng_seed(7);
    float *txt = malloc((size_t)T * ctxw * sizeof(float)), pooled[64];
    if (!txt) return 0;
    for (int i = 0; i < T * ctxw; i++) txt[i] = test_rng_f(&r);
    for (int i = 0; i < pw; i++) pooled[i] = test_rng_f(&r);
    cd_st_out o[2] = {{"txt", CD_DTYPE_F32, 2, {T, ctxw}, txt}, {"pooled", CD_DTYPE_F32, 1, {pw}, pooled}};
    const int ok = cd_st_write(NULL, path, o, drop_pooled ? 1 : 2, NULL, 0) == CD_OK;
    free(txt);
    return ok;
}

static int setup(gen_files *f) {
    strcpy(f->dir, "/tmp/cdgenXXXXXX");
    if (!mkdtemp(f->dir)) return 0;
    snprintf(f->model, sizeof f->model, "%s/flux.safetensors", f->dir);
    snprintf(f->ae, sizeof f->ae, "%s/ae.safetensors", f->dir);
    snprintf(f->emb, sizeof f->emb, "%s/emb.safetensors", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out.png", f->dir);
    gen_list l;
    gen_init(&l, 11);
    gen_flux_bfl(&l, &k_flux);
    int ok = gen_write(&l, f->model) == 0;
    gen_free(&l);
    gen_init(&l, 12);
    gen_ae_bfl(&l, &k_ae);
    ok = ok && gen_write(&l, f->ae) == 0;
    gen_free(&l);
    return ok && write_emb(f->emb, 5, 32, 24, 0);
}

static void teardown(gen_files *f) {
    unlink(f->model);
    unlink(f->ae);
    unlink(f->emb);
    unlink(f->out);
    rmdir(f->dir);
}

/* Runs generate with the common arguments plus extra (NULL-terminated); returns the pixels of
 * the PNG (NULL if the run failed) and removes it. */
static uint8_t *gen(const gen_files *f, const char *seed, const char *threads, const char *const *extra, cli_run *r) {
    const char *args[40] = {"generate", "--model", f->model, "--ae",      f->ae,   "--prompt-embeds",
                            f->emb,     "--width", "64",     "--height",  "48",    "--steps",
                            "2",        "--seed",  seed,     "--threads", threads, "--rope-axes",
                            "4,6,6",    "-o",      f->out};
    int n = 21;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    if (!run_cli(args, r) || r->code != 0) return NULL;
    uint8_t *rgb = NULL;
    uint32_t w = 0, h = 0;
    if (cd_png_read(NULL, f->out, &rgb, &w, &h) != CD_OK || w != 64 || h != 48) {
        free(rgb);
        return NULL;
    }
    unlink(f->out);
    return rgb;
}

/* Bad-input cases: each must exit 2 with one error line containing `phrase` and leave no `out`. */
typedef struct {
    const char *args[24];
    const char *phrase;
} bad_case;

static void expect_bad_cases(const bad_case *cases, size_t n, const char *out) {
    for (size_t i = 0; i < n; i++) {
        cli_run r;
        CHECK(run_cli(cases[i].args, &r), "spawn");
        EXPECT(r.code == 2, "case %zu: exit %d (%s)", i, r.code, r.err);
        EXPECT(strcasestr(r.err, cases[i].phrase) != NULL, "case %zu: stderr lacks '%s': %s", i, cases[i].phrase,
               r.err);
        EXPECT(one_error_line(r.err, "generate"), "case %zu: not one error line: %s", i, r.err);
        struct stat st;
        EXPECT(stat(out, &st) != 0, "case %zu left a PNG", i);
        unlink(out);
    }
}

TEST(generate_deterministic) {
    gen_files f;
    CHECK(setup(&f), "cannot write the test checkpoints");
    cli_run r;
    const size_t n = 64 * 48 * 3;
    uint8_t *a = gen(&f, "5", "1", NULL, &r);
    CHECK(a, "generate failed (exit %d): %s", r.code, r.err);
    EXPECT(strstr(r.err, "step 2/2") != NULL, "no progress lines on stderr: %s", r.err);
    uint8_t *b = gen(&f, "5", "1", NULL, &r);
    uint8_t *c = gen(&f, "5", "2", NULL, &r);
    uint8_t *d = gen(&f, "6", "2", NULL, &r);
    EXPECT(b && c && d, "generate failed: %s", r.err);
    if (b) EXPECT(!memcmp(a, b, n), "the same seed gave different pixels");
    if (c) EXPECT(!memcmp(a, c, n), "1 and 2 threads gave different pixels");
    if (d) EXPECT(memcmp(a, d, n), "seeds 5 and 6 gave the same pixels");
    /* the image is not flat */
    size_t distinct = 0;
    for (size_t i = 1; i < n; i++) distinct += a[i] != a[0];
    EXPECT(distinct > n / 4, "image is almost constant");
    /* CLEAR radius 1 on the 4x3 token grid: works and differs from dense */
    const char *cl[] = {"--attention", "clear", "--radius", "1", NULL};
    uint8_t *e = gen(&f, "5", "2", cl, &r);
    EXPECT(e, "CLEAR generate failed (exit %d): %s", r.code, r.err);
    if (e) EXPECT(memcmp(a, e, n), "CLEAR r=1 gave the dense pixels");
    /* --quiet prints nothing */
    const char *q[] = {"--quiet", NULL};
    uint8_t *g = gen(&f, "5", "2", q, &r);
    EXPECT(g && r.err[0] == 0 && r.out[0] == 0, "--quiet printed: %s", r.err);
    if (g) EXPECT(!memcmp(a, g, n), "--quiet changed the pixels");
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    free(g);
    teardown(&f);
}

TEST(generate_png_metadata) {
    gen_files f;
    CHECK(setup(&f), "cannot write the test checkpoints");
    cli_run r;
    RUN(&r, "generate", "--model", f.model, "--ae", f.ae, "--prompt-embeds", f.emb, "--width", "32", "--height", "16",
        "--steps", "1", "--seed", "42", "--rope-axes", "4,6,6", "--quiet", "--out", f.out);
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    uint8_t *rgb = NULL;
    uint32_t w = 0, h = 0;
    CHECK(cd_png_read(NULL, f.out, &rgb, &w, &h) == CD_OK, "PNG does not read back");
    EXPECT(w == 32 && h == 16, "PNG is %ux%u, want 32x16", w, h);
    free(rgb);
    char *v = NULL;
    CHECK(cd_png_text(NULL, f.out, "cleardit", &v) == CD_OK, "no 'cleardit' text chunk");
    EXPECT(strstr(v, "seed=42") && strstr(v, "steps=1") && strstr(v, "size=32x16") && strstr(v, "attention=dense") &&
               strstr(v, f.model) && !strchr(v, '\n'),
           "text chunk: '%s'", v);
    free(v);
    teardown(&f);
}

TEST(generate_bad_input) {
    gen_files f;
    CHECK(setup(&f), "cannot write the test checkpoints");
    char nopooled[96], narrow[96];
    snprintf(nopooled, sizeof nopooled, "%s/nopooled.safetensors", f.dir);
    snprintf(narrow, sizeof narrow, "%s/narrow.safetensors", f.dir);
    CHECK(write_emb(nopooled, 5, 32, 24, 1) && write_emb(narrow, 5, 31, 24, 0), "write embeddings");
    const char *M = f.model, *A = f.ae, *E = f.emb, *O = f.out;
    const bad_case cases[] = {
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--width", "40", "--height", "32", "--rope-axes",
          "4,6,6", "-o", O},
         "multiples of 16"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", nopooled, "--width", "32", "--height", "32",
          "--rope-axes", "4,6,6", "-o", O},
         "missing tensor 'pooled'"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", narrow, "--width", "32", "--height", "32",
          "--rope-axes", "4,6,6", "-o", O},
         "width 31"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--width", "32", "--height", "32", "--rope-axes",
          "4,6,6", "-o", "/nonexistent/dir/o.png"},
         "does not exist"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--width", "32", "--height", "32", "--rope-axes",
          "4,6,6", "-o", f.dir},
         "directory"},
        {{"generate", "--model", M, "--ae", M, "--prompt-embeds", E, "--width", "32", "--height", "32", "--rope-axes",
          "4,6,6", "-o", O},
         "autoencoder"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--width", "32", "--height", "32", "-o", O},
         "RoPE axes"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--width", "32", "--height", "32", "--rope-axes",
          "4,6,6", "--attention", "clear", "-o", O},
         "needs --radius"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--width", "32", "--height", "32", "--rope-axes",
          "4,6,6", "--radius", "1", "--down", "2", "-o", O},
         "spatial_weight"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--width", "32", "-o", O}, "required"},
        {{"generate", "--model", M, "--ae", A, "--prompt-embeds", "/nonexistent.safetensors", "--width", "32",
          "--height", "32", "-o", O},
         "nonexistent"},
    };
    expect_bad_cases(cases, sizeof cases / sizeof cases[0], O);
    unlink(nopooled);
    unlink(narrow);
    teardown(&f);
    struct stat st;
    EXPECT(stat(f.dir, &st) != 0, "files left in %s", f.dir);
}

/* Image-to-image and the high-resolution path through the CLI. */
TEST(generate_img2img_and_upscale) {
    gen_files f;
    CHECK(setup(&f), "cannot write the test checkpoints");
    cli_run r;
    const size_t n = 64 * 48 * 3;
    char init[96];
    snprintf(init, sizeof init, "%s/init.png", f.dir);
    const char *s4[] = {"--steps", "4", NULL};
    uint8_t *t2i = gen(&f, "5", "2", s4, &r);
    CHECK(t2i, "txt2img failed: %s", r.err);
    CHECK(cd_png_write(NULL, init, t2i, 64, 48, NULL, 0) == CD_OK, "write init.png");
    /* strength 1 starts from pure noise at t = 1: exactly text-to-image (diffusers semantics) */
    const char *full[] = {"--steps", "4", "--init-image", init, "--strength", "1", NULL};
    uint8_t *a = gen(&f, "7", "2", full, &r);
    uint8_t *b = gen(&f, "7", "2", s4, &r);
    CHECK(a && b, "generate failed: %s", r.err);
    EXPECT(!memcmp(a, b, n), "img2img at strength 1 differs from txt2img with the same seed");
    /* strength 0.5 of 4 steps: 2 steps run; deterministic across threads; differs from 0.8 */
    const char *half[] = {"--steps", "4", "--init-image", init, "--strength", "0.5", NULL};
    uint8_t *c = gen(&f, "7", "1", half, &r);
    CHECK(c, "img2img failed (exit %d): %s", r.code, r.err);
    EXPECT(strstr(r.err, "2 of 4 steps") && strstr(r.err, "step 2/2"), "img2img progress: %s", r.err);
    uint8_t *d = gen(&f, "7", "2", half, &r);
    const char *more[] = {"--steps", "4", "--init-image", init, "--strength", "0.8", NULL};
    uint8_t *e = gen(&f, "7", "2", more, &r);
    EXPECT(d && e, "img2img failed: %s", r.err);
    if (d) EXPECT(!memcmp(c, d, n), "img2img: 1 and 2 threads gave different pixels");
    if (e) EXPECT(memcmp(c, e, n), "strengths 0.5 and 0.8 gave the same pixels");
    EXPECT(memcmp(c, a, n), "img2img at 0.5 gave the txt2img pixels");
    /* autoencoder tiling (32-pixel tiles on 64x48): runs, is deterministic, and is not the untiled
     * image (GroupNorm statistics and attention are per tile, as in diffusers) */
    const char *tiled[] = {"--steps", "4", "--init-image", init, "--strength", "0.5", "--ae-tile", "32", NULL};
    uint8_t *t1 = gen(&f, "7", "1", tiled, &r), *t2 = gen(&f, "7", "2", tiled, &r);
    EXPECT(t1 && t2, "tiled generate failed: %s", r.err);
    if (t1 && t2) {
        EXPECT(!memcmp(t1, t2, n), "tiled: 1 and 2 threads gave different pixels");
        EXPECT(memcmp(t1, c, n), "tiled and untiled autoencoders gave the same pixels");
    }
    free(t1);
    free(t2);
    /* upscale 64x48 -> 128x96 with CLEAR; the PNG records the high-resolution settings */
    RUN(&r, "generate", "--model", f.model, "--ae", f.ae, "--prompt-embeds", f.emb, "--upscale-from", init, "--width",
        "128", "--height", "96", "--steps", "3", "--radius", "2", "--rope-axes", "4,6,6", "--threads", "2", "-o",
        f.out);
    CHECK(r.code == 0, "upscale: exit %d: %s", r.code, r.err);
    uint8_t *u = NULL;
    uint32_t w = 0, h = 0;
    CHECK(cd_png_read(NULL, f.out, &u, &w, &h) == CD_OK, "upscaled PNG does not read back");
    EXPECT(w == 128 && h == 96, "upscaled PNG is %ux%u, want 128x96", w, h);
    free(u);
    char *v = NULL;
    CHECK(cd_png_text(NULL, f.out, "cleardit", &v) == CD_OK, "no 'cleardit' text chunk");
    EXPECT(strstr(v, "upscale_from=") && strstr(v, "strength=0.7") && strstr(v, "ntk_factor=10") &&
               strstr(v, "proportional_attention=1") && strstr(v, "time_shift=3") && strstr(v, "clear r=2"),
           "text chunk: '%s'", v);
    free(v);
    unlink(f.out);
    unlink(init);
    free(t2i);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    teardown(&f);
}

TEST(generate_img2img_bad_input) {
    gen_files f;
    CHECK(setup(&f), "cannot write the test checkpoints");
    char init[96], odd[96];
    snprintf(init, sizeof init, "%s/init.png", f.dir);
    snprintf(odd, sizeof odd, "%s/odd.png", f.dir);
    uint8_t px[64 * 48 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37u + 11u);
    CHECK(cd_png_write(NULL, init, px, 64, 48, NULL, 0) == CD_OK &&
              cd_png_write(NULL, odd, px, 40, 24, NULL, 0) == CD_OK,
          "write PNGs");
    const char *M = f.model, *A = f.ae, *E = f.emb, *O = f.out;
#define BASE "generate", "--model", M, "--ae", A, "--prompt-embeds", E, "--rope-axes", "4,6,6", "-o", O
    const bad_case cases[] = {
        {{BASE, "--init-image", init, "--strength", "0"}, "--strength"},
        {{BASE, "--init-image", init, "--strength", "1.5"}, "--strength"},
        {{BASE, "--init-image", "/nonexistent/init.png"}, "init.png"},
        {{BASE, "--init-image", M}, "PNG"},
        {{BASE, "--init-image", init, "--width", "32", "--height", "48"}, "--upscale-from"},
        {{BASE, "--init-image", odd}, "multiples of 16"},
        {{BASE, "--init-image", init, "--upscale-from", init}, "exclude"},
        {{BASE, "--width", "64", "--height", "48", "--strength", "0.5"}, "needs --init-image"},
        {{BASE, "--upscale-from", init}, "target --width"},
        {{BASE, "--upscale-from", init, "--width", "128", "--height", "96", "--ae-tile", "20"}, "multiple of 32"},
        {{BASE, "--init-image", init, "--ae-tile", "32", "--ae-overlap", "0.3"}, "tile stride"},
        {{BASE, "--init-image", init, "--proportional-attention", "--no-proportional-attention"}, "exclude"},
    };
#undef BASE
    expect_bad_cases(cases, sizeof cases / sizeof cases[0], O);
    unlink(init);
    unlink(odd);
    teardown(&f);
}

/* `bench generate` runs (tiny sizes only: speed belongs to `make bench`, not tests) and rejects
 * bad sizes. */
TEST(bench_generate_smoke) {
    cli_run r;
    RUN(&r, "bench", "generate", "--sizes", "0", "--tiny-sizes", "64", "--tiny-steps", "1", "--json", "--threads", "1");
    EXPECT(r.code == 0, "exit %d: %s", r.code, r.err);
    EXPECT(strstr(r.out, "\"tiny\": [{\"size\": 64") && strstr(r.out, "\"clear_s_per_step\""), "JSON: %s", r.out);
    RUN(&r, "bench", "generate", "--sizes", "100");
    EXPECT(r.code == 2 && strstr(r.err, "multiple of 16"), "bad size: exit %d: %s", r.code, r.err);
}

/* The shipped model (models/, embedded in the binary): `generate --prompt` needs no file, makes
 * the model's native 28x28, uses its distilled CLEAR weights with --attention clear, and lists its
 * prompts for an unknown one. */
TEST(generate_default_model) {
    char dir[] = "/tmp/cddefXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char a[96], b[96];
    snprintf(a, sizeof a, "%s/a.png", dir);
    snprintf(b, sizeof b, "%s/b.png", dir);
    cli_run r;
    RUN(&r, "generate", "--prompt", "sneaker", "--steps", "8", "--quiet", "-o", a);
    CHECK(r.code == 0, "default model: exit %d: %s", r.code, r.err);
    RUN(&r, "generate", "--prompt", "Sneaker", "--steps", "8", "--attention", "clear", "--quiet", "-o", b);
    CHECK(r.code == 0, "default model, CLEAR: exit %d: %s", r.code, r.err);
    uint8_t *x = NULL, *y = NULL;
    uint32_t w = 0, h = 0, w2 = 0, h2 = 0;
    CHECK(cd_png_read(NULL, a, &x, &w, &h) == CD_OK && cd_png_read(NULL, b, &y, &w2, &h2) == CD_OK, "PNGs");
    EXPECT(w == 28 && h == 28 && w2 == 28 && h2 == 28, "sizes %ux%u, %ux%u", w, h, w2, h2);
    /* CLEAR (distilled) differs from dense but stays close: mean |difference| under 1/4 of range */
    double d = 0;
    for (size_t i = 0; i < (size_t)28 * 28 * 3; i++) d += abs((int)x[i] - (int)y[i]);
    d /= 28.0 * 28 * 3;
    EXPECT(d > 0 && d < 64, "dense vs CLEAR mean abs difference %.1f", d);
    free(x);
    free(y);
    char *v = NULL;
    CHECK(cd_png_text(NULL, b, "cleardit", &v) == CD_OK, "text chunk");
    EXPECT(strstr(v, "attention=clear r=3") && strstr(v, "model=(default)") && strstr(v, "prompt=Sneaker"), "'%s'", v);
    free(v);
    RUN(&r, "generate", "--prompt", "hat", "-o", a);
    EXPECT(r.code == 2 && strstr(r.err, "unknown prompt 'hat'") && strstr(r.err, "ankle boot"), "exit %d: %s", r.code,
           r.err);
    unlink(a);
    unlink(b);
    rmdir(dir);
}
