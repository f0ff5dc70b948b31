/* prompts.c — the built-in prompt table and pixel size of `cleardit train` models (prompts.h). */
#include "prompts.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *cd_prompts_table(const cd_flux_model *m) { return m ? cd_flux_model_meta(m, CD_META_PROMPTS) : NULL; }

const char *cd_prompts_at(const char *table, int i, size_t *len) {
    int k = 0;
    for (const char *s = table; s && *s; k++) {
        const char *e = strchr(s, ',');
        const size_t n = e ? (size_t)(e - s) : strlen(s);
        if (k == i) {
            *len = n;
            return s;
        }
        s = e ? e + 1 : s + n;
    }
    return NULL;
}

int cd_prompts_count(const char *table) {
    int k = 0;
    size_t len;
    while (cd_prompts_at(table, k, &len)) k++;
    return k;
}

int cd_prompts_find(const char *table, const char *name, const cd_flux_config *c) {
    int idx = -1;
    size_t len;
    const char *s;
    for (int k = 0; name && (s = cd_prompts_at(table, k, &len)); k++)
        if (strlen(name) == len && !strncasecmp(name, s, len)) idx = k;
    return idx >= 0 && idx < c->context_dim && idx < c->pooled_dim ? idx : -1;
}

int cd_prompts_fit(const char *table, const cd_flux_config *c) {
    const int n = cd_prompts_count(table);
    return n > 0 && n <= c->context_dim && n <= c->pooled_dim;
}

void cd_prompts_onehot(const cd_flux_config *c, int idx, float *txt, float *pooled) {
    memset(txt, 0, (size_t)c->context_dim * sizeof(float));
    memset(pooled, 0, (size_t)c->pooled_dim * sizeof(float));
    txt[idx] = pooled[idx] = 1.0f;
}

int cd_prompts_image_size(const cd_flux_model *m, int *w, int *h) {
    const char *s = m ? cd_flux_model_meta(m, CD_META_IMAGE) : NULL;
    *w = *h = 0;
    if (!s) return 0;
    if (sscanf(s, "%dx%d", w, h) != 2 || *w < 2 || *h < 2) *w = *h = 0;
    return 1;
}
