build/obj/src/io/safetensors_write.o: src/io/safetensors_write.c \
 src/io/st_internal.h src/io/../util/internal.h include/cleardit.h
src/io/st_internal.h:
src/io/../util/internal.h:
include/cleardit.h:
