# build fragment, included by Makefile.am: unit tests of the card simulator.
SIM_TEST_SOURCES = tests/unit/test_sim_util.c tests/unit/test_sim_util.h

UNIT_TESTS += tests/unit/test_sim_frames
check_PROGRAMS += tests/unit/test_sim_frames
tests_unit_test_sim_frames_SOURCES = tests/unit/test_sim_frames.c $(SIM_TEST_SOURCES)
tests_unit_test_sim_frames_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_sim_frames_LDADD = $(TEST_LIBS)

UNIT_TESTS += tests/unit/test_sim_profile
check_PROGRAMS += tests/unit/test_sim_profile
tests_unit_test_sim_profile_SOURCES = tests/unit/test_sim_profile.c $(SIM_TEST_SOURCES)
tests_unit_test_sim_profile_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_sim_profile_LDADD = $(TEST_LIBS)

UNIT_TESTS += tests/unit/test_sim_txn
check_PROGRAMS += tests/unit/test_sim_txn
tests_unit_test_sim_txn_SOURCES = tests/unit/test_sim_txn.c $(SIM_TEST_SOURCES)
tests_unit_test_sim_txn_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_sim_txn_LDADD = $(TEST_LIBS)

UNIT_TESTS += tests/unit/test_sim_cmds
check_PROGRAMS += tests/unit/test_sim_cmds
tests_unit_test_sim_cmds_SOURCES = tests/unit/test_sim_cmds.c $(SIM_TEST_SOURCES)
tests_unit_test_sim_cmds_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_sim_cmds_LDADD = $(TEST_LIBS)
