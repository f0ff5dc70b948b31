build/obj/src/io/convert.o: src/io/convert.c src/io/st_internal.h \
 src/io/../util/internal.h include/cleardit.h
src/io/st_internal.h:
src/io/../util/internal.h:
include/cleardit.h:
