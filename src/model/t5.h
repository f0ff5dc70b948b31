/* t5.h — the T5 v1.1 encoder (FLUX's T5-XXL text encoder): binding a checkpoint (t5_load.c) and
 * the forward over the ops table (t5.c). docs/t5.md has the architecture, the checkpoint names
 * (transformers, diffusers text_encoder_2/, ComfyUI single files including scaled fp8) and the
 * measurements.
 * Letters: L tokens, D d_model, NH heads, HD d_kv, I = NH*HD (attention width), F d_ff. */
#ifndef CD_T5_H
#define CD_T5_H

#include "../ops/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t vocab, d_model, d_kv, heads, d_ff, layers, buckets, max_distance;
    float eps;
} cd_t5_config;

typedef struct cd_t5 cd_t5;

/* Binds a checkpoint: a .safetensors file, a sharded index (model.safetensors.index.json) or a
 * directory (diffusers text_encoder_2/). The config comes from the tensor shapes; a T5
 * config.json beside the weights (or in the directory) supplies max_distance and eps and must
 * agree with the shapes. Linear weights (F32/BF16/F16/F8_E4M3/F8_E5M2) stay in the mapped file;
 * norm scales and the relative attention bias are converted to f32. On error *out = NULL. */
cd_status cd_t5_open(cd_ctx *ctx, const char *path, cd_t5 **out);
/* Benchmarks: random weights (uniform, non-zero), ONE block's weights shared by all layers (the
 * full FLOPs of cfg in the memory of one block); the embedding rows are generated on lookup.
 * wdtype F32 or BF16. */
cd_status cd_t5_random(cd_ctx *ctx, const cd_t5_config *cfg, cd_dtype wdtype, uint64_t seed, cd_t5 **out);
const cd_t5_config *cd_t5_cfg(const cd_t5 *m);
/* One line: "T5 encoder, 24 layers, d_model 4096, ..., weights BF16, HF names". */
const char *cd_t5_describe(const cd_t5 *m);
/* out host [L, D] f32 = last_hidden_state of ids [L] (each < vocab) with NO attention mask (every
 * position attends to every other, padding included: FLUX's call). Asks ops->supports for every
 * op first; one activation allocation in ops's memory per call. */
cd_status cd_t5_encode(cd_ctx *ctx, const cd_t5 *m, const cd_ops *ops, const int32_t *ids, int32_t L, float *out);
void cd_t5_free(cd_t5 *m);

/* transformers' bidirectional relative-position bucket of rel = key - query (half the buckets
 * per direction; exact below buckets/4, then logarithmic up to max_distance, computed in float32
 * and truncated as transformers does). Requires buckets >= 4, max_distance > buckets/4. */
int32_t cd_t5_bucket(int32_t rel, int32_t buckets, int32_t max_distance);

#ifdef __cplusplus
}
#endif

#endif
