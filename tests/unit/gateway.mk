# build fragment, included by Makefile.am: unit tests of the gateway's
# loop parts, each driven through its callbacks with a real pool, ZeroMQ
# socket and worker process (tests/unit/gw_rig.c).
GW_LOOP_SRC = gateway/gw.c gateway/pool.c gateway/route.c gateway/remote.c \
	gateway/supervise.c gateway/spawn.c
GW_TEST_CFLAGS = $(TEST_CFLAGS) $(EVENT_CFLAGS) $(ZMQ_CFLAGS) $(SSL_CFLAGS) $(WSLAY_CFLAGS)
GW_TEST_LIBS = $(GW_LIBS) $(EVENT_LIBS) $(ZMQ_LIBS) $(SSL_LIBS) $(WSLAY_LIBS) $(CHECK_LIBS)
UNIT_TESTS += tests/unit/test_gw_pool
check_PROGRAMS += tests/unit/test_gw_pool
tests_unit_test_gw_pool_SOURCES = tests/unit/test_gw_pool.c tests/unit/gw_rig.c \
	tests/unit/gw_rig.h $(GW_LOOP_SRC)
tests_unit_test_gw_pool_CFLAGS = $(GW_TEST_CFLAGS)
tests_unit_test_gw_pool_LDADD = $(GW_TEST_LIBS)
UNIT_TESTS += tests/unit/test_gw_session
check_PROGRAMS += tests/unit/test_gw_session
tests_unit_test_gw_session_SOURCES = tests/unit/test_gw_session.c tests/unit/gw_rig.c \
	tests/unit/gw_rig.h $(GW_LOOP_SRC) gateway/conn.c gateway/session.c
tests_unit_test_gw_session_CFLAGS = $(GW_TEST_CFLAGS)
tests_unit_test_gw_session_LDADD = $(GW_TEST_LIBS)
