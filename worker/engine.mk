# build fragment, included by Makefile.am: the worker's sans-I/O session
# engine (check, topup, personalize), the ledger request types and the
# in-memory ledger the unit tests use.  ota-worker and the tests link
# worker/libotaengine.a (with $(CARD_LIBS)); ledger_mem.o is only pulled in
# by programs that call it.
noinst_LIBRARIES += worker/libotaengine.a
worker_libotaengine_a_SOURCES = worker/engine.c worker/engine.h worker/engine_int.h \
	worker/engine_cfg.c worker/engine_cfg.h \
	worker/card_io.c worker/settle.c worker/op_check.c worker/op_topup.c \
	worker/op_personalize.c worker/ledger.c worker/ledger.h \
	worker/ledger_mem.c worker/ledger_mem.h
worker_libotaengine_a_CFLAGS = $(AM_CFLAGS) $(SODIUM_CFLAGS) $(CRYPTO_CFLAGS)
