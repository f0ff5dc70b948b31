/* ckpt_convert.c — cd_ckpt_convert: rewrites a FLUX transformer or autoencoder checkpoint in the
 * other (or the same) layout, optionally changing the dtype and merging a CLEAR file, as one
 * streamed .safetensors file.
 *
 * How: the plan of the model (layout.h) lists the output tensors and, for each, the segments
 * (row ranges) it is made of and where each comes from in the input layout. A CLEAR file
 * replaces the source of every segment whose diffusers-side tensor it holds, so its trained
 * slices land inside fused BFL tensors (img_attn.qkv rows 0..3D-1, linear1 rows 0..3D-1) as well
 * as on whole diffusers tensors, and nothing else changes.
 *
 * Streaming: every check (layout, config, completeness, CLEAR compatibility, dtype conversions)
 * runs before the output file is created; the header (all names, dtypes, shapes) goes out first;
 * then each output tensor is assembled in ONE reusable buffer the size of the largest output
 * tensor and appended. Source bytes are read through the checkpoint's read-only file mappings;
 * each consumed range is released with madvise(MADV_DONTNEED) (the pages are clean file pages:
 * the kernel drops them and would re-read them from the file if touched again), so resident
 * memory stays about one tensor however large the checkpoint. The write is atomic
 * (st_stream.h): on any error the temporary file is removed and OUT is untouched. */
#include "layout.h"
#include "st_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Where the rows of one segment come from. */
typedef struct {
    const cd_st_tensor *src; /* data source (the input, or the CLEAR file) */
    int64_t src_row, dst_row, rows;
} piece;

typedef struct {
    cd_ctx *ctx;
    const cd_ckpt *in, *clear;
    int from, to; /* plan sides */
    lay_plan plan;
    piece *pieces;       /* grouped by output tensor, in row order */
    size_t *first;       /* [n_out + 1]: pieces[first[k] .. first[k+1]) build output k */
    cd_st_out *out;      /* [n_out] header entries (names point into the plan) */
    uint64_t *out_bytes; /* [n_out] */
    uint64_t total, max_bytes;
    size_t page;
} conv_job;

static void job_free(conv_job *j) {
    lay_plan_free(&j->plan);
    free(j->pieces);
    free(j->first);
    free(j->out);
    free(j->out_bytes);
}

static const char *pname(const char *s, char *buf) { return cd_st_printable(s, buf, CD_ST_PRINT_MAX); }

/* "N unknown (first 'x'), ..." for a checkpoint that does not match its layout. */
static cd_status not_matching(cd_ctx *ctx, const char *what, const cd_ckpt_info *ii) {
    char msg[640], b[CD_ST_PRINT_MAX];
    size_t n = 0;
    n +=
        (size_t)snprintf(msg + n, sizeof msg - n, "%s does not match the %s layout:", what, cd_layout_name(ii->layout));
    if (ii->n_missing && n < sizeof msg)
        n += (size_t)snprintf(msg + n, sizeof msg - n, " %zu missing (first '%s')", ii->n_missing,
                              pname(ii->missing[0], b));
    if (ii->n_bad_shape && n < sizeof msg)
        n += (size_t)snprintf(msg + n, sizeof msg - n, "%s %zu wrong-shaped (first '%s')", ii->n_missing ? "," : "",
                              ii->n_bad_shape, pname(ii->bad_shape[0], b));
    if (ii->n_unknown && n < sizeof msg)
        snprintf(msg + n, sizeof msg - n, "%s %zu unknown (first '%s')", ii->n_missing || ii->n_bad_shape ? "," : "",
                 ii->n_unknown, pname(ii->unknown[0], b));
    return cd_set_error(ctx, CD_ERR_FORMAT, "convert: %s; see 'cleardit inspect'", msg);
}

/* Inspects `c` and requires a complete, exact match with its layout. */
static cd_status inspect_exact(cd_ctx *ctx, const cd_ckpt *c, const char *what, cd_ckpt_info *ii) {
    cd_status s = cd_ckpt_inspect(ctx, c, ii);
    if (s) return s;
    if (ii->layout == CD_LAYOUT_UNKNOWN)
        return cd_set_error(ctx, CD_ERR_FORMAT,
                            "convert: %s is not a FLUX transformer, FLUX autoencoder or CLEAR "
                            "checkpoint (no known tensor names)",
                            what);
    if (ii->n_unknown || ii->n_missing || ii->n_bad_shape) return not_matching(ctx, what, ii);
    return CD_OK;
}

