build/obj/tests/test_main.o: tests/test_main.c tests/test.h
tests/test.h:
