build/obj/src/backend/cpu/attn_ref.o: src/backend/cpu/attn_ref.c \
 src/backend/cpu/../../ops/attn.h \
 src/backend/cpu/../../ops/../util/internal.h include/cleardit.h
src/backend/cpu/../../ops/attn.h:
src/backend/cpu/../../ops/../util/internal.h:
include/cleardit.h:
