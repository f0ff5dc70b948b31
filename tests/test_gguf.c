/* test_gguf.c — the GGUF reader (src/io/gguf.c): files written by gguf-py's GGUFWriter
 * (tests/fixtures/gguf/, tests/oracle/gguf_fixtures.py) must read exactly as gguf-py's GGUFReader
 * reads them (every key, value type and value; every tensor's type, dims, offset, size and bytes),
 * also as GGUF v2; the typed getters and the value rendering; and bad files built here byte by
 * byte (bad magic, v1, big-endian, huge counts, lengths past the end, overlapping, misaligned,
 * duplicate, non-UTF-8 and unknown-type tensors, partial blocks, n_dims 5, bad alignment, ...)
 * plus the fixture truncated at every length: each refused with a one-line message naming the file
 * and the problem. */
#include "test.h"
#include "test_files.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "../src/io/gguf.h"
#include "../src/quant/ggml_types.h"
#include "cleardit.h"

#define FIX "tests/fixtures/gguf"

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static size_t vsize(uint32_t t) {
    static const size_t s[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? s[t] : 0;
}

/* Appends the canonical text of the value of type t at p (the format of gguf_fixtures.py) to
 * out[*n < cap]; returns the next value. */
static const uint8_t *canon(const uint8_t *p, uint32_t t, char *out, size_t cap, size_t *n) {
#define PUT(...) (*n += (*n < cap ? (size_t)snprintf(out + *n, cap - *n, __VA_ARGS__) : 0))
    if (t == CD_GGUF_STR) {
        uint64_t len;
        const char *s;
        const uint8_t *next = cd_gguf_str_next(p, &s, &len);
        PUT("s");
        for (uint64_t i = 0; i < len; i++) PUT("%02x", (unsigned char)s[i]);
        return next;
    }
    if (t == CD_GGUF_ARR) {
        uint32_t et;
        uint64_t cnt;
        memcpy(&et, p, 4);
        memcpy(&cnt, p + 4, 8);
        p += 12;
        PUT("[");
        for (uint64_t i = 0; i < cnt; i++) {
            if (i) PUT(",");
            p = canon(p, et, out, cap, n);
        }
        PUT("]");
        return p;
    }
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
    } v;
    memcpy(&v, p, vsize(t));
    switch (t) {
        case CD_GGUF_U8: PUT("%u", v.u8); break;
        case CD_GGUF_I8: PUT("%d", v.i8); break;
        case CD_GGUF_U16: PUT("%u", v.u16); break;
        case CD_GGUF_I16: PUT("%d", v.i16); break;
        case CD_GGUF_U32: PUT("%" PRIu32, v.u32); break;
        case CD_GGUF_I32: PUT("%" PRId32, v.i32); break;
        case CD_GGUF_U64: PUT("%" PRIu64, v.u64); break;
        case CD_GGUF_I64: PUT("%" PRId64, v.i64); break;
        case CD_GGUF_F32: PUT("f%08" PRIx32, v.u32); break;
        case CD_GGUF_F64: PUT("d%016" PRIx64, v.u64); break;
        case CD_GGUF_BOOL: PUT("%d", v.u8 != 0); break;
        default: PUT("?");
    }
    return p + vsize(t);
#undef PUT
}

/* The canonical text of a kv as its full value (re-prefixing an array's header). */
static void kv_canon(const cd_gguf_kv *kv, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    if (kv->type != CD_GGUF_ARR) {
        canon(kv->val, kv->type, out, cap, &n);
        return;
    }
    /* kv->val is the first element: the array header is rendered from arr_type / arr_n */
    n += (size_t)snprintf(out, cap, "[");
    const uint8_t *p = kv->val;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        if (i && n < cap) n += (size_t)snprintf(out + n, cap - n, ",");
        p = canon(p, kv->arr_type, out, cap, &n);
    }
    if (n < cap) snprintf(out + n, cap - n, "]");
}

/* Compares the open file g with the lines of expect.tsv that follow its "file" line. */
static void compare_file(const cd_gguf *g, FILE *fp, const char *fields, uint32_t want_version) {
    char name[64];
    unsigned ver, align;
    size_t doff, nkv, nt;
    CHECK(sscanf(fields, "%63s %u %u %zu %zu %zu", name, &ver, &align, &doff, &nkv, &nt) == 6, "file line: %s", fields);
    EXPECT(cd_gguf_version(g) == want_version, "%s: version %u", name, cd_gguf_version(g));
    EXPECT(cd_gguf_alignment(g) == align, "%s: alignment %u want %u", name, cd_gguf_alignment(g), align);
    EXPECT(cd_gguf_data_offset(g) == doff, "%s: data offset %zu want %zu", name, cd_gguf_data_offset(g), doff);
    CHECK(cd_gguf_n_kv(g) == nkv, "%s: %zu kvs want %zu", name, cd_gguf_n_kv(g), nkv);
    CHECK(cd_gguf_n_tensors(g) == nt, "%s: %zu tensors want %zu", name, cd_gguf_n_tensors(g), nt);
    static char line[65536], got[65536];
    for (size_t i = 0; i < nkv; i++) {
        CHECK(fgets(line, sizeof line, fp), "%s: expect.tsv ends early", name);
        line[strcspn(line, "\n")] = 0;
        char *key = line + 3, *t1 = strchr(key, '\t');
        CHECK(!strncmp(line, "kv\t", 3) && t1, "bad kv line %s", line);
        *t1 = 0;
        char *t2 = strchr(t1 + 1, '\t');
        CHECK(t2, "bad kv line");
        const unsigned type = (unsigned)atoi(t1 + 1);
        const cd_gguf_kv *kv = cd_gguf_kv_at(g, i);
        CHECK(!strcmp(kv->key, key), "%s: kv %zu is '%s', want '%s'", name, i, kv->key, key);
        CHECK(cd_gguf_kv_find(g, key) == kv, "%s: kv_find('%s')", name, key);
        EXPECT(kv->type == type, "%s: '%s' type %u want %u", name, key, kv->type, type);
        kv_canon(kv, got, sizeof got);
        EXPECT(!strcmp(got, t2 + 1), "%s: '%s' = %.200s want %.200s", name, key, got, t2 + 1);
    }
    for (size_t i = 0; i < nt; i++) {
        CHECK(fgets(line, sizeof line, fp), "%s: expect.tsv ends early", name);
        char tn[256], dims[128], sum[32];
        unsigned type, nd;
        size_t off, nb;
        CHECK(sscanf(line, "tensor %255s %u %u %127s %zu %zu %31s", tn, &type, &nd, dims, &off, &nb, sum) == 7,
              "bad tensor line %s", line);
        const cd_gguf_tensor *t = cd_gguf_tensor_at(g, i);
        CHECK(!strcmp(t->name, tn), "%s: tensor %zu is '%s', want '%s'", name, i, t->name, tn);
        CHECK(cd_gguf_find(g, tn) == t, "%s: find('%s')", name, tn);
        EXPECT(t->type == type && t->n_dims == nd, "%s: '%s' type %u n_dims %u", name, tn, t->type, t->n_dims);
        char d[128];
        size_t k = 0;
        uint64_t ne = 1;
        for (uint32_t j = 0; j < t->n_dims; j++) {
            k += (size_t)snprintf(d + k, sizeof d - k, "%s%" PRIu64, j ? "," : "", t->dims[j]);
            ne *= t->dims[j];
        }
        EXPECT(!strcmp(d, dims), "%s: '%s' dims %s want %s", name, tn, d, dims);
        EXPECT(t->ne == ne, "%s: '%s' ne", name, tn);
        const size_t abs_off = (size_t)((const uint8_t *)t->data - (const uint8_t *)cd_gguf_tensor_at(g, 0)->data) +
                               cd_gguf_data_offset(g) + (size_t)cd_gguf_tensor_at(g, 0)->offset;
        EXPECT(abs_off == off && cd_gguf_data_offset(g) + t->offset == off, "%s: '%s' offset %zu want %zu", name, tn,
               abs_off, off);
        EXPECT(t->nbytes == nb, "%s: '%s' nbytes %zu want %zu", name, tn, t->nbytes, nb);
        char s[32];
        snprintf(s, sizeof s, "%016" PRIx64, fnv1a64(t->data, t->nbytes));
        EXPECT(!strcmp(s, sum), "%s: '%s' bytes differ", name, tn);
    }
}

