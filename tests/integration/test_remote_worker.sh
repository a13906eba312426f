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
# the same remote worker process back by itself; and a remote worker that
# goes away is marked not live.
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
gateway.worker_dead_ms = 2000"
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
