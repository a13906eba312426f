# build fragment, included by Makefile.am: the ota-card tool (new, show,
# vicc here; run comes from tools/cardrun.mk).
bin_PROGRAMS += tools/ota-card
tools_ota_card_SOURCES = tools/ota_card.c tools/card_cmd.h tools/card_new.c \
	tools/card_show.c tools/card_vicc.c tools/card_relay.c tools/vicc.c tools/vicc.h $(CARDRUN_SRC)
tools_ota_card_CFLAGS = $(AM_CFLAGS) $(SIM_CFLAGS) $(SODIUM_CFLAGS) $(CRYPTO_CFLAGS) $(CARDRUN_CFLAGS)
tools_ota_card_LDADD = $(CARDRUN_LINK) $(SIM_LIBS)

# Unit test of the virtual ICC (control codes, GET DATA, saving, framing).
UNIT_TESTS += tests/unit/test_vicc
check_PROGRAMS += tests/unit/test_vicc
tests_unit_test_vicc_SOURCES = tests/unit/test_vicc.c tools/vicc.c tools/vicc.h
tests_unit_test_vicc_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/tools
tests_unit_test_vicc_LDADD = $(TEST_LIBS)
