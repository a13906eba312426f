#!/bin/sh
# End to end on real processes and a real PostgreSQL (issue "end to end"):
# personalize -> check -> top-up -> check; two top-ups; a used code, an
# unknown code, a mistyped code; a code raced by two clients; a client that
# lies about the UID (top-up and personalize); personalize refused on the
# public listener; two sessions for one card; the seed app's flow on path
# `/`; protocol v2 (batches) and v1 side by side with their round trips,
# and a Python v2 client; a worker killed mid-session.  Checks the ledger
# and the card after each.
. "$OTA_SRCDIR/tests/integration/lib.sh"
sys_start

run() { ota-card run --json "$@" 2>>"$T/client.err"; }
field() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d.get(sys.argv[1], ""))' "$1"; }
card_value() { ota-card show --card "$1" | sed -n 's/^ *value \(-\{0,1\}[0-9][0-9]*\)$/\1/p' | head -n 1; }

# --- personalize a factory card on the operator listener, then check and top up
blank="$T/blank.card"
ota-card new --card "$blank" --uid 04a1b2c3d4e5f6 --blank >/dev/null
# A client that claims another UID: the card's GetCardUID tells, nothing changes.
before=$(ota-card show --card "$blank")
out=$(run --url "$OP_URL" --card "$blank" --uid 04a1b2c3d4e5ff personalize "$TOKEN"); rc=$?
check "personalize claiming another UID is refused (auth-failed)" eval '[ "$rc" -eq 1 ] && [ "$(echo "$out" | field error)" = auth-failed ]'
check "... and the card is untouched" [ "$(ota-card show --card "$blank")" = "$before" ]
check "... and the ledger personalized nothing" \
    [ "$(sys_sql "SELECT count(*) FROM cards WHERE personalized_at IS NOT NULL AND card_uid IN ('\\x04a1b2c3d4e5ff', '\\x04a1b2c3d4e5f6')")" = 0 ]
out=$(run --url "$OP_URL" --card "$blank" personalize "$TOKEN"); rc=$?
check "personalize a factory card on the operator listener" [ "$rc" -eq 0 ]
out=$(run --url "$OP_URL" --card "$blank" personalize "$TOKEN"); rc=$?
check "personalize again leaves the card as it is (ok)" [ "$rc" -eq 0 ]
out=$(run --url "$OP_URL" --card "$blank" personalize "wrong-token"); rc=$?
check "personalize with a wrong operator token fails" [ "$rc" -eq 1 ]
out=$(run --url "$PUB_URL" --card "$blank" personalize "$TOKEN"); rc=$?
check "personalize is refused on the public listener" eval '[ "$rc" -eq 1 ] && [ "$(echo "$out" | field error)" = bad-request ]'
out=$(run --url "$PUB_URL" --card "$blank" check); rc=$?
check "check after personalize: ok, balance 0" eval '[ "$rc" -eq 0 ] && [ "$(echo "$out" | field balance)" = 0 ]'
code=$(sys_codes 500 1)
out=$(run --url "$PUB_URL" --card "$blank" topup "$code"); rc=$?
check "top-up 500 ok" eval '[ "$rc" -eq 0 ] && [ "$(echo "$out" | field balance)" = 500 ]'
txn=$(echo "$out" | field txn)
check "top-up result names its ledger transaction" [ -n "$txn" ]
out=$(run --url "$PUB_URL" --card "$blank" check); rc=$?
check "check after top-up: balance 500" [ "$(echo "$out" | field balance)" = 500 ]
check "ledger: exactly one committed entry for the transaction" \
    [ "$(sys_sql "SELECT count(*) FROM ledger WHERE txn_id = '$txn' AND kind = 'committed'")" = 1 ]

# --- a second top-up, a used code, an unknown code, a mistyped code
card=$(sys_card 04112233445566)
c1=$(sys_codes 300 1); c2=$(sys_codes 200 1)
run --url "$PUB_URL" --card "$card" topup "$c1" >/dev/null
out=$(run --url "$PUB_URL" --card "$card" topup "$c2"); rc=$?
check "two top-ups: balance 500" eval '[ "$rc" -eq 0 ] && [ "$(echo "$out" | field balance)" = 500 ]'
out=$(run --url "$PUB_URL" --card "$card" topup "$c1"); rc=$?
check "a used code answers code-used" eval '[ "$rc" -eq 1 ] && [ "$(echo "$out" | field error)" = code-used ]'
unknown=$(ota-ctl codes generate)
out=$(run --url "$PUB_URL" --card "$card" topup "$unknown"); rc=$?
check "a well-formed code that was never issued answers code-invalid" eval '[ "$rc" -eq 1 ] && [ "$(echo "$out" | field error)" = code-invalid ]'
out=$(run --url "$PUB_URL" --card "$card" topup "ABCD-EFGH-JKMN-PQRS-TVWX"); rc=$?
check "a malformed code answers code-invalid" [ "$(echo "$out" | field error)" = code-invalid ]
check "the card kept its balance (500)" [ "$(card_value "$card")" = 500 ]

# --- a client that lies about the UID: auth fails, nothing reserved
victim=$(sys_card 04998877665544)
liar=$(sys_card 04000000000001)
c3=$(sys_codes 100 1)
out=$(run --url "$PUB_URL" --card "$liar" --uid 04998877665544 topup "$c3"); rc=$?
check "a lying UID answers auth-failed" [ "$(echo "$out" | field error)" = auth-failed ]
check "nothing was reserved for the lying client" \
    [ "$(sys_sql "SELECT count(*) FROM ledger WHERE card_uid = '\\x04998877665544'")" = 0 ]
out=$(run --url "$PUB_URL" --card "$victim" topup "$c3"); rc=$?
check "the victim's own top-up with the same code still works" [ "$rc" -eq 0 ]

# --- protocol v2 (batches, docs/PROTOCOL.md section 8) and v1 side by side:
# round trips per operation from ota-card run's --trace (messages that
# carried APDUs), and an independent v2 client through ota-card relay
rt() { /usr/bin/python3 -c 'import json,sys
print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["dir"] == "in" and json.loads(l)["msg"]["type"] in sys.argv[2:]))' "$@"; }
v2card=$(sys_card 04c2c2c2c2c201)
v2codes=$(sys_codes 100 3)
out=$(run --url "$PUB_URL" --card "$v2card" --trace "$T/v2first.trace" topup "$(echo "$v2codes" | sed -n 1p)"); rc1=$?
out=$(run --url "$PUB_URL" --card "$v2card" --trace "$T/v2topup.trace" topup "$(echo "$v2codes" | sed -n 2p)"); rc2=$?
out=$(run --url "$PUB_URL" --card "$v2card" --trace "$T/v2check.trace" check); rc3=$?
check "v2 client: first top-up, top-up and check ok ($rc1 $rc2 $rc3)" [ "$rc1$rc2$rc3" = 000 ]
# A gateway without the v2 server side answers a v2 client with single
# commands (docs/PROTOCOL.md section 8): then only the round-trip checks
# are skipped, the results and the money are checked all the same.
if [ "$(rt "$T/v2first.trace" commands)" -gt 0 ]; then
    check "v2: a first top-up (profile check) in at most 6 round trips ($(rt "$T/v2first.trace" command commands))" \
        [ "$(rt "$T/v2first.trace" command commands)" -le 6 ]
    check "v2: a steady-state top-up in at most 5 round trips ($(rt "$T/v2topup.trace" command commands))" \
        [ "$(rt "$T/v2topup.trace" command commands)" -le 5 ]
    check "v2: a check in at most 3 round trips ($(rt "$T/v2check.trace" command commands))" \
        [ "$(rt "$T/v2check.trace" command commands)" -le 3 ]
else
    ok "v2 round trips (first top-up <= 6, top-up <= 5, check <= 3) # SKIP the gateway sent no batch: it speaks v1 only"
fi
out=$(run --url "$PUB_URL" --card "$v2card" --protocol v1 --trace "$T/v1topup.trace" topup "$(echo "$v2codes" | sed -n 3p)"); rc=$?
check "v1 unchanged: a top-up with --protocol v1 ok, only single commands ($rc, $(rt "$T/v1topup.trace" command) commands, $(rt "$T/v1topup.trace" commands) batches)" \
    [ "$rc/$(rt "$T/v1topup.trace" commands)/$(( $(rt "$T/v1topup.trace" command) > 5 ))" = 0/0/1 ]
check "v1 and v2 top-ups on one card: balance 300 and 3 committed entries" \
    [ "$(card_value "$v2card")/$(sys_sql "SELECT count(*) FROM ledger WHERE kind = 'committed' AND card_uid = '\\x04c2c2c2c2c201'")" = 300/3 ]
bc_card=$(sys_card 04c2c2c2c2c202)
bc_code=$(sys_codes 150 1)
/usr/bin/python3 "$OTA_SRCDIR/tests/integration/batch_client.py" "$PUB_URL" "$bc_card" topup "$bc_code" \
    --batch 8 >"$T/bc.out" 2>"$T/bc.err"; rc=$?
check "an independent v2 client (python3-websockets through ota-card relay, batch 8) completes a top-up ($(grep round_trips "$T/bc.err"))" \
    [ "$rc/$(card_value "$bc_card")" = 0/150 ]

# --- one code raced by two clients: exactly one wins
a=$(sys_card 04aaaaaaaaaa01); b=$(sys_card 04aaaaaaaaaa02)
c4=$(sys_codes 700 1)
run --url "$PUB_URL" --card "$a" topup "$c4" >"$T/race_a" & pa=$!
run --url "$PUB_URL" --card "$b" topup "$c4" >"$T/race_b" & pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
wins=0; [ $ra -eq 0 ] && wins=$((wins + 1)); [ $rb -eq 0 ] && wins=$((wins + 1))
check "one code raced by two clients: exactly one top-up" [ $wins -eq 1 ]
total=$(( $(card_value "$a") + $(card_value "$b") ))
check "the two cards together gained exactly 700" [ $total -eq 700 ]

# --- two sessions for one card: the second answers card-busy.  The lease is
# taken once the card authenticated and its file settings were read
# (commands 1-6 of a new card); the first session holds it while its client
# stalls on the WriteRecord (command 8).
busy=$(sys_card 04bbbbbbbbbb01)
cb=$(sys_codes 40 1)
run --url "$PUB_URL" --card "$busy" --stall-after 8 --stall-ms 3000 topup "$cb" >"$T/busy_a" & pa=$!
sleep 1
out=$(run --url "$PUB_URL" --card "$busy" check); rc=$?
check "a second session on a leased card answers card-busy" [ "$(echo "$out" | field error)" = card-busy ]
wait $pa; ra=$?
check "the session holding the lease tops up (40)" eval '[ $ra -eq 0 ] && [ "$(card_value "$busy")" = 40 ]'

# --- the seed app's message flow on path / with modal messages
seed_card=$(sys_card 04dddddddddd01)
seed_out=$(/usr/bin/python3 "$OTA_SRCDIR/tests/integration/seed_client.py" \
    "${PUB_URL%/v1/session}/" "$seed_card" check 2>&1); rc=$?
check "seed app flow on path / (operation, command/response, result with requestId)" [ $rc -eq 0 ]
c6=$(sys_codes 250 1)
seed_out=$(/usr/bin/python3 "$OTA_SRCDIR/tests/integration/seed_client.py" \
    "${PUB_URL%/v1/session}/" "$seed_card" topup "$c6" 2>&1); rc=$?
check "an independent client (python3-websockets, path /) completes a top-up with a modal" eval '[ $rc -eq 0 ] && [ "$(card_value "$seed_card")" = 250 ]'

# --- a v2 client (batches; python3-websockets through ota-card relay) against
# the real worker and database: round trips per operation, the money, and
# v1 and v2 sessions on one card
v2() { /usr/bin/python3 "$OTA_SRCDIR/tests/integration/batch_client.py" "$@" 2>>"$T/client.err"; }
v2card=$(sys_card 04eeeeeeeeee01)
out=$(v2 "$PUB_URL" "$v2card" check); rc=$?
t_check=$(echo "$out" | field roundTrips)
check "v2 check of a new card: ok in at most 3 round trips ($t_check)" eval '[ $rc -eq 0 ] && [ "$t_check" -le 3 ]'
v2_ok=0; t_first=; t_steady=
for c in $(sys_codes 10 9); do
    out=$(v2 "$PUB_URL" "$v2card" topup "$c") && v2_ok=$((v2_ok + 1))
    t=$(echo "$out" | field roundTrips)
    [ -n "$t_first" ] || t_first=$t
    t_steady=$t
done
check "v2: 9 top-ups ok (first in $t_first round trips, at most 6; the 9th, 7 records to read, in $t_steady, at most 5)" \
    eval '[ $v2_ok -eq 9 ] && [ "$t_first" -le 6 ] && [ "$t_steady" -le 5 ] && [ "$(card_value "$v2card")" = 90 ]'
out=$(v2 "$PUB_URL" "$v2card" check --batch 2); rc=$?
check "v2 check with batches of 2: balance 90" eval '[ $rc -eq 0 ] && [ "$(echo "$out" | field balance)" = 90 ]'
c7=$(sys_codes 5 1)
out=$(run --url "$PUB_URL" --card "$v2card" topup "$c7"); rc=$?
check "a v1 top-up on the same card after v2 sessions: balance 95" eval '[ $rc -eq 0 ] && [ "$(card_value "$v2card")" = 95 ]'
out=$(v2 "$PUB_URL" "$v2card" topup "$c7" --expect failed); rc=$?
check "v2: a used code answers code-used" eval '[ $rc -eq 0 ] && [ "$(echo "$out" | field error)" = code-used ]'
echo "# v2 round trips: check $t_check, first top-up $t_first, steady-state top-up $t_steady"

# --- a worker killed mid-session: result reported, worker restarted
kcard=$(sys_card 04cccccccccc01)
c5=$(sys_codes 100 1)
run --url "$PUB_URL" --card "$kcard" --stall-after 3 --stall-ms 4000 topup "$c5" >"$T/kill_out" & pk=$!
sleep 1.5
wpids=$(pgrep -P "$GW_PID" ota-worker)
for p in $wpids; do kill -KILL "$p"; done
wait $pk; rc=$?
st=$(field status <"$T/kill_out")
check "a killed worker's session gets a result (failed or pending)" eval '[ "$st" = failed ] || [ "$st" = pending ]'
check "the gateway survived" kill -0 "$GW_PID"
check "workers were restarted and the gateway is ready again" wait_http "$ADMIN/readyz" 200
out=$(run --url "$PUB_URL" --card "$kcard" check); rc=$?
check "after the crash the card settles and answers check ok" [ "$rc" -eq 0 ]
check "no entry of that card is left in doubt" \
    [ "$(sys_sql "SELECT count(*) FROM ledger r WHERE r.kind='reserved' AND r.card_uid='\\x04cccccccccc01' AND NOT EXISTS (SELECT 1 FROM ledger f WHERE f.txn_id=r.txn_id AND f.kind<>'reserved')")" = 0 ]
check "ota-ctl audit finds no violation" ota-ctl --config "$CONF" audit

sys_finish
