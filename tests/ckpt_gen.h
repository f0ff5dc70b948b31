/* ckpt_gen.h — test helpers: small FLUX-shaped checkpoints with real key names and random values.
 *
 * The name lists here are written independently of the library's layout tables (src/io/
 * layout_*.c): straight from docs/flux.md sections 2 and 6 and BFL's module code (model.py,
 * layers.py, autoencoder.py), so that a wrong rule in the library shows up as a mismatch. They
 * produce BFL names only; diffusers files come from the library's converter (whose mapping is
 * checked independently by the diffusers oracle, tests/test_layout_oracle.c). */
#ifndef CD_TEST_CKPT_GEN_H
#define CD_TEST_CKPT_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "cleardit.h"

typedef struct {
    int hidden, head_dim, depth, depth_single, in, out, ctx, vec, mlp, guidance;
} gen_flux_cfg;

typedef struct {
    int in, out, ch, mult[8], n_mult, nrb, z, enc, dec;
} gen_ae_cfg;

typedef struct {
    char name[160];
    cd_dtype dtype;
    int32_t ndim;
    int64_t shape[CD_MAX_DIMS];
    uint8_t *data;
    size_t nbytes;
} gen_tensor;

typedef struct {
    gen_tensor *t;
    size_t n, cap;
    unsigned long long seed;
    int no_data; /* 1: gen_add records names and shapes only (data NULL) */
} gen_list;

void gen_init(gen_list *l, unsigned long long seed);
void gen_free(gen_list *l);
/* Adds an F32 tensor of uniform [-1, 1) values (drawn from the list's seed and the name). */
gen_tensor *gen_add(gen_list *l, const char *name, int32_t ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
gen_tensor *gen_add_shape(gen_list *l, const char *name, int32_t ndim, const int64_t *shape);
gen_tensor *gen_find(gen_list *l, const char *name);
int gen_remove(gen_list *l, const char *name); /* 1 if it was there */

/* BFL FLUX transformer / autoencoder tensors; a CLEAR file (diffusers names, as the reference
 * trainer saves them; down 0 = no spatial_weight, else [1,1,1,d,1,d,1] per layer like the
 * reference's nn.Parameter, or [d, d] with flat = 1). */
void gen_flux_bfl(gen_list *l, const gen_flux_cfg *c);
void gen_ae_bfl(gen_list *l, const gen_ae_cfg *c);
void gen_clear(gen_list *l, int hidden, int depth, int depth_single, int down, int flat);

/* Re-encodes every F32 tensor: BF16 (round to nearest even), or for F16 / F8_E4M3 / F8_E5M2
 * random finite bit patterns of that dtype (the values do not matter, only that they are
 * valid). */
void gen_cast(gen_list *l, cd_dtype dtype);

/* Writes the list with cd_st_write; 0 on success. */
int gen_write(const gen_list *l, const char *path);
/* Writes the list's names and shapes as F32 with all-zero data, as a sparse file (for big files
 * made of a no_data list); 0 on success. */
int gen_write_zeros(const gen_list *l, const char *path);

/* Compares two checkpoints tensor by tensor: same names, dtypes, shapes and bytes. Returns 0 if
 * equal, else writes the first difference into why[cap]. */
int gen_ckpt_equal(const cd_ckpt *a, const cd_ckpt *b, char *why, size_t cap);
/* 1 if the two files have the same bytes. */
int gen_files_equal(const char *a, const char *b);
/* Opens a checkpoint with a fresh context (NULL on failure). */
cd_ckpt *gen_open(cd_ctx *ctx, const char *path);

#endif
