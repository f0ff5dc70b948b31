/* test_png.c — PNG I/O (io/png.c): round trips, text chunks checked with libpng directly, every
 * PNG colour type written with libpng directly and read as 8-bit RGB, the error cases (nothing
 * left behind by a failed write), and BFL's float <-> u8 pixel rules. */
#include "test.h"
#include "test_files.h"

#include "cleardit.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>

static cd_ctx *ctx_new(void) {
    cd_ctx *ctx = NULL;
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = 1;
    return cd_ctx_create(&p, &ctx) == CD_OK ? ctx : NULL;
}

/* ---- libpng directly (independent of the code under test) ---------------------------------- */

typedef struct {
    int color_type, bit_depth, interlace;
    const png_color *palette;
    int n_palette;
    const png_byte *trns;
    int n_trns;
    const png_color_16 *trns_color; /* tRNS of a gray or RGB image */
    const char *end_key, *end_text; /* a tEXt chunk after IDAT (Latin-1), or NULL */
} lp_opts;

/* Writes rows (each rowbytes long, packed as the PNG stores them; 16-bit big-endian). */
static int lp_write(const char *path, uint32_t w, uint32_t h, const lp_opts *o, const uint8_t *data, size_t rowbytes) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return 0;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, o->bit_depth, o->color_type, o->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (o->palette) png_set_PLTE(png, info, o->palette, o->n_palette);
    if (o->trns || o->trns_color) png_set_tRNS(png, info, o->trns, o->n_trns, o->trns_color);
    png_write_info(png, info);
    const int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (uint32_t y = 0; y < h; y++) png_write_row(png, data + (size_t)y * rowbytes);
    if (o->end_key) {
        png_text t = {
            .compression = PNG_TEXT_COMPRESSION_NONE, .key = (png_charp)o->end_key, .text = (png_charp)o->end_text};
        png_set_text(png, info, &t, 1);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0;
}

/* Reads the file with libpng: size, IHDR, and the text chunk `key` (compression, value). */
typedef struct {
    uint32_t w, h;
    int color_type, bit_depth;
    int found, compression;
    char text[256];
} lp_info;

static int lp_read(const char *path, const char *key, lp_info *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *row = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(row);
        fclose(f);
        return 0;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    out->w = png_get_image_width(png, info);
    out->h = png_get_image_height(png, info);
    out->color_type = png_get_color_type(png, info);
    out->bit_depth = png_get_bit_depth(png, info);
    row = malloc(png_get_rowbytes(png, info));
    for (uint32_t y = 0; y < out->h; y++) png_read_row(png, row, NULL);
    png_read_end(png, info);
    png_textp t;
    int n = png_get_text(png, info, &t, NULL);
    for (int i = 0; i < n && key; i++)
        if (!strcmp(t[i].key, key)) {
            out->found++;
            out->compression = t[i].compression;
            snprintf(out->text, sizeof out->text, "%s", t[i].text);
        }
    png_destroy_read_struct(&png, &info, NULL);
    free(row);
    fclose(f);
    return 1;
}

/* Sets IHDR's width and height of a PNG file and fixes its CRC (CRC-32 of type + data). */
static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}
static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static int patch_ihdr(const char *path, uint32_t w, uint32_t h) {
    uint8_t b[33];
    FILE *f = fopen(path, "r+b");
    if (!f) return 0;
    int ok = fread(b, 1, 33, f) == 33 && !memcmp(b + 12, "IHDR", 4);
    if (ok) {
        be32(b + 16, w);
        be32(b + 20, h);
        be32(b + 29, crc32_png(b + 12, 17));
        ok = fseek(f, 0, SEEK_SET) == 0 && fwrite(b, 1, 33, f) == 33;
    }
    return fclose(f) == 0 && ok;
}

