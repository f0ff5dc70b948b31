/* op_harness.c — the op harness's runner (op_harness.h says what it checks and how to add an
 * op; the rows of ops.h and ops_bwd.h are in test_ops_harness.c). */
#include "op_harness.h"
#include "../src/backend/cuda/cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GUARD = 16 };         /* sentinel elements after every buffer */
#define SENT_F32 0x7b5a1234u /* sentinel bit patterns (a plain float and a bf16) */
#define SENT_BF16 0x7b5au
#define POISON_F32 0x7fc0dead /* NaN: an output element never written fails */

/* ---- buffer declarations (make functions) ------------------------------------------------- */
static oph_buf *add_buf(oph_case *c, const char *name, oph_role role, size_t n, int bf16) {
    if (c->nbuf >= OPH_MAX_BUFS) {
        test_fail(__FILE__, __LINE__, "%s: more than %d buffers", c->row->op, OPH_MAX_BUFS);
        return NULL;
    }
    oph_buf *b = &c->buf[c->nbuf++];
    memset(b, 0, sizeof *b);
    b->name = name;
    b->count = n;
    b->bf16 = bf16;
    b->role = role;
    b->offset = 1;
    if (role != OPH_OUT) b->host = malloc((n ? n : 1) * (bf16 ? 2 : 4));
    return b;
}

float *oph_f32(oph_case *c, const char *name, oph_role role, size_t n, float amp) {
    oph_buf *b = add_buf(c, name, role, n, 0);
    if (!b || !b->host) return NULL;
    test_rng g = test_rng_seed(++c->seed);
    float *p = b->host;
    for (size_t i = 0; i < n; i++) p[i] = amp * test_rng_f(&g);
    return p;
}

const char *oph_dtype_name(oph_dtype t) {
    return t == OPH_BF16 ? "bf16" : t == OPH_F16 ? "f16" : t == OPH_F8 ? "f8e4m3" : "f32";
}

uint16_t *oph_bf16(oph_case *c, const char *name, oph_role role, size_t n, float amp) {
    oph_buf *b = add_buf(c, name, role, n, 1);
    if (!b || !b->host) return NULL;
    test_rng g = test_rng_seed(++c->seed);
    uint16_t *p = b->host;
    for (size_t i = 0; i < n; i++) p[i] = cd_f32_to_bf16(amp * test_rng_f(&g));
    return p;
}

void oph_out(oph_case *c, const char *name, size_t n, double tol) {
    oph_buf *b = add_buf(c, name, OPH_OUT, n, 0);
    if (b) b->tol = tol;
}

void oph_set_tol(oph_case *c, double tol) {
    if (c->nbuf > 0) c->buf[c->nbuf - 1].tol = tol;
}

/* ---- the runner ----------------------------------------------------------------------------- */
typedef struct {
    int rows, refused, skipped;
    double worst; /* largest error / tolerance */
    char worst_what[160];
    char refused_list[1024];
} oph_stats;

static size_t esize(const oph_buf *b) { return b->bf16 ? 2 : 4; }

/* staging image of a buffer in backend memory: [offset sentinels | contents | GUARD sentinels] */
static void fill_stage(const oph_buf *b, unsigned char *st) {
    const size_t es = esize(b), tot = (size_t)b->offset + b->count + GUARD;
    for (size_t i = 0; i < tot; i++) {
        const int in_body = i >= (size_t)b->offset && i < (size_t)b->offset + b->count;
        if (b->bf16) {
            const uint16_t v = SENT_BF16;
            memcpy(st + i * es, &v, es);
        } else {
            const uint32_t v = in_body ? POISON_F32 : SENT_F32;
            memcpy(st + i * es, &v, es);
        }
    }
    if (b->host) memcpy(st + (size_t)b->offset * es, b->host, b->count * es);
}

static int sentinels_ok(const oph_buf *b, const unsigned char *st) {
    const size_t es = esize(b), tot = (size_t)b->offset + b->count + GUARD;
    for (size_t i = 0; i < tot; i++) {
        if (i == (size_t)b->offset) i += b->count;
        if (i >= tot) break;
        const uint32_t want = b->bf16 ? SENT_BF16 : SENT_F32;
        uint32_t got = 0;
        memcpy(&got, st + i * es, es);
        if (got != want) return 0;
    }
    return 1;
}

static void case_free(oph_case *c) {
    for (int i = 0; i < c->nbuf; i++) free(c->buf[i].host);
}

