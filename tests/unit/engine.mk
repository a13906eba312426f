# build fragment, included by Makefile.am: unit tests of the worker's session
# engine against the card simulator and the in-memory ledger.
ENGINE_TEST_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/worker
ENGINE_TEST_LIBS = worker/libotaengine.a $(TEST_LIBS)

UNIT_TESTS += tests/unit/test_engine tests/unit/test_engine_faults
check_PROGRAMS += tests/unit/test_engine tests/unit/test_engine_faults
tests_unit_test_engine_SOURCES = tests/unit/test_engine.c tests/unit/test_engine_harness.c \
	tests/unit/test_engine_harness.h
tests_unit_test_engine_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_engine_LDADD = $(ENGINE_TEST_LIBS)
tests_unit_test_engine_faults_SOURCES = tests/unit/test_engine_faults.c \
	tests/unit/test_engine_harness.c tests/unit/test_engine_harness.h
tests_unit_test_engine_faults_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_engine_faults_LDADD = $(ENGINE_TEST_LIBS)

UNIT_TESTS += tests/unit/test_engine_settle
check_PROGRAMS += tests/unit/test_engine_settle
tests_unit_test_engine_settle_SOURCES = tests/unit/test_engine_settle.c
tests_unit_test_engine_settle_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_engine_settle_LDADD = $(ENGINE_TEST_LIBS)

# The worker's shell (worker/shell.c) over the engine, with libevent.
UNIT_TESTS += tests/unit/test_shell
check_PROGRAMS += tests/unit/test_shell
tests_unit_test_shell_SOURCES = tests/unit/test_shell.c tests/unit/test_engine_harness.c \
	tests/unit/test_engine_harness.h worker/shell.c worker/shell.h
tests_unit_test_shell_CFLAGS = $(ENGINE_TEST_CFLAGS) $(EVENT_CFLAGS)
tests_unit_test_shell_LDADD = $(ENGINE_TEST_LIBS) $(EVENT_LIBS)

UNIT_TESTS += tests/unit/test_engine_result
check_PROGRAMS += tests/unit/test_engine_result
tests_unit_test_engine_result_SOURCES = tests/unit/test_engine_result.c \
	tests/unit/test_engine_harness.c tests/unit/test_engine_harness.h
tests_unit_test_engine_result_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_engine_result_LDADD = $(ENGINE_TEST_LIBS)

UNIT_TESTS += tests/unit/test_engine_uid
check_PROGRAMS += tests/unit/test_engine_uid
tests_unit_test_engine_uid_SOURCES = tests/unit/test_engine_uid.c \
	tests/unit/test_engine_harness.c tests/unit/test_engine_harness.h
tests_unit_test_engine_uid_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_engine_uid_LDADD = $(ENGINE_TEST_LIBS)

# The worker's operator-token checks (a verifier thread, a libevent loop)
# and their per-address failure limit.
UNIT_TESTS += tests/unit/test_peer_limit tests/unit/test_token_check
check_PROGRAMS += tests/unit/test_peer_limit tests/unit/test_token_check
tests_unit_test_peer_limit_SOURCES = tests/unit/test_peer_limit.c worker/peer_limit.c \
	worker/peer_limit.h
tests_unit_test_peer_limit_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_peer_limit_LDADD = $(TEST_LIBS)
tests_unit_test_token_check_SOURCES = tests/unit/test_token_check.c worker/token_check.c \
	worker/token_check.h worker/peer_limit.c worker/peer_limit.h
tests_unit_test_token_check_CFLAGS = $(ENGINE_TEST_CFLAGS) $(EVENT_CFLAGS) -pthread
tests_unit_test_token_check_LDADD = $(TEST_LIBS) $(EVENT_LIBS) -lpthread

UNIT_TESTS += tests/unit/test_engine_batch tests/unit/test_engine_batch_faults
check_PROGRAMS += tests/unit/test_engine_batch tests/unit/test_engine_batch_faults
tests_unit_test_engine_batch_SOURCES = tests/unit/test_engine_batch.c \
	tests/unit/test_engine_harness.c tests/unit/test_engine_harness.h
tests_unit_test_engine_batch_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_engine_batch_LDADD = $(ENGINE_TEST_LIBS)
tests_unit_test_engine_batch_faults_SOURCES = tests/unit/test_engine_batch_faults.c \
	tests/unit/test_engine_harness.c tests/unit/test_engine_harness.h
tests_unit_test_engine_batch_faults_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_test_engine_batch_faults_LDADD = $(ENGINE_TEST_LIBS)
