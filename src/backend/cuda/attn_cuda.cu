/* attn_cuda.cu — the CUDA attention op (cuda.h "attention"): validation, bf16 conversion, the
 * image queries' extra keys (text keys, then pooled keys), and the shipped kernel: v2 of the kernel
 * lab with its pipelined full-chunk path (attn_v2_flash.cuh, "v2p"), at the two tile shapes that
 * won on the H200 (lab/attention/NOTES.md, "v2p"; BENCHMARKS.md, gpu-check run 3). The lab's other
 * versions (naive, v3, the other v2 tiles) are built and checked by the lab (lab/attention/).
 *
 * cd_cuda_attention_bf16_ex (patch parallelism, src/parallel/patch_cuda.cu) restricts the queries
 * and the text rows' keys through attn_kparams.cuh's options (dense_key0, img_row0/img_row1).
 *
 * Extension of the cuda.h contract: cd_cuda_attention_bf16 with d_ek == d_ev == NULL on a CLEAR
 * call without pooling (down < 2) reads the T text keys straight from d_k/d_v (E must equal T);
 * cd_cuda_attention uses this, so only pooled calls build an extra-key copy. */
#include "cuda_internal.h"

#include "attn_launch.cuh"
#include "attn_v2_flash.cuh"

#include <math.h>

/* ---- variants ------------------------------------------------------------------------------- */
/* The shipped tile shapes of the v2p kernel (4 warps, 64 queries per CTA; the dense rows, radius
 * 0 and the text rows of CLEAR, use tiles of 64 consecutive queries). Run 3 on the H200 (ms per
 * layer, FLUX shapes): 2x32 fastest dense (4096^2 212.8 vs 4x16 222.3) and at r <= 16 (4096^2
 * r = 8 9.32 vs 9.49), 4x16 at r = 32 (4096^2 26.8 vs 30.3: its narrower tile wastes less of each
 * disc row). No other version or tile was fastest anywhere (lab/attention/NOTES.md). */
static const char *const k_variants[] = {
    "default",      /* 0: by radius, see default_variant() */
    "flash2p_2x32", /* 1: launch_v2p<HD, 2, 32> */
    "flash2p_4x16", /* 2: launch_v2p<HD, 4, 16> */
};
#define CD_ATTN_NVARIANTS ((int)(sizeof k_variants / sizeof k_variants[0]))

/* Variant 0: 2x32 tiles below r = 24, 4x16 from r = 24 on (r = 24 lies between the measured 16
 * and 32). */
static int default_variant(const cd_attn_desc *d) { return d->radius >= 24 ? 2 : 1; }

extern "C" const char *cd_cuda_attention_variant_name(int variant) {
    return variant >= 0 && variant < CD_ATTN_NVARIANTS ? k_variants[variant] : NULL;
}

extern "C" int cd_cuda_attention_supports(int head_dim) { return head_dim == 32 || head_dim == 64 || head_dim == 128; }

/* ---- scratch ---------------------------------------------------------------------------------- */
static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* extra keys per head: T text keys, plus the pooled keys when down >= 2 */
static int64_t extra_keys(const cd_attn_desc *d) {
    int64_t E = d->text_len;
    if (cd_attn_pooled(d)) E += (int64_t)(d->grid_h / d->down) * (int64_t)(d->grid_w / d->down);
    return E;
}

extern "C" size_t cd_cuda_attention_scratch(const cd_attn_desc *d) {
    if (cd_attn_validate(NULL, d) != CD_OK) return 0;
    const size_t NH = (size_t)d->heads, HD = (size_t)d->head_dim, N = cd_attn_tokens(d);
    size_t total = 3 * align256(NH * N * HD * sizeof(uint16_t));                                      /* q, k, v bf16 */
    if (cd_attn_pooled(d)) total += 2 * align256(NH * (size_t)extra_keys(d) * HD * sizeof(uint16_t)); /* ek, ev */
    return total;
}

/* ---- extra keys: ek/ev [NH, E, HD] bf16 from f32 k/v ----------------------------------------- */
/* e < T: the text key e; else pooled key p = e - T at cell (cy, cx) = (p / PW, p % PW):
 * sum over a, b < DF (a outer, as attn_ref.c adds them) of sw[a*DF + b] * key (cy*DF+a, cx*DF+b),
 * accumulated in f32, rounded once to bf16. */
__global__ void cd_attn_extra_kernel(const float *__restrict__ k, const float *__restrict__ v,
                                     const float *__restrict__ sw, uint16_t *__restrict__ ek, uint16_t *__restrict__ ev,
                                     int NH, int N, int T, int W, int DF, int PW, int E, int HD) {
    const size_t total = (size_t)NH * (size_t)E * (size_t)HD;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t c = i % (size_t)HD, e = (i / (size_t)HD) % (size_t)E;
        const size_t h = i / ((size_t)HD * (size_t)E);
        const float *kh = k + h * (size_t)N * HD, *vh = v + h * (size_t)N * HD;
        float ak = 0.0f, av = 0.0f;
        if (e < (size_t)T) {
            ak = kh[e * HD + c];
            av = vh[e * HD + c];
        } else {
            const size_t pi = e - (size_t)T, cy = pi / (size_t)PW, cx = pi % (size_t)PW;
            for (int a = 0; a < DF; a++)
                for (int b = 0; b < DF; b++) {
                    const float w = sw[a * DF + b];
                    const size_t tok = (size_t)T + (cy * DF + a) * (size_t)W + cx * DF + b;
                    ak = fmaf(w, kh[tok * HD + c], ak);
                    av = fmaf(w, vh[tok * HD + c], av);
                }
        }
        ek[i] = cd_dev_f32_to_bf16(ak);
        ev[i] = cd_dev_f32_to_bf16(av);
    }
}

/* ---- launches ------------------------------------------------------------------------------- */
template <int HD, int QR, int QC> static cd_status launch_v2p(cd_ctx *ctx, const cd_attn_kparams &p, int NH) {
    return cd_cuda_attn_flash<cd_flash::Cfg<HD, QR, QC>, QR, QC>(ctx, cd_flash::cd_attn_flash_kernel<HD, QR, QC, true>,
                                                                 p, NH);
}

template <int HD> static cd_status dispatch(cd_ctx *ctx, const cd_attn_kparams &p, int NH, int variant) {
    return variant == 1 ? launch_v2p<HD, 2, 32>(ctx, p, NH) : launch_v2p<HD, 4, 16>(ctx, p, NH);
}

static int aligned(const void *ptr, size_t a) { return ((uintptr_t)ptr & (a - 1)) == 0; }

/* ---- entry points --------------------------------------------------------------------------- */
static cd_status common_checks(cd_ctx *ctx, const cd_attn_desc *d) {
    cd_status s = cd_attn_validate(ctx, d);
    if (s) return s;
    if (!ctx || !ctx->dev_state)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "cuda attention: the CUDA backend is not initialised (cd_cuda_init)");
    if (!cd_cuda_attention_supports(d->head_dim))
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED,
                            "cuda attention: head_dim %d is not supported (the kernels are built "
                            "for 32, 64 and 128)",
                            d->head_dim);
    return CD_OK;
}

extern "C" cd_status cd_cuda_attention_bf16(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q,
                                            const uint16_t *d_k, const uint16_t *d_v, const uint16_t *d_ek,
                                            const uint16_t *d_ev, int64_t E, float *d_o, float *d_lse, int variant) {
    return cd_cuda_attention_bf16_ex(ctx, d, d_q, d_k, d_v, d_ek, d_ev, E, d_o, d_lse, variant, NULL);
}

cd_status cd_cuda_attn_params(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q, const uint16_t *d_k,
                              const uint16_t *d_v, const uint16_t *d_ek, const uint16_t *d_ev, int64_t E, float *d_o,
                              float *d_lse, const cd_cuda_attn_opts *opts, cd_attn_kparams *pp) {
    cd_status s = common_checks(ctx, d);
    if (s) return s;
    if (!d_q || !d_k || !d_v || !d_o)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda attention: q, k, v and o must be non-NULL");
    if (!aligned(d_q, 16) || !aligned(d_k, 16) || !aligned(d_v, 16) || !aligned(d_ek, 16) || !aligned(d_ev, 16) ||
        !aligned(d_o, 8) || !aligned(d_lse, 4))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "cuda attention: q, k, v, ek, ev must be 16-byte aligned, o 8-byte");

    const int64_t N = (int64_t)cd_attn_tokens(d), HD = d->head_dim;
    cd_attn_kparams &p = *pp;
    memset(&p, 0, sizeof p);
    p.q = d_q;
    p.k = d_k;
    p.v = d_v;
    p.o = d_o;
    p.lse = d_lse;
    p.N = (int)N;
    p.T = d->text_len;
    p.H = d->grid_h;
    p.W = d->grid_w;
    p.scale = cd_attn_scale(d);
    p.scale_log2 = (float)((double)p.scale * 1.4426950408889634);
    p.dense_key0 = 0;
    p.img_row0 = 0;
    p.img_row1 = d->grid_h;
    if (opts && d->radius == 0)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "cuda attention: query/key options need CLEAR attention (radius >= 1)");
    if (opts && (opts->text_key0 < 0 || opts->text_key0 > d->text_len))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda attention: text_key0 %d outside [0, %d]", opts->text_key0,
                            d->text_len);
    if (d->radius == 0) {
        p.r = 0;
        p.q_dense_end = (int)N;
    } else {
        p.r = cd_attn_eff_radius(d);
        p.q_dense_end = d->text_len;
        const int64_t want = extra_keys(d);
        if (!d_ek && !d_ev) {
            if (cd_attn_pooled(d))
                return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                    "cuda attention: down factor %d needs the pooled extra keys "
                                    "(ek, ev)",
                                    d->down);
            if (E != d->text_len)
                return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                    "cuda attention: without ek/ev, E must be the text length %d "
                                    "(got %lld)",
                                    d->text_len, (long long)E);
            p.ek = d_k; /* text keys are the first T rows of each head of k/v */
            p.ev = d_v;
            p.ek_hstride = (long long)(N * HD);
        } else {
            if (!d_ek || !d_ev)
                return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                    "cuda attention: ek and ev must both be given or both NULL");
            if (opts ? (E < d->text_len || E > INT32_MAX) : E != want)
                return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda attention: E must be %s%lld (text keys%s), got %lld",
                                    opts ? "at least " : "", (long long)(opts ? d->text_len : want),
                                    opts                ? ", then the caller's"
                                    : cd_attn_pooled(d) ? " + pooled keys"
                                                        : "",
                                    (long long)E);
            p.ek = d_ek;
            p.ev = d_ev;
            p.ek_hstride = (long long)(E * HD);
        }
        p.E = (int)E; /* E <= T + H*W = N <= INT32_MAX (with options: checked above) */
        if (opts) {
            if (!opts->text_q) p.q_dense_end = 0;
            p.dense_key0 = opts->text_key0;
            p.img_row0 = opts->img_row0 < 0 ? 0 : opts->img_row0;
            p.img_row1 = opts->img_row1 > d->grid_h ? d->grid_h : opts->img_row1;
            if (p.img_row1 < p.img_row0) p.img_row1 = p.img_row0;
        }
    }

    return CD_OK;
}

