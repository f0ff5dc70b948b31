/* classifier.h — a small Fashion-MNIST classifier (library-private): the judge of class accuracy
 * in `cleardit eval` (does a generated "sneaker" look like a sneaker?). Not a generative model,
 * not part of the transformer.
 *
 * Model: an MLP in -> h1 -> h2 -> classes (default 784 -> 256 -> 128 -> 10) with ReLU, on pixels
 * x = u / 255 (u8 images) or x = (f + 1) / 2 clamped to [0, 1] (float images in [-1, 1], the
 * pipeline's range; the two agree on u = 127.5 (f + 1)). Loss: softmax cross-entropy, mean over
 * the batch. Optimizer: Adam (beta1 0.9, beta2 0.999, eps 1e-8) with the learning rate decayed by
 * a half-cosine from lr to 0 over the run. Initialization: He normal weights (std sqrt(2 / fan_in)),
 * zero biases. Each epoch visits the training set in a fresh permutation; the last, partial batch
 * is dropped. All randomness (init, permutations) comes from the seed through splitmix64, so a run
 * is a function of (data, parameters, seed); the matrix products are OpenBLAS sgemm with ctx's
 * threads, so bit-identical results are promised for the same thread count.
 *
 * File (safetensors, F32): fc1.weight [h1, in], fc1.bias [h1], fc2.weight [h2, h1], fc2.bias [h2],
 * fc3.weight [classes, h2], fc3.bias [classes] (PyTorch nn.Linear layout: y = x W^T + b);
 * metadata "cleardit_classifier" = "mlp", "image" = "<cols>x<rows>", plus the caller's pairs. */
#ifndef CD_CLASSIFIER_H
#define CD_CLASSIFIER_H

#include "idx.h"

typedef struct {
    int32_t in, h1, h2, classes;
    int32_t rows, cols; /* image size; rows * cols == in */
    float *w1, *b1;     /* [h1, in], [h1] */
    float *w2, *b2;     /* [h2, h1], [h2] */
    float *w3, *b3;     /* [classes, h2], [classes] */
    float *params;      /* the one block the six tensors live in */
    size_t n_params;
} cd_classifier;

/* After each epoch: the mean training loss and accuracy of that epoch's batches. */
typedef void (*cd_clf_progress_fn)(void *user, int epoch, int epochs, double loss, double acc, double elapsed_s);

typedef struct {
    int32_t h1, h2;  /* hidden widths */
    int32_t classes; /* outputs; every label must be below it */
    int32_t epochs, batch;
    double lr; /* Adam's peak learning rate */
    uint64_t seed;
    cd_clf_progress_fn progress; /* may be NULL */
    void *user;
} cd_clf_train_params;

/* 256, 128, 10 classes, 8 epochs, batch 128, lr 1e-3, seed 0. */
cd_clf_train_params cd_clf_train_defaults(void);

/* Trains a classifier on d (images [n, rows, cols] u8, labels [n]). CD_ERR_INVALID_ARG for bad
 * parameters, a label >= classes, or fewer images than one batch. */
cd_status cd_clf_train(cd_ctx *ctx, const cd_dataset *d, const cd_clf_train_params *p, cd_classifier **out);

/* Saves atomically (cd_st_write); meta: n_meta extra (key, value) pairs, may be NULL. */
cd_status cd_clf_save(cd_ctx *ctx, const cd_classifier *c, const char *path, const char *const *meta, size_t n_meta);
/* Loads a file written by cd_clf_save. Not a classifier (no "cleardit_classifier" metadata, a
 * missing tensor, a wrong dtype or inconsistent shapes) is CD_ERR_FORMAT with a message naming
 * the file; other errors as cd_st_open. */
cd_status cd_clf_load(cd_ctx *ctx, const char *path, cd_classifier **out);
void cd_clf_free(cd_classifier *c);

/* Predicted classes (argmax of the logits, the lowest index on ties) of n images of rows x cols:
 * u8 [n, rows, cols], or f32 [n, rows, cols] in [-1, 1]. */
cd_status cd_clf_predict_u8(cd_ctx *ctx, const cd_classifier *c, const uint8_t *images, size_t n, int32_t *labels);
cd_status cd_clf_predict_f32(cd_ctx *ctx, const cd_classifier *c, const float *images, size_t n, int32_t *labels);

/* Fraction of d classified correctly; d's image size must be the classifier's. */
cd_status cd_clf_accuracy(cd_ctx *ctx, const cd_classifier *c, const cd_dataset *d, double *acc);

#endif
