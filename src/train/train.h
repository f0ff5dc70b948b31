/* train.h — the training engine (library-private): a FLUX-architecture model's parameters as one
 * named f32 buffer (params.h), a task that turns (step, item) into a loss and its gradients
 * (through flux_grad.h), and around it: parallel batch slices, gradient reduction, clipping,
 * AdamW with linear warmup on the trainable parameters, an EMA of the weights, atomic state files
 * every K steps and bit-identical resume.
 *
 * Determinism: a task must draw its randomness from (seed, step, item) only (counter-based
 * Philox), so a step depends on nothing but the weights and the optimizer moments. Batches run as
 * `workers` slices (worker i takes items [i B / W, (i + 1) B / W)), each single-threaded with its
 * own context, tape and gradient buffer; slices are summed in worker order. A resumed run repeats
 * an uninterrupted one bit for bit given the same workers, batch, seed and model (checked).
 *
 * Two tasks: train_fmnist.c (the shipped model from scratch) and distill.c (CLEAR distillation). */
#ifndef CD_TRAIN_H
#define CD_TRAIN_H

#include "flux_grad.h"
#include "params.h"

typedef void (*cd_train_progress_fn)(void *user, int64_t step, int64_t steps, double loss, double grad_norm, double lr,
                                     double elapsed_s);

/* What every worker owns; the task's per-worker scratch hangs off `scratch`. */
typedef struct {
    cd_ctx *ctx;             /* single-threaded */
    cd_flux_grad_work work;  /* the forward's arena, tape and the backward's scratch */
    cd_flux_grad_work work2; /* a second set for tasks that run two models (teacher + student) */
    float *grad;             /* [params total] */
    cd_flux_weights g;       /* bound to grad */
    void *scratch;
    cd_status st;
    double loss;
} cd_train_worker;

typedef struct {
    const char *name; /* for messages and the state file ("fmnist", "distill") */
    cd_flux_config cfg;
    int32_t down; /* spatial weights of the trained model (0 = none) */
    int rope_axes[3];
    double rope_theta;
    const float *init; /* initial parameters laid out by cd_params_list (NULL: cd_params_init) */
    int clear_only;    /* train only the CLEAR subset (docs/distillation.md); others frozen */
    size_t tokens;     /* the tapes' size */
    int tapes;         /* 1 or 2 */
    /* per worker: allocate / free the task's scratch */
    cd_status (*worker_init)(void *task, cd_train_worker *w);
    void (*worker_free)(void *task, cd_train_worker *w);
    /* accumulate into w->g the gradient of (1 / batch) * loss(item) and add loss(item) to w->loss */
    cd_status (*item)(void *task, cd_train_worker *w, const cd_flux_weights *weights, int64_t step, int64_t item);
    void *task;
    const char *const *meta; /* extra metadata for the model file (pairs), e.g. prompts */
    size_t n_meta;
} cd_train_task;

typedef struct {
    const char *out;   /* final model: EMA weights (task->clear_only: the CLEAR subset only) */
    const char *state; /* training state, written every save_every steps and at the end */
    int resume;
    int64_t steps, batch, save_every, warmup;
    uint64_t seed;
    double lr, weight_decay;
    float clip, ema_decay;
    int workers;
    int out_bf16;
    const char *freeze;   /* comma-separated fnmatch globs of parameter names kept frozen (NULL: none) */
    const char *log_path; /* optional CSV: step,loss,grad_norm,lr,seconds (appended on resume) */
    int64_t kill_after;   /* tests: SIGKILL the process right after this step (0 = never) */
    cd_train_progress_fn progress;
    void *user;
} cd_train_params;

cd_status cd_train_run(cd_ctx *ctx, const cd_train_task *task, const cd_train_params *p);

/* ---- the Fashion-MNIST task (train_fmnist.c) ------------------------------------------------
 * 28x28 grey images in [-1, 1] as a [1, 28, 28] latent packed in 2x2 patches (14x14 tokens of 4
 * channels); class-conditional through one text token and the pooled vector, both one-hot over the
 * 10 classes (the prompt table of idx.h); no guidance embedding (schnell-like). Loss: rectified
 * flow, t ~ logit-normal(0, 1) (SD3 / FLUX training), x_t = (1 - t) x0 + t n, target n - x0. */
typedef struct {
    const char *data_dir; /* NULL = Debian's dataset-fashion-mnist directory */
    int32_t hidden, heads, depth, depth_single;
} cd_fmnist_params;

cd_flux_config cd_train_fmnist_config(int32_t hidden, int32_t heads, int32_t depth, int32_t depth_single);
/* RoPE axes for a head_dim: (hd/8 rounded down to even, at least 2; then the rest in two even parts). */
void cd_train_rope_axes(int32_t head_dim, int axes[3]);
/* The task's conditioning for class c: txt [1, 10] and pooled [10], one-hot. */
void cd_fmnist_condition(int c, float *txt, float *pooled);
cd_status cd_train_fmnist(cd_ctx *ctx, const cd_fmnist_params *fp, const cd_train_params *p);

#endif
