# build fragment, included by Makefile.am: the benchmark of issue 7
# (tests/bench/run; README "Benchmarks").  Not a test: nothing here is in
# TESTS.  zmq_floor measures the ZeroMQ round trip the gateway-worker hop
# cannot go below on the machine; `make` builds it for tests/bench/run.
noinst_PROGRAMS += tests/bench/zmq_floor
tests_bench_zmq_floor_SOURCES = tests/bench/zmq_floor.c
tests_bench_zmq_floor_CFLAGS = $(AM_CFLAGS) $(ZMQ_CFLAGS)
tests_bench_zmq_floor_LDADD = $(ZMQ_LIBS)
EXTRA_DIST += tests/bench/run tests/bench/report.py tests/bench/tap_report.py \
	tests/bench/topup.pgbench tests/bench/floor.pgbench tests/bench/db_ab \
	tests/bench/finance_queries.sql
EXTRA_DIST += tests/bench/result-2026-12-06.json
