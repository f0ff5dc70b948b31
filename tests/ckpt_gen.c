/* ckpt_gen.c — see ckpt_gen.h. Checkpoint generators for the layout, convert and CLI tests. */
#include "ckpt_gen.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "../src/util/internal.h" /* cd_f32_to_bf16 */

void gen_init(gen_list *l, unsigned long long seed) {
    memset(l, 0, sizeof *l);
    l->seed = seed;
}

void gen_free(gen_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->t[i].data);
    free(l->t);
    memset(l, 0, sizeof *l);
}

static unsigned long long name_seed(const char *s, unsigned long long seed) {
    unsigned long long h = 1469598103934665603ull ^ seed;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

gen_tensor *gen_add(gen_list *l, const char *name, int32_t ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const int64_t d[4] = {d0, d1, d2, d3};
    return gen_add_shape(l, name, ndim, d);
}

gen_tensor *gen_add_shape(gen_list *l, const char *name, int32_t ndim, const int64_t *d) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->t = realloc(l->t, l->cap * sizeof *l->t);
        if (!l->t) abort();
    }
    gen_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = CD_DTYPE_F32;
    t->ndim = ndim;
    size_t n = 1;
    for (int32_t i = 0; i < ndim; i++) {
        t->shape[i] = d[i];
        n *= (size_t)d[i];
    }
    t->nbytes = n * 4;
    if (l->no_data) return t;
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->data) abort();
    test_rng r = test_rng_seed(name_seed(name, l->seed));
    for (size_t i = 0; i < n; i++) {
        float v = test_rng_f(&r);
        memcpy(t->data + 4 * i, &v, 4);
    }
    return t;
}

gen_tensor *gen_find(gen_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->t[i].name, name)) return &l->t[i];
    return NULL;
}

int gen_remove(gen_list *l, const char *name) {
    gen_tensor *t = gen_find(l, name);
    if (!t) return 0;
    free(t->data);
    *t = l->t[--l->n];
    return 1;
}

__attribute__((format(printf, 2, 3))) static const char *nm(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, 160, fmt, ap);
    va_end(ap);
    return buf;
}

/* A Linear(in, out) with bias: NAME.weight [out, in], NAME.bias [out]. */
static void linear(gen_list *l, const char *name, int64_t out, int64_t in) {
    char b[160];
    gen_add(l, nm(b, "%s.weight", name), 2, out, in, 0, 0);
    gen_add(l, nm(b, "%s.bias", name), 1, out, 0, 0, 0);
}

void gen_flux_bfl(gen_list *l, const gen_flux_cfg *c) {
    const int64_t D = c->hidden, M = c->mlp, HD = c->head_dim;
    char b[160], p[160];
    linear(l, "img_in", D, c->in);
    linear(l, "txt_in", D, c->ctx);
    linear(l, "time_in.in_layer", D, 256);
    linear(l, "time_in.out_layer", D, D);
    linear(l, "vector_in.in_layer", D, c->vec);
    linear(l, "vector_in.out_layer", D, D);
    if (c->guidance) {
        linear(l, "guidance_in.in_layer", D, 256);
        linear(l, "guidance_in.out_layer", D, D);
    }
    for (int i = 0; i < c->depth; i++) {
        static const char *const stream[2] = {"img", "txt"};
        for (int s = 0; s < 2; s++) {
            linear(l, nm(p, "double_blocks.%d.%s_mod.lin", i, stream[s]), 6 * D, D);
            linear(l, nm(p, "double_blocks.%d.%s_attn.qkv", i, stream[s]), 3 * D, D);
            gen_add(l, nm(b, "double_blocks.%d.%s_attn.norm.query_norm.scale", i, stream[s]), 1, HD, 0, 0, 0);
            gen_add(l, nm(b, "double_blocks.%d.%s_attn.norm.key_norm.scale", i, stream[s]), 1, HD, 0, 0, 0);
            linear(l, nm(p, "double_blocks.%d.%s_attn.proj", i, stream[s]), D, D);
            linear(l, nm(p, "double_blocks.%d.%s_mlp.0", i, stream[s]), M, D);
            linear(l, nm(p, "double_blocks.%d.%s_mlp.2", i, stream[s]), D, M);
        }
    }
    for (int i = 0; i < c->depth_single; i++) {
        linear(l, nm(p, "single_blocks.%d.linear1", i), 3 * D + M, D);
        linear(l, nm(p, "single_blocks.%d.linear2", i), D, D + M);
        gen_add(l, nm(b, "single_blocks.%d.norm.query_norm.scale", i), 1, HD, 0, 0, 0);
        gen_add(l, nm(b, "single_blocks.%d.norm.key_norm.scale", i), 1, HD, 0, 0, 0);
        linear(l, nm(p, "single_blocks.%d.modulation.lin", i), 3 * D, D);
    }
    linear(l, "final_layer.linear", c->out, D);
    linear(l, "final_layer.adaLN_modulation.1", 2 * D, D);
}

static void conv(gen_list *l, const char *name, int64_t out, int64_t in, int64_t k) {
    char b[160];
    gen_add(l, nm(b, "%s.weight", name), 4, out, in, k, k);
    gen_add(l, nm(b, "%s.bias", name), 1, out, 0, 0, 0);
}

static void gnorm(gen_list *l, const char *name, int64_t c) {
    char b[160];
    gen_add(l, nm(b, "%s.weight", name), 1, c, 0, 0, 0);
    gen_add(l, nm(b, "%s.bias", name), 1, c, 0, 0, 0);
}

/* autoencoder.py ResnetBlock(in, out). */
static void resnet(gen_list *l, const char *pre, int64_t cin, int64_t cout) {
    char b[160];
    gnorm(l, nm(b, "%s.norm1", pre), cin);
    conv(l, nm(b, "%s.conv1", pre), cout, cin, 3);
    gnorm(l, nm(b, "%s.norm2", pre), cout);
    conv(l, nm(b, "%s.conv2", pre), cout, cout, 3);
    if (cin != cout) conv(l, nm(b, "%s.nin_shortcut", pre), cout, cin, 1);
}

/* autoencoder.py AttnBlock(C): norm + q, k, v, proj_out as 1x1 convs. */
static void attn(gen_list *l, const char *pre, int64_t c) {
    char b[160];
    gnorm(l, nm(b, "%s.norm", pre), c);
    conv(l, nm(b, "%s.q", pre), c, c, 1);
    conv(l, nm(b, "%s.k", pre), c, c, 1);
    conv(l, nm(b, "%s.v", pre), c, c, 1);
    conv(l, nm(b, "%s.proj_out", pre), c, c, 1);
}

void gen_ae_bfl(gen_list *l, const gen_ae_cfg *c) {
    char p[160];
    const int n = c->n_mult;
    const int64_t ch = c->ch, last = ch * c->mult[n - 1];
    if (c->enc) { /* Encoder.__init__: in_ch_mult = (1,) + ch_mult */
        conv(l, "encoder.conv_in", ch, c->in, 3);
        int64_t block_in = ch;
        for (int i = 0; i < n; i++) {
            block_in = ch * (i ? c->mult[i - 1] : 1);
            const int64_t block_out = ch * c->mult[i];
            for (int j = 0; j < c->nrb; j++) {
                resnet(l, nm(p, "encoder.down.%d.block.%d", i, j), block_in, block_out);
                block_in = block_out;
            }
            if (i != n - 1) conv(l, nm(p, "encoder.down.%d.downsample.conv", i), block_in, block_in, 3);
        }
        resnet(l, "encoder.mid.block_1", block_in, block_in);
        attn(l, "encoder.mid.attn_1", block_in);
        resnet(l, "encoder.mid.block_2", block_in, block_in);
        gnorm(l, "encoder.norm_out", block_in);
        conv(l, "encoder.conv_out", 2 * (int64_t)c->z, block_in, 3);
    }
    if (c->dec) { /* Decoder.__init__: levels reversed, num_res_blocks + 1 blocks each */
        int64_t block_in = last;
        conv(l, "decoder.conv_in", block_in, c->z, 3);
        resnet(l, "decoder.mid.block_1", block_in, block_in);
        attn(l, "decoder.mid.attn_1", block_in);
        resnet(l, "decoder.mid.block_2", block_in, block_in);
        for (int i = n - 1; i >= 0; i--) {
            const int64_t block_out = ch * c->mult[i];
            for (int j = 0; j < c->nrb + 1; j++) {
                resnet(l, nm(p, "decoder.up.%d.block.%d", i, j), block_in, block_out);
                block_in = block_out;
            }
            if (i != 0) conv(l, nm(p, "decoder.up.%d.upsample.conv", i), block_in, block_in, 3);
        }
        gnorm(l, "decoder.norm_out", block_in);
        conv(l, "decoder.conv_out", c->out, block_in, 3);
    }
}

void gen_clear(gen_list *l, int hidden, int depth, int depth_single, int down, int flat) {
    char p[160], b[160];
    static const char *const proj[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    const int64_t ref[7] = {1, 1, 1, down, 1, down, 1}, sq[2] = {down, down};
    for (int pass = 0; pass < 2; pass++) {
        const int n = pass ? depth_single : depth;
        const char *pre = pass ? "single_transformer_blocks" : "transformer_blocks";
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < (pass ? 3 : 4); k++) linear(l, nm(p, "%s.%d.attn.%s", pre, i, proj[k]), hidden, hidden);
            if (down)
                gen_add_shape(l, nm(b, "%s.%d.attn.processor.spatial_weight", pre, i), flat ? 2 : 7, flat ? sq : ref);
        }
    }
}

void gen_cast(gen_list *l, cd_dtype dtype) {
    for (size_t i = 0; i < l->n; i++) {
        gen_tensor *t = &l->t[i];
        if (t->dtype != CD_DTYPE_F32 || dtype == CD_DTYPE_F32) continue;
        const size_t n = t->nbytes / 4;
        test_rng r = test_rng_seed(name_seed(t->name, l->seed + 7));
        const int bytes = dtype == CD_DTYPE_BF16 || dtype == CD_DTYPE_F16 ? 2 : 1;
        uint8_t *d = malloc(n * (size_t)bytes + 1);
        if (!d) abort();
        for (size_t k = 0; k < n; k++) {
            float f;
            memcpy(&f, t->data + 4 * k, 4);
            uint16_t h;
            switch (dtype) {
                case CD_DTYPE_BF16:
                    h = cd_f32_to_bf16(f);
                    memcpy(d + 2 * k, &h, 2);
                    break;
                case CD_DTYPE_F16: /* finite: exponent field 0..30 */
                    do h = (uint16_t)test_rng_u64(&r);
                    while (((h >> 10) & 0x1f) == 0x1f);
                    memcpy(d + 2 * k, &h, 2);
                    break;
                case CD_DTYPE_F8_E4M3: /* no NaN (S.1111.111) */
                    do d[k] = (uint8_t)test_rng_u64(&r);
                    while ((d[k] & 0x7f) == 0x7f);
                    break;
                default: /* F8_E5M2: finite */
                    do d[k] = (uint8_t)test_rng_u64(&r);
                    while (((d[k] >> 2) & 0x1f) == 0x1f);
                    break;
            }
        }
        free(t->data);
        t->data = d;
        t->nbytes = n * (size_t)bytes;
        t->dtype = dtype;
    }
}

int gen_write(const gen_list *l, const char *path) {
    cd_st_out *o = calloc(l->n ? l->n : 1, sizeof *o);
    if (!o) return -1;
    for (size_t i = 0; i < l->n; i++) {
        o[i].name = l->t[i].name;
        o[i].dtype = l->t[i].dtype;
        o[i].ndim = l->t[i].ndim;
        memcpy(o[i].shape, l->t[i].shape, sizeof l->t[i].shape);
        o[i].data = l->t[i].data;
    }
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx)) {
        free(o);
        return -1;
    }
    cd_status s = cd_st_write(ctx, path, o, l->n, NULL, 0);
    if (s) fprintf(stderr, "gen_write: %s\n", cd_ctx_error(ctx));
    cd_ctx_free(ctx);
    free(o);
    return s ? -1 : 0;
}

int gen_write_zeros(const gen_list *l, const char *path) {
    /* The header by hand, then ftruncate: the data is a hole that reads as zeros, so a file of
     * hundreds of MB costs nothing to make. */
    json_t *root = json_object();
    uint64_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        json_t *shape = json_array();
        for (int32_t d = 0; d < l->t[i].ndim; d++) json_array_append_new(shape, json_integer(l->t[i].shape[d]));
        json_object_set_new(root, l->t[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + l->t[i].nbytes)));
        off += l->t[i].nbytes;
    }
    char *h = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!h) return -1;
    size_t n = strlen(h), padded = (n + 7) / 8 * 8;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(len8, 1, 8, f) == 8 && fwrite(h, 1, n, f) == n &&
             fwrite("        ", 1, padded - n, f) == padded - n;
    free(h);
    if (f && fclose(f)) ok = 0;
    return ok && truncate(path, (off_t)(8 + padded + off)) == 0 ? 0 : -1;
}

int gen_ckpt_equal(const cd_ckpt *a, const cd_ckpt *b, char *why, size_t cap) {
    if (cd_ckpt_count(a) != cd_ckpt_count(b)) {
        snprintf(why, cap, "%zu vs %zu tensors", cd_ckpt_count(a), cd_ckpt_count(b));
        return -1;
    }
    for (size_t i = 0; i < cd_ckpt_count(a); i++) {
        const cd_st_tensor *x = cd_ckpt_at(a, i), *y = cd_ckpt_find(b, x->name);
        if (!y) {
            snprintf(why, cap, "'%s' only in the first", x->name);
            return -1;
        }
        int same = x->dtype == y->dtype && x->ndim == y->ndim && x->nbytes == y->nbytes;
        for (int32_t d = 0; same && d < x->ndim; d++) same = x->shape[d] == y->shape[d];
        if (!same) {
            snprintf(why, cap, "'%s': dtype or shape differs", x->name);
            return -1;
        }
        if (x->nbytes && memcmp(x->data, y->data, x->nbytes)) {
            snprintf(why, cap, "'%s': data differs", x->name);
            return -1;
        }
    }
    return 0;
}

int gen_files_equal(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int eq = f && g;
    while (eq) {
        int x = fgetc(f), y = fgetc(g);
        if (x != y) eq = 0;
        if (x == EOF || y == EOF) break;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return eq;
}

cd_ckpt *gen_open(cd_ctx *ctx, const char *path) {
    cd_ckpt *c = NULL;
    if (cd_ckpt_open(ctx, path, &c)) {
        fprintf(stderr, "gen_open: %s\n", cd_ctx_error(ctx));
        return NULL;
    }
    return c;
}
