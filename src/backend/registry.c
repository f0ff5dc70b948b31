/* registry.c — the backends this build has, by device: the one place that maps a cd_device to an
 * ops table (docs/backends.md "Registry"). Model, pipeline and parallel code ask the table what it
 * can do (supports, workspace, host_memory) and never which device it is. The public device entry
 * points (names, opening, descriptions) live here too. */
#include "../ops/ops.h"
#include "cuda/cuda.h"

const char *cd_device_name(cd_device d) {
    switch (d) {
        case CD_DEVICE_CPU: return "cpu";
        case CD_DEVICE_CUDA: return "cuda";
        default: return "?";
    }
}

cd_status cd_backend_ops(cd_ctx *ctx, cd_device dev, const cd_ops **out) {
    *out = NULL;
    switch (dev) {
        case CD_DEVICE_CPU: *out = cd_ops_cpu(); return CD_OK;
        case CD_DEVICE_CUDA: {
            const cd_status s = cd_cuda_init(ctx); /* once per context; the reason when it cannot */
            if (s) return s;
            *out = cd_ops_cuda();
            return *out ? CD_OK : cd_set_error(ctx, CD_ERR_UNSUPPORTED, "this build has no CUDA ops");
        }
        default: return cd_set_error(ctx, CD_ERR_INVALID_ARG, "unknown device %d", (int)dev);
    }
}

cd_status cd_device_open(cd_ctx *ctx, cd_device dev) {
    const cd_ops *ops;
    return cd_backend_ops(ctx, dev, &ops);
}

const char *cd_device_desc(cd_ctx *ctx, cd_device dev) {
    if (dev == CD_DEVICE_CUDA) return cd_cuda_device_desc(ctx);
    static const char *const k[] = {"cpu", "cpu (generic C)", "cpu (AVX2)", "cpu (AVX-512)"};
    const cd_isa isa = cd_ctx_isa(ctx);
    if (cd_ctx_bf16(ctx)) return "cpu (AVX-512 + AVX512_BF16)";
    return isa < CD_ISA_COUNT ? k[isa] : "cpu";
}

double cd_device_peak_flops(cd_ctx *ctx, cd_device dev) { return dev == CD_DEVICE_CUDA ? cd_cuda_peak_bf16(ctx) : 0.0; }
