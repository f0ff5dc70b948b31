/* flux.h — the FLUX transformer: weights (pointers into the mapped checkpoint), the activation
 * arena, the forward pass written once against the ops table (src/ops/ops.h), and the tape a
 * training forward records for its backward (src/train/flux_grad.h).
 *
 * Internal layout: every projection is its own linear (q, k, v, proj_mlp split), whatever the
 * checkpoint stores: a BFL fused tensor is bound as row slices of itself (no copy). That also makes
 * loading CLEAR weights a matter of re-pointing the trained projections (docs/distillation.md).
 * Letters: L image tokens, T text tokens, N = T + L, D hidden, NH heads, HD head_dim, F mlp hidden. */
#ifndef CD_FLUX_H
#define CD_FLUX_H

#include "../ops/ops.h"

/* FLUX's fixed constants (docs/flux.md), shared by the forward and the backward. */
#define CD_FLUX_LN_EPS 1e-6f  /* LayerNorm (no affine) before every modulation */
#define CD_FLUX_RMS_EPS 1e-6f /* per-head QK RMSNorm */
#define CD_FLUX_TEMB 256      /* sinusoidal timestep / guidance embedding width */

typedef struct {
    cd_weight w;    /* [out, in] */
    const float *b; /* [out] f32 (biases are converted at load), or NULL */
} cd_lin;

typedef struct {
    cd_lin mod;                   /* [6D, D]: shift1 scale1 gate1 shift2 scale2 gate2 */
    cd_lin q, k, v;               /* [D, D] each */
    const float *norm_q, *norm_k; /* [HD] RMSNorm scales */
    cd_lin proj;                  /* [D, D] */
    cd_lin mlp0, mlp2;            /* [F, D], [D, F] */
} cd_flux_stream;                 /* one stream (image or text) of a double block */

typedef struct {
    cd_flux_stream img, txt;
} cd_flux_double;

typedef struct {
    cd_lin mod;                   /* [3D, D]: shift scale gate */
    cd_lin q, k, v;               /* [D, D] (rows 0..3D of BFL linear1) */
    cd_lin mlp_in;                /* [F, D] (rows 3D.. of BFL linear1; diffusers proj_mlp) */
    const float *norm_q, *norm_k; /* [HD] */
    cd_lin out;                   /* [D, D + F] (linear2 / proj_out) */
} cd_flux_single;

typedef struct {
    cd_flux_config cfg;
    int rope_axes[3];
    double rope_theta;
    cd_lin img_in, txt_in;           /* [D, in_channels], [D, context_dim] */
    cd_lin time_in1, time_in2;       /* [D, 256], [D, D] */
    cd_lin vec_in1, vec_in2;         /* [D, pooled_dim], [D, D] */
    cd_lin guid_in1, guid_in2;       /* present when cfg.guidance */
    cd_flux_double *dbl;             /* [depth] */
    cd_flux_single *sgl;             /* [depth_single] */
    cd_lin final_shift, final_scale; /* [D, D] each (halves of the final adaLN linear) */
    cd_lin final_out;                /* [out_channels, D] */
    const float *spatial_weight;     /* [depth + depth_single][down*down] or NULL (CLEAR) */
    int32_t spatial_down;            /* down of spatial_weight (0 when NULL) */
} cd_flux_weights;

/* Activation arena for up to max_tokens = T + L tokens (one batch item); one allocation in the
 * memory of the ops table it was made for (host, or a device), plus, for a device, one small host
 * staging block for what the host computes (embeddings, the RoPE table). */
typedef struct {
    size_t max_tokens;
    const cd_ops *ops; /* whose memory `block` is */
    cd_ctx *ctx;       /* the context it was allocated with (device memory is freed through it) */
    float *block;      /* everything below points into it */
    size_t bytes;
    float *x;         /* [N, D] residual stream: text rows then image rows */
    float *xn;        /* [N, D] normalized / modulated input of a linear */
    float *h;         /* [N, 3D + F] fused projections (q | k | v | mlp) */
    float *q, *k, *v; /* [NH, N, HD] heads-major attention inputs */
    float *o;         /* [NH, N, HD] attention output */
    float *lse;       /* [NH, N] */
    float *cat;       /* [N, D + F] attention rows | mlp activations (single-block linear2 input) */
    float *y;         /* [N, D] a block's output before the gated residual */
    float *vec;       /* [D] conditioning vector */
    float *mod;       /* [6D] modulation of the current stream */
    float *silu_vec;  /* [D] */
    float *tmp;       /* [D] */
    float *emb;       /* [256] */
    float *cs;        /* [N, HD/2, 2] RoPE table */
    float *ids;       /* [N, 3] joint ids */
    /* device backends only (NULL on host memory, where the caller's arrays are used directly):
     * input and output slots */
    float *in_img;    /* [N, in_channels] */
    float *in_txt;    /* [N, context_dim] */
    float *in_pooled; /* [pooled_dim] */
    float *out;       /* [N, out_channels] */
    /* host side of emb, cs, ids (the same pointers on host memory) */
    float *host; /* the staging block (device backends) */
    float *h_emb, *h_cs, *h_ids;
    /* the RoPE table in cs was computed for h_ids[0 .. cs_n), cs_axes and cs_theta (cs_n = 0:
     * none yet) */
    size_t cs_n;
    int cs_axes[3];
    double cs_theta;
} cd_flux_arena;