/* One row on backend be against ref. */
static void run_row(const oph_tables *ref, const oph_tables *be, const oph_row *row, unsigned long long seed,
                    int may_refuse, oph_stats *st) {
    oph_case c;
    memset(&c, 0, sizeof c);
    c.row = row;
    c.be = be;
    c.seed = seed * 1000;
    row->make(&c);
    void *rp[OPH_MAX_BUFS] = {0}, *base[OPH_MAX_BUFS] = {0}, *bp[OPH_MAX_BUFS] = {0};
    unsigned char *stage[OPH_MAX_BUFS] = {0};
    const char *be_name = be->name;
    int ok = c.nbuf > 0;
    for (int i = 0; ok && i < c.nbuf; i++) ok = c.buf[i].role == OPH_OUT || c.buf[i].host;
    if (!ok) test_fail(__FILE__, __LINE__, "%s %s: setup", row->op, c.what);
    /* the reference on aligned host copies */
    for (int i = 0; ok && i < c.nbuf; i++) {
        const oph_buf *b = &c.buf[i];
        rp[i] = malloc(b->count * esize(b) + 64);
        if (!rp[i]) {
            ok = 0;
            break;
        }
        if (b->host)
            memcpy(rp[i], b->host, b->count * esize(b));
        else
            for (size_t j = 0; j < b->count; j++) memcpy((char *)rp[i] + j * 4, &(uint32_t){POISON_F32}, 4);
    }
    if (ok) {
        const cd_status s = row->call(ref, &c, rp);
        if (s != CD_OK) {
            test_fail(__FILE__, __LINE__, "reference %s %s: %s", row->op, c.what, cd_ctx_error(ref->ctx));
            ok = 0;
        }
    }
    /* the backend, every buffer misplaced by its offset and fenced by sentinels */
    const cd_ops *o = be->ops;
    for (int i = 0; ok && i < c.nbuf; i++) {
        const oph_buf *b = &c.buf[i];
        const size_t bytes = ((size_t)b->offset + b->count + GUARD) * esize(b);
        stage[i] = malloc(bytes);
        if (!stage[i] || o->alloc(be->ctx, bytes, &base[i]) != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s: allocation of %zu bytes: %s", be_name, bytes, cd_ctx_error(be->ctx));
            ok = 0;
            break;
        }
        fill_stage(b, stage[i]);
        if (o->upload(be->ctx, base[i], stage[i], bytes) != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s: upload: %s", be_name, cd_ctx_error(be->ctx));
            ok = 0;
        }
        bp[i] = (char *)base[i] + (size_t)b->offset * esize(b);
    }
    /* the contract first: may the backend run it, and with how much scratch */
    cd_op_desc od;
    oph_desc_storage ost;
    int asked_no = 0;
    size_t cap0 = 0;
    if (ok && row->desc) {
        row->desc(&c, &od, &ost);
        asked_no = o->supports(o, be->ctx, &od) != CD_OK;
        if (!asked_no && o->reserve(be->ctx, o->workspace(o, be->ctx, &od)) != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s %s %s: cannot reserve its workspace: %s", be_name, row->op, c.what,
                      cd_ctx_error(be->ctx));
            ok = 0;
        }
        if (o->host_memory) cap0 = be->ctx->work_cap;
    }
    if (ok) {
        const cd_status s = row->call(be, &c, bp);
        if (asked_no != (s == CD_ERR_UNSUPPORTED)) {
            test_fail(__FILE__, __LINE__, "%s %s %s: supports says %s, the op returned %d (%s)", be_name, row->op,
                      c.what, asked_no ? "no" : "yes", (int)s, cd_ctx_error(be->ctx));
            ok = 0;
        } else if (row->desc && o->host_memory && s == CD_OK && be->ctx->work_cap > cap0) {
            test_fail(__FILE__, __LINE__, "%s %s %s: the op grew its scratch to %zu floats past its workspace (%zu)",
                      be_name, row->op, c.what, be->ctx->work_cap, cap0);
            ok = 0;
        }
        /* a backend may not run every row (CUDA: head_dim 48); the refusal is
         * reported in the summary line */
        if (ok && s == CD_ERR_UNSUPPORTED && may_refuse) {
            st->refused++;
            const size_t l = strlen(st->refused_list);
            if (l + 1 < sizeof st->refused_list)
                snprintf(st->refused_list + l, sizeof st->refused_list - l, "%s%s %s %s", l ? "; " : "", row->op,
                         oph_dtype_name(row->dtype), c.what);
            ok = 0;
        } else if (ok && s != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s %s %s: status %d: %s", be_name, row->op, c.what, (int)s,
                      cd_ctx_error(be->ctx));
            ok = 0;
        }
    }
    for (int i = 0; ok && i < c.nbuf; i++) {
        const oph_buf *b = &c.buf[i];
        const size_t bytes = ((size_t)b->offset + b->count + GUARD) * esize(b);
        if (o->download(be->ctx, stage[i], base[i], bytes) != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s %s %s: download: %s", be_name, row->op, c.what, cd_ctx_error(be->ctx));
            ok = 0;
            break;
        }
        const void *got = stage[i] + (size_t)b->offset * esize(b);
        if (!sentinels_ok(b, stage[i]))
            test_fail(__FILE__, __LINE__, "%s %s %s: wrote outside %s", be_name, row->op, c.what, b->name);
        if (b->role == OPH_IN) {
            if (memcmp(got, b->host, b->count * esize(b)) != 0)
                test_fail(__FILE__, __LINE__, "%s %s %s: changed its input %s", be_name, row->op, c.what, b->name);
            continue;
        }
        const double e = test_rel_l2(got, rp[i], b->count);
        const double r = e == 0 ? 0 : e / b->tol; /* tol 0: exact (r infinite unless e == 0) */
        if (!(e <= b->tol))
            test_fail(__FILE__, __LINE__, "%s %s %s %s: %s relative L2 %.3g > %.3g", be_name, row->op,
                      oph_dtype_name(row->dtype), c.what, b->name, e, b->tol);
        if (r > st->worst) {
            st->worst = r;
            snprintf(st->worst_what, sizeof st->worst_what, "%s %s %s: %.2g", row->op, c.what, b->name, e);
        }
    }
    if (ok) st->rows++;
    for (int i = 0; i < c.nbuf; i++) {
        free(rp[i]);
        free(stage[i]);
        if (base[i]) o->free(be->ctx, base[i]);
    }
    case_free(&c);
}

