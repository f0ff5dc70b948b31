/* test_ckpt.c — checkpoint sets (cd_ckpt_*): a single file, a sharded index (3 shards written
 * with cd_st_write), the directory forms, key-prefix stripping, every index/directory error with
 * its message, and a multi-GB sparse checkpoint whose opening must not read tensor data (the
 * process's resident memory may not grow by more than a few MB). */
#include "test.h"
#include "test_files.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleardit.h"

static int tmp_dir(char *dir, size_t cap) { return tmp_dir_tag(dir, cap, "ck"); }

/* Writes tensors named names[0..n) (F32 [2], values {i, -i} + base) to path with cd_st_write. */
static int write_shard(const char *path, const char *const *names, size_t n, float base, const char *meta_value) {
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) return 0;
    float v[16][2];
    cd_st_out t[16];
    for (size_t i = 0; i < n && i < 16; i++) {
        v[i][0] = base + (float)i;
        v[i][1] = -(base + (float)i);
        cd_st_out o = {names[i], CD_DTYPE_F32, 1, {2}, v[i]};
        t[i] = o;
    }
    const char *meta[2] = {"shard", meta_value};
    cd_status s = cd_st_write(ctx, path, t, n, meta_value ? meta : NULL, meta_value ? 1 : 0);
    cd_ctx_free(ctx);
    return s == CD_OK;
}

