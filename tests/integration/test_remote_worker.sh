#!/bin/sh
# Remote workers over tcp:// with CurveZMQ (issue "operations", remote
# workers): ota-ctl keys curve-gen makes the gateway's and two workers' key
# pairs; the gateway (one local worker) also listens for workers on a
# loopback tcp:// port with only the first worker's public key allowed.
# A real ota-worker started by hand with --connect tcp://... and the allowed
# key becomes a live remote worker in /status and runs sessions (topups
# through ota-card, some of them pinned to it); a worker with an unknown key
# is refused (counted in /status and /metrics, never listed); an ota-worker
# pointed at tcp:// without keys refuses to start; a gateway restart finds
# the same remote worker process back by itself; a session of the gateway
# process before a restart (still open in the remote worker) never answers
# a client of the new one; and a remote worker that goes away is marked not
# live.
. "$OTA_SRCDIR/tests/integration/lib.sh"

# Keys first (the configuration names them); moved into $T once it exists.
K=$(mktemp -d /tmp/ota-curve.XXXXXX)
chmod 755 "$K"
for n in gateway worker1 worker2; do
    ota-ctl keys curve-gen "$K/$n.key" >"$K/$n.out" 2>&1 || {
        echo "not ok - ota-ctl keys curve-gen $n"; cat "$K/$n.out"; rm -rf "$K"; exit 1
    }
done
# The remote worker drops to worker.user before it reads its key file.
if [ "$(id -u)" = 0 ]; then chown ota "$K/worker1.key" "$K/worker2.key"; fi
cat "$K/worker1.key.pub" >"$K/allowed"
GW_PUB=$(sed -n 's/^public-key = //p' "$K/gateway.key.pub")
W1_PUB=$(sed -n 's/^public-key = //p' "$K/worker1.key.pub")
W2_PUB=$(sed -n 's/^public-key = //p' "$K/worker2.key.pub")
WPORT=$(free_port)
SYS_WORKERS=1
SYS_EXTRA_CONF="gateway.worker_listen = tcp://127.0.0.1:$WPORT
gateway.curve_secret_file = $K/gateway.key
gateway.curve_allowed_keys = $K/allowed
gateway.heartbeat_ms = 200
gateway.worker_dead_ms = 2000
worker.response_timeout_ms = 30000"
sys_start
mv "$K" "$T/curve"
sed -i "s|$K|$T/curve|g" "$CONF" # for the gateway restart below
K="$T/curve"
RW_PIDS=
cleanup_remote() {
    for p in $RW_PIDS; do kill -KILL "$p" 2>/dev/null; done
    sys_cleanup
}
trap cleanup_remote EXIT

check "ota-ctl keys curve-gen writes FILE mode 0600 and FILE.pub" \
    test "$(stat -c %a "$K/gateway.key")" = 600 -a -n "$GW_PUB" -a "$GW_PUB" != "$W1_PUB"
if grep -q 'secret-key' "$K/gateway.out"; then
    fail "ota-ctl keys curve-gen printed the secret key"
else
    ok "ota-ctl keys curve-gen does not print the secret key"
fi
if ota-ctl keys curve-gen "$K/gateway.key" >/dev/null 2>&1; then
    fail "ota-ctl keys curve-gen overwrote an existing key"
else
    ok "ota-ctl keys curve-gen refuses to overwrite a key"
fi
if grep -q 'listener=workers addr="tcp://127.0.0.1:'"$WPORT"'" curve=1 allowed_keys=1' "$T/gateway.log"; then
    ok "the gateway listens for remote workers with CurveZMQ"
else
    fail "no CurveZMQ worker listener in the gateway log"
fi

status() { curl -fsS "$ADMIN/status"; }
# remote_field KEY FIELD: the field of the remote worker with that key (or "none").
remote_field() {
    status | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
w = [w for w in s["workers"] if w.get("remote") and w.get("key") == sys.argv[1]]
print(json.dumps(w[0][sys.argv[2]]) if w else "none")' "$1" "$2"
}

# --- an ota-worker over tcp:// without keys refuses to start
if timeout 30 ota-worker --config "$CONF" --connect "tcp://127.0.0.1:$WPORT" --worker-id 9 \
    --log.file="$T/nokey.log" >/dev/null 2>&1; then
    fail "ota-worker connected to tcp:// without CurveZMQ keys"
else
    grep -q 'worker.curve_secret_file' "$T/nokey.log" &&
        ok "ota-worker refuses a tcp:// gateway without CurveZMQ keys" ||
        fail "ota-worker failed without saying why (see $T/nokey.log)"
