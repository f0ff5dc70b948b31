/* flux_grad.h — the backward of the FLUX transformer: gradients of every parameter for one batch
 * item, given the gradient of the output (and, for distillation, extra gradients on chosen
 * layers' attention outputs), from the tape that model/flux.c's cd_flux_forward records. Written
 * once against the forward ops table (ops.h), the backward ops table (ops_bwd.h) and an attention
 * backward. Library-private.
 *
 * Letters: T text, L image, N = T + L tokens; D hidden, F mlp hidden, NH x HD heads. */
#ifndef CD_FLUX_GRAD_H
#define CD_FLUX_GRAD_H

#include "../model/flux.h"
#include "../ops/ops_bwd.h"

typedef cd_status (*cd_attn_bwd_fn)(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                                    const float *spatial_weight, const float *o, const float *lse, const float *dout,
                                    float *dq, float *dk, float *dv, float *dspatial_weight);

typedef struct {
    const cd_ops *f;
    const cd_ops_bwd *b;
    cd_attn_bwd_fn attn_bwd;
} cd_grad_ops;

/* The CPU backends: fast (ops_cpu + bwd_cpu + cd_attention_backward) and reference. */
cd_grad_ops cd_grad_ops_cpu(void);
cd_grad_ops cd_grad_ops_ref(void);

/* Everything one training forward + backward needs, for up to max_tokens tokens (host memory):
 * the forward's arena, its tape, and the backward's scratch. */
typedef struct {
    cd_flux_arena arena; /* the forward's scratch */
    cd_flux_tape tape;   /* what the forward records; the backward reads it */
    float *block;        /* the tape's buffers and the scratch below (one allocation) */
    size_t bytes;
    /* backward scratch */
    float *dx, *dxn, *dtmp, *drow[3], *dhead[4], *dbig, *dmod, *dvec, *dvec2;
} cd_flux_grad_work;

cd_status cd_flux_grad_work_init(cd_ctx *ctx, const cd_flux_config *cfg, size_t max_tokens, cd_flux_grad_work *t);
void cd_flux_grad_work_free(cd_flux_grad_work *t);

/* cd_flux_forward with t's arena and tape (out [L, out_channels]). */
cd_status cd_flux_grad_forward(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_weights *w,
                               const cd_flux_run_params *p, cd_flux_grad_work *t, float *out);

/* Backward of the last forward on t (with the same p): accumulates (+=) into the gradient weights
 * g (bound by cd_params_bind to the gradient buffer: the same struct as w), given dout
 * [L, out_channels] and optional per-layer extra gradients dattn[layer] [N, D] on the attention
 * output rows (NULL or NULL entries: none). */
cd_status cd_flux_grad_backward(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_weights *w,
                                const cd_flux_run_params *p, cd_flux_grad_work *t, const float *dout,
                                const float *const *dattn, cd_flux_weights *g);

#endif