extern "C" cd_status cd_cuda_attention_bf16_ex(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q,
                                               const uint16_t *d_k, const uint16_t *d_v, const uint16_t *d_ek,
                                               const uint16_t *d_ev, int64_t E, float *d_o, float *d_lse, int variant,
                                               const cd_cuda_attn_opts *opts) {
    cd_attn_kparams p;
    cd_status s = cd_cuda_attn_params(ctx, d, d_q, d_k, d_v, d_ek, d_ev, E, d_o, d_lse, opts, &p);
    if (s) return s;
    if (variant < 0 || variant >= CD_ATTN_NVARIANTS)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "cuda attention: unknown variant %d (0..%d; the kernel lab's other "
                            "versions are in lab/attention)",
                            variant, CD_ATTN_NVARIANTS - 1);
    if (variant == 0) variant = default_variant(d);
    switch (d->head_dim) {
        case 32: return dispatch<32>(ctx, p, d->heads, variant);
        case 64: return dispatch<64>(ctx, p, d->heads, variant);
        default: return dispatch<128>(ctx, p, d->heads, variant);
    }
}

extern "C" cd_status cd_cuda_attention(cd_ctx *ctx, const cd_attn_desc *d, const float *d_q, const float *d_k,
                                       const float *d_v, const float *d_sw, float *d_o, float *d_lse) {
    cd_status s = common_checks(ctx, d);
    if (s) return s;
    struct cd_cuda *cu = cd_cuda_of(ctx);
    if (!d_q || !d_k || !d_v || !d_o)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda attention: q, k, v and o must be non-NULL");
    const int pooled = cd_attn_pooled(d);
    if (pooled && !d_sw)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "cuda attention: down factor %d needs a spatial_weight [%d, %d]",
                            d->down, d->down, d->down);

    const size_t NH = (size_t)d->heads, HD = (size_t)d->head_dim, N = cd_attn_tokens(d);
    const size_t nqkv = NH * N * HD, qkv_bytes = align256(nqkv * sizeof(uint16_t));
    unsigned char *base = (unsigned char *)cd_cuda_scratch(ctx, cd_cuda_attention_scratch(d));
    if (!base) return CD_ERR_OOM; /* cd_cuda_scratch said why */
    uint16_t *qb = (uint16_t *)base;
    uint16_t *kb = (uint16_t *)(base + qkv_bytes);
    uint16_t *vb = (uint16_t *)(base + 2 * qkv_bytes);
    cd_cuda_f32_to_bf16(ctx, d_q, qb, nqkv);
    cd_cuda_f32_to_bf16(ctx, d_k, kb, nqkv);
    cd_cuda_f32_to_bf16(ctx, d_v, vb, nqkv);

    const uint16_t *ek = NULL, *ev = NULL;
    const int64_t E = d->radius > 0 ? extra_keys(d) : 0;
    if (pooled) {
        const size_t ne = NH * (size_t)E * HD, e_bytes = align256(ne * sizeof(uint16_t));
        uint16_t *ekb = (uint16_t *)(base + 3 * qkv_bytes);
        uint16_t *evb = (uint16_t *)(base + 3 * qkv_bytes + e_bytes);
        const size_t blocks = (ne + 255) / 256;
        cd_attn_extra_kernel<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, cu->stream>>>(
            d_k, d_v, d_sw, ekb, evb, d->heads, (int)N, d->text_len, d->grid_w, d->down, d->grid_w / d->down, (int)E,
            d->head_dim);
        if (!cd_cuda_launch_ok(cu)) return cd_cuda_attn_launch_failed(ctx, cu, "pooled keys");
        ek = ekb;
        ev = evb;
    }
    return cd_cuda_attention_bf16(ctx, d, qb, kb, vb, ek, ev, E, d_o, d_lse, 0);
}
