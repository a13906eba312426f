#!/bin/sh
# Scale-out (issue 5): the real HAProxy from Debian in front of two
# ota-gateways, each with its own two workers, on one PostgreSQL; loopback
# only, free ports.  HAProxy health-checks each gateway's /readyz and sends
# a PROXY v2 header (gateway.proxy_protocol_from = 127.0.0.1), using
# deploy/haproxy/haproxy.cfg.in rendered by deploy/haproxy/render.sh.
#
#  1. load through HAProxy: parallel `ota-card run` top-ups on card files
#     plus `ota-load` checks; gateway 1 is killed with SIGKILL mid-run;
#     gateway 2 keeps serving; cut clients run again until their top-up is
#     done; gateway 1's workers do not outlive it;
#  2. after a settling check of every card, the invariants hold: each
#     card's balance equals the sum of its committed ledger entries,
#     nothing is in doubt, `ota-ctl audit` passes, /metrics is valid
#     (promtool) and shows the workers' numbers;
#  3. draining gateway 2 (SIGTERM) fails its /readyz at once, HAProxy takes
#     it out of rotation, and no session fails: the ones it runs finish
#     there, new ones go to gateway 1.
# Every process is stopped by pid on exit.
. "$OTA_SRCDIR/tests/integration/lib.sh"

PY=/usr/bin/python3
NCARDS=${SCALE_CARDS:-16}
NCODES=${SCALE_CODES:-8}
HA_PID=
GW1=
GW2=
GW2B=
CLIENT_PIDS=
WORKER_PIDS=

if ! command -v haproxy >/dev/null 2>&1; then
    echo "# SKIP: haproxy is not installed"
    exit 77
fi

scale_cleanup() {
    for p in $CLIENT_PIDS; do kill -TERM "$p" 2>/dev/null; done
    [ -n "$HA_PID" ] && kill -TERM "$HA_PID" 2>/dev/null
    for p in $GW1 $GW2 $GW2B; do kill -TERM "$p" 2>/dev/null; done
    i=0
    while [ $i -lt 100 ]; do
        alive=0
        for p in $GW1 $GW2 $GW2B $HA_PID; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
        i=$((i + 1))
    done
    for p in $CLIENT_PIDS $HA_PID $GW1 $GW2 $GW2B $WORKER_PIDS; do kill -KILL "$p" 2>/dev/null; done
    for p in $CLIENT_PIDS $HA_PID $GW1 $GW2 $GW2B; do wait "$p" 2>/dev/null; done
    GW_PID=
    sys_cleanup
}

# gw_conf N: writes $T/gwN.conf and sets PUBn/ADMn.
gw_conf() {
    pub=$(free_port)
    op=$(free_port)
    adm=$(free_port)
    eval "PUB$1=$pub ADM$1=$adm"
    cat >"$T/gw$1.conf" <<CONF
db.conninfo = $PG_CONNINFO
log.file = $T/gw$1.log
gateway.listen = 127.0.0.1:$pub
gateway.operator_listen = 127.0.0.1:$op
gateway.admin_listen = 127.0.0.1:$adm
gateway.proxy_protocol_from = 127.0.0.1
gateway.runtime_dir = $T/run$1
gateway.workers = 2
gateway.worker_path = $OTA_BUILDDIR/worker/ota-worker
gateway.heartbeat_ms = 250
gateway.worker_dead_ms = 2500
gateway.drain_timeout_ms = 20000
worker.keyfile = $T/keys.sealed
worker.kek_file = $T/kek
worker.operator_token_hash = $TOKEN_HASH
worker.response_timeout_ms = 5000
worker.operation_timeout_ms = 8000
worker.lease_ms = 10000
CONF
}

# gw_start N: starts gateway N, sets GWn to its pid.
gw_start() {
    ota-gateway --config "$T/gw$1.conf" >>"$T/gw$1.out" 2>&1 &
    eval "GW$1=$!"
}

# wait_ready URL PID: /readyz answers 200 within 30 s.
wait_ready() {
    i=0
    until curl -fsS -o /dev/null "$1/readyz" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 300 ] && return 1
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
}

# ha_status: "gw1=UP gw2=DOWN " from HAProxy's CSV statistics.
ha_status() {
    curl -fsS "http://127.0.0.1:$STATS_PORT/stats;csv" 2>/dev/null |
        awk -F, '$1 == "ota_gateways" && $2 ~ /^gw/ { printf "%s=%s ", $2, $18 }'
}

# wait_ha "gw1=UP gw2=UP" TENTHS: polls until HAProxy shows exactly that.
wait_ha() {
    i=0
    while [ $i -lt "$2" ]; do
        [ "$(ha_status)" = "$1 " ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

worker_pids_of() { pgrep -P "$1" -x ota-worker | tr '\n' ' '; }

# gone PID: the process no longer runs (exited, or a zombie left to init).
gone() {
    st=$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ')
    [ -z "$st" ] || [ "${st#Z}" != "$st" ]
}

card_value() { ota-card show --card "$1" | sed -n 's/^ *value \(-\{0,1\}[0-9][0-9]*\)$/\1/p' | head -n 1; }
field() { $PY -c 'import json,sys
lines=sys.stdin.read().strip().splitlines()
print(json.loads(lines[-1]).get(sys.argv[1], "") if lines else "")' "$1"; }

# client N: tops up card N with each of its codes through HAProxy; a run
# that was cut (no result, pending, card-busy, internal, ...) is run again
# until the code's outcome is known: ok, or code-used (an earlier cut run
# committed it).  One line per run in $T/runs.N: CODE_INDEX EXIT ERROR.
client() {
    n=$1
    k=0
    for code in $(cat "$T/codes.$n"); do
        k=$((k + 1))
        a=0
        while [ $a -lt 60 ]; do
            a=$((a + 1))
            stall=$(( (n + k + a) % 9 + 1 ))
            out=$(ota-card run --json --timeout-ms 20000 --url "$HA_URL" --card "$T/card.$n" \
                --stall-after $stall --stall-ms 400 topup "$code" 2>>"$T/client.err")
            rc=$?
            err=$(echo "$out" | field error)
            echo "$k $rc ${err:--}" >>"$T/runs.$n"
            [ $rc -eq 0 ] && break
            [ "$err" = code-used ] && break
            sleep 0.3
        done
    done
}

sum_runs() { cat "$T"/runs.* 2>/dev/null | awk -v w="$1" 'w == "all" || (w == "ok" && $2 == 0) || (w == "cut" && $2 != 0 && $3 != "code-used") { n++ } END { print n + 0 }'; }

# -------------------------------------------------------------- set-up
T=$(mktemp -d /tmp/ota-scale.XXXXXX)
chmod 755 "$T"
trap 'scale_cleanup' EXIT
trap 'exit 130' INT TERM
pg_start "$T" || exit 1
ota-ctl keys gen-kek "$T/kek" >/dev/null || exit 1
TOKEN=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
TOKEN_HASH=$(printf '%s' "$TOKEN" | ota-ctl operator token-hash) || exit 1
gw_conf 1
gw_conf 2
CONF=$T/gw1.conf
ota-ctl --config "$CONF" db migrate >"$T/migrate.log" 2>&1 || { cat "$T/migrate.log"; exit 1; }
ota-ctl --config "$CONF" keys import --master-keys "$MASTER_KEYS" --kek-file "$T/kek" \
    >/dev/null || exit 1
gw_start 1
gw_start 2
wait_ready "http://127.0.0.1:$ADM1" "$GW1" || { echo "gateway 1 not ready"; tail "$T/gw1.log"; exit 1; }
wait_ready "http://127.0.0.1:$ADM2" "$GW2" || { echo "gateway 2 not ready"; tail "$T/gw2.log"; exit 1; }

HA_PORT=$(free_port)
STATS_PORT=$(free_port)
HA_URL="ws://127.0.0.1:$HA_PORT/v1/session"
# The operations configuration, minus what needs root (user, admin socket,
# syslog), with every client on 127.0.0.1 allowed, and health checks every
# 250 ms so that the test is quick (fall 2: down after two failed checks).
"$OTA_SRCDIR/deploy/haproxy/render.sh" --bind "127.0.0.1:$HA_PORT" \
    --stats "127.0.0.1:$STATS_PORT" --maxconn 2000 --server-maxconn 500 --per-ip 2000 \
    --per-ip-rate 1000000 "gw1=127.0.0.1:$PUB1:$ADM1" "gw2=127.0.0.1:$PUB2:$ADM2" |
    sed -e '/^    user haproxy$/d' -e '/^    group haproxy$/d' -e '/^    stats socket /d' \
        -e 's#^    log /dev/log .*#    log stdout format raw local0#' \
        -e 's/ inter 2s fastinter 1s downinter 5s / inter 250ms fastinter 250ms downinter 250ms /' \
        >"$T/haproxy.cfg"
check "the rendered HAProxy configuration is valid (haproxy -c) and checks every 250 ms" \
    sh -c "haproxy -c -f '$T/haproxy.cfg' >'$T/hac.out' 2>&1 && grep -q 'inter 250ms' '$T/haproxy.cfg'"
haproxy -db -f "$T/haproxy.cfg" >"$T/haproxy.out" 2>&1 &
HA_PID=$!
check "HAProxy marks both gateways UP (/readyz on their admin ports)" wait_ha "gw1=UP gw2=UP" 200

# -------------------------------------------------------------- 1. kill -9
i=1
while [ $i -le "$NCARDS" ]; do
    ota-card new --card "$T/card.$i" --uid "$(printf '04%012x' $((0x5ca1e0000000 + i)))" --profile \
        --master-keys "${MASTER_KEYS%,*}" >/dev/null || exit 1
    : >"$T/codes.$i"
    for amt in $(seq 1 "$NCODES"); do
        ota-ctl --config "$CONF" codes issue --amount $((amt * 100 + i)) --count 1 >>"$T/codes.$i" 2>/dev/null
    done
    i=$((i + 1))
done
check "$NCARDS cards and $((NCARDS * NCODES)) codes ready" \
    [ "$(cat "$T"/codes.* | sort -u | wc -l)" -eq $((NCARDS * NCODES)) ]

W1_BEFORE=$(worker_pids_of "$GW1")
W2_BEFORE=$(worker_pids_of "$GW2")
WORKER_PIDS="$W1_BEFORE $W2_BEFORE"
ota-load --url "$HA_URL" --master-keys "${MASTER_KEYS%,*}" --concurrency 8 --duration 5 \
    --delay-ms 20 --json >"$T/load.json" 2>"$T/load.err" &
LOAD_PID=$!
CLIENT_PIDS="$LOAD_PID"
i=1
while [ $i -le "$NCARDS" ]; do
    client $i &
    CLIENT_PIDS="$CLIENT_PIDS $!"
    i=$((i + 1))
done
sleep 1.5
before_kill=$(sum_runs all)
kill -KILL "$GW1"
wait "$GW1" 2>/dev/null
KILLED_AT=$(date +%s)
echo "# gateway 1 killed (SIGKILL) after $before_kill client runs"
check "HAProxy takes the killed gateway out of rotation" wait_ha "gw1=DOWN gw2=UP" 100
# Its workers learn it at once (PR_SET_PDEATHSIG), finish their database
# writes and exit; at the latest after ten missed heartbeats.
i=0
while [ $i -lt 100 ]; do
    left=""
    for p in $W1_BEFORE; do gone "$p" || left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.1
    i=$((i + 1))
done
check "the killed gateway's workers ($W1_BEFORE) exit within 10 s (took $((i / 10)).$((i % 10)) s)" \
    [ -z "$left" ]
check "the other gateway keeps serving (/readyz 200)" \
    curl -fsS -o /dev/null "http://127.0.0.1:$ADM2/readyz"
for p in $CLIENT_PIDS; do wait "$p"; done
CLIENT_PIDS=
runs=$(sum_runs all)
ok_runs=$(sum_runs ok)
cut=$(sum_runs cut)
echo "# client runs: $runs, ok $ok_runs, cut or failed and run again $cut"
codes_done=$(cat "$T"/runs.* | awk '$2 == 0 || $3 == "code-used"' | wc -l)
check "every cut client ran again until its top-up was decided ($codes_done of $((NCARDS * NCODES)) codes)" \
    [ "$codes_done" -eq $((NCARDS * NCODES)) ]
check "the kill cut at least one client session (the test can see a failure)" [ "$cut" -gt 0 ]
load_ok=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1])).get("ok", 0))' "$T/load.json" 2>/dev/null || echo 0)
load_all=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1])).get("completed", 0))' "$T/load.json" 2>/dev/null || echo 0)
echo "# ota-load through HAProxy during the kill: $load_all operations, $load_ok ok"
check "ota-load through HAProxy kept completing operations across the kill" [ "$load_ok" -gt 0 ]

# -------------------------------------------------------------- 2. invariants
# A settling check on each card (its next session settles what was in
# doubt); card-busy while a dead worker's lease runs out is retried.
settled=0
i=1
while [ $i -le "$NCARDS" ]; do
    a=0
    while [ $a -lt 40 ]; do
        a=$((a + 1))
        ota-card run --json --timeout-ms 20000 --url "$HA_URL" --card "$T/card.$i" check \
            >"$T/settle.$i" 2>>"$T/client.err" && { settled=$((settled + 1)); break; }
        sleep 0.5
    done
    i=$((i + 1))
done
check "a check on every card succeeds after the kill ($settled of $NCARDS)" [ "$settled" -eq "$NCARDS" ]
bad=""
total_cards=0
i=1
while [ $i -le "$NCARDS" ]; do
    uid=$(printf '04%012x' $((0x5ca1e0000000 + i)))
    v=$(card_value "$T/card.$i")
    l=$(sys_sql "SELECT COALESCE(sum(amount), 0) FROM ledger WHERE kind = 'committed' AND card_uid = '\\x$uid'")
    [ "$v" = "$l" ] || bad="$bad card$i:$v/$l"
    total_cards=$((total_cards + ${v:-0}))
    i=$((i + 1))
done
check "for every card, its balance equals the sum of its committed ledger entries$bad" [ -z "$bad" ]
used=$(sys_sql "SELECT COALESCE(sum(amount), 0) FROM codes WHERE state = 'used'")
check "all cards together hold exactly the value of the used codes ($total_cards = $used)" \
    [ "$total_cards" = "$used" ]
in_doubt=$(sys_sql "SELECT count(*) FROM ledger r WHERE r.kind = 'reserved' AND NOT EXISTS (SELECT 1 FROM ledger f WHERE f.txn_id = r.txn_id AND f.kind <> 'reserved')")
check "nothing is left in doubt after the settling checks" [ "$in_doubt" = 0 ]
check "ota-ctl audit passes" sh -c "ota-ctl --config '$CONF' audit >'$T/audit.out' 2>&1"
echo "# $(sys_sql "SELECT count(*) FROM ledger WHERE kind = 'committed'") committed, $(sys_sql "SELECT count(*) FROM ledger WHERE kind = 'voided'") voided, total $total_cards"

# Gateway 1 comes back; /metrics of both gateways, with the workers' stats.
gw_start 1
wait_ready "http://127.0.0.1:$ADM1" "$GW1" || { echo "gateway 1 did not restart"; tail "$T/gw1.log"; }
check "the restarted gateway rejoins HAProxy's rotation" wait_ha "gw1=UP gw2=UP" 200
for n in 1 2; do
    eval "adm=\$ADM$n"
    # The workers count every 5 s: a restarted worker's first counts come
    # after one round, and a reading from before the settling checks may
    # still be shown for one round.  At most 20 s.
    zero() {
        grep -qx 'ota_ledger_in_doubt 0' "$1" && grep -qx 'ota_ledger_in_doubt_old 0' "$1" &&
            grep -qx 'ota_codes_reserved 0' "$1" && grep -qx 'ota_cards_frozen 0' "$1"
    }
    i=0
    while [ $i -lt 200 ]; do
        curl -fsS "http://127.0.0.1:$adm/metrics" >"$T/metrics.$n" 2>/dev/null
        zero "$T/metrics.$n" && break
        sleep 0.1
        i=$((i + 1))
    done
    check "gateway $n: /metrics passes promtool check metrics" \
        sh -c "promtool check metrics <'$T/metrics.$n' >'$T/promtool.$n' 2>&1"
    check "gateway $n: the ledger gauges say nothing in doubt, no code reserved, no card frozen" \
        zero "$T/metrics.$n"
