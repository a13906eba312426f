# build fragment, included by Makefile.am: the DESFire EV1 card simulator
# (the card side; the reader's test oracle).
sim_libotasim_a_SOURCES = sim/sim_card.h sim/sim_priv.h sim/sim_card.c \
	sim/sim_sm.c sim/sim_auth.c sim/sim_keys.c sim/sim_picc.c \
	sim/sim_files.c sim/sim_data.c sim/sim_store.c sim/sim_profile.c
sim_libotasim_a_CFLAGS = $(AM_CFLAGS) $(CRYPTO_CFLAGS) $(SODIUM_CFLAGS)