/* Host-memory arena (the CPU backends). */
cd_status cd_flux_arena_init(cd_ctx *ctx, const cd_flux_config *cfg, size_t max_tokens, cd_flux_arena *a);
/* Arena in ops's memory (a device for the CUDA backend). */
cd_status cd_flux_arena_init_ops(cd_ctx *ctx, const cd_ops *ops, const cd_flux_config *cfg, size_t max_tokens,
                                 cd_flux_arena *a);
void cd_flux_arena_free(cd_flux_arena *a);

/* Optional observer of the residual stream after every block (tests compare it per block with
 * the oracle): x [N, D], text rows first; block counts double blocks then single blocks. */
typedef struct {
    void (*after_block)(void *user, int block, const float *x, size_t n_tokens, size_t hidden);
    void *user;
} cd_flux_probe;

/* What a forward keeps for the backward of one layer (train/flux_grad.c), pointers into the tape's
 * memory (allocated by its owner). Rows are [N, D] row-major, text first. */
typedef struct {
    float *x_in;        /* [N, D] residual stream entering the block */
    float *mod;         /* [12D] double: img 6D | txt 6D; single: 3D */
    float *xn1;         /* [N, D] modulated LayerNorm of x_in (input of q, k, v (, mlp_in)) */
    float *qpre, *kpre; /* [N, D] q, k projections before RMSNorm */
    float *q, *k, *v;   /* [NH, N, HD] attention inputs (after RMSNorm and RoPE) */
    float *o;           /* [NH, N, HD] */
    float *lse;         /* [NH, N] */
    float *attn;        /* [N, D] attention output rows (before the output projection) */
    float *y1;          /* [N, D] double: proj(attn); single: out(cat) */
    float *x_mid;       /* [N, D] double: residual after the attention branch (single: NULL) */
    float *xn2;         /* [N, D] double: modulated LayerNorm of x_mid (single: NULL) */
    float *mlp_pre;     /* [N, F] MLP hidden before GELU */
    float *y2;          /* [N, D] double: MLP output (single: NULL) */
} cd_flux_tape_layer;

/* The activations a training forward records (llm.c style: the forward writes them, the backward
 * reads them), in the memory of the forward's ops table; sized for max_tokens by its owner. */
typedef struct {
    size_t max_tokens;
    size_t N;                  /* tokens of the last taped forward */
    cd_flux_tape_layer *layer; /* [depth + depth_single] */
    float *temb, *g_temb;      /* [256] each: timestep, guidance sinusoidal embeddings */
    float *t_h, *g_h, *p_h;    /* [D] each: the time, guidance, pooled embedders' hidden before SiLU */
    float *vec, *silu_vec;     /* [D] conditioning vector, and silu of it (every modulation's input) */
    float *cs;                 /* [N, HD] RoPE table */
    float *x_final;            /* [N, D] residual stream after the last block */
    float *mod_final;          /* [2D] final adaLN shift | scale */
    float *xn_final;           /* [L, D] input of the output projection */
} cd_flux_tape;

/* The attention of every layer of a forward with p (dense: the image as one row of L tokens), and
 * layer's spatial weights (pooled CLEAR keys), or NULL. */
cd_attn_desc cd_flux_attn_desc(const cd_flux_config *c, const cd_flux_run_params *p);
const float *cd_flux_spatial(const cd_flux_weights *w, const cd_flux_run_params *p, int layer);

/* out [L, out_channels] (host memory; p's arrays are host arrays too) for one batch item, with the
 * attention p->radius, p->down, p->attn_scale, p->rope_ntk in every layer (p->block_seconds is
 * cd_flux_run's, unused here). Never allocates (all scratch in the arena and ctx's reserved work).
 * The weights and the arena must live in ops's memory. probe may be NULL; it is called after
 * queued work finished, with x in ops's memory. tape: NULL for inference; otherwise the forward
 * also writes what the backward needs into it (the same ops on the same values: the output is
 * bit-identical to the untaped forward's). */
cd_status cd_flux_forward(cd_ctx *ctx, const cd_ops *ops, const cd_flux_weights *w, const cd_flux_run_params *p,
                          cd_flux_arena *a, float *out, const cd_flux_probe *probe, cd_flux_tape *tape);

#endif
