/* ops_kern_avx2.c — activation kernels for the avx2 path (flags from the Makefile's *_avx2.o rule). */
#define OK_VL 8
#define OK_GELU_NAME cd_gelu_avx2
#define OK_SILU_NAME cd_silu_avx2
#include "ops_kern_impl.h"
