build/obj/src/util/context.o: src/util/context.c src/util/internal.h \
 include/cleardit.h
src/util/internal.h:
include/cleardit.h:
