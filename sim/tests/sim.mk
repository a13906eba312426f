# build fragment, included by Makefile.am: unit tests of the card simulator.
SIM_TEST_SOURCES = sim/tests/test_sim_util.c sim/tests/test_sim_util.h

UNIT_TESTS += sim/tests/test_sim_frames
check_PROGRAMS += sim/tests/test_sim_frames
sim_tests_test_sim_frames_SOURCES = sim/tests/test_sim_frames.c $(SIM_TEST_SOURCES)
sim_tests_test_sim_frames_CFLAGS = $(TEST_CFLAGS)
sim_tests_test_sim_frames_LDADD = $(TEST_LIBS)

UNIT_TESTS += sim/tests/test_sim_profile
check_PROGRAMS += sim/tests/test_sim_profile
sim_tests_test_sim_profile_SOURCES = sim/tests/test_sim_profile.c $(SIM_TEST_SOURCES)
sim_tests_test_sim_profile_CFLAGS = $(TEST_CFLAGS)
sim_tests_test_sim_profile_LDADD = $(TEST_LIBS)

UNIT_TESTS += sim/tests/test_sim_txn
check_PROGRAMS += sim/tests/test_sim_txn
sim_tests_test_sim_txn_SOURCES = sim/tests/test_sim_txn.c $(SIM_TEST_SOURCES)
sim_tests_test_sim_txn_CFLAGS = $(TEST_CFLAGS)
sim_tests_test_sim_txn_LDADD = $(TEST_LIBS)

UNIT_TESTS += sim/tests/test_sim_cmds
check_PROGRAMS += sim/tests/test_sim_cmds
sim_tests_test_sim_cmds_SOURCES = sim/tests/test_sim_cmds.c $(SIM_TEST_SOURCES)
sim_tests_test_sim_cmds_CFLAGS = $(TEST_CFLAGS)
sim_tests_test_sim_cmds_LDADD = $(TEST_LIBS)
