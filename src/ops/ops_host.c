/* ops_host.c — host-side helpers of the model forward that every backend shares: the timestep
 * embedding and the RoPE angle table (both tiny; computed once per forward, in double). */
#include "ops.h"

#include <math.h>

void cd_timestep_embedding(float t, int dim, float *out) {
    const int half = dim / 2;
    const double tt = 1000.0 * (double)t; /* FLUX embeds t in [0, 1] as 1000 t */
    for (int i = 0; i < half; i++) {
        const double f = exp(-log(10000.0) * (double)i / (double)half);
        out[i] = (float)cos(tt * f);          /* cos first (flip_sin_to_cos) */
        out[half + i] = (float)sin(tt * f);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

void cd_rope_table(const float *ids, size_t n, const int axes[3], double theta, float *cs) {
    int hd = axes[0] + axes[1] + axes[2];
    for (size_t t = 0; t < n; t++) {
        float *row = cs + t * (size_t)hd; /* hd/2 pairs of (cos, sin) */
        int p = 0;
        for (int a = 0; a < 3; a++)
            for (int j = 0; j < axes[a] / 2; j++, p++) {
                const double omega = pow(theta, -2.0 * j / (double)axes[a]);
                const double ang = (double)ids[t * 3 + a] * omega;
                row[2 * p] = (float)cos(ang);
                row[2 * p + 1] = (float)sin(ang);
            }
    }
}
