# build fragment, included by Makefile.am: money safety at system level
# (issue 4): the hostile relay (a C phone that tampers, replays, drops and
# lies at random, then checks the cards against the ledger) and the script
# that runs it, kills workers, restarts PostgreSQL and the gateway, and
# races one code between 100 clients.
check_PROGRAMS += tests/integration/hostile_relay
tests_integration_hostile_relay_SOURCES = tests/integration/hostile_relay.c \
	tests/integration/hostile_session.h tests/integration/hostile_faults.c \
	tests/integration/hostile_batch.c \
	tests/integration/hostile_relay.h tests/integration/hostile_check.c \
	tools/ws_client.c tools/ws_client.h tools/ws_proto.c tools/ws_proto.h \
	tools/ws_proto_msg.c tools/ws_proto_msg.h \
	tools/ws_url.c tools/ws_url.h
tests_integration_hostile_relay_CFLAGS = $(AM_CFLAGS) $(SIM_CFLAGS) -pthread -I$(top_srcdir)/tools \
	$(SSL_CFLAGS) $(JANSSON_CFLAGS) $(PQ_CFLAGS) $(SODIUM_CFLAGS) $(CRYPTO_CFLAGS)
tests_integration_hostile_relay_LDADD = $(SIM_LIBS) $(SSL_LIBS) $(CRYPTO_LIBS) \
	$(JANSSON_LIBS) $(PQ_LIBS) -lpthread

SAFETY_TESTS = tests/integration/test_safety.sh
TESTS += $(SAFETY_TESTS)
EXTRA_DIST += $(SAFETY_TESTS)
