/* cleardit.h — public C API of cleardit.
 *
 * cleardit runs Diffusion Transformers (FLUX.1-shaped) with CLEAR attention: every image token
 * attends to all text tokens plus the image tokens inside an open disc of radius r around it.
 *
 * Conventions
 *  - Every function that can fail returns cd_status; details are in cd_ctx_error(ctx).
 *  - The library keeps no global mutable state, never prints and never exits.
 *  - Dimension letters: T text tokens, H x W image token grid, N = T + H*W joint sequence (text
 *    first), NH heads, HD head_dim, R radius, DF pooling (down) factor.
 *  - Sizes that are products of dimensions are size_t / uint64_t.
 */
#ifndef CLEARDIT_H
#define CLEARDIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLEARDIT_VERSION "0.1.0"

/* ---- status ------------------------------------------------------------------------------ */
typedef enum {
    CD_OK = 0,
    CD_ERR_INVALID_ARG, /* a parameter is out of range or inconsistent */
    CD_ERR_SHAPE,       /* tensor shapes do not match what the operation needs */
    CD_ERR_OOM,         /* an allocation failed */
    CD_ERR_IO,          /* open/read/write/rename failed */
    CD_ERR_FORMAT,      /* a file is malformed */
    CD_ERR_NOT_FOUND,   /* a named tensor or file is missing */
    CD_ERR_UNSUPPORTED, /* valid request this build or machine cannot serve */
    CD_ERR_INTERNAL,
    CD_ERR_CANCELLED /* a progress callback asked to stop */
} cd_status;

const char *cd_status_str(cd_status s);

/* ---- element types (the full safetensors set; compute accepts F32 and BF16) --------------- */
typedef enum {
    CD_DTYPE_F32 = 0,
    CD_DTYPE_BF16,
    CD_DTYPE_F16,
    CD_DTYPE_F64,
    CD_DTYPE_F8_E4M3,
    CD_DTYPE_F8_E5M2,
    CD_DTYPE_F8_E8M0,
    CD_DTYPE_F8_E4M3FNUZ,
    CD_DTYPE_F8_E5M2FNUZ,
    CD_DTYPE_F6_E2M3,
    CD_DTYPE_F6_E3M2,
    CD_DTYPE_F4,
    CD_DTYPE_BOOL,
    CD_DTYPE_U8,
    CD_DTYPE_I8,
    CD_DTYPE_I16,
    CD_DTYPE_U16,
    CD_DTYPE_I32,
    CD_DTYPE_U32,
    CD_DTYPE_I64,
    CD_DTYPE_U64,
    CD_DTYPE_C64,
    CD_DTYPE_COUNT
} cd_dtype;

const char *cd_dtype_name(cd_dtype t); /* "F32", "BF16", ... (safetensors spelling) */
int cd_dtype_bits(cd_dtype t);         /* storage bits per element */

/* ---- context ------------------------------------------------------------------------------ */
/* Instruction-set path for the CPU kernels. AUTO picks the best this machine supports. */
typedef enum {
    CD_ISA_AUTO = 0,
    CD_ISA_GENERIC, /* portable C (GCC vector extensions at the x86-64 baseline) */
    CD_ISA_AVX2,    /* AVX2 + FMA */
    CD_ISA_AVX512,  /* AVX-512 F/BW/DQ/VL (+ AVX512_BF16 when present) */
    CD_ISA_COUNT
} cd_isa;

const char *cd_isa_name(cd_isa isa);
/* 1 if this machine can run the path. The environment variable CLEARDIT_ISA caps the answer, so
 * that one machine runs what an older one would: generic | avx2 | avx512 (AVX-512 without the
 * AVX512_BF16 kernels) | avx512bf16 | auto (the default: everything the CPU has). */
int cd_isa_supported(cd_isa isa);
/* NULL when CLEARDIT_ISA is unset or valid for this CPU, else a one-line reason (contexts cannot be
 * created until it is fixed). */
const char *cd_isa_env_error(void);

typedef struct cd_ctx cd_ctx;

typedef struct {
    int threads; /* 0 = OpenMP default (all cores) */
    cd_isa isa;  /* CD_ISA_AUTO unless testing a specific path */
} cd_ctx_params;

cd_ctx_params cd_ctx_params_default(void);
cd_status cd_ctx_create(const cd_ctx_params *p, cd_ctx **out); /* out = NULL on failure */
void cd_ctx_free(cd_ctx *ctx);
const char *cd_ctx_error(const cd_ctx *ctx); /* last error message, "" if none */
cd_isa cd_ctx_isa(const cd_ctx *ctx);        /* the path actually used (never AUTO) */
int cd_ctx_threads(const cd_ctx *ctx);       /* threads actually used */
int cd_ctx_bf16(const cd_ctx *ctx);          /* 1 if the AVX512_BF16 kernels are in use */

/* ---- devices ------------------------------------------------------------------------------ */
/* Where models and attention layers compute. CUDA needs a build with nvcc (make finds it) and an
 * NVIDIA GPU of compute capability >= 8.0 (sm_80 and sm_90 code is built). */
typedef enum { CD_DEVICE_CPU = 0, CD_DEVICE_CUDA, CD_DEVICE_COUNT } cd_device;

const char *cd_device_name(cd_device d); /* "cpu", "cuda" */
/* Makes `dev` ready in ctx (CUDA: device 0, its stream and libraries, once per context). CPU always
 * succeeds; CUDA fails with CD_ERR_UNSUPPORTED and the reason (this build has no CUDA support, no
 * usable GPU or driver, a GPU older than sm_80). */
cd_status cd_device_open(cd_ctx *ctx, cd_device dev);
/* What dev is, after a successful open: "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)", or the CPU's
 * ISA path and threads. */
const char *cd_device_desc(cd_ctx *ctx, cd_device dev);
/* A CUDA device's dense bf16 tensor-core peak in FLOP/s from its SM count, clock and architecture
 * (to report fractions of peak); 0 for the CPU (benchmarks measure its FMA peak) or when unknown. */
double cd_device_peak_flops(cd_ctx *ctx, cd_device dev);

/* ---- attention ---------------------------------------------------------------------------- */
/* One attention layer over the joint sequence [text (T) | image (H*W, row-major)].
 *  radius == 0          : dense attention (every query sees every key).
 *  radius >= 1          : CLEAR. Text queries see all keys; an image query at (y,x) sees all text
 *                         keys and the image keys with (y-ky)^2 + (x-kx)^2 < radius^2.
 *  down >= 2 (CLEAR only): H and W divisible by down; (H/down)*(W/down) pooled keys/values, each the
 *                         spatial_weight-weighted sum of a down x down cell of image keys/values,
 *                         are appended for image queries only.
 *  scale == 0           : 1/sqrt(head_dim). */
typedef struct {
    int32_t heads;    /* NH >= 1 */
    int32_t head_dim; /* HD >= 1 (64 and 128 are the fast shapes) */
    int32_t text_len; /* T >= 0 */
    int32_t grid_h;   /* H >= 1 */
    int32_t grid_w;   /* W >= 1 */
    int32_t radius;   /* 0 = dense */
    int32_t down;     /* 0 or 1 = no pooling */
    float scale;      /* 0 = 1/sqrt(head_dim) */
} cd_attn_desc;

/* Checks a descriptor; fills ctx's error and returns CD_ERR_INVALID_ARG when it is not usable. */
cd_status cd_attn_validate(cd_ctx *ctx, const cd_attn_desc *d);

/* Exact number of allowed (query, key) pairs summed over the joint sequence, for one head. */
uint64_t cd_attn_pairs(const cd_attn_desc *d);
/* Forward FLOPs of one layer: 4 * pairs * heads * head_dim (2 for QK^T, 2 for PV). */
double cd_attn_flops(const cd_attn_desc *d);

/* q, k, v: [NH, N, HD] of `dtype` (F32 or BF16), contiguous.
 * spatial_weight: [DF, DF] f32 when d->down >= 2, else ignored (may be NULL).
 * o:   [NH, N, HD] f32.   lse: [NH, N] f32 natural-log sum of exp of the scaled scores (may be NULL).
 * Fast kernels (OpenMP threads, SIMD path of ctx), f32 accumulation, O(N) extra memory. */
cd_status cd_attention_forward(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dtype, const void *q, const void *k,
                               const void *v, const float *spatial_weight, float *o, float *lse);

/* Seconds of one attention layer d on dev: the median of `reps` timed calls after one warm-up, on
 * random inputs (uniform, never zeros) resident on the device. CUDA: bf16 q/k/v in device memory,
 * the kernels alone (pooled keys prepared once), timed with device events; CPU: cd_attention_forward
 * with BF16 inputs. Memory O(N * heads * head_dim). */
cd_status cd_attention_time(cd_ctx *ctx, cd_device dev, const cd_attn_desc *d, int reps, double *seconds);

/* Same contract, plain loops with double accumulation: the oracle of the fast kernels. */
cd_status cd_attention_reference(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dtype, const void *q, const void *k,
                                 const void *v, const float *spatial_weight, float *o, float *lse);

/* Backward of one attention layer (training / distillation), same masks and scale as the forward.
 * All f32: q, k, v, o, dout [NH, N, HD]; lse [NH, N] exactly as cd_attention_forward writes it
 * (natural log of the sum of exp of the scaled scores); o must be the forward's output for q, k, v.
 * Writes (overwrites) dq, dk, dv [NH, N, HD]. When d->down >= 2, ADDS the gradient of
 * spatial_weight [DF, DF] into dspatial_weight (it accumulates over calls/layers); otherwise both
 * spatial_weight and dspatial_weight are ignored (may be NULL). Gradients of pooled keys/values
 * flow back into dk/dv of the image tokens of each cell and into dspatial_weight.
 * P is recomputed from lse (no O(N^2) memory: scratch is O(N * HD) plus per-thread tiles, from the
 * context's work area). Results do not depend on the thread count (fixed reduction order). */
cd_status cd_attention_backward(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k, const float *v,
                                const float *spatial_weight, const float *o, const float *lse, const float *dout,
                                float *dq, float *dk, float *dv, float *dspatial_weight);

/* Same contract, plain loops with double accumulation: the oracle of cd_attention_backward. */
cd_status cd_attention_backward_reference(cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                                          const float *v, const float *spatial_weight, const float *o, const float *lse,
                                          const float *dout, float *dq, float *dk, float *dv, float *dspatial_weight);

/* ---- safetensors: hardened reader (io/safetensors.c), atomic writer --------------------- */
#define CD_MAX_DIMS 8

typedef struct {
    const char *name;
    cd_dtype dtype;
    int32_t ndim;
    int64_t shape[CD_MAX_DIMS];
    const void *data; /* points into the mapped file; NOT necessarily aligned */
    uint64_t nbytes;
} cd_st_tensor;

typedef struct cd_st_file cd_st_file;

/* Maps and validates `path`. On error *out = NULL and ctx's error names the file and the reason. */
cd_status cd_st_open(cd_ctx *ctx, const char *path, cd_st_file **out);
void cd_st_close(cd_st_file *f);
size_t cd_st_count(const cd_st_file *f);
const cd_st_tensor *cd_st_at(const cd_st_file *f, size_t i);
const cd_st_tensor *cd_st_find(const cd_st_file *f, const char *name); /* NULL if absent */
const char *cd_st_meta(const cd_st_file *f, const char *key);          /* NULL if absent */

/* Converts a tensor's elements to f32 (F32/BF16/F16/F8_E4M3/F8_E5M2 sources). dst holds numel. */
cd_status cd_st_to_f32(cd_ctx *ctx, const cd_st_tensor *t, float *dst);
/* The same sources to bf16: F32 and F16 round to nearest even, NaN stays NaN, the others are
 * exact. dst holds numel uint16_t (bf16 bit patterns). */
cd_status cd_st_to_bf16(cd_ctx *ctx, const cd_st_tensor *t, uint16_t *dst);
uint64_t cd_st_numel(const cd_st_tensor *t);

typedef struct {
    const char *name;
    cd_dtype dtype;
    int32_t ndim;
    int64_t shape[CD_MAX_DIMS];
    const void *data; /* numel * bits / 8 bytes */
} cd_st_out;

/* Writes a safetensors file atomically (temp file in the same directory, fsync, rename).
 * meta: n_meta (key, value) string pairs as meta[2i], meta[2i+1]; may be NULL when n_meta == 0. */
cd_status cd_st_write(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n, const char *const *meta,
                      size_t n_meta);

/* ---- checkpoints: one file, a sharded index, or a directory (io/ckpt.c) --------------------- */
/* A checkpoint is the union of the tensors of one .safetensors file, of the shards listed by a
 * `*.safetensors.index.json` (diffusers/transformers), or of the one model found in a directory
 * (a single .safetensors file or one index). Known key prefixes (e.g. ComfyUI's
 * "model.diffusion_model.") are stripped; names must be unique across shards. Tensor data stays
 * in the mapped files (zero-copy); nothing is read until a caller touches t->data. */
typedef struct cd_ckpt cd_ckpt;

cd_status cd_ckpt_open(cd_ctx *ctx, const char *path, cd_ckpt **out);
void cd_ckpt_close(cd_ckpt *c);
size_t cd_ckpt_count(const cd_ckpt *c);
const cd_st_tensor *cd_ckpt_at(const cd_ckpt *c, size_t i); /* name = stripped key */
const cd_st_tensor *cd_ckpt_find(const cd_ckpt *c, const char *name);
size_t cd_ckpt_files(const cd_ckpt *c); /* number of .safetensors files */
const char *cd_ckpt_file(const cd_ckpt *c, size_t i);
const char *cd_ckpt_prefix(const cd_ckpt *c);                /* the stripped prefix, "" if none */
const char *cd_ckpt_meta(const cd_ckpt *c, const char *key); /* metadata of the first file */

/* ---- layouts and configs (io/layout_*.c) ---------------------------------------------------- */
typedef enum {
    CD_LAYOUT_UNKNOWN = 0,
    CD_LAYOUT_FLUX_BFL,       /* FLUX transformer, BFL names (double_blocks.N.img_attn.qkv ...) */
    CD_LAYOUT_FLUX_DIFFUSERS, /* FluxTransformer2DModel names (transformer_blocks.N.attn.to_q ...) */
    CD_LAYOUT_AE_BFL,         /* FLUX autoencoder, BFL names (decoder.up.N.block.M ...) */
    CD_LAYOUT_AE_DIFFUSERS,   /* AutoencoderKL names (decoder.up_blocks.N.resnets.M ...) */
    CD_LAYOUT_CLEAR,          /* CLEAR attention weights only (diffusers names, docs/distillation.md) */
    CD_LAYOUT_T5,             /* T5 encoder, transformers' names (encoder.block.N.layer.0.SelfAttention.q ...) */
    CD_LAYOUT_CLIP_TEXT,      /* CLIP text model, transformers' names (text_model.encoder.layers.N ...) */
    CD_LAYOUT_COUNT
} cd_layout;

const char *cd_layout_name(cd_layout l); /* "flux-bfl", "flux-diffusers", "ae-bfl", ... */

/* FLUX transformer hyper-parameters, inferred from tensor shapes alone. */
typedef struct {
    int32_t hidden;       /* 3072 */
    int32_t heads;        /* 24 (hidden / head_dim; head_dim from the q/k norm scale) */
    int32_t head_dim;     /* 128 */
    int32_t depth;        /* double-stream blocks, 19 */
    int32_t depth_single; /* single-stream blocks, 38 */
    int32_t in_channels;  /* 64 */
    int32_t out_channels; /* 64 */
    int32_t context_dim;  /* 4096 (T5) */
    int32_t pooled_dim;   /* 768 (CLIP) */
    int32_t mlp_hidden;   /* 12288 */
    int32_t guidance;     /* 1: guidance embedder present (dev-like), 0: schnell-like */
} cd_flux_config;

/* FLUX autoencoder hyper-parameters, inferred from tensor shapes alone. */
typedef struct {
    int32_t in_channels;    /* 3 */
    int32_t out_channels;   /* 3 */
    int32_t ch;             /* 128 */
    int32_t ch_mult[8];     /* 1, 2, 4, 4 */
    int32_t n_mult;         /* 4 */
    int32_t num_res_blocks; /* 2 (decoder blocks per level: num_res_blocks + 1) */
    int32_t z_channels;     /* 16 */
    int32_t has_encoder, has_decoder;
} cd_ae_config;

/* A CLEAR attention file: which layers it carries and its down-sampling factor. */
typedef struct {
    int32_t depth, depth_single; /* blocks with trained slices */
    int32_t hidden;
    int32_t down; /* spatial_weight side, 0 if none */
} cd_clear_config;

/* A T5 encoder checkpoint (transformers' T5EncoderModel names: diffusers' text_encoder_2/,
 * ComfyUI's t5xxl_*.safetensors): shapes give everything but max_distance and eps, which come
 * from a config.json beside the weights when there is one (else T5's defaults, 128 and 1e-6). */
typedef struct {
    int32_t vocab;        /* 32128: embedding rows */
    int32_t d_model;      /* 4096 */
    int32_t d_kv;         /* 64 */
    int32_t heads;        /* 64 (columns of block 0's relative_attention_bias) */
    int32_t d_ff;         /* 10240 */
    int32_t layers;       /* 24 */
    int32_t buckets;      /* 32 (rows of relative_attention_bias) */
    int32_t max_distance; /* 128 */
    float eps;            /* 1e-6 */
    int32_t gated;        /* 1: wi_0 / wi_1 (T5 v1.1, FLUX's); 0: one wi (T5 v1.0) */
    int32_t scaled_fp8;   /* 1: ComfyUI's scaled fp8 (a scaled_fp8 marker, per-weight scale_weight) */
    int32_t from_config;  /* 1: a config.json beside the weights was read */
    cd_dtype wdtype;      /* dtype of the linear weights (block 0's q) */
} cd_t5_info;

/* A CLIP text model checkpoint (transformers' CLIPTextModel names: diffusers' text_encoder/,
 * ComfyUI's clip_l.safetensors). The head count is not in the shapes: config.json's when there,
 * else hidden / 64 (CLIP-L's and CLIP-G's head size). */
typedef struct {
    int32_t vocab;       /* 49408 */
    int32_t hidden;      /* 768 */
    int32_t heads;       /* 12 */
    int32_t inter;       /* 3072 */
    int32_t layers;      /* 12 */
    int32_t max_pos;     /* 77 */
    int32_t projection;  /* rows of text_projection.weight (768), 0 if absent (FLUX does not use it) */
    int32_t quick_gelu;  /* 1: hidden_act quick_gelu, 0: another activation, -1: unknown (no config.json) */
    int32_t eos_id;      /* config.json's eos_token_id (2 = the argmax-id rule), -1 if unknown */
    float eps;           /* 1e-5 */
    int32_t from_config; /* 1: a config.json beside the weights was read */
    cd_dtype wdtype;     /* dtype of the linear weights (layer 0's q_proj) */
} cd_clip_info;

/* What a checkpoint is: its layout, the inferred config, and how its tensors compare with the
 * tensors that layout + config expect (unknown, missing and wrong-shaped names are counted and
 * listed separately). */
typedef struct {
    cd_layout layout;
    cd_flux_config flux;   /* valid for the FLUX layouts */
    cd_ae_config ae;       /* valid for the AE layouts */
    cd_clear_config clear; /* valid for CD_LAYOUT_CLEAR; for the FLUX layouts only .down is
                                set: the side of carried spatial_weight tensors (0 if none) */
    cd_t5_info t5;         /* valid for CD_LAYOUT_T5 */
    cd_clip_info clip;     /* valid for CD_LAYOUT_CLIP_TEXT */
    size_t n_unknown, n_missing, n_bad_shape;
    char **unknown, **missing, **bad_shape; /* names (bad_shape: "name: got [..] want [..]") */
    uint64_t params;                        /* total elements */
    uint64_t bytes;                         /* total data bytes */
    uint64_t dtype_count[CD_DTYPE_COUNT];   /* tensors per dtype */
} cd_ckpt_info;

cd_status cd_ckpt_inspect(cd_ctx *ctx, const cd_ckpt *c, cd_ckpt_info *info);
void cd_ckpt_info_free(cd_ckpt_info *info);

/* Writes a single-file checkpoint of `in` in layout `to` (the same kind of model: FLUX <-> FLUX,
 * AE <-> AE), converting tensors to `dtype` (CD_DTYPE_COUNT = keep each tensor's dtype; F32 or
 * BF16 otherwise). With merge_clear != NULL, the CLEAR file's trained slices overwrite the
 * corresponding rows of the base model (inside fused BFL tensors too) and nothing else; its
 * spatial_weight tensors, if any, are carried under their diffusers names
 * ("[single_]transformer_blocks.N.attn.processor.spatial_weight") in either layout. Streams:
 * peak memory is about one output tensor, not the checkpoint. Atomic like cd_st_write. */
cd_status cd_ckpt_convert(cd_ctx *ctx, const cd_ckpt *in, const char *out_path, cd_layout to, cd_dtype dtype,
                          const cd_ckpt *merge_clear);

/* The same, calling progress(user, bytes written, total bytes) after each output tensor (the
 * library never prints; the CLI turns this into its progress lines). progress may be NULL. */
typedef void (*cd_progress_fn)(void *user, uint64_t done_bytes, uint64_t total_bytes);
cd_status cd_ckpt_convert_progress(cd_ctx *ctx, const cd_ckpt *in, const char *out_path, cd_layout to, cd_dtype dtype,
                                   const cd_ckpt *merge_clear, cd_progress_fn progress, void *user);

/* ---- the FLUX transformer (model/) ---------------------------------------------------------- */
typedef struct cd_flux_model cd_flux_model;

/* A model with random weights of the given config (F32 or BF16), for benchmarks and tests:
 * linears ~ N(0, 1/in) scaled, biases small, norm scales around 1. rope_axes {16,56,56}-like
 * must sum to head_dim. */
cd_status cd_flux_random(cd_ctx *ctx, const cd_flux_config *cfg, cd_dtype wdtype, const int rope_axes[3],
                         double rope_theta, uint64_t seed, cd_flux_model **out);
/* Loads a FLUX transformer from a checkpoint (file, sharded index or directory; BFL or diffusers
 * names; config inferred from the shapes). RoPE axes/theta are not stored in weights: they come
 * from a diffusers config.json beside the checkpoint (axes_dims_rope), else the safetensors
 * metadata ("rope_axes" = "16,56,56", "rope_theta"), else p->rope_axes/rope_theta when set, else
 * FLUX's (16, 56, 56) and 10000 when head_dim is 128; otherwise it is an error. With
 * p->clear_weights, a CLEAR attention file re-points the trained projections (docs/distillation.md). */
typedef struct {
    int rope_axes[3];          /* all 0 = not given */
    double rope_theta;         /* 0 = not given */
    const char *clear_weights; /* NULL = none */
} cd_flux_load_params;

cd_status cd_flux_load(cd_ctx *ctx, const char *path, const cd_flux_load_params *p, cd_flux_model **out);
const cd_flux_config *cd_flux_model_config(const cd_flux_model *m);
/* The RoPE axes/theta in use and where they came from ("config.json", "metadata", "flags",
 * "FLUX default"). */
void cd_flux_model_rope(const cd_flux_model *m, int axes[3], double *theta, const char **source);
int32_t cd_flux_model_clear_down(const cd_flux_model *m); /* spatial_weight side, 0 if none */
/* A metadata value of the model's checkpoint (NULL if absent or a random model), e.g. the
 * "cleardit_prompts" table of the models `cleardit train` writes. */
const char *cd_flux_model_meta(const cd_flux_model *m, const char *key);
void cd_flux_free(cd_flux_model *m);
/* Allocates the activation arena for up to max_tokens = T + L tokens (once; a forward never
 * allocates). */
cd_status cd_flux_reserve(cd_ctx *ctx, cd_flux_model *m, size_t max_tokens);
/* Moves where cd_flux_run computes. CUDA: one BF16 copy of every linear (F32 weights are rounded
 * to bf16), and the f32 biases, norm scales and spatial weights, in device memory; activation
 * arenas are then made there too (inputs and outputs of cd_flux_run stay host arrays). CPU: drops
 * the device copy. Errors: CD_ERR_UNSUPPORTED (see cd_device_open; head_dim other than 32/64/128),
 * CD_ERR_OOM naming the bytes. ctx must outlive the model while it is on a device. */
cd_status cd_flux_set_device(cd_ctx *ctx, cd_flux_model *m, cd_device dev);
cd_device cd_flux_model_device(const cd_flux_model *m);
size_t cd_flux_weight_bytes(const cd_flux_model *m);
size_t cd_flux_arena_bytes(const cd_flux_model *m);

typedef struct {
    const float *img;     /* [L, in_channels] */
    const float *txt;     /* [T, context_dim] */
    const float *pooled;  /* [pooled_dim] */
    const float *img_ids; /* [L, 3] */
    const float *txt_ids; /* [T, 3] */
    float timestep;       /* in [0, 1] (x1000 inside, as diffusers) */
    float guidance;       /* guidance models only (x1000 inside) */
    int32_t L, T, grid_h, grid_w;
    int32_t radius, down;  /* attention of every layer: 0 = dense; CLEAR radius, pooled factor */
    double *block_seconds; /* optional [depth + depth_single]: wall time of each block */
    /* High-resolution extras of the CLEAR reference pipeline (docs/clear.md), 0 = off: */
    float attn_scale; /* softmax scale of every layer; 0 = 1/sqrt(head_dim) (see cd_flux_proportional_scale) */
    double rope_ntk;  /* NTK RoPE: theta * rope_ntk (the reference high-res path uses 10) */
} cd_flux_run_params;

/* "Proportional attention" scale of the CLEAR high-resolution pipeline:
 * sqrt(log_4608(n_kv) / head_dim), n_kv = T + L keys of a dense row (10 * (T + L) with pooled
 * keys, down >= 2); 4608 = 64 * 64 + 512 is FLUX's training sequence length. */
float cd_flux_proportional_scale(int32_t head_dim, size_t T, size_t L, int32_t down);

/* out [L, out_channels]. */
cd_status cd_flux_run(cd_ctx *ctx, cd_flux_model *m, const cd_flux_run_params *p, float *out);

/* ---- patch parallelism: one image across processes (parallel/) -------------------------------
 * Rank i of P owns a horizontal band of the image token rows; linears, norms and MLPs run on its
 * own tokens (and the text tokens, which every rank holds), and each CLEAR attention layer needs
 * only r - 1 rows of keys/values from its neighbours (a halo; docs/clear.md). MPI builds only (the
 * Makefile finds OpenMPI); otherwise cd_comm_init fails with CD_ERR_UNSUPPORTED. GPU ranks (a model
 * on CD_DEVICE_CUDA) exchange their device buffers over NCCL (builds with CUDA and NCCL), one GPU
 * per rank. */
typedef struct cd_comm cd_comm;

int cd_comm_available(void); /* 1 when this build has MPI */
/* MPI_Init (argc/argv may be NULL) and the world communicator; once per process. */
cd_status cd_comm_init(cd_ctx *ctx, int *argc, char ***argv, cd_comm **out);
/* A communicator of this process alone (size 1, rank 0; no MPI, in every build): collectives are
 * local copies. Runs the patch-parallel code path on one process or one GPU (tests, and the
 * reference against which multi-rank runs are checked). cd_comm_free frees it (no MPI_Finalize). */
cd_status cd_comm_init_single(cd_ctx *ctx, cd_comm **out);
int cd_comm_rank(const cd_comm *c);
int cd_comm_size(const cd_comm *c);
/* Seconds any wait may last before it fails naming the silent ranks (default 300). */
void cd_comm_set_timeout(cd_comm *c, double seconds);
/* Fails (CD_ERR_INVALID_ARG, on every rank) unless every rank passed the same n bytes; `what`
 * names them in the message ("the generate arguments"). */
cd_status cd_comm_check_same(cd_ctx *ctx, cd_comm *c, const void *data, size_t n, const char *what);
/* Ends the whole job (MPI_Abort): for a rank that cannot go on while others may be waiting. */
void cd_comm_abort(cd_comm *c, int code);
void cd_comm_free(cd_comm *c); /* MPI_Finalize; NULL-safe */
typedef struct {
    uint64_t bytes_sent, bytes_received, messages;
    double wait_seconds; /* time spent blocked in waits */
} cd_comm_stats;
void cd_comm_stats_get(const cd_comm *c, cd_comm_stats *s);
void cd_comm_stats_reset(cd_comm *c);

/* Text queries attend to every image key, which no rank holds: EXACT merges every rank's partial
 * softmax (its own band's keys; the text keys counted once) by log-sum-exp, equal to one process up
 * to float reordering; APPROX is the paper's Eq. 7: each rank attends the text queries to the text
 * keys and its own band, and the outputs are averaged. */
typedef enum { CD_TEXT_EXACT = 0, CD_TEXT_APPROX } cd_text_attention;

/* Splits every later cd_flux_run of m across comm's processes (NULL: back to one process). Inputs
 * and outputs of cd_flux_run stay whole on every rank (each rank computes its band; the outputs are
 * all-gathered), so a sampler runs unchanged. CLEAR attention only (radius >= 1); every band needs
 * at least one token row (with pooled keys: one row of down x down cells). The model runs on its
 * device (cd_flux_set_device: call that first): on CUDA the build needs NCCL (else
 * CD_ERR_UNSUPPORTED), and this call creates the NCCL communicator (collective: every rank calls
 * it). Errors are the same on every rank where they come from the arguments. */
cd_status cd_flux_set_parallel(cd_ctx *ctx, cd_flux_model *m, cd_comm *comm, cd_text_attention mode);

/* ---- images: PNG files and pixel conversion (io/png.c) ------------------------------------- */
/* Images are 8-bit RGB, interleaved, row-major: rgb[(y * width + x) * 3 + c]. Both directions
 * accept sizes of 1..CD_PNG_MAX_SIDE per side and at most CD_PNG_MAX_PIXELS pixels. */
#define CD_PNG_MAX_SIDE 65536u
#define CD_PNG_MAX_PIXELS (1ull << 31)

/* Writes an 8-bit RGB PNG atomically (temp file in the same directory, fsync, rename; on error
 * the temp file is removed and PATH is untouched). text: n_text (key, value) pairs as text[2i],
 * text[2i+1] (may be NULL when n_text == 0), stored before the image data: ASCII values as tEXt,
 * other UTF-8 values as iTXt. Keys: 1-79 printable ASCII characters without leading, trailing or
 * double spaces, unique; values: UTF-8, at most 1 MiB; at most 256 pairs. */
cd_status cd_png_write(cd_ctx *ctx, const char *path, const uint8_t *rgb, uint32_t width, uint32_t height,
                       const char *const *text, size_t n_text);
/* Reads any PNG (gray, gray+alpha, palette, RGB, RGBA; 1-16 bits; interlaced or not) as 8-bit
 * RGB into *rgb (malloc'd; the caller frees it with free()). Gray is replicated to R = G = B,
 * 16-bit samples are scaled to 8 bits with rounding (v * 255 / 65535), and alpha (an alpha
 * channel or tRNS transparency) is dropped without compositing, like PIL's convert("RGB") in
 * BFL's reference code; gAMA/iCCP are ignored (no colour management). On error *rgb = NULL,
 * *width = *height = 0 and ctx's error names the file: CD_ERR_NOT_FOUND (no such file),
 * CD_ERR_IO (unreadable, a directory), CD_ERR_FORMAT (not a PNG, truncated, corrupt),
 * CD_ERR_UNSUPPORTED (beyond the size limits). */
cd_status cd_png_read(cd_ctx *ctx, const char *path, uint8_t **rgb, uint32_t *width, uint32_t *height);
/* The value of the first text chunk (tEXt, zTXt or iTXt, before or after the image data) whose
 * key is `key`, as a malloc'd UTF-8 string (tEXt/zTXt Latin-1 converted; iTXt as stored) that
 * the caller frees. Decodes the whole file (so a corrupt image is an error). CD_ERR_NOT_FOUND
 * when there is no such key; other errors as cd_png_read. */
cd_status cd_png_text(cd_ctx *ctx, const char *path, const char *key, char **value);

/* Decoded image -> pixels exactly as BFL's sample saving (flux/util.py save_image), in f32:
 * x clamped to [-1, 1] (NaN -> -1), then (uint8)(127.5f * (x + 1.0f)) truncated; so -1 -> 0,
 * 0 -> 127, 1 -> 255. img: planar f32 [3, height, width]; rgb: [height, width, 3]. */
void cd_image_to_rgb8(const float *img, uint32_t width, uint32_t height, uint8_t *rgb);
/* Pixels -> image in [-1, 1] as BFL's init-image loading: x = (float)u / 127.5f - 1.0f
 * (0 -> -1, 255 -> 1). rgb: [height, width, 3]; img: planar f32 [3, height, width].
 * With these two rules a pixel value u in 1..63 comes back as u - 1 (f32 rounding, then
 * truncation); every other value comes back unchanged. */
void cd_rgb8_to_image(const uint8_t *rgb, uint32_t width, uint32_t height, float *img);
/* Resizes 8-bit RGB src (sw x sh) to dst (dw x dh) exactly as Pillow's (>= 13)
 * Image.resize((dw, dh)) with its default filter for RGB, BICUBIC (a = -0.5, support scaled by
 * the reduction factor when downscaling): 8-bit fixed point, two separable passes in Pillow's
 * order (io/resize.c). Sizes as cd_png_read; same size copies. src and dst must not overlap.
 * CD_ERR_INVALID_ARG on bad arguments, CD_ERR_OOM when the intermediate buffers cannot be
 * allocated. Results do not depend on the thread count. */
cd_status cd_rgb8_resize(cd_ctx *ctx, const uint8_t *src, uint32_t sw, uint32_t sh, uint8_t *dst, uint32_t dw,
                         uint32_t dh);

/* ---- the pipeline: prompt -> image (pipeline/) ----------------------------------------------
 * A FLUX transformer (+ its autoencoder, + optional CLEAR attention weights) ready on a device,
 * and generation into an 8-bit RGB buffer: text-to-image, image-to-image (SDEdit: an init image
 * re-noised to `strength` of the schedule) and the CLEAR paper's high-resolution path (an init
 * image resized to the target size, then image-to-image with NTK RoPE, proportional attention
 * and a static schedule shift). docs/flux.md describes the sampler; docs/clear.md the attention.
 * The same parameters and seed give the same pixels for any thread count. */

/* The model shipped with the project (models/fmnist.safetensors, a 28x28 Fashion-MNIST
 * pixel-space model with a built-in prompt table, trained by `cleardit train`) and its distilled
 * CLEAR weights, embedded in libcleardit.a when they existed at build time. */
typedef enum { CD_EMBEDDED_MODEL = 0, CD_EMBEDDED_CLEAR } cd_embedded;
int cd_embedded_available(cd_embedded which); /* 1 when this build carries it */
/* Stages it as an anonymous memory file and writes its path ("/proc/self/fd/N", Linux) into
 * path[n] (n >= 32): a path every loader of this API accepts. *fd is the descriptor; close() it
 * when nothing will open the path again (models loaded from it keep their mappings).
 * CD_ERR_NOT_FOUND when this build does not carry it. */
cd_status cd_embedded_open(cd_ctx *ctx, cd_embedded which, char *path, size_t n, int *fd);
/* The radius and pooled-key side (0 = none) the embedded CLEAR weights were distilled for (their
 * metadata). CD_ERR_NOT_FOUND when this build does not carry them. */
cd_status cd_embedded_clear_attention(cd_ctx *ctx, int32_t *radius, int32_t *down);

