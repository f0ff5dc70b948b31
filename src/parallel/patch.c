/* patch.c — patch parallelism of the FLUX forward (cd_flux_set_parallel; docs/clear.md, "Multi-device
 * patch parallelism"). Rank i owns image token rows [band[i], band[i+1]) and all T text tokens; the
 * model runs its ordinary forward over [text | own rows] with this file's ops table, whose attention
 * op makes the layer exact for the own rows:
 *  1. pooled keys (down >= 2): each rank pools its own cells (bands are whole cell rows) and they
 *     are all-gathered (they are small);
 *  2. K/V halo: the r - 1 rows above and below the band (fewer at the image edge) arrive from the
 *     ranks that own them (usually the two neighbours; thin bands may need more), non-blocking;
 *  3. meanwhile the text queries attend to this rank's share of the keys (its band; the text keys on
 *     rank 0 only in exact mode, on every rank in approx mode);
 *  4. the image queries of the band run the CLEAR kernel over [text | halo | band | halo] (the halo
 *     rows' own queries are not computed);
 *  5. the text outputs are all-gathered and merged in rank order (identically on every rank): exact
 *     by log-sum-exp, approx (the paper's Eq. 7) by averaging.
 * Memory: O((band + 2 halo) x W x heads x head_dim) per rank in one grow-only block.
 * GPU ranks run the same algorithm on device buffers with the exchanges over NCCL (patch_cuda.cu).
 * Both are decorators over the model's ops table (cd_patch_decorate). */
#include "patch.h"
#include "devcomm.h"
#include "../ops/attn.h"

#include <stddef.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static cd_status patch_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                                 const float *v, const float *sw, float *o, float *lse);

cd_status cd_patch_create(cd_ctx *ctx, cd_comm *comm, cd_text_attention mode, cd_patch **out) {
    *out = NULL;
    cd_patch *p = calloc(1, sizeof *p);
    if (!p) return cd_set_error(ctx, CD_ERR_OOM, "patch: out of memory");
    p->comm = comm;
    p->mode = mode;
    p->P = cd_comm_size(comm);
    p->me = cd_comm_rank(comm);
    p->band = calloc((size_t)p->P + 1, sizeof(int));
    p->rows = malloc(sizeof(cd_patch_rows) * 4 * (size_t)p->P);
    p->xfers = malloc(sizeof(cd_xfer) * 4 * (size_t)p->P);
    p->counts = malloc(sizeof(size_t) * 2 * (size_t)p->P);
    if (!p->band || !p->rows || !p->xfers || !p->counts) {
        cd_patch_free(p);
        return cd_set_error(ctx, CD_ERR_OOM, "patch: out of memory");
    }
    *out = p;
    return CD_OK;
}

void cd_patch_free(cd_patch *p) {
    if (!p) return;
    free(p->band);
    free(p->buf);
    free(p->rows);
    free(p->xfers);
    free(p->counts);
    free(p);
}

cd_patch *cd_patch_of(const cd_ops *decorated) {
    return (cd_patch *)(void *)((char *)(uintptr_t)decorated - offsetof(cd_patch, ops));
}

/* Attention scratch of the decorated op for d (this rank's band, after cd_patch_split); the other
 * ops need what the base needs. */
static size_t patch_workspace(const cd_ops *self, cd_ctx *ctx, const cd_op_desc *d) {
    const cd_patch *p = cd_patch_of(self);
    if (d->op != CD_OP_ATTENTION || !d->attn) return p->base->workspace(p->base, ctx, d);
    const cd_attn_desc *a = d->attn;
    if (!p->base->host_memory)
        return cd_patch_cuda_scratch_bytes(p, a->heads, a->head_dim, a->text_len, a->radius, a->down);
    return cd_patch_attn_scratch_floats(p, a->heads, a->head_dim, a->text_len, a->radius, a->down,
                                        cd_ctx_threads(ctx)) *
           sizeof(float);
}

cd_status cd_patch_decorate(cd_ctx *ctx, cd_patch *p, const cd_ops *base, const cd_ops **out) {
    *out = NULL;
    if (!base->host_memory) { /* device buffers: halos over the device communicator */
        if (!cd_devcomm_built())
            return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                                "flux: patch parallelism on GPU ranks needs NCCL, and this build has "
                                "none (nccl.h was not found under the CUDA toolkit, or NCCL=0); run "
                                "the ranks on the CPU (--device cpu) or rebuild with NCCL");
        const cd_status s = cd_devcomm_setup(ctx, p->comm); /* collective; once per communicator */
        if (s) return s;
    }
    p->base = base;
    p->ops = *base;
    p->ops.name = base->host_memory ? "cpu (patch parallel)" : "cuda (patch parallel)";
    p->ops.attention = base->host_memory ? patch_attention : cd_patch_cuda_attention;
    p->ops.workspace = patch_workspace;
    *out = &p->ops;
    return CD_OK;
}
cd_comm *cd_patch_comm(cd_patch *p) { return p->comm; }
const int *cd_patch_bands(const cd_patch *p) { return p->band; }

cd_status cd_patch_split(cd_ctx *ctx, cd_patch *p, int H, int W, int radius, int down, int *y0, int *y1) {
    if (radius < 1)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "patch parallelism needs CLEAR attention (radius >= 1): with dense "
                            "attention every image query needs every key on every rank");
    const int unit = down >= 2 ? down : 1, units = H / unit;
    if (units < p->P)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "the image has %d token rows%s for %d processes: every process needs at "
                            "least one%s; use fewer processes or a taller image",
                            H, unit > 1 ? " (whole cells of the pooled keys)" : "", p->P,
                            unit > 1 ? " cell row" : " row");
    p->H = H;
    p->W = W;
    for (int i = 0; i <= p->P; i++) p->band[i] = (int)((int64_t)i * units / p->P) * unit;
    p->band[p->P] = H;
    *y0 = p->band[p->me];
    *y1 = p->band[p->me + 1];
    return CD_OK;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

void cd_patch_halo_of(const cd_patch *p, int j, int halo, int *above, int *below) {
    *above = imin(halo, p->band[j]);
    *below = imin(halo, p->H - p->band[j + 1]);
}

int cd_patch_msgs(const cd_patch *p, int halo, int recv, cd_patch_rows *m) {
    int n = 0;
    for (int j = 0; j < p->P; j++) {
        if (j == p->me) continue;
        const int owner = recv ? j : p->me, needer = recv ? p->me : j;
        int ab, be;
        cd_patch_halo_of(p, needer, halo, &ab, &be);
        const int o0 = p->band[owner], o1 = p->band[owner + 1];
        const int n0 = p->band[needer], n1 = p->band[needer + 1];
        const int a1 = imax(n0 - ab, o0), b1 = imin(n0, o1); /* above the needer's band */
        const int a2 = imax(n1, o0), b2 = imin(n1 + be, o1); /* below it */
        if (b1 > a1) m[n++] = (cd_patch_rows){j, a1, b1};
        if (b2 > a2) m[n++] = (cd_patch_rows){j, a2, b2};
    }
    return n;
}

size_t cd_patch_attn_scratch_floats(const cd_patch *p, int heads, int head_dim, int T, int radius, int down,
                                    int threads) {
    /* the extended grid at its largest is the whole image */
    const cd_attn_desc de = {heads, head_dim, T, p->H, p->W, radius, down, 0};
    return cd_attn_cpu_scratch_floats(&de, threads);
}

/* Grow-only scratch of the op. */
static float *need(cd_ctx *ctx, cd_patch *p, size_t floats) {
    if (floats <= p->cap) return p->buf;
    float *b = aligned_alloc(64, ((floats * sizeof(float)) + 63) & ~(size_t)63);
    if (!b) {
        cd_set_error(ctx, CD_ERR_OOM, "patch: cannot allocate %zu MiB for the attention halo",
                     floats * sizeof(float) >> 20);
        return NULL;
    }
    free(p->buf);
    p->buf = b;
    p->cap = floats;
    return b;
}

static cd_status patch_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q, const float *k,
                                 const float *v, const float *sw, float *o, float *lse) {
    cd_patch *p = cd_patch_of(self);
    if (d->radius < 1 || d->grid_w != p->W || d->grid_h != p->band[p->me + 1] - p->band[p->me])
        return cd_set_error(ctx, CD_ERR_INTERNAL, "patch attention: called outside its forward");
    if (d->head_dim > 512)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "patch attention: head_dim %d > 512", d->head_dim);
    const int NH = d->heads, HD = d->head_dim, T = d->text_len, W = d->grid_w, B = d->grid_h;
    const int y0 = p->band[p->me];
    cd_attn_desc gd = *d;
    gd.grid_h = p->H;
    const int halo = cd_attn_eff_radius(&gd) - 1;
    int ha, hb;
    cd_patch_halo_of(p, p->me, halo, &ha, &hb);
    const int E = ha + B + hb, ye0 = y0 - ha;
    const size_t Nl = (size_t)T + (size_t)B * W, Ne = (size_t)T + (size_t)E * W, hd = (size_t)HD;
    const size_t rowf = (size_t)W * hd; /* floats of one grid row of one head */
    const int pooled = d->down >= 2, df = d->down;

    cd_patch_rows *rm = p->rows, *sm = p->rows + 2 * p->P;
    cd_xfer *xf = p->xfers;
    size_t *cnt = p->counts;
    const int nr = cd_patch_msgs(p, halo, 1, rm), ns = cd_patch_msgs(p, halo, 0, sm);
    size_t rrows = 0, srows = 0;
    for (int i = 0; i < nr; i++) rrows += (size_t)(rm[i].b - rm[i].a);
    for (int i = 0; i < ns; i++) srows += (size_t)(sm[i].b - sm[i].a);
    /* pooled cells: this rank's, and everyone's */
    const size_t pw = pooled ? (size_t)(W / df) : 0, mycells = pooled ? (size_t)(B / df) * pw : 0;
    const size_t NP = pooled ? (size_t)(p->H / df) * pw : 0;
    const size_t tf = (size_t)NH * T * (hd + 1); /* one rank's text partial: o [NH][T][HD], lse [NH][T] */

    /* one block: q/k/v/o of the extended grid, its lse, the packs, the text partials, the pools */
    const size_t f_ext = (size_t)NH * Ne * hd, f_lse = (size_t)NH * Ne;
    const size_t f_recv = rrows * rowf * NH * 2, f_send = srows * rowf * NH * 2;
    const size_t f_text = T ? tf * (size_t)(p->P + 1) : 0;
    const size_t f_pool = pooled ? ((size_t)NH * mycells * hd * 2 + (size_t)NH * NP * hd * 4) : 0;
    float *blk = need(ctx, p, 4 * f_ext + f_lse + f_recv + f_send + f_text + f_pool + 64);
    cd_status s = CD_OK;
    if (!blk) {
        s = CD_ERR_OOM;
        goto done;
    }
    float *qe = blk, *ke = qe + f_ext, *ve = ke + f_ext, *oe = ve + f_ext, *le = oe + f_ext;
    float *rbuf = le + f_lse, *sbuf = rbuf + f_recv, *txt = sbuf + f_send, *tall = txt + tf;
    float *pool_mine = tall + (T ? tf * (size_t)p->P : 0);
    float *pool_all = pool_mine + (pooled ? (size_t)NH * mycells * hd * 2 : 0); /* rank-major */
    float *pk = pool_all + (size_t)NH * NP * hd * 2, *pv = pk + (size_t)NH * NP * hd;

    /* 1. pooled keys: own cells [2][NH][mycells][HD], gathered, reordered to [NH][NP][HD] */
    if (pooled) {
        for (int kv = 0; kv < 2; kv++)
            for (int h = 0; h < NH; h++) {
                const float *src = (kv ? v : k) + ((size_t)h * Nl + T) * hd;
                float *dst = pool_mine + ((size_t)kv * NH + h) * mycells * hd;
                memset(dst, 0, mycells * hd * sizeof(float));
                for (int y = 0; y < B; y++) /* the order of the one-process pooling: rows, columns */
                    for (int x = 0; x < W; x++) {
                        const float wt = sw[(y % df) * df + x % df];
                        float *cell = dst + ((size_t)(y / df) * pw + (size_t)(x / df)) * hd;
                        const float *row = src + ((size_t)y * W + x) * hd;
                        for (size_t c = 0; c < hd; c++) cell[c] += wt * row[c];
                    }
            }
        for (int j = 0; j < p->P; j++)
            cnt[j] = (size_t)(p->band[j + 1] - p->band[j]) / (size_t)df * pw * NH * hd * 2 * sizeof(float);
        if ((s = cd_comm_allgatherv(ctx, p->comm, pool_mine, cnt, pool_all, "pooled keys"))) goto done;
        size_t off = 0, cell0 = 0;
        for (int j = 0; j < p->P; j++) {
            const size_t cj = (size_t)(p->band[j + 1] - p->band[j]) / (size_t)df * pw;
            for (int kv = 0; kv < 2; kv++)
                for (int h = 0; h < NH; h++) {
                    memcpy((kv ? pv : pk) + ((size_t)h * NP + cell0) * hd,
                           pool_all + off + ((size_t)kv * NH + h) * cj * hd, cj * hd * sizeof(float));
                }
            off += cj * NH * hd * 2;
            cell0 += cj;
        }
    }

    /* 2. halo exchange: pack own rows for the others, post receives */
    {
        size_t off = 0;
        for (int i = 0; i < ns; i++) {
            const size_t n = (size_t)(sm[i].b - sm[i].a) * rowf;
            float *pk_ = sbuf + off;
            for (int kv = 0; kv < 2; kv++)
                for (int h = 0; h < NH; h++)
                    memcpy(pk_ + ((size_t)kv * NH + h) * n,
                           (kv ? v : k) + ((size_t)h * Nl + T) * hd + (size_t)(sm[i].a - y0) * rowf, n * sizeof(float));
            xf[nr + i] = (cd_xfer){sm[i].peer, pk_, n * NH * 2 * sizeof(float)};
            off += n * NH * 2;
        }
        off = 0;
        for (int i = 0; i < nr; i++) {
            const size_t n = (size_t)(rm[i].b - rm[i].a) * rowf;
            xf[i] = (cd_xfer){rm[i].peer, rbuf + off, n * NH * 2 * sizeof(float)};
            off += n * NH * 2;
        }
        if ((s = cd_comm_start(ctx, p->comm, xf + nr, ns, xf, nr, "K/V halo"))) goto done;
    }

    /* 3. while the halos travel: the text queries over this rank's share of the keys */
    if (T > 0) {
        const int with_text = p->mode == CD_TEXT_APPROX || p->me == 0;
        if ((s = cd_attn_cpu_text_partial(ctx, d, CD_DTYPE_F32, q, k, v, with_text, 0, B, txt,
                                          txt + (size_t)NH * T * hd))) {
            cd_comm_wait(ctx, p->comm);
            goto done;
        }
    }
    if ((s = cd_comm_wait(ctx, p->comm))) goto done;

    /* 4. the extended grid [text | halo above | band | halo below], then the band's image queries */
    for (int h = 0; h < NH; h++) {
        const size_t lo = (size_t)h * Nl * hd, eo = (size_t)h * Ne * hd;
        memcpy(ke + eo, k + lo, (size_t)T * hd * sizeof(float));
        memcpy(ve + eo, v + lo, (size_t)T * hd * sizeof(float));
        const size_t band_at = eo + ((size_t)T + (size_t)ha * W) * hd;
        memcpy(ke + band_at, k + lo + (size_t)T * hd, (size_t)B * rowf * sizeof(float));
        memcpy(ve + band_at, v + lo + (size_t)T * hd, (size_t)B * rowf * sizeof(float));
        memcpy(qe + band_at, q + lo + (size_t)T * hd, (size_t)B * rowf * sizeof(float));
    }
    {
        size_t off = 0;
        for (int i = 0; i < nr; i++) {
            const size_t n = (size_t)(rm[i].b - rm[i].a) * rowf;
            for (int kv = 0; kv < 2; kv++)
                for (int h = 0; h < NH; h++)
                    memcpy((kv ? ve : ke) + ((size_t)h * Ne + T) * hd + (size_t)(rm[i].a - ye0) * rowf,
                           rbuf + off + ((size_t)kv * NH + h) * n, n * sizeof(float));
            off += n * NH * 2;
        }
    }
    {
        cd_attn_desc de = *d;
        de.grid_h = E;
        const cd_attn_cpu_opts opt = {1, ha, ha + B, pooled ? pk : NULL, pooled ? pv : NULL, NP};
        if ((s = cd_attn_cpu_run_ex(ctx, &de, CD_DTYPE_F32, qe, ke, ve, sw, oe, le, &opt))) goto done;
    }
    for (int h = 0; h < NH; h++) {
        memcpy(o + ((size_t)h * Nl + T) * hd, oe + ((size_t)h * Ne + T + (size_t)ha * W) * hd,
               (size_t)B * rowf * sizeof(float));
        if (lse)
            memcpy(lse + (size_t)h * Nl + T, le + (size_t)h * Ne + T + (size_t)ha * W, (size_t)B * W * sizeof(float));
    }

    /* 5. the text outputs of every rank, merged in rank order (the same result on every rank) */
    if (T > 0) {
        if ((s = cd_comm_allgather(ctx, p->comm, txt, tf * sizeof(float), tall, "text attention"))) goto done;
        const size_t ot = (size_t)NH * T * hd; /* offset of the lse part in one rank's block */
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const size_t row = (size_t)h * T + t;
                double m = -INFINITY;
                for (int j = 0; j < p->P; j++) m = fmax(m, tall[(size_t)j * tf + ot + row]);
                double wsum = 0;
                float *dst = o + ((size_t)h * Nl + t) * hd;
                double acc[512];
                const size_t hc = hd < 512 ? hd : 512;
                for (size_t c = 0; c < hc; c++) acc[c] = 0;
                for (int j = 0; j < p->P; j++) {
                    const double w = p->mode == CD_TEXT_APPROX ? 1.0 : exp(tall[(size_t)j * tf + ot + row] - m);
                    const float *src = tall + (size_t)j * tf + row * hd;
                    for (size_t c = 0; c < hc; c++) acc[c] += w * src[c];
                    wsum += p->mode == CD_TEXT_APPROX ? exp(tall[(size_t)j * tf + ot + row] - m) : w;
                }
                const double norm = p->mode == CD_TEXT_APPROX ? (double)p->P : wsum;
                for (size_t c = 0; c < hc; c++) dst[c] = (float)(acc[c] / norm);
                if (lse) lse[(size_t)h * Nl + t] = (float)(m + log(wsum));
            }
    }
done:
    return s;
}
