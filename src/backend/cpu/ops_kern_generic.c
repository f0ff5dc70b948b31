/* ops_kern_generic.c — activation kernels for the generic path (flags from the Makefile's *_generic.o rule). */
#define OK_VL 4
#define OK_GELU_NAME cd_gelu_generic
#define OK_SILU_NAME cd_silu_generic
#include "ops_kern_impl.h"
