# build fragment, included by Makefile.am: ota-worker (the I/O shell around
# the session engine) and the PostgreSQL ledger, with its integration test.
WORKER_IO_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/worker $(ZMQ_CFLAGS) $(EVENT_CFLAGS) \
	$(PQ_CFLAGS) $(SODIUM_CFLAGS)

bin_PROGRAMS += worker/ota-worker
worker_ota_worker_SOURCES = worker/main.c worker/shell.c worker/shell.h \
	worker/link.c worker/link.h worker/stats.c worker/stats.h \
	worker/ledger_pg.c worker/ledger_pg.h worker/ledger_sql.c worker/ledger_sql.h \
	worker/token_check.c worker/token_check.h worker/peer_limit.c worker/peer_limit.h
worker_ota_worker_CFLAGS = $(WORKER_IO_CFLAGS) -pthread
worker_ota_worker_LDADD = worker/libotaengine.a $(CARD_LIBS) $(ZMQ_LIBS) $(EVENT_LIBS) \
	$(PQ_LIBS) $(SODIUM_LIBS) -lpthread

# ledger_pg against a real PostgreSQL cluster: run it through
# tests/integration/test_ledger_pg.sh (starts the cluster, applies schema/).
check_PROGRAMS += tests/integration/test_ledger_pg
tests_integration_test_ledger_pg_SOURCES = tests/integration/test_ledger_pg.c \
	tests/integration/test_ledger_pg_sql.h \
	worker/ledger_pg.c worker/ledger_pg.h worker/ledger_sql.c worker/ledger_sql.h
tests_integration_test_ledger_pg_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/worker $(EVENT_CFLAGS) \
	$(PQ_CFLAGS)
tests_integration_test_ledger_pg_LDADD = worker/libotaengine.a $(TEST_LIBS) $(EVENT_LIBS) \
	$(PQ_LIBS)
dist_noinst_SCRIPTS += tests/integration/test_ledger_pg.sh
EXTRA_DIST += tests/integration/pg.sh

# The engine's fault matrix (tests/unit/test_engine_faults.c, the same case
# table) against the PostgreSQL ledger: tests/integration/test_engine_faults_pg.sh.
check_PROGRAMS += tests/integration/test_engine_faults_pg
tests_integration_test_engine_faults_pg_SOURCES = tests/unit/test_engine_faults.c \
	tests/unit/test_engine_harness.c tests/unit/test_engine_harness.h \
	tests/integration/hx_ledger_pg.c tests/integration/hx_ledger_pg.h \
	worker/ledger_pg.c worker/ledger_pg.h worker/ledger_sql.c worker/ledger_sql.h
tests_integration_test_engine_faults_pg_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/worker \
	-I$(top_srcdir)/tests/integration $(EVENT_CFLAGS) $(PQ_CFLAGS) -DHX_LEDGER_PG
tests_integration_test_engine_faults_pg_LDADD = worker/libotaengine.a $(TEST_LIBS) $(EVENT_LIBS) \
	$(PQ_LIBS)
dist_noinst_SCRIPTS += tests/integration/test_engine_faults_pg.sh

# ledger_sql without a database: statements, parameters and answers.
UNIT_TESTS += tests/unit/test_ledger_sql
check_PROGRAMS += tests/unit/test_ledger_sql
tests_unit_test_ledger_sql_SOURCES = tests/unit/test_ledger_sql.c worker/ledger_sql.c \
	worker/ledger_sql.h
tests_unit_test_ledger_sql_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/worker $(PQ_CFLAGS)
tests_unit_test_ledger_sql_LDADD = worker/libotaengine.a $(TEST_LIBS) $(PQ_LIBS)