static uint8_t *read_all(const char *path, long *len) {
    *len = file_size(path);
    FILE *f = fopen(path, "rb");
    uint8_t *b = f && *len >= 0 ? malloc((size_t)*len + 1) : NULL;
    if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
        free(b);
        b = NULL;
    }
    if (f) fclose(f);
    return b;
}

/* ---- round trips -------------------------------------------------------------------------- */

TEST(png_roundtrip_random_sizes) {
    cd_ctx *ctx = ctx_new();
    char dir[64], path[128];
    CHECK(ctx && tmp_dir_tag(dir, sizeof dir, "png"), "setup");
    snprintf(path, sizeof path, "%s/out.png", dir);
    const uint32_t sizes[][2] = {{1, 1}, {257, 3}, {3, 257}, {17, 31}, {64, 64}};
    test_rng r = test_rng_seed(11);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0] && !test_failed(); k++) {
        const uint32_t w = sizes[k][0], h = sizes[k][1];
        const size_t n = (size_t)w * h * 3;
        uint8_t *img = malloc(n), *back = NULL;
        for (size_t i = 0; i < n; i++) img[i] = (uint8_t)test_rng_u64(&r);
        cd_status s = cd_png_write(ctx, path, img, w, h, NULL, 0); /* also overwrites */
        EXPECT(s == CD_OK, "%ux%u write: %s", w, h, cd_ctx_error(ctx));
        EXPECT(dir_count(dir) == 1, "%ux%u: %d entries (temp file left?)", w, h, dir_count(dir));
        lp_info li;
        EXPECT(lp_read(path, NULL, &li) && li.w == w && li.h == h && li.color_type == PNG_COLOR_TYPE_RGB &&
                   li.bit_depth == 8,
               "%ux%u: libpng reads %ux%u type %d depth %d", w, h, li.w, li.h, li.color_type, li.bit_depth);
        uint32_t bw = 0, bh = 0;
        s = cd_png_read(ctx, path, &back, &bw, &bh);
        EXPECT(s == CD_OK && bw == w && bh == h && back && !memcmp(img, back, n), "%ux%u read back: %s", w, h,
               s ? cd_ctx_error(ctx) : "pixels differ");
        struct stat st;
        EXPECT(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "mode %o", st.st_mode & 0777);
        free(img);
        free(back);
    }
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

