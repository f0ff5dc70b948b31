/* attn_lab.cu — the kernel lab's dispatch (attn_lab.h): every attention kernel version under the
 * variant numbers of lab/attention/NOTES.md. The shipped variants go through the library's entry
 * point (cd_cuda_attention_bf16), so the lab checks and times the kernels that ship; the others
 * are instantiated here, on the parameters and grids of the library (attn_launch.cuh):
 *   attn_v1_naive.cuh                      variant 1: one warp per query, f32, the mask as defined;
 *   src/backend/cuda/attn_v2_flash.cuh     variants 2..6: v2 tile shapes without the PIPE path
 *                                          (11, 12: with it, the shipped ones);
 *   attn_v3_flash.cuh                      variants 7..10: v2 with two m16 tiles per warp. */
#include "attn_lab.h"

#include "../../src/backend/cuda/attn_launch.cuh"
#include "../../src/backend/cuda/attn_v2_flash.cuh"
#include "attn_v1_naive.cuh"
#include "attn_v3_flash.cuh"

/* ship >= 0: the library's variant number (cd_cuda_attention_bf16); else kind 1 = naive, or the
 * flash kernel with image tiles of qr x qc queries (v2: qr*qc/16 warps; v3: qr*qc/32 warps; the
 * dense rows use tiles of qr*qc consecutive queries). */
struct lab_variant {
    const char *name;
    int ship;
    int naive;
    int qr, qc;
    int v3; /* 0: v2 (plain path); 1: v3 */
};

static const lab_variant k_lab[] = {
    {"default", 0, 0, 0, 0, 0},     /* 0: the library's default (v2p, tiles by radius) */
    {"naive", -1, 1, 0, 0, 0},      /* 1 */
    {"flash4x16", -1, 0, 4, 16, 0}, /* 2: 4 warps, 64 queries */
    {"flash8x16", -1, 0, 8, 16, 0}, /* 3: 8 warps, 128 queries */
    {"flash2x32", -1, 0, 2, 32, 0}, /* 4: 4 warps */
    {"flash1x64", -1, 0, 1, 64, 0}, /* 5: 4 warps, row runs */
    {"flash4x32", -1, 0, 4, 32, 0}, /* 6: 8 warps */
    /* v3: 32 query rows per warp; the lab parses "flash3_AxB" */
    {"flash3_4x32", -1, 0, 4, 32, 1}, /* 7: 4 warps, each one 32-wide tile row; dense 128 rows */
    {"flash3_8x16", -1, 0, 8, 16, 1}, /* 8: 4 warps, each two 16-wide tile rows */
    {"flash3_2x32", -1, 0, 2, 32, 1}, /* 9: 2 warps; dense 64 rows */
    {"flash3_8x32", -1, 0, 8, 32, 1}, /* 10: 8 warps; dense 256 rows */
    /* v2 with the pipelined full-chunk path: the shipped kernels */
    {"flash2p_2x32", 1, 0, 2, 32, 0}, /* 11 */
    {"flash2p_4x16", 2, 0, 4, 16, 0}, /* 12 */
};
#define LAB_NVARIANTS ((int)(sizeof k_lab / sizeof k_lab[0]))

extern "C" const char *cd_lab_attention_variant_name(int variant) {
    return variant >= 0 && variant < LAB_NVARIANTS ? k_lab[variant].name : NULL;
}

template <int HD> static cd_status launch_naive(cd_ctx *ctx, const cd_attn_kparams &p, int NH) {
    struct cd_cuda *cu = cd_cuda_of(ctx);
    const dim3 grid((unsigned)(((int64_t)p.N + CD_NAIVE_WARPS - 1) / CD_NAIVE_WARPS), (unsigned)NH);
    cd_attn_naive_kernel<HD><<<grid, CD_NAIVE_WARPS * 32, 0, cu->stream>>>(p);
    return cd_cuda_launch_ok(cu) ? CD_OK : cd_cuda_attn_launch_failed(ctx, cu, "naive attention");
}

template <int HD, int QR, int QC> static cd_status launch_v2(cd_ctx *ctx, const cd_attn_kparams &p, int NH) {
    return cd_cuda_attn_flash<cd_flash::Cfg<HD, QR, QC>, QR, QC>(ctx, cd_flash::cd_attn_flash_kernel<HD, QR, QC, false>,
                                                                 p, NH);
}

template <int HD, int QR, int QC> static cd_status launch_v3(cd_ctx *ctx, const cd_attn_kparams &p, int NH) {
    return cd_cuda_attn_flash<cd_flash3::Cfg<HD, QR, QC, 2>, QR, QC>(
        ctx, cd_flash3::cd_attn_flash3_kernel<HD, QR, QC, 2>, p, NH);
}

template <int HD> static cd_status dispatch(cd_ctx *ctx, const cd_attn_kparams &p, int NH, const lab_variant &v) {
    if (v.naive) return launch_naive<HD>(ctx, p, NH);
    if (v.v3) {
        if (v.qr == 4 && v.qc == 32) return launch_v3<HD, 4, 32>(ctx, p, NH);
        if (v.qr == 8 && v.qc == 16) return launch_v3<HD, 8, 16>(ctx, p, NH);
        if (v.qr == 2 && v.qc == 32) return launch_v3<HD, 2, 32>(ctx, p, NH);
        if (v.qr == 8 && v.qc == 32) return launch_v3<HD, 8, 32>(ctx, p, NH);
    } else {
        if (v.qr == 4 && v.qc == 16) return launch_v2<HD, 4, 16>(ctx, p, NH);
        if (v.qr == 8 && v.qc == 16) return launch_v2<HD, 8, 16>(ctx, p, NH);
        if (v.qr == 2 && v.qc == 32) return launch_v2<HD, 2, 32>(ctx, p, NH);
        if (v.qr == 1 && v.qc == 64) return launch_v2<HD, 1, 64>(ctx, p, NH);
        if (v.qr == 4 && v.qc == 32) return launch_v2<HD, 4, 32>(ctx, p, NH);
    }
    return cd_set_error(ctx, CD_ERR_INTERNAL, "lab attention: no kernel for tile %dx%d (v3 %d)", v.qr, v.qc, v.v3);
}

extern "C" cd_status cd_lab_attention_bf16(cd_ctx *ctx, const cd_attn_desc *d, const uint16_t *d_q, const uint16_t *d_k,
                                           const uint16_t *d_v, const uint16_t *d_ek, const uint16_t *d_ev, int64_t E,
                                           float *d_o, float *d_lse, int variant) {
    if (variant < 0 || variant >= LAB_NVARIANTS)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "lab attention: unknown variant %d (0..%d)", variant,
                            LAB_NVARIANTS - 1);
    const lab_variant &v = k_lab[variant];
    if (v.ship >= 0) return cd_cuda_attention_bf16(ctx, d, d_q, d_k, d_v, d_ek, d_ev, E, d_o, d_lse, v.ship);
    cd_attn_kparams p;
    cd_status s = cd_cuda_attn_params(ctx, d, d_q, d_k, d_v, d_ek, d_ev, E, d_o, d_lse, NULL, &p);
    if (s) return s;
    switch (d->head_dim) {
        case 32: return dispatch<32>(ctx, p, d->heads, v);
        case 64: return dispatch<64>(ctx, p, d->heads, v);
        default: return dispatch<128>(ctx, p, d->heads, v);
    }
}
