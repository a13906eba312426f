# build fragment, included by Makefile.am: the sealed master key file and
# the top-up code format (libotacard: the gateway never links them).
common_libotacard_a_SOURCES += common/keyfile.c common/keyfile.h common/topup_code.c \
	common/topup_code.h
