build/obj/src/backend/cpu/attn_kern_avx2.o: \
 src/backend/cpu/attn_kern_avx2.c src/backend/cpu/attn_kern_impl.h \
 src/backend/cpu/attn_kern.h
src/backend/cpu/attn_kern_impl.h:
src/backend/cpu/attn_kern.h:
