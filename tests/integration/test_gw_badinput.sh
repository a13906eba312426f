#!/bin/sh
# Bad input at the gateway (issue "money safety", section "Bad input at the
# gateway"): runs tests/integration/gw_badinput.py (malformed upgrades,
# frames, JSON, hex, message order, PROXY headers, slow clients, clients
# that never send their operation or never read, floods)
# against ota-gateway with the scripted fake worker (no database, no keys),
# then checks that SIGHUP reopens the log file and that SIGTERM still drains
# cleanly.  Run from a build directory (make check sets OTA_SRCDIR and
# OTA_BUILDDIR).
set -u
: "${OTA_SRCDIR:?set OTA_SRCDIR}"
: "${OTA_BUILDDIR:?set OTA_BUILDDIR}"
T=$(mktemp -d /tmp/ota-gwbad.XXXXXX)
chmod 755 "$T"
# The gateway drops to gateway.user when started as root: its log
# directory must be that user's, or SIGHUP cannot create the new file.
mkdir "$T/log"
if [ "$(id -u)" = 0 ]; then chown ota "$T/log"; fi
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
MAXC=20; PERIP=8; UPG=1500; IDLE=3000; FIRST=2000; STALL=2000
cat >"$T/ota.conf" <<CONF
log.file = $T/log/gateway.log
gateway.listen = 127.0.0.1:$P1
gateway.operator_listen = 127.0.0.1:$P2
gateway.admin_listen = 127.0.0.1:$P3
gateway.runtime_dir = $T/run
gateway.workers = 2
gateway.worker_path = $OTA_BUILDDIR/tests/integration/fake_worker
gateway.heartbeat_ms = 200
gateway.worker_dead_ms = 3000
gateway.restart_backoff_ms = 100
gateway.drain_timeout_ms = 2000
gateway.max_connections = $MAXC
gateway.max_connections_per_ip = $PERIP
gateway.upgrade_timeout_ms = $UPG
gateway.idle_timeout_ms = $IDLE
gateway.ping_interval_ms = 1000
gateway.first_message_timeout_ms = $FIRST
gateway.output_stall_ms = $STALL
gateway.proxy_protocol_from = 127.0.0.5
CONF
FAKE_WORKER_PEERS="$T/peers.txt" "$OTA_BUILDDIR/gateway/ota-gateway" --config "$T/ota.conf" \
    >"$T/gateway.out" 2>&1 &
GW_PID=$!
i=0
until curl -fsS -o /dev/null "http://127.0.0.1:$P3/readyz" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $GW_PID 2>/dev/null; then
        echo "not ok - the gateway did not become ready within 10 s"
        cat "$T/gateway.out" "$T/log/gateway.log" 2>/dev/null | tail -20
        exit 1
    fi
    sleep 0.1
done
rc=0
/usr/bin/python3 "$OTA_SRCDIR/tests/integration/gw_badinput.py" --port "$P1" \
    --admin "http://127.0.0.1:$P3" --pid "$GW_PID" --peers "$T/peers.txt" \
    --proxy-ip 127.0.0.5 --max-conn $MAXC --per-ip $PERIP --upgrade-timeout-ms $UPG \
    --idle-timeout-ms $IDLE --first-message-ms $FIRST --output-stall-ms $STALL || rc=1

# SIGHUP reopens the log: rename the file, signal, a new file appears.
mv "$T/log/gateway.log" "$T/log/gateway.log.1"
kill -HUP $GW_PID
i=0
while [ ! -s "$T/log/gateway.log" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -s "$T/log/gateway.log" ] && grep -q 'log_reopened' "$T/log/gateway.log"; then
    echo "ok - SIGHUP: the gateway reopened its log file"
else
    echo "not ok - SIGHUP: no new log file within 5 s"; rc=1
fi
if grep -q 'log_reopened' "$T/log/gateway.log.1"; then
    echo "not ok - SIGHUP: the renamed file still got the new lines"; rc=1
else
    echo "ok - SIGHUP: the renamed file got no new lines"
fi
if kill -0 $GW_PID 2>/dev/null; then
    echo "ok - the gateway survived the whole corpus"
else
    echo "not ok - the gateway died"; rc=1
fi
kill -TERM $GW_PID
i=0
while kill -0 $GW_PID 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $GW_PID 2>/dev/null; then
    echo "not ok - the gateway did not stop within 15 s of SIGTERM"; rc=1
else
    wait $GW_PID; st=$?
    if [ $st -eq 0 ]; then echo "ok - SIGTERM: exited 0"; else echo "not ok - exit status $st after SIGTERM"; rc=1; fi
fi
GW_PID=
[ $rc -eq 0 ] || { echo "# gateway log:"; tail -n 30 "$T/log/gateway.log.1" | sed 's/^/# /'; }
exit $rc