fi

# --- the allowed remote worker
ota-worker --config "$CONF" --connect "tcp://127.0.0.1:$WPORT" --worker-id 7 \
    --log.file="$T/remote1.log" --worker.curve_secret_file="$K/worker1.key" \
    --worker.gateway_public_key="$GW_PUB" >>"$T/remote1.out" 2>&1 &
RW1=$!
RW_PIDS="$RW1"
live1() { [ "$(remote_field "$W1_PUB" live)" = true ]; }
# Sessions go to a worker once its heartbeat says its database is usable.
db1() { [ "$(remote_field "$W1_PUB" db_ok)" = true ]; }
if wait_for 30 live1; then
    ok "a remote ota-worker with an allowed key is live in /status (pid $(remote_field "$W1_PUB" pid))"
else
    fail "the remote worker did not become live within 30 s"
    tail -n 5 "$T/remote1.log" | sed 's/^/# /'
fi
check "its heartbeat says its database is usable" wait_for 10 db1
check "/status gives the remote worker's pid and address" \
    test "$(remote_field "$W1_PUB" pid)" = "$RW1" -a "$(remote_field "$W1_PUB" address)" != none
RID=$(remote_field "$W1_PUB" id)

codes=$(sys_codes 250 6) || fail "codes issue"
i=0
okn=0
for code in $codes; do
    i=$((i + 1))
    uid=$(printf '04a1b2c3d4e5%02x' $i)
    card=$(sys_card "$uid") || { fail "ota-card new $uid"; continue; }
    if ota-card run --url "$PUB_URL" --card "$card" topup "$code" >"$T/run$i.out" 2>&1; then
        okn=$((okn + 1))
    fi
done
check "6 topups through the gateway with a local and a remote worker all succeed ($okn)" \
    test "$okn" -eq 6
remote_sessions=$(grep -c "event=session_open .* worker=$RID\$" "$T/gateway.log")
check "sessions were pinned to the remote worker ($remote_sessions of 6)" \
    test "$remote_sessions" -ge 1
check "the remote worker ran them (its own log)" grep -q 'topup\|session' "$T/remote1.log"

# --- the gateway restarts: the same remote worker process joins the new
# gateway by itself (it announces itself again after 3 silent heartbeats)
sys_gateway_stop
sys_gateway_start
if wait_for 15 live1; then
    ok "after a gateway restart the same remote worker process is live again (pid $(remote_field "$W1_PUB" pid))"
else
    fail "the remote worker did not rejoin the restarted gateway within 15 s"
    tail -n 5 "$T/remote1.log" | sed 's/^/# /'
fi
check "the remote worker process never exited" kill -0 "$RW1"
check "... and its first heartbeat to the new gateway says its database is usable" wait_for 10 db1
check "... it said why it announced itself again" grep -q 'event=gateway_silent .*action=announce' "$T/remote1.log"
RID=$(remote_field "$W1_PUB" id)
before=$(grep -c "event=session_open .* worker=$RID\$" "$T/gateway.log")
codes=$(sys_codes 250 4) || fail "codes issue"
okn=0
for code in $codes; do
    i=$((i + 1))
    uid=$(printf '04a1b2c3d4e6%02x' $i)
    card=$(sys_card "$uid") || { fail "ota-card new $uid"; continue; }
    ota-card run --url "$PUB_URL" --card "$card" topup "$code" >"$T/rerun$i.out" 2>&1 && okn=$((okn + 1))
done
after=$(grep -c "event=session_open .* worker=$RID\$" "$T/gateway.log")
check "4 topups after the restart all succeed ($okn), $((after - before)) of them on the remote worker" \
    test "$okn" -eq 4 -a "$after" -gt "$before"

# --- a session of an old gateway incarnation never answers a new client.
# Only the remote worker runs sessions from here on (no local worker), so
# each gateway process's first session goes to it.  A client starts a
# check and never answers the card's first command; the gateway dies
# (SIGKILL: it cannot tell the worker that its client is gone) and a new
# one starts; the remote worker, its old session still waiting for the
# card (worker.response_timeout_ms = 30 s), joins the new gateway.  A new
# client's check must be answered by its own session: ids restarting at
# the same value would hand it the old session's outcome instead.
sed -i 's/^gateway.workers = .*/gateway.workers = 0/' "$CONF"
sys_gateway_stop
sys_gateway_start
wait_for 15 live1 && wait_for 10 db1 || fail "the remote worker did not join the gateway without local workers"
/usr/bin/python3 - "${PUB_URL#ws://}" >"$T/hold.out" 2>&1 <<'PY' &
import base64, json, os, socket, struct, sys, time
hostport, path = sys.argv[1].split("/", 1)
host, port = hostport.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
buf = buf.split(b"\r\n\r\n", 1)[1]
msg = json.dumps({"type": "operation", "operation": "check", "uid": "04c0ffee000001",
                  "tech": "IsoDep", "requestId": "old-client"}).encode()
