#!/bin/sh
# Operator tokens on real processes (issue 16 point 9): a wrong token must
# not stop a worker's other sessions, and an address that keeps sending
# wrong tokens is refused without Argon2id.
#
# 1. One worker.  FLOOD personalizations with wrong tokens reach it at once
#    (their Argon2id checks, about 0.1 s each, would take FLOOD x 0.1 s if
#    they ran one after the other on the worker's loop).  Only once the
#    gateway has handed all of them to the worker do TOPUPS top-ups start
#    on the same worker.  They must all succeed while the flood is still
#    being answered: when the last top-up is done, some flood sessions
#    still wait for their verdict.  On a worker that checked tokens on its
#    loop, the top-ups' frames queue behind the whole flood.
# 2. worker.token_failures_per_peer = 3: the fourth and fifth wrong token
#    from the address answer limit-exceeded, and the worker's log shows
#    three Argon2id runs for the five attempts.
. "$OTA_SRCDIR/tests/integration/lib.sh"

FLOOD=40
TOPUPS=4
SYS_WORKERS=1
SYS_EXTRA_CONF="worker.token_failures_per_peer = 1000
worker.token_check_queue = 64"
sys_start

run() { ota-card run --json "$@" 2>>"$T/client.err"; }
field() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d.get(sys.argv[1], ""))' "$1"; }
sessions_active() { curl -fsS "$ADMIN/metrics" | sed -n 's/^ota_gateway_sessions_active \([0-9]*\)$/\1/p'; }

# --- the right token works (and the worker remembers it)
blank="$T/blank.card"
ota-card new --card "$blank" --uid 04e1e2e3e4e5e6 --blank >/dev/null
out=$(run --url "$OP_URL" --card "$blank" personalize "$TOKEN"); rc=$?
check "personalize with the operator token" [ "$rc" -eq 0 ]

# --- 1. a flood of wrong tokens while top-ups run on the same worker
i=0
cards=
while [ $i -lt $TOPUPS ]; do
    cards="$cards $(sys_card "04c0c0c0c0c0$(printf %02x $i)")"
    i=$((i + 1))
done
codes=$(sys_codes 100 $TOPUPS)
: >"$T/flood.progress"
/usr/bin/python3 "$OTA_SRCDIR/tests/integration/token_flood.py" "$OP_URL" $FLOOD \
    "$T/flood.progress" >"$T/flood.out" 2>&1 &
flood_pid=$!
flood_dispatched() { [ "$(sessions_active)" -ge $FLOOD ] 2>/dev/null; }
check "the gateway handed all $FLOOD flood sessions to the worker" wait_for 60 flood_dispatched

ok_topups=0
set -- $codes
for c in $cards; do
    out=$(run --url "$PUB_URL" --card "$c" topup "$1"); rc=$?
    [ "$rc" -eq 0 ] && [ "$(echo "$out" | field status)" = ok ] && ok_topups=$((ok_topups + 1))
    shift
done
answered=$(wc -l <"$T/flood.progress")
check "all $TOPUPS top-ups succeeded during the flood" [ "$ok_topups" -eq $TOPUPS ]
echo "# flood sessions answered when the last top-up was done: $answered of $FLOOD"
check "the top-ups did not wait for the flood (answered $answered of $FLOOD before they were done)" \
    [ "$answered" -lt $FLOOD ]
wait "$flood_pid"; rc=$?
check "every flood session answered failed/auth-failed" [ "$rc" -eq 0 ]
sed 's/^/# /' "$T/flood.out"
argon=$(grep -c 'event=operator_token .*verdict=wrong argon2=1' "$T/gateway.log")
check "the worker ran Argon2id once per flood token ($argon)" [ "$argon" -eq $FLOOD ]

# --- 2. the per-address limit
sys_gateway_stop
sed -i 's/^worker.token_failures_per_peer = .*/worker.token_failures_per_peer = 3/' "$CONF"
sys_gateway_start
before=$(wc -l <"$T/gateway.log")
errors=
for n in 1 2 3 4 5; do
    out=$(run --url "$OP_URL" --card "$blank" personalize "wrong-token-$n-of-this-test")
    errors="$errors $(echo "$out" | field error)"
done
echo "# errors:$errors"
check "three wrong tokens answer auth-failed, then limit-exceeded" \
    [ "$errors" = " auth-failed auth-failed auth-failed limit-exceeded limit-exceeded" ]
tail -n +"$((before + 1))" "$T/gateway.log" >"$T/phase2.log"
check "three Argon2id runs for the five attempts" \
    [ "$(grep -c 'event=operator_token .*argon2=1' "$T/phase2.log")" -eq 3 ]
check "two attempts refused without Argon2id (verdict=limited)" \
    [ "$(grep -c 'event=operator_token .*verdict=limited argon2=0' "$T/phase2.log")" -eq 2 ]
check "no token in the log" eval '! grep -q "wrong-token-" "$T/gateway.log"'

sys_finish
