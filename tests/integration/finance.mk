# build fragment, included by Makefile.am: the finance reports on the whole
# system (real PostgreSQL, gateway, workers, simulated cards).
TESTS += tests/integration/test_finance.sh
EXTRA_DIST += tests/integration/test_finance.sh
