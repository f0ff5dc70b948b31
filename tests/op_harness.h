/* op_harness.h — the one op harness (runner: op_harness.c; rows: test_ops_harness.c): every
 * backend's ops table against the reference table (cd_ops_cpu_ref / cd_ops_bwd_cpu_ref, the
 * oracle), driven by a table of rows op x dtype x shape.
 *
 * A backend is an ops table with its context: the fast CPU table under each ISA this CPU runs
 * (generic, AVX2, AVX-512; the last twice where the CPU has AVX512_BF16: with the bf16 GEMM and
 * with the f32 weight tiles), and the CUDA table when the build has CUDA and a device opens. For
 * every row the harness
 *  1. calls the row's make(): it declares the op's buffers (random non-zero inputs, outputs,
 *     in-place buffers) with a relative-L2 tolerance for each output, derived from the dtype and
 *     the reduction length (oph_tol_f32, OPH_TOL_BF16);
 *  2. runs the row's call() on the reference table with host copies;
 *  3. places every buffer in the backend's memory (its alloc/upload) one element past an aligned
 *     address (unless make sets another offset) with sentinels before and after, outputs
 *     poisoned with NaN, runs call() on the backend, downloads, and checks: outputs within
 *     tolerance of the reference (test_rel_l2: a NaN or infinity never passes), inputs unchanged,
 *     sentinels intact.
 * A backend that cannot run a row (CD_ERR_UNSUPPORTED, e.g. head_dim 48 on CUDA) is reported in
 * the summary line; the CPU backends must run every row.
 *
 * Adding an op (tests/test_ops_harness.c holds the rows of every op of ops.h and ops_bwd.h, the
 * autoencoder's conv2d, group_norm and transpose included):
 *  - write make(c): read the shape from c->row->s[] (OPH_S(c, i)), declare the buffers in the
 *    order call() takes them, e.g.
 *        float *x = oph_f32(c, "x", OPH_IN, n * dim, 1.0f);   // host copy, may be adjusted
 *        oph_out(c, "y", n * dim, oph_tol_f32(4, dim));
 *    and describe the shape in c->what;
 *  - write call(t, c, p): p[i] is buffer i, in the memory of table t->ops; run the op through t;
 *  - if the op's support or scratch depends on the call, write desc(c, d, st): fill d (ops.h
 *    cd_op_desc), pointing its attn / conv at st's storage;
 *  - add rows {"name", dtype, {shape...}, flags, make, call, desc} to k_rows there (its TESTs run
 *    the table with oph_run_cpu(rows, n, isa), one per ISA, and oph_run_cuda(rows, n)). */
#ifndef CD_OP_HARNESS_H
#define CD_OP_HARNESS_H

#include "test.h"
#include "../src/ops/ops.h"
#include "../src/ops/ops_bwd.h"

#include <float.h>

typedef enum { OPH_IN, OPH_OUT, OPH_INOUT } oph_role;
/* of the row's weights (activations are f32); F16 and F8 (E4M3) are the text encoders' in-place
 * weights, which the CPU tables convert in tiles */
typedef enum { OPH_F32, OPH_BF16, OPH_F16, OPH_F8 } oph_dtype;
const char *oph_dtype_name(oph_dtype t); /* "f32", "bf16", "f16", "f8e4m3" */

enum {
    OPH_MAX_BUFS = 10,
    OPH_BIAS = 1,    /* row flag: linear or conv2d with a bias */
    OPH_INPLACE = 2, /* row flag: the op's output is its input */
    OPH_BWD = 4,     /* row flag: an op of the backward table (ops_bwd.h) */
    OPH_ACC = 8,     /* row flag: conv2d accumulates into y */
};

/* relative L2 tolerance of an f32 result summing K terms: mult * FLT_EPSILON * sqrt(K) (random
 * signed terms: rounding errors add like a random walk); mult a small multiple stated per row */
static inline double oph_tol_f32(double mult, size_t K) { return mult * FLT_EPSILON * sqrt((double)K); }
/* bf16 operands (unit roundoff 2^-9): relative L2 2^-8 */
#define OPH_TOL_BF16 (1.0 / 256)

/* The tables a backend answers for, with its context and its precision. */
typedef struct oph_tables {
    const char *name; /* "cpu-avx2", "cuda", ... */
    const cd_ops *ops;
    const cd_ops_bwd *bwd; /* NULL: the backend has no backward table (its rows are skipped) */
    cd_ctx *ctx;
    int bf16_linear;    /* a BF16-weight linear rounds x to bf16 (AVX512_BF16 GEMM, CUDA) */
    int bf16_attention; /* attention multiplies bf16 operands (CUDA) */
} oph_tables;

typedef struct {
    const char *name;
    size_t count; /* elements */
    int bf16;     /* 1: bf16 bit patterns (uint16_t), 0: f32 */
    oph_role role;
    int offset; /* elements between an aligned address and the buffer (default 1) */
    double tol; /* outputs: relative L2 tolerance */
    void *host; /* contents before the op (OPH_OUT: NULL) */
} oph_buf;

/* Storage a row's desc() points its cd_op_desc into (it lives as long as the question). */
typedef struct {
    cd_attn_desc attn;
    cd_conv_desc conv;
    cd_attn_bias_desc abias;
} oph_desc_storage;

struct oph_row;
typedef struct oph_case {
    const struct oph_row *row;
    const oph_tables *be; /* the backend under test (make may read its precision) */
    oph_buf buf[OPH_MAX_BUFS];
    int nbuf;
    unsigned long long seed;
    char what[128]; /* the shape, for messages */
} oph_case;

typedef struct oph_row {
    const char *op;
    oph_dtype dtype;
    int s[12]; /* the shape; its meaning is the make function's */
    int flags; /* OPH_BIAS, OPH_INPLACE, OPH_BWD, OPH_ACC */
    void (*make)(oph_case *c);
    /* runs the op through t on the buffers p[] (in t's memory), in make's order */
    cd_status (*call)(const oph_tables *t, const oph_case *c, void *const *p);
    /* the op as a question to the table (ops.h cd_op_desc), for ops whose support or scratch
     * depends on the call (linear, attention, conv2d); NULL: every backend runs it without
     * scratch. The harness asks `supports` first (a refusal is listed, and the op itself must then
     * refuse too), reserves exactly `workspace`, and on host memory checks the op grew no scratch. */
    void (*desc)(const oph_case *c, cd_op_desc *d, oph_desc_storage *st);
} oph_row;

/* shape entry i of the case's row, as a size */
#define OPH_S(c, i) ((size_t)(c)->row->s[i])

/* Buffer declarations for make(): random values amp * uniform[-1, 1), host copy returned. */
float *oph_f32(oph_case *c, const char *name, oph_role role, size_t n, float amp);
uint16_t *oph_bf16(oph_case *c, const char *name, oph_role role, size_t n, float amp);
void oph_out(oph_case *c, const char *name, size_t n, double tol);
/* The tolerance of the last buffer declared (for OPH_INOUT buffers). */
void oph_set_tol(oph_case *c, double tol);

/* Every row on the fast CPU table with a context of this ISA; prints what ran, or why not (the CPU
 * lacks the ISA: then checks that asking for it fails). */
void oph_run_cpu(const oph_row *rows, size_t n, cd_isa isa);
/* Every row on the CUDA table; without CUDA in the build or a device, checks that opening it fails
 * with a message naming the reason and prints that the rows did not run. */
void oph_run_cuda(const oph_row *rows, size_t n);

#endif
