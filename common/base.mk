# build fragment, included by Makefile.am: buffers, hex and the wire frames.
common_libotacommon_a_SOURCES += common/buf.c common/buf.h common/hex.c common/hex.h \
	common/wire.c common/wire.h common/num.c common/num.h
