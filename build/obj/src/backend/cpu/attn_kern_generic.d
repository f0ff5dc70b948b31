build/obj/src/backend/cpu/attn_kern_generic.o: \
 src/backend/cpu/attn_kern_generic.c src/backend/cpu/attn_kern_impl.h \
 src/backend/cpu/attn_kern.h
src/backend/cpu/attn_kern_impl.h:
src/backend/cpu/attn_kern.h:
