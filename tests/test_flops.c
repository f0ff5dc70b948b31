/* test_flops.c — the exact pair/FLOP counter (cd_attn_pairs, cd_attn_flops) against the dense
 * closed form, the CLEAR paper's published cells (docs/clear.md), and an independent O(N^2)
 * brute force over the mask definition on small grids. */
#include "test.h"

#include <stdint.h>
#include <string.h>

#include "cleardit.h"

/* FLUX.1 at a pixel resolution: 24 heads x 128, one token per 16x16 pixels. */
static cd_attn_desc flux(int width_px, int height_px, int text, int radius, int down) {
    cd_attn_desc d = {24, 128, text, height_px / 16, width_px / 16, radius, down, 0.0f};
    return d;
}

/* The mask, literally (docs/clear.md "Who may attend to whom"): text query rows and text key
 * columns are dense; image-image pairs need (qy-ky)^2 + (qx-kx)^2 < r^2 (open disc, clipped at
 * the border simply by not existing); image queries additionally see all (H/d)*(W/d) pooled keys
 * when d >= 2. radius 0 = dense. */
static uint64_t brute_pairs(int H, int W, int T, int64_t r, int d) {
    const int64_t N = (int64_t)T + (int64_t)H * W;
    uint64_t count = 0;
    for (int64_t q = 0; q < N; q++) {
        for (int64_t k = 0; k < N; k++) {
            if (r == 0 || q < T || k < T) {
                count++;
                continue;
            }
            const int64_t qy = (q - T) / W, qx = (q - T) % W, ky = (k - T) / W, kx = (k - T) % W;
            if ((qy - ky) * (qy - ky) + (qx - kx) * (qx - kx) < r * r) count++;
        }
        if (q >= T && r > 0 && d >= 2) count += (uint64_t)(H / d) * (uint64_t)(W / d);
    }
    return count;
}

/* Keys of an interior query inside the open disc (the brute-force mask on an unclipped grid). */
static int disc_keys(int64_t r) {
    int n = 0;
    for (int64_t dy = -r; dy <= r; dy++)
        for (int64_t dx = -r; dx <= r; dx++) n += dy * dy + dx * dx < r * r;
    return n;
}

static int gflops_1dp(const cd_attn_desc *d, const char *want) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f", cd_attn_flops(d) / 1e9);
    return !strcmp(buf, want);
}

TEST(flops_dense_closed_form) {
    const int sizes[][3] = {{512, 512, 512},   {1024, 1024, 512}, {768, 1344, 512}, {2048, 2048, 512},
                            {4096, 4096, 256}, {8192, 8192, 512}, {16, 16, 0},      {1024, 1024, 0}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cd_attn_desc d = flux(sizes[i][0], sizes[i][1], sizes[i][2], 0, 0);
        const uint64_t n = (uint64_t)sizes[i][2] + (uint64_t)(sizes[i][0] / 16) * (sizes[i][1] / 16);
        EXPECT(cd_attn_pairs(&d) == n * n, "%dx%d: pairs %llu, want %llu", sizes[i][0], sizes[i][1],
               (unsigned long long)cd_attn_pairs(&d), (unsigned long long)(n * n));
        /* exact in double: n^2 * 12288 < 2^53 for these sizes */
        EXPECT(cd_attn_flops(&d) == (double)(n * n) * 4.0 * 3072.0, "%dx%d: flops %.17g", sizes[i][0], sizes[i][1],
               cd_attn_flops(&d));
    }
}

/* Cells of the paper's efficiency table quoted in docs/clear.md and docs/distillation.md (T = 512). */
TEST(flops_paper_cells) {
    cd_attn_desc d1024 = flux(1024, 1024, 512, 0, 0);
    EXPECT(gflops_1dp(&d1024, "260.9"), "1024^2 dense: %.4f GFLOPs, paper 260.9", cd_attn_flops(&d1024) / 1e9);
    cd_attn_desc d8k = flux(8192, 8192, 512, 0, 0);
    EXPECT(gflops_1dp(&d8k, "847726.7"), "8192^2 dense: %.4f GFLOPs, paper 847726.7", cd_attn_flops(&d8k) / 1e9);
    cd_attn_desc c8k = flux(8192, 8192, 512, 8, 0);
    EXPECT(gflops_1dp(&c8k, "3915.4"), "8192^2 r=8: %.4f GFLOPs, paper 3915.4", cd_attn_flops(&c8k) / 1e9);
    /* the paper's 1024^2 column as quoted in docs/distillation.md (attention GFLOPs/layer) */
    const struct {
        int r;
        const char *want;
    } c1k[] = {{8, "63.5"}, {16, "86.6"}, {32, "154.1"}};
    for (size_t i = 0; i < 3; i++) {
        cd_attn_desc c = flux(1024, 1024, 512, c1k[i].r, 0);
        EXPECT(gflops_1dp(&c, c1k[i].want), "1024^2 r=%d: %.4f GFLOPs, paper %s", c1k[i].r, cd_attn_flops(&c) / 1e9,
               c1k[i].want);
    }
    /* "reduces attention computations by 99.5%" */
    char red[16];
    snprintf(red, sizeof red, "%.1f", 100.0 * (1.0 - cd_attn_flops(&c8k) / cd_attn_flops(&d8k)));
    EXPECT(!strcmp(red, "99.5"), "8K r=8 reduction %s%%, paper 99.5%%", red);
}

