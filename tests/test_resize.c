/* test_resize.c — cd_rgb8_resize (src/io/resize.c) against Pillow: every fixture that
 * tests/oracle/resize_fixtures.py wrote with Pillow's Image.resize (default BICUBIC) under
 * tests/fixtures/resize/ must come out byte for byte equal (no tolerance: the C code follows
 * Pillow's coefficients, fixed point and pass order exactly), with 1 and 3 threads. The
 * fixtures cover x2, x3.5, x0.37, mixed up/down, 1-pixel sources and targets, each pass alone,
 * clamping, both pass orders and the ties of Pillow 13's order rule, and 48 random small cases. Also: bad
 * arguments (dst untouched), the same-size copy, thread-count independence on larger images
 * with guard bytes after dst, and constant images staying constant at extreme ratios (which
 * exercises the widest antialiasing kernels). */
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleardit.h"

#define FIX_DIR "tests/fixtures/resize"
#define REGEN "run 'python3 tests/oracle/resize_fixtures.py' from the repository root"
#define GUARD 64

static cd_ctx *ctx_threads(int threads) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = threads;
    return cd_ctx_create(&p, &ctx) == CD_OK ? ctx : NULL;
}

static int meta_u32(const cd_st_file *f, const char *key, uint32_t *v) {
    const char *s = cd_st_meta(f, key);
    if (!s || !*s) return 0;
    char *end;
    unsigned long x = strtoul(s, &end, 10);
    if (*end || x == 0 || x > CD_PNG_MAX_SIDE) return 0;
    *v = (uint32_t)x;
    return 1;
}

/* The U8 tensor `name` of shape [h, w, 3], or NULL. */
static const uint8_t *fix_rgb(const cd_st_file *f, const char *name, uint32_t w, uint32_t h) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t || t->dtype != CD_DTYPE_U8 || t->ndim != 3 || t->shape[0] != h || t->shape[1] != w || t->shape[2] != 3)
        return NULL;
    return t->data;
}

static void fill_random(uint8_t *p, size_t n, unsigned long long seed) {
    test_rng r = test_rng_seed(seed);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(test_rng_u64(&r) >> 56);
}

/* Resizes src with 1 and 3 threads and compares with Pillow's want byte for byte. Returns 1 when
 * both match; otherwise prints the case and records a failure. */
static int check_case(cd_ctx *const ctx[2], const char *label, const char *pillow, const uint8_t *src, uint32_t sw,
                      uint32_t sh, const uint8_t *want, uint32_t dw, uint32_t dh) {
    const size_t n = (size_t)dw * dh * 3;
    uint8_t *got = malloc(n);
    if (!got) {
        test_fail(__FILE__, __LINE__, "out of memory");
        return 0;
    }
    int ok = 1;
    for (int pass = 0; pass < 2; pass++) {
        const int threads = cd_ctx_threads(ctx[pass]);
        memset(got, 0xA5, n);
        if (cd_rgb8_resize(ctx[pass], src, sw, sh, got, dw, dh) != CD_OK) {
            test_fail(__FILE__, __LINE__, "%s: %s", label, cd_ctx_error(ctx[pass]));
            ok = 0;
            break;
        }
        size_t ndiff = 0, first = 0;
        int maxd = 0;
        for (size_t i = 0; i < n; i++) {
            int dd = abs((int)got[i] - (int)want[i]);
            if (dd && !ndiff++) first = i;
            if (dd > maxd) maxd = dd;
        }
        if (ndiff) {
            printf("  %s (%ux%u -> %ux%u), %d thread(s): %zu of %zu bytes differ from Pillow, "
                   "max %d\n",
                   label, sw, sh, dw, dh, threads, ndiff, n, maxd);
            test_fail(__FILE__, __LINE__,
                      "%s (%ux%u -> %ux%u, %d thread(s), Pillow %s): %zu of %zu bytes differ, "
                      "max %d; first at pixel (%zu, %zu) channel %zu: %u, Pillow %u",
                      label, sw, sh, dw, dh, threads, pillow ? pillow : "?", ndiff, n, maxd, (first / 3) % dw,
                      first / 3 / dw, first % 3, got[first], want[first]);
            ok = 0;
        }
    }
    free(got);
    return ok;
}

/* Checks every case of one fixture file: either one case (metadata sw, sh, dw, dh; tensors src,
 * dst) or several (metadata cases = "sw:sh:dw:dh,..."; tensors src_<i>, dst_<i>). Returns the
 * number of cases checked, -1 if the file is unusable (failure recorded). */
