# build fragment, included by Makefile.am: unit tests of the DESFire EV1
# core, and the vector loader other tests may reuse (tests/unit/vectors.h).
DESFIRE_TEST_SOURCES = tests/unit/vectors.c tests/unit/vectors.h

UNIT_TESTS += tests/unit/test_desfire_vectors
check_PROGRAMS += tests/unit/test_desfire_vectors
tests_unit_test_desfire_vectors_SOURCES = tests/unit/test_desfire_vectors.c $(DESFIRE_TEST_SOURCES)
tests_unit_test_desfire_vectors_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_desfire_vectors_LDADD = $(TEST_LIBS)

UNIT_TESTS += tests/unit/test_desfire_crypto
check_PROGRAMS += tests/unit/test_desfire_crypto
tests_unit_test_desfire_crypto_SOURCES = tests/unit/test_desfire_crypto.c
tests_unit_test_desfire_crypto_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_desfire_crypto_LDADD = $(TEST_LIBS)

UNIT_TESTS += tests/unit/test_desfire_session
check_PROGRAMS += tests/unit/test_desfire_session
tests_unit_test_desfire_session_SOURCES = tests/unit/test_desfire_session.c
tests_unit_test_desfire_session_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_desfire_session_LDADD = $(TEST_LIBS)
# The public vectors the test reads (OTA_SRCDIR/tests/vectors) and their notes.
EXTRA_DIST += tests/vectors
