build/obj/tests/test_attention.o: tests/test_attention.c tests/test.h \
 tests/../src/util/internal.h include/cleardit.h
tests/test.h:
tests/../src/util/internal.h:
include/cleardit.h:
