/* ops_host.c — host-side helpers of the model forward that every backend shares: the timestep
 * embedding and the RoPE angle table (both tiny; computed once per forward, in double). */
#include "ops.h"

#include <math.h>

/* float32(exp(e_i)), e_i = float32(float32(-ln 10000) * i) / 128, exactly as PyTorch computes them in
 * BFL's timestep_embedding and diffusers' get_timestep_embedding (torch.exp of the float32 exponent,
 * CPU). They equal the correctly rounded exp except at i = 12 and 106 (one ulp), and one ulp at
 * i = 12 moves the argument t' f_i by up to 4000 * 3e-8 = 1e-4 (guidance 4): measured ~5e-6 relative
 * at the output of the tiny test models, half the 1e-5 conformance budget. */
static const float k_freq128[128] = {
    0x1p+0f,         0x1.dc73fp-1f,   0x1.bb5facp-1f,  0x1.9c9758p-1f,  0x1.7ff222p-1f,  0x1.654a0cp-1f,
    0x1.4c7bcp-1f,   0x1.356656p-1f,  0x1.1feb34p-1f,  0x1.0beddcp-1f,  0x1.f2a79cp-2f,  0x1.d008cp-2f,
    0x1.afd136p-2f,  0x1.91d646p-2f,  0x1.75f036p-2f,  0x1.5bf9fep-2f,  0x1.43d136p-2f,  0x1.2d55d4p-2f,
    0x1.186a06p-2f,  0x1.04f21p-2f,   0x1.e5a844p-3f,  0x1.c3f06cp-3f,  0x1.a48fdap-3f,  0x1.875cf8p-3f,
    0x1.6c310ep-3f,  0x1.52e812p-3f,  0x1.3b607ep-3f,  0x1.257b2p-3f,   0x1.111aeep-3f,  0x1.fc49bep-4f,
    0x1.d8ffaap-4f,  0x1.b828c8p-4f,  0x1.999998p-4f,  0x1.7d298ep-4f,  0x1.62b2fp-4f,   0x1.4a12aep-4f,
    0x1.33281ap-4f,  0x1.1dd4d8p-4f,  0x1.09fc98p-4f,  0x1.ef0a22p-5f,  0x1.ccab82p-5f,  0x1.acafc6p-5f,
    0x1.8eec8p-5f,   0x1.733a3p-5f,   0x1.59742ap-5f,  0x1.417836p-5f,  0x1.2b269p-5f,   0x1.166196p-5f,
    0x1.030dc4p-5f,  0x1.e222eep-6f,  0x1.c0a9a2p-6f,  0x1.a1835p-6f,   0x1.84869cp-6f,  0x1.698d22p-6f,
    0x1.507312p-6f,  0x1.39172cp-6f,  0x1.235a72p-6f,  0x1.0f2012p-6f,  0x1.f89a6p-7f,   0x1.d591ccp-7f,
    0x1.b4f7e2p-7f,  0x1.96a16ap-7f,  0x1.7a661cp-7f,  0x1.6020ap-7f,   0x1.47ae14p-7f,  0x1.30ee0cp-7f,
    0x1.1bc25cp-7f,  0x1.080eeep-7f,  0x1.eb735ap-8f,  0x1.c9548ap-8f,  0x1.a9942ap-8f,  0x1.8c0814p-8f,
    0x1.708934p-8f,  0x1.56f304p-8f,  0x1.3f2398p-8f,  0x1.28fb5ep-8f,  0x1.145ceap-8f,  0x1.012cf8p-8f,
    0x1.dea41ap-9f,  0x1.bd68f4p-9f,  0x1.9e7c66p-9f,  0x1.81b584p-9f,  0x1.66ee1ap-9f,  0x1.4e02a6p-9f,
    0x1.36d21ap-9f,  0x1.213dbp-9f,   0x1.0d28dap-9f,  0x1.f4f1ep-10f,  0x1.d22a5p-10f,  0x1.b1cceap-10f,
    0x1.93aeb2p-10f, 0x1.77a7d6p-10f, 0x1.5d931cp-10f, 0x1.454deep-10f, 0x1.2eb816p-10f, 0x1.19b3b2p-10f,
    0x1.0624dcp-10f, 0x1.e7e344p-11f, 0x1.c603c6p-11f, 0x1.a67e48p-11f, 0x1.892914p-11f, 0x1.6ddd3ap-11f,
    0x1.547688p-11f, 0x1.3cd344p-11f, 0x1.26d428p-11f, 0x1.125c02p-11f, 0x1.fe9f5ap-12f, 0x1.db2bc8p-12f,
    0x1.ba2e42p-12f, 0x1.9b7b26p-12f, 0x1.7ee9acp-12f, 0x1.6453f6p-12f, 0x1.4b96c2p-12f, 0x1.34914p-12f,
    0x1.1f24eap-12f, 0x1.0b3548p-12f, 0x1.f1501ap-13f, 0x1.cec918p-13f, 0x1.aea7c4p-13f, 0x1.90c17ep-13f,
    0x1.74eea6p-13f, 0x1.5b0a54p-13f, 0x1.42f232p-13f, 0x1.2c864cp-13f, 0x1.17a8dap-13f, 0x1.043e5p-13f,
    0x1.e459bap-14f, 0x1.c2b91cp-14f,
};

void cd_timestep_embedding(float t, int dim, float *out) {
    const int half = dim / 2;
    /* Both references compute in float32: t' = fl32(1000 t), f_i as above, the argument
     * fl32(t' f_i) (only cos/sin are taken in double here; they round to within one ulp of
     * PyTorch's). Computing t' f_i exactly instead differs from them by up to ~1e-4 in the
     * embedding and ~2e-5 relative at the model output. */
    const float tt = (float)(1000.0 * (double)t);
    const float e0 = (float)-log(10000.0);
    for (int i = 0; i < half; i++) {
        const float f = half == 128 ? k_freq128[i] : (float)exp((double)((e0 * (float)i) / (float)half));
        const double arg = (double)(float)((double)tt * (double)f);
        out[i] = (float)cos(arg); /* cos first (flip_sin_to_cos) */
        out[half + i] = (float)sin(arg);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

void cd_rope_table(const float *ids, size_t n, const int axes[3], double theta, float *cs) {
    const int hd = axes[0] + axes[1] + axes[2];
    double omega[4096]; /* per pair, computed once (head_dim is far below 8192) */
    int axis[4096];
    int np = 0;
    for (int a = 0; a < 3; a++)
        for (int j = 0; j < axes[a] / 2 && np < 4096; j++, np++) {
            omega[np] = pow(theta, -2.0 * j / (double)axes[a]);
            axis[np] = a;
        }
        /* rows are independent: threads for the large tables of high-resolution images */
#pragma omp parallel for schedule(static) if (n >= 4096)
    for (size_t t = 0; t < n; t++) {
        float *row = cs + t * (size_t)hd; /* hd/2 pairs of (cos, sin) */
        for (int p = 0; p < np; p++) {
            const double ang = (double)ids[t * 3 + axis[p]] * omega[p];
            row[2 * p] = (float)cos(ang);
            row[2 * p + 1] = (float)sin(ang);
        }
    }
}
