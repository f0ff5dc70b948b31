/* ops_kern_avx512.c — activation kernels for the avx512 path (flags from the Makefile's *_avx512.o rule). */
#define OK_VL 16
#define OK_GELU_NAME cd_gelu_avx512
#define OK_SILU_NAME cd_silu_avx512
#include "ops_kern_impl.h"