static int check_file(cd_ctx *const ctx[2], const char *path) {
    cd_st_file *f = NULL;
    if (cd_st_open(ctx[0], path, &f) != CD_OK) {
        test_fail(__FILE__, __LINE__, "%s (%s)", cd_ctx_error(ctx[0]), REGEN);
        return -1;
    }
    const char *pillow = cd_st_meta(f, "pillow_version");
    const char *cases = cd_st_meta(f, "cases");
    int n = 0;
    if (!cases) {
        uint32_t sw, sh, dw, dh;
        const uint8_t *src = NULL, *want = NULL;
        if (!meta_u32(f, "sw", &sw) || !meta_u32(f, "sh", &sh) || !meta_u32(f, "dw", &dw) || !meta_u32(f, "dh", &dh) ||
            !(src = fix_rgb(f, "src", sw, sh)) || !(want = fix_rgb(f, "dst", dw, dh))) {
            test_fail(__FILE__, __LINE__, "%s: bad metadata or tensors (%s)", path, REGEN);
            n = -1;
        } else {
            check_case(ctx, path, pillow, src, sw, sh, want, dw, dh);
            n = 1;
        }
    } else {
        for (const char *p = cases; *p; n++) {
            unsigned sw, sh, dw, dh;
            int used = 0;
            char sname[32], dname[32];
            snprintf(sname, sizeof sname, "src_%d", n);
            snprintf(dname, sizeof dname, "dst_%d", n);
            const uint8_t *src = NULL, *want = NULL;
            if (sscanf(p, "%u:%u:%u:%u%n", &sw, &sh, &dw, &dh, &used) != 4 || !(src = fix_rgb(f, sname, sw, sh)) ||
                !(want = fix_rgb(f, dname, dw, dh))) {
                test_fail(__FILE__, __LINE__, "%s: case %d: bad metadata or tensors (%s)", path, n, REGEN);
                n = -1;
                break;
            }
            char label[600];
            snprintf(label, sizeof label, "%s case %d", path, n);
            check_case(ctx, label, pillow, src, sw, sh, want, dw, dh);
            p += used;
            if (*p == ',') p++;
        }
    }
    cd_st_close(f);
    return n;
}

/* Every fixture file (and the file named by CD_RESIZE_EXTRA, if set: a larger sweep written by
 * resize_fixtures.py --sweep-out), exact equality with 1 and 3 threads. */
TEST(resize_pillow_fixtures) {
    cd_ctx *ctx[2] = {ctx_threads(1), ctx_threads(3)};
    DIR *d = ctx[0] && ctx[1] ? opendir(FIX_DIR) : NULL;
    int n_files = 0, n_cases = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FIX_DIR, e->d_name);
        int n = check_file(ctx, path);
        if (n < 0) break;
        n_files++;
        n_cases += n;
    }
    const char *extra = getenv("CD_RESIZE_EXTRA");
    if (d && extra && *extra) {
        int n = check_file(ctx, extra);
        if (n > 0) printf("  %s: %d extra cases checked\n", extra, n);
    }
    if (d) closedir(d);
    const int have_ctx = ctx[0] && ctx[1];
    cd_ctx_free(ctx[0]);
    cd_ctx_free(ctx[1]);
    CHECK(have_ctx, "cannot create contexts");
    CHECK(d, "no %s: %s", FIX_DIR, REGEN);
    if (!test_failed())
        CHECK(n_files >= 17 && n_cases >= 64, "only %d fixture files (%d cases) in %s: %s", n_files, n_cases, FIX_DIR,
              REGEN);
}

