/* qlinear_generic.c — the portable quantized-linear kernel (qlinear.h): per (weight block,
 * activation block) an exact int32 dot product, then acc += (d_w * d_x) * sumi in f32, blocks in
 * order. */
#include "qlinear.h"

#include "../../quant/ggml_types.h"

/* One weight block's 32 values as int8 and its scale. */
static float wblock(const uint8_t *p, uint32_t wtype, int8_t q[32]) {
    uint16_t h;
    memcpy(&h, p, 2);
    if (wtype == CD_GGML_Q8_0) {
        memcpy(q, p + 2, 32);
    } else {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((p[2 + j] & 0x0f) - 8);
            q[j + 16] = (int8_t)((p[2 + j] >> 4) - 8);
        }
    }
    return cd_qf16_to_f32(h);
}

void cd_qlinear_kern_generic(const cd_qx_block *xq, size_t n, size_t nb, const uint8_t *w, size_t wrow, uint32_t wtype,
                             int32_t o0, int32_t o1, const float *b, float *y, size_t ldy) {
    const size_t bs = wtype == CD_GGML_Q8_0 ? 34 : 18;
    for (int32_t o = o0; o < o1; o++) {
        const uint8_t *wr = w + (size_t)o * wrow;
        for (size_t i = 0; i < n; i++) {
            const cd_qx_block *xr = xq + i * nb;
            float acc = 0.0f;
            for (size_t k = 0; k < nb; k++) {
                int8_t q[32];
                const float dw = wblock(wr + k * bs, wtype, q);
                int32_t sumi = 0;
                for (int j = 0; j < 32; j++) sumi += (int32_t)q[j] * xr[k].q[j];
                acc += (dw * xr[k].d) * (float)sumi;
            }
            y[i * ldy + (size_t)o] = b ? acc + b[o] : acc;
        }
    }
}
