/* test_pipeline.c — the public pipeline (include/cleardit.h): examples/generate.c, built by
 * `make` beside the CLI, exits 0 and makes exactly `cleardit generate`'s pixels for the same
 * prompt, seed and steps; in process, the embedded model's prompt table and defaults, the
 * progress callback (steps counted, cancel stops with CD_ERR_CANCELLED) and bad requests. */
#include "test.h"
#include "cleardit.h"
#include "test_spawn.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(pipeline_example_matches_cli) {
    char dir[] = "/tmp/cdexXXXXXX", bin[4096], a[96], b[96];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(bin, sizeof bin, "%s", cli_bin());
    char *d = dirname(bin);
    char ex[4200];
    snprintf(ex, sizeof ex, "%s/example_generate", d);
    snprintf(a, sizeof a, "%s/example.png", dir);
    snprintf(b, sizeof b, "%s/cli.png", dir);
    CHECK(access(ex, X_OK) == 0, "%s is not built (make builds it)", ex);
    cli_run r;
    const char *const argv[] = {ex, a, "Bag", "7", "4", NULL};
    CHECK(run_argv(argv, &r), "cannot run %s", ex);
    EXPECT(r.code == 0, "example: exit %d: %s", r.code, r.err);
    RUN(&r, "generate", "--prompt", "Bag", "--seed", "7", "--steps", "4", "--quiet", "-o", b);
    EXPECT(r.code == 0, "generate: exit %d: %s", r.code, r.err);
    uint8_t *x = NULL, *y = NULL;
    uint32_t w = 0, h = 0, w2 = 0, h2 = 0;
    EXPECT(cd_png_read(NULL, a, &x, &w, &h) == CD_OK && cd_png_read(NULL, b, &y, &w2, &h2) == CD_OK, "PNGs");
    EXPECT(x && y && w == 28 && h == 28 && w2 == w && h2 == h && !memcmp(x, y, (size_t)w * h * 3),
           "the example's image (%ux%u) differs from the CLI's (%ux%u)", w, h, w2, h2);
    free(x);
    free(y);
    unlink(a);
    unlink(b);
    rmdir(dir);
}

typedef struct {
    int calls, last_step, steps, stop_at;
} counter;

static int count_steps(void *user, int step, int steps, double el) {
    counter *c = user;
    c->calls++;
    c->last_step = step;
    c->steps = steps;
    return c->stop_at && step >= c->stop_at;
}

TEST(pipeline_api) {
    if (!cd_embedded_available(CD_EMBEDDED_MODEL)) {
        EXPECT(0, "this build has no embedded model (models/fmnist.safetensors)");
        return;
    }
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 2;
    cd_ctx *ctx = NULL;
    CHECK(cd_ctx_create(&cp, &ctx) == CD_OK, "context");
    cd_pipeline_params pp = cd_pipeline_params_default();
    cd_pipeline *pl = NULL;
    CHECK(cd_pipeline_open(ctx, &pp, &pl) == CD_OK, "open: %s", cd_ctx_error(ctx));
    int32_t w = 0, h = 0;
    EXPECT(cd_pipeline_native_size(pl, &w, &h) == 1 && w == 28 && h == 28, "native size %dx%d", (int)w, (int)h);
    EXPECT(cd_pipeline_default_steps(pl) == 32, "default steps %d", (int)cd_pipeline_default_steps(pl));
    EXPECT(!cd_pipeline_has_ae(pl), "a pixel-space model has no autoencoder");
    char name[32];
    EXPECT(cd_pipeline_prompt_count(pl) == 10, "%d prompts", cd_pipeline_prompt_count(pl));
    EXPECT(cd_pipeline_prompt_name(pl, 9, name, sizeof name) == 10 && !strcmp(name, "ankle boot"), "'%s'", name);
    EXPECT(cd_pipeline_prompt_name(pl, 10, name, sizeof name) == -1, "entry 10");
    EXPECT(cd_pipeline_prompt_find(pl, "SNEAKER") == 7 && cd_pipeline_prompt_find(pl, "hat") == -1, "find");
    cd_gen_params gp = cd_gen_params_default();
    gp.prompt = "hat";
    EXPECT(cd_pipeline_check(ctx, pl, &gp) == CD_ERR_INVALID_ARG && strstr(cd_ctx_error(ctx), "unknown prompt"),
           "unknown prompt: %s", cd_ctx_error(ctx));
    gp.prompt = "coat";
    gp.width = 29; /* pixel-space: even sides */
    EXPECT(cd_pipeline_check(ctx, pl, &gp) == CD_ERR_INVALID_ARG, "odd width accepted");
    gp.width = 0;
    gp.steps = 3;
    counter c = {0, 0, 0, 0};
    gp.progress = count_steps;
    gp.user = &c;
    uint8_t a[28 * 28 * 3], b[28 * 28 * 3];
    EXPECT(cd_pipeline_generate(ctx, pl, &gp, a) == CD_OK, "generate: %s", cd_ctx_error(ctx));
    EXPECT(c.calls == 4 && c.last_step == 4 && c.steps == 3, "progress: %d calls, last %d of %d", c.calls, c.last_step,
           c.steps);
    gp.prompt = NULL;
    gp.prompt_index = 4; /* coat by index: the same conditioning */
    gp.progress = NULL;
    EXPECT(cd_pipeline_generate(ctx, pl, &gp, b) == CD_OK && !memcmp(a, b, sizeof a), "by index differs");
    int nonzero = 0;
    for (size_t i = 0; i < sizeof a; i++) nonzero |= a[i] != a[0];
    EXPECT(nonzero, "a flat image");
    c = (counter){0, 0, 0, 2};
    gp.progress = count_steps;
    EXPECT(cd_pipeline_generate(ctx, pl, &gp, b) == CD_ERR_CANCELLED && c.calls == 2, "cancel: %d calls (%s)", c.calls,
           cd_ctx_error(ctx));
    cd_pipeline_free(pl);
    cd_ctx_free(ctx);
}
