/* quant_dequant.c — dequantization speed per GGUF type (docs/quant.md "Speed"): one thread, 16 rows
 * of 3072 (cache-resident), best of 7 x 20 runs; prints GB/s of f32 output and of input. Random
 * bytes (the speed does not depend on the values). Build from the repository root:
 *   gcc -std=c11 -O2 -Iinclude -D_GNU_SOURCE bench/quant_dequant.c src/quant/dequant.c \
 *       src/quant/ggml_types.c -o build/bench_quant_dequant */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../src/quant/quant.h"
#include "../src/quant/ggml_types.h"
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(void) {
    const uint32_t ts[] = {CD_GGML_F32,  CD_GGML_F16,  CD_GGML_BF16, CD_GGML_Q8_0,   CD_GGML_Q4_0,
                           CD_GGML_Q4_1, CD_GGML_Q5_0, CD_GGML_Q5_1, CD_GGML_Q2_K,   CD_GGML_Q3_K,
                           CD_GGML_Q4_K, CD_GGML_Q5_K, CD_GGML_Q6_K, CD_GGML_IQ4_NL, CD_GGML_IQ4_XS};
    const size_t n = 3072 * 16; /* 16 FLUX-width rows: 192 KB of output, L2-resident */
    uint8_t *src = malloc(n * 4);
    float *dst = malloc(n * 4);
    srand(1);
    for (size_t i = 0; i < n * 4; i++) src[i] = rand();
    for (size_t t = 0; t < sizeof ts / 4; t++) {
        const cd_ggml_type_info *ti = cd_ggml_type_get(ts[t]);
        size_t rb = cd_ggml_row_bytes(ts[t], n);
        double best = 1e9;
        for (int r = 0; r < 7; r++) {
            double t0 = now();
            for (int k = 0; k < 20; k++) cd_dequant_row(ts[t], src, dst, n);
            double dt = (now() - t0) / 20;
            if (dt < best) best = dt;
        }
        printf("| %-6s | %6.2f | %6.2f |\n", ti->name, n * 4 / best / 1e9, rb / best / 1e9);
    }
    return dst[5] == 12345.f;
}