TEST(png_text_chunks) {
    cd_ctx *ctx = ctx_new();
    char dir[64], path[128], path2[128];
    CHECK(ctx && tmp_dir_tag(dir, sizeof dir, "png"), "setup");
    snprintf(path, sizeof path, "%s/gen.png", dir);
    snprintf(path2, sizeof path2, "%s/end.png", dir);
    const char *prompt = "a cat on a mat, \"photo\"\nsecond line";
    const char *utf8 = "caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac"; /* café ✓ 日本 */
    const char *text[] = {"prompt", prompt, "seed", "42", "Comment", utf8, "empty", ""};
    const uint8_t px[6] = {1, 2, 3, 4, 5, 6};
    CHECK(cd_png_write(ctx, path, px, 2, 1, text, 4) == CD_OK, "write: %s", cd_ctx_error(ctx));

    /* libpng itself: ASCII values are tEXt, the UTF-8 one is iTXt */
    lp_info li;
    CHECK(lp_read(path, "prompt", &li) && li.found == 1, "libpng: no prompt");
    EXPECT(li.compression == PNG_TEXT_COMPRESSION_NONE && !strcmp(li.text, prompt), "prompt: compression %d '%s'",
           li.compression, li.text);
    CHECK(lp_read(path, "seed", &li) && li.found == 1, "libpng: no seed");
    EXPECT(li.compression == PNG_TEXT_COMPRESSION_NONE && !strcmp(li.text, "42"), "seed");
    CHECK(lp_read(path, "Comment", &li) && li.found == 1, "libpng: no Comment");
    EXPECT(li.compression == PNG_ITXT_COMPRESSION_NONE && !strcmp(li.text, utf8), "Comment: compression %d '%s'",
           li.compression, li.text);

    /* our reader */
    const char *keys[] = {"prompt", "seed", "Comment", "empty"};
    const char *want[] = {prompt, "42", utf8, ""};
    for (int i = 0; i < 4; i++) {
        char *v = NULL;
        cd_status s = cd_png_text(ctx, path, keys[i], &v);
        EXPECT(s == CD_OK && v && !strcmp(v, want[i]), "%s: %s", keys[i], s ? cd_ctx_error(ctx) : v);
        free(v);
    }
    char *v = (char *)1;
    EXPECT(cd_png_text(ctx, path, "steps", &v) == CD_ERR_NOT_FOUND && v == NULL && strstr(cd_ctx_error(ctx), "steps") &&
               strstr(cd_ctx_error(ctx), "gen.png"),
           "missing key: %s", cd_ctx_error(ctx));

    /* a Latin-1 tEXt after IDAT (written by libpng) comes back as UTF-8 */
    const lp_opts o = {.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .end_key = "Author", .end_text = "Ren\xe9"};
    CHECK(lp_write(path2, 2, 1, &o, px, 6), "lp_write");
    CHECK(cd_png_text(ctx, path2, "Author", &v) == CD_OK, "%s", cd_ctx_error(ctx));
    EXPECT(!strcmp(v, "Ren\xc3\xa9"), "Latin-1 -> UTF-8: '%s'", v);
    free(v);
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* ---- reading every kind of PNG ------------------------------------------------------------ */

/* Writes with libpng, reads with cd_png_read, compares with want (w*h*3). */
static void check_kind(cd_ctx *ctx, const char *path, const char *what, uint32_t w, uint32_t h, const lp_opts *o,
                       const uint8_t *data, size_t rowbytes, const uint8_t *want) {
    CHECK(lp_write(path, w, h, o, data, rowbytes), "%s: lp_write", what);
    uint8_t *rgb = NULL;
    uint32_t rw = 0, rh = 0;
    cd_status s = cd_png_read(ctx, path, &rgb, &rw, &rh);
    CHECK(s == CD_OK, "%s: %s", what, cd_ctx_error(ctx));
    EXPECT(rw == w && rh == h, "%s: %ux%u", what, rw, rh);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        if (rgb[i] != want[i] && !bad++) first = i;
    EXPECT(!bad, "%s: %zu bytes differ, first at %zu: %u want %u", what, bad, first, bad ? rgb[first] : 0,
           bad ? want[first] : 0);
    free(rgb);
}

TEST(png_reads_every_color_type) {
    cd_ctx *ctx = ctx_new();
    char dir[64], path[128];
    CHECK(ctx && tmp_dir_tag(dir, sizeof dir, "png"), "setup");
    snprintf(path, sizeof path, "%s/in.png", dir);
    enum { W = 13, H = 7, NPX = W * H };
    test_rng r = test_rng_seed(5);
    uint8_t data[NPX * 8], want[NPX * 3];
    uint16_t v16[NPX * 3];

    /* gray 8 */
    for (int i = 0; i < NPX; i++) {
        data[i] = (uint8_t)test_rng_u64(&r);
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = data[i];
    }
    lp_opts o = {.color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 8};
    check_kind(ctx, path, "gray8", W, H, &o, data, W, want);

    /* gray 1-bit: 0 -> 0, 1 -> 255 */
    memset(data, 0, sizeof data);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const int bit = (int)(test_rng_u64(&r) & 1);
            if (bit) data[y * 2 + x / 8] |= (uint8_t)(0x80 >> (x % 8));
            uint8_t *p = want + 3 * (y * W + x);
            p[0] = p[1] = p[2] = bit ? 255 : 0;
        }
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 1};
    check_kind(ctx, path, "gray1", W, H, &o, data, 2, want);

    /* gray + alpha 8: alpha dropped, no compositing */
    for (int i = 0; i < NPX; i++) {
        data[2 * i] = (uint8_t)test_rng_u64(&r);
        data[2 * i + 1] = (uint8_t)(i % 3 ? 0 : 255);
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = data[2 * i];
    }
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .bit_depth = 8};
    check_kind(ctx, path, "gray+alpha", W, H, &o, data, 2 * W, want);

    /* palette, 4-bit, with tRNS (ignored) */
    png_color pal[16];
    png_byte trns[16];
    for (int i = 0; i < 16; i++) {
        pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(255 - i), (png_byte)(i * 7)};
        trns[i] = (png_byte)(i * 10);
    }
    memset(data, 0, sizeof data);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const int idx = (int)(test_rng_u64(&r) % 16);
            data[y * 7 + x / 2] |= (uint8_t)(x % 2 ? idx : idx << 4);
            uint8_t *p = want + 3 * (y * W + x);
            p[0] = pal[idx].red, p[1] = pal[idx].green, p[2] = pal[idx].blue;
        }
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_PALETTE,
                  .bit_depth = 4,
                  .palette = pal,
                  .n_palette = 16,
                  .trns = trns,
                  .n_trns = 16};
    check_kind(ctx, path, "palette4+tRNS", W, H, &o, data, 7, want);

    /* RGBA 8 */
    for (int i = 0; i < NPX; i++)
        for (int c = 0; c < 4; c++) {
            data[4 * i + c] = (uint8_t)test_rng_u64(&r);
            if (c < 3) want[3 * i + c] = data[4 * i + c];
        }
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_RGBA, .bit_depth = 8};
    check_kind(ctx, path, "rgba8", W, H, &o, data, 4 * W, want);

    /* RGB 16 (big-endian): round(v * 255 / 65535) */
    for (int i = 0; i < NPX * 3; i++) {
        v16[i] = (uint16_t)test_rng_u64(&r);
        if (i < 6) v16[i] = (uint16_t[]){0, 65535, 128, 129, 257 * 7 + 128, 257 * 7 + 129}[i];
        data[2 * i] = (uint8_t)(v16[i] >> 8);
        data[2 * i + 1] = (uint8_t)v16[i];
        want[i] = (uint8_t)((v16[i] * 255u + 32767u) / 65535u);
    }
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 16};
    check_kind(ctx, path, "rgb16", W, H, &o, data, 6 * W, want);

    /* gray 16 */
    for (int i = 0; i < NPX; i++) {
        const uint16_t g = (uint16_t)test_rng_u64(&r);
        data[2 * i] = (uint8_t)(g >> 8);
        data[2 * i + 1] = (uint8_t)g;
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = (uint8_t)((g * 255u + 32767u) / 65535u);
    }
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 16};
    check_kind(ctx, path, "gray16", W, H, &o, data, 2 * W, want);

    /* gray 8 and RGB 8 with a tRNS colour (ignored) */
    png_color_16 key = {.gray = 7, .red = 1, .green = 2, .blue = 3};
    for (int i = 0; i < NPX; i++) {
        data[i] = (uint8_t)(i % 2 ? 7 : i);
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = data[i];
    }
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 8, .trns_color = &key};
    check_kind(ctx, path, "gray8+tRNS", W, H, &o, data, W, want);
    for (int i = 0; i < NPX * 3; i++) want[i] = data[i] = (uint8_t)(i % 6 < 3 ? i % 3 + 1 : i);
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .trns_color = &key};
    check_kind(ctx, path, "rgb8+tRNS", W, H, &o, data, 3 * W, want);

    /* RGB 8, Adam7 interlaced */
    for (int i = 0; i < NPX * 3; i++) want[i] = data[i] = (uint8_t)test_rng_u64(&r);
    o = (lp_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .interlace = PNG_INTERLACE_ADAM7};
    check_kind(ctx, path, "rgb8 interlaced", W, H, &o, data, 3 * W, want);
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* ---- errors ------------------------------------------------------------------------------- */

