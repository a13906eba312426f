# build fragment, included by Makefile.am: unit tests of the key file and
# the top-up codes.
UNIT_TESTS += tests/unit/test_keyfile tests/unit/test_topup_code
check_PROGRAMS += tests/unit/test_keyfile tests/unit/test_topup_code
tests_unit_test_keyfile_SOURCES = tests/unit/test_keyfile.c
tests_unit_test_keyfile_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_keyfile_LDADD = $(TEST_LIBS)
tests_unit_test_topup_code_SOURCES = tests/unit/test_topup_code.c
tests_unit_test_topup_code_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_topup_code_LDADD = $(TEST_LIBS)
