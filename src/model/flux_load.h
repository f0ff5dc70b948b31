/* flux_load.h — binding a checkpoint to cd_flux_weights (flux_load.c). */
#ifndef CD_FLUX_LOAD_H
#define CD_FLUX_LOAD_H

#include "flux.h"

/* What the binding owns: f32 biases, norm scales, converted or realigned weights, block arrays. */
typedef struct {
    char *arena;
    size_t bytes;
} cd_flux_store;

/* Binds every tensor of a FLUX model of config cfg from ck (bfl = 1: BFL names, else diffusers
 * names). Checks every shape first and allocates once; on error nothing is kept. */
cd_status cd_flux_bind(cd_ctx *ctx, const cd_ckpt *ck, const cd_flux_config *cfg, int bfl, cd_flux_weights *w,
                       cd_flux_store *store);
void cd_flux_store_free(cd_flux_store *s);

/* Overlays a CLEAR attention checkpoint (diffusers names, docs/distillation.md) on bound weights w:
 * re-points the image-stream to_q/to_k/to_v/to_out.0 of every double block and the to_q/to_k/to_v
 * of every single block (weight and bias, all required) to clear's tensors, and loads the
 * per-layer `...attn.processor.spatial_weight` (all layers or none; d x d elements, e.g. the
 * reference's [1,1,1,d,1,d,1]) into w->spatial_weight [layers][d*d] with w->spatial_down = d.
 * Any other tensor in clear (e.g. blocks the model does not have) is an error. The converted
 * biases and spatial weights live in `extra` (free with cd_flux_store_free after the last use of
 * w); clear must stay open while w is used. On error w is unchanged and nothing is kept. */
cd_status cd_flux_bind_clear(cd_ctx *ctx, const cd_ckpt *clear, cd_flux_weights *w, cd_flux_store *extra);

/* Every linear of a model in one list (flux_model.c): fills r (when not NULL) with the address of
 * each cd_lin and its shape; returns the count. */
typedef struct {
    cd_lin *l;
    int32_t out, in;
} cd_lin_ref;
size_t cd_flux_list_linears(cd_flux_weights *w, cd_lin_ref *r);

/* A copy of weights hw in a backend's memory (flux_device.c): every linear as BF16 (F32 weights are
 * rounded to nearest even), biases, norm scales and spatial weights as f32; one allocation of
 * ops->alloc plus host block arrays. dw's pointers point into it. */
typedef struct {
    const cd_ops *ops;
    cd_ctx *ctx; /* the context the memory was allocated with */
    void *block; /* backend memory */
    size_t bytes;
    cd_flux_double *dbl; /* host arrays of dw */
    cd_flux_single *sgl;
} cd_flux_dev_store;

cd_status cd_flux_weights_to_backend(cd_ctx *ctx, const cd_ops *ops, const cd_flux_weights *hw, cd_flux_weights *dw,
                                     cd_flux_dev_store *st);
void cd_flux_dev_store_free(cd_flux_dev_store *st);

/* The bound weights of a loaded (or random) model, for the trainer's copy (train/params.c). */
const cd_flux_weights *cd_flux_model_weights(const cd_flux_model *m);

#endif
