# build fragment, included by Makefile.am: system tests on real processes
# and a real PostgreSQL (each starts and stops its own cluster).
INTEGRATION_TESTS = tests/integration/test_ledger_pg.sh tests/integration/test_engine_faults_pg.sh \
	tests/integration/test_ctl.sh tests/integration/test_system.sh tests/integration/test_deploy_configs.sh \
	tests/integration/test_cli.sh tests/integration/test_install.sh \
	tests/integration/test_quickstart.sh tests/integration/test_package.sh
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/lib.sh tests/integration/pg.sh tests/integration/tap.sh \
	tests/integration/seed_client.py tests/integration/deploy_fake_gw.py
