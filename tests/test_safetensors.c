/* test_safetensors.c — the safetensors reader, writer and f32 conversion: byte-exact round trips
 * for many dtypes, unaligned tensors, atomic-write failure behaviour, every malformed-file case
 * of docs/safetensors.md (built by hand, byte by byte) each with its own message, every dtype of
 * the spec, metadata value types, rank 0 and empty tensors, offsets above 2^32 (sparse file),
 * known float8/16 values, and the fuzzer's regression inputs (tests/fuzz_regressions/). The bf16
 * conversion is tested in test_st_bf16.c. */
#include "test.h"
#include "test_files.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleardit.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static int tmp_dir(char *dir, size_t cap) { return tmp_dir_tag(dir, cap, "st"); }

/* Opens path expecting `want`; the message must name the file and contain `keyword`. */
static void expect_open_error(const char *path, cd_status want, const char *keyword, int line) {
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) {
        test_fail(__FILE__, line, "cd_ctx_create failed");
        return;
    }
    cd_st_file *f = (cd_st_file *)1;
    cd_status s = cd_st_open(ctx, path, &f);
    const char *msg = cd_ctx_error(ctx);
    if (s != want)
        test_fail(__FILE__, line, "open: status %s, want %s (message: %s)", cd_status_str(s), cd_status_str(want), msg);
    else if (f != NULL)
        test_fail(__FILE__, line, "open failed but *out is not NULL");
    else if (!strstr(msg, path))
        test_fail(__FILE__, line, "message does not name the file: %s", msg);
    else if (!strstr(msg, keyword))
        test_fail(__FILE__, line, "message lacks '%s': %s", keyword, msg);
    else if (strchr(msg, '\n'))
        test_fail(__FILE__, line, "message is not one line: %s", msg);
    if (s == CD_OK) cd_st_close(f);
    cd_ctx_free(ctx);
}
#define EXPECT_BAD(path, status, kw) expect_open_error(path, status, kw, __LINE__)

/* ---- round trips --------------------------------------------------------------------------- */

