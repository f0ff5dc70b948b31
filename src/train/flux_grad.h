/* flux_grad.h — the FLUX transformer forward that keeps what its backward needs (the tape), and
 * that backward: gradients of every parameter for one batch item, given the gradient of the
 * output (and, for distillation, extra gradients on chosen layers' attention outputs). Written
 * once against the forward ops table (ops.h), the backward ops table (ops_bwd.h) and an attention
 * backward; the same math as model/flux.c (whose forward it must reproduce bit for bit with the
 * same ops). Library-private.
 *
 * Letters: T text, L image, N = T + L tokens; D hidden, F mlp hidden, NH x HD heads. */
#ifndef CD_FLUX_GRAD_H
#define CD_FLUX_GRAD_H

#include "../model/flux.h"
#include "../ops/ops_bwd.h"

typedef cd_status (*cd_attn_bwd_fn)(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                                    const float *v, const float *spatial_weight, const float *o,
                                    const float *lse, const float *dout, float *dq, float *dk, float *dv,
                                    float *dspatial_weight);

typedef struct {
    const cd_ops *f;
    const cd_ops_bwd *b;
    cd_attn_bwd_fn attn_bwd;
} cd_grad_ops;

/* The CPU backends: fast (ops_cpu + bwd_cpu + cd_attention_backward) and reference. */
cd_grad_ops cd_grad_ops_cpu(void);
cd_grad_ops cd_grad_ops_ref(void);

/* What one layer keeps (pointers into the tape's block). Rows are [N, D] row-major, text first. */
typedef struct {
    float *x_in;            /* [N, D] residual stream entering the block */
    float *mod;             /* [12D] double: img 6D | txt 6D; single: 3D */
    float *xn1;             /* [N, D] modulated LayerNorm of x_in (input of q, k, v (, mlp_in)) */
    float *qpre, *kpre;     /* [N, D] q, k projections before RMSNorm */
    float *q, *k, *v;       /* [NH, N, HD] attention inputs (after RMSNorm and RoPE) */
    float *o;               /* [NH, N, HD] */
    float *lse;             /* [NH, N] */
    float *attn;            /* [N, D] attention output rows (before the output projection) */
    float *y1;              /* [N, D] double: proj(attn); single: out(cat) */
    float *x_mid;           /* [N, D] double: residual after the attention branch */
    float *xn2;             /* [N, D] double: modulated LayerNorm of x_mid */
    float *mlp_pre;         /* [N, F] MLP hidden before GELU */
    float *y2;              /* [N, D] double: MLP output; single: unused */
} cd_tape_layer;

typedef struct {
    size_t max_tokens;
    float *block;
    size_t bytes;
    cd_tape_layer *layer;   /* [depth + depth_single] */
    float *temb, *t_h, *g_temb, *g_h, *p_h;  /* [256], [D], [256], [D], [D]: embedder inputs/hiddens */
    float *vec, *silu_vec;  /* [D] */
    float *cs;              /* [N, HD] RoPE table */
    float *ids;             /* [N, 3] */
    float *x_final;         /* [N, D] residual stream after the last block */
    float *mod_final;       /* [2D] shift | scale */
    float *xn_final;        /* [L, D] */
    /* backward scratch */
    float *dx, *dxn, *dtmp, *drow[3], *dhead[4], *dbig, *dmod, *dvec, *dvec2;
    size_t N;               /* tokens of the last forward */
} cd_flux_tape;

cd_status cd_flux_tape_init(cd_ctx *ctx, const cd_flux_config *cfg, size_t max_tokens, cd_flux_tape *t);
void cd_flux_tape_free(cd_flux_tape *t);

/* Forward with the tape (out [L, out_channels]). */
cd_status cd_flux_grad_forward(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_weights *w,
                               const cd_flux_attn *at, cd_flux_tape *tape, const cd_flux_inputs *in,
                               float *out);

/* Backward of the last forward on `tape`: accumulates (+=) into the gradient weights g (bound by
 * cd_params_bind to the gradient buffer: the same struct as w), given dout [L, out_channels] and
 * optional per-layer extra gradients dattn[layer] [N, D] on the attention output rows (NULL or
 * NULL entries: none). */
cd_status cd_flux_grad_backward(cd_ctx *ctx, const cd_grad_ops *ops, const cd_flux_weights *w,
                                const cd_flux_attn *at, cd_flux_tape *tape, const cd_flux_inputs *in,
                                const float *dout, const float *const *dattn, cd_flux_weights *g);

#endif
