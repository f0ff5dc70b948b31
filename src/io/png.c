/* png.c — PNG files (libpng): the atomic writer of generated images with their parameters as
 * text chunks, the reader of init images (any PNG to 8-bit RGB), text-chunk lookup, and the
 * float <-> 8-bit pixel conversions of BFL's reference code.
 *
 * libpng reports errors by longjmp: every libpng call runs inside one function that calls
 * setjmp (write_body / read_body) and keeps all its state in a struct owned by its caller, so no
 * local variable is live across the longjmp. libpng's error text is turned into a status and a
 * one-line message naming the file; its warnings are dropped (the library never prints).
 *
 * Atomicity of cd_png_write: as cd_st_write, the image goes to PATH.tmp.XXXXXX in the same
 * directory, which is fsynced and renamed over PATH; on any failure the temporary file is removed
 * and PATH is untouched. Arguments are validated before the temporary file is created. */
#include "st_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PNG_MAX_TEXTS 256
#define PNG_MAX_TEXT_BYTES (1u << 20) /* per value: well under libpng's 8 MB chunk limit */

/* State shared with libpng's callbacks through png_get_error_ptr / png_get_io_ptr. */
typedef struct {
    cd_ctx *ctx;
    char path[CD_ST_PRINT_MAX];
    FILE *fp;
    png_structp png;
    png_infop info;
    char msg[256];     /* libpng's error message */
    int eof, io_errno; /* reader: the file ended early / a read failed (errno) */
    /* reader */
    int want_pixels;
    uint8_t *rgb, *row; /* the image, or one scratch row when only text is wanted */
    uint32_t w, h;
    const char *key; /* cd_png_text: the key looked for; *value found */
    char *value;
    cd_status status; /* set by read_body for errors it finds itself */
} png_job;

static void on_error(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    cd_st_printable(msg ? msg : "unknown error", j->msg, sizeof j->msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static int image_size_ok(uint32_t w, uint32_t h) {
    return w >= 1 && h >= 1 && w <= CD_PNG_MAX_SIDE && h <= CD_PNG_MAX_SIDE && (uint64_t)w * h <= CD_PNG_MAX_PIXELS;
}

/* ---- writing ------------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static cd_status wfail(const png_job *j, cd_status s, const char *fmt, ...) {
    char reason[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return cd_set_error(j->ctx, s, "%s: cannot write PNG: %s", j->path, reason);
}

/* A PNG keyword: 1-79 printable ASCII characters, no leading, trailing or consecutive spaces
 * (the spec allows Latin-1 letters too; we keep keys ASCII so they need no conversion). */
static int keyword_ok(const char *k) {
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < 32 || k[i] > 126) return 0;
        if (k[i] == ' ' && k[i + 1] == ' ') return 0;
    }
    return 1;
}

static int is_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

static cd_status validate_text(const png_job *j, const char *const *text, size_t n_text) {
    if (n_text && !text) return wfail(j, CD_ERR_INVALID_ARG, "text is NULL");
    if (n_text > PNG_MAX_TEXTS)
        return wfail(j, CD_ERR_INVALID_ARG, "%zu text chunks exceed the limit of %d", n_text, PNG_MAX_TEXTS);
    for (size_t i = 0; i < n_text; i++) {
        const char *k = text[2 * i], *v = text[2 * i + 1];
        char pk[CD_ST_PRINT_MAX];
        if (!k || !v) return wfail(j, CD_ERR_INVALID_ARG, "text %s %zu is NULL", k ? "value" : "key", i);
        if (!keyword_ok(k))
            return wfail(j, CD_ERR_INVALID_ARG,
                         "text key '%s' is not a PNG keyword (1-79 printable ASCII characters, "
                         "no leading, trailing or double spaces)",
                         cd_st_printable(k, pk, sizeof pk));
        for (size_t p = 0; p < i; p++)
            if (!strcmp(text[2 * p], k))
                return wfail(j, CD_ERR_INVALID_ARG, "duplicate text key '%s'", cd_st_printable(k, pk, sizeof pk));
        const size_t vn = strlen(v);
        if (vn > PNG_MAX_TEXT_BYTES)
            return wfail(j, CD_ERR_INVALID_ARG, "text '%s' is %zu bytes (limit %u)", cd_st_printable(k, pk, sizeof pk),
                         vn, PNG_MAX_TEXT_BYTES);
        if (!cd_st_utf8_valid(v, vn))
            return wfail(j, CD_ERR_INVALID_ARG, "text '%s' is not valid UTF-8", cd_st_printable(k, pk, sizeof pk));
    }
    return CD_OK;
}

/* All libpng calls of the writer. Returns 0, or -1 after a libpng error (message in j->msg). */
static int write_body(png_job *j, const uint8_t *rgb, uint32_t w, uint32_t h, png_text *texts, size_t n_text) {
    if (setjmp(png_jmpbuf(j->png))) return -1;
    png_init_io(j->png, j->fp);
    png_set_IHDR(j->png, j->info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (n_text) png_set_text(j->png, j->info, texts, (int)n_text);
    png_write_info(j->png, j->info); /* text chunks go before IDAT */
    for (uint32_t y = 0; y < h; y++) png_write_row(j->png, rgb + (size_t)y * w * 3);
    png_write_end(j->png, NULL);
    return 0;
}

cd_status cd_png_write(cd_ctx *ctx, const char *path, const uint8_t *rgb, uint32_t width, uint32_t height,
                       const char *const *text, size_t n_text) {
    if (!path || !path[0]) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "PNG: empty path");
    png_job j = {.ctx = ctx};
    cd_st_printable(path, j.path, sizeof j.path);
    if (!rgb) return wfail(&j, CD_ERR_INVALID_ARG, "pixels are NULL");
    if (!image_size_ok(width, height))
        return wfail(&j, CD_ERR_INVALID_ARG, "size %ux%u is outside 1..%u per side and %llu pixels", width, height,
                     CD_PNG_MAX_SIDE, (unsigned long long)CD_PNG_MAX_PIXELS);
    cd_status s = validate_text(&j, text, n_text);
    if (s) return s;

    png_text *texts = calloc(n_text ? n_text : 1, sizeof *texts);
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!texts || !tmp) {
        free(texts);
        free(tmp);
        return wfail(&j, CD_ERR_OOM, "out of memory");
    }
    for (size_t i = 0; i < n_text; i++) {
        /* libpng copies the strings; its struct just is not const-qualified */
        texts[i].key = (png_charp)(uintptr_t)text[2 * i];
        texts[i].text = (png_charp)(uintptr_t)text[2 * i + 1];
        if (is_ascii(text[2 * i + 1])) {
            texts[i].compression = PNG_TEXT_COMPRESSION_NONE; /* tEXt (Latin-1 ⊃ ASCII) */
        } else {
            texts[i].compression = PNG_ITXT_COMPRESSION_NONE; /* iTXt: UTF-8 */
            texts[i].lang = (png_charp) "";
            texts[i].lang_key = (png_charp) "";
        }
    }

    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        s = wfail(&j, CD_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
        free(tmp);
        free(texts);
        return s;
    }
    j.fp = fdopen(fd, "wb");
    if (!j.fp) {
        s = wfail(&j, CD_ERR_IO, "fdopen failed: %s", strerror(errno));
        close(fd);
        goto done;
    }
    j.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &j, on_error, on_warning);
    j.info = j.png ? png_create_info_struct(j.png) : NULL;
    if (!j.info) {
        s = wfail(&j, CD_ERR_OOM, "out of memory (libpng)");
    } else if (write_body(&j, rgb, width, height, texts, n_text)) {
        const int e = ferror(j.fp) ? errno : 0; /* libpng's "Write Error" after a failed fwrite */
        s = wfail(&j, CD_ERR_IO, "%s%s%s", j.msg, e ? ": " : "", e ? strerror(e) : "");
    } else if (fflush(j.fp) != 0 || ferror(j.fp)) {
        s = wfail(&j, CD_ERR_IO, "write failed: %s", strerror(errno));
    } else if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        /* mkstemp creates 0600; an image is ordinarily world-readable */
        s = wfail(&j, CD_ERR_IO, "cannot sync the temporary file: %s", strerror(errno));
    }
    if (j.png) png_destroy_write_struct(&j.png, j.info ? &j.info : NULL);
    if (fclose(j.fp) != 0 && !s) s = wfail(&j, CD_ERR_IO, "close failed: %s", strerror(errno));
    if (!s) {
        if (rename(tmp, path) != 0) {
            s = wfail(&j, CD_ERR_IO, "cannot rename the temporary file into place: %s", strerror(errno));
        } else {
            cd_fsync_dir_of(path);
        }
    }
done:
    if (s) unlink(tmp);
    free(tmp);
    free(texts);
    return s;
}

/* ---- reading ------------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static cd_status rfail(const png_job *j, cd_status s, const char *fmt, ...) {
    char reason[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return cd_set_error(j->ctx, s, "%s: cannot read PNG: %s", j->path, reason);
}

/* libpng's input: tells a short file (truncated) from a failed read. */
static void read_data(png_structp png, png_bytep out, size_t len) {
    png_job *j = png_get_io_ptr(png);
    size_t got = fread(out, 1, len, j->fp);
    if (got == len) return;
    if (ferror(j->fp)) {
        j->io_errno = errno ? errno : EIO;
        png_error(png, "read failed");
    }
    j->eof = 1;
    png_error(png, "unexpected end of file");
}

/* Copies `s` (Latin-1 when latin1, else UTF-8 as stored) into a malloc'd UTF-8 string. */
static char *text_dup(const char *s, int latin1) {
    size_t n = 0;
    for (const char *p = s; *p; p++) n += latin1 && ((unsigned char)*p >= 0x80) ? 2 : 1;
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (latin1 && *p >= 0x80) {
            *o++ = (char)(0xc0 | (*p >> 6));
            *o++ = (char)(0x80 | (*p & 0x3f));
        } else {
            *o++ = (char)*p;
        }
    }
    *o = 0;
    return out;
}

/* Finds j->key among the text chunks read so far into j->info (first one wins). */
static int find_text(png_job *j) {
    png_textp t = NULL;
    int n = png_get_text(j->png, j->info, &t, NULL);
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].key, j->key)) continue;
        const int latin1 =
            t[i].compression == PNG_TEXT_COMPRESSION_NONE || t[i].compression == PNG_TEXT_COMPRESSION_zTXt;
        j->value = text_dup(t[i].text ? t[i].text : "", latin1);
        return j->value ? 1 : -1;
    }
    return 0;
}

/* All libpng calls of the reader. Returns 0, 1 after a libpng error (j->msg), or 2 after an
 * error found here (j->status, with the message already set). */
static int read_body(png_job *j) {
    if (setjmp(png_jmpbuf(j->png))) return 1;
    png_set_read_fn(j->png, j, read_data);
    png_set_sig_bytes(j->png, 8);
    png_set_user_limits(j->png, 0x7fffffffu, 0x7fffffffu); /* our own limits, our message */
    png_read_info(j->png, j->info);
    j->w = png_get_image_width(j->png, j->info);
    j->h = png_get_image_height(j->png, j->info);
    if (!image_size_ok(j->w, j->h)) {
        j->status = rfail(j, CD_ERR_UNSUPPORTED, "%ux%u pixels exceed the limit of %u per side and %llu pixels", j->w,
                          j->h, CD_PNG_MAX_SIDE, (unsigned long long)CD_PNG_MAX_PIXELS);
        return 2;
    }
    const int ct = png_get_color_type(j->png, j->info);
    if (png_get_bit_depth(j->png, j->info) == 16) png_set_scale_16(j->png); /* v*255/65535, rounded */
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(j->png);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_expand_gray_1_2_4_to_8(j->png);
        png_set_gray_to_rgb(j->png);
    }
    /* alpha, or the alpha that expanding a palette with tRNS would add, is dropped */
    if ((ct & PNG_COLOR_MASK_ALPHA) || png_get_valid(j->png, j->info, PNG_INFO_tRNS)) png_set_strip_alpha(j->png);
    const int passes = png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    const size_t stride = (size_t)j->w * 3;
    if (png_get_channels(j->png, j->info) != 3 || png_get_bit_depth(j->png, j->info) != 8 ||
        png_get_rowbytes(j->png, j->info) != stride) {
        j->status = rfail(j, CD_ERR_INTERNAL, "libpng did not convert the image to 8-bit RGB");
        return 2;
    }
    if (j->want_pixels)
        j->rgb = malloc(stride * j->h);
    else
        j->row = malloc(stride);
    if (j->want_pixels ? !j->rgb : !j->row) {
        j->status = rfail(j, CD_ERR_OOM, "cannot allocate %ux%u RGB pixels", j->w, j->h);
        return 2;
    }
    for (int p = 0; p < passes; p++)
        for (uint32_t y = 0; y < j->h; y++)
            png_read_row(j->png, j->want_pixels ? j->rgb + (size_t)y * stride : j->row, NULL);
    png_read_end(j->png, j->info); /* reads (and CRC-checks) the chunks after IDAT: text too */
    if (j->key && find_text(j) < 0) {
        j->status = rfail(j, CD_ERR_OOM, "out of memory");
        return 2;
    }
    return 0;
}

