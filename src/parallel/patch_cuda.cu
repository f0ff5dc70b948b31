/* patch_cuda.cu — the patch-parallel attention op of GPU ranks (patch.h "GPU ranks"): patch.c's
 * algorithm on device f32 q/k/v [NH, T + B*W, HD] (B: this rank's band of image rows), with the
 * exchanges over NCCL (devcomm.h) and the CUDA attention kernels (cd_cuda_attention_bf16_ex):
 *  1. q, k, v -> bf16 (the kernels' inputs; a halo row in bf16 equals the owner's conversion);
 *  2. pooled keys (down >= 2): each rank pools its own cells (f32 sums in the order of the
 *     one-process kernel, rounded once to bf16) and they are all-gathered; the extra keys of the
 *     image queries are [text keys | every rank's pooled keys in cell order];
 *  3. K/V halo rows (bf16) are packed and exchanged with grouped ncclSend/ncclRecv;
 *  4. the text queries attend to this rank's share of the keys: its band, plus the text keys on
 *     rank 0 only (exact) or on every rank (approx) — one launch on the band's own grid;
 *  5. the extended grid [text | halo above | band | halo below] is assembled and the band's image
 *     queries run on it (one launch; the halo rows' queries are not computed); when the band has no
 *     halo (one rank) the band's own buffers are the extended grid;
 *  6. the text partials (o and lse) are all-gathered and merged in rank order on the device,
 *     identically on every rank: exact by log-sum-exp, approx by averaging (patch.c's arithmetic,
 *     in double).
 * Everything is queued on the context's one stream; the op ends with one bounded wait
 * (cd_devcomm_wait). Memory: one block of cd_cuda_scratch, reserved by cd_patch_cuda_scratch_bytes
 * before the forward (this op never allocates then). */
#include "patch.h"
#include "devcomm.h"
#include "../backend/cuda/cuda_internal.h"
#include "../backend/cuda/attn_kparams.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

namespace {

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* The sizes and the scratch layout of one call (bytes offsets into the cd_cuda_scratch block). */
struct layout {
    int NH, HD, T, W, B, y0, halo, ha, hb, E, pooled, df;
    size_t Nl, Ne, pw, mycells, NP, tf;
    int nr, ns;
    size_t rrows, srows;
    int alias; /* no halo: the band's own buffers are the extended grid */
    size_t qb, kb, vb, qe, ke, ve, oe, le, lt, ek, ev, pool, rbuf, sbuf, tall, total;
};

/* The layer's message lists land in p->rows (receives, then sends at 2P). */
cd_status plan(cd_ctx *ctx, const cd_patch *p, int NH, int HD, int T, int radius, int down, layout *L) {
    memset(L, 0, sizeof *L);
    L->NH = NH;
    L->HD = HD;
    L->T = T;
    L->W = p->W;
    L->y0 = p->band[p->me];
    L->B = p->band[p->me + 1] - L->y0;
    const cd_attn_desc gd = {NH, HD, T, p->H, p->W, radius, down, 0};
    L->halo = cd_attn_eff_radius(&gd) - 1;
    cd_patch_halo_of(p, p->me, L->halo, &L->ha, &L->hb);
    L->E = L->ha + L->B + L->hb;
    L->alias = L->ha == 0 && L->hb == 0;
    L->pooled = radius > 0 && down >= 2;
    L->df = L->pooled ? down : 1;
    const size_t hd = (size_t)HD, W = (size_t)p->W;
    L->Nl = (size_t)T + (size_t)L->B * W;
    L->Ne = (size_t)T + (size_t)L->E * W;
    L->pw = L->pooled ? W / (size_t)down : 0;
    L->mycells = L->pooled ? (size_t)(L->B / down) * L->pw : 0;
    L->NP = L->pooled ? (size_t)(p->H / down) * L->pw : 0;
    L->tf = (size_t)NH * (size_t)T * (hd + 1);
    cd_patch_rows *r = p->rows, *s = p->rows + 2 * p->P; /* no layer is in flight while we plan */
    L->nr = cd_patch_msgs(p, L->halo, 1, r);
    L->ns = cd_patch_msgs(p, L->halo, 0, s);
    for (int i = 0; i < L->nr; i++) L->rrows += (size_t)(r[i].b - r[i].a);
    for (int i = 0; i < L->ns; i++) L->srows += (size_t)(s[i].b - s[i].a);

    const size_t NHs = (size_t)NH, bf = sizeof(uint16_t), rowe = W * hd; /* elements per grid row */
    size_t at = 0;
    auto take = [&](size_t bytes) {
        const size_t o = at;
        at += align256(bytes ? bytes : 1);
        return o;
    };
    L->qb = take(NHs * L->Nl * hd * bf);
    L->kb = take(NHs * L->Nl * hd * bf);
    L->vb = take(NHs * L->Nl * hd * bf);
    if (!L->alias) {
        L->qe = take(NHs * L->Ne * hd * bf);
        L->ke = take(NHs * L->Ne * hd * bf);
        L->ve = take(NHs * L->Ne * hd * bf);
        L->oe = take(NHs * L->Ne * hd * sizeof(float));
        L->le = take(NHs * L->Ne * sizeof(float));
    }
    L->lt = take(NHs * L->Nl * sizeof(float));
    if (L->pooled) {
        L->ek = take(NHs * ((size_t)T + L->NP) * hd * bf);
        L->ev = take(NHs * ((size_t)T + L->NP) * hd * bf);
        L->pool = take(2 * NHs * L->NP * hd * bf); /* rank-major: [rank][2][NH][cells][HD] */
    }
    L->rbuf = take(L->rrows * rowe * NHs * 2 * bf);
    L->sbuf = take(L->srows * rowe * NHs * 2 * bf);
    L->tall = take(T ? L->tf * (size_t)p->P * sizeof(float) : 0);
    L->total = at;
    return CD_OK;
}

/* Own pooled cells, bf16 [2][NH][cells][HD]: cell (cy, cx) of the band = sum over a, b < DF (a
 * outer) of sw[a*DF + b] * key (cy*DF + a, cx*DF + b), f32 fmaf as cd_attn_extra_kernel does. */
__global__ void pool_kernel(const float *__restrict__ k, const float *__restrict__ v, const float *__restrict__ sw,
                            uint16_t *__restrict__ out, int NH, size_t Nl, int T, int W, int DF, size_t PW,
                            size_t cells, int HD) {
    const size_t per = cells * (size_t)HD, total = 2 * (size_t)NH * per;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t kv = i / ((size_t)NH * per), h = (i / per) % (size_t)NH;
        const size_t e = (i % per) / (size_t)HD, c = i % (size_t)HD;
        const size_t cy = e / PW, cx = e % PW;
        const float *src = (kv ? v : k) + h * Nl * (size_t)HD;
        float acc = 0.0f;
        for (int a = 0; a < DF; a++)
            for (int b = 0; b < DF; b++) {
                const size_t tok = (size_t)T + (cy * DF + a) * (size_t)W + cx * DF + b;
                acc = fmaf(sw[a * DF + b], src[tok * HD + c], acc);
            }
        out[i] = cd_dev_f32_to_bf16(acc);
    }
}

/* Text outputs of P ranks, tall [P][o: NH*T*HD | lse: NH*T] -> o [NH][Nl][HD] rows [0, T) and
 * lse [NH][Nl] (may be NULL): patch.c's merge, in double, ranks in order. */
__global__ void merge_kernel(const float *__restrict__ tall, int P, size_t tf, int NH, int T, int HD, size_t Nl,
                             int approx, float *__restrict__ o, float *__restrict__ lse) {
    const size_t total = (size_t)NH * (size_t)T * (size_t)HD, ot = (size_t)NH * (size_t)T * HD;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / (size_t)HD, c = i % (size_t)HD; /* row = h*T + t */
        const size_t h = row / (size_t)T, t = row % (size_t)T;
        double m = -INFINITY;
        for (int j = 0; j < P; j++) m = fmax(m, (double)tall[(size_t)j * tf + ot + row]);
        double acc = 0, wsum = 0;
        for (int j = 0; j < P; j++) {
            const double l = tall[(size_t)j * tf + ot + row];
            const double e = m == -INFINITY ? 0.0 : exp(l - m);
            const double w = approx ? 1.0 : e;
            acc += w * (double)tall[(size_t)j * tf + row * HD + c];
            wsum += e;
        }
        const double norm = approx ? (double)P : wsum;
        o[(h * Nl + t) * HD + c] = norm > 0 ? (float)(acc / norm) : 0.0f;
        if (lse && c == 0) lse[h * Nl + t] = wsum > 0 ? (float)(m + log(wsum)) : -INFINITY;
    }
}

unsigned blocks_for(size_t n) {
    const size_t b = (n + 255) / 256;
    return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

/* One rectangular device-to-device copy on the stream: `height` rows of `width` bytes. */
struct copier {
    cd_ctx *ctx;
    cudaStream_t st;
    cudaError_t err = cudaSuccess;
    void operator()(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) {
        if (err != cudaSuccess || !width || !height) return;
        err = cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice, st);
    }
};

} /* namespace */

extern "C" size_t cd_patch_cuda_scratch_bytes(const cd_patch *p, int heads, int head_dim, int T, int radius, int down) {
    layout L;
    if (!p || p->H < 1 || plan(NULL, p, heads, head_dim, T, radius, down, &L)) return 0;
    return L.total;
}

extern "C" cd_status cd_patch_cuda_attention(const cd_ops *self, cd_ctx *ctx, const cd_attn_desc *d, const float *q,
                                             const float *k, const float *v, const float *sw, float *o, float *lse) {
    cd_patch *p = cd_patch_of(self);
    if (d->radius < 1 || d->grid_w != p->W || d->grid_h != p->band[p->me + 1] - p->band[p->me])
        return cd_set_error(ctx, CD_ERR_INTERNAL, "patch attention (cuda): called outside its forward");
    if (!ctx->dev_state)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "patch attention (cuda): CUDA is not initialised");
    if (!cd_cuda_attention_supports(d->head_dim))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "patch attention (cuda): head_dim %d is not supported",
                            d->head_dim);
    if (d->down >= 2 && !sw)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "patch attention (cuda): down %d needs spatial weights", d->down);
    struct cd_cuda *cu = cd_cuda_of(ctx);
    cd_patch_rows *rm = p->rows;
    cd_xfer *xf = p->xfers;
    size_t *cnt = p->counts;
    layout L;
    cd_status s = CD_OK;
    unsigned char *base = NULL;
    {
        cd_patch_rows *sm = rm + 2 * p->P;
        if ((s = plan(ctx, p, d->heads, d->head_dim, d->text_len, d->radius, d->down, &L))) goto done;
        if (!(base = (unsigned char *)cd_cuda_scratch(ctx, L.total))) {
            s = CD_ERR_OOM;
            goto done;
        }
        const int NH = L.NH, T = L.T, W = L.W, B = L.B, HD = L.HD;
        const size_t hd = (size_t)HD, bf = sizeof(uint16_t), rowe = (size_t)W * hd;
        const size_t NHs = (size_t)NH, nl = NHs * L.Nl * hd;
        uint16_t *qb = (uint16_t *)(base + L.qb), *kb = (uint16_t *)(base + L.kb), *vb = (uint16_t *)(base + L.vb);
        copier cp{ctx, cu->stream};

        /* 1. bf16 q, k, v of the band's own grid */
        cd_cuda_f32_to_bf16(ctx, q, qb, nl);
        cd_cuda_f32_to_bf16(ctx, k, kb, nl);
        cd_cuda_f32_to_bf16(ctx, v, vb, nl);

        /* 2. pooled keys: own cells, all-gathered, then ek/ev = [text keys | pooled keys] */
        const uint16_t *ek = NULL, *ev = NULL;
        int64_t Ex = T;
        if (L.pooled) {
            uint16_t *ekb = (uint16_t *)(base + L.ek), *evb = (uint16_t *)(base + L.ev);
            uint16_t *pool = (uint16_t *)(base + L.pool);
            size_t off = 0;
            for (int j = 0; j < p->P; j++) {
                cnt[j] = (size_t)(p->band[j + 1] - p->band[j]) / (size_t)L.df * L.pw * NHs * hd * 2 * bf;
                if (j < p->me) off += cnt[j];
            }
            uint16_t *mine = (uint16_t *)((unsigned char *)pool + off);
            if (L.mycells) {
                pool_kernel<<<blocks_for(2 * NHs * L.mycells * hd), 256, 0, cu->stream>>>(k, v, sw, mine, NH, L.Nl, T,
                                                                                          W, L.df, L.pw, L.mycells, HD);
                if (!cd_cuda_launch_ok(cu)) {
                    s = cd_set_error(ctx, CD_ERR_INTERNAL, "patch attention (cuda): pooling kernel: %s",
                                     cudaGetErrorString(cu->sticky));
                    goto done;
                }
            }
            if ((s = cd_devcomm_allgatherv(ctx, p->comm, mine, cnt, pool, "pooled keys"))) goto done;
            const size_t ep = ((size_t)T + L.NP) * hd * bf; /* bytes of one head of ek */
            cp(ekb, ep, kb, L.Nl * hd * bf, (size_t)T * hd * bf, NHs);
            cp(evb, ep, vb, L.Nl * hd * bf, (size_t)T * hd * bf, NHs);
            size_t boff = 0, cell0 = 0;
            for (int j = 0; j < p->P; j++) {
                const size_t cj = (size_t)(p->band[j + 1] - p->band[j]) / (size_t)L.df * L.pw;
                const unsigned char *blk = (const unsigned char *)pool + boff;
                for (int kv = 0; kv < 2; kv++)
                    cp((unsigned char *)(kv ? evb : ekb) + ((size_t)T + cell0) * hd * bf, ep,
                       blk + (size_t)kv * NHs * cj * hd * bf, cj * hd * bf, cj * hd * bf, NHs);
                boff += cj * NHs * hd * 2 * bf;
                cell0 += cj;
            }
            ek = ekb;
            ev = evb;
            Ex = (int64_t)T + (int64_t)L.NP;
        }

        /* 3. halo exchange: own rows for the others packed [2][NH][rows][W][HD], receives posted */
        const size_t hpitch = L.Nl * hd * bf; /* bytes of one head of qb/kb/vb */
        {
            unsigned char *sb = base + L.sbuf, *rb = base + L.rbuf;
            for (int i = 0; i < L.ns; i++) {
                const cd_patch_rows &m = sm[i];
                const size_t n = (size_t)(m.b - m.a) * rowe * bf; /* bytes of one head */
                for (int kv = 0; kv < 2; kv++)
                    cp(sb + (size_t)kv * NHs * n, n,
                       (const unsigned char *)(kv ? vb : kb) + ((size_t)T * hd + (size_t)(m.a - L.y0) * rowe) * bf,
                       hpitch, n, NHs);
                xf[L.nr + i] = cd_xfer{m.peer, sb, n * NHs * 2};
                sb += n * NHs * 2;
            }
            for (int i = 0; i < L.nr; i++) {
                const size_t n = (size_t)(rm[i].b - rm[i].a) * rowe * bf;
                xf[i] = cd_xfer{rm[i].peer, rb, n * NHs * 2};
                rb += n * NHs * 2;
            }
            if (cp.err != cudaSuccess) {
                s = cd_cuda_err(ctx, cp.err, "patch attention: copies");
                goto done;
            }
            if ((s = cd_devcomm_exchange(ctx, p->comm, xf + L.nr, L.ns, xf, L.nr, "K/V halo"))) goto done;
        }

        /* 4. the text queries over this rank's share of the keys, on the band's own grid */
        float *lt = (float *)(base + L.lt);
        cd_attn_desc dl = *d;
        dl.down = 0; /* the kernels take the extra keys as given */
        if (T > 0) {
            const int with_text = p->mode == CD_TEXT_APPROX || p->me == 0;
            const cd_cuda_attn_opts to = {1, with_text ? 0 : T, 0, 0};
            if ((s = cd_cuda_attention_bf16_ex(ctx, &dl, qb, kb, vb, ek, ev, Ex, o, lt, 0, &to))) goto done;
        }

        /* 5. the extended grid and the band's image queries */
        cd_attn_desc de = dl;
        de.grid_h = L.E;
        const cd_cuda_attn_opts io = {0, 0, L.ha, L.ha + B};
        if (L.alias) {
            if ((s = cd_cuda_attention_bf16_ex(ctx, &de, qb, kb, vb, ek, ev, Ex, o, lse, 0, &io))) goto done;
        } else {
            uint16_t *qe = (uint16_t *)(base + L.qe), *ke = (uint16_t *)(base + L.ke), *ve = (uint16_t *)(base + L.ve);
            float *oe = (float *)(base + L.oe), *le = (float *)(base + L.le);
            const size_t epitch = L.Ne * hd * bf, band_at = ((size_t)T + (size_t)L.ha * W) * hd * bf;
            const size_t band_bytes = (size_t)B * rowe * bf;
            cp(ke, epitch, kb, hpitch, (size_t)T * hd * bf, NHs); /* text keys */
            cp(ve, epitch, vb, hpitch, (size_t)T * hd * bf, NHs);
            cp((unsigned char *)qe + band_at, epitch, (const unsigned char *)qb + (size_t)T * hd * bf, hpitch,
               band_bytes, NHs);
            cp((unsigned char *)ke + band_at, epitch, (const unsigned char *)kb + (size_t)T * hd * bf, hpitch,
               band_bytes, NHs);
            cp((unsigned char *)ve + band_at, epitch, (const unsigned char *)vb + (size_t)T * hd * bf, hpitch,
               band_bytes, NHs);
            const unsigned char *rb = base + L.rbuf;
            const int ye0 = L.y0 - L.ha;
            for (int i = 0; i < L.nr; i++) {
                const size_t n = (size_t)(rm[i].b - rm[i].a) * rowe * bf;
                const size_t at = ((size_t)T * hd + (size_t)(rm[i].a - ye0) * rowe) * bf;
                for (int kv = 0; kv < 2; kv++)
                    cp((unsigned char *)(kv ? ve : ke) + at, epitch, rb + (size_t)kv * NHs * n, n, n, NHs);
                rb += n * NHs * 2;
            }
            if (cp.err != cudaSuccess) {
                s = cd_cuda_err(ctx, cp.err, "patch attention: copies");
                goto done;
            }
            if ((s = cd_cuda_attention_bf16_ex(ctx, &de, qe, ke, ve, ek, ev, Ex, oe, lse ? le : NULL, 0, &io)))
                goto done;
            const size_t ob = (size_t)B * rowe * sizeof(float);
            cp((unsigned char *)o + (size_t)T * hd * sizeof(float), L.Nl * hd * sizeof(float),
               (const unsigned char *)oe + ((size_t)T + (size_t)L.ha * W) * hd * sizeof(float),
               L.Ne * hd * sizeof(float), ob, NHs);
            if (lse)
                cp(lse + T, L.Nl * sizeof(float), le + (size_t)T + (size_t)L.ha * W, L.Ne * sizeof(float),
                   (size_t)B * W * sizeof(float), NHs);
        }

        /* 6. the text outputs of every rank, merged in rank order */
        if (T > 0) {
            float *tall = (float *)(base + L.tall), *mine = tall + (size_t)p->me * L.tf;
            cp(mine, (size_t)T * hd * sizeof(float), o, L.Nl * hd * sizeof(float), (size_t)T * hd * sizeof(float), NHs);
            cp(mine + NHs * T * hd, (size_t)T * sizeof(float), lt, L.Nl * sizeof(float), (size_t)T * sizeof(float),
               NHs);
            if (cp.err != cudaSuccess) {
                s = cd_cuda_err(ctx, cp.err, "patch attention: copies");
                goto done;
            }
            for (int j = 0; j < p->P; j++) cnt[j] = L.tf * sizeof(float);
            if ((s = cd_devcomm_allgatherv(ctx, p->comm, mine, cnt, tall, "text attention"))) goto done;
            merge_kernel<<<blocks_for(NHs * T * hd), 256, 0, cu->stream>>>(tall, p->P, L.tf, NH, T, HD, L.Nl,
                                                                           p->mode == CD_TEXT_APPROX, o, lse);
            if (!cd_cuda_launch_ok(cu)) {
                s = cd_set_error(ctx, CD_ERR_INTERNAL, "patch attention (cuda): merge kernel: %s",
                                 cudaGetErrorString(cu->sticky));
                goto done;
            }
        }
        if (cp.err != cudaSuccess) {
            s = cd_cuda_err(ctx, cp.err, "patch attention: copies");
            goto done;
        }
        /* the one wait of the layer, bounded: every exchange above has completed after it */
        s = cd_devcomm_wait(ctx, p->comm, "patch attention (halo, pooled keys, text)");
    }
done:
    return s;
}