static char *join(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Opens path expecting `want`; the message must contain every keyword in kw (NULL-terminated)
 * and be one line. */
static void expect_ckpt_error(const char *path, cd_status want, const char *const *kw, int line) {
    cd_ctx *ctx;
    if (cd_ctx_create(NULL, &ctx) != CD_OK) {
        test_fail(__FILE__, line, "ctx");
        return;
    }
    cd_ckpt *c = (cd_ckpt *)1;
    cd_status s = cd_ckpt_open(ctx, path, &c);
    const char *msg = cd_ctx_error(ctx);
    if (s != want)
        test_fail(__FILE__, line, "status %s, want %s (message: %s)", cd_status_str(s), cd_status_str(want), msg);
    else if (c != NULL)
        test_fail(__FILE__, line, "open failed but *out is not NULL");
    else if (strchr(msg, '\n'))
        test_fail(__FILE__, line, "message is not one line: %s", msg);
    for (int i = 0; kw[i] && s == want; i++)
        if (!strstr(msg, kw[i])) {
            test_fail(__FILE__, line, "message lacks '%s': %s", kw[i], msg);
            break;
        }
    if (s == CD_OK) cd_ckpt_close(c);
    cd_ctx_free(ctx);
}
#define EXPECT_CKPT_BAD(path, status, ...) \
    expect_ckpt_error(path, status, (const char *const[]){__VA_ARGS__, NULL}, __LINE__)

/* ---- the three forms ------------------------------------------------------------------------ */

TEST(ckpt_single_file) {
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    const char *names[] = {"z.w", "a.b", "m"};
    CHECK(write_shard(join(p, sizeof p, dir, "model.safetensors"), names, 3, 10, "one"), "write");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_ckpt *c;
    CHECK(cd_ckpt_open(ctx, p, &c) == CD_OK, "open: %s", cd_ctx_error(ctx));
    EXPECT(cd_ckpt_count(c) == 3, "count %zu", cd_ckpt_count(c));
    EXPECT(cd_ckpt_files(c) == 1 && !strcmp(cd_ckpt_file(c, 0), p), "file %s", cd_ckpt_file(c, 0));
    EXPECT(cd_ckpt_file(c, 1) == NULL, "file(1)");
    EXPECT(!strcmp(cd_ckpt_prefix(c), ""), "prefix '%s'", cd_ckpt_prefix(c));
    const char *m = cd_ckpt_meta(c, "shard");
    EXPECT(m && !strcmp(m, "one"), "meta");
    /* sorted by name */
    EXPECT(!strcmp(cd_ckpt_at(c, 0)->name, "a.b") && !strcmp(cd_ckpt_at(c, 1)->name, "m") &&
               !strcmp(cd_ckpt_at(c, 2)->name, "z.w"),
           "order");
    EXPECT(cd_ckpt_at(c, 3) == NULL, "at(count)");
    const cd_st_tensor *t = cd_ckpt_find(c, "z.w");
    CHECK(t, "find z.w");
    float v[2];
    memcpy(v, t->data, sizeof v);
    EXPECT(v[0] == 10 && v[1] == -10, "z.w data %g %g", v[0], v[1]);
    EXPECT(cd_ckpt_find(c, "nope") == NULL && cd_ckpt_find(c, NULL) == NULL, "absent");
    cd_ckpt_close(c);

    /* the directory holding it */
    CHECK(cd_ckpt_open(ctx, dir, &c) == CD_OK, "open dir: %s", cd_ctx_error(ctx));
    EXPECT(cd_ckpt_count(c) == 3 && !strcmp(cd_ckpt_file(c, 0), p), "dir form: %s", cd_ckpt_file(c, 0));
    cd_ckpt_close(c);
    cd_ctx_free(ctx);
    cd_ckpt_close(NULL);
    EXPECT(cd_ckpt_count(NULL) == 0 && cd_ckpt_files(NULL) == 0, "NULL checkpoint");
    tmp_rm(dir);
}

/* 3 shards (diffusers naming) + index: one sorted list, data from the right shard. */
static int make_sharded(const char *dir, const char *index_json) {
    char p[256];
    const char *s1[] = {"transformer_blocks.0.attn.to_q.weight", "x_embedder.weight"};
    const char *s2[] = {"transformer_blocks.0.attn.to_k.weight", "a.first"};
    const char *s3[] = {"transformer_blocks.1.attn.to_q.weight"};
    return write_shard(join(p, sizeof p, dir, "m-00001-of-00003.safetensors"), s1, 2, 100, "s1") &&
           write_shard(join(p, sizeof p, dir, "m-00002-of-00003.safetensors"), s2, 2, 200, "s2") &&
           write_shard(join(p, sizeof p, dir, "m-00003-of-00003.safetensors"), s3, 1, 300, "s3") &&
           write_text(join(p, sizeof p, dir, "m.safetensors.index.json"), index_json);
}

static const char k_index[] = "{\"metadata\": {\"total_size\": 40},\n \"weight_map\": {\n"
                              "  \"a.first\": \"m-00002-of-00003.safetensors\",\n"
                              "  \"transformer_blocks.0.attn.to_k.weight\": \"m-00002-of-00003.safetensors\",\n"
                              "  \"transformer_blocks.0.attn.to_q.weight\": \"m-00001-of-00003.safetensors\",\n"
                              "  \"transformer_blocks.1.attn.to_q.weight\": \"m-00003-of-00003.safetensors\",\n"
                              "  \"x_embedder.weight\": \"m-00001-of-00003.safetensors\"}}\n";

TEST(ckpt_sharded_index) {
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    CHECK(make_sharded(dir, k_index), "write shards");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    for (int form = 0; form < 2; form++) { /* the index itself, then its directory */
        cd_ckpt *c;
        const char *path = form ? dir : join(p, sizeof p, dir, "m.safetensors.index.json");
        CHECK(cd_ckpt_open(ctx, path, &c) == CD_OK, "open %s: %s", path, cd_ctx_error(ctx));
        CHECK(cd_ckpt_count(c) == 5, "count %zu", cd_ckpt_count(c));
        CHECK(cd_ckpt_files(c) == 3, "files %zu", cd_ckpt_files(c));
        for (size_t i = 0; i < 3; i++) {
            char want[160];
            snprintf(want, sizeof want, "%s/m-%05zu-of-00003.safetensors", dir, i + 1);
            EXPECT(!strcmp(cd_ckpt_file(c, i), want), "file %zu = %s", i, cd_ckpt_file(c, i));
        }
        for (size_t i = 1; i < 5; i++)
            EXPECT(strcmp(cd_ckpt_at(c, i - 1)->name, cd_ckpt_at(c, i)->name) < 0, "not sorted at %zu", i);
        EXPECT(!strcmp(cd_ckpt_at(c, 0)->name, "a.first"), "first %s", cd_ckpt_at(c, 0)->name);
        static const struct {
            const char *name;
            float v;
        } k[] = {
            {"transformer_blocks.0.attn.to_q.weight", 100}, {"x_embedder.weight", 101},
            {"transformer_blocks.0.attn.to_k.weight", 200}, {"a.first", 201},
            {"transformer_blocks.1.attn.to_q.weight", 300},
        };
        for (int i = 0; i < 5; i++) {
            const cd_st_tensor *t = cd_ckpt_find(c, k[i].name);
            float v[2] = {0, 0};
            EXPECT(t && cd_st_to_f32(ctx, t, v) == CD_OK && v[0] == k[i].v && v[1] == -k[i].v, "%s = %g", k[i].name,
                   v[0]);
        }
        EXPECT(!strcmp(cd_ckpt_prefix(c), ""), "prefix '%s'", cd_ckpt_prefix(c));
        const char *m = cd_ckpt_meta(c, "shard");
        EXPECT(m && !strcmp(m, "s1"), "metadata of the first shard: %s", m ? m : "(null)");
        cd_ckpt_close(c);
    }
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* ---- prefixes --------------------------------------------------------------------------------- */

TEST(ckpt_prefix_stripping) {
    static const struct {
        const char *names[3];
        const char *prefix; /* expected stripped prefix */
    } k[] = {
        {{"model.diffusion_model.img_in.weight", "model.diffusion_model.txt_in.weight",
          "model.diffusion_model.double_blocks.0.img_attn.qkv.weight"},
         "model.diffusion_model."},
        {{"diffusion_model.img_in.weight", "diffusion_model.x", "diffusion_model.y"}, "diffusion_model."},
        {{"model.a", "model.b", "model.c.d"}, "model."},
        {{"transformer.a", "transformer.b", "transformer.c"}, "transformer."},
        {{"first_stage_model.decoder.conv_in.weight", "first_stage_model.encoder.x", "first_stage_model.y"},
         "first_stage_model."},
        /* not every key has it: nothing stripped */
        {{"model.diffusion_model.a", "first_stage_model.b", "model.diffusion_model.c"}, ""},
        {{"model.a", "modelb", "model.c"}, ""},
        /* a key equal to the prefix would become empty: nothing stripped */
        {{"model.a", "model.", "model.c"}, ""},
        /* "model.x" and "model.diffusion_model.y": only "model." is common */
        {{"model.diffusion_model.a", "model.x", "model.diffusion_model.b"}, "model."},
        {{"unet.a", "unet.b", "unet.c"}, ""}, /* unknown prefixes stay */
    };
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        snprintf(p, sizeof p, "%s/p%zu.safetensors", dir, i);
        CHECK(write_shard(p, k[i].names, 3, 0, NULL), "write %zu", i);
        cd_ckpt *c;
        CHECK(cd_ckpt_open(ctx, p, &c) == CD_OK, "open %zu: %s", i, cd_ctx_error(ctx));
        EXPECT(!strcmp(cd_ckpt_prefix(c), k[i].prefix), "case %zu: prefix '%s', want '%s'", i, cd_ckpt_prefix(c),
               k[i].prefix);
        const size_t len = strlen(k[i].prefix);
        for (int j = 0; j < 3; j++) {
            const char *stripped = k[i].names[j] + len;
            const cd_st_tensor *t = cd_ckpt_find(c, stripped);
            EXPECT(t && !strcmp(t->name, stripped), "case %zu: '%s' not found", i, stripped);
            if (len) EXPECT(!cd_ckpt_find(c, k[i].names[j]), "case %zu: prefixed name found", i);
        }
        cd_ckpt_close(c);
    }
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* A ComfyUI-style sharded export: the prefix is common to all shards, so it is stripped, and the
 * index is checked against the full keys. */
TEST(ckpt_prefix_across_shards) {
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    const char *a[] = {"model.diffusion_model.img_in.weight"};
    const char *b[] = {"model.diffusion_model.final_layer.linear.weight"};
    CHECK(write_shard(join(p, sizeof p, dir, "a.safetensors"), a, 1, 1, NULL) &&
              write_shard(join(p, sizeof p, dir, "b.safetensors"), b, 1, 2, NULL) &&
              write_text(join(p, sizeof p, dir, "x.safetensors.index.json"),
                         "{\"weight_map\":{\"model.diffusion_model.img_in.weight\":\"a.safetensors\","
                         "\"model.diffusion_model.final_layer.linear.weight\":\"b.safetensors\"}}"),
          "write");
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_ckpt *c;
    CHECK(cd_ckpt_open(ctx, p, &c) == CD_OK, "open: %s", cd_ctx_error(ctx));
    EXPECT(!strcmp(cd_ckpt_prefix(c), "model.diffusion_model."), "prefix '%s'", cd_ckpt_prefix(c));
    EXPECT(cd_ckpt_find(c, "img_in.weight") && cd_ckpt_find(c, "final_layer.linear.weight"), "stripped names");
    cd_ckpt_close(c);
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* ---- directories --------------------------------------------------------------------------- */

TEST(ckpt_directory_forms) {
    char dir[64], d[160], p[256], q[256];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    const char *names[] = {"w"};
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    cd_ckpt *c;

    /* empty directory */
    join(d, sizeof d, dir, "empty");
    CHECK(mkdir(d, 0755) == 0, "mkdir");
    EXPECT_CKPT_BAD(d, CD_ERR_NOT_FOUND, d, "no .safetensors file or *.safetensors.index.json here");

    /* diffusers pipeline root: only subdirectories hold models */
    join(d, sizeof d, dir, "pipe");
    CHECK(mkdir(d, 0755) == 0 && mkdir(join(p, sizeof p, d, "transformer"), 0755) == 0 &&
              mkdir(join(p, sizeof p, d, "vae"), 0755) == 0 && mkdir(join(p, sizeof p, d, "text_encoder"), 0755) == 0,
          "mkdir pipe");
    CHECK(write_text(join(p, sizeof p, d, "model_index.json"), "{}"), "model_index.json");
    EXPECT_CKPT_BAD(d, CD_ERR_NOT_FOUND, "diffusers pipeline", "transformer/ subdirectory", "vae/ subdirectory");
    CHECK(write_shard(join(p, sizeof p, d, "transformer/diffusion_pytorch_model.safetensors"), names, 1, 0, NULL),
          "write transformer");
    CHECK(cd_ckpt_open(ctx, join(p, sizeof p, d, "transformer"), &c) == CD_OK, "transformer: %s", cd_ctx_error(ctx));
    cd_ckpt_close(c);
    join(d, sizeof d, dir, "vaeonly");
    CHECK(mkdir(d, 0755) == 0 && mkdir(join(p, sizeof p, d, "vae"), 0755) == 0, "mkdir");
    cd_status s = cd_ckpt_open(ctx, d, &c);
    EXPECT(s == CD_ERR_NOT_FOUND && strstr(cd_ctx_error(ctx), "vae/") && !strstr(cd_ctx_error(ctx), "transformer"),
           "vae only: %s", cd_ctx_error(ctx));

    /* several candidates: listed, sorted */
    join(d, sizeof d, dir, "two");
    CHECK(mkdir(d, 0755) == 0, "mkdir");
    CHECK(write_shard(join(p, sizeof p, d, "b.safetensors"), names, 1, 0, NULL) &&
              write_shard(join(p, sizeof p, d, "a.safetensors"), names, 1, 0, NULL),
          "write");
    EXPECT_CKPT_BAD(d, CD_ERR_INVALID_ARG, d, "several .safetensors files", "(a.safetensors, b.safetensors)",
                    "pass one of them");
    CHECK(write_text(join(p, sizeof p, d, "x.safetensors.index.json"), "{}") &&
              write_text(join(p, sizeof p, d, "y.safetensors.index.json"), "{}"),
          "write");
    EXPECT_CKPT_BAD(d, CD_ERR_INVALID_ARG, "several checkpoint indexes",
                    "(x.safetensors.index.json, y.safetensors.index.json)");

    /* one index next to its shards (and stray files): the index wins; hidden files are ignored */
    join(d, sizeof d, dir, "sharded");
    CHECK(mkdir(d, 0755) == 0 && make_sharded(d, k_index), "sharded");
    CHECK(write_text(join(p, sizeof p, d, ".hidden.safetensors.index.json"), "junk") &&
              write_text(join(p, sizeof p, d, "README.md"), "hi"),
          "extras");
    CHECK(cd_ckpt_open(ctx, d, &c) == CD_OK, "sharded dir: %s", cd_ctx_error(ctx));
    EXPECT(cd_ckpt_files(c) == 3 && cd_ckpt_count(c) == 5, "sharded dir content");
    cd_ckpt_close(c);

    /* a symlinked file counts (the Hugging Face cache links snapshots to blobs) */
    join(d, sizeof d, dir, "linked");
    CHECK(mkdir(d, 0755) == 0, "mkdir");
    CHECK(write_shard(join(q, sizeof q, dir, "blob"), names, 1, 7, NULL), "blob");
    CHECK(symlink(q, join(p, sizeof p, d, "model.safetensors")) == 0, "symlink");
    CHECK(cd_ckpt_open(ctx, d, &c) == CD_OK, "linked: %s", cd_ctx_error(ctx));
    EXPECT(cd_ckpt_count(c) == 1, "linked count");
    cd_ckpt_close(c);

    /* not there at all */
    join(d, sizeof d, dir, "missing");
    EXPECT_CKPT_BAD(d, CD_ERR_NOT_FOUND, d, "cannot open");
    EXPECT(cd_ckpt_open(ctx, "", &c) == CD_ERR_INVALID_ARG && c == NULL, "empty path");
    EXPECT(cd_ckpt_open(ctx, NULL, &c) == CD_ERR_INVALID_ARG, "NULL path");
    EXPECT(cd_ckpt_open(ctx, dir, NULL) == CD_ERR_INVALID_ARG, "NULL out");
    cd_ctx_free(ctx);
    tmp_rm(dir);
}

/* ---- index errors ---------------------------------------------------------------------------- */

/* Three shards A (x, y), B (z), C (w); each case writes its own index text. */
TEST(ckpt_index_errors) {
    char dir[64], p[256], q[64];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    const char *sa[] = {"x", "y"}, *sb[] = {"z"}, *sc[] = {"x"};
    CHECK(write_shard(join(p, sizeof p, dir, "A.safetensors"), sa, 2, 0, NULL) &&
              write_shard(join(p, sizeof p, dir, "B.safetensors"), sb, 1, 0, NULL) &&
              write_shard(join(p, sizeof p, dir, "C.safetensors"), sc, 1, 0, NULL),
          "shards");
    CHECK(write_text(join(p, sizeof p, dir, "T.safetensors"), "not a safetensors file at all"), "bad shard");
    static const struct {
        const char *index;
        cd_status s;
        const char *kw;
    } k[] = {
        {"{\"weight_map\":{\"x\":\"B.safetensors\",\"y\":\"A.safetensors\",\"z\":\"B.safetensors\"}}", CD_ERR_FORMAT,
         "index says 'x' is in shard 'B.safetensors' but it is in shard 'A.safetensors'"},
        {"{\"weight_map\":{\"x\":\"A.safetensors\",\"y\":\"A.safetensors\",\"q\":\"B.safetensors\","
         "\"z\":\"B.safetensors\"}}",
         CD_ERR_FORMAT, "index says 'q' is in shard 'B.safetensors' but it is not in any shard"},
        {"{\"weight_map\":{\"x\":\"A.safetensors\",\"z\":\"B.safetensors\"}}", CD_ERR_FORMAT,
         "shard 'A.safetensors' holds tensor 'y' that the index's weight_map does not list"},
        {"{\"weight_map\":{\"x\":\"A.safetensors\",\"y\":\"A.safetensors\",\"w\":\"C.safetensors\"}}", CD_ERR_FORMAT,
         "tensor 'x' is in two shards: 'A.safetensors' and 'C.safetensors'"},
        {"{\"weight_map\":{\"x\":\"A.safetensors\",\"v\":\"D.safetensors\"}}", CD_ERR_NOT_FOUND,
         "shard 'D.safetensors' listed in the weight_map cannot be opened"},
        {"{\"weight_map\":{\"x\":\"T.safetensors\"}}", CD_ERR_FORMAT, "bad shard: "},
        {"{\"weight_map\":{\"x\":\"../A.safetensors\"}}", CD_ERR_FORMAT,
         "weight_map shard '../A.safetensors' of 'x' is not a relative path"},
        {"{\"weight_map\":{\"x\":\"/tmp/A.safetensors\"}}", CD_ERR_FORMAT,
         "is not a relative path inside the index's directory"},
        {"{\"weight_map\":{\"x\":\"pytorch_model-00001-of-00002.bin\"}}", CD_ERR_UNSUPPORTED,
         "is not a .safetensors file"},
        {"{\"weight_map\":{\"x\":3}}", CD_ERR_FORMAT, "weight_map value of 'x' is not a string"},
        {"{\"weight_map\":{}}", CD_ERR_FORMAT, "index 'weight_map' is empty"},
        {"{\"weight_map\":[\"A.safetensors\"]}", CD_ERR_FORMAT, "index 'weight_map' is not an object"},
        {"{\"metadata\":{}}", CD_ERR_FORMAT, "index has no 'weight_map'"},
        {"{\"metadata\":[],\"weight_map\":{\"x\":\"A.safetensors\"}}", CD_ERR_FORMAT,
         "index 'metadata' is not an object"},
        {"[1]", CD_ERR_FORMAT, "index is not a JSON object"},
        {"{\"weight_map\":{\"x\":\"A.safetensors\",", CD_ERR_FORMAT, "index is not valid JSON"},
        {"{\"weight_map\":{\"x\":\"A.safetensors\",\"x\":\"A.safetensors\"}}", CD_ERR_FORMAT,
         "duplicate key \"x\" in the index"},
        {"{\"weight_map\":{\"x\xff\":\"A.safetensors\"}}", CD_ERR_FORMAT, "index is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        snprintf(q, sizeof q, "case%02zu.safetensors.index.json", i);
        CHECK(write_text(join(p, sizeof p, dir, q), k[i].index), "write %zu", i);
        expect_ckpt_error(p, k[i].s, (const char *const[]){p, k[i].kw, NULL}, __LINE__);
        if (test_failed()) {
            test_fail(__FILE__, __LINE__, "(case %zu)", i);
            break;
        }
    }
    /* the bad shard's own message is kept: it names the shard file and its reason */
    {
        cd_ctx *ctx;
        CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
        cd_ckpt *c;
        snprintf(q, sizeof q, "case%02d.safetensors.index.json", 5);
        EXPECT(cd_ckpt_open(ctx, join(p, sizeof p, dir, q), &c) == CD_ERR_FORMAT &&
                   strstr(cd_ctx_error(ctx), "/T.safetensors: header length"),
               "bad shard: %s", cd_ctx_error(ctx));
        cd_ctx_free(ctx);
    }
    tmp_rm(dir);
}

/* ---- no data read: a sparse multi-GB checkpoint ------------------------------------------- */

/* Writes a header describing n BF16 [rows, cols] tensors named like FLUX's BFL layout and
 * extends the file (ftruncate) to its full size without writing data: a sparse file. Returns
 * the file size, 0 on failure. */
static uint64_t write_sparse_ckpt(const char *path, int n, int64_t rows, int64_t cols) {
    const uint64_t nb = (uint64_t)rows * (uint64_t)cols * 2;
    size_t cap = (size_t)n * 160 + 64, len = 0;
    char *h = malloc(cap);
    if (!h) return 0;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(h + len, cap - len,
                                ",\"model.diffusion_model.double_blocks.%d.img_mlp.%d.weight\":"
                                "{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                i / 2, i % 2, (long long)rows, (long long)cols, (unsigned long long)(nb * (uint64_t)i),
                                (unsigned long long)(nb * (uint64_t)(i + 1)));
    len += (size_t)snprintf(h + len, cap - len, "}");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint64_t size = 8 + len + nb * (uint64_t)n;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fd >= 0 && write(fd, len8, 8) == 8 && write(fd, h, len) == (ssize_t)len && ftruncate(fd, (off_t)size) == 0;
    if (fd >= 0) ok = close(fd) == 0 && ok;
    free(h);
    return ok ? size : 0;
}

TEST(ckpt_open_reads_no_tensor_data) {
    char dir[64], p[160];
    CHECK(tmp_dir(dir, sizeof dir), "mkdtemp");
    join(p, sizeof p, dir, "big.safetensors");
    /* 76 tensors of [9216, 3072] BF16 (FLUX's double-block MLP shape): 4.3 GB */
    const uint64_t size = write_sparse_ckpt(p, 76, 9216, 3072);
    CHECK(size > (4ull << 30), "cannot create the sparse file %s", p);
    struct stat st;
    CHECK(stat(p, &st) == 0, "stat");
    EXPECT((uint64_t)st.st_blocks * 512 < (16u << 20),
           "test premise: the file is not sparse "
           "(%llu bytes allocated)",
           (unsigned long long)st.st_blocks * 512);
    cd_ctx *ctx;
    CHECK(cd_ctx_create(NULL, &ctx) == CD_OK, "ctx");
    const uint64_t rss0 = rss_bytes();
    cd_ckpt *c;
    cd_status s = cd_ckpt_open(ctx, p, &c);
    const uint64_t rss1 = rss_bytes();
    EXPECT(s == CD_OK, "open: %s", cd_ctx_error(ctx));
    if (s == CD_OK) {
        EXPECT(cd_ckpt_count(c) == 76, "count %zu", cd_ckpt_count(c));
        EXPECT(!strcmp(cd_ckpt_prefix(c), "model.diffusion_model."), "prefix");
        uint64_t total = 0;
        for (size_t i = 0; i < cd_ckpt_count(c); i++) total += cd_ckpt_at(c, i)->nbytes;
        EXPECT(total == 76ull * 9216 * 3072 * 2, "bytes %llu", (unsigned long long)total);
        const cd_st_tensor *last = cd_ckpt_find(c, "double_blocks.37.img_mlp.1.weight");
        EXPECT(last && last->nbytes == 9216ull * 3072 * 2, "last tensor");
        cd_ckpt_close(c);
    }
    cd_ctx_free(ctx);
    /* The header is ~9 KB; everything else would be tensor data pulled in by the open. */
    EXPECT(rss0 && rss1 >= rss0 ? rss1 - rss0 < (4u << 20) : 1, "opening a 4.3 GB checkpoint grew RSS by %llu KB",
           (unsigned long long)(rss1 - rss0) >> 10);
    tmp_rm(dir);
}
