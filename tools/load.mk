# build fragment, included by Makefile.am: ota-load, the load generator
# (issue 7): many simulated phones over plain ws:// from one epoll loop.
bin_PROGRAMS += tools/ota-load
tools_ota_load_SOURCES = tools/ota_load.c tools/load_sess.c tools/load_sess.h \
	tools/load_hist.c tools/load_hist.h tools/ws_proto.c tools/ws_proto.h \
	tools/ws_proto_msg.c tools/ws_proto_msg.h \
	tools/ws_url.c tools/ws_url.h
tools_ota_load_CFLAGS = $(AM_CFLAGS) $(SIM_CFLAGS) $(SODIUM_CFLAGS) $(CRYPTO_CFLAGS) $(JANSSON_CFLAGS)
tools_ota_load_LDADD = $(SIM_LIBS) $(JANSSON_LIBS)
