/* test.h — the tiny test framework: TEST(name) registers a test; CHECK fails it with a message.
 * One runner (tests/test_main.c) runs every registered test and ends with "N passed, N failed". */
#ifndef CD_TEST_H
#define CD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
/* Records a failure of the running test (first message kept, all counted). */
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int test_failed(void); /* 1 once the running test has failed */

#define TEST(name)                                                                                      \
    static void name(void);                                                                             \
    __attribute__((constructor)) static void reg_##name(void) { test_register(#name, __FILE__, name); } \
    static void name(void)

/* CHECK(cond, fmt, ...) — on false: record and return from the test function. */
#define CHECK(cond, ...)                                \
    do {                                                \
        if (!(cond)) {                                  \
            test_fail(__FILE__, __LINE__, __VA_ARGS__); \
            return;                                     \
        }                                               \
    } while (0)

/* EXPECT(cond, fmt, ...) — on false: record and continue. */
#define EXPECT(cond, ...)                                        \
    do {                                                         \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

/* Deterministic random numbers for test inputs (xorshift64*), never all zeros. */
typedef struct {
    unsigned long long s;
} test_rng;
static inline test_rng test_rng_seed(unsigned long long seed) {
    test_rng r = {seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull};
    return r;
}
static inline unsigned long long test_rng_u64(test_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}
/* uniform in [-1, 1) */
static inline float test_rng_f(test_rng *r) {
    return (float)((double)(test_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* n values amp * uniform[-1, 1) from seed, malloc'd (NULL on OOM; the caller frees). */
static inline float *test_rand_floats(size_t n, float amp, unsigned long long seed) {
    float *p = (float *)malloc(n * sizeof(float) + 4);
    test_rng g = test_rng_seed(seed);
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = amp * test_rng_f(&g);
    return p;
}

/* ||got - want|| / ||want|| in double (||want|| = 0: the absolute norm); infinite when got holds a
 * NaN or an infinity, so a poisoned or overflowed output never passes a tolerance. */
static inline double test_rel_l2(const float *got, const float *want, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        const double d = (double)got[i] - (double)want[i];
        e += d * d;
        r += (double)want[i] * want[i];
    }
    return sqrt(e / (r > 0 ? r : 1));
}

#endif
