# build fragment, included by Makefile.am: unit tests of buf, hex and wire.
UNIT_TESTS += tests/unit/test_wire
check_PROGRAMS += tests/unit/test_wire
tests_unit_test_wire_SOURCES = tests/unit/test_wire.c
tests_unit_test_wire_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_wire_LDADD = $(COMMON_LIBS) $(CHECK_LIBS)