/* cd_png_read fails with `want`, a message naming the file and containing `needle`, and resets
 * the outputs. */
static void expect_read_fails(cd_ctx *ctx, const char *path, cd_status want, const char *needle) {
    uint8_t *rgb = (uint8_t *)1;
    uint32_t w = 9, h = 9;
    cd_status s = cd_png_read(ctx, path, &rgb, &w, &h);
    const char *e = cd_ctx_error(ctx), *base = strrchr(path, '/');
    EXPECT(s == want, "%s: status %s want %s (%s)", path, cd_status_str(s), cd_status_str(want), e);
    EXPECT(strstr(e, base ? base + 1 : path) && strstr(e, needle), "%s: message '%s' lacks '%s'", path, e, needle);
    EXPECT(rgb == NULL && w == 0 && h == 0, "%s: outputs not reset", path);
}

TEST(png_read_errors) {
    cd_ctx *ctx = ctx_new();
    char dir[64], p[160], good[160];
    CHECK(ctx && tmp_dir_tag(dir, sizeof dir, "png"), "setup");
    snprintf(p, sizeof p, "%s/missing.png", dir);
    expect_read_fails(ctx, p, CD_ERR_NOT_FOUND, "No such file");
    expect_read_fails(ctx, dir, CD_ERR_IO, "directory");

    snprintf(p, sizeof p, "%s/text.png", dir);
    CHECK(write_text(p, "this is not an image, just text\n"), "write");
    expect_read_fails(ctx, p, CD_ERR_FORMAT, "not a PNG");
    snprintf(p, sizeof p, "%s/empty.png", dir);
    CHECK(write_text(p, ""), "write");
    expect_read_fails(ctx, p, CD_ERR_FORMAT, "not a PNG");

    /* truncated copies of a good file: after the signature, mid-IHDR, mid-IDAT, before IEND */
    snprintf(good, sizeof good, "%s/good.png", dir);
    enum { W = 40, H = 30 };
    uint8_t img[W * H * 3];
    test_rng r = test_rng_seed(3);
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)test_rng_u64(&r);
    CHECK(cd_png_write(ctx, good, img, W, H, NULL, 0) == CD_OK, "%s", cd_ctx_error(ctx));
    long len;
    uint8_t *bytes = read_all(good, &len);
    CHECK(bytes && len > 100, "read_all");
    const long cuts[] = {8, 20, 33 + 20, len / 2, len - 12, len - 1};
    snprintf(p, sizeof p, "%s/cut.png", dir);
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        CHECK(write_bytes(p, bytes, (size_t)cuts[k]), "write");
        expect_read_fails(ctx, p, CD_ERR_FORMAT, "truncated");
    }

    /* a flipped bit in IDAT: the CRC check reports it */
    bytes[len / 2] ^= 0x10;
    snprintf(p, sizeof p, "%s/corrupt.png", dir);
    CHECK(write_bytes(p, bytes, (size_t)len), "write");
    expect_read_fails(ctx, p, CD_ERR_FORMAT, "corrupt");
    free(bytes);

    /* size limits, checked before anything is allocated */
    snprintf(p, sizeof p, "%s/big.png", dir);
    const uint32_t big[][2] = {{70000, 1}, {1, 65537}, {65536, 32769}};
    for (int k = 0; k < 3; k++) {
        CHECK(cd_png_write(ctx, p, img, 1, 1, NULL, 0) == CD_OK && patch_ihdr(p, big[k][0], big[k][1]), "patch");
        expect_read_fails(ctx, p, CD_ERR_UNSUPPORTED, "exceed the limit");
    }
    /* 65536 per side is allowed: the patched file then lacks image data, but is not refused */
    CHECK(patch_ihdr(p, 65536, 1), "patch");
    expect_read_fails(ctx, p, CD_ERR_FORMAT, "corrupt");

    char *v = NULL;
    snprintf(p, sizeof p, "%s/missing.png", dir);
    EXPECT(cd_png_text(ctx, p, "prompt", &v) == CD_ERR_NOT_FOUND && !v, "text of a missing file");
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* cd_png_write fails with `want` and leaves dir with `entries` entries. */
static void expect_write_fails(cd_ctx *ctx, const char *dir, int entries, const char *path, const uint8_t *px,
                               uint32_t w, uint32_t h, const char *const *text, size_t n_text, cd_status want,
                               const char *needle) {
    cd_status s = cd_png_write(ctx, path, px, w, h, text, n_text);
    EXPECT(s == want, "%s %ux%u: status %s want %s (%s)", path, w, h, cd_status_str(s), cd_status_str(want),
           cd_ctx_error(ctx));
    EXPECT(strstr(cd_ctx_error(ctx), needle), "message '%s' lacks '%s'", cd_ctx_error(ctx), needle);
    EXPECT(dir_count(dir) == entries, "%s: %d entries in %s, want %d", path, dir_count(dir), dir, entries);
}

TEST(png_write_errors_leave_nothing) {
    cd_ctx *ctx = ctx_new();
    char dir[64], p[256], sub[160];
    CHECK(ctx && tmp_dir_tag(dir, sizeof dir, "png"), "setup");
    uint8_t px[4 * 3] = {0};

    /* an existing image that failed writes must leave alone */
    snprintf(p, sizeof p, "%s/keep.png", dir);
    const uint8_t orig[3] = {10, 20, 30};
    CHECK(cd_png_write(ctx, p, orig, 1, 1, NULL, 0) == CD_OK, "%s", cd_ctx_error(ctx));
    long len0;
    uint8_t *before = read_all(p, &len0);
    CHECK(before, "read");

    expect_write_fails(ctx, dir, 1, p, NULL, 1, 1, NULL, 0, CD_ERR_INVALID_ARG, "NULL");
    expect_write_fails(ctx, dir, 1, p, px, 0, 1, NULL, 0, CD_ERR_INVALID_ARG, "size");
    expect_write_fails(ctx, dir, 1, p, px, 1, 65537, NULL, 0, CD_ERR_INVALID_ARG, "size");
    expect_write_fails(ctx, dir, 1, p, px, 65536, 65536, NULL, 0, CD_ERR_INVALID_ARG, "size");
    expect_write_fails(ctx, dir, 1, p, px, 1, 1, NULL, 1, CD_ERR_INVALID_ARG, "text is NULL");
    char k80[81];
    memset(k80, 'k', 80);
    k80[80] = 0;
    const char *bad_keys[] = {"", " lead", "trail ", "two  spaces", "ctl\x01", "caf\xc3\xa9", k80};
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        const char *t[] = {"ok", "1", bad_keys[i], "v"};
        expect_write_fails(ctx, dir, 1, p, px, 1, 1, t, 2, CD_ERR_INVALID_ARG, "keyword");
    }
    const char *dup[] = {"seed", "1", "seed", "2"};
    expect_write_fails(ctx, dir, 1, p, px, 1, 1, dup, 2, CD_ERR_INVALID_ARG, "duplicate");
    const char *bad_utf8[] = {"prompt", "caf\xe9"};
    expect_write_fails(ctx, dir, 1, p, px, 1, 1, bad_utf8, 1, CD_ERR_INVALID_ARG, "UTF-8");
    const char *null_val[] = {"prompt", NULL};
    expect_write_fails(ctx, dir, 1, p, px, 1, 1, null_val, 1, CD_ERR_INVALID_ARG, "NULL");
    long len1;
    uint8_t *after = read_all(p, &len1);
    EXPECT(after && len1 == len0 && !memcmp(before, after, (size_t)len0), "keep.png changed");
    free(before);
    free(after);

    /* missing directory: the temporary file cannot be created */
    snprintf(p, sizeof p, "%s/nope/out.png", dir);
    expect_write_fails(ctx, dir, 1, p, px, 2, 2, NULL, 0, CD_ERR_IO, "temporary file");

    /* the destination is a directory: the temporary file is written, the rename fails, and the
     * temporary file is removed */
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    expect_write_fails(ctx, dir, 2, sub, px, 2, 2, NULL, 0, CD_ERR_IO, "rename");
    EXPECT(dir_count(sub) == 0, "sub not empty");

    /* an unwritable directory (meaningless as root, who may write anywhere) */
    if (geteuid() != 0) {
        CHECK(chmod(sub, 0555) == 0, "chmod");
        snprintf(p, sizeof p, "%s/out.png", sub);
        expect_write_fails(ctx, sub, 0, p, px, 2, 2, NULL, 0, CD_ERR_IO, "temporary file");
        chmod(sub, 0755);
    }
    tmp_rm(dir);
    cd_ctx_free(ctx);
}

