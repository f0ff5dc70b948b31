/* test_main.c — runs every registered test (or those whose name contains an argument) and prints
 * "N passed, N failed" last; exits non-zero if any failed. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TESTS 1024
typedef struct {
    const char *name, *file;
    test_fn fn;
} test_entry;
static test_entry g_tests[MAX_TESTS];
static int g_ntests;
static int g_cur_failed;
static char g_cur_msg[1024];

void test_register(const char *name, const char *file, test_fn fn) {
    if (g_ntests < MAX_TESTS) {
        g_tests[g_ntests].name = name;
        g_tests[g_ntests].file = file;
        g_tests[g_ntests].fn = fn;
        g_ntests++;
    }
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    if (!g_cur_failed) {
        int n = snprintf(g_cur_msg, sizeof g_cur_msg, "%s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < sizeof g_cur_msg) vsnprintf(g_cur_msg + n, sizeof g_cur_msg - n, fmt, ap);
        va_end(ap);
    }
    g_cur_failed++;
}

int test_failed(void) { return g_cur_failed != 0; }

static int cmp_test(const void *a, const void *b) {
    const test_entry *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv) {
    qsort(g_tests, (size_t)g_ntests, sizeof g_tests[0], cmp_test);
    int passed = 0, failed = 0;
    for (int i = 0; i < g_ntests; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(g_tests[i].name, argv[a])) want = 1;
        if (!want) continue;
        g_cur_failed = 0;
        g_cur_msg[0] = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        g_tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (g_cur_failed) {
            failed++;
            printf("FAIL %-40s %s (%d check(s) failed)\n", g_tests[i].name, g_cur_msg, g_cur_failed);
        } else {
            passed++;
            printf("ok   %-40s %8.1f ms\n", g_tests[i].name, ms);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