static void check_fixtures(const char *dir, uint32_t version) {
    FILE *fp = fopen(FIX "/expect.tsv", "r");
    CHECK(fp, "cannot open " FIX "/expect.tsv");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    char line[512];
    int files = 0;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "file\t", 5)) continue;
        char name[64], path[600];
        sscanf(line + 5, "%63s", name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        cd_gguf *g = NULL;
        cd_status s = cd_gguf_open(ctx, path, &g);
        EXPECT(s == CD_OK, "open %s: %s", path, cd_ctx_error(ctx));
        if (s != CD_OK) break;
        compare_file(g, fp, line + 5, version);
        cd_gguf_close(g);
        files++;
    }
    fclose(fp);
    cd_ctx_free(ctx);
    EXPECT(files == 2, "%d fixture files compared", files);
}

TEST(gguf_oracle_v3) { check_fixtures(FIX, 3); }

/* The same files as GGUF v2 (the layout is the same; only the version field differs). */
TEST(gguf_oracle_v2) {
    char dir[64];
    CHECK(tmp_dir_tag(dir, sizeof dir, "gguf"), "mkdtemp");
    const char *names[] = {"all_types.gguf", "align64.gguf"};
    for (int i = 0; i < 2; i++) {
        char src[128], dst[128];
        snprintf(src, sizeof src, FIX "/%s", names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        FILE *f = fopen(src, "rb");
        CHECK(f, "open %s", src);
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        buf[4] = 2;
        FILE *o = fopen(dst, "wb");
        CHECK(o && fwrite(buf, 1, n, o) == n, "write");
        fclose(o);
    }
    check_fixtures(dir, 2);
    tmp_rm(dir);
}

TEST(gguf_getters) {
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_gguf *g = NULL;
    CHECK(cd_gguf_open(ctx, FIX "/all_types.gguf", &g) == CD_OK, "%s", cd_ctx_error(ctx));
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    int b;
    EXPECT(cd_gguf_get_u8(ctx, g, "t.u8", &u8) == CD_OK && u8 == 200, "u8");
    EXPECT(cd_gguf_get_i8(ctx, g, "t.i8", &i8) == CD_OK && i8 == -100, "i8");
    EXPECT(cd_gguf_get_u16(ctx, g, "t.u16", &u16) == CD_OK && u16 == 65000, "u16");
    EXPECT(cd_gguf_get_i16(ctx, g, "t.i16", &i16) == CD_OK && i16 == -32000, "i16");
    EXPECT(cd_gguf_get_u32(ctx, g, "t.u32", &u32) == CD_OK && u32 == 4000000000u, "u32");
    EXPECT(cd_gguf_get_i32(ctx, g, "t.i32", &i32) == CD_OK && i32 == -2000000000, "i32");
    EXPECT(cd_gguf_get_u64(ctx, g, "t.u64", &u64) == CD_OK && u64 == 18000000000000000000ull, "u64");
    EXPECT(cd_gguf_get_i64(ctx, g, "t.i64", &i64) == CD_OK && i64 == -9000000000000000000ll, "i64");
    EXPECT(cd_gguf_get_f32(ctx, g, "t.f32", &f32) == CD_OK && f32 == -1.25e-3f, "f32");
    EXPECT(cd_gguf_get_f64(ctx, g, "t.f64", &f64) == CD_OK && f64 == 3.141592653589793, "f64");
    EXPECT(cd_gguf_get_bool(ctx, g, "t.bool_true", &b) == CD_OK && b == 1, "bool");
    EXPECT(cd_gguf_get_bool(ctx, g, "t.bool_false", &b) == CD_OK && b == 0, "bool");
    const char *s;
    uint64_t len;
    EXPECT(cd_gguf_get_str(ctx, g, "general.architecture", &s, &len) == CD_OK && len == 4 && !memcmp(s, "test", 4),
           "str");
    /* absent key, wrong type: status and message */
    EXPECT(cd_gguf_get_u32(ctx, g, "no.such", &u32) == CD_ERR_NOT_FOUND && strstr(cd_ctx_error(ctx), "no.such"),
           "not found: %s", cd_ctx_error(ctx));
    EXPECT(cd_gguf_get_u32(ctx, g, "t.i32", &u32) == CD_ERR_FORMAT && strstr(cd_ctx_error(ctx), "INT32") &&
               strstr(cd_ctx_error(ctx), "expected UINT32"),
           "mismatch: %s", cd_ctx_error(ctx));
    const uint8_t *data;
    uint64_t n;
    CHECK(cd_gguf_get_arr(ctx, g, "a.string", CD_GGUF_STR, &data, &n) == CD_OK && n == 4, "arr str");
    data = cd_gguf_str_next(data, &s, &len);
    EXPECT(len == 1 && s[0] == 'a', "a.string[0]");
    data = cd_gguf_str_next(data, &s, &len);
    EXPECT(len == 0, "a.string[1]");
    data = cd_gguf_str_next(data, &s, &len);
    EXPECT(len == 4 && !memcmp(s, "\xc3\xbc\xc3\x9f", 4), "a.string[2]");
    EXPECT(cd_gguf_get_arr(ctx, g, "a.string", CD_GGUF_U32, &data, &n) == CD_ERR_FORMAT &&
               strstr(cd_ctx_error(ctx), "array of STRING"),
           "arr mismatch: %s", cd_ctx_error(ctx));
    CHECK(cd_gguf_get_arr(ctx, g, "a.uint32", CD_GGUF_U32, &data, &n) == CD_OK && n == 4, "arr u32");
    memcpy(&u32, data + 12, 4);
    EXPECT(u32 == 4294967295u, "a.uint32[3]");
    char buf[256];
    EXPECT(!strcmp(cd_gguf_kv_render(cd_gguf_kv_find(g, "a.uint32"), buf, sizeof buf),
                   "[UINT32 x 4: 1, 2, 3, 4294967295]"),
           "render: %s", buf);
    EXPECT(!strcmp(cd_gguf_kv_render(cd_gguf_kv_find(g, "general.architecture"), buf, sizeof buf), "\"test\""),
           "render: %s", buf);
    EXPECT(!strcmp(cd_gguf_kv_render(cd_gguf_kv_find(g, "t.f64"), buf, sizeof buf), "3.1415926535897931"), "render: %s",
           buf);
    EXPECT(!strcmp(cd_gguf_kv_render(cd_gguf_kv_find(g, "a.nested_str"), buf, sizeof buf), "[ARRAY x 3]"), "render: %s",
           buf);
    cd_gguf_kv_render(cd_gguf_kv_find(g, "a.string"), buf, 16); /* cut, still terminated */
    EXPECT(strlen(buf) == 15, "render cut: %s", buf);
    EXPECT(cd_gguf_find(g, "nope") == NULL && cd_gguf_tensor_at(g, 99) == NULL && cd_gguf_kv_at(g, 99) == NULL,
           "absent");
    cd_gguf_close(g);
    cd_ctx_free(ctx);
}

/* ---- bad files, byte by byte ---------------------------------------------------------------- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} buf_t;

static void put(buf_t *b, const void *p, size_t n) {
    if (b->n + n <= sizeof b->b) memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put32(buf_t *b, uint32_t v) { put(b, &v, 4); }
static void put64(buf_t *b, uint64_t v) { put(b, &v, 8); }
static void putstr(buf_t *b, const char *s) {
    put64(b, strlen(s));
    put(b, s, strlen(s));
}

typedef struct {
    const char *name;
    uint32_t n_dims;
    uint64_t dims[5];
    uint32_t type;
    uint64_t offset;
} ti_t;

/* A GGUF v3 file: general.architecture = "flux", optionally general.alignment (U32 `align`),
 * the tensor infos, zero padding to the alignment and data_bytes zero bytes. */
static void build(buf_t *b, const ti_t *t, size_t nt, uint32_t align, size_t data_bytes) {
    b->n = 0;
    put(b, "GGUF", 4);
    put32(b, 3);
    put64(b, nt);
    put64(b, align ? 2 : 1);
    putstr(b, "general.architecture");
    put32(b, CD_GGUF_STR);
    putstr(b, "flux");
    if (align) {
        putstr(b, "general.alignment");
        put32(b, CD_GGUF_U32);
        put32(b, align);
    }
    for (size_t i = 0; i < nt; i++) {
        putstr(b, t[i].name);
        put32(b, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims; d++) put64(b, t[i].dims[d]);
        put32(b, t[i].type);
        put64(b, t[i].offset);
    }
    const size_t a = align ? align : 32;
    while (b->n % a) put(b, "", 1);
    for (size_t i = 0; i < data_bytes; i++) put(b, "", 1);
}

/* Writes b to dir/name, opens it expecting status `want` and `keyword` in a one-line message that
 * names the file. */
static void expect_bad(const char *dir, const char *name, const buf_t *b, cd_status want, const char *keyword,
                       int line) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->b, 1, b->n, f) != b->n) {
        test_fail(__FILE__, line, "write %s", path);
        if (f) fclose(f);
        return;
    }
    fclose(f);
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) return;
    cd_gguf *g = (cd_gguf *)1;
    cd_status s = cd_gguf_open(ctx, path, &g);
    const char *msg = cd_ctx_error(ctx);
    if (s != want)
        test_fail(__FILE__, line, "%s: status %s want %s (%s)", name, cd_status_str(s), cd_status_str(want), msg);
    else if (g != NULL)
        test_fail(__FILE__, line, "%s: *out not NULL", name);
    else if (!strstr(msg, path) || !strstr(msg, keyword) || strchr(msg, '\n'))
        test_fail(__FILE__, line, "%s: message lacks the file or '%s' (or is not one line): %s", name, keyword, msg);
    cd_ctx_free(ctx);
}
#define BAD(name, want, kw) expect_bad(dir, name, &b, want, kw, __LINE__)

TEST(gguf_bad_files) {
    char dir[64];
    CHECK(tmp_dir_tag(dir, sizeof dir, "gguf"), "mkdtemp");
    static buf_t b;
    /* The valid base: two F32 tensors and a Q8_0 one; each case changes one thing. */
    ti_t ok[3] = {{"a", 2, {4, 2}, CD_GGML_F32, 0}, {"b", 1, {3}, CD_GGML_F32, 32}, {"q", 1, {32}, CD_GGML_Q8_0, 64}};
    build(&b, ok, 3, 0, 98);
    {
        char path[256];
        snprintf(path, sizeof path, "%s/ok.gguf", dir);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(b.b, 1, b.n, f) == b.n, "write");
        fclose(f);
        cd_ctx *ctx;
        CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
        cd_gguf *g;
        EXPECT(cd_gguf_open(ctx, path, &g) == CD_OK, "base file: %s", cd_ctx_error(ctx));
        if (g) EXPECT(cd_gguf_find(g, "q")->nbytes == 34 && cd_gguf_find(g, "a")->ne == 8, "base sizes");
        cd_gguf_close(g);
        cd_ctx_free(ctx);
    }
    build(&b, ok, 3, 0, 97);
    BAD("short_data.gguf", CD_ERR_FORMAT, "tensor 'q': data [64, +34) runs past the end");
    build(&b, ok, 3, 0, 98);
    memcpy(b.b, "GGUG", 4);
    BAD("magic.gguf", CD_ERR_FORMAT, "bad magic 'GGUG'");
    build(&b, ok, 3, 0, 98);
    b.b[4] = 1;
    BAD("v1.gguf", CD_ERR_UNSUPPORTED, "version 1 is not supported");
    build(&b, ok, 3, 0, 98);
    b.b[4] = 0, b.b[7] = 3;
    BAD("be.gguf", CD_ERR_UNSUPPORTED, "big-endian");
    build(&b, ok, 3, 0, 98);
    b.b[4] = 4;
    BAD("v4.gguf", CD_ERR_UNSUPPORTED, "version 4");
    build(&b, ok, 3, 0, 98);
    uint64_t huge = 1ull << 60;
    memcpy(b.b + 8, &huge, 8);
    BAD("huge_tensors.gguf", CD_ERR_FORMAT, "claims 1152921504606846976 tensors");
    build(&b, ok, 3, 0, 98);
    memcpy(b.b + 16, &huge, 8);
    BAD("huge_kv.gguf", CD_ERR_FORMAT, "claims 1152921504606846976 key/values");
    build(&b, ok, 3, 0, 98);
    memcpy(b.b + 24, &huge, 8); /* the first key's length */
    BAD("key_len.gguf", CD_ERR_FORMAT, "key 0: length 1152921504606846976 runs past the end");
    build(&b, ok, 3, 0, 98);
    huge = 1000;
    memcpy(b.b + 24 + 8 + 20 + 4, &huge, 8); /* the value "flux"'s length */
    BAD("str_len.gguf", CD_ERR_FORMAT, "key 'general.architecture': a string length runs past the end");
    build(&b, ok, 3, 0, 98);
    memcpy(b.b + 24 + 8 + 20, &(uint32_t){13}, 4);
    BAD("vtype.gguf", CD_ERR_FORMAT, "unknown value type 13");

    ti_t t[3];
    memcpy(t, ok, sizeof t);
    t[1].offset = 0;
    build(&b, t, 3, 0, 98);
    BAD("overlap.gguf", CD_ERR_FORMAT, "overlaps tensor");
    memcpy(t, ok, sizeof t);
    t[1].offset = 40;
    build(&b, t, 3, 0, 98);
    BAD("misaligned.gguf", CD_ERR_FORMAT, "tensor 'b': data offset 40 is not a multiple of the alignment 32");
    memcpy(t, ok, sizeof t);
    t[1].name = "a";
    build(&b, t, 3, 0, 98);
    BAD("dup.gguf", CD_ERR_FORMAT, "tensor 'a': name appears more than once");
    memcpy(t, ok, sizeof t);
    t[1].name = "b\xff";
    build(&b, t, 3, 0, 98);
    BAD("utf8.gguf", CD_ERR_FORMAT, "is not valid UTF-8");
    t[1].name = "b\xc0\x80"; /* overlong NUL */
    build(&b, t, 3, 0, 98);
    BAD("overlong.gguf", CD_ERR_FORMAT, "is not valid UTF-8");
    memcpy(t, ok, sizeof t);
    t[1].type = 42;
    build(&b, t, 3, 0, 98);
    BAD("type42.gguf", CD_ERR_FORMAT, "tensor 'b': unknown ggml type 42");
    memcpy(t, ok, sizeof t);
    t[2].dims[0] = 48;
    build(&b, t, 3, 0, 98);
    BAD("partial_block.gguf", CD_ERR_FORMAT, "tensor 'q': dims[0] = 48 is not a multiple of the Q8_0 block of 32");
    memcpy(t, ok, sizeof t);
    t[0].n_dims = 5, t[0].dims[2] = t[0].dims[3] = t[0].dims[4] = 1;
    build(&b, t, 3, 0, 98);
    BAD("ndims5.gguf", CD_ERR_FORMAT, "tensor 'a': n_dims 5 is over the maximum of 4");
    memcpy(t, ok, sizeof t);
    t[0].n_dims = 4, t[0].dims[1] = 1ull << 32, t[0].dims[2] = 1ull << 32, t[0].dims[3] = 2;
    build(&b, t, 3, 0, 98);
    BAD("ne_overflow.gguf", CD_ERR_FORMAT, "element count overflows");
    memcpy(t, ok, sizeof t);
    t[0].dims[1] = 1ull << 61;
    build(&b, t, 3, 0, 98);
    BAD("nbytes_big.gguf", CD_ERR_FORMAT, "tensor 'a': ");
    memcpy(t, ok, sizeof t);
    t[0].dims[1] = UINT64_MAX;
    build(&b, t, 3, 0, 98);
    BAD("dim_neg.gguf", CD_ERR_FORMAT, "negative");
    memcpy(t, ok, sizeof t);
    t[2].offset = UINT64_MAX - 31;
    build(&b, t, 3, 0, 98);
    BAD("offset_huge.gguf", CD_ERR_FORMAT, "tensor 'q': data [");
    build(&b, ok, 3, 48, 98);
    BAD("align48.gguf", CD_ERR_FORMAT, "general.alignment 48 is not a power of two");
    build(&b, ok, 3, 0, 98);
    {
        /* general.alignment as INT32: rebuild by hand */
        b.n = 0;
        put(&b, "GGUF", 4), put32(&b, 3), put64(&b, 0), put64(&b, 1);
        putstr(&b, "general.alignment"), put32(&b, CD_GGUF_I32), put32(&b, 32);
        BAD("align_type.gguf", CD_ERR_FORMAT, "general.alignment is INT32, not UINT32");
        b.n = 0;
        put(&b, "GGUF", 4), put32(&b, 3), put64(&b, 0), put64(&b, 2);
        putstr(&b, "k"), put32(&b, CD_GGUF_U8), put(&b, "x", 1);
        putstr(&b, "k"), put32(&b, CD_GGUF_U8), put(&b, "y", 1);
        BAD("dup_key.gguf", CD_ERR_FORMAT, "key 'k' appears more than once");
        b.n = 0;
        put(&b, "GGUF", 4), put32(&b, 3), put64(&b, 0), put64(&b, 1);
        putstr(&b, "deep"), put32(&b, CD_GGUF_ARR);
        for (int i = 0; i < 9; i++) put32(&b, CD_GGUF_ARR), put64(&b, 1);
        put32(&b, CD_GGUF_U8), put64(&b, 1), put(&b, "z", 1);
        BAD("deep.gguf", CD_ERR_FORMAT, "nested deeper than 8");
        b.n = 0;
        put(&b, "GGUF", 4), put32(&b, 3), put64(&b, 0), put64(&b, 1);
        putstr(&b, "arr"), put32(&b, CD_GGUF_ARR), put32(&b, CD_GGUF_U64), put64(&b, 1ull << 62);
        BAD("arr_huge.gguf", CD_ERR_FORMAT, "key 'arr': an array runs past the end");
        b.n = 0;
        put(&b, "GGUF", 4), put32(&b, 3), put64(&b, 0), put64(&b, 1);
        putstr(&b, "arr"), put32(&b, CD_GGUF_ARR), put32(&b, CD_GGUF_STR), put64(&b, 2), putstr(&b, "a");
        put(&b, "1234567", 7);
        BAD("arr_short.gguf", CD_ERR_FORMAT, "key 'arr': the file ends inside a string length");
        b.n = 0;
        put(&b, "GGUF", 4), put32(&b, 3), put64(&b, 0), put64(&b, 1);
        putstr(&b, "arr"), put32(&b, CD_GGUF_ARR), put32(&b, 77), put64(&b, 0);
        BAD("arr_type.gguf", CD_ERR_FORMAT, "unknown element type");
        b.n = 0;
        put(&b, "GGUF", 4), put32(&b, 3), put64(&b, 0), put64(&b, 1);
        put64(&b, 3), put(&b, "a\0b", 3), put32(&b, CD_GGUF_U8), put(&b, "x", 1);
        BAD("key_nul.gguf", CD_ERR_FORMAT, "contains a NUL byte");
        b.n = 10;
        memcpy(b.b, "GGUF\3\0\0\0\0\0", 10);
        BAD("tiny.gguf", CD_ERR_FORMAT, "too short");
    }
    tmp_rm(dir);
}

