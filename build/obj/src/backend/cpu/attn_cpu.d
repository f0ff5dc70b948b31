build/obj/src/backend/cpu/attn_cpu.o: src/backend/cpu/attn_cpu.c \
 src/backend/cpu/attn_kern.h src/backend/cpu/../../ops/attn.h \
 src/backend/cpu/../../ops/../util/internal.h include/cleardit.h
src/backend/cpu/attn_kern.h:
src/backend/cpu/../../ops/attn.h:
src/backend/cpu/../../ops/../util/internal.h:
include/cleardit.h:
