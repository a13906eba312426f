# build fragment, included by Makefile.am: the gateway's system tests.  All
# but test_remote_worker.sh run ota-gateway with tests/integration/fake_worker
# (built by gateway/gateway.mk), without PostgreSQL or keys;
# test_remote_worker.sh runs the real system (lib.sh) plus a remote
# ota-worker over tcp:// with CurveZMQ.  test_gw_ws_node.sh installs the ws
# npm package into $(builddir)/node on first use.
GATEWAY_TESTS = tests/integration/gw_smoke.sh tests/integration/test_gw_badinput.sh \
	tests/integration/test_gw_tls.sh tests/integration/test_gw_ws_node.sh \
	tests/integration/test_remote_worker.sh tests/integration/test_supervision.sh
TESTS += $(GATEWAY_TESTS)
EXTRA_DIST += $(GATEWAY_TESTS) tests/integration/gw_badinput.py tests/integration/gw_tls.py \
	tests/integration/gw_ws_node.js tests/fuzz/fuzz_gw_upgrade.c tests/fuzz/fuzz_gw_climsg.c \
	tests/fuzz/gw_seeds.py

# `ota-ctl keys curve-gen` (tools/ctl_curve.c, owned with the remote
# workers): added here, after tools/ctl.mk has defined ota-ctl's sources.
tools_ota_ctl_SOURCES += tools/ctl_curve.c tools/ctl_curve.h
tools_ota_ctl_LDADD += $(ZMQ_LIBS)
# test_gw_ws_node.sh caches the npm package ws in $(builddir)/node; a
# cache, so distclean (and make distcheck's distcleancheck) removes it.
distclean-local:
	-rm -rf node
