/* ae_tiled.c — time and peak memory of one FLUX autoencoder decode, tiled (cd_ae_decode_tiled)
 * or not (cd_ae_decode), with a random decoder: evidence that tiling bounds the memory.
 *
 *   make && make build/obj/bench/ae_tiled.o build/obj/tests/ckpt_gen.o
 *   cc -fopenmp -o build/bench_ae_tiled build/obj/bench/ae_tiled.o build/obj/tests/ckpt_gen.o \
 *      build/libcleardit.a -ljansson -lpng -L/usr/lib/x86_64-linux-gnu/openblas-openmp \
 *      -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lm
 *   build/bench_ae_tiled [--ch 16] [--mult 1,2,4,4] [--nrb 2] [--groups 8] [--threads 2] SIZE TILE
 *
 * SIZE: image side in pixels (the latent is SIZE/8 square, 16 channels, uniform [-1, 1)); TILE:
 * tile side in pixels, 0 = untiled; overlap 0.25. One decode per process, so that the peak is
 * this decode's: a forked child writes a random BFL checkpoint (tests/ckpt_gen.c, uniform [-1, 1)
 * weights) under $TMPDIR (default /tmp), the parent loads it (deleted at once), resets the
 * resident high-water mark (/proc/self/clear_refs 5), decodes, and prints the wall time, the
 * decode's peak RSS (VmHWM after the reset), the process peak (getrusage ru_maxrss, what
 * /usr/bin/time -v reports) and the memory the code should need: output + latent + the tile's
 * run scratch (cd_ae_decode_scratch: 3 activation buffers + the mid attention's q, k, v, o) + the
 * tile and strips + the f32 weights (an upper bound: not every activation buffer is filled at
 * full width); the convolutions' im2col band (at most 64 MB) is the context's work area, not
 * counted.
 * Not a test: tests do not time things. */
#include "cleardit.h"
#include "../src/model/ae.h"
#include "../tests/ckpt_gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* VmHWM of this process in bytes (0 if unreadable). */
static double hwm_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb * 1024;
}

static int reset_hwm(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    const int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_ae_tiled [--ch N] [--mult a,b,..] [--nrb N] [--groups G] "
                    "[--threads T] SIZE TILE\n");
    exit(2);
}

int main(int argc, char **argv) {
    gen_ae_cfg c = {
        .in = 3, .out = 3, .ch = 16, .mult = {1, 2, 4, 4}, .n_mult = 4, .nrb = 2, .z = 16, .enc = 0, .dec = 1};
    int groups = 8, threads = 2, pos[2], npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ch") && i + 1 < argc)
            c.ch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--nrb") && i + 1 < argc)
            c.nrb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--groups") && i + 1 < argc)
            groups = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mult") && i + 1 < argc) {
            c.n_mult = 0;
            for (char *q = strtok(argv[++i], ","); q && c.n_mult < 8; q = strtok(NULL, ","))
                c.mult[c.n_mult++] = atoi(q);
        } else if (argv[i][0] != '-' && npos < 2)
            pos[npos++] = atoi(argv[i]);
        else
            usage();
    }
    if (npos != 2 || c.n_mult < 1) usage();
    const int size = pos[0], tile = pos[1], up = 1 << (c.n_mult - 1);
    if (size < up || size % up) usage();
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/bench_ae_tiled_%d.safetensors", tmp, (int)getpid());
    const pid_t child = fork(); /* the generator's memory stays out of this process's peak */
    if (child == 0) {
        gen_list l;
        gen_init(&l, 7);
        gen_ae_bfl(&l, &c);
        _exit(gen_write(&l, path) ? 1 : 0);
    }
    int st = 0;
    if (child < 0 || waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "could not write %s\n", path);
        return 1;
    }
    cd_ctx_params p = cd_ctx_params_default();
    p.threads = threads;
    cd_ctx *ctx = NULL;
    cd_ae_decoder *ae = NULL;
    if (cd_ctx_create(&p, &ctx) || cd_ae_decoder_load(ctx, path, groups, &ae)) {
        fprintf(stderr, "load: %s\n", ctx ? cd_ctx_error(ctx) : "context");
        unlink(path);
        return 1;
    }
    unlink(path);
    const int h = size / up;
    const size_t nz = (size_t)c.z * h * h, nout = (size_t)c.out * size * size;
    float *z = malloc(nz * sizeof(float)), *out = malloc(nout * sizeof(float));
    if (!z || !out) return 1;
    unsigned long long s = 12345;
    for (size_t i = 0; i < nz; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        z[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
    /* what the code should need: out + z + scratch (+ the tile, its latent and strips) */
    const int L = tile ? tile / up : h, th = L < h ? L : h;
    const cd_ae_scratch sc = cd_ae_decode_scratch(ae, th, th);
    double need = (double)(nout + nz + cd_ae_scratch_floats(sc) + ae->arena_floats) * 4;
    if (tile && h > L) {
        const int be = tile / 4, T = tile, ncol = (size + T - be - 1) / (T - be);
        need += 4.0 *
                ((double)c.out * T * T + (double)c.z * L * L + (double)ncol * c.out * be * T + (double)c.out * T * be);
    }
    const double base = hwm_bytes();
    const int reset = reset_hwm();
    const double t0 = now_s();
    const cd_ae_tiling t = {tile, 0.25f};
    const cd_status r = cd_ae_decode_tiled(ctx, ae, z, h, h, &t, out);
    const double dt = now_s() - t0;
    const double peak = hwm_bytes();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (r) {
        fprintf(stderr, "decode: %s\n", cd_ctx_error(ctx));
        return 1;
    }
    double sum = 0;
    size_t bad = 0;
    for (size_t i = 0; i < nout; i++) {
        if (!isfinite(out[i])) bad++;
        sum += fabs(out[i]);
    }
    const double MiB = 1024.0 * 1024.0;
    printf("ch %d mult", c.ch);
    for (int i = 0; i < c.n_mult; i++) printf("%s%d", i ? "," : " ", c.mult[i]);
    printf(" nrb %d, %dx%d %s", c.nrb, size, size, tile ? "tile " : "untiled");
    if (tile) printf("%d", tile);
    printf(", %d threads: %.1f s, decode peak RSS %.0f MiB%s (before: %.0f), process peak %.0f MiB, "
           "expected %.0f MiB (weights %.0f MiB, scratch %.0f MiB); mean |out| %.4g, non-finite %zu\n",
           threads, dt, peak / MiB, reset ? "" : " (no reset: process peak)", base / MiB, (double)ru.ru_maxrss / 1024.0,
           need / MiB, (double)ae->arena_floats * 4 / MiB, (double)cd_ae_scratch_floats(sc) * 4 / MiB,
           sum / (double)nout, bad);
    free(z);
    free(out);
    cd_ae_decoder_free(ae);
    cd_ctx_free(ctx);
    return bad ? 1 : 0;
}
