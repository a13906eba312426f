# build fragment, included by Makefile.am: the reader-side DESFire EV1 core.
common_libotacard_a_SOURCES += common/desfire_crypto.h common/desfire_cipher.c \
	common/desfire_cmac.c common/desfire_kdf.c common/desfire_crc.c common/desfire_secret.c \
	common/desfire_apdu.h common/desfire_apdu.c common/desfire_session.h \
	common/desfire_session.c common/desfire_auth.h common/desfire_auth.c
