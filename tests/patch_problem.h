/* patch_problem.h — the small FLUX-shaped CLEAR problem the patch-parallelism tests share
 * (test_patch_single.c, test_cuda.c, mpi/test_patch.c): a random model (hidden 64, 2 x 32 heads,
 * 1 + 2 blocks, guidance), random inputs over an H x W grid with T text tokens, and, for pooled
 * keys (down >= 2), CLEAR spatial weights bound into the model (before it moves to a device). */
#ifndef CD_PATCH_PROBLEM_H
#define CD_PATCH_PROBLEM_H

#include "test.h"
#include "../src/model/flux_load.h"
#include "../src/pipeline/sampler.h"

typedef struct {
    int H, W, T, radius, down;
} patch_shape;

typedef struct {
    cd_flux_model *m;
    float *img, *txt, *pooled, *sw, *ids, *tids;
    cd_flux_run_params p; /* the forward's parameters over the buffers above */
    size_t nout;          /* output floats: L x 16 */
} patch_problem;

static inline void patch_problem_free(patch_problem *pp) {
    cd_flux_free(pp->m);
    free(pp->img);
    free(pp->txt);
    free(pp->pooled);
    free(pp->sw);
    free(pp->ids);
    free(pp->tids);
    memset(pp, 0, sizeof *pp);
}

/* CD_OK, or the failing status with ctx's error (nothing is kept then). */
static inline cd_status patch_problem_make(cd_ctx *ctx, const patch_shape *c, cd_dtype wdtype, patch_problem *pp) {
    static const cd_flux_config cfg = {64, 2, 32, 1, 2, 16, 16, 32, 24, 128, 1};
    static const int axes[3] = {8, 12, 12};
    const int L = c->H * c->W;
    memset(pp, 0, sizeof *pp);
    pp->img = test_rand_floats((size_t)L * 16, 1.0f, 1);
    pp->txt = test_rand_floats((size_t)(c->T + 1) * 32, 1.0f, 2);
    pp->pooled = test_rand_floats(24, 1.0f, 3);
    pp->sw = test_rand_floats((size_t)3 * 16, 0.3f, 4);
    pp->ids = (float *)malloc((size_t)L * 3 * sizeof(float));
    pp->tids = (float *)calloc((size_t)c->T * 3 + 3, sizeof(float));
    cd_status s = CD_OK;
    if (!pp->img || !pp->txt || !pp->pooled || !pp->sw || !pp->ids || !pp->tids)
        s = cd_set_error(ctx, CD_ERR_OOM, "patch problem: out of memory");
    if (!s) s = cd_flux_random(ctx, &cfg, wdtype, axes, 10000.0, 11, &pp->m);
    if (!s) s = cd_flux_img_ids(ctx, (size_t)c->H, (size_t)c->W, pp->ids);
    if (s) {
        patch_problem_free(pp);
        return s;
    }
    if (c->down >= 2) { /* one down x down spatial weight per layer (1 + 2), around the mean */
        cd_flux_weights *w = (cd_flux_weights *)cd_flux_model_weights(pp->m);
        for (int i = 0; i < 3 * c->down * c->down; i++) pp->sw[i] += 1.0f / (float)(c->down * c->down);
        w->spatial_weight = pp->sw;
        w->spatial_down = c->down;
    }
    pp->p = (cd_flux_run_params){pp->img, pp->txt, pp->pooled, pp->ids,   pp->tids, 0.6f, 3.0f, L,
                                 c->T,    c->H,    c->W,       c->radius, c->down,  NULL, 0,    0};
    pp->nout = (size_t)L * 16;
    return CD_OK;
}

#endif