typedef struct cd_pipeline cd_pipeline;

typedef struct {
    const char *model;                /* FLUX transformer checkpoint (as cd_flux_load), or a diffusers
                                         FLUX pipeline folder (its transformer/ and vae/); NULL = embedded */
    const char *ae;                   /* autoencoder checkpoint (BFL or diffusers names); NULL = the
                                         pipeline folder's vae/, else none (pixel-space models; a
                                         latent-space model then cannot generate) */
    const char *clear_weights;        /* CLEAR attention file re-pointing the trained projections; NULL = none */
    int32_t embedded_clear;           /* 1: with model and clear_weights NULL, the embedded CLEAR weights */
    int32_t encoder;                  /* 1: also load the autoencoder's encoder (image-to-image, upscale) */
    int32_t ae_groups;                /* GroupNorm groups of the autoencoder; 0 = 32 (FLUX's) */
    int rope_axes[3];                 /* as cd_flux_load_params: all 0 = from the checkpoint or FLUX's */
    double rope_theta;                /* 0 = from the checkpoint or 10000 */
    cd_device device;                 /* where the transformer runs (the autoencoder runs on the CPU) */
    cd_comm *comm;                    /* NULL = one process; else patch parallelism over comm's ranks */
    cd_text_attention text_attention; /* with comm */
} cd_pipeline_params;

cd_pipeline_params cd_pipeline_params_default(void); /* embedded model, CPU, no comm */
/* Opens dev in ctx (cd_device_open), loads the transformer (and CLEAR weights), moves it to the
 * device (cd_flux_set_device), splits it over comm (cd_flux_set_parallel; collective), loads the
 * autoencoder's decoder (and encoder). *out = NULL on failure. ctx must outlive the pipeline. */
cd_status cd_pipeline_open(cd_ctx *ctx, const cd_pipeline_params *p, cd_pipeline **out);
void cd_pipeline_free(cd_pipeline *p);                  /* NULL-safe; does not free the comm */
cd_flux_model *cd_pipeline_model(const cd_pipeline *p); /* owned by the pipeline */
int cd_pipeline_has_ae(const cd_pipeline *p);
/* A pixel-space model's native size (metadata "cleardit_image"): 1 when the model records one
 * (w, h >= 2, or both 0 when malformed), 0 for a latent-space model. */
int cd_pipeline_native_size(const cd_pipeline *p, int32_t *w, int32_t *h);
/* The step-count policy when none is asked for: 32 for pixel-space models, 28 for guidance
 * (dev-like) models, 4 for schnell-like ones. */
int32_t cd_pipeline_default_steps(const cd_pipeline *p);
/* The built-in prompt table (metadata "cleardit_prompts", comma-separated; prompt i conditions as
 * a one-hot txt [1, context_dim] and pooled [pooled_dim], both 1 at index i): the raw table (NULL
 * if none), its entry count, entry i copied into buf[n] (its length, -1 if out of range), and the
 * index of a name (ASCII case ignored; -1 if unknown or beyond the model's widths). */
const char *cd_pipeline_prompt_table(const cd_pipeline *p);
int cd_pipeline_prompt_count(const cd_pipeline *p);
int cd_pipeline_prompt_name(const cd_pipeline *p, int i, char *buf, size_t n);
int cd_pipeline_prompt_find(const cd_pipeline *p, const char *name);

/* After each Euler step i = 1..n (n = steps run; fewer than the schedule's for image-to-image)
 * with the seconds since sampling began, and once more with i = n + 1 after decoding. Return 0 to
 * go on, nonzero to stop: generation then fails with CD_ERR_CANCELLED. */
typedef int (*cd_gen_progress_fn)(void *user, int step, int steps, double elapsed_s);

/* Fields marked "0 = default" are filled by cd_pipeline_resolve. */
typedef struct {
    /* conditioning: a prompt of the model's table (by name, or by index when prompt is NULL), or
     * embeddings (prompt NULL, prompt_index < 0) */
    const char *prompt;
    int32_t prompt_index; /* -1 = none */
    const float *txt;     /* [T, context_dim] (T5) */
    int32_t T;
    const float *pooled;   /* [pooled_dim] (CLIP) */
    int32_t width, height; /* pixels, multiples of 2 x the autoencoder's factor (16 for FLUX);
                                  0 = the pixel-space model's native size, or the init image's */
    int32_t steps;         /* schedule steps; 0 = cd_pipeline_default_steps */
    float guidance;        /* distilled guidance of dev-like models (default 3.5) */
    uint64_t seed;
    int32_t radius, down; /* attention: radius 0 = dense; >= 1 CLEAR; down >= 2 pooled keys */
    int32_t shift;        /* resolution shift of the schedule: -1 auto (guidance models) */
    double time_shift;    /* > 0: static shift factor instead; 0 = default (3 with upscale) */
    /* image-to-image: init RGB8 [init_height, init_width, 3]; NULL = text-to-image */
    const uint8_t *init;
    uint32_t init_width, init_height;
    int32_t upscale;             /* 1: init is resized (bicubic, as Pillow) to width x height */
    double strength;             /* (0, 1]; 0 = default: 0.6, 0.7 with upscale */
    double rope_ntk;             /* RoPE theta factor; 0 = default: 1, 10 with upscale */
    int32_t proportional;        /* proportional attention: 0 off, 1 on, -1 = default (on with upscale) */
    int32_t ae_tile;             /* autoencoder tiles in pixels (default 1024; 0 = never) */
    float ae_overlap;            /* tile overlap fraction (default 0.25) */
    cd_gen_progress_fn progress; /* may be NULL */
    void *user;
} cd_gen_params;

cd_gen_params cd_gen_params_default(void);
/* Fills p's defaults for this pipeline (size, steps, strength, NTK factor, time shift,
 * proportional attention); checks nothing else. */
void cd_pipeline_resolve(const cd_pipeline *pl, cd_gen_params *p);
/* The Euler steps p runs (p resolved): steps, or fewer for image-to-image; -1 if strength is bad. */
int cd_gen_steps_run(const cd_gen_params *p);
/* Checks p (resolved on a copy) against the pipeline without computing anything.
 * CD_ERR_INVALID_ARG / CD_ERR_SHAPE / CD_ERR_UNSUPPORTED with a message in ctx. */
cd_status cd_pipeline_check(cd_ctx *ctx, const cd_pipeline *pl, const cd_gen_params *p);
/* Generates one image into rgb [height, width, 3] (width x height as resolved). rgb may be NULL
 * on the ranks other than 0 of a patch-parallel pipeline: they run every step (the job needs
 * them) but do not decode. */
cd_status cd_pipeline_generate(cd_ctx *ctx, cd_pipeline *pl, const cd_gen_params *p, uint8_t *rgb);

/* ---- text encoders: a prompt -> FLUX's conditioning (pipeline/encode.c) ---------------------
 * The T5 v1.1 encoder (txt [L, d_model]: 4096 for T5-XXL) and the CLIP text model (pooled
 * [hidden]: 768 for CLIP-L) with their tokenizers, as FLUX runs them (docs/text_encoders.md): T5
 * ids = content[:L-1] + EOS + PAD..., no attention mask; CLIP ids = BOS + content[:75] + EOS + EOS
 * padding to 77, pooled = the final hidden state at the first EOS. Weights stay in the mapped
 * files (F32, BF16, F16, F8_E4M3, ComfyUI's scaled fp8); activations are f32. */
typedef enum {
    CD_TOK_SENTENCEPIECE = 0, /* T5 ids as SentencePiece (BFL's reference) tokenizes */
    CD_TOK_DIFFUSERS          /* T5 ids as transformers' T5TokenizerFast (diffusers' FluxPipeline) */
} cd_tok_semantics;

typedef struct {
    const char *model_dir;      /* a diffusers FLUX pipeline root (model_index.json) or NULL */
    const char *t5, *clip;      /* checkpoints (file, sharded index or directory); override model_dir's */
    const char *t5_tokenizer;   /* spiece.model, tokenizer.json or their directory; NULL: model_dir's
                                   tokenizer_2/, or beside the T5 checkpoint */
    const char *clip_tokenizer; /* vocab.json (merges.txt beside), tokenizer.json, open_clip's
                                   bpe_simple_vocab_16e6.txt.gz or their directory; NULL: model_dir's
                                   tokenizer/, or beside the CLIP checkpoint */
    cd_tok_semantics semantics;
    cd_device device; /* where the encoders compute (the CPU; CUDA refuses the encoders' ops for now) */
} cd_encoder_params;

cd_encoder_params cd_encoder_params_default(void);

typedef struct cd_encoder cd_encoder;
/* Opens both encoders and both tokenizers (and checks that each tokenizer's vocabulary fits its
 * encoder's embedding rows). *out = NULL on failure, with the missing part named in ctx. */
cd_status cd_encoder_open(cd_ctx *ctx, const cd_encoder_params *p, cd_encoder **out);
void cd_encoder_free(cd_encoder *e);                /* NULL-safe: unmaps the weights */
int32_t cd_encoder_txt_dim(const cd_encoder *e);    /* T5 d_model */
int32_t cd_encoder_pooled_dim(const cd_encoder *e); /* CLIP hidden */
/* FLUX's T5 length for the model: 256 when the params' model_dir holds a schnell-like transformer
 * (no guidance embedding), else 512 (dev-like). */
int32_t cd_encoder_default_length(const cd_encoder *e);
/* One line naming the encoders, tokenizers and semantics (for metadata and messages). */
const char *cd_encoder_describe(const cd_encoder *e);
/* A stable identity of what determines the embeddings: each weight and tokenizer file's path,
 * size and modification time, the semantics. Keys the embedding cache. */
const char *cd_encoder_identity(const cd_encoder *e);

typedef struct {
    int32_t t5_dropped, clip_dropped; /* content tokens cut by truncation (FLUX truncates too) */
    int32_t *t5_ids;                  /* optional out [L] */
    int32_t *clip_ids;                /* optional out [77] */
} cd_encode_info;

/* prompt (UTF-8, NUL-terminated; "" is valid) -> txt [L, txt_dim] and pooled [pooled_dim] (host
 * f32). L >= 1: T5's sequence length (FLUX: 512 for dev-like models, 256 for schnell-like).
 * Invalid UTF-8 is CD_ERR_INVALID_ARG naming the byte offset. info may be NULL. */
cd_status cd_encoder_encode(cd_ctx *ctx, cd_encoder *e, const char *prompt, int32_t L, float *txt, float *pooled,
                            cd_encode_info *info);

/* The same through a cache directory (created if missing): DIR/<hash>.safetensors holds txt and
 * pooled with the full key (cd_encoder_identity, prompt, L) in its metadata, so that a hash
 * collision is a miss, never wrong embeddings; opening the encoders touches no weights, so a hit
 * costs no encoder compute. *hit = 1 when the embeddings came from the cache (info's ids are then
 * not filled). A cache file that cannot be read or written is a warning-free miss/skip only when
 * it does not exist; any other failure is an error. Writes are atomic. */
cd_status cd_encoder_encode_cached(cd_ctx *ctx, cd_encoder *e, const char *cache_dir, const char *prompt, int32_t L,
                                   float *txt, float *pooled, cd_encode_info *info, int *hit);

/* ---- profiling: time spent per op class while enabled (context-local) ---------------------- */
typedef enum { CD_PROF_LINEAR = 0, CD_PROF_ATTENTION, CD_PROF_OTHER, CD_PROF_COUNT } cd_prof_class;
void cd_ctx_profile(cd_ctx *ctx, int enable); /* enabling also resets the counters */
double cd_ctx_profile_seconds(const cd_ctx *ctx, cd_prof_class c);

/* ---- machine ------------------------------------------------------------------------------ */
/* Measures this machine's fp32 FMA peak (GFLOP/s) with `threads` threads over ~`seconds`. */
double cd_measure_fma_peak(cd_ctx *ctx, double seconds);

#ifdef __cplusplus
}
#endif
#endif /* CLEARDIT_H */
