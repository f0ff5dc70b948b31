/* peak_avx512.c — FMA peak loop for the avx512 path (flags from the Makefile's *_avx512.o rule). */
#define PEAK_NAME cd_fma_loop_avx512
#define PEAK_VL 16
#include "peak_impl.h"
