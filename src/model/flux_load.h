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
cd_status cd_flux_bind(cd_ctx *ctx, const cd_ckpt *ck, const cd_flux_config *cfg, int bfl,
                       cd_flux_weights *w, cd_flux_store *store);
void cd_flux_store_free(cd_flux_store *s);

#endif
