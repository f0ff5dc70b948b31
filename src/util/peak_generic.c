/* peak_generic.c — FMA peak loop for the generic path (flags from the Makefile's *_generic.o rule). */
#define PEAK_NAME cd_fma_loop_generic
#define PEAK_VL 4
#include "peak_impl.h"
