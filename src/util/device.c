/* device.c — the public device entry points: names, opening, descriptions. The CUDA backend is
 * reached through src/backend/cuda/cuda.h (the real one or the no-CUDA stub). */
#include "internal.h"
#include "../backend/cuda/cuda.h"

#include <stdio.h>

const char *cd_device_name(cd_device d) {
    switch (d) {
    case CD_DEVICE_CPU: return "cpu";
    case CD_DEVICE_CUDA: return "cuda";
    default: return "?";
    }
}

cd_status cd_device_open(cd_ctx *ctx, cd_device dev) {
    switch (dev) {
    case CD_DEVICE_CPU: return CD_OK;
    case CD_DEVICE_CUDA: return cd_cuda_init(ctx);
    default: return cd_set_error(ctx, CD_ERR_INVALID_ARG, "unknown device %d", (int)dev);
    }
}

const char *cd_device_desc(cd_ctx *ctx, cd_device dev) {
    if (dev == CD_DEVICE_CUDA) return cd_cuda_device_desc(ctx);
    static const char *const k[] = {"cpu", "cpu (generic C)", "cpu (AVX2)", "cpu (AVX-512)"};
    const cd_isa isa = cd_ctx_isa(ctx);
    return isa < CD_ISA_COUNT ? k[isa] : "cpu";
}

double cd_device_peak_flops(cd_ctx *ctx, cd_device dev) {
    return dev == CD_DEVICE_CUDA ? cd_cuda_peak_bf16(ctx) : 0.0;
}
