# build fragment, included by Makefile.am: configuration and logging.
common_libotacommon_a_SOURCES += common/config.c common/config.h common/log.c common/log.h
