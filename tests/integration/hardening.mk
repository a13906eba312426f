# build fragment, included by Makefile.am: system tests of the hardening
# points of issue 9 (logs free of secrets, code-failure limits per card and
# per PROXY-protocol address, synchronous_commit, freezing, the PICC lock of
# a card personalized through the system, the gateway holding no keys).
TESTS += tests/integration/test_hardening.sh
EXTRA_DIST += tests/integration/test_hardening.sh tests/integration/proxy_client.py

# Issue 16 point 9: operator-token checks off the worker's loop, and their
# per-address limit.
TESTS += tests/integration/test_operator_token.sh
EXTRA_DIST += tests/integration/test_operator_token.sh tests/integration/token_flood.py

# Issue 16 point 8: a booked top-up's result goes out before the lease
# release.
TESTS += tests/integration/test_result_early.sh
EXTRA_DIST += tests/integration/test_result_early.sh

# Issue 16 point 5: 1,000 wrong codes from one address never block the 100
# phones topping up behind it.
TESTS += tests/integration/test_shared_address.sh
EXTRA_DIST += tests/integration/test_shared_address.sh

# Test-only helpers run by test_hardening.sh (never installed).
check_PROGRAMS += tests/integration/card_forge tests/unit/test_picc_lock
tests_integration_card_forge_SOURCES = tests/integration/card_forge.c
tests_integration_card_forge_CFLAGS = $(AM_CFLAGS) $(SIM_CFLAGS) $(SODIUM_CFLAGS) $(CRYPTO_CFLAGS)
tests_integration_card_forge_LDADD = $(SIM_LIBS)
tests_unit_test_picc_lock_SOURCES = tests/unit/test_picc_lock.c $(SIM_TEST_SOURCES)
tests_unit_test_picc_lock_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_picc_lock_LDADD = $(TEST_LIBS)
