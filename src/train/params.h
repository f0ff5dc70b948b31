/* params.h — the trainable parameters of a FLUX transformer as one f32 buffer with diffusers
 * names (library-private). The list fixes an order and an offset for every tensor; binding a
 * cd_flux_weights to a buffer makes the forward run on it (params) or makes the backward write
 * into it (gradients: the same struct, same offsets). Saved files use these names, so
 * cd_flux_load reads them back (the diffusers layout), and CLEAR files are the subset that
 * docs/distillation.md trains.
 *
 * The final adaLN is one tensor "norm_out.linear" [2D, D] in diffusers' order (scale rows, then
 * shift rows); final_scale / final_shift are bound as its halves. */
#ifndef CD_TRAIN_PARAMS_H
#define CD_TRAIN_PARAMS_H

#include "../model/flux.h"

#define CD_PARAM_NAME_MAX 96

typedef enum {
    CD_PARAM_LINEAR_W, /* [out, in] */
    CD_PARAM_BIAS,     /* [out] */
    CD_PARAM_NORM,     /* [HD] RMSNorm scale */
    CD_PARAM_SPATIAL,  /* [1, 1, 1, d, 1, d, 1] CLEAR spatial_weight (diffusers/reference shape) */
} cd_param_kind;

typedef struct {
    char name[CD_PARAM_NAME_MAX];
    cd_param_kind kind;
    int32_t ndim;
    int64_t shape[7];
    size_t offset, numel; /* in floats, into the buffer */
    int clear;            /* 1: trained by CLEAR distillation (docs/distillation.md) */
} cd_param;

typedef struct {
    cd_flux_config cfg;
    int32_t down; /* spatial_weight side (0 = none) */
    cd_param *p;
    size_t n;
    size_t total; /* floats */
} cd_param_list;

/* The list for cfg (with `down` >= 2: one spatial_weight per attention layer, after the rest).
 * Offsets are 16-float aligned. */
cd_status cd_params_list(cd_ctx *ctx, const cd_flux_config *cfg, int32_t down, cd_param_list *out);
void cd_params_free(cd_param_list *l);
const cd_param *cd_params_find(const cd_param_list *l, const char *name);

/* Binds w (cfg, every linear F32) to buf [l->total]; dbl/sgl arrays are allocated here and
 * released by cd_params_unbind. rope axes/theta are left to the caller. */
cd_status cd_params_bind(cd_ctx *ctx, const cd_param_list *l, float *buf, cd_flux_weights *w);
void cd_params_unbind(cd_flux_weights *w);

/* Copies every tensor of the weights `src` (F32 or BF16, e.g. a loaded model) into buf laid out
 * by l (the same config). */
cd_status cd_params_copy_from(cd_ctx *ctx, const cd_param_list *l, const cd_flux_weights *src, float *buf);

/* Initialisation for training from scratch: linear weights uniform(+-sqrt(6/(in+out))) (Xavier),
 * biases 0, norm scales 1, and zero for every modulation linear (adaLN-Zero: each block starts as
 * the identity) and the final projection; spatial weights 1/d^2. Counter-based: the same seed gives
 * the same values. */
void cd_params_init(const cd_param_list *l, float *buf, uint64_t seed);

#endif