TEST(flops_equals_four_pairs_heads_headdim) {
    cd_attn_desc d = {3, 40, 7, 9, 13, 4, 0, 0.0f};
    EXPECT(cd_attn_flops(&d) == 4.0 * (double)cd_attn_pairs(&d) * 3 * 40, "flops formula");
}

/* The spec's interior disc sizes, as a check of the brute-force mask itself. */
TEST(flops_disc_sizes_of_the_oracle) {
    EXPECT(disc_keys(8) == 193, "r=8: %d", disc_keys(8));
    EXPECT(disc_keys(16) == 793, "r=16: %d", disc_keys(16));
    EXPECT(disc_keys(32) == 3205, "r=32: %d", disc_keys(32));
    EXPECT(disc_keys(1) == 1, "r=1 is the query alone");
    EXPECT(disc_keys(2) == 9, "r=2 is the 3x3 block (open disc excludes distance 2)");
    /* On (2r+1)^2 grids, where the centre query sees its whole disc, the library agrees. */
    for (int r = 1; r <= 9; r++) {
        const int s = 2 * r + 1;
        cd_attn_desc d = {1, 1, 0, s, s, r, 0, 0.0f};
        EXPECT(cd_attn_pairs(&d) == brute_pairs(s, s, 0, r, 0), "r=%d on %dx%d", r, s, s);
    }
}

TEST(flops_pairs_match_brute_force) {
    /* H, W, T, r, d: 1xN and Nx1 strips, grids smaller than the disc, r = 1 and 2, odd sizes,
     * pooled keys, text-only-free sequences, and radii covering the whole grid. */
    const int64_t cases[][5] = {
        {1, 17, 0, 3, 0},         {1, 1, 0, 1, 0},          {17, 1, 5, 4, 0},  {1, 31, 2, 40, 0},  {3, 3, 2, 10, 0},
        {2, 5, 1, 100, 0},        {6, 8, 4, 1, 0},          {6, 8, 4, 2, 0},   {5, 7, 3, 3, 0},    {9, 11, 7, 5, 0},
        {12, 9, 0, 7, 3},         {8, 12, 6, 5, 2},         {8, 8, 4, 3, 4},   {16, 16, 16, 8, 4}, {10, 10, 0, 6, 5},
        {4, 6, 3, 1, 2},          {7, 7, 1, 4, 7},          {13, 5, 9, 3, 1},  {20, 3, 2, 11, 0},  {15, 14, 3, 9, 0},
        {4, 4, 0, 1000000000, 0}, {6, 4, 5, 2000000000, 2}, {24, 24, 8, 8, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int H = (int)cases[i][0], W = (int)cases[i][1], T = (int)cases[i][2];
        const int64_t r = cases[i][3];
        const int d = (int)cases[i][4];
        cd_attn_desc desc = {2, 16, T, H, W, (int32_t)r, d, 0.0f};
        const uint64_t got = cd_attn_pairs(&desc), want = brute_pairs(H, W, T, r, d);
        EXPECT(got == want, "H=%d W=%d T=%d r=%lld d=%d: cd_attn_pairs %llu, brute force %llu", H, W, T, (long long)r,
               d, (unsigned long long)got, (unsigned long long)want);
    }
}

TEST(flops_huge_radius_is_dense) {
    const int grids[][3] = {{4, 4, 0}, {7, 3, 5}, {1, 9, 2}, {64, 64, 512}};
    for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++) {
        cd_attn_desc dense = {24, 128, grids[i][2], grids[i][0], grids[i][1], 0, 0, 0.0f};
        cd_attn_desc wide = dense;
        wide.radius = INT32_MAX;
        EXPECT(cd_attn_pairs(&wide) == cd_attn_pairs(&dense), "%dx%d T=%d: r=max %llu vs dense %llu", grids[i][0],
               grids[i][1], grids[i][2], (unsigned long long)cd_attn_pairs(&wide),
               (unsigned long long)cd_attn_pairs(&dense));
        /* the smallest covering radius: distance^2 <= (H-1)^2 + (W-1)^2 < r^2 */
        int64_t h = grids[i][0] - 1, w = grids[i][1] - 1, r = 1;
        while (r * r <= h * h + w * w) r++;
        wide.radius = (int32_t)r;
        EXPECT(cd_attn_pairs(&wide) == cd_attn_pairs(&dense), "smallest covering radius %lld", (long long)r);
        wide.radius = (int32_t)(r - 1); /* one less misses the opposite corners */
        EXPECT(cd_attn_pairs(&wide) < cd_attn_pairs(&dense), "radius %lld must not cover", (long long)(r - 1));
    }
}