static void run_rows(const oph_tables *be, const oph_row *rows, size_t n, int may_refuse) {
    cd_ctx *rctx = NULL;
    cd_ctx_params p = {2, CD_ISA_GENERIC};
    if (cd_ctx_create(&p, &rctx) != CD_OK) {
        test_fail(__FILE__, __LINE__, "reference context");
        return;
    }
    const oph_tables ref = {"reference", cd_ops_cpu_ref(), cd_ops_bwd_cpu_ref(), rctx, 0, 0};
    oph_stats st;
    memset(&st, 0, sizeof st);
    for (size_t i = 0; i < n; i++) {
        if (rows[i].flags & OPH_BWD && !be->bwd) {
            st.skipped++;
            continue;
        }
        run_row(&ref, be, &rows[i], i + 1, may_refuse, &st);
    }
    printf("  op harness %s: %d of %zu rows ran against the reference; worst error/tolerance %.2f (%s)", be->name,
           st.rows, n, st.worst, st.worst_what[0] ? st.worst_what : "-");
    if (st.refused) printf("; not supported by the backend: %d (%s)", st.refused, st.refused_list);
    if (st.skipped) printf("; %d backward rows: the backend has no backward table", st.skipped);
    printf("\n");
    cd_ctx_free(rctx);
}

void oph_run_cpu(const oph_row *rows, size_t n, cd_isa isa) {
    char name[64];
    cd_ctx *ctx = NULL;
    cd_ctx_params p = {2, isa};
    if (!cd_isa_supported(isa)) {
        EXPECT(cd_ctx_create(&p, &ctx) == CD_ERR_UNSUPPORTED && !ctx, "a context for %s on a CPU without it",
               cd_isa_name(isa));
        cd_ctx_free(ctx);
        printf("  op harness cpu-%s: not run: this CPU lacks %s (cd_isa_supported%s)\n", cd_isa_name(isa),
               cd_isa_name(isa), getenv("CLEARDIT_ISA") ? ", capped by CLEARDIT_ISA" : "");
        return;
    }
    CHECK(cd_ctx_create(&p, &ctx) == CD_OK && cd_ctx_isa(ctx) == isa, "context for %s", cd_isa_name(isa));
    /* with AVX512_BF16 the BF16-weight linear has two paths: the bf16 GEMM, and (has_bf16 off)
     * the f32 weight tiles every other CPU runs */
    for (int bf16 = ctx->has_bf16; bf16 >= 0; bf16--) {
        ctx->has_bf16 = bf16;
        snprintf(name, sizeof name, "cpu-%s%s", cd_isa_name(isa),
                 isa != CD_ISA_AVX512 ? ""
                 : bf16               ? " (AVX512_BF16 GEMM)"
                                      : " (f32 weight tiles)");
        const oph_tables be = {name, cd_ops_cpu(), cd_ops_bwd_cpu(), ctx, bf16, 0};
        run_rows(&be, rows, n, 0);
    }
    cd_ctx_free(ctx);
}

void oph_run_cuda(const oph_row *rows, size_t n) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    CHECK(cd_ctx_create(&p, &ctx) == CD_OK, "context");
    const cd_ops *cuda = NULL;
    const cd_status s = cd_backend_ops(ctx, CD_DEVICE_CUDA, &cuda);
    if (s != CD_OK) { /* no GPU: the failure must explain itself */
        const char *e = cd_ctx_error(ctx);
        EXPECT(s == CD_ERR_UNSUPPORTED, "cuda open: status %d (%s)", (int)s, e);
        EXPECT(cd_cuda_built() ? strstr(e, "CUDA") != NULL : strstr(e, "no CUDA support") != NULL,
               "unhelpful message: '%s'", e);
        printf("  op harness cuda: not run (%zu rows): %s\n", n, e);
        cd_ctx_free(ctx);
        return;
    }
    char name[160];
    snprintf(name, sizeof name, "cuda [%s]", cd_device_desc(ctx, CD_DEVICE_CUDA));
    const oph_tables be = {name, cuda, NULL, ctx, 1, 1};
    run_rows(&be, rows, n, 1);
    cd_ctx_free(ctx);
}