/* ---- float <-> u8 -------------------------------------------------------------------------- */

TEST(png_pixel_conversion_rules) {
    /* one channel value at a time: planar [3,1,1] -> interleaved [1,1,3] */
    const float xs[] = {-1.0f, 1.0f,  0.0f,   -2.0f,  2.0f, 1e30f,    -1e30f,
                        0.5f,  -0.5f, -0.99f, 0.999f, NAN,  INFINITY, -INFINITY};
    const uint8_t want[] = {0, 255, 127, 0, 255, 255, 0, 191, 63, 1, 254, 0, 255, 0};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        float img[3] = {xs[i], 0.0f, 1.0f};
        uint8_t rgb[3];
        cd_image_to_rgb8(img, 1, 1, rgb);
        EXPECT(rgb[0] == want[i] && rgb[1] == 127 && rgb[2] == 255, "x = %g -> %u, want %u", (double)xs[i], rgb[0],
               want[i]);
    }
    /* layout: planar channels, row-major pixels */
    const float img[3 * 2 * 3] = {-1, 1,  0,  -1, 1, 0,  /* R of a 3 x 2 image */
                                  1,  1,  1,  1,  1, 1,  /* G */
                                  0,  -1, -1, 0,  0, 0}; /* B */
    uint8_t rgb[18];
    cd_image_to_rgb8(img, 3, 2, rgb);
    const uint8_t wrgb[18] = {0, 255, 127, 255, 255, 0, 127, 255, 0, 0, 255, 127, 255, 255, 127, 127, 255, 127};
    EXPECT(!memcmp(rgb, wrgb, 18), "planar -> interleaved layout");
    float back[18];
    cd_rgb8_to_image(wrgb, 3, 2, back);
    for (int i = 0; i < 18; i++) {
        const int c = i / 6, px = i % 6;
        EXPECT(back[i] == (float)wrgb[px * 3 + c] / 127.5f - 1.0f, "back[%d] = %g", i, (double)back[i]);
    }
    /* every u8: 0 -> -1, 255 -> 1 exactly; the round trip u8 -> [-1,1] -> u8 of BFL's two
     * formulas (f32) is the identity except 1..63, which come back one lower (truncation) */
    for (int u = 0; u < 256; u++) {
        const uint8_t px3[3] = {(uint8_t)u, (uint8_t)u, (uint8_t)u};
        float f[3];
        uint8_t again[3];
        cd_rgb8_to_image(px3, 1, 1, f);
        cd_image_to_rgb8(f, 1, 1, again);
        if (u == 0) EXPECT(f[0] == -1.0f, "0 -> %g", (double)f[0]);
        if (u == 255) EXPECT(f[0] == 1.0f, "255 -> %g", (double)f[0]);
        EXPECT(f[0] >= -1.0f && f[0] <= 1.0f, "%d -> %g", u, (double)f[0]);
        const int expect = (u >= 1 && u <= 63) ? u - 1 : u;
        EXPECT(again[0] == expect, "round trip %d -> %u, want %d", u, again[0], expect);
    }
}
