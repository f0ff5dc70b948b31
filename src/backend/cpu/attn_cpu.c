/* attn_cpu.c — the fast CPU attention driver: groups the queries into 16-lane jobs, lists each
 * job's keys as contiguous segments, and runs the ISA's strip kernel over them on OpenMP threads.
 *
 * Which keys a job touches (docs/clear.md):
 *  - dense, and CLEAR text rows: 64 or 128 consecutive queries (4 or 8 strips of 16 sharing every
 *    key chunk) over one segment of all N keys.
 *  - CLEAR image queries: a 4x4 tile of the grid (rows ty0.., columns tx0..). Its keys: the T text
 *    keys; for every key row ky within reach the union of the tile rows' disc runs, i.e. the
 *    contiguous columns [tx0 - max hw, tx0 + 3 + max hw] clipped to the grid (the kernel masks each
 *    lane to its own |dx| <= hw(ky - its row)); the pooled keys when down >= 2.
 * So a tile touches its disc plus a small halo, never the rest of the image: useful/issued work is
 * 66% (r=8), 80% (r=16), 89% (r=32) in the interior; text keys and rows are dense.
 * Memory: per thread one scratch block (~0.4 MB at head_dim 128) plus the pooled K/V (N/down^2). */
#include "attn_kern.h"
#include "../../ops/attn.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

size_t cd_strip_scratch_floats(int hd) {
    /* QT + OT [GROUP][hd][16], S [KC][16], kbuf + vbuf [KC][hd], pieces [KC] (<= 64 bytes
     * each), bf16 query pairs [GROUP][hd/2][16][2] */
    return (size_t)hd * CD_STRIP * 2 * CD_GROUP + (size_t)CD_KC * CD_STRIP + (size_t)CD_KC * hd * 2 +
           (size_t)CD_KC * 16 + ((size_t)hd + 1) * CD_STRIP / 2 * CD_GROUP;
}

static cd_strip_fn pick_kernel(const cd_ctx *ctx) {
    switch (ctx->isa) {
        case CD_ISA_AVX512: return cd_strip_avx512;
        case CD_ISA_AVX2: return cd_strip_avx2;
        default: return cd_strip_generic;
    }
}

/* Tile shape for image queries: CD_TILE_ROWS x (16 / CD_TILE_ROWS). A tile of a x b queries
 * touches, per key row, the union of its rows' disc runs: 2*max(hw) + b columns. Useful fraction
 * of the issued work (interior, from the disc geometry): r=8: 1x16 46%, 2x8 60%, 4x4 66%;
 * r=16: 63/76/80%; r=32: 77/86/89%. 4x4 also measured fastest at r = 8, 16, 32 (BENCHMARKS.md). */
#define CD_TILE_ROWS 4

/* Pools one head's image keys or values into [(H/DF)*(W/DF), HD] f32. */
static void pool_head(const cd_attn_desc *d, const void *src, int bf16, const float *w, float *dst) {
    const int DF = d->down, HD = d->head_dim, W = d->grid_w, PW = W / DF;
    const size_t np = (size_t)(d->grid_h / DF) * PW;
    memset(dst, 0, np * HD * sizeof(float));
    for (int y = 0; y < d->grid_h; y++)
        for (int x = 0; x < W; x++) {
            const float wt = w[(y % DF) * DF + x % DF];
            float *out = dst + ((size_t)(y / DF) * PW + x / DF) * HD;
            const size_t row = ((size_t)d->text_len + (size_t)y * W + x) * HD;
            if (bf16)
                for (int c = 0; c < HD; c++) out[c] += wt * cd_bf16_to_f32(((const uint16_t *)src)[row + c]);
            else
                for (int c = 0; c < HD; c++) out[c] += wt * ((const float *)src)[row + c];
        }
}

size_t cd_attn_cpu_scratch_floats(const cd_attn_desc *d, int threads) {
    const int H = d->grid_h, clear = d->radius > 0;
    const int r = clear ? cd_attn_eff_radius(d) : 0;
    const int rows_dy = clear ? (r < H ? r : H) : 0;
    const size_t NP = cd_attn_pooled(d) ? (size_t)(H / d->down) * (size_t)(d->grid_w / d->down) : 0;
    const size_t maxseg = 2 + 2 * (size_t)rows_dy + CD_TILE_ROWS_MAX;
    const size_t scr = (cd_strip_scratch_floats(d->head_dim) + 15) & ~(size_t)15;
    const size_t nfloat = (scr * threads + NP * d->head_dim * 2 * d->heads + 15) & ~(size_t)15;
    const size_t bytes = sizeof(float) * nfloat + sizeof(int) * (rows_dy + 1) + sizeof(cd_seg) * maxseg * threads + 64;
    return (bytes + 3) / 4;
}

/* A strip job's fields that depend only on the call (the caller sets the queries and keys). */
static cd_strip_job strip_job(const cd_ctx *ctx, int bf16, int HD, float qscale, const cd_seg *segs) {
    cd_strip_job job;
    memset(&job, 0, sizeof job);
    job.q_bf16 = bf16;
    job.dot_bf16 = bf16 && ctx->has_bf16 && HD % 2 == 0;
    job.hd = HD;
    job.qscale = qscale;
    job.segs = segs;
    return job;
}

cd_status cd_attn_cpu_run(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k, const void *v,
                          const float *sw, float *o, float *lse) {
    return cd_attn_cpu_run_ex(ctx, d, dt, q, k, v, sw, o, lse, NULL);
}

cd_status cd_attn_cpu_run_ex(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                             const void *v, const float *sw, float *o, float *lse, const cd_attn_cpu_opts *opt) {
    const int HD = d->head_dim, T = d->text_len, H = d->grid_h, W = d->grid_w;
    const int bf16 = dt == CD_DTYPE_BF16;
    const size_t es = bf16 ? 2 : 4, N = cd_attn_tokens(d);
    const int clear = d->radius > 0, pooled = cd_attn_pooled(d);
    const int ext_pool = pooled && opt && opt->pk; /* pooled keys given by the caller */
    const int r = clear ? cd_attn_eff_radius(d) : 0;
    const int rows_dy = clear ? (r < H ? r : H) : 0; /* |dy| < rows_dy can hold keys */
    const size_t NP = ext_pool ? opt->np : pooled ? (size_t)(H / d->down) * (size_t)(W / d->down) : 0;
    /* image query rows computed (CLEAR): [iy0, iy1); text rows unless skipped */
    const int iy0 = opt && opt->img_row1 > 0 ? opt->img_row0 : 0;
    const int iy1 = opt && opt->img_row1 > 0 ? opt->img_row1 : H;
    const int text_q = !(clear && opt && opt->skip_text_queries);
    const int threads = ctx->threads;
    const cd_strip_fn kern = pick_kernel(ctx);
    const float qscale = cd_attn_scale(d) * 1.4426950408889634f; /* base-2 scores */

    /* image queries go in tiles of tr x tc lanes (see CD_TILE_ROWS); work items per head:
     * CLEAR = one per 64 text rows + one per row of tiles; dense = one per 64 rows */
    const int tr = clear ? CD_TILE_ROWS : 1, tc = CD_STRIP / tr;
    /* consecutive rows per dense/text item: 64, or 128 once one head's K+V outgrow a share of
     * the last-level cache (8 MB) and every pass over them comes from DRAM (measured: 256x256
     * r=8 10% faster with 128, no change at 64x64) */
    const size_t QB = (size_t)CD_STRIP * (N * HD * es * 2 > ((size_t)8 << 20) ? CD_GROUP : CD_GROUP / 2);
    const size_t tstrips = text_q ? ((size_t)T + QB - 1) / QB : 0;
    const size_t per_head = clear ? tstrips + ((size_t)(iy1 - iy0) + tr - 1) / tr : (N + QB - 1) / QB;
    const size_t maxseg = 2 + 2 * (size_t)rows_dy + CD_TILE_ROWS_MAX;

    const size_t scr = (cd_strip_scratch_floats(HD) + 15) & ~(size_t)15; /* keep 64-byte blocks */
    const size_t nfloat = (scr * threads + NP * HD * 2 * d->heads + 15) & ~(size_t)15;
    /* scratch comes from the context's grow-only work area: a model reserves it before its
     * forward (cd_attn_cpu_scratch_floats), so attention inside a forward never allocates */
    char *block = (char *)cd_ctx_work(ctx, cd_attn_cpu_scratch_floats(d, threads));
    if (!block) return CD_ERR_OOM;
    float *scratch = (float *)block;                                   /* [threads][scr] */
    float *pk = ext_pool ? (float *)opt->pk : scratch + scr * threads; /* [heads][NP][HD] */
    float *pv = ext_pool ? (float *)opt->pv : pk + NP * HD * d->heads; /* [heads][NP][HD] */
    cd_seg *segs = (cd_seg *)(scratch + nfloat);                       /* [threads][maxseg] */
    int *hw = (int *)(segs + maxseg * threads);                        /* [rows_dy] */
    for (int dy = 0; dy < rows_dy; dy++) hw[dy] = cd_disc_halfwidth(r, dy);

    if (pooled && !ext_pool) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int h = 0; h < d->heads; h++) {
            pool_head(d, (const char *)k + (size_t)h * N * HD * es, bf16, sw, pk + (size_t)h * NP * HD);
            pool_head(d, (const char *)v + (size_t)h * N * HD * es, bf16, sw, pv + (size_t)h * NP * HD);
        }
    }

    const size_t items = per_head * (size_t)d->heads;
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        float *my_scr = scratch + scr * tid;
        cd_seg *sg = segs + maxseg * tid;
