# build fragment, included by Makefile.am (last): the scale-out test (real
# HAProxy in front of two gateways on one PostgreSQL) and the worker's
# statistics query (schema/091_worker_stats.sql, installed with the other
# migrations by tools/ctl.mk's dist_schema_DATA).
dist_schema_DATA += schema/091_worker_stats.sql
SCALE_TESTS = tests/integration/test_scaleout.sh
TESTS += $(SCALE_TESTS)
EXTRA_DIST += $(SCALE_TESTS)
