/* test_isa_env.c — CLEARDIT_ISA, the one switch that forces every CPU kernel choice
 * (src/util/context.c): it caps the ISA contexts pick and report as supported, turns the
 * AVX512_BF16 kernels off below "avx512bf16", and a bad value is refused with a message (library)
 * and exit status 2 (CLI). CI runs the whole suite under CLEARDIT_ISA=avx2 and =generic. */
#include "cleardit.h"
#include "test.h"
#include "test_spawn.h"

#include <stdlib.h>
#include <string.h>

/* Sets CLEARDIT_ISA (NULL: unset) and returns the previous value (a copy, or NULL). */
static char *swap_env(const char *v) {
    const char *old = getenv("CLEARDIT_ISA");
    char *copy = old ? strdup(old) : NULL;
    if (v)
        setenv("CLEARDIT_ISA", v, 1);
    else
        unsetenv("CLEARDIT_ISA");
    return copy;
}

static void restore_env(char *old) {
    if (old)
        setenv("CLEARDIT_ISA", old, 1);
    else
        unsetenv("CLEARDIT_ISA");
    free(old);
}

/* The hardware's own answer (the cap lifted). */
static int hw_has(cd_isa isa) {
    char *old = swap_env(NULL);
    const int r = cd_isa_supported(isa);
    restore_env(old);
    return r;
}

TEST(isa_env_caps_contexts) {
    static const struct {
        const char *env;
        cd_isa want;
    } rows[] = {
        {"generic", CD_ISA_GENERIC}, {"avx2", CD_ISA_AVX2}, {"avx512", CD_ISA_AVX512}, {"avx512bf16", CD_ISA_AVX512}};
    int ran = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const int hw = hw_has(rows[i].want);
        char *old = swap_env(rows[i].env);
        cd_ctx *ctx = NULL;
        const cd_status s = cd_ctx_create(NULL, &ctx);
        if (hw && (strcmp(rows[i].env, "avx512bf16") || cd_isa_env_error() == NULL)) {
            EXPECT(s == CD_OK && ctx, "CLEARDIT_ISA=%s: context not created (%d)", rows[i].env, (int)s);
            if (ctx) {
                ran++;
                EXPECT(cd_ctx_isa(ctx) == rows[i].want, "CLEARDIT_ISA=%s: context runs %s", rows[i].env,
                       cd_isa_name(cd_ctx_isa(ctx)));
                EXPECT(cd_ctx_bf16(ctx) == !strcmp(rows[i].env, "avx512bf16"),
                       "CLEARDIT_ISA=%s: AVX512_BF16 kernels %s", rows[i].env, cd_ctx_bf16(ctx) ? "on" : "off");
                for (int k = CD_ISA_GENERIC; k < CD_ISA_COUNT; k++)
                    EXPECT(cd_isa_supported((cd_isa)k) == (k <= (int)rows[i].want && hw_has((cd_isa)k)),
                           "CLEARDIT_ISA=%s: %s reported %s", rows[i].env, cd_isa_name((cd_isa)k),
                           cd_isa_supported((cd_isa)k) ? "supported" : "unsupported");
                /* an explicit request above the cap is refused as on a CPU without it */
                if (rows[i].want < CD_ISA_AVX512) {
                    cd_ctx *c2 = NULL;
                    cd_ctx_params p = {1, (cd_isa)(rows[i].want + 1)};
                    EXPECT(cd_ctx_create(&p, &c2) == CD_ERR_UNSUPPORTED && !c2,
                           "CLEARDIT_ISA=%s: a context for %s was created", rows[i].env, cd_isa_name(p.isa));
                    cd_ctx_free(c2);
                }
            }
        } else {
            /* this CPU lacks the path: refused with a reason, never silently another path */
            EXPECT(s != CD_OK && !ctx && cd_isa_env_error(), "CLEARDIT_ISA=%s on a CPU without it: %d", rows[i].env,
                   (int)s);
        }
        cd_ctx_free(ctx);
        restore_env(old);
    }
    EXPECT(ran >= 1, "no CLEARDIT_ISA value could be tested");
}

TEST(isa_env_bad_value) {
    char *old = swap_env("sse9");
    cd_ctx *ctx = NULL;
    EXPECT(cd_ctx_create(NULL, &ctx) == CD_ERR_INVALID_ARG && !ctx, "CLEARDIT_ISA=sse9 made a context");
    EXPECT(cd_isa_env_error() && strstr(cd_isa_env_error(), "avx2"), "no reason for CLEARDIT_ISA=sse9");
    cli_run r;
    RUN(&r, "flops");
    EXPECT(r.code == 2 && strstr(r.err, "CLEARDIT_ISA") && strstr(r.err, "sse9"),
           "cleardit with CLEARDIT_ISA=sse9: exit %d: %s", r.code, r.err);
    cd_ctx_free(ctx);
    restore_env(old);
    /* the CLI reports the path it runs */
    old = swap_env("generic");
    RUN(&r, "bench", "attention", "--grid", "8x8", "--text-len", "4", "--radius", "2", "--heads", "1", "--head-dim",
        "32", "--repeat", "1");
    EXPECT(r.code == 0 && strstr(r.out, "generic path"), "bench attention under CLEARDIT_ISA=generic: exit %d: %s%s",
           r.code, r.out, r.err);
    restore_env(old);
}
