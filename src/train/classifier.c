/* classifier.c — the Fashion-MNIST MLP classifier (classifier.h): training with Adam, prediction,
 * safetensors save/load. Matrix products through OpenBLAS sgemm; everything else plain loops. */
#include "classifier.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PREDICT_CHUNK 256

cd_clf_train_params cd_clf_train_defaults(void) {
    return (cd_clf_train_params){256, 128, CD_FMNIST_CLASSES, 8, 128, 1e-3, 0, NULL, NULL};
}

/* ---- randomness: splitmix64 ---------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { /* (0, 1) */
    return ((double)(splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double normal(uint64_t *s) { /* Box-Muller, one of the pair */
    const double u = uniform01(s), v = uniform01(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- the model ------------------------------------------------------------------------------ */
static cd_status clf_alloc(cd_ctx *ctx, int32_t in, int32_t h1, int32_t h2, int32_t classes, cd_classifier **out) {
    *out = NULL;
    cd_classifier *c = calloc(1, sizeof *c);
    if (!c) return cd_set_error(ctx, CD_ERR_OOM, "out of memory for the classifier");
    c->in = in;
    c->h1 = h1;
    c->h2 = h2;
    c->classes = classes;
    c->n_params = (size_t)h1 * in + h1 + (size_t)h2 * h1 + h2 + (size_t)classes * h2 + classes;
    c->params = calloc(c->n_params, sizeof(float));
    if (!c->params) {
        const size_t np = c->n_params;
        free(c);
        return cd_set_error(ctx, CD_ERR_OOM, "out of memory for the classifier's %zu parameters", np);
    }
    float *p = c->params;
    c->w1 = p;
    p += (size_t)h1 * in;
    c->b1 = p;
    p += h1;
    c->w2 = p;
    p += (size_t)h2 * h1;
    c->b2 = p;
    p += h2;
    c->w3 = p;
    p += (size_t)classes * h2;
    c->b3 = p;
    *out = c;
    return CD_OK;
}

void cd_clf_free(cd_classifier *c) {
    if (!c) return;
    free(c->params);
    free(c);
}

/* y [B, out] = relu?(x [B, in] W^T + b), W [out, in]. */
static void linear(const float *x, int B, int in, const float *W, const float *b, int out, int relu, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    for (int i = 0; i < B; i++) {
        float *r = y + (size_t)i * out;
        for (int j = 0; j < out; j++) {
            const float v = r[j] + b[j];
            r[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/* a1 [B, h1], a2 [B, h2], logits [B, classes] of x [B, in]. */
static void forward(const cd_classifier *c, const float *x, int B, float *a1, float *a2, float *logits) {
    linear(x, B, c->in, c->w1, c->b1, c->h1, 1, a1);
    linear(a1, B, c->h1, c->w2, c->b2, c->h2, 1, a2);
    linear(a2, B, c->h2, c->w3, c->b3, c->classes, 0, logits);
}

static int32_t argmax(const float *v, int n) {
    int32_t k = 0;
    for (int j = 1; j < n; j++)
        if (v[j] > v[k]) k = j;
    return k;
}

/* ---- training ------------------------------------------------------------------------------- */
typedef struct {
    float *x, *a1, *a2, *lg; /* [B, in], [B, h1], [B, h2], [B, classes] */
    float *da1, *da2;        /* [B, h1], [B, h2] (dlogits reuse lg) */
    float *grad, *m, *v;     /* [n_params] each */
    uint32_t *perm;          /* [n] */
} train_buf;

/* Gradient of the mean cross-entropy of the batch into tb->grad (laid out as c->params); returns
 * the summed loss and adds the number of correct predictions to *correct. */
static double batch_step(const cd_classifier *c, train_buf *tb, const uint8_t *labels, int B, size_t *correct) {
    const int in = c->in, h1 = c->h1, h2 = c->h2, C = c->classes;
    float *gw1 = tb->grad, *gb1 = gw1 + (size_t)h1 * in, *gw2 = gb1 + h1, *gb2 = gw2 + (size_t)h2 * h1, *gw3 = gb2 + h2,
          *gb3 = gw3 + (size_t)C * h2;
    forward(c, tb->x, B, tb->a1, tb->a2, tb->lg);
    double loss = 0.0;
    for (int i = 0; i < B; i++) { /* logits -> dlogits = (softmax - onehot) / B, in place */
        float *r = tb->lg + (size_t)i * C;
        const int y = labels[i];
        if (argmax(r, C) == y) (*correct)++;
        float mx = r[0];
        for (int j = 1; j < C; j++) mx = r[j] > mx ? r[j] : mx;
        double s = 0.0;
        for (int j = 0; j < C; j++) s += exp((double)(r[j] - mx));
        loss += log(s) - (double)(r[y] - mx);
        for (int j = 0; j < C; j++) r[j] = (float)(exp((double)(r[j] - mx)) / s - (j == y)) / (float)B;
    }
    /* layer 3 */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, h2, B, 1.0f, tb->lg, C, tb->a2, h2, 0.0f, gw3, h2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, h2, C, 1.0f, tb->lg, C, c->w3, h2, 0.0f, tb->da2, h2);
    memset(gb3, 0, (size_t)C * sizeof(float));
    for (int i = 0; i < B; i++)
        for (int j = 0; j < C; j++) gb3[j] += tb->lg[(size_t)i * C + j];
    /* layer 2 (ReLU: a2 > 0 where z2 > 0) */
    for (size_t i = 0; i < (size_t)B * h2; i++)
        if (tb->a2[i] <= 0.0f) tb->da2[i] = 0.0f;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h2, h1, B, 1.0f, tb->da2, h2, tb->a1, h1, 0.0f, gw2, h1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, h1, h2, 1.0f, tb->da2, h2, c->w2, h1, 0.0f, tb->da1, h1);
    memset(gb2, 0, (size_t)h2 * sizeof(float));
    for (int i = 0; i < B; i++)
        for (int j = 0; j < h2; j++) gb2[j] += tb->da2[(size_t)i * h2 + j];
    /* layer 1 */
    for (size_t i = 0; i < (size_t)B * h1; i++)
        if (tb->a1[i] <= 0.0f) tb->da1[i] = 0.0f;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h1, in, B, 1.0f, tb->da1, h1, tb->x, in, 0.0f, gw1, in);
    memset(gb1, 0, (size_t)h1 * sizeof(float));
    for (int i = 0; i < B; i++)
        for (int j = 0; j < h1; j++) gb1[j] += tb->da1[(size_t)i * h1 + j];
    return loss;
}

cd_status cd_clf_train(cd_ctx *ctx, const cd_dataset *d, const cd_clf_train_params *p, cd_classifier **out) {
    *out = NULL;
    if (!d || !p || !d->images || !d->labels || !d->rows || !d->cols)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "classifier: no training data");
    if (p->h1 < 1 || p->h2 < 1 || p->classes < 2 || p->epochs < 1 || p->batch < 1 || !(p->lr > 0) || p->h1 > 65536 ||
        p->h2 > 65536 || p->classes > 65536 || p->batch > 65536 || (uint64_t)d->rows * d->cols > (1u << 24))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "classifier: bad parameters (hidden %d/%d, classes %d, epochs %d, batch %d, lr %g)",
                            (int)p->h1, (int)p->h2, (int)p->classes, (int)p->epochs, (int)p->batch, p->lr);
    if (d->n < (uint32_t)p->batch)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "classifier: %u training images, fewer than one batch of %d", d->n,
                            (int)p->batch);
    for (uint32_t i = 0; i < d->n; i++)
        if (d->labels[i] >= p->classes)
            return cd_set_error(ctx, CD_ERR_INVALID_ARG, "classifier: label %u of image %u is not below %d classes",
                                d->labels[i], i, (int)p->classes);
    const int in = (int)(d->rows * d->cols), B = p->batch;
    cd_classifier *c = NULL;
    cd_status st = clf_alloc(ctx, in, p->h1, p->h2, p->classes, &c);
    if (st) return st;
    c->rows = (int32_t)d->rows;
    c->cols = (int32_t)d->cols;
    uint64_t rng = p->seed ^ 0x636C6173736966ull; /* "classif" */
    const float s1 = sqrtf(2.0f / in), s2 = sqrtf(2.0f / c->h1), s3 = sqrtf(2.0f / c->h2);
    for (size_t i = 0; i < (size_t)c->h1 * in; i++) c->w1[i] = (float)normal(&rng) * s1;
    for (size_t i = 0; i < (size_t)c->h2 * c->h1; i++) c->w2[i] = (float)normal(&rng) * s2;
    for (size_t i = 0; i < (size_t)c->classes * c->h2; i++) c->w3[i] = (float)normal(&rng) * s3;

    train_buf tb = {0};
    const size_t np = c->n_params;
    tb.x = malloc((size_t)B * in * sizeof(float));
    tb.a1 = malloc((size_t)B * c->h1 * sizeof(float));
    tb.a2 = malloc((size_t)B * c->h2 * sizeof(float));
    tb.lg = malloc((size_t)B * c->classes * sizeof(float));
    tb.da1 = malloc((size_t)B * c->h1 * sizeof(float));
    tb.da2 = malloc((size_t)B * c->h2 * sizeof(float));
    tb.grad = malloc(np * sizeof(float));
    tb.m = calloc(np, sizeof(float));
    tb.v = calloc(np, sizeof(float));
    tb.perm = malloc((size_t)d->n * sizeof(uint32_t));
    uint8_t *lab = malloc((size_t)B);
    if (!tb.x || !tb.a1 || !tb.a2 || !tb.lg || !tb.da1 || !tb.da2 || !tb.grad || !tb.m || !tb.v || !tb.perm || !lab) {
        st = cd_set_error(ctx, CD_ERR_OOM, "out of memory for classifier training");
        goto done;
    }
    const int prev = cd_blas_threads_push(ctx);
    const int64_t per_epoch = d->n / (uint32_t)B, total = per_epoch * p->epochs;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, t0 = cd_now();
    int64_t t = 0;
    for (uint32_t i = 0; i < d->n; i++) tb.perm[i] = i;
    for (int e = 0; e < p->epochs; e++) {
        for (uint32_t i = d->n - 1; i > 0; i--) { /* Fisher-Yates */
            const uint32_t j = (uint32_t)(splitmix64(&rng) % ((uint64_t)i + 1));
            const uint32_t tmp = tb.perm[i];
            tb.perm[i] = tb.perm[j];
            tb.perm[j] = tmp;
        }
        double loss = 0.0;
        size_t correct = 0;
        for (int64_t bi = 0; bi < per_epoch; bi++, t++) {
            for (int i = 0; i < B; i++) {
                const uint32_t k = tb.perm[bi * B + i];
                const uint8_t *img = d->images + (size_t)k * in;
                float *x = tb.x + (size_t)i * in;
                for (int j = 0; j < in; j++) x[j] = img[j] * (1.0f / 255.0f);
                lab[i] = d->labels[k];
            }
            loss += batch_step(c, &tb, lab, B, &correct);
            /* Adam, lr on a half-cosine from p->lr to 0 */
            const double lr = p->lr * 0.5 * (1.0 + cos(3.141592653589793 * (double)t / (double)total));
            const double bc1 = 1.0 - pow(b1, (double)(t + 1)), bc2 = 1.0 - pow(b2, (double)(t + 1));
            const float step = (float)(lr / bc1), bc2s = (float)sqrt(bc2);
            for (size_t i = 0; i < np; i++) {
                const float g = tb.grad[i];
                tb.m[i] = (float)b1 * tb.m[i] + (float)(1.0 - b1) * g;
                tb.v[i] = (float)b2 * tb.v[i] + (float)(1.0 - b2) * g * g;
                c->params[i] -= step * tb.m[i] / (sqrtf(tb.v[i]) / bc2s + (float)eps);
            }
        }
        if (p->progress) {
            const double seen = (double)per_epoch * B;
            p->progress(p->user, e + 1, p->epochs, loss / seen, (double)correct / seen, cd_now() - t0);
        }
    }
    cd_blas_threads_pop(prev);
done:
    free(tb.x);
    free(tb.a1);
    free(tb.a2);
    free(tb.lg);
    free(tb.da1);
    free(tb.da2);
    free(tb.grad);
    free(tb.m);
    free(tb.v);
    free(tb.perm);
    free(lab);
    if (st) {
        cd_clf_free(c);
        return st;
    }
    *out = c;
    return CD_OK;
}

/* ---- prediction ----------------------------------------------------------------------------- */
/* One of u8 / f32 is non-NULL. */
static cd_status predict(cd_ctx *ctx, const cd_classifier *c, const uint8_t *u8, const float *f32, size_t n,
                         int32_t *labels) {
    if (!n) return CD_OK;
    const size_t chunk = n < PREDICT_CHUNK ? n : PREDICT_CHUNK, in = (size_t)c->in;
    float *buf = malloc(chunk * (in + (size_t)c->h1 + (size_t)c->h2 + (size_t)c->classes) * sizeof(float));
    if (!buf) return cd_set_error(ctx, CD_ERR_OOM, "out of memory for classifier prediction");
    float *x = buf, *a1 = x + chunk * in, *a2 = a1 + chunk * c->h1, *lg = a2 + chunk * c->h2;
    const int prev = cd_blas_threads_push(ctx);
    for (size_t i0 = 0; i0 < n; i0 += chunk) {
        const size_t B = n - i0 < chunk ? n - i0 : chunk;
        for (size_t i = 0; i < B * in; i++) {
            if (u8) {
                x[i] = u8[i0 * in + i] * (1.0f / 255.0f);
            } else {
                const float v = (f32[i0 * in + i] + 1.0f) * 0.5f;
                x[i] = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN -> 0 */
            }
        }
        forward(c, x, (int)B, a1, a2, lg);
        for (size_t i = 0; i < B; i++) labels[i0 + i] = argmax(lg + i * c->classes, c->classes);
    }
    cd_blas_threads_pop(prev);
    free(buf);
    return CD_OK;
}

cd_status cd_clf_predict_u8(cd_ctx *ctx, const cd_classifier *c, const uint8_t *images, size_t n, int32_t *labels) {
    return predict(ctx, c, images, NULL, n, labels);
}

cd_status cd_clf_predict_f32(cd_ctx *ctx, const cd_classifier *c, const float *images, size_t n, int32_t *labels) {
    return predict(ctx, c, NULL, images, n, labels);
}

cd_status cd_clf_accuracy(cd_ctx *ctx, const cd_classifier *c, const cd_dataset *d, double *acc) {
    *acc = 0.0;
    if ((int32_t)d->rows != c->rows || (int32_t)d->cols != c->cols)
        return cd_set_error(ctx, CD_ERR_SHAPE, "classifier: images are %ux%u, the classifier takes %dx%d", d->cols,
                            d->rows, (int)c->cols, (int)c->rows);
    if (!d->n) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "classifier: no test images");
    int32_t *pred = malloc((size_t)d->n * sizeof *pred);
    if (!pred) return cd_set_error(ctx, CD_ERR_OOM, "out of memory for %u predictions", d->n);
    cd_status st = cd_clf_predict_u8(ctx, c, d->images, d->n, pred);
    size_t ok = 0;
    for (uint32_t i = 0; i < d->n && !st; i++) ok += pred[i] == d->labels[i];
    free(pred);
    if (!st) *acc = (double)ok / d->n;
    return st;
}

/* ---- files ---------------------------------------------------------------------------------- */
static const char *const k_names[6] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"};

cd_status cd_clf_save(cd_ctx *ctx, const cd_classifier *c, const char *path, const char *const *meta, size_t n_meta) {
    const float *data[6] = {c->w1, c->b1, c->w2, c->b2, c->w3, c->b3};
    const int64_t rows[6] = {c->h1, c->h1, c->h2, c->h2, c->classes, c->classes};
    const int64_t cols[6] = {c->in, 0, c->h1, 0, c->h2, 0};
    cd_st_out o[6];
    for (int i = 0; i < 6; i++) {
        o[i] = (cd_st_out){k_names[i], CD_DTYPE_F32, cols[i] ? 2 : 1, {rows[i], cols[i]}, data[i]};
    }
    const char **m = malloc((4 + 2 * n_meta) * sizeof *m);
    if (!m) return cd_set_error(ctx, CD_ERR_OOM, "out of memory");
    char image[48];
    snprintf(image, sizeof image, "%dx%d", (int)c->cols, (int)c->rows);
    m[0] = "cleardit_classifier";
    m[1] = "mlp";
    m[2] = "image";
    m[3] = image;
    for (size_t i = 0; i < 2 * n_meta; i++) m[4 + i] = meta[i];
    const cd_status st = cd_st_write(ctx, path, o, 6, m, 2 + n_meta);
    free(m);
    return st;
}

cd_status cd_clf_load(cd_ctx *ctx, const char *path, cd_classifier **out) {
    *out = NULL;
    cd_st_file *f = NULL;
    cd_status st = cd_st_open(ctx, path, &f);
    if (st) return st;
    const char *kind = cd_st_meta(f, "cleardit_classifier"), *image = cd_st_meta(f, "image");
    const cd_st_tensor *t[6];
    for (int i = 0; i < 6; i++) t[i] = cd_st_find(f, k_names[i]);
    cd_classifier *c = NULL;
    int cols = 0, rows = 0;
    if (!kind || strcmp(kind, "mlp")) {
        st = cd_set_error(ctx, CD_ERR_FORMAT,
                          "%s: not a cleardit classifier (no \"cleardit_classifier\": \"mlp\" metadata)", path);
        goto done;
    }
    for (int i = 0; i < 6; i++) {
        if (!t[i]) {
            st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: classifier tensor '%s' is missing", path, k_names[i]);
            goto done;
        }
        if (t[i]->dtype != CD_DTYPE_F32 || t[i]->ndim != (i % 2 ? 1 : 2) || t[i]->shape[0] < 1 ||
            t[i]->shape[0] > 65536 || (i % 2 == 0 && (t[i]->shape[1] < 1 || t[i]->shape[1] > (1 << 24)))) {
            st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: classifier tensor '%s' must be F32 of rank %d", path, k_names[i],
                              i % 2 ? 1 : 2);
            goto done;
        }
    }
    const int64_t in = t[0]->shape[1], h1 = t[0]->shape[0], h2 = t[2]->shape[0], C = t[4]->shape[0];
    if (t[1]->shape[0] != h1 || t[2]->shape[1] != h1 || t[3]->shape[0] != h2 || t[4]->shape[1] != h2 ||
        t[5]->shape[0] != C || C < 2) {
        st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: classifier tensor shapes are inconsistent", path);
        goto done;
    }
    if (!image || sscanf(image, "%dx%d", &cols, &rows) != 2 || cols < 1 || rows < 1 || (int64_t)cols * rows != in) {
        st = cd_set_error(ctx, CD_ERR_FORMAT,
                          "%s: classifier metadata \"image\" is missing or does not match %lld inputs", path,
                          (long long)in);
        goto done;
    }
    if ((st = clf_alloc(ctx, (int32_t)in, (int32_t)h1, (int32_t)h2, (int32_t)C, &c))) goto done;
    c->rows = rows;
    c->cols = cols;
    float *dst[6] = {c->w1, c->b1, c->w2, c->b2, c->w3, c->b3};
    for (int i = 0; i < 6 && !st; i++) st = cd_st_to_f32(ctx, t[i], dst[i]);
done:
    cd_st_close(f);
    if (st) {
        cd_clf_free(c);
        return st;
    }
    *out = c;
    return CD_OK;
}