/* The fixture truncated at every length up to the end of its last tensor: each refused cleanly. */
TEST(gguf_truncated) {
    FILE *f = fopen(FIX "/all_types.gguf", "rb");
    CHECK(f, "open fixture");
    static buf_t b;
    b.n = fread(b.b, 1, sizeof b.b, f);
    fclose(f);
    char dir[64], path[128];
    CHECK(tmp_dir_tag(dir, sizeof dir, "gguf"), "mkdtemp");
    snprintf(path, sizeof path, "%s/t.gguf", dir);
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    size_t end = 0;
    {
        cd_gguf *g;
        CHECK(cd_gguf_open(ctx, FIX "/all_types.gguf", &g) == CD_OK, "%s", cd_ctx_error(ctx));
        for (size_t i = 0; i < cd_gguf_n_tensors(g); i++) {
            const cd_gguf_tensor *t = cd_gguf_tensor_at(g, i);
            const size_t e = cd_gguf_data_offset(g) + (size_t)t->offset + t->nbytes;
            if (e > end) end = e;
        }
        cd_gguf_close(g);
    }
    /* written once, then cut shorter and shorter (ftruncate is far cheaper than rewriting) */
    FILE *o = fopen(path, "wb");
    CHECK(o && fwrite(b.b, 1, end, o) == end, "write");
    fclose(o);
    int bad = 0;
    for (size_t len = end; len-- > 0 && !bad;) {
        CHECK(truncate(path, (off_t)len) == 0, "truncate");
        cd_gguf *g = (cd_gguf *)1;
        cd_status s = cd_gguf_open(ctx, path, &g);
        const char *msg = cd_ctx_error(ctx);
        if (s != CD_ERR_FORMAT || g || !strstr(msg, path) || strchr(msg, '\n')) {
            test_fail(__FILE__, __LINE__, "truncated at %zu: status %s: %s", len, cd_status_str(s), msg);
            bad = 1;
        }
    }
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* The fuzzer's seeds (fuzz/corpus_gguf/, fuzz/make_gguf_corpus.py) and any inputs it once crashed
 * on (tests/fuzz_regressions_gguf/, when present): bad_* and crash-* files are refused with a
 * one-line message, every other one is accepted. */
static void check_seed_dir(const char *dirname, int must_exist) {
    DIR *d = opendir(dirname);
    if (!d) {
        EXPECT(!must_exist, "cannot list %s (run the tests from the repository root)", dirname);
        return;
    }
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
        snprintf(p, sizeof p, "%s/%s", dirname, e->d_name);
        const int want_bad = !strncmp(e->d_name, "bad_", 4) || !strncmp(e->d_name, "crash-", 6);
        cd_gguf *g = NULL;
        cd_status s = cd_gguf_open(ctx, p, &g);
        if (want_bad)
            EXPECT(s != CD_OK && !strchr(cd_ctx_error(ctx), '\n') && strstr(cd_ctx_error(ctx), p),
                   "%s: accepted or bad message: %s", p, cd_ctx_error(ctx));
        else
            EXPECT(s == CD_OK, "%s: %s", p, cd_ctx_error(ctx));
        cd_gguf_close(g);
        seen++;
    }
    closedir(d);
    cd_ctx_free(ctx);
    EXPECT(!must_exist || seen >= 20, "%s: only %d files", dirname, seen);
}

TEST(gguf_fuzz_seeds) {
    check_seed_dir("fuzz/corpus_gguf", 1);
    check_seed_dir("tests/fuzz_regressions_gguf", 0);
}
