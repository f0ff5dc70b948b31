/* attn_geom.c — the CLEAR mask's geometry (attn.h), shared by every kernel and by the FLOP count:
 * the open disc's half-width per row offset and the radius beyond which nothing changes
 * (docs/clear.md). Below both the op layer (attention.c) and the CPU kernels, so that neither
 * depends on the other for it. */
#include "attn.h"

#include <math.h>

int cd_disc_halfwidth(int64_t r, int64_t dy) {
    if (dy < 0) dy = -dy;
    if (dy >= r) return -1;
    int64_t rem = r * r - dy * dy; /* > 0 */
    int64_t x = (int64_t)sqrt((double)rem);
    while (x * x >= rem) x--; /* fix double rounding: want the largest x, x^2 < rem */
    while ((x + 1) * (x + 1) < rem) x++;
    return (int)x;
}

int32_t cd_attn_eff_radius(const cd_attn_desc *d) {
    /* any two tokens are at squared distance <= (H-1)^2 + (W-1)^2 < (H+W)^2 */
    int64_t cover = (int64_t)d->grid_h + d->grid_w;
    return d->radius > cover ? (int32_t)cover : d->radius;
}