TEST(st_roundtrip_all_dtypes) {
    char dir[64], path[128];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    test_rng rng = test_rng_seed(11);

    /* name, dtype, ndim, shape: covers every storage width, odd lengths, rank 0, empty tensors,
     * and a sub-byte dtype with an even element count. */
    cd_st_out t[] = {
        {"weight.f32", CD_DTYPE_F32, 2, {2, 3}, NULL},
        {"w.bf16", CD_DTYPE_BF16, 1, {5}, NULL},
        {"w.f16", CD_DTYPE_F16, 3, {2, 1, 2}, NULL},
        {"ids.i64", CD_DTYPE_I64, 1, {3}, NULL},
        {"bytes.u8", CD_DTYPE_U8, 1, {7}, NULL}, /* odd: unaligns what follows */
        {"mask", CD_DTYPE_BOOL, 2, {1, 3}, NULL},
        {"scalar.f64", CD_DTYPE_F64, 0, {0}, NULL},   /* rank 0 = one element */
        {"empty.i32", CD_DTYPE_I32, 2, {0, 4}, NULL}, /* zero bytes */
        {"q8", CD_DTYPE_F8_E4M3, 1, {3}, NULL},
        {"packed.f4", CD_DTYPE_F4, 1, {4}, NULL}, /* 4 x 4 bits = 2 bytes */
        {"u16", CD_DTYPE_U16, 1, {2}, NULL},
        {"c64", CD_DTYPE_C64, 1, {1}, NULL},
        {"unicode.\xc3\xa9\xe2\x82\xac", CD_DTYPE_I8, 1, {2}, NULL},
    };
    const size_t n = sizeof t / sizeof t[0];
    const size_t nbytes[] = {24, 10, 8, 24, 7, 3, 8, 0, 3, 2, 4, 8, 2};
    unsigned char *data[sizeof t / sizeof t[0]];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        data[i] = malloc(nbytes[i] ? nbytes[i] : 1);
        for (size_t b = 0; b < nbytes[i]; b++) data[i][b] = (unsigned char)(test_rng_u64(&rng) | 1);
        if (t[i].dtype == CD_DTYPE_BOOL)
            for (size_t b = 0; b < nbytes[i]; b++) data[i][b] &= 1;
        t[i].data = data[i];
        total += nbytes[i];
    }
    const char *meta[] = {"format", "pt", "note", "r\xc3\xa9sum\xc3\xa9 \"quoted\"\n", "empty", ""};

    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_status s = cd_st_write(ctx, path, t, n, meta, 3);
    CHECK(s == CD_OK, "write: %s", cd_ctx_error(ctx));
    EXPECT(dir_count(dir) == 1, "temp file left behind (%d entries)", dir_count(dir));

    /* Layout: N is a multiple of 8, header starts with '{', data right after it. */
    FILE *fp = fopen(path, "rb");
    CHECK(fp, "reopen");
    unsigned char head[9];
    CHECK(fread(head, 1, 9, fp) == 9, "read head");
    fclose(fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | head[i];
    EXPECT(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
    EXPECT(head[8] == '{', "header does not start with '{'");
    EXPECT(file_size(path) == (long)(8 + hl + total), "file size %ld, want %zu", file_size(path),
           (size_t)(8 + hl + total));

    cd_st_file *f;
    s = cd_st_open(ctx, path, &f);
    CHECK(s == CD_OK, "open: %s", cd_ctx_error(ctx));
    CHECK(cd_st_count(f) == n, "count %zu, want %zu", cd_st_count(f), n);
    for (size_t i = 0; i < n; i++) {
        const cd_st_tensor *r = cd_st_find(f, t[i].name);
        CHECK(r, "tensor %s not found", t[i].name);
        EXPECT(cd_st_at(f, i) == r, "cd_st_at(%zu) is not %s (data order = written order)", i, t[i].name);
        EXPECT(!strcmp(r->name, t[i].name), "name %s", r->name);
        EXPECT(r->dtype == t[i].dtype, "%s: dtype %s", t[i].name, cd_dtype_name(r->dtype));
        EXPECT(r->ndim == t[i].ndim, "%s: ndim %d", t[i].name, r->ndim);
        for (int d = 0; d < t[i].ndim; d++) EXPECT(r->shape[d] == t[i].shape[d], "%s: shape[%d]", t[i].name, d);
        EXPECT(r->nbytes == nbytes[i], "%s: nbytes %llu want %zu", t[i].name, (unsigned long long)r->nbytes, nbytes[i]);
        EXPECT(nbytes[i] == 0 || !memcmp(r->data, data[i], nbytes[i]), "%s: data differs", t[i].name);
    }
    EXPECT(cd_st_numel(cd_st_find(f, "scalar.f64")) == 1, "rank-0 numel");
    EXPECT(cd_st_numel(cd_st_find(f, "empty.i32")) == 0, "empty numel");
    EXPECT(cd_st_numel(cd_st_find(f, "weight.f32")) == 6, "numel");
    EXPECT(cd_st_find(f, "missing") == NULL, "find of an absent name");
    EXPECT(cd_st_at(f, n) == NULL, "at(count) must be NULL");
    const char *m = cd_st_meta(f, "note");
    EXPECT(m && !strcmp(m, meta[3]), "metadata 'note' = %s", m ? m : "(null)");
    m = cd_st_meta(f, "format");
    EXPECT(m && !strcmp(m, "pt"), "metadata 'format'");
    m = cd_st_meta(f, "empty");
    EXPECT(m && !strcmp(m, ""), "metadata 'empty'");
    EXPECT(cd_st_meta(f, "nope") == NULL, "absent metadata key");
    cd_st_close(f);
    cd_ctx_free(ctx);
    for (size_t i = 0; i < n; i++) free(data[i]);
    tmp_rm(dir);
}

TEST(st_roundtrip_no_tensors_and_overwrite) {
    char dir[64], path[128];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/e.safetensors", dir);
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    CHECK(cd_st_write(ctx, path, NULL, 0, NULL, 0) == CD_OK, "write empty: %s", cd_ctx_error(ctx));
    cd_st_file *f;
    CHECK(cd_st_open(ctx, path, &f) == CD_OK, "open empty: %s", cd_ctx_error(ctx));
    EXPECT(cd_st_count(f) == 0, "count");
    EXPECT(cd_st_meta(f, "x") == NULL, "meta");
    cd_st_close(f);

    /* Overwriting an existing file replaces it completely. */
    float v[3] = {1.5f, -2.0f, 3.25f};
    cd_st_out t = {"v", CD_DTYPE_F32, 1, {3}, v};
    CHECK(cd_st_write(ctx, path, &t, 1, NULL, 0) == CD_OK, "overwrite: %s", cd_ctx_error(ctx));
    CHECK(cd_st_open(ctx, path, &f) == CD_OK, "open: %s", cd_ctx_error(ctx));
    EXPECT(cd_st_count(f) == 1 && !memcmp(cd_st_find(f, "v")->data, v, sizeof v), "content");
    cd_st_close(f);
    EXPECT(dir_count(dir) == 1, "temp files left behind");
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* A 3-byte U8 tensor before an F32 tensor puts the floats at an odd address in the map;
 * conversion must still read them right (memcpy, no aligned loads: UBSan would catch those). */
TEST(st_unaligned_tensor_reads_right) {
    char dir[64], path[128];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/u.safetensors", dir);
    test_rng rng = test_rng_seed(5);
    unsigned char pad[3] = {1, 2, 3};
    float x[17];
    uint16_t xb[5];
    for (int i = 0; i < 17; i++) x[i] = test_rng_f(&rng) * 100.0f + 0.5f;
    for (int i = 0; i < 5; i++) xb[i] = (uint16_t)(0x3f80 + i * 0x81); /* bf16 near 1..2 */
    cd_st_out t[] = {
        {"pad", CD_DTYPE_U8, 1, {3}, pad},
        {"x", CD_DTYPE_F32, 1, {17}, x},
        {"xb", CD_DTYPE_BF16, 1, {5}, xb},
    };
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    CHECK(cd_st_write(ctx, path, t, 3, NULL, 0) == CD_OK, "write: %s", cd_ctx_error(ctx));
    cd_st_file *f;
    CHECK(cd_st_open(ctx, path, &f) == CD_OK, "open: %s", cd_ctx_error(ctx));
    const cd_st_tensor *tx = cd_st_find(f, "x"), *tb = cd_st_find(f, "xb");
    CHECK(tx && tb, "tensors");
    EXPECT((uintptr_t)tx->data % 4 != 0, "test premise: x should be unaligned");
    EXPECT((uintptr_t)tb->data % 2 != 0, "test premise: xb should be unaligned");
    float y[17], yb[5];
    CHECK(cd_st_to_f32(ctx, tx, y) == CD_OK, "to_f32: %s", cd_ctx_error(ctx));
    CHECK(cd_st_to_f32(ctx, tb, yb) == CD_OK, "to_f32 bf16: %s", cd_ctx_error(ctx));
    EXPECT(!memcmp(x, y, sizeof x), "f32 values differ");
    for (int i = 0; i < 5; i++) {
        uint32_t u = (uint32_t)xb[i] << 16;
        float want;
        memcpy(&want, &u, 4);
        EXPECT(yb[i] == want, "bf16[%d] = %g, want %g", i, yb[i], want);
    }
    cd_st_close(f);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* ---- writer failures: nothing at PATH, no temp files ----------------------------------------- */

TEST(st_write_rejects_bad_requests_atomically) {
    char dir[64], path[128], sub[128];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    float a[2] = {1, 2};
    struct {
        cd_st_out t[2];
        size_t n;
        const char *kw;
    } cases[] = {
        {{{"a", CD_DTYPE_F32, 1, {2}, a}, {"a", CD_DTYPE_F32, 1, {2}, a}}, 2, "duplicate"},
        {{{"", CD_DTYPE_F32, 1, {2}, a}}, 1, "empty name"},
        {{{NULL, CD_DTYPE_F32, 1, {2}, a}}, 1, "empty name"},
        {{{"a", (cd_dtype)99, 1, {2}, a}}, 1, "dtype"},
        {{{"a", CD_DTYPE_F32, 9, {2}, a}}, 1, "rank"},
        {{{"a", CD_DTYPE_F32, -1, {2}, a}}, 1, "rank"},
        {{{"a", CD_DTYPE_F32, 1, {-2}, a}}, 1, "negative"},
        {{{"a", CD_DTYPE_F4, 1, {3}, a}}, 1, "whole number of bytes"},
        {{{"a", CD_DTYPE_F32, 1, {2}, NULL}}, 1, "NULL"},
        {{{"__metadata__", CD_DTYPE_F32, 1, {2}, a}}, 1, "reserved"},
        {{{"bad\xff", CD_DTYPE_F32, 1, {2}, a}}, 1, "UTF-8"},
        {{{"a", CD_DTYPE_U8, 3, {1ll << 40, 1ll << 40, 1ll << 40}, a}}, 1, "overflow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_status s = cd_st_write(ctx, path, cases[i].t, cases[i].n, NULL, 0);
        EXPECT(s == CD_ERR_INVALID_ARG, "case %zu: status %s", i, cd_status_str(s));
        EXPECT(strstr(cd_ctx_error(ctx), cases[i].kw), "case %zu: message lacks '%s': %s", i, cases[i].kw,
               cd_ctx_error(ctx));
        EXPECT(strstr(cd_ctx_error(ctx), path), "case %zu: message lacks the path", i);
        EXPECT(file_size(path) < 0, "case %zu: a file was created", i);
        EXPECT(dir_count(dir) == 0, "case %zu: leftovers in the directory", i);
    }
    cd_st_out ok = {"a", CD_DTYPE_F32, 1, {2}, a};
    const char *dupmeta[] = {"k", "1", "k", "2"};
    EXPECT(cd_st_write(ctx, path, &ok, 1, dupmeta, 2) == CD_ERR_INVALID_ARG, "duplicate meta key");
    const char *nullmeta[] = {"k", NULL};
    EXPECT(cd_st_write(ctx, path, &ok, 1, nullmeta, 1) == CD_ERR_INVALID_ARG, "NULL meta value");
    EXPECT(file_size(path) < 0 && dir_count(dir) == 0, "meta failures left files");

    /* A failed write over an existing file leaves it unchanged. */
    CHECK(cd_st_write(ctx, path, &ok, 1, NULL, 0) == CD_OK, "write: %s", cd_ctx_error(ctx));
    long before = file_size(path);
    EXPECT(cd_st_write(ctx, path, cases[0].t, 2, NULL, 0) == CD_ERR_INVALID_ARG, "dup over file");
    EXPECT(file_size(path) == before && dir_count(dir) == 1, "existing file changed");

    /* Failures after the temp file exists: rename onto a directory, or no such directory. */
    snprintf(sub, sizeof sub, "%s/adir", dir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    cd_status s = cd_st_write(ctx, sub, &ok, 1, NULL, 0);
    EXPECT(s == CD_ERR_IO, "write onto a directory: %s", cd_status_str(s));
    EXPECT(dir_count(dir) == 2 && dir_count(sub) == 0, "temp file left after a failed rename");
    snprintf(sub, sizeof sub, "%s/nodir/x.safetensors", dir);
    s = cd_st_write(ctx, sub, &ok, 1, NULL, 0);
    EXPECT(s == CD_ERR_IO && strstr(cd_ctx_error(ctx), "nodir"), "missing directory: %s", cd_ctx_error(ctx));
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* ---- malformed files ----------------------------------------------------------------------- */

TEST(st_rejects_malformed_files) {
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
#define T_ENTRY(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

    /* size */
    snprintf(p, sizeof p, "%s/empty.safetensors", dir);
    CHECK(write_bytes(p, "", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "too short");
    snprintf(p, sizeof p, "%s/short.safetensors", dir);
    CHECK(write_bytes(p, "\x02\0\0\0\0", 5), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "too short");

    /* header length */
    snprintf(p, sizeof p, "%s/past_eof.safetensors", dir);
    CHECK(write_st_raw(p, 100, "{}", 10), "write"); /* file has 12 bytes after the length */
    EXPECT_BAD(p, CD_ERR_FORMAT, "past the end");
    snprintf(p, sizeof p, "%s/huge.safetensors", dir);
    CHECK(write_st_raw(p, 100000001ull, "{}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "exceeds the limit");
    snprintf(p, sizeof p, "%s/u64max.safetensors", dir);
    CHECK(write_st_raw(p, UINT64_MAX, "{}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "exceeds the limit");

    /* data coverage */
    snprintf(p, sizeof p, "%s/truncated.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[4]", 0, 16) "}", 12), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "truncated");
    snprintf(p, sizeof p, "%s/trailing.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[4]", 0, 16) "}", 19), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "trailing bytes");
    snprintf(p, sizeof p, "%s/gap.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", 0, 4) "," T_ENTRY("b", "F32", "[1]", 8, 12) "}", 12), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "gap");
    snprintf(p, sizeof p, "%s/gap_first.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", 4, 8) "}", 8), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "gap");
    snprintf(p, sizeof p, "%s/overlap.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[2]", 0, 8) "," T_ENTRY("b", "F32", "[2]", 4, 12) "}", 12), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "overlap");
    snprintf(p, sizeof p, "%s/alias.safetensors", dir); /* identical offsets: overlap too */
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[2]", 0, 8) "," T_ENTRY("b", "F32", "[2]", 0, 8) "}", 8), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "overlap");
    snprintf(p, sizeof p, "%s/reversed.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", 8, 4) "}", 8), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "reversed");

    /* JSON-level */
    snprintf(p, sizeof p, "%s/dup.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", 0, 4) "," T_ENTRY("a", "F32", "[1]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "duplicate key \"a\"");
    snprintf(p, sizeof p, "%s/dup_field.safetensors", dir); /* inside an entry */
    CHECK(write_st(p,
                   "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],"
                   "\"data_offsets\":[0,4]}}",
                   4),
          "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "duplicate key \"dtype\"");
    snprintf(p, sizeof p, "%s/dup_escaped.safetensors", dir); /* "\u0061" is "a" */
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", 0, 4) "," T_ENTRY("\\u0061", "F32", "[1]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "duplicate key");
    snprintf(p, sizeof p, "%s/dup_meta.safetensors", dir);
    CHECK(write_st(p, "{\"__metadata__\":{\"k\":\"1\"},\"__metadata__\":{\"k\":\"2\"}}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "duplicate key \"__metadata__\"");
    snprintf(p, sizeof p, "%s/badjson.safetensors", dir);
    CHECK(write_st(p, "{\"a\":{\"dtype\":\"F32\",", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "not valid JSON");
    snprintf(p, sizeof p, "%s/trailing_json.safetensors", dir);
    CHECK(write_st(p, "{} {}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "not valid JSON");
    snprintf(p, sizeof p, "%s/nul.safetensors", dir);
    { /* header "{}\0": a NUL byte inside the JSON text */
        unsigned char b[8 + 3] = {3, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0};
        CHECK(write_bytes(p, b, sizeof b), "write");
    }
    EXPECT_BAD(p, CD_ERR_FORMAT, "JSON");
    snprintf(p, sizeof p, "%s/utf8.safetensors", dir);
    CHECK(write_st(p, "{\"a\xff\":{}}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "UTF-8");
    snprintf(p, sizeof p, "%s/overlong.safetensors", dir);
    CHECK(write_st(p, "{\"a\xc0\xaf\":{}}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "UTF-8");
    snprintf(p, sizeof p, "%s/surrogate.safetensors", dir);
    CHECK(write_st(p, "{\"a\xed\xa0\x80\":{}}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "UTF-8");
    snprintf(p, sizeof p, "%s/array.safetensors", dir);
    CHECK(write_st(p, "[]", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "not a JSON object");
    snprintf(p, sizeof p, "%s/entry_num.safetensors", dir);
    CHECK(write_st(p, "{\"a\":5}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "not a JSON object");

    /* metadata */
    snprintf(p, sizeof p, "%s/meta_int.safetensors", dir);
    CHECK(write_st(p, "{\"__metadata__\":{\"k\":1}}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "__metadata__");
    snprintf(p, sizeof p, "%s/meta_arr.safetensors", dir);
    CHECK(write_st(p, "{\"__metadata__\":[\"k\"]}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "__metadata__");
    snprintf(p, sizeof p, "%s/meta_nested.safetensors", dir);
    CHECK(write_st(p, "{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "__metadata__");

    /* fields */
    snprintf(p, sizeof p, "%s/no_dtype.safetensors", dir);
    CHECK(write_st(p, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "missing field 'dtype'");
    snprintf(p, sizeof p, "%s/no_shape.safetensors", dir);
    CHECK(write_st(p, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "missing field 'shape'");
    snprintf(p, sizeof p, "%s/no_offsets.safetensors", dir);
    CHECK(write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "missing field 'data_offsets'");
    snprintf(p, sizeof p, "%s/dtype_num.safetensors", dir);
    CHECK(write_st(p, "{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "dtype is not a string");
    snprintf(p, sizeof p, "%s/unknown_dtype.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F31", "[1]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "unknown dtype 'F31'");
    snprintf(p, sizeof p, "%s/lower_dtype.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "f32", "[1]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "unknown dtype");
    snprintf(p, sizeof p, "%s/neg_shape.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[-1]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "shape[0] is negative");
    snprintf(p, sizeof p, "%s/frac_shape.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[2, 1.5]", 0, 12) "}", 12), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "shape[1] is not an integer (a fractional");
    snprintf(p, sizeof p, "%s/str_shape.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "\"4\"", 0, 16) "}", 16), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "shape is not an array");
    snprintf(p, sizeof p, "%s/big_int.safetensors", dir); /* > 2^63: Jansson refuses it */
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[99999999999999999999]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "JSON");
    snprintf(p, sizeof p, "%s/offsets3.safetensors", dir);
    CHECK(write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "data_offsets is not an array of 2 integers");
    snprintf(p, sizeof p, "%s/offsets_neg.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", -4, 0) "}", 0), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "data_offsets[0] is negative");
    snprintf(p, sizeof p, "%s/offsets_frac.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", 0, 4.0) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "data_offsets[1] is not an integer");
    snprintf(p, sizeof p, "%s/offsets_str.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1]", "0", 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "data_offsets[0] is not an integer");
    snprintf(p, sizeof p, "%s/exp_shape.safetensors", dir); /* 1e0 is a JSON real, not an int */
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1e0]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "shape[0] is not an integer");
    snprintf(p, sizeof p, "%s/null_shape.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[null]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "shape[0] is not an integer");

    /* sizes */
    snprintf(p, sizeof p, "%s/mismatch.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[3]", 0, 8) "}", 8), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "size mismatch");
    snprintf(p, sizeof p, "%s/mismatch_dtype.safetensors", dir); /* right for BF16, not F64 */
    CHECK(write_st(p, "{" T_ENTRY("a", "F64", "[4]", 0, 8) "}", 8), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "size mismatch");
    snprintf(p, sizeof p, "%s/subbyte.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F4", "[3]", 0, 2) "}", 2), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "sub-byte");
    snprintf(p, sizeof p, "%s/overflow.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[4294967296, 4294967296, 16]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "overflow");
    snprintf(p, sizeof p, "%s/rank9.safetensors", dir);
    CHECK(write_st(p, "{" T_ENTRY("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_UNSUPPORTED, "rank 9");

    /* not a file */
    snprintf(p, sizeof p, "%s/does_not_exist.safetensors", dir);
    EXPECT_BAD(p, CD_ERR_NOT_FOUND, "cannot open");
    snprintf(p, sizeof p, "%s/subdir", dir);
    CHECK(mkdir(p, 0755) == 0, "mkdir");
    EXPECT_BAD(p, CD_ERR_IO, "not a regular file");
#undef T_ENTRY
    tmp_rm(dir);
}

/* Valid corner cases that a loader must accept. */
TEST(st_accepts_valid_corner_cases) {
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_st_file *f;
    /* JSON whitespace before and after the object (the reference reader accepts both) */
    snprintf(p, sizeof p, "%s/ws.safetensors", dir);
    CHECK(write_st(p, " \n{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}\r \t\n", 2), "write");
    CHECK(cd_st_open(ctx, p, &f) == CD_OK, "whitespace: %s", cd_ctx_error(ctx));
    EXPECT(cd_st_count(f) == 1 && ((const unsigned char *)cd_st_find(f, "a")->data)[1] == 0x5a, "whitespace content");
    cd_st_close(f);
    /* header only, no tensors, and several empty tensors sharing one offset, keys out of order */
    snprintf(p, sizeof p, "%s/empties.safetensors", dir);
    CHECK(write_st(p,
                   "{\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"e2\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                   "\"e1\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                   "\"extra\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[4,5],\"x\":1}}",
                   5),
          "write");
    CHECK(cd_st_open(ctx, p, &f) == CD_OK, "empties: %s", cd_ctx_error(ctx));
    EXPECT(cd_st_count(f) == 4, "count");
    EXPECT(!strcmp(cd_st_at(f, 0)->name, "z") && !strcmp(cd_st_at(f, 1)->name, "e1") &&
               !strcmp(cd_st_at(f, 2)->name, "e2") && !strcmp(cd_st_at(f, 3)->name, "extra"),
           "data order (ties by name)");
    cd_st_close(f);
    snprintf(p, sizeof p, "%s/meta_only.safetensors", dir);
    CHECK(write_st(p, "{\"__metadata__\":{}}", 0), "write");
    CHECK(cd_st_open(ctx, p, &f) == CD_OK, "metadata only: %s", cd_ctx_error(ctx));
    EXPECT(cd_st_count(f) == 0, "count");
    cd_st_close(f);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* ---- conversion ---------------------------------------------------------------------------- */

/* Converts n raw values of dtype dt through a tensor view at an odd address. */
static cd_status convert(cd_dtype dt, const void *raw, size_t n, float *out) {
    const size_t elt = (size_t)cd_dtype_bits(dt) / 8;
    unsigned char *buf = malloc(n * elt + 1);
    memcpy(buf + 1, raw, n * elt); /* deliberately misaligned */
    cd_st_tensor t = {"t", dt, 1, {(int64_t)n}, buf + 1, (uint64_t)(n * elt)};
    cd_ctx *ctx;
    cd_ctx_create(NULL, &ctx);
    cd_status s = cd_st_to_f32(ctx, &t, out);
    cd_ctx_free(ctx);
    free(buf);
    return s;
}

static int same_float(float a, float b) { return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b)); }

TEST(st_convert_known_values) {
    /* BF16 */
    const uint16_t bf[] = {0x3f80, 0xc020, 0x7fc0, 0x0001, 0xff80};
    const float bf_want[] = {1.0f, -2.5f, NAN, 0x1p-133f, -INFINITY};
    float o[16];
    CHECK(convert(CD_DTYPE_BF16, bf, 5, o) == CD_OK, "bf16");
    for (int i = 0; i < 5; i++) EXPECT(same_float(o[i], bf_want[i]), "bf16[%d] = %g", i, o[i]);

    /* F16: normals, max, smallest subnormal, largest subnormal, inf, NaN, -0 */
    const uint16_t h[] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0x7e00, 0x8000, 0x0400};
    const float h_want[] = {1.0f, -2.5f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, INFINITY, NAN, -0.0f, 0x1p-14f};
    CHECK(convert(CD_DTYPE_F16, h, 9, o) == CD_OK, "f16");
    for (int i = 0; i < 9; i++) EXPECT(same_float(o[i], h_want[i]), "f16[%d] = %g", i, o[i]);

    /* F8_E4M3 (fn): bias 7, max 448, NaN only at S.1111.111, 0x78 = 256 (not inf) */
    const uint8_t e4[] = {0x38, 0xc2, 0x7e, 0xfe, 0x7f, 0xff, 0x01, 0x07, 0x08, 0x80, 0x78, 0x00};
    const float e4_want[] = {1.0f,    -2.5f,       448.0f,  -448.0f, NAN,    NAN,
                             0x1p-9f, 7 * 0x1p-9f, 0x1p-6f, -0.0f,   256.0f, 0.0f};
    CHECK(convert(CD_DTYPE_F8_E4M3, e4, 12, o) == CD_OK, "e4m3");
    for (int i = 0; i < 12; i++) EXPECT(same_float(o[i], e4_want[i]), "e4m3[%d] = %g", i, o[i]);

    /* F8_E5M2: bias 15, IEEE-like with inf and NaN, max 57344 */
    const uint8_t e5[] = {0x3c, 0xc1, 0x7b, 0x7c, 0xfc, 0x7d, 0x01, 0x03, 0x04, 0x80};
    const float e5_want[] = {1.0f, -2.5f, 57344.0f, INFINITY, -INFINITY, NAN, 0x1p-16f, 3 * 0x1p-16f, 0x1p-14f, -0.0f};
    CHECK(convert(CD_DTYPE_F8_E5M2, e5, 10, o) == CD_OK, "e5m2");
    for (int i = 0; i < 10; i++) EXPECT(same_float(o[i], e5_want[i]), "e5m2[%d] = %g", i, o[i]);

    /* Exhaustive: every non-NaN E4M3 code equals (-1)^s * 2^(e-7) * (1 + m/8) (or subnormal). */
    uint8_t all[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    float o256[256];
    CHECK(convert(CD_DTYPE_F8_E4M3, all, 256, o256) == CD_OK, "e4m3 all");
    for (int b = 0; b < 256; b++) {
        int e = (b >> 3) & 15, m = b & 7;
        double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m, -9);
        if (b & 0x80) v = -v;
        if ((b & 0x7f) == 0x7f)
            EXPECT(isnan(o256[b]), "e4m3 0x%02x must be NaN", b);
        else
            EXPECT(o256[b] == (float)v, "e4m3 0x%02x = %g want %g", b, o256[b], v);
    }

    /* F32 passes through bit-exactly, also from an odd address. */
    const float f[] = {3.5f, -0.0f, 1e-40f, 123456.789f};
    CHECK(convert(CD_DTYPE_F32, f, 4, o) == CD_OK, "f32");
    EXPECT(!memcmp(o, f, sizeof f), "f32 pass-through");

    /* Other dtypes are refused with a message naming the dtype. */
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    int32_t iv[2] = {1, 2};
    cd_st_tensor ti = {"ints", CD_DTYPE_I32, 1, {2}, iv, 8};
    EXPECT(cd_st_to_f32(ctx, &ti, o) == CD_ERR_UNSUPPORTED, "I32 must be unsupported");
    EXPECT(strstr(cd_ctx_error(ctx), "I32") && strstr(cd_ctx_error(ctx), "ints"), "message: %s", cd_ctx_error(ctx));
    cd_st_tensor tf64 = {"d", CD_DTYPE_F64, 1, {1}, iv, 8};
    EXPECT(cd_st_to_f32(ctx, &tf64, o) == CD_ERR_UNSUPPORTED, "F64 is not in the supported list");
    cd_st_tensor wrong = {"w", CD_DTYPE_F32, 1, {3}, iv, 8}; /* nbytes disagrees with shape */
    EXPECT(cd_st_to_f32(ctx, &wrong, o) == CD_ERR_INVALID_ARG, "inconsistent nbytes");
    cd_ctx_free(ctx);
}

/* Conversion of tensors that went through a file, with random (never zero) payloads. */
TEST(st_convert_through_file_f16_f8) {
    char dir[64], path[128];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    test_rng rng = test_rng_seed(77);
    uint16_t hv[33];
    uint8_t e4[31], e5[29];
    for (int i = 0; i < 33; i++) hv[i] = (uint16_t)(0x3000 + (test_rng_u64(&rng) % 0x1800)); /* finite */
    for (int i = 0; i < 31; i++) e4[i] = (uint8_t)(1 + test_rng_u64(&rng) % 0x7e);
    for (int i = 0; i < 29; i++) e5[i] = (uint8_t)(1 + test_rng_u64(&rng) % 0x7b);
    uint8_t odd = 9;
    cd_st_out t[] = {
        {"odd", CD_DTYPE_U8, 0, {0}, &odd},
        {"h", CD_DTYPE_F16, 1, {33}, hv},
        {"a", CD_DTYPE_F8_E4M3, 1, {31}, e4},
        {"b", CD_DTYPE_F8_E5M2, 1, {29}, e5},
    };
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    CHECK(cd_st_write(ctx, path, t, 4, NULL, 0) == CD_OK, "write: %s", cd_ctx_error(ctx));
    cd_st_file *f;
    CHECK(cd_st_open(ctx, path, &f) == CD_OK, "open: %s", cd_ctx_error(ctx));
    float x[33], y[33];
    CHECK(cd_st_to_f32(ctx, cd_st_find(f, "h"), x) == CD_OK, "h");
    CHECK(convert(CD_DTYPE_F16, hv, 33, y) == CD_OK, "h direct");
    EXPECT(!memcmp(x, y, sizeof x), "f16 through file differs");
    for (int i = 0; i < 33; i++) EXPECT(x[i] >= 0.125f && x[i] < 8.0f, "f16[%d] = %g", i, x[i]);
    CHECK(cd_st_to_f32(ctx, cd_st_find(f, "a"), x) == CD_OK, "a");
    for (int i = 0; i < 31; i++) {
        float want;
        convert(CD_DTYPE_F8_E4M3, &e4[i], 1, &want);
        EXPECT(x[i] == want && x[i] > 0, "e4m3[%d]", i);
    }
    CHECK(cd_st_to_f32(ctx, cd_st_find(f, "b"), x) == CD_OK, "b");
    for (int i = 0; i < 29; i++) {
        /* E5M2 is the high byte of an F16 */
        float want;
        uint16_t hh = (uint16_t)(e5[i] << 8);
        convert(CD_DTYPE_F16, &hh, 1, &want);
        EXPECT(x[i] == want && x[i] > 0, "e5m2[%d]", i);
    }
    cd_st_close(f);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* ---- hardening: one distinct message per malformed class ------------------------------------ */

/* Opens path; returns the status and copies the message. */
static cd_status open_msg(const char *path, char *msg, size_t cap) {
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) return CD_ERR_INTERNAL;
    cd_st_file *f = NULL;
    cd_status s = cd_st_open(ctx, path, &f);
    snprintf(msg, cap, "%s", cd_ctx_error(ctx));
    cd_st_close(f);
    cd_ctx_free(ctx);
    return s;
}

#define E1(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

/* Every class of malformed file that docs/safetensors.md and issue 3 list. For each: the reason
 * keyword, the tensor the message must name (NULL: none), and no other class's keyword may
 * appear in its message, so each class is told apart by its message alone. */
TEST(st_malformed_classes_have_distinct_messages) {
    static const struct {
        const char *cls, *header; /* header NULL: a 5-byte file */
        uint64_t hlen;            /* 0: the true length */
        size_t data;
        const char *kw, *tensor;
    } k[] = {
        {"short file", NULL, 0, 0, "file is too short", NULL},
        {"header past EOF", "{}", 100, 10, "runs past the end of the file", NULL},
        {"huge header length", "{}", 100000001ull, 0, "exceeds the limit", NULL},
        {"truncated data", "{" E1("a", "F32", "[4]", 0, 16) "}", 0, 12, "truncated", "a"},
        {"trailing bytes", "{" E1("a", "F32", "[4]", 0, 16) "}", 0, 19, "trailing bytes", NULL},
        {"overlapping offsets", "{" E1("a", "F32", "[2]", 0, 8) "," E1("b", "F32", "[2]", 4, 12) "}", 0, 12, "overlap",
         "b"},
        {"gapped offsets", "{" E1("a", "F32", "[1]", 0, 4) "," E1("b", "F32", "[1]", 8, 12) "}", 0, 12, "gap:", "b"},
        {"reversed offsets", "{" E1("a", "F32", "[1]", 8, 4) "}", 0, 8, "reversed", "a"},
        {"duplicate keys", "{" E1("a", "F32", "[1]", 0, 4) "," E1("a", "F32", "[1]", 0, 4) "}", 0, 4, "duplicate key",
         NULL},
        {"size/dtype mismatch", "{" E1("a", "F64", "[4]", 0, 8) "}", 0, 8, "size mismatch", "a"},
        {"unknown dtype", "{" E1("a", "F31", "[1]", 0, 4) "}", 0, 4, "unknown dtype", "a"},
        {"negative shape", "{" E1("a", "F32", "[-1]", 0, 4) "}", 0, 4, "is negative", "a"},
        {"fractional shape", "{" E1("a", "F32", "[1.5]", 0, 4) "}", 0, 4, "is not an integer", "a"},
        {"shape product overflow", "{" E1("a", "F32", "[4294967296,4294967296,16]", 0, 4) "}", 0, 4, "overflows", "a"},
        {"sub-byte slice", "{" E1("a", "F4", "[3]", 0, 2) "}", 0, 2, "sub-byte", "a"},
        {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", 0, 0, "value of key 'k'", NULL},
        {"metadata not an object", "{\"__metadata__\":[]}", 0, 0, "__metadata__ is not", NULL},
        {"invalid JSON", "{\"a\":", 0, 0, "not valid JSON", NULL},
        {"invalid UTF-8", "{\"a\xff\":{}}", 0, 0, "not valid UTF-8", NULL},
        {"missing field", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, "missing field", "a"},
        {"header not an object", "[]", 0, 0, "header is not a JSON object", NULL},
        {"entry not an object", "{\"a\":5}", 0, 0, "entry is not a JSON object", "a"},
        {"rank too large", "{" E1("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 0, 4, "rank 9", "a"},
        {"offsets not a pair", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 0, 4,
         "not an array of 2", "a"},
    };
    enum { N = sizeof k / sizeof k[0] };
    char dir[64], p[N][128], msg[N][512];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    for (int i = 0; i < N; i++) {
        snprintf(p[i], sizeof p[i], "%s/c%02d.safetensors", dir, i);
        int ok = k[i].header ? write_st_raw(p[i], k[i].hlen ? k[i].hlen : strlen(k[i].header), k[i].header, k[i].data)
                             : write_bytes(p[i], "\x02\0\0\0\0", 5);
        CHECK(ok, "write %s", k[i].cls);
        cd_status s = open_msg(p[i], msg[i], sizeof msg[i]);
        EXPECT(s == CD_ERR_FORMAT || (s == CD_ERR_UNSUPPORTED && strstr(k[i].cls, "rank")), "%s: status %s (%s)",
               k[i].cls, cd_status_str(s), msg[i]);
        EXPECT(strstr(msg[i], p[i]) == msg[i], "%s: message does not start with the file: %s", k[i].cls, msg[i]);
        EXPECT(strstr(msg[i], k[i].kw), "%s: message lacks '%s': %s", k[i].cls, k[i].kw, msg[i]);
        EXPECT(!strchr(msg[i], '\n'), "%s: message is not one line", k[i].cls);
        if (k[i].tensor) {
            char want[64];
            snprintf(want, sizeof want, "tensor '%s'", k[i].tensor);
            EXPECT(strstr(msg[i], want), "%s: message does not name %s: %s", k[i].cls, want, msg[i]);
        }
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            EXPECT(i == j || !strstr(msg[j], k[i].kw), "the message of '%s' contains the keyword of '%s': %s", k[j].cls,
                   k[i].cls, msg[j]);
    tmp_rm(dir);
}

/* Every dtype string of the spec, written by hand (not through cd_dtype_name), is readable with
 * the right storage size; sub-byte dtypes with whole-byte element counts. */
TEST(st_every_spec_dtype_readable) {
    static const struct {
        const char *name;
        int bits;
    } k[] = {
        {"BOOL", 8},    {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6},     {"U8", 8},          {"I8", 8},
        {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},
        {"U16", 16},    {"F16", 16},    {"BF16", 16},   {"I32", 32},        {"U32", 32},        {"F32", 32},
        {"C64", 64},    {"F64", 64},    {"I64", 64},    {"U64", 64},
    };
    enum { N = sizeof k / sizeof k[0] };
    char dir[64], p[128], header[4096];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(p, sizeof p, "%s/all.safetensors", dir);
    size_t off = 0, len = 0;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int i = 0; i < N; i++) { /* 4 elements: a whole number of bytes for every width */
        size_t nb = (size_t)k[i].bits * 4 / 8;
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"t_%s\":{\"dtype\":\"%s\",\"shape\":[2,2],\"data_offsets\":[%zu,%zu]}",
                                i ? "," : "", k[i].name, k[i].name, off, off + nb);
        off += nb;
    }
    snprintf(header + len, sizeof header - len, "}");
    CHECK(write_st(p, header, off), "write");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_st_file *f;
    CHECK(cd_st_open(ctx, p, &f) == CD_OK, "open: %s", cd_ctx_error(ctx));
    CHECK(cd_st_count(f) == N, "count %zu", cd_st_count(f));
    EXPECT((int)CD_DTYPE_COUNT == (int)N, "the spec has %d dtypes, cd_dtype has %d", N, CD_DTYPE_COUNT);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", k[i].name);
        const cd_st_tensor *t = cd_st_find(f, name);
        CHECK(t, "%s missing", name);
        EXPECT(!strcmp(cd_dtype_name(t->dtype), k[i].name), "%s: dtype %s", name, cd_dtype_name(t->dtype));
        EXPECT(cd_dtype_bits(t->dtype) == k[i].bits, "%s: bits %d", name, cd_dtype_bits(t->dtype));
        EXPECT(t->nbytes == (uint64_t)k[i].bits * 4 / 8, "%s: nbytes %llu", name, (unsigned long long)t->nbytes);
        EXPECT(cd_st_numel(t) == 4, "%s: numel", name);
    }
    cd_st_close(f);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* __metadata__ must be a string->string object: every other JSON type is refused, for the object
 * itself and for its values; empty and non-ASCII strings are fine. */
TEST(st_metadata_value_types) {
    static const struct {
        const char *header, *kw;
    } bad[] = {
        {"{\"__metadata__\":null}", "__metadata__ is not a string->string object"},
        {"{\"__metadata__\":\"x\"}", "__metadata__ is not a string->string object"},
        {"{\"__metadata__\":7}", "__metadata__ is not a string->string object"},
        {"{\"__metadata__\":{\"k\":null}}", "value of key 'k' is not a string"},
        {"{\"__metadata__\":{\"k\":true}}", "value of key 'k' is not a string"},
        {"{\"__metadata__\":{\"k\":1.5}}", "value of key 'k' is not a string"},
        {"{\"__metadata__\":{\"a\":\"ok\",\"k\":[\"x\"]}}", "value of key 'k' is not a string"},
        {"{\"__metadata__\":{\"k\":{}}}", "value of key 'k' is not a string"},
    };
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(p, sizeof p, "%s/m%zu.safetensors", dir, i);
        CHECK(write_st(p, bad[i].header, 0), "write");
        EXPECT_BAD(p, CD_ERR_FORMAT, bad[i].kw);
    }
    snprintf(p, sizeof p, "%s/good.safetensors", dir);
    CHECK(write_st(p, "{\"__metadata__\":{\"e\":\"\",\"u\":\"\\u00e9\xe2\x82\xac\",\"\":\"k\"}}", 0), "write");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_st_file *f;
    CHECK(cd_st_open(ctx, p, &f) == CD_OK, "open: %s", cd_ctx_error(ctx));
    const char *m = cd_st_meta(f, "u");
    EXPECT(m && !strcmp(m, "\xc3\xa9\xe2\x82\xac"), "u = %s", m ? m : "(null)");
    EXPECT(cd_st_meta(f, "e") && !cd_st_meta(f, "e")[0], "empty value");
    EXPECT(cd_st_meta(f, "") && !strcmp(cd_st_meta(f, ""), "k"), "empty key");
    cd_st_close(f);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* Rank 0 is one element, a zero dim is zero bytes: both read and convert; wrong sizes fail. */
TEST(st_rank0_and_empty_tensors) {
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(p, sizeof p, "%s/r0.safetensors", dir);
    /* data: F16 1.0 (00 3c) then nothing for the empty BF16 [3, 0, 2] */
    {
        const char *h = "{" E1("s", "F16", "[]", 0, 2) "," E1("e", "BF16", "[3,0,2]", 2, 2) "}";
        unsigned char buf[256];
        size_t hl = strlen(h);
        for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
        memcpy(buf + 8, h, hl);
        buf[8 + hl] = 0x00;
        buf[9 + hl] = 0x3c;
        CHECK(write_bytes(p, buf, hl + 10), "write");
    }
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_st_file *f;
    CHECK(cd_st_open(ctx, p, &f) == CD_OK, "open: %s", cd_ctx_error(ctx));
    const cd_st_tensor *s = cd_st_find(f, "s"), *e = cd_st_find(f, "e");
    CHECK(s && e, "tensors");
    EXPECT(s->ndim == 0 && cd_st_numel(s) == 1 && s->nbytes == 2, "rank 0: ndim %d nbytes %llu", s->ndim,
           (unsigned long long)s->nbytes);
    EXPECT(e->ndim == 3 && cd_st_numel(e) == 0 && e->nbytes == 0, "empty");
    float x = 0, dummy = 42;
    uint16_t b = 0, db = 7;
    EXPECT(cd_st_to_f32(ctx, s, &x) == CD_OK && x == 1.0f, "rank-0 to_f32 = %g", x);
    EXPECT(cd_st_to_bf16(ctx, s, &b) == CD_OK && b == 0x3f80, "rank-0 to_bf16 = 0x%04x", b);
    EXPECT(cd_st_to_f32(ctx, e, &dummy) == CD_OK && dummy == 42, "empty to_f32 writes nothing");
    EXPECT(cd_st_to_bf16(ctx, e, &db) == CD_OK && db == 7, "empty to_bf16 writes nothing");
    cd_st_close(f);
    cd_ctx_free(ctx);

    snprintf(p, sizeof p, "%s/r0_bad.safetensors", dir); /* rank 0 of F16 is 2 bytes, not 4 */
    CHECK(write_st(p, "{" E1("s", "F16", "[]", 0, 4) "}", 4), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "size mismatch");
    snprintf(p, sizeof p, "%s/empty_bad.safetensors", dir); /* an empty tensor owns no bytes */
    CHECK(write_st(p, "{" E1("e", "BF16", "[3,0,2]", 0, 2) "}", 2), "write");
    EXPECT_BAD(p, CD_ERR_FORMAT, "size mismatch");
    tmp_rm(dir);
}

/* Offsets above 2^32 (a 23.8 GB FLUX file has them): a sparse 4 GiB + 13 byte file whose last
 * tensor starts at 2^32 + 5. Only the pages written here exist on disk. */
TEST(st_offsets_above_4g_sparse) {
    char dir[64], p[160], header[512];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    snprintf(p, sizeof p, "%s/big.safetensors", dir);
    const uint64_t big = (1ull << 32) + 5;
    int hl = snprintf(header, sizeof header,
                      "{\"big\":{\"dtype\":\"U8\",\"shape\":[%llu],\"data_offsets\":[0,%llu]},"
                      "\"tail\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%llu,%llu]}}",
                      (unsigned long long)big, (unsigned long long)big, (unsigned long long)big,
                      (unsigned long long)(big + 8));
    FILE *fp = fopen(p, "wb");
    CHECK(fp, "create");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(header, 1, (size_t)hl, fp) == (size_t)hl;
    ok = fclose(fp) == 0 && ok;
    CHECK(ok, "write header");
    const uint64_t data0 = 8 + (uint64_t)hl;
    CHECK(truncate(p, (off_t)(data0 + big + 8)) == 0, "truncate to %llu bytes", (unsigned long long)(data0 + big + 8));
    const float tail[2] = {1.5f, -2.25f};
    const unsigned char mark = 0x42;
    fp = fopen(p, "r+b");
    CHECK(fp, "reopen");
    ok = fseeko(fp, (off_t)(data0 + big - 1), SEEK_SET) == 0 && fwrite(&mark, 1, 1, fp) == 1 &&
         fwrite(tail, 1, 8, fp) == 8;
    ok = fclose(fp) == 0 && ok;
    CHECK(ok, "write tail");

    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_st_file *f;
    cd_status s = cd_st_open(ctx, p, &f);
    EXPECT(s == CD_OK, "open: %s", cd_ctx_error(ctx));
    if (s == CD_OK) {
        const cd_st_tensor *tb = cd_st_find(f, "big"), *tt = cd_st_find(f, "tail");
        EXPECT(tb && tt && tb->nbytes == big && cd_st_numel(tb) == big, "big tensor");
        EXPECT(tb && tt && (const unsigned char *)tt->data - (const unsigned char *)tb->data == (ptrdiff_t)big,
               "tail pointer is not 2^32 + 5 past big");
        EXPECT(tb && ((const unsigned char *)tb->data)[big - 1] == mark, "last byte of big");
        float y[2] = {0, 0};
        EXPECT(tt && cd_st_to_f32(ctx, tt, y) == CD_OK && y[0] == 1.5f && y[1] == -2.25f, "tail = %g %g", y[0], y[1]);
        cd_st_close(f);
    }
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* Inputs the fuzzer (fuzz/fuzz_safetensors.c) found or that were made by hand to be nasty. A file
 * named ok-* must be accepted; every other one rejected with a one-line message naming it.
 * *.json files are checkpoint indexes (their shards sit in the same directory). Accepted tensors
 * are converted like the fuzzer does. */
#define FUZZ_REGRESSIONS "tests/fuzz_regressions"
TEST(st_fuzz_regressions) {
    DIR *d = opendir(FUZZ_REGRESSIONS);
    CHECK(d, "cannot list %s (run the tests from the repository root)", FUZZ_REGRESSIONS);
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) {
        closedir(d);
        CHECK(0, "ctx");
    }
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", FUZZ_REGRESSIONS, e->d_name);
        const int want_ok = !strncmp(e->d_name, "ok-", 3);
        const int is_index = strlen(e->d_name) > 5 && !strcmp(e->d_name + strlen(e->d_name) - 5, ".json");
        cd_status s;
        if (is_index) {
            cd_ckpt *c = NULL;
            s = cd_ckpt_open(ctx, p, &c);
            cd_ckpt_close(c);
        } else {
            cd_st_file *f = NULL;
            s = cd_st_open(ctx, p, &f);
            for (size_t i = 0; i < cd_st_count(f); i++) {
                const cd_st_tensor *t = cd_st_at(f, i);
                if (cd_st_numel(t) > 4096) continue;
                float fv[4096];
                uint16_t bv[4096];
                (void)cd_st_to_f32(ctx, t, fv);
                (void)cd_st_to_bf16(ctx, t, bv);
            }
            cd_st_close(f);
        }
        seen++;
        if (want_ok) {
            EXPECT(s == CD_OK, "%s must be accepted: %s", e->d_name, cd_ctx_error(ctx));
        } else {
            const char *m = cd_ctx_error(ctx);
            EXPECT(s != CD_OK, "%s must be rejected", e->d_name);
            EXPECT(s == CD_OK || (strstr(m, e->d_name) && !strchr(m, '\n')),
                   "%s: message must name the file on one line: %s", e->d_name, m);
        }
    }
    closedir(d);
    cd_ctx_free(ctx);
    EXPECT(seen >= 4, "only %d inputs under %s", seen, FUZZ_REGRESSIONS);
}
#undef E1
