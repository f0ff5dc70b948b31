/* examples/generate.c — an image from a prompt through the public API alone (include/cleardit.h):
 * the model embedded in the library (28x28 Fashion-MNIST, pixel space), one of its built-in
 * prompts, a seed, written as a PNG by the library's writer. Pixel for pixel the same image as
 * `cleardit generate --prompt PROMPT --seed SEED --steps STEPS -o OUT.png`.
 *
 *   usage: example_generate OUT.png [PROMPT [SEED [STEPS]]]   (default: sneaker 0, the model's steps)
 */
#include "cleardit.h"

#include <stdio.h>
#include <stdlib.h>

static int on_step(void *user, int step, int steps, double elapsed_s) {
    (void)user;
    if (step <= steps) fprintf(stderr, "step %d/%d, %.2f s\n", step, steps, elapsed_s);
    return 0; /* nonzero would cancel */
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: %s OUT.png [PROMPT [SEED [STEPS]]]\n", argv[0]);
        return 2;
    }
    cd_ctx_params cp = cd_ctx_params_default();
    cd_ctx *ctx = NULL;
    if (cd_ctx_create(&cp, &ctx) != CD_OK) return 1;
    cd_pipeline_params pp = cd_pipeline_params_default(); /* the embedded model on the CPU */
    cd_pipeline *pl = NULL;
    uint8_t *rgb = NULL;
    int rc = 1;
    if (cd_pipeline_open(ctx, &pp, &pl) != CD_OK) goto done;
    cd_gen_params gp = cd_gen_params_default();
    gp.prompt = argc > 2 ? argv[2] : "sneaker";
    gp.seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
    gp.steps = argc > 4 ? atoi(argv[4]) : 0;
    gp.progress = on_step;
    cd_pipeline_resolve(pl, &gp); /* width and height: the model's native size */
    if (cd_pipeline_check(ctx, pl, &gp) != CD_OK) goto done;
    rgb = malloc((size_t)gp.width * (size_t)gp.height * 3); /* [height, width, 3] */
    if (!rgb || cd_pipeline_generate(ctx, pl, &gp, rgb) != CD_OK ||
        cd_png_write(ctx, argv[1], rgb, (uint32_t)gp.width, (uint32_t)gp.height, NULL, 0) != CD_OK)
        goto done;
    printf("%s: '%s', seed %llu, %d steps, %dx%d\n", argv[1], gp.prompt, (unsigned long long)gp.seed, (int)gp.steps,
           (int)gp.width, (int)gp.height);
    rc = 0;
done:
    if (rc) fprintf(stderr, "example_generate: %s\n", *cd_ctx_error(ctx) ? cd_ctx_error(ctx) : "out of memory");
    free(rgb);
    cd_pipeline_free(pl);
    cd_ctx_free(ctx);
    return rc;
}