/* Bad arguments: CD_ERR_INVALID_ARG, a message, dst untouched. */
TEST(resize_bad_args) {
    cd_ctx *ctx = ctx_threads(1);
    CHECK(ctx, "ctx");
    uint8_t src[4 * 4 * 3] = {0}, dst[4 * 4 * 3];
    memset(dst, 0x5A, sizeof dst);
    struct {
        const uint8_t *s;
        uint32_t sw, sh;
        uint8_t *d;
        uint32_t dw, dh;
        const char *what;
    } bad[] = {
        {NULL, 4, 4, dst, 2, 2, "NULL src"},
        {src, 4, 4, NULL, 2, 2, "NULL dst"},
        {src, 0, 4, dst, 2, 2, "zero source width"},
        {src, 4, 0, dst, 2, 2, "zero source height"},
        {src, 4, 4, dst, 0, 2, "zero target width"},
        {src, 4, 4, dst, 2, 0, "zero target height"},
        {src, CD_PNG_MAX_SIDE + 1, 1, dst, 2, 2, "source wider than the limit"},
        {src, 4, 4, dst, 1, CD_PNG_MAX_SIDE + 1, "target taller than the limit"},
        {src, CD_PNG_MAX_SIDE, CD_PNG_MAX_SIDE, dst, 2, 2, "source over the pixel limit"},
        {src, 4, 4, dst, CD_PNG_MAX_SIDE, CD_PNG_MAX_SIDE, "target over the pixel limit"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cd_status s = cd_rgb8_resize(ctx, bad[i].s, bad[i].sw, bad[i].sh, bad[i].d, bad[i].dw, bad[i].dh);
        EXPECT(s == CD_ERR_INVALID_ARG, "%s: status %s", bad[i].what, cd_status_str(s));
        EXPECT(strstr(cd_ctx_error(ctx), "resize"), "%s: message '%s'", bad[i].what, cd_ctx_error(ctx));
    }
    for (size_t i = 0; i < sizeof dst; i++) CHECK(dst[i] == 0x5A, "dst written by a failed call at byte %zu", i);
    /* NULL ctx is allowed (one thread, no message kept). */
    EXPECT(cd_rgb8_resize(NULL, NULL, 4, 4, dst, 2, 2) == CD_ERR_INVALID_ARG, "NULL ctx");
    EXPECT(cd_rgb8_resize(NULL, src, 4, 4, dst, 2, 2) == CD_OK, "NULL ctx, valid call");
    cd_ctx_free(ctx);
}

TEST(resize_same_size_copies) {
    cd_ctx *ctx = ctx_threads(2);
    CHECK(ctx, "ctx");
    enum { W = 37, H = 11 };
    uint8_t src[W * H * 3], dst[W * H * 3];
    fill_random(src, sizeof src, 5);
    memset(dst, 0, sizeof dst);
    EXPECT(cd_rgb8_resize(ctx, src, W, H, dst, W, H) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(!memcmp(src, dst, sizeof src), "same size is not a copy");
    cd_ctx_free(ctx);
}

/* 1, 2, 3 and 7 threads give the same bytes, and nothing is written past dw*dh*3. */
TEST(resize_threads_deterministic) {
    static const uint32_t shapes[][4] = {
        {301, 257, 517, 133},
        {301, 257, 97, 389},
        {301, 257, 640, 600},
        {301, 257, 33, 17},
    };
    const uint32_t sw = 301, sh = 257;
    uint8_t *src = malloc((size_t)sw * sh * 3);
    CHECK(src, "oom");
    fill_random(src, (size_t)sw * sh * 3, 77);
    static const int threads[] = {1, 2, 3, 7};
    cd_ctx *ctx[4];
    for (int t = 0; t < 4; t++) ctx[t] = ctx_threads(threads[t]);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] && !test_failed(); s++) {
        const uint32_t dw = shapes[s][2], dh = shapes[s][3];
        const size_t n = (size_t)dw * dh * 3;
        uint8_t *ref = NULL;
        for (int t = 0; t < 4 && !test_failed(); t++) {
            uint8_t *got = ctx[t] ? malloc(n + GUARD) : NULL;
            if (!got) {
                test_fail(__FILE__, __LINE__, "oom or no ctx");
                break;
            }
            memset(got, 0xC3, n + GUARD);
            if (cd_rgb8_resize(ctx[t], src, sw, sh, got, dw, dh) != CD_OK)
                test_fail(__FILE__, __LINE__, "%s", cd_ctx_error(ctx[t]));
            for (size_t i = n; i < n + GUARD; i++)
                if (got[i] != 0xC3) {
                    test_fail(__FILE__, __LINE__, "%ux%u: guard byte %zu overwritten", dw, dh, i - n);
                    break;
                }
            if (!ref) {
                ref = got;
                continue;
            }
            EXPECT(!memcmp(ref, got, n), "%ux%u: %d threads differ from 1 thread", dw, dh, threads[t]);
            free(got);
        }
        free(ref);
    }
    for (int t = 0; t < 4; t++) cd_ctx_free(ctx[t]);
    free(src);
}

/* A constant image stays exactly constant, also with the widest kernels (65536 -> 1: 262145
 * taps) and from one pixel: the normalised fixed-point weights sum to 2^22 within a few units. */
TEST(resize_constant_extremes) {
    cd_ctx *ctx = ctx_threads(2);
    CHECK(ctx, "ctx");
    static const uint32_t cases[][4] = {
        {CD_PNG_MAX_SIDE, 1, 1, 1},
        {CD_PNG_MAX_SIDE, 1, 3, 2},
        {1, CD_PNG_MAX_SIDE, 1, 7},
        {1, 1, 1000, 3},
        {3, 2, 1, 1},
        {1000, 7, 999, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && !test_failed(); i++) {
        const uint32_t sw = cases[i][0], sh = cases[i][1], dw = cases[i][2], dh = cases[i][3];
        const size_t ns = (size_t)sw * sh * 3, nd = (size_t)dw * dh * 3;
        uint8_t *s = malloc(ns), *d = malloc(nd);
        CHECK(s && d, "oom");
        static const uint8_t rgb[3] = {0, 137, 255};
        for (size_t j = 0; j < ns; j++) s[j] = rgb[j % 3];
        EXPECT(cd_rgb8_resize(ctx, s, sw, sh, d, dw, dh) == CD_OK, "%s", cd_ctx_error(ctx));
        for (size_t j = 0; j < nd; j++)
            if (d[j] != rgb[j % 3]) {
                test_fail(__FILE__, __LINE__, "%ux%u -> %ux%u: byte %zu is %u, not %u", sw, sh, dw, dh, j, d[j],
                          rgb[j % 3]);
                break;
            }
        free(s);
        free(d);
    }
    cd_ctx_free(ctx);
}
