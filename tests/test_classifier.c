/* test_classifier.c — the Fashion-MNIST MLP classifier (src/train/classifier.c) on a tiny
 * synthetic set: 10 classes, each a bright 6x6 block at its own place on a noisy 28x28 background.
 * It must learn them (100% on the training set and on fresh draws), the same seed must give the
 * same weights, the float path must agree with the u8 path, a save/load round trip must predict
 * identically, and bad files and bad parameters must be clear errors. Well under a second. */
#include "test.h"
#include "test_files.h"
#include "cleardit.h"
#include "../src/train/classifier.h"

#include <string.h>

#define PER_CLASS 12
#define NCLS 10

/* n images [n, 28, 28] with labels i % 10: the block of class c at (4 + 6 (c / 4), 2 + 6 (c % 4)). */
static void make_set(uint64_t seed, uint32_t n, uint8_t *img, uint8_t *lab) {
    test_rng r = test_rng_seed(seed);
    for (uint32_t i = 0; i < n; i++) {
        const int c = (int)(i % NCLS), y0 = 4 + 6 * (c / 4), x0 = 2 + 6 * (c % 4);
        lab[i] = (uint8_t)c;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                const int on = y >= y0 && y < y0 + 6 && x >= x0 && x < x0 + 6;
                const int v = (on ? 200 : 40) + (int)(40 * test_rng_f(&r));
                img[(i * 28 + y) * 28 + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    }
}

static cd_clf_train_params tiny_params(void) {
    cd_clf_train_params p = cd_clf_train_defaults();
    p.h1 = 32;
    p.h2 = 16;
    p.epochs = 12;
    p.batch = 10;
    p.lr = 3e-3;
    p.seed = 7;
    return p;
}

static size_t count_right(const int32_t *pred, const uint8_t *lab, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += pred[i] == lab[i];
    return k;
}

TEST(classifier_learns_and_round_trips) {
    enum { N = PER_CLASS * NCLS };
    static uint8_t img[N * 784], lab[N], timg[N * 784], tlab[N];
    make_set(1, N, img, lab);
    make_set(2, N, timg, tlab);
    cd_dataset d = {img, lab, N, 28, 28}, td = {timg, tlab, N, 28, 28};
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 1;
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "ctx");
    cd_clf_train_params p = tiny_params();
    cd_classifier *c = NULL, *c2 = NULL, *l = NULL;
    char dir[64] = "", path[128];
    int32_t pred[N], pred2[N];
    static float fimg[N * 784];
    CHECK(cd_clf_train(ctx, &d, &p, &c) == CD_OK, "train: %s", cd_ctx_error(ctx));
    double acc = 0, tacc = 0;
    EXPECT(cd_clf_accuracy(ctx, c, &d, &acc) == CD_OK && acc == 1.0, "training accuracy %.3f", acc);
    EXPECT(cd_clf_accuracy(ctx, c, &td, &tacc) == CD_OK && tacc == 1.0, "fresh-draw accuracy %.3f", tacc);
    /* determinism */
    if (cd_clf_train(ctx, &d, &p, &c2) == CD_OK) {
        EXPECT(c2->n_params == c->n_params && !memcmp(c2->params, c->params, c->n_params * sizeof(float)),
               "the same seed gave different weights");
        cd_clf_free(c2);
    }
    /* float images in [-1, 1] as the pipeline makes them: same classes */
    for (size_t i = 0; i < sizeof fimg / sizeof fimg[0]; i++) fimg[i] = timg[i] / 127.5f - 1.0f;
    CHECK(cd_clf_predict_u8(ctx, c, timg, N, pred) == CD_OK, "predict u8");
    EXPECT(cd_clf_predict_f32(ctx, c, fimg, N, pred2) == CD_OK && !memcmp(pred, pred2, sizeof pred),
           "f32 and u8 predictions differ");
    /* save / load */
    if (!tmp_dir_tag(dir, sizeof dir, "clf")) {
        EXPECT(0, "mkdtemp");
        goto done;
    }
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    const char *meta[] = {"test_accuracy", "1.0"};
    EXPECT(cd_clf_save(ctx, c, path, meta, 1) == CD_OK, "save: %s", cd_ctx_error(ctx));
    EXPECT(cd_clf_load(ctx, path, &l) == CD_OK, "load: %s", cd_ctx_error(ctx));
    if (l) {
        EXPECT(l->in == 784 && l->h1 == 32 && l->h2 == 16 && l->classes == NCLS && l->rows == 28 && l->cols == 28,
               "loaded shapes %d %d %d %d", l->in, l->h1, l->h2, l->classes);
        memset(pred2, 0xff, sizeof pred2);
        EXPECT(cd_clf_predict_u8(ctx, l, timg, N, pred2) == CD_OK && !memcmp(pred, pred2, sizeof pred),
               "the loaded classifier predicts differently");
        EXPECT(!memcmp(l->params, c->params, c->n_params * sizeof(float)), "weights changed in the round trip");
    }
    EXPECT(count_right(pred, tlab, N) == N, "fresh draws: %zu of %d right", count_right(pred, tlab, N), N);
done:
    cd_clf_free(l);
    cd_clf_free(c);
    if (*dir) tmp_rm(dir);
    cd_ctx_free(ctx);
}

TEST(classifier_bad_files_and_params) {
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    char dir[64], p[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "clfbad"), "mkdtemp");
    cd_classifier *c = NULL;
    /* missing file */
    snprintf(p, sizeof p, "%s/none.safetensors", dir);
    EXPECT(cd_clf_load(ctx, p, &c) == CD_ERR_NOT_FOUND && !c, "missing file: %s", cd_ctx_error(ctx));
    /* not a safetensors file */
    snprintf(p, sizeof p, "%s/junk.safetensors", dir);
    write_text(p, "this is not a classifier");
    EXPECT(cd_clf_load(ctx, p, &c) == CD_ERR_FORMAT && !c, "junk: %s", cd_ctx_error(ctx));
    /* a safetensors file of something else (no metadata) */
    const float w[4] = {1, 2, 3, 4};
    cd_st_out o = {"fc1.weight", CD_DTYPE_F32, 2, {2, 2}, w};
    snprintf(p, sizeof p, "%s/other.safetensors", dir);
    EXPECT(cd_st_write(ctx, p, &o, 1, NULL, 0) == CD_OK, "write");
    EXPECT(cd_clf_load(ctx, p, &c) == CD_ERR_FORMAT && strstr(cd_ctx_error(ctx), "not a cleardit classifier"),
           "other file: %s", cd_ctx_error(ctx));
    /* the metadata but a missing tensor */
    const char *meta[] = {"cleardit_classifier", "mlp", "image", "2x2"};
    EXPECT(cd_st_write(ctx, p, &o, 1, meta, 2) == CD_OK, "write");
    EXPECT(cd_clf_load(ctx, p, &c) == CD_ERR_FORMAT && strstr(cd_ctx_error(ctx), "fc1.bias") &&
               strstr(cd_ctx_error(ctx), p),
           "missing tensor: %s", cd_ctx_error(ctx));
    /* labels beyond the classes, too few images */
    uint8_t img[20 * 16] = {0}, lab[20] = {0};
    lab[5] = 12;
    cd_dataset d = {img, lab, 20, 4, 4};
    cd_clf_train_params tp = tiny_params();
    EXPECT(cd_clf_train(ctx, &d, &tp, &c) == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "label 12"),
           "label 12: %s", cd_ctx_error(ctx));
    lab[5] = 1;
    tp.batch = 32;
    EXPECT(cd_clf_train(ctx, &d, &tp, &c) == CD_ERR_INVALID_ARG && !c, "batch > images: %s", cd_ctx_error(ctx));
    tmp_rm(dir);
    cd_ctx_free(ctx);
}
