build/obj/src/ops/attention.o: src/ops/attention.c src/ops/attn.h \
 src/ops/../util/internal.h include/cleardit.h
src/ops/attn.h:
src/ops/../util/internal.h:
include/cleardit.h:
