# build fragment, included by Makefile.am: unit tests of the WebSocket
# client (tools/ws_proto.c, tools/ws_url.c, tools/ws_client.c) and of the
# result texts of ota-card run (tools/card_result.c).
UNIT_TESTS += tests/unit/test_ws_proto tests/unit/test_ws_client tests/unit/test_card_result
check_PROGRAMS += tests/unit/test_ws_proto tests/unit/test_ws_client tests/unit/test_card_result

tests_unit_test_ws_proto_SOURCES = tests/unit/test_ws_proto.c tools/ws_proto.c tools/ws_proto.h \
	tools/ws_url.c tools/ws_url.h
tests_unit_test_ws_proto_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/tools
tests_unit_test_ws_proto_LDADD = $(TEST_LIBS)

tests_unit_test_ws_client_SOURCES = tests/unit/test_ws_client.c tools/ws_client.c \
	tools/ws_client.h tools/ws_proto.c tools/ws_proto.h tools/ws_url.c tools/ws_url.h
tests_unit_test_ws_client_CFLAGS = $(TEST_CFLAGS) $(SSL_CFLAGS) -I$(top_srcdir)/tools
tests_unit_test_ws_client_LDADD = $(SSL_LIBS) $(TEST_LIBS)

tests_unit_test_card_result_SOURCES = tests/unit/test_card_result.c tools/card_result.c \
	tools/card_result.h
tests_unit_test_card_result_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/tools
tests_unit_test_card_result_LDADD = $(TEST_LIBS)

# The load generator's latency histogram (tools/load_hist.c).
UNIT_TESTS += tests/unit/test_load_hist
check_PROGRAMS += tests/unit/test_load_hist
tests_unit_test_load_hist_SOURCES = tests/unit/test_load_hist.c tools/load_hist.c tools/load_hist.h
tests_unit_test_load_hist_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/tools
tests_unit_test_load_hist_LDADD = $(TEST_LIBS)

# ota-card run against a fake gateway (python3-websockets); no database.
TESTS += tests/integration/test_client_fake.sh
dist_noinst_SCRIPTS += tests/integration/test_client_fake.sh tests/integration/fake_gateway.py \
	tests/integration/batch_client.py

# The session's JSON, client side (tools/ws_proto_msg.c): command,
# commands (v2 batches), responses, the batch stop rule.
UNIT_TESTS += tests/unit/test_ws_proto_msg
check_PROGRAMS += tests/unit/test_ws_proto_msg
tests_unit_test_ws_proto_msg_SOURCES = tests/unit/test_ws_proto_msg.c tools/ws_proto_msg.c \
	tools/ws_proto_msg.h
tests_unit_test_ws_proto_msg_CFLAGS = $(TEST_CFLAGS) $(JANSSON_CFLAGS) -I$(top_srcdir)/tools
tests_unit_test_ws_proto_msg_LDADD = $(JANSSON_LIBS) $(TEST_LIBS)
