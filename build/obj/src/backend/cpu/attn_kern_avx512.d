build/obj/src/backend/cpu/attn_kern_avx512.o: \
 src/backend/cpu/attn_kern_avx512.c src/backend/cpu/attn_kern_impl.h \
 src/backend/cpu/attn_kern.h
src/backend/cpu/attn_kern_impl.h:
src/backend/cpu/attn_kern.h:
