/* clip_text.h — library-private: the CLIP text encoder FLUX uses for its pooled vector (CLIP
 * ViT-L/14's text model; docs/clip_text.md), computed through the ops table.
 *
 *   ids [n] -> token_embedding[ids] + position_embedding[0..n) -> layers x (
 *     x += out_proj(causal multi-head attention(LN1(x)))     scale 1/sqrt(head_dim), q.k of keys j <= i
 *     x += fc2(quick_gelu(fc1(LN2(x))))  )                    quick_gelu(v) = v * sigmoid(1.702 v)
 *   -> final LayerNorm -> hidden [n, hidden];  pooled [hidden] = hidden[pooled position]
 *
 * The pooled position is transformers' rule (CLIPTextTransformer): a config whose eos_token_id is 2
 * (older configs, FLUX.1's included) pools at argmax(ids) — the first occurrence of the largest
 * id, which is the first EOS in CLIP's layout since EOS (49407) is the largest id; any other
 * eos_id pools at the FIRST position whose id == eos_id (position 0 when there is none, as
 * transformers' argmax over an all-false mask gives). FLUX uses pooled as is (pooler_output; the
 * text_projection is not applied) and ignores the hidden states.
 *
 * Letters: n tokens, H hidden, NH heads, HD = H / NH, I intermediate, V vocab. */
#ifndef CD_CLIP_TEXT_H
#define CD_CLIP_TEXT_H

#include "../ops/ops.h"

typedef struct {
    int32_t vocab, hidden, heads, inter, layers, max_pos;
    float eps;          /* LayerNorm epsilon */
    int32_t eos_id;     /* the config's eos_token_id; 2 selects the legacy argmax pooling */
    int32_t quick_gelu; /* 1: hidden_act quick_gelu (the only activation supported) */
} cd_clip_config;
/* CLIP-L: vocab 49408, hidden 768, heads 12, inter 3072, 12 layers, max_pos 77, eps 1e-5,
 * eos 49407, hidden_act quick_gelu. */

typedef struct cd_clip_text cd_clip_text;

/* Opens a CLIP text model: a .safetensors file, a sharded index, or a directory (diffusers'
 * text_encoder/). Names: transformers' CLIPTextModel (text_model.embeddings.*,
 * text_model.encoder.layers.N.*, text_model.final_layer_norm.*), as diffusers and ComfyUI's
 * clip_l.safetensors have them, also under ComfyUI's "clip_l.transformer." / "clip_l." prefixes
 * (and "transformer.", which cd_ckpt strips). text_model.embeddings.position_ids and
 * text_projection.weight are ignored (docs/clip_text.md says why); any other tensor is an error.
 * The config comes from config.json beside the weights (a directory or an index's directory) when
 * there is one (hidden_act other than quick_gelu: CD_ERR_UNSUPPORTED), else from the shapes with
 * CLIP's constants (head_dim 64, eps 1e-5, eos = vocab - 1, quick_gelu).
 * Linear weights (F32, BF16, F16, F8_E4M3, F8_E5M2) stay in the mapped file and are used in place
 * (copied to f32 only when misaligned); the token embedding stays mapped (rows are converted per
 * call); biases, LayerNorm parameters and the position embedding are converted to f32 here.
 * On error *out = NULL and ctx says which file/tensor and why. */
cd_status cd_clip_text_open(cd_ctx *ctx, const char *path, cd_clip_text **out);

/* A model with random weights of config cfg (benchmarks): linear weights and the token embedding
 * in wdtype (F32 or BF16), uniform with variance 1/fan_in (never zero); biases, LayerNorm
 * parameters and positions in f32. The same seed gives the same weights. */
cd_status cd_clip_text_random(cd_ctx *ctx, const cd_clip_config *cfg, cd_dtype wdtype, uint64_t seed,
                              cd_clip_text **out);

const cd_clip_config *cd_clip_text_cfg(const cd_clip_text *m);
/* One line: shapes, weight dtype, pooling rule and where the config came from. */
const char *cd_clip_text_describe(const cd_clip_text *m);

/* ids [n] (1 <= n <= max_pos, each in [0, vocab)) -> hidden [n, hidden] f32 host (NULL: not
 * wanted) = last_hidden_state after the final LayerNorm, pooled [hidden] f32 host (NULL: not
 * wanted) = that state at the pooled position (see above). No padding mask (FLUX passes none).
 * Runs on ops, whose memory must be host memory (the weights are read from the mapped file);
 * asks ops->supports for every op first and fails with its reason; one activation allocation in the
 * table's memory (plus an [n, hidden] host buffer when hidden is NULL: the embeddings go up and the
 * final state comes down through hidden, or through that buffer). On error hidden's contents are
 * unspecified. */
cd_status cd_clip_text_encode(cd_ctx *ctx, const cd_clip_text *m, const cd_ops *ops, const int32_t *ids, int32_t n,
                              float *hidden, float *pooled);

/* The pooled position of ids under m's rule (what cd_clip_text_encode picks). */
int32_t cd_clip_text_pool_pos(const cd_clip_text *m, const int32_t *ids, int32_t n);

/* Multiply-adds of one encode of n tokens, x2 (FLOPs of the linears and the attention). */
double cd_clip_text_flops(const cd_clip_config *cfg, int32_t n);

void cd_clip_text_free(cd_clip_text *m); /* NULL-safe; closes the checkpoint */

#endif
