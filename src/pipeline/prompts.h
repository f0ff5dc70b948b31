/* prompts.h — the built-in prompt-table protocol, library-private: a model written by
 * `cleardit train` carries metadata "cleardit_prompts" (comma-separated prompt names) and
 * "cleardit_image" ("WxH" or "WxHxC": its native pixel size). Prompt i conditions the model as a
 * one-hot T5/CLIP pair: txt [1, context_dim] and pooled [pooled_dim], both 1 at index i, 0
 * elsewhere. The one place that reads these keys (pipeline, distillation). */
#ifndef CD_PROMPTS_H
#define CD_PROMPTS_H

#include "cleardit.h"

#include <stddef.h>

#define CD_META_PROMPTS "cleardit_prompts"
#define CD_META_IMAGE "cleardit_image"

/* The model's table (NULL when it has none). */
const char *cd_prompts_table(const cd_flux_model *m);
/* Entries of table ("a,b" -> 2; an empty table -> 0; a trailing comma adds no entry). */
int cd_prompts_count(const char *table);
/* Entry i as a pointer into table and its length; NULL when i is out of range. */
const char *cd_prompts_at(const char *table, int i, size_t *len);
/* The index of the entry equal to name ignoring ASCII case (the last such entry), -1 if none or
 * if the index does not fit the model's context_dim / pooled_dim. */
int cd_prompts_find(const char *table, const char *name, const cd_flux_config *c);
/* 1 when every entry has an index inside context_dim and pooled_dim and there is one at least. */
int cd_prompts_fit(const char *table, const cd_flux_config *c);
/* The one-hot conditioning of entry idx: txt [context_dim], pooled [pooled_dim] (overwritten). */
void cd_prompts_onehot(const cd_flux_config *c, int idx, float *txt, float *pooled);
/* The native size of a pixel-space model: 1 when it records one (w, h as parsed: both >= 2, else
 * both 0), 0 when the key is absent (a latent-space model). */
int cd_prompts_image_size(const cd_flux_model *m, int *w, int *h);

#endif
