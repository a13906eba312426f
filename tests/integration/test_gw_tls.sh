#!/bin/sh
# TLS at the gateway (issue "hardening", transport): a throwaway CA, server
# and client certificates made with openssl; wss on the public listener and
# client-certificate TLS on the operator listener, tested with a real client
# (tests/integration/gw_tls.py); and the start-up checks: plain ws on a
# non-loopback address is refused unless gateway.behind_tls_proxy is set,
# a plain operator listener off loopback is always refused, and TLS on the
# operator listener needs gateway.operator_client_ca.  Those start checks
# bind 0.0.0.0 on a free port for a moment and send no traffic.
set -u
: "${OTA_SRCDIR:?set OTA_SRCDIR}"
: "${OTA_BUILDDIR:?set OTA_BUILDDIR}"
T=$(mktemp -d /tmp/ota-gwtls.XXXXXX)
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
GW="$OTA_BUILDDIR/gateway/ota-gateway"
. "$OTA_SRCDIR/tests/integration/tap.sh"

# --- certificates (the gateway drops to gateway.user: keep them readable)
cd "$T" || exit 1
{
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
        -subj "/CN=ota test CA" &&
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
            -subj "/CN=127.0.0.1" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out server.crt -days 2 -extfile server.ext &&
        openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr \
            -subj "/CN=operator desk 1" &&
        printf 'extendedKeyUsage=clientAuth\n' >client.ext &&
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out client.crt -days 2 -extfile client.ext &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 \
            -subj "/CN=someone else"
} >openssl.log 2>&1 || {
    echo "not ok - openssl could not make the test certificates"
    sed 's/^/# /' openssl.log
    exit 1
}
chmod 644 ./*.key ./*.crt
ok "throwaway CA, server and client certificates"

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
P1=$(port); P2=$(port); P3=$(port)
base_conf() {
    cat <<CONF
log.file = $1
gateway.listen = 127.0.0.1:$P1
gateway.operator_listen = 127.0.0.1:$P2
gateway.admin_listen = 127.0.0.1:$P3
gateway.runtime_dir = $T/run
gateway.workers = 1
gateway.worker_path = $OTA_BUILDDIR/tests/integration/fake_worker
gateway.heartbeat_ms = 200
gateway.drain_timeout_ms = 1000
CONF
}

# --- start-up refusals: each run must exit non-zero with the reason logged
refused_start() { # NAME LOGWORD ARGS...
    name=$1 word=$2
    shift 2
    base_conf "$T/start.log" >"$T/start.conf"
    : >"$T/start.log"
    timeout 20 "$GW" --config "$T/start.conf" "$@" >"$T/start.out" 2>&1
    st=$?
    if [ $st -ne 0 ] && [ $st -ne 124 ] && grep -q "$word" "$T/start.log"; then
        ok "refused at start: $name"
    else
        fail "refused at start: $name (exit $st)"
        tail -n 5 "$T/start.log" "$T/start.out" | sed 's/^/# /'
    fi
}
refused_start "plain ws on 0.0.0.0 without gateway.behind_tls_proxy" refused_plain_listener \
    --gateway.listen=0.0.0.0:"$P1"
refused_start "plain operator listener on 0.0.0.0 (even behind a TLS proxy)" \
    refused_plain_listener --gateway.operator_listen=0.0.0.0:"$P2" --gateway.behind_tls_proxy=true
refused_start "operator TLS without gateway.operator_client_ca" operator_client_ca \
    --gateway.operator_tls_cert="$T/server.crt" --gateway.operator_tls_key="$T/server.key"
refused_start "TLS certificate without its key" "set both TLS" \
    --gateway.tls_cert="$T/server.crt"

# With gateway.behind_tls_proxy the same plain listener on 0.0.0.0 starts.
base_conf "$T/proxy.log" >"$T/proxy.conf"
"$GW" --config "$T/proxy.conf" --gateway.listen=0.0.0.0:"$P1" --gateway.behind_tls_proxy=true \
    >"$T/proxy.out" 2>&1 &
GW_PID=$!
i=0
until grep -q 'gateway_started' "$T/proxy.log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $GW_PID 2>/dev/null; then break; fi
    sleep 0.1
done
if kill -0 $GW_PID 2>/dev/null && grep -q 'listener=public addr="0.0.0.0' "$T/proxy.log"; then
    ok "plain ws on 0.0.0.0 starts with gateway.behind_tls_proxy = true"
else
    fail "plain ws on 0.0.0.0 with gateway.behind_tls_proxy did not start"
    tail -n 5 "$T/proxy.log" | sed 's/^/# /'
fi
kill -TERM $GW_PID 2>/dev/null
i=0
while kill -0 $GW_PID 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
GW_PID=

# --- wss and client-certificate TLS with a real client
base_conf "$T/gateway.log" >"$T/ota.conf"
cat >>"$T/ota.conf" <<CONF
gateway.tls_cert = $T/server.crt
gateway.tls_key = $T/server.key
gateway.operator_tls_cert = $T/server.crt
gateway.operator_tls_key = $T/server.key
gateway.operator_client_ca = $T/ca.crt
CONF
FAKE_WORKER_PEERS="$T/peers.txt" "$GW" --config "$T/ota.conf" >"$T/gateway.out" 2>&1 &
GW_PID=$!
i=0
until curl -fsS -o /dev/null "http://127.0.0.1:$P3/readyz" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $GW_PID 2>/dev/null; then
        echo "not ok - the TLS gateway did not become ready within 10 s"
        tail -n 20 "$T/gateway.out" "$T/gateway.log" 2>/dev/null
        exit 1
    fi
    sleep 0.1
done
/usr/bin/python3 "$OTA_SRCDIR/tests/integration/gw_tls.py" "$P1" "$P2" "$T/ca.crt" \
    "$T/client.crt" "$T/client.key" "$T/other.crt" "$T/other.key" "$T/peers.txt" ||
    fail "the TLS clients' checks (gw_tls.py, above)"
if curl -fsS "http://127.0.0.1:$P3/metrics" | grep -q '^ota_gateway_connections_rejected_total{reason="tls"} [1-9]'; then
    ok "/metrics counts the failed TLS handshakes"
else
    fail "/metrics does not count the failed TLS handshakes"
fi
kill -TERM $GW_PID
i=0
while kill -0 $GW_PID 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $GW_PID 2>/dev/null; then fail "the TLS gateway did not stop on SIGTERM"; fi
GW_PID=
tap_summary || {
    echo "# gateway log:"
    tail -n 30 "$T/gateway.log" | sed 's/^/# /'
    exit 1
}
