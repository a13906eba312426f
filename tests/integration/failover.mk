# build fragment, included by Makefile.am: the ledger across a database
# failover (real Patroni + etcd, two PostgreSQL nodes) and finance reading
# a hot standby.
FAILOVER_TESTS = tests/integration/test_failover.sh tests/integration/test_finance_replica.sh
TESTS += $(FAILOVER_TESTS)
EXTRA_DIST += $(FAILOVER_TESTS) tests/integration/patroni.sh deploy/patroni/patroni.yml.in \
	deploy/patroni/haproxy-db.cfg
