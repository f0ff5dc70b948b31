/* attn_kern_avx512.c — strip kernel compiled with AVX-512 F/BW/DQ/VL/BF16 (Makefile: *_avx512.o). */
#define CD_KERN_NAME cd_strip_avx512
#define CD_VL 16
#include "attn_kern_impl.h"
