#!/bin/sh
# WebSocket conformance of ota-gateway with a real third-party client: the
# `ws` npm package (tests/integration/gw_ws_node.js) checks fragmented
# messages, ping/pong both ways, the close handshake, the message size
# limit, binary and invalid UTF-8, against the gateway with the scripted
# fake worker.  ws is installed on first use into $OTA_BUILDDIR/node (npm,
# ws@8); without node/npm, or offline with no cached copy, the test is
# skipped (exit 77) and says why.
set -u
: "${OTA_SRCDIR:?set OTA_SRCDIR}"
: "${OTA_BUILDDIR:?set OTA_BUILDDIR}"
if ! command -v node >/dev/null 2>&1; then
    echo "# SKIP: node is not installed (deploy/setup.sh installs nodejs)"
    exit 77
fi
NODE_DIR="$OTA_BUILDDIR/node"
WS_DIR="$NODE_DIR/node_modules/ws"
if [ ! -f "$WS_DIR/package.json" ]; then
    mkdir -p "$NODE_DIR"
    if ! command -v npm >/dev/null 2>&1 ||
        ! timeout 300 npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent ws@8 \
            >"$NODE_DIR/npm.log" 2>&1; then
        echo "# SKIP: could not install the ws npm package (see $NODE_DIR/npm.log)"
        exit 77
    fi
fi
echo "# ws $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$WS_DIR/package.json"), node $(node --version)"

T=$(mktemp -d /tmp/ota-gwnode.XXXXXX)
chmod 755 "$T"
GW_PID=
cleanup() {
    if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then kill -KILL "$GW_PID" 2>/dev/null; fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
P1=$(port); P2=$(port); P3=$(port)
PING=300; IDLE=1000; MAXM=4096
cat >"$T/ota.conf" <<CONF
log.file = $T/gateway.log
gateway.listen = 127.0.0.1:$P1
gateway.operator_listen = 127.0.0.1:$P2
gateway.admin_listen = 127.0.0.1:$P3
gateway.runtime_dir = $T/run
gateway.workers = 1
gateway.worker_path = $OTA_BUILDDIR/tests/integration/fake_worker
gateway.heartbeat_ms = 200
gateway.drain_timeout_ms = 1000
gateway.ping_interval_ms = $PING
gateway.idle_timeout_ms = $IDLE
gateway.max_message = $MAXM
CONF
"$OTA_BUILDDIR/gateway/ota-gateway" --config "$T/ota.conf" >"$T/gateway.out" 2>&1 &
GW_PID=$!
i=0
until curl -fsS -o /dev/null "http://127.0.0.1:$P3/readyz" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $GW_PID 2>/dev/null; then
        echo "not ok - the gateway did not become ready within 10 s"
        tail -n 20 "$T/gateway.out" "$T/gateway.log" 2>/dev/null
        exit 1
    fi
    sleep 0.1
done
rc=0
timeout 120 node "$OTA_SRCDIR/tests/integration/gw_ws_node.js" "$WS_DIR" \
    "ws://127.0.0.1:$P1/v1/session" $PING $IDLE $MAXM || rc=1
kill -TERM $GW_PID
i=0
while kill -0 $GW_PID 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
GW_PID=
[ $rc -eq 0 ] || { echo "# gateway log:"; tail -n 30 "$T/gateway.log" | sed 's/^/# /'; }
exit $rc