mask = os.urandom(4)
hdr = struct.pack("!BB", 0x81, 0x80 | len(msg)) if len(msg) < 126 else \
    struct.pack("!BBH", 0x81, 0xFE, len(msg))
s.sendall(hdr + mask +
          bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
while b'"command"' not in buf:
    d = s.recv(4096)
    if not d:
        sys.exit(1)
    buf += d
print("command", flush=True)
time.sleep(120)  # never answers; killed by the test
PY
HOLD=$!
RW_PIDS="$RW_PIDS $HOLD"
held() { grep -q command "$T/hold.out"; }
check "an old-gateway client's check is waiting for its card on the remote worker" wait_for 15 held
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null
GW_PID=
sys_gateway_start
wait_for 15 live1 && wait_for 10 db1 || fail "the remote worker did not join the restarted gateway"
cardY=$(sys_card 04c0ffee000002) || fail "ota-card new 04c0ffee000002"
out=$(ota-card run --json --timeout-ms 60000 --url "$PUB_URL" --card "$cardY" check 2>"$T/new-client.err")
field() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$1" 2>/dev/null; }
check "a new gateway's first client gets its own card's result (check ok, balance 0: $out)" \
    test "$(echo "$out" | field status)" = ok -a "$(echo "$out" | field balance)" = 0
check "the remote worker dropped the old gateway's session when the new one spoke" \
    grep -q 'event=gateway_changed sessions_dropped=1' "$T/remote1.log"
kill -KILL "$HOLD" 2>/dev/null

# --- a worker with a key that is not allowed
"$OTA_BUILDDIR/tests/integration/fake_worker" --connect "tcp://127.0.0.1:$WPORT" \
    --curve-secret-file "$K/worker2.key" --curve-server-key "$GW_PUB" >"$T/fake2.out" 2>&1 &
RW2=$!
RW_PIDS="$RW_PIDS $RW2"
refused() {
    [ "$(status | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["remote_workers_refused"])')" -ge 1 ]
}
if wait_for 15 refused; then
    ok "a worker with an unknown key is refused (remote_workers_refused in /status)"
else
    fail "the unknown worker was not refused within 15 s"
fi
sleep 1
check "the refused worker is never listed in /status" test "$(remote_field "$W2_PUB" id)" = none
check "/metrics counts it" sh -c "curl -fsS '$ADMIN/metrics' | grep -q '^ota_gateway_remote_workers_refused_total [1-9]'"
if grep 'event=remote_worker_refused' "$T/gateway.log" | grep -qF "key=\"$W2_PUB\""; then
    ok "the gateway log names the refused key"
else
    fail "the gateway log does not name the refused key"
fi
kill -KILL $RW2 2>/dev/null

# --- a worker with the right key pair but the wrong gateway key fails the handshake
"$OTA_BUILDDIR/tests/integration/fake_worker" --connect "tcp://127.0.0.1:$WPORT" \
    --curve-secret-file "$K/worker1.key" --curve-server-key "$W2_PUB" >"$T/fake3.out" 2>&1 &
RW3=$!
RW_PIDS="$RW_PIDS $RW3"
sleep 2
n_remote=$(status | /usr/bin/python3 -c 'import json,sys; print(sum(1 for w in json.load(sys.stdin)["workers"] if w.get("remote")))')
check "a worker that does not know the gateway's key never joins (remote workers listed: $n_remote)" \
    test "$n_remote" -eq 1
kill -KILL $RW3 2>/dev/null

# --- the remote worker goes away: marked not live, its slot free
kill -KILL $RW1
notlive1() { [ "$(remote_field "$W1_PUB" live)" = false ]; }
if wait_for 15 notlive1; then
    ok "a remote worker that went away is marked not live"
else
    fail "the dead remote worker is still live in /status after 15 s"
fi
check "... and the gateway logged it" grep -q 'event=remote_worker_lost' "$T/gateway.log"
leak=0
for n in gateway worker1 worker2; do
    sec=$(sed -n 's/^secret-key = //p' "$K/$n.key")
    for f in "$T"/*.log "$T"/*.out; do grep -qF "$sec" "$f" && leak=1; done
done
check "no CurveZMQ secret key in any log" test $leak -eq 0
sys_finish
