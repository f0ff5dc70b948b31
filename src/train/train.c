/* train.c — the training engine (train.h): worker slices, gradient reduction, clipping, AdamW with
 * warmup on the trainable parameters, EMA, atomic state files and bit-identical resume. */
#include "train.h"
#include "optim.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    cd_param_list pl;
    float *p, *m, *v, *ema;   /* [total] each */
    unsigned char *trainable; /* [n params] */
} train_state;

static void config_string(const cd_train_task *t, char *s, size_t n) {
    const cd_flux_config *c = &t->cfg;
    snprintf(s, n, "task=%s,hidden=%d,heads=%d,depth=%d,depth_single=%d,in=%d,ctx=%d,pooled=%d,guidance=%d,down=%d",
             t->name, c->hidden, c->heads, c->depth, c->depth_single, c->in_channels, c->context_dim, c->pooled_dim,
             c->guidance, t->down);
}

/* The state (params, ema, AdamW moments; every tensor F32) or, with model_only, the EMA weights as
 * a model file (only the trainable subset when the task trains a subset: a CLEAR file). */
static cd_status save(cd_ctx *ctx, const char *path, const train_state *s, const cd_train_task *task,
                      const cd_train_params *p, int64_t step, int model_only) {
    const cd_param_list *pl = &s->pl;
    const int groups = model_only ? 1 : 4;
    cd_st_out *o = calloc(pl->n * (size_t)groups, sizeof *o);
    char(*names)[CD_PARAM_NAME_MAX + 8] = calloc(pl->n * (size_t)groups, sizeof *names);
    uint16_t *bf = model_only && p->out_bf16 ? malloc(pl->total * sizeof(uint16_t)) : NULL;
    const char **meta = calloc(24 + task->n_meta, sizeof *meta);
    if (!o || !names || !meta || (model_only && p->out_bf16 && !bf)) {
        free(o);
        free(names);
        free(bf);
        free(meta);
        return cd_set_error(ctx, CD_ERR_OOM, "train: out of memory saving %s", path);
    }
    static const char *const pre[4] = {"", "ema.", "adam_m.", "adam_v."};
    const float *src[4] = {model_only ? s->ema : s->p, s->ema, s->m, s->v};
    if (bf)
        for (size_t i = 0; i < pl->total; i++) bf[i] = cd_f32_to_bf16(s->ema[i]);
    size_t n = 0;
    for (int gi = 0; gi < groups; gi++)
        for (size_t i = 0; i < pl->n; i++) {
            const cd_param *q = &pl->p[i];
            if (model_only && task->clear_only && !s->trainable[i]) continue;
            cd_st_out *t = &o[n];
            snprintf(names[n], sizeof names[0], "%s%s", pre[gi], q->name);
            t->name = names[n];
            t->dtype = bf ? CD_DTYPE_BF16 : CD_DTYPE_F32;
            t->ndim = q->ndim;
            for (int d = 0; d < q->ndim; d++) t->shape[d] = q->shape[d];
            t->data = bf ? (const void *)(bf + q->offset) : (const void *)(src[gi] + q->offset);
            n++;
        }
    char cfg[256], ax[64], th[32], st[32], seed[32], wk[16], bt[32];
    config_string(task, cfg, sizeof cfg);
    snprintf(ax, sizeof ax, "%d,%d,%d", task->rope_axes[0], task->rope_axes[1], task->rope_axes[2]);
    snprintf(th, sizeof th, "%.17g", task->rope_theta);
    snprintf(st, sizeof st, "%lld", (long long)step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    snprintf(wk, sizeof wk, "%d", p->workers);
    snprintf(bt, sizeof bt, "%lld", (long long)p->batch);
    size_t nm = 0;
#define M(k, v) (meta[2 * nm] = (k), meta[2 * nm + 1] = (v), nm++)
    M("cleardit_config", cfg);
    M("step", st);
    if (!(model_only && task->clear_only)) {
        M("rope_axes", ax);
        M("rope_theta", th);
    }
    if (model_only) {
        for (size_t i = 0; i < task->n_meta; i++) M(task->meta[2 * i], task->meta[2 * i + 1]);
    } else {
        M("seed", seed);
        M("workers", wk);
        M("batch", bt);
    }
#undef M
    cd_status r = cd_st_write(ctx, path, o, n, meta, nm);
    free(o);
    free(names);
    free(bf);
    free(meta);
    return r;
}

static cd_status load_state(cd_ctx *ctx, const char *path, train_state *s, const cd_train_task *task,
                            const cd_train_params *p, int64_t *step) {
    cd_st_file *f = NULL;
    cd_status st = cd_st_open(ctx, path, &f);
    if (st) return st;
    char cfg[256], wk[16], bt[32], seed[32];
    config_string(task, cfg, sizeof cfg);
    snprintf(wk, sizeof wk, "%d", p->workers);
    snprintf(bt, sizeof bt, "%lld", (long long)p->batch);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    const char *keys[4] = {"cleardit_config", "workers", "batch", "seed"}, *want[4] = {cfg, wk, bt, seed};
    const char *flag[4] = {"model and task", "--workers", "--batch", "--seed"};
    for (int i = 0; i < 4 && !st; i++) {
        const char *v = cd_st_meta(f, keys[i]);
        if (!v || strcmp(v, want[i]))
            st = cd_set_error(ctx, CD_ERR_INVALID_ARG,
                              "%s: the state was made with %s '%s', this run asks for '%s' (resume with the same %s)",
                              path, keys[i], v ? v : "(none)", want[i], flag[i]);
    }
    const char *sv = cd_st_meta(f, "step");
    if (!st && (!sv || (*step = strtoll(sv, NULL, 10)) < 0))
        st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: no step in the state file", path);
    static const char *const pre[4] = {"", "ema.", "adam_m.", "adam_v."};
    float *dst[4] = {s->p, s->ema, s->m, s->v};
    for (int gi = 0; gi < 4 && !st; gi++)
        for (size_t i = 0; i < s->pl.n && !st; i++) {
            char name[CD_PARAM_NAME_MAX + 8];
            snprintf(name, sizeof name, "%s%s", pre[gi], s->pl.p[i].name);
            const cd_st_tensor *t = cd_st_find(f, name);
            if (!t || t->dtype != CD_DTYPE_F32 || cd_st_numel(t) != s->pl.p[i].numel)
                st = cd_set_error(ctx, CD_ERR_FORMAT, "%s: tensor '%s' is missing or has another shape", path, name);
            else
                st = cd_st_to_f32(ctx, t, dst[gi] + s->pl.p[i].offset);
        }
    cd_st_close(f);
    return st;
}

static void run_slice(const cd_train_task *task, cd_train_worker *w, const cd_flux_weights *weights, size_t total,
                      int64_t step, int64_t i0, int64_t i1) {
    memset(w->grad, 0, total * sizeof(float));
    w->loss = 0;
    w->st = CD_OK;
    for (int64_t it = i0; it < i1 && !w->st; it++) w->st = task->item(task->task, w, weights, step, it);
}

cd_status cd_train_run(cd_ctx *ctx, const cd_train_task *task, const cd_train_params *p) {
    if (p->steps < 1 || p->batch < 1 || p->workers < 1 || p->workers > 256 || !(p->lr > 0) || p->save_every < 0 ||
        !p->state)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "train: steps, batch, workers, lr and a state path are required");
    train_state s = {0};
    cd_flux_weights w = {0};
    cd_train_worker *wk = calloc((size_t)p->workers, sizeof *wk);
    float *gsum = NULL;
    FILE *log = NULL;
    int64_t step0 = 0;
    cd_status st = CD_OK;
    if (!wk || (st = cd_params_list(ctx, &task->cfg, task->down, &s.pl))) {
        if (!st) st = cd_set_error(ctx, CD_ERR_OOM, "train: out of memory");
        goto done;
    }
    const size_t total = s.pl.total;
    s.p = calloc(total, sizeof(float));
    s.m = calloc(total, sizeof(float));
    s.v = calloc(total, sizeof(float));
    s.ema = calloc(total, sizeof(float));
    s.trainable = calloc(s.pl.n, 1);
    gsum = calloc(total, sizeof(float));
    if (!s.p || !s.m || !s.v || !s.ema || !s.trainable || !gsum) {
        st = cd_set_error(ctx, CD_ERR_OOM, "train: out of memory for %zu parameters", total);
        goto done;
    }
    size_t n_train = 0;
    for (size_t i = 0; i < s.pl.n; i++) {
        s.trainable[i] =
            (!task->clear_only || s.pl.p[i].clear) && !(p->freeze && cd_name_matches(p->freeze, s.pl.p[i].name));
        n_train += s.trainable[i] ? s.pl.p[i].numel : 0;
    }
    if (!n_train) {
        st = cd_set_error(ctx, CD_ERR_INVALID_ARG, "train: --freeze '%s' leaves no parameter to train",
                          p->freeze ? p->freeze : "");
        goto done;
    }
    if (p->resume) {
        if ((st = load_state(ctx, p->state, &s, task, p, &step0))) goto done;
    } else {
        if (task->init)
            memcpy(s.p, task->init, total * sizeof(float));
        else
            cd_params_init(&s.pl, s.p, p->seed);
        memcpy(s.ema, s.p, total * sizeof(float));
    }
    if ((st = cd_params_bind(ctx, &s.pl, s.p, &w))) goto done;
    memcpy(w.rope_axes, task->rope_axes, sizeof w.rope_axes);
    w.rope_theta = task->rope_theta;
    for (int i = 0; i < p->workers; i++) {
        cd_train_worker *k = &wk[i];
        cd_ctx_params cp = cd_ctx_params_default();
        cp.threads = 1;
        if ((st = cd_ctx_create(&cp, &k->ctx)) ||
            (st = cd_flux_grad_work_init(ctx, &task->cfg, task->tokens, &k->work)) ||
            (task->tapes > 1 && (st = cd_flux_grad_work_init(ctx, &task->cfg, task->tokens, &k->work2))))
            goto done;
        k->grad = calloc(total, sizeof(float));
        if (!k->grad) {
            st = cd_set_error(ctx, CD_ERR_OOM, "train: out of memory");
            goto done;
        }
        if ((st = cd_params_bind(ctx, &s.pl, k->grad, &k->g))) goto done;
        if (task->worker_init && (st = task->worker_init(task->task, k))) goto done;
    }
    if (p->log_path && !(log = fopen(p->log_path, p->resume ? "a" : "w"))) {
        st = cd_set_error(ctx, CD_ERR_IO, "train: cannot write the log %s", p->log_path);
        goto done;
    }
    const double t0 = now_s();
    const int threads = cd_ctx_threads(ctx);
    for (int64_t step = step0 + 1; step <= p->steps; step++) {
#pragma omp parallel for num_threads(p->workers) schedule(static, 1)
        for (int i = 0; i < p->workers; i++)
            run_slice(task, &wk[i], &w, total, step, p->batch * i / p->workers, p->batch * (i + 1) / p->workers);
        double loss = 0;
        for (int i = 0; i < p->workers; i++) {
            if (wk[i].st) {
                st = cd_set_error(ctx, wk[i].st, "train: step %lld: %s", (long long)step, cd_ctx_error(wk[i].ctx));
                goto done;
            }
            loss += wk[i].loss;
        }
        loss /= (double)p->batch;
        memcpy(gsum, wk[0].grad, total * sizeof(float));
        for (int i = 1; i < p->workers; i++)
            for (size_t j = 0; j < total; j++) gsum[j] += wk[i].grad[j];
        /* the norm and the update cover the trainable parameters only */
        double ss = 0;
        for (size_t i = 0; i < s.pl.n; i++)
            if (s.trainable[i]) {
                const float *gp = gsum + s.pl.p[i].offset;
                const double nrm = cd_grad_norm(&gp, &s.pl.p[i].numel, 1, threads);
                ss += nrm * nrm;
            }
        const double gnorm = sqrt(ss);
        const float coef = cd_clip_coef(gnorm, p->clip);
        cd_adamw_cfg a = {p->lr, 0.9, 0.999, 1e-8, p->weight_decay};
        if (p->warmup > 0 && step <= p->warmup) a.lr = p->lr * (double)step / (double)p->warmup;
        for (size_t i = 0; i < s.pl.n; i++) {
            if (!s.trainable[i]) continue;
            const size_t o = s.pl.p[i].offset, n = s.pl.p[i].numel;
            cd_adamw_step(&a, step, s.p + o, gsum + o, coef, s.m + o, s.v + o, n, threads);
        }
        cd_ema_update(s.ema, s.p, total, step <= p->warmup ? 0.0f : p->ema_decay, threads);
        if (!isfinite(loss)) {
            st = cd_set_error(ctx, CD_ERR_INVALID_ARG, "train: the loss diverged at step %lld (lower --lr)",
                              (long long)step);
            goto done;
        }
        const double el = now_s() - t0;
        if (log) {
            fprintf(log, "%lld,%.9g,%.9g,%.9g,%.3f\n", (long long)step, loss, gnorm, a.lr, el);
            fflush(log);
        }
        if (p->progress) p->progress(p->user, step, p->steps, loss, gnorm, a.lr, el);
        if ((p->save_every > 0 && step % p->save_every == 0) || step == p->steps)
            if ((st = save(ctx, p->state, &s, task, p, step, 0))) goto done;
        if (p->kill_after > 0 && step == p->kill_after) raise(SIGKILL); /* tests: a crash mid-run */
    }
    (void)n_train;
    if (p->out) st = save(ctx, p->out, &s, task, p, p->steps, 1);
done:
    if (log) fclose(log);
    for (int i = 0; wk && i < p->workers; i++) {
        cd_train_worker *k = &wk[i];
        if (task->worker_free) task->worker_free(task->task, k);
        cd_params_unbind(&k->g);
        cd_flux_grad_work_free(&k->work);
        cd_flux_grad_work_free(&k->work2);
        free(k->grad);
        cd_ctx_free(k->ctx);
    }
    free(wk);
    cd_params_unbind(&w);
    free(s.p);
    free(s.m);
    free(s.v);
    free(s.ema);
    free(s.trainable);
    free(gsum);
    cd_params_free(&s.pl);
    return st;
}
