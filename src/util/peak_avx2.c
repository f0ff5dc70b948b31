/* peak_avx2.c — FMA peak loop for the avx2 path (flags from the Makefile's *_avx2.o rule). */
#define PEAK_NAME cd_fma_loop_avx2
#define PEAK_VL 8
#include "peak_impl.h"
