# build fragment, included by Makefile.am: the libfreefare interop test
# (Debian's libfreefare over libnfc's pcsc driver, pcscd + vpcd, against
# the simulator served by `ota-card vicc`) and the whole system with a card
# behind that PC/SC stack (test_pcsc_e2e.sh: `ota-card run --pcsc`).
EXTRA_DIST += tests/interop/run.sh tests/interop/build-libnfc.sh tests/interop/pcsc_env.sh \
	tests/interop/test_pcsc_e2e.sh
if HAVE_FREEFARE
check_PROGRAMS += tests/interop/df_interop
tests_interop_df_interop_SOURCES = tests/interop/df_interop.c
tests_interop_df_interop_CFLAGS = $(AM_CFLAGS) $(FREEFARE_CFLAGS) $(SODIUM_CFLAGS) $(CRYPTO_CFLAGS)
tests_interop_df_interop_LDADD = $(CARD_LIBS) $(FREEFARE_LIBS)
TESTS += tests/interop/run.sh tests/interop/test_pcsc_e2e.sh
endif
