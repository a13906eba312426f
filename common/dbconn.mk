# build fragment, included by Makefile.am (after common/support.mk): db.conninfo
# with relative socket directories resolved, shared by ota-ctl and ota-worker.
# dbconn.o needs libpq's header; a program that calls dbconn_* links $(PQ_LIBS).
common_libotacommon_a_SOURCES += common/dbconn.c common/dbconn.h
common_libotacommon_a_CFLAGS += $(PQ_CFLAGS)

UNIT_TESTS += tests/unit/test_dbconn
check_PROGRAMS += tests/unit/test_dbconn
tests_unit_test_dbconn_SOURCES = tests/unit/test_dbconn.c
tests_unit_test_dbconn_CFLAGS = $(TEST_CFLAGS) $(PQ_CFLAGS)
tests_unit_test_dbconn_LDADD = $(COMMON_LIBS) $(CHECK_LIBS) $(PQ_LIBS)
