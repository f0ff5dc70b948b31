/* attn_kern_generic.c — strip kernel for the portable path (no ISA flags: GCC lowers the vector
 * extensions to SSE2 on x86-64, to scalar code elsewhere). */
#define CD_KERN_NAME cd_strip_generic
#define CD_VL 4
#include "attn_kern_impl.h"
