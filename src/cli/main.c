/* main.c — TEMPORARY dispatcher (replaced by the CLI helper). */
#include <stdio.h>
#include <string.h>
#include "cli.h"
int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "bench")) return cmd_bench(argc - 1, argv + 1);
    fprintf(stderr, "usage: cleardit bench\n");
    return 2;
}
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; return 0; }
