# build fragment, included by Makefile.am: the DESFire EV1 card simulator
# (the card side; the reader's test oracle).
common_libotacard_a_SOURCES += common/sim_card.h common/sim_priv.h common/sim_card.c \
	common/sim_sm.c common/sim_auth.c common/sim_keys.c common/sim_picc.c \
	common/sim_files.c common/sim_data.c common/sim_store.c common/sim_profile.c
