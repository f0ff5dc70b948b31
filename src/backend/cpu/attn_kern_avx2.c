/* attn_kern_avx2.c — strip kernel compiled with -mavx2 -mfma (Makefile: *_avx2.o). */
#define CD_KERN_NAME cd_strip_avx2
#define CD_VL 8
#include "attn_kern_impl.h"