/* The model's config for both plan sides, with a CLEAR file's requirements checked. */
static cd_status plan_model(conv_job *j, cd_layout layout, const cd_ckpt_info *ci) {
    lay_model m;
    lay_plan tmp;
    lay_plan_init(&tmp);
    cd_status s = lay_model_build(j->ctx, j->in, layout, 0, &m, &tmp);
    lay_plan_free(&tmp);
    if (s) return s;
    if (m.need[0]) /* inspect_exact saw the same missing tensor already */
        return cd_set_error(j->ctx, CD_ERR_FORMAT, "convert: cannot infer the config");
    if (lay_is_ae(layout)) {
        if (j->from != j->to && m.ae.ch_mult[0] != 1)
            return cd_set_error(j->ctx, CD_ERR_UNSUPPORTED,
                                "convert: ch_mult[0] = %d (encoder conv_in has %d channels, "
                                "level 0 has %d): AutoencoderKL has no equivalent",
                                m.ae.ch_mult[0], m.ae.ch, m.ae.ch * m.ae.ch_mult[0]);
        if (lay_ae_plan(&m.ae, 3, &j->plan)) return cd_set_error(j->ctx, CD_ERR_OOM, "convert: out of memory");
        return CD_OK;
    }
    if (ci) {
        const cd_flux_config *f = &m.flux.c;
        const cd_clear_config *c = &ci->clear;
        lay_model cm; /* the CLEAR file's spatial-weight form */
        lay_plan_init(&tmp);
        s = lay_model_build(j->ctx, j->clear, CD_LAYOUT_CLEAR, 0, &cm, &tmp);
        lay_plan_free(&tmp);
        if (s) return s;
        if (c->hidden != f->hidden || c->depth != f->depth || c->depth_single != f->depth_single)
            return cd_set_error(j->ctx, CD_ERR_SHAPE,
                                "convert: the CLEAR file does not fit the model: it has hidden "
                                "%d, %d double + %d single blocks; the model has hidden %d, %d "
                                "double + %d single blocks",
                                c->hidden, c->depth, c->depth_single, f->hidden, f->depth, f->depth_single);
        if (c->down && m.flux.sw.down && c->down != m.flux.sw.down)
            return cd_set_error(j->ctx, CD_ERR_SHAPE,
                                "convert: the CLEAR file's spatial_weight is %dx%d but the model "
                                "already carries %dx%d ones",
                                c->down, c->down, m.flux.sw.down, m.flux.sw.down);
        /* every spatial weight then comes from the (complete) CLEAR file, in its form */
        if (c->down) m.flux.sw = cm.clear_sw;
    }
    if (lay_flux_plan(&m.flux, 3, &j->plan)) return cd_set_error(j->ctx, CD_ERR_OOM, "convert: out of memory");
    return CD_OK;
}

static uint64_t row_elems(const int64_t *shape, int32_t ndim) {
    uint64_t e = 1;
    for (int32_t d = 1; d < ndim; d++) e *= (uint64_t)shape[d];
    return e;
}

static int convertible(cd_dtype from, cd_dtype to) {
    if (from == to) return 1;
    if (to != CD_DTYPE_F32 && to != CD_DTYPE_BF16) return 0;
    return from == CD_DTYPE_F32 || from == CD_DTYPE_BF16 || from == CD_DTYPE_F16 || from == CD_DTYPE_F8_E4M3 ||
           from == CD_DTYPE_F8_E5M2;
}

/* Segment order within the output: by output tensor, then by first output row. */
static int cmp_seg_to(const void *a, const void *b, void *arg) {
    const conv_job *j = arg;
    const lay_seg *x = &j->plan.seg[*(const uint32_t *)a], *y = &j->plan.seg[*(const uint32_t *)b];
    if (x->t[j->to] != y->t[j->to]) return x->t[j->to] < y->t[j->to] ? -1 : 1;
    return (x->row[j->to] > y->row[j->to]) - (x->row[j->to] < y->row[j->to]);
}

/* Resolves every segment to its source, every output tensor to its dtype and size, and checks
 * that the pieces tile each output tensor exactly and can be converted. */
static cd_status resolve(conv_job *j, cd_dtype want) {
    const lay_set *out = &j->plan.side[j->to], *src = &j->plan.side[j->from];
    const lay_set *dif = &j->plan.side[LAY_DIF];
    const size_t n_out = out->n, nseg = j->plan.nseg;
    uint32_t *order = malloc((nseg ? nseg : 1) * sizeof *order);
    j->pieces = malloc((nseg ? nseg : 1) * sizeof *j->pieces);
    j->first = calloc(n_out + 1, sizeof *j->first);
    j->out = calloc(n_out ? n_out : 1, sizeof *j->out);
    j->out_bytes = calloc(n_out ? n_out : 1, sizeof *j->out_bytes);
    if (!order || !j->pieces || !j->first || !j->out || !j->out_bytes) {
        free(order);
        return cd_set_error(j->ctx, CD_ERR_OOM, "convert: out of memory");
    }
    for (size_t i = 0; i < nseg; i++) order[i] = (uint32_t)i;
    qsort_r(order, nseg, sizeof *order, cmp_seg_to, j);

    char b1[CD_ST_PRINT_MAX], b2[CD_ST_PRINT_MAX];
    cd_status s = CD_OK;
    size_t i = 0;
    for (size_t k = 0; k < n_out && !s; k++) {
        const lay_tensor *o = &out->t[k];
        const uint64_t re = row_elems(o->shape, o->ndim);
        cd_dtype dt = want, ref = CD_DTYPE_COUNT;
        int64_t next_row = 0;
        j->first[k] = i;
        for (; i < nseg && j->plan.seg[order[i]].t[j->to] == k; i++) {
            const lay_seg *g = &j->plan.seg[order[i]];
            piece *pc = &j->pieces[i];
            /* The input's own tensor for these rows: the data source unless the CLEAR file has
             * the diffusers tensor, and in any case the reference for "keep the dtype". */
            const cd_st_tensor *base = cd_ckpt_find(j->in, src->t[g->t[j->from]].name);
            const cd_st_tensor *cl = j->clear ? cd_ckpt_find(j->clear, dif->t[g->t[LAY_DIF]].name) : NULL;
            pc->src = cl ? cl : base;
            pc->src_row = cl ? g->row[LAY_DIF] : g->row[j->from];
            pc->dst_row = g->row[j->to];
            pc->rows = g->rows;
            if (!pc->src || g->row[j->to] != next_row || row_elems(pc->src->shape, pc->src->ndim) != re ||
                pc->src_row + pc->rows > (pc->src->ndim ? pc->src->shape[0] : 1)) {
                s = cd_set_error(j->ctx, CD_ERR_INTERNAL,
                                 "convert: no consistent source for rows "
                                 "%lld.. of '%s'",
                                 (long long)g->row[j->to], pname(o->name, b1));
                break;
            }
            next_row += g->rows;
            cd_dtype r = base ? base->dtype : pc->src->dtype; /* spatial weights new from CLEAR */
            if (ref == CD_DTYPE_COUNT)
                ref = r;
            else if (r != ref && want == CD_DTYPE_COUNT) {
                s = cd_set_error(j->ctx, CD_ERR_UNSUPPORTED,
                                 "convert: '%s' would join %s and %s pieces; choose --dtype", pname(o->name, b1),
                                 cd_dtype_name(ref), cd_dtype_name(r));
                break;
            }
        }
        if (s) break;
        if (next_row != (o->ndim ? o->shape[0] : 1)) {
            s = cd_set_error(j->ctx, CD_ERR_INTERNAL, "convert: '%s' is not covered by its pieces", pname(o->name, b1));
            break;
        }
        if (dt == CD_DTYPE_COUNT) dt = ref;
        for (size_t q = j->first[k]; q < i && !s; q++) {
            const cd_st_tensor *t = j->pieces[q].src;
            if (!convertible(t->dtype, dt))
                s = cd_set_error(j->ctx, CD_ERR_UNSUPPORTED,
                                 "convert: tensor '%s': cannot convert %s to %s (conversions: F32, "
                                 "BF16, F16, F8_E4M3, F8_E5M2 to F32 or BF16)",
                                 pname(t->name, b2), cd_dtype_name(t->dtype), cd_dtype_name(dt));
            else if (t->dtype == dt && (uint64_t)cd_dtype_bits(dt) * re % 8)
                s = cd_set_error(j->ctx, CD_ERR_UNSUPPORTED, "convert: tensor '%s': rows of %s are not whole bytes",
                                 pname(t->name, b2), cd_dtype_name(dt));
        }
        j->out[k].name = o->name;
        j->out[k].dtype = dt;
        j->out[k].ndim = o->ndim;
        memcpy(j->out[k].shape, o->shape, (size_t)o->ndim * sizeof o->shape[0]);
        uint64_t numel;
        if (!s && cd_st_size(dt, o->ndim, o->shape, &numel, &j->out_bytes[k]) != CD_ST_SIZE_OK)
            s = cd_set_error(j->ctx, CD_ERR_UNSUPPORTED, "convert: '%s' has no whole-byte size", pname(o->name, b1));
        j->total += j->out_bytes[k];
        if (j->out_bytes[k] > j->max_bytes) j->max_bytes = j->out_bytes[k];
    }
    j->first[n_out] = i;
    free(order);
    return s;
}

