#!/bin/sh
# Smoke test of ota-gateway with the scripted fake worker (no database, no
# keys): message flow, close codes 1009/1003/1007/1002, HTTP refusals,
# personalize refused on the public listener, a worker dying at risk
# (pending, restart), /metrics through promtool, and a clean SIGTERM drain.
# Run from a build directory: OTA_SRCDIR=... OTA_BUILDDIR=... gw_smoke.sh
set -u
: "${OTA_SRCDIR:?set OTA_SRCDIR}"
: "${OTA_BUILDDIR:?set OTA_BUILDDIR}"
T=$(mktemp -d /tmp/ota-gwsmoke.XXXXXX)
chmod 755 "$T"
GW_PID=
cleanup() {
    if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
        kill -KILL "$GW_PID" 2>/dev/null
    fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
P1=$(port); P2=$(port); P3=$(port)
cat >"$T/ota.conf" <<CONF
log.file = $T/gateway.log
gateway.listen = 127.0.0.1:$P1
gateway.operator_listen = 127.0.0.1:$P2
gateway.admin_listen = 127.0.0.1:$P3
gateway.runtime_dir = $T/run
gateway.workers = 2
gateway.worker_path = $OTA_BUILDDIR/tests/integration/fake_worker
gateway.heartbeat_ms = 200
gateway.worker_dead_ms = 2000
gateway.restart_backoff_ms = 100
gateway.drain_timeout_ms = 2000
CONF
"$OTA_BUILDDIR/gateway/ota-gateway" --config "$T/ota.conf" >"$T/gateway.out" 2>&1 &
GW_PID=$!
i=0
until curl -fsS -o /dev/null "http://127.0.0.1:$P3/readyz" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $GW_PID 2>/dev/null; then
        echo "not ok - the gateway did not become ready within 10 s"
        cat "$T/gateway.out" "$T/gateway.log" 2>/dev/null | tail -20
        exit 1
    fi
    sleep 0.1
done
rc=0
SMOKE_METRICS="$T/metrics.txt" /usr/bin/python3 "$OTA_SRCDIR/tests/integration/gw_smoke.py" \
    "ws://127.0.0.1:$P1/v1/session" "ws://127.0.0.1:$P2/v1/session" "http://127.0.0.1:$P3" || rc=1
if promtool check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1; then
    echo "ok - promtool check metrics accepts /metrics"
else
    echo "not ok - promtool check metrics:"; sed 's/^/#   /' "$T/promtool.out"; rc=1
fi
if grep -q 'authCode\|"die"' "$T/gateway.log"; then
    echo "not ok - the log holds an authCode"; rc=1
else
    echo "ok - no authCode in the log"
fi
kill -TERM $GW_PID
i=0
while kill -0 $GW_PID 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $GW_PID 2>/dev/null; then
    echo "not ok - the gateway did not stop within 15 s of SIGTERM"; rc=1
else
    wait $GW_PID; st=$?
    if [ $st -eq 0 ]; then echo "ok - SIGTERM: drained and exited 0"; else echo "not ok - exit status $st after SIGTERM"; rc=1; fi
fi
GW_PID=
if pgrep -f "$T/ota.conf" >/dev/null; then
    echo "not ok - a worker outlived the gateway"; rc=1
else
    echo "ok - no worker outlived the gateway"
fi
[ $rc -eq 0 ] || { echo "# gateway log:"; tail -n 40 "$T/gateway.log" | sed 's/^/# /'; }
exit $rc