#pragma omp for schedule(dynamic, 1)
        for (size_t it = 0; it < items; it++) {
            const size_t h = it / per_head, s = it % per_head;
            const char *kh = (const char *)k + h * N * HD * es, *vh = (const char *)v + h * N * HD * es;
            cd_strip_job job = strip_job(ctx, bf16, HD, qscale, sg);
            if (!clear || s < tstrips) {                       /* consecutive rows over all N keys */
                const size_t rows_end = clear ? (size_t)T : N; /* CLEAR: text rows only */
                const size_t q0 = s * QB;
                job.rows = job.nrows = 1;
                job.ncols = (int)(rows_end - q0 < QB ? rows_end - q0 : QB);
                job.q_rs = 0;
                job.q = (const char *)q + (h * N + q0) * HD * es;
                job.o = o + (h * N + q0) * HD;
                job.lse = lse ? lse + h * N + q0 : NULL;
                sg[0] = (cd_seg){kh, vh, (int32_t)N, bf16, 0, 0, {0, 0, 0, 0}};
                job.nseg = 1;
                kern(&job, my_scr);
                continue;
            }
            /* one row of tiles: tile rows ty0 .. ty0+nrows-1, tiles left to right (the next tile
             * reuses most of this one's keys while they are in this core's cache) */
            const int ty0 = iy0 + (int)(s - tstrips) * tr;
            job.rows = tr;
            job.nrows = iy1 - ty0 < tr ? iy1 - ty0 : tr;
            job.q_rs = W;
            const int ky0 = ty0 - (r - 1) > 0 ? ty0 - (r - 1) : 0;
            const int ky1 = ty0 + job.nrows - 1 + (r - 1) < H ? ty0 + job.nrows - 1 + (r - 1) : H - 1;
            for (int tx0 = 0; tx0 < W; tx0 += tc) {
                job.ncols = W - tx0 < tc ? W - tx0 : tc;
                const size_t q0 = (size_t)T + (size_t)ty0 * W + tx0;
                job.q = (const char *)q + (h * N + q0) * HD * es;
                job.o = o + (h * N + q0) * HD;
                job.lse = lse ? lse + h * N + q0 : NULL;
                int nseg = 0;
                if (T > 0) sg[nseg++] = (cd_seg){kh, vh, T, bf16, 0, 0, {0, 0, 0, 0}};
                for (int ky = ky0; ky <= ky1; ky++) {
                    cd_seg g = {0};
                    int wmax = -1;
                    for (int t = 0; t < CD_TILE_ROWS_MAX; t++) {
                        const int ady = ky - (ty0 + t) < 0 ? ty0 + t - ky : ky - (ty0 + t);
                        g.hw[t] = (t < job.nrows && ady < rows_dy) ? hw[ady] : -1;
                        if (g.hw[t] > wmax) wmax = g.hw[t];
                    }
                    if (wmax < 0) continue;
                    const int lo = tx0 - wmax > 0 ? tx0 - wmax : 0;
                    const int hi = tx0 + job.ncols - 1 + wmax < W ? tx0 + job.ncols - 1 + wmax : W - 1;
                    const size_t row = ((size_t)T + (size_t)ky * W + lo) * HD * es;
                    g.k = kh + row;
                    g.v = vh + row;
                    g.n = hi - lo + 1;
                    g.bf16 = bf16;
                    g.masked = 1;
                    g.off = lo - tx0;
                    sg[nseg++] = g;
                }
                if (pooled)
                    sg[nseg++] = (cd_seg){pk + h * NP * HD, pv + h * NP * HD, (int32_t)NP, 0, 0, 0, {0, 0, 0, 0}};
                job.nseg = nseg;
                kern(&job, my_scr);
            }
        }
    }
    return CD_OK;
}

cd_status cd_attn_cpu_text_partial(cd_ctx *ctx, const cd_attn_desc *d, cd_dtype dt, const void *q, const void *k,
                                   const void *v, int with_text, int ky0, int ky1, float *o_t, float *lse_t) {
    const int HD = d->head_dim, T = d->text_len, W = d->grid_w;
    const int bf16 = dt == CD_DTYPE_BF16;
    const size_t es = bf16 ? 2 : 4, N = cd_attn_tokens(d);
    const int threads = ctx->threads;
    const cd_strip_fn kern = pick_kernel(ctx);
    const float qscale = cd_attn_scale(d) * 1.4426950408889634f;
    const size_t QB = (size_t)CD_STRIP * CD_GROUP;
    const size_t per_head = ((size_t)T + QB - 1) / QB, items = per_head * (size_t)d->heads;
    const size_t scr = (cd_strip_scratch_floats(HD) + 15) & ~(size_t)15;
    if (T == 0) return CD_OK;
    if (!with_text && ky1 <= ky0) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "attention: text queries without keys");
    float *scratch = cd_ctx_work(ctx, scr * threads);
    if (!scratch) return CD_ERR_OOM;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t it = 0; it < items; it++) {
#ifdef _OPENMP
        float *my_scr = scratch + scr * omp_get_thread_num();
#else
        float *my_scr = scratch;
#endif
        const size_t h = it / per_head, q0 = (it % per_head) * QB;
        const char *kh = (const char *)k + h * N * HD * es, *vh = (const char *)v + h * N * HD * es;
        cd_seg sg[2];
        int nseg = 0;
        if (with_text) sg[nseg++] = (cd_seg){kh, vh, T, bf16, 0, 0, {0, 0, 0, 0}};
        if (ky1 > ky0) {
            const size_t row = ((size_t)T + (size_t)ky0 * W) * HD * es;
            sg[nseg++] = (cd_seg){kh + row, vh + row, (int32_t)((size_t)(ky1 - ky0) * W), bf16, 0, 0, {0, 0, 0, 0}};
        }
        cd_strip_job job = strip_job(ctx, bf16, HD, qscale, sg);
        job.nseg = nseg;
        job.rows = job.nrows = 1;
        job.ncols = (int)((size_t)T - q0 < QB ? (size_t)T - q0 : QB);
        job.q_rs = 0;
        job.q = (const char *)q + (h * N + q0) * HD * es;
        job.o = o_t + (h * (size_t)T + q0) * HD;
        job.lse = lse_t + h * (size_t)T + q0;
        kern(&job, my_scr);
    }
    return CD_OK;
}