/* Opens, checks and decodes `path` into j (pixels when j->want_pixels, j->key's text when set). */
static cd_status load(png_job *j, const char *path) {
    if (!path || !path[0]) return cd_set_error(j->ctx, CD_ERR_INVALID_ARG, "PNG: empty path");
    cd_st_printable(path, j->path, sizeof j->path);
    j->fp = fopen(path, "rb");
    if (!j->fp) return rfail(j, errno == ENOENT ? CD_ERR_NOT_FOUND : CD_ERR_IO, "%s", strerror(errno));
    cd_status s = CD_OK;
    struct stat st;
    unsigned char sig[8];
    size_t got;
    if (fstat(fileno(j->fp), &st) != 0) {
        s = rfail(j, CD_ERR_IO, "%s", strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        s = rfail(j, CD_ERR_IO, "it is a directory");
    } else if ((got = fread(sig, 1, 8, j->fp)) < 8 && ferror(j->fp)) {
        s = rfail(j, CD_ERR_IO, "%s", strerror(errno));
    } else if (got < 8 || png_sig_cmp(sig, 0, 8)) {
        s = rfail(j, CD_ERR_FORMAT, "not a PNG file (no PNG signature)");
    } else {
        j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, on_error, on_warning);
        j->info = j->png ? png_create_info_struct(j->png) : NULL;
        if (!j->info) {
            s = rfail(j, CD_ERR_OOM, "out of memory (libpng)");
        } else {
            switch (read_body(j)) {
                case 0: break;
                case 2: s = j->status; break;
                default:
                    if (j->eof)
                        s = rfail(j, CD_ERR_FORMAT, "truncated file (unexpected end of file)");
                    else if (j->io_errno)
                        s = rfail(j, CD_ERR_IO, "%s", strerror(j->io_errno));
                    else if (strstr(j->msg, "memory"))
                        s = rfail(j, CD_ERR_OOM, "%s", j->msg);
                    else
                        s = rfail(j, CD_ERR_FORMAT, "corrupt PNG: %s", j->msg);
            }
        }
        if (j->png) png_destroy_read_struct(&j->png, j->info ? &j->info : NULL, NULL);
    }
    fclose(j->fp);
    j->fp = NULL;
    free(j->row);
    j->row = NULL;
    if (s) {
        free(j->rgb);
        j->rgb = NULL;
        free(j->value);
        j->value = NULL;
    }
    return s;
}

cd_status cd_png_read(cd_ctx *ctx, const char *path, uint8_t **rgb, uint32_t *width, uint32_t *height) {
    if (!rgb || !width || !height) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "PNG: NULL output pointer");
    *rgb = NULL;
    *width = *height = 0;
    png_job j = {.ctx = ctx, .want_pixels = 1};
    cd_status s = load(&j, path);
    if (s) return s;
    *rgb = j.rgb;
    *width = j.w;
    *height = j.h;
    return CD_OK;
}

cd_status cd_png_text(cd_ctx *ctx, const char *path, const char *key, char **value) {
    if (!value) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "PNG: NULL output pointer");
    *value = NULL;
    if (!key) return cd_set_error(ctx, CD_ERR_INVALID_ARG, "PNG: NULL text key");
    png_job j = {.ctx = ctx, .key = key};
    cd_status s = load(&j, path);
    if (s) return s;
    if (!j.value) {
        char pk[CD_ST_PRINT_MAX];
        return cd_set_error(ctx, CD_ERR_NOT_FOUND, "%s: no text chunk '%s'", j.path,
                            cd_st_printable(key, pk, sizeof pk));
    }
    *value = j.value;
    return CD_OK;
}

/* ---- pixel conversions ------------------------------------------------------------------- */

void cd_image_to_rgb8(const float *img, uint32_t width, uint32_t height, uint8_t *rgb) {
    const size_t plane = (size_t)width * height;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) {
            float x = img[(size_t)c * plane + i];
            if (!(x >= -1.0f)) x = -1.0f; /* NaN too */
            if (x > 1.0f) x = 1.0f;
            const float t = x + 1.0f;                       /* two f32 roundings, as torch: (x + 1.0) then * 127.5 */
            rgb[i * 3 + (size_t)c] = (uint8_t)(127.5f * t); /* truncation, as .byte() */
        }
}

void cd_rgb8_to_image(const uint8_t *rgb, uint32_t width, uint32_t height, float *img) {
    const size_t plane = (size_t)width * height;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) img[(size_t)c * plane + i] = (float)rgb[i * 3 + (size_t)c] / 127.5f - 1.0f;
}