done
dbc=$(awk '/^ota_worker_db_latency_seconds_count/ { s += $2 } END { print s + 0 }' "$T/metrics.2")
check "gateway 2 reports its workers' database latency ($dbc ledger requests)" [ "$dbc" -gt 0 ]
check "gateway 2 counted no PROXY header refusal (HAProxy's v2 headers were accepted)" \
    grep -qx 'ota_gateway_connections_rejected_total{reason="proxy"} 0' "$T/metrics.2"

# -------------------------------------------------------------- 3. drain
# Sessions that will still run when gateway 2 drains: slow ones (each
# answer held 1.5 s), plus a steady stream of quick sessions.
for i in 1 2 3 4 5 6; do
    ota-card new --card "$T/slow.$i" --uid "$(printf '04%012x' $((0x5ca1e1000000 + i)))" --profile \
        --master-keys "${MASTER_KEYS%,*}" >/dev/null
done
: >"$T/drain.runs"
i=1
while [ $i -le 6 ]; do
    (ota-card run --json --timeout-ms 30000 --url "$HA_URL" --card "$T/slow.$i" \
        --stall-after 2 --stall-ms 1500 check >/dev/null 2>>"$T/client.err"
     echo "slow$i $?" >>"$T/drain.runs") &
    CLIENT_PIDS="$CLIENT_PIDS $!"
    i=$((i + 1))
done
i=1
while [ $i -le 4 ]; do
    (end=$(($(date +%s) + 5))
     while [ "$(date +%s)" -lt $end ]; do
         out=$(ota-card run --json --timeout-ms 30000 --url "$HA_URL" --card "$T/card.$i" check \
             2>>"$T/client.err")
         rc=$?
         echo "quick$i $rc $(date +%s.%N) $out" >>"$T/drain.runs"
     done) &
    CLIENT_PIDS="$CLIENT_PIDS $!"
    i=$((i + 1))
done
sleep 0.8
W2_NOW=$(worker_pids_of "$GW2")
WORKER_PIDS="$WORKER_PIDS $W2_NOW"
active2=$(curl -fsS "http://127.0.0.1:$ADM2/metrics" 2>/dev/null | sed -n 's/^ota_gateway_sessions_active \([0-9]*\)$/\1/p')
kill -TERM "$GW2"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADM2/readyz")
check "a draining gateway answers /readyz 503 at once (got $code)" [ "$code" = 503 ]
t0=$(date +%s%N)
wait_ha "gw1=UP gw2=DOWN" 50
down=$?
t1=$(date +%s%N)
check "HAProxy takes the draining gateway out of rotation ($(( (t1 - t0) / 1000000 )) ms)" [ $down -eq 0 ]
for p in $CLIENT_PIDS; do wait "$p"; done
CLIENT_PIDS=
i=0
while kill -0 "$GW2" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
wait "$GW2" 2>/dev/null
gw2_rc=$?
n_drain=$(wc -l <"$T/drain.runs")
n_fail=$(awk '$2 != 0' "$T/drain.runs" | wc -l)
echo "# drain: gateway 2 had $active2 sessions running at SIGTERM; $n_drain sessions around the drain, $n_fail failed"
check "no session failed around the drain ($n_drain sessions, 6 of them slow)" \
    eval '[ "$n_fail" -eq 0 ] && [ "$n_drain" -gt 6 ]'
awk '$2 != 0' "$T/drain.runs" | sed 's/^/#   /'

check "the drained gateway exited by itself with status 0 (after $((i / 10)) s)" [ "$gw2_rc" -eq 0 ]
left=""
for p in $W2_NOW; do gone "$p" || left="$left $p"; done
check "the drained gateway's workers have exited" [ -z "$left" ]
check "the other gateway still serves (/readyz 200)" curl -fsS -o /dev/null "http://127.0.0.1:$ADM1/readyz"
GW2=
check "ota-ctl audit passes after the drain" sh -c "ota-ctl --config '$CONF' audit >'$T/audit2.out' 2>&1"
sys_finish
