build/obj/src/io/safetensors.o: src/io/safetensors.c src/io/st_internal.h \
 src/io/../util/internal.h include/cleardit.h
src/io/st_internal.h:
src/io/../util/internal.h:
include/cleardit.h:
