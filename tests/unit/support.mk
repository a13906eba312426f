# build fragment, included by Makefile.am: unit tests of configuration,
# logging and the gateway's pure parsers.
UNIT_TESTS += tests/unit/test_config tests/unit/test_log
check_PROGRAMS += tests/unit/test_config tests/unit/test_log
tests_unit_test_config_SOURCES = tests/unit/test_config.c
tests_unit_test_config_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_config_LDADD = $(COMMON_LIBS) $(CHECK_LIBS)
tests_unit_test_log_SOURCES = tests/unit/test_log.c
tests_unit_test_log_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_log_LDADD = $(COMMON_LIBS) $(CHECK_LIBS) $(JANSSON_LIBS)

UNIT_TESTS += tests/unit/test_gw_upgrade tests/unit/test_gw_climsg
check_PROGRAMS += tests/unit/test_gw_upgrade tests/unit/test_gw_climsg
tests_unit_test_gw_upgrade_SOURCES = tests/unit/test_gw_upgrade.c
tests_unit_test_gw_upgrade_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_gw_upgrade_LDADD = $(GW_LIBS) $(CHECK_LIBS)
tests_unit_test_gw_climsg_SOURCES = tests/unit/test_gw_climsg.c
tests_unit_test_gw_climsg_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_gw_climsg_LDADD = $(GW_LIBS) $(CHECK_LIBS)