/* Page-aligned hints on a source range: WILLNEED before reading (rounded outward, so the kernel
 * reads ahead the whole range), DONTNEED after (rounded inward, so no page that holds bytes of a
 * neighbouring, maybe not yet copied tensor is dropped; dropping one would only cost a re-read). */
static void advise(const conv_job *j, const void *p, size_t len, int done) {
    if (!len) return;
    uintptr_t a = (uintptr_t)p, e = a + len, pg = j->page;
    uintptr_t lo = done ? (a + pg - 1) / pg * pg : a / pg * pg;
    uintptr_t hi = done ? e / pg * pg : (e + pg - 1) / pg * pg;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, done ? MADV_DONTNEED : MADV_WILLNEED);
}

/* Copies (converting if needed) one piece into the output tensor's buffer, in chunks of rows of
 * about CHUNK_BYTES source bytes, each released as soon as it is copied: the source pages in
 * memory at any time are one chunk, not the piece (a piece can be a whole 100+ MB tensor). */
#define CHUNK_BYTES (8u << 20)
static cd_status copy_piece(const conv_job *j, const piece *pc, cd_dtype dt, uint64_t re, uint8_t *buf) {
    const cd_st_tensor *t = pc->src;
    const uint64_t sb = (uint64_t)cd_dtype_bits(t->dtype), db = (uint64_t)cd_dtype_bits(dt);
    const uint64_t src_row_bytes = re * sb / 8, dst_row_bytes = re * db / 8; /* whole (resolve) */
    const uint64_t step = src_row_bytes >= CHUNK_BYTES || !src_row_bytes ? 1 : CHUNK_BYTES / src_row_bytes;
    for (int64_t r = 0; r < pc->rows; r += (int64_t)step) {
        const uint64_t rows = (uint64_t)(pc->rows - r) < step ? (uint64_t)(pc->rows - r) : step;
        const uint8_t *p = (const uint8_t *)t->data + (uint64_t)(pc->src_row + r) * src_row_bytes;
        uint8_t *dst = buf + (uint64_t)(pc->dst_row + r) * dst_row_bytes;
        const size_t len = (size_t)(rows * src_row_bytes);
        /* read ahead this chunk (first time) and the next one, so the disk stays busy */
        if (r == 0) advise(j, p, len, 0);
        if ((uint64_t)(pc->rows - r) > rows) {
            const uint64_t left = (uint64_t)(pc->rows - r) - rows;
            const uint64_t next = left < step ? left : step;
            advise(j, p + len, (size_t)(next * src_row_bytes), 0);
        }
        cd_status s = CD_OK;
        if (t->dtype == dt) {
            if (len) memcpy(dst, p, len);
        } else {
            /* a 1-D view of the rows, for the element converters of convert.c */
            cd_st_tensor v = {.name = t->name, .dtype = t->dtype, .ndim = 1, .data = p, .nbytes = len};
            v.shape[0] = (int64_t)(rows * re);
            s = dt == CD_DTYPE_F32 ? cd_st_to_f32(j->ctx, &v, (float *)(void *)dst)
                                   : cd_st_to_bf16(j->ctx, &v, (uint16_t *)(void *)dst);
        }
        advise(j, p, len, 1);
        if (s) return s;
    }
    return CD_OK;
}

