build/obj/src/io/dtype.o: src/io/dtype.c src/io/../util/internal.h \
 include/cleardit.h
src/io/../util/internal.h:
include/cleardit.h:
