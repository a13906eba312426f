# build fragment, included by Makefile.am: ota-gateway.  The pure parsers
# and writers (upgrade, PROXY header, client JSON, UTF-8, metrics, address
# counts) form libotagw so that unit tests and fuzz targets link exactly
# what the gateway runs.  The gateway never links libotacard.
# CurveZMQ key files: read by the gateway and a remote ota-worker, written
# by ota-ctl keys curve-gen (text only; no ZeroMQ needed to parse them).
common_libotacommon_a_SOURCES += common/curve_key.c common/curve_key.h

noinst_LIBRARIES += gateway/libotagw.a
gateway_libotagw_a_SOURCES = gateway/upgrade.c gateway/upgrade.h gateway/proxy.c \
	gateway/proxy.h gateway/climsg.c gateway/climsg.h gateway/utf8.c gateway/utf8.h \
	gateway/metrics.c gateway/metrics.h gateway/ipcount.c gateway/ipcount.h gateway/wsmsg.c \
	gateway/wsmsg.h gateway/wipe.c gateway/wipe.h
gateway_libotagw_a_CFLAGS = $(AM_CFLAGS) $(CRYPTO_CFLAGS) $(JANSSON_CFLAGS) $(SODIUM_CFLAGS)

GW_LIBS = gateway/libotagw.a $(COMMON_LIBS) $(JANSSON_LIBS) $(CRYPTO_LIBS) $(SODIUM_LIBS)

bin_PROGRAMS += gateway/ota-gateway
gateway_ota_gateway_SOURCES = gateway/main.c gateway/gw.c gateway/gw.h gateway/drain.c gateway/drain.h gateway/conn.c \
	gateway/conn.h gateway/session.c gateway/session.h gateway/pool.c gateway/pool.h \
	gateway/pool_int.h gateway/route.c gateway/remote.c gateway/supervise.c \
	gateway/spawn.c gateway/spawn.h gateway/listen.c gateway/listen.h gateway/admin.c \
	gateway/admin.h gateway/wmetrics.c gateway/wmetrics.h
gateway_ota_gateway_CFLAGS = $(AM_CFLAGS) $(EVENT_CFLAGS) $(ZMQ_CFLAGS) $(SSL_CFLAGS) \
	$(CRYPTO_CFLAGS) $(WSLAY_CFLAGS) $(JANSSON_CFLAGS) $(SODIUM_CFLAGS)
gateway_ota_gateway_LDADD = $(GW_LIBS) $(EVENT_LIBS) $(ZMQ_LIBS) $(SSL_LIBS) $(WSLAY_LIBS)
# Every symbol bound at start: a lazily bound call saves all vector
# registers on the stack, and right after a client's message they may
# hold its authCode.
gateway_ota_gateway_LDFLAGS = -Wl,-z,now

# A scripted stand-in for ota-worker, for tests/integration/gw_smoke.sh.
check_PROGRAMS += tests/integration/fake_worker
tests_integration_fake_worker_SOURCES = tests/integration/fake_worker.c
tests_integration_fake_worker_CFLAGS = $(AM_CFLAGS) $(ZMQ_CFLAGS) $(SODIUM_CFLAGS)
tests_integration_fake_worker_LDADD = $(COMMON_LIBS) $(ZMQ_LIBS)
EXTRA_DIST += tests/integration/gw_smoke.sh tests/integration/gw_smoke.py