static cd_status write_all(conv_job *j, const char *path, cd_layout to, cd_progress_fn progress, void *user) {
    const size_t n_out = j->plan.side[j->to].n;
    /* "format": "pt" as torch's save_file writes it (some loaders look for it). Nothing that
     * depends on the input's history, so equal tensors give byte-identical files. */
    const char *meta[] = {"format", "pt", "cleardit_layout", cd_layout_name(to)};
    /* One buffer for every tensor; malloc'd, so aligned for f32 and bf16 stores. */
    uint8_t *buf = malloc(j->max_bytes ? (size_t)j->max_bytes : 1);
    if (!buf)
        return cd_set_error(j->ctx, CD_ERR_OOM, "convert: cannot allocate %llu bytes",
                            (unsigned long long)j->max_bytes);
    cd_st_stream *w;
    cd_status s = cd_st_stream_begin(j->ctx, path, j->out, n_out, meta, 2, &w);
    uint64_t done = 0;
    for (size_t k = 0; k < n_out && !s; k++) {
        const lay_tensor *o = &j->plan.side[j->to].t[k];
        const uint64_t re = row_elems(o->shape, o->ndim);
        for (size_t q = j->first[k]; q < j->first[k + 1] && !s; q++)
            s = copy_piece(j, &j->pieces[q], j->out[k].dtype, re, buf);
        if (!s) s = cd_st_stream_write(w, buf, (size_t)j->out_bytes[k]);
        done += j->out_bytes[k];
        if (!s && progress) progress(user, done, j->total);
    }
    free(buf);
    if (s) {
        cd_st_stream_abort(w);
        return s;
    }
    return cd_st_stream_commit(w);
}

cd_status cd_ckpt_convert_progress(cd_ctx *ctx, const cd_ckpt *in, const char *out_path, cd_layout to, cd_dtype dtype,
                                   const cd_ckpt *merge_clear, cd_progress_fn progress, void *user) {
    if (!in || !out_path || !out_path[0])
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "convert: no input or no output path");
    if (!lay_is_flux(to) && !lay_is_ae(to))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "convert: the target layout must be flux-bfl, flux-diffusers, ae-bfl "
                            "or ae-diffusers, not %s",
                            cd_layout_name(to));
    if (dtype != CD_DTYPE_COUNT && dtype != CD_DTYPE_F32 && dtype != CD_DTYPE_BF16)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "convert: output dtype must be F32 or BF16");

    cd_ckpt_info ii, ci;
    memset(&ci, 0, sizeof ci);
    conv_job j;
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    j.in = in;
    j.clear = merge_clear;
    lay_plan_init(&j.plan);
    long page = sysconf(_SC_PAGESIZE);
    j.page = page > 0 ? (size_t)page : 4096;

    cd_status s = inspect_exact(ctx, in, "the input", &ii);
    if (!s && ii.layout == CD_LAYOUT_CLEAR)
        s = cd_set_error(ctx, CD_ERR_INVALID_ARG,
                         "convert: the input is a CLEAR file (attention weights only); merge it "
                         "into a base model instead (--merge-clear)");
    if (!s && lay_is_textenc(ii.layout))
        s = cd_set_error(ctx, CD_ERR_INVALID_ARG,
                         "convert: the input is a %s checkpoint; convert handles FLUX transformers and "
                         "autoencoders (text encoders are read as they are)",
                         cd_layout_name(ii.layout));
    if (!s && lay_is_flux(ii.layout) != lay_is_flux(to))
        s = cd_set_error(ctx, CD_ERR_INVALID_ARG,
                         "convert: cannot convert %s to %s (FLUX transformers convert to "
                         "flux-*, autoencoders to ae-*)",
                         cd_layout_name(ii.layout), cd_layout_name(to));
    if (!s && merge_clear && !lay_is_flux(ii.layout))
        s = cd_set_error(ctx, CD_ERR_INVALID_ARG,
                         "convert: a CLEAR file merges into a FLUX transformer, not into an %s "
                         "checkpoint",
                         cd_layout_name(ii.layout));
    if (!s && merge_clear) {
        s = inspect_exact(ctx, merge_clear, "the CLEAR file", &ci);
        if (!s && ci.layout != CD_LAYOUT_CLEAR)
            s = cd_set_error(ctx, CD_ERR_INVALID_ARG, "convert: the file to merge is a %s checkpoint, not a CLEAR file",
                             cd_layout_name(ci.layout));
    }
    if (!s) {
        j.from = lay_side(ii.layout);
        j.to = lay_side(to);
        s = plan_model(&j, ii.layout, merge_clear ? &ci : NULL);
    }
    if (!s) s = resolve(&j, dtype);
    if (!s) s = write_all(&j, out_path, to, progress, user);
    cd_ckpt_info_free(&ii);
    cd_ckpt_info_free(&ci);
    job_free(&j);
    return s;
}

cd_status cd_ckpt_convert(cd_ctx *ctx, const cd_ckpt *in, const char *out_path, cd_layout to, cd_dtype dtype,
                          const cd_ckpt *merge_clear) {
    return cd_ckpt_convert_progress(ctx, in, out_path, to, dtype, merge_clear, NULL, NULL);
}
