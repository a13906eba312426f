#!/bin/bash
# test_failover.sh: the ledger survives losing its PostgreSQL server
# (issue 15 item 1), on a real Patroni cluster: etcd and two PostgreSQL 15
# nodes with synchronous replication (tests/integration/patroni.sh, from
# deploy/patroni/patroni.yml.in).  The workers reach the primary through
# libpq multi-host conninfo with target_session_attrs=read-write.
#
# Three rounds, each under load: ota-load with 64 phones (half their
# sessions top-ups, half checks), plus four card files topped up one
# ota-card session at a time (their results and card files outlive the
# round).  Mid-round:
#   1. the primary's postmaster alone is SIGKILLed: Patroni restarts it in
#      place (a crash without failover);
#   2. the primary node is lost: SIGKILL to its Patroni and its postmaster;
#      the standby is promoted;
#   3. the old primary comes back (it rejoins as a standby through
#      pg_rewind) and then the new primary is lost: failover back.
# After each round: no session answered card-busy, card-error or internal;
# every card that was topping up before the loss had a new top-up
# committed within 30 s of it; every top-up that answered ok (ota-load's
# count, the card files' txn ids) is committed in the primary's ledger;
# the card files' next session (run by the test) settles every in-doubt
# entry, and their balances equal their committed sums; `ota-ctl audit`
# passes.  During the node losses sessions were answered `overloaded`
# (retryable), and /readyz (503) and /metrics (worker_db_ok 0) showed the
# outage while it lasted.
. "$OTA_SRCDIR/tests/integration/lib.sh"
. "$OTA_SRCDIR/tests/integration/patroni.sh"
for p in ota-load ota-card patroni etcd; do
    command -v "$p" >/dev/null || { echo "$p missing (build, or run deploy/setup.sh)" >&2; exit 99; }
done

PHONES=${FAILOVER_PHONES:-64}
LOSS_AT=8     # seconds into a round
ROUND_S=40    # ota-load's duration
RESUME_S=30   # the issue's bound on resuming after a loss
LOSS=0

T=$(mktemp -d /tmp/ota-ha.XXXXXX)
chmod 755 "$T"
trap 'sys_gateway_stop; ha_stop; [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

ha_start "$T" || exit 1
echo "# Patroni cluster up: node 1 leads, node 2 is the synchronous standby"
PG_CONNINFO=$HA_CONNINFO
ota-ctl keys gen-kek "$T/kek" >/dev/null || exit 1
TOKEN=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
TOKEN_HASH=$(printf '%s' "$TOKEN" | ota-ctl operator token-hash) || exit 1
SYS_EXTRA_CONF="worker.capacity = 256"
sys_write_conf
# FAILOVER_WORKER: another ota-worker binary to test (e.g. an older build).
if [ -n "${FAILOVER_WORKER:-}" ]; then
    sed -i "s|^gateway.worker_path = .*|gateway.worker_path = $FAILOVER_WORKER|" "$CONF"
fi
ota-ctl --config "$CONF" db migrate >"$T/migrate.log" 2>&1 || { cat "$T/migrate.log"; exit 1; }
ota-ctl --config "$CONF" keys import --master-keys "$MASTER_KEYS" --kek-file "$T/kek" \
    >/dev/null || exit 1
sys_gateway_start

PY=/usr/bin/python3
now() { date +%s.%N; }
sql() { ha_psql "$LEADER" -tAc "$1"; }
eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (got '$2', wanted '$3')"; fi; }
LEADER=1

# Four card files, each topped up in its own loop of ota-card sessions.
CARDS="04a1000000000a 04a1000000000b 04a1000000000c 04a1000000000d"
for uid in $CARDS; do sys_card "$uid" >/dev/null || exit 1; done

card_loop() { # UID STOPFILE: one top-up after another, fresh code each time
    while [ ! -e "$2" ]; do
        code=$(ota-ctl --config "$CONF" codes issue --amount 10 --count 1 2>/dev/null) || { sleep 0.5; continue; }
        ota-card run --json --url "$PUB_URL" --card "$T/$1.card" --timeout-ms 60000 topup "$code" \
            >>"$T/$1.results" 2>>"$T/$1.err"
        sleep 0.2
    done
}

# Polls /readyz and /metrics: "time readyz_status db_ok_workers" per line.
monitor() {
    while [ ! -e "$1" ]; do
        rz=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$ADMIN/readyz")
        dbok=$(curl -s --max-time 1 "$ADMIN/metrics" |
            awk '/^ota_gateway_worker_db_ok\{/ {s += $2} END {print s + 0}')
        echo "$(now) $rz $dbok"
        sleep 0.2
    done
}

outcome() { # JSONFILE NAME: how many operations ended so
    jq -r --arg k "$2" '.outcomes[$k] // 0' "$1"
}

# round NAME ACTION...: load, ACTION at LOSS_AT s (it sets LOSS), checks.
round() {
    name=$1
    shift
    rm -f "$T/stop"
    # A top-up refused during the outage uses up its code too (ota-load
    # never reuses one, and its phones retry at once): enough for the whole
    # round, also with v2 clients, which get through ~40 k sessions in a
    # node-loss round.  Half the sessions are checks, which need none.
    t0=$(now)
    : >"$T/codes.$name"
    for _b in 10000 10000 10000 10000 10000 10000; do
        ota-ctl --config "$CONF" codes issue --amount 5 --count "$_b" >>"$T/codes.$name" || {
            fail "$name: codes issued"
            return
        }
    done
    echo "# $name: 60000 codes issued in $(awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}') s"
    start=$(now)
    ota-load --url "$PUB_URL" --master-keys "${MASTER_KEYS%,*}" --concurrency "$PHONES" \
        --duration "$ROUND_S" --codes "$T/codes.$name" --mix check=1,topup=1 --timeout-ms 60000 --json \
        >"$T/load.$name.json" 2>"$T/load.$name.err" &
    load_pid=$!
    pids=
    for uid in $CARDS; do
        card_loop "$uid" "$T/stop" &
        pids="$pids $!"
    done
    monitor "$T/stop" >"$T/monitor.$name" &
    mon_pid=$!
    sleep "$LOSS_AT"
    "$@"
    # The ota-load run ends by itself (duration, then drain); bounded.
    i=0
    while kill -0 "$load_pid" 2>/dev/null && [ $i -lt $(((ROUND_S + 90) * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -0 "$load_pid" 2>/dev/null && { kill -KILL "$load_pid"; fail "$name: ota-load did not finish in time"; }
    wait "$load_pid"
    touch "$T/stop"
    for p in $pids $mon_pid; do wait "$p"; done
    check_round "$name" "$start"
}

check_round() {
    name=$1 start=$2
    j=$T/load.$name.json
    [ -s "$j" ] || { fail "$name: ota-load printed a report"; cat "$T/load.$name.err" >&2; return; }
    echo "# $name: ota-load $(jq -c '{completed, ok_topups, outcomes}' "$j")"
    eq "$name: ota-load had a code for every top-up" "$(jq -r .codes_exhausted "$j")" 0
    bad=$(jq -r '[.outcomes | to_entries[] | select(.key | test("card-busy|card-error|internal")) | .value] | add // 0' "$j")
    eq "$name: no phone session answered card-busy, card-error or internal" "$bad" 0
    cbad=$(cat "$T"/*.results 2>/dev/null | jq -r 'select(.error == "card-busy" or .error == "card-error" or .error == "internal") | .error' | wc -l)
    eq "$name: no card-file session answered card-busy, card-error or internal" "$cbad" 0

    # Every card that was topping up before the loss had a new top-up
    # (reserved after the loss, committed) within RESUME_S of it.
    res=$(sql "WITH active AS (
                 SELECT DISTINCT card_uid FROM ledger
                 WHERE created_at >= to_timestamp($start) AND created_at < to_timestamp($LOSS)),
               resumed AS (
                 SELECT r.card_uid, min(r.created_at) AS t FROM ledger r
                 JOIN ledger c ON c.txn_id = r.txn_id AND c.kind = 'committed'
                 WHERE r.kind = 'reserved' AND r.created_at > to_timestamp($LOSS)
                 GROUP BY r.card_uid)
               SELECT count(*), count(*) FILTER (WHERE t IS NULL OR t > to_timestamp($LOSS + $RESUME_S)),
                      coalesce(round(max(extract(epoch FROM t) - $LOSS)::numeric, 1), -1)
               FROM active LEFT JOIN resumed USING (card_uid)")
    IFS='|' read -r nactive nlate slowest <<<"$res"
    echo "# $name: $nactive cards active before the loss; the slowest resumed $slowest s after it"
    if [ "${nactive:-0}" -ge "$PHONES" ] && [ "$nlate" = 0 ]; then
        ok "$name: every card ($nactive) had a top-up committed within $RESUME_S s of the loss"
    else
        fail "$name: cards resumed within $RESUME_S s: $nactive active, $nlate late or never"
    fi

    # Every ok is in the primary's ledger.
    okt=$(jq -r '.ok_topups' "$j")
    booked=$(sql "SELECT count(*) FROM ledger c JOIN ledger r ON r.txn_id = c.txn_id
                  AND r.kind = 'reserved' WHERE c.kind = 'committed' AND c.flags & 4 = 0
                  AND r.created_at >= to_timestamp($start)")
    if [ "$okt" -gt 0 ] && [ "$booked" -ge "$okt" ]; then
        ok "$name: all $okt top-ups ota-load saw ok are committed ($booked booked in-session)"
    else
        fail "$name: ok top-ups $okt, committed in-session $booked"
    fi
    missing=0 seen=0
    for txn in $(cat "$T"/*.results 2>/dev/null | jq -r 'select(.status == "ok") | .txn // empty'); do
        seen=$((seen + 1))
        [ "$(sql "SELECT count(*) FROM ledger WHERE txn_id = '$txn' AND kind = 'committed'")" = 1 ] ||
            missing=$((missing + 1))
    done
    if [ "$seen" -gt 0 ] && [ "$missing" = 0 ]; then
        ok "$name: the $seen ok top-ups of the card files so far are all committed"
    else
        fail "$name: card-file ok top-ups $seen, missing from the ledger $missing"
    fi

    # The card files' next session settles what is in doubt.
    doubt=$(sql "SELECT count(*) FROM finance_in_doubt")
    echo "# $name: $doubt entries in doubt before the cards' next sessions"
    for uid in $CARDS; do
        ota-card run --json --url "$PUB_URL" --card "$T/$uid.card" check >"$T/$uid.check" 2>&1 ||
            fail "$name: check of card $uid: $(tail -n 1 "$T/$uid.check")"
        bal=$(jq -r '.balance // empty' "$T/$uid.check" | tail -n 1)
        sum=$(sql "SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = 'committed' AND card_uid = '\\x$uid'")
        [ "$bal" = "$sum" ] || fail "$name: card $uid balance $bal, committed sum $sum"
    done
    # ota-load's phones ran their cards' next sessions within the round
    # (each session settles its card first); the card files' ran above.
    pend=$(jq -r '.outcomes.pending // 0' "$j")
    left=$(sql "SELECT count(*) FROM finance_in_doubt")
    eq "$name: every entry left in doubt ($pend sessions answered pending) settled at its card's next session" "$left" 0
    check "$name: ota-ctl audit passes on the primary" ota-ctl --config "$CONF" audit
}

# What /readyz and /metrics showed between the loss and the end.
check_monitor() {
    name=$1
    awk -v l="$LOSS" '$1 > l && $2 != 200 {n++} END {exit !(n > 0)}' "$T/monitor.$name"
    check "$name: /readyz answered 503 during the outage" [ $? = 0 ]
    awk -v l="$LOSS" '$1 > l && $3 == 0 {n++} END {exit !(n > 0)}' "$T/monitor.$name"
    check "$name: /metrics showed no worker with a database during the outage" [ $? = 0 ]
    last=$(tail -n 1 "$T/monitor.$name" | awk '{print $2}')
    eq "$name: /readyz is 200 again after the outage" "$last" 200
    over=$(outcome "$T/load.$name.json" overloaded)
    if [ "$over" -gt 0 ]; then ok "$name: sessions during the outage got overloaded ($over)"; else fail "$name: no overloaded answer during the outage"; fi
}

wait_leader() { # NODE SECONDS
    i=0
    until [ "$(ha_leader)" = "$1" ]; do
        i=$((i + 1))
        [ $i -gt $(($2 * 5)) ] && return 1
        sleep 0.2
    done
}

# --- 1. the postmaster alone: Patroni restarts it in place
crash_postmaster() {
    LOSS=$(now)
    pm=$(ha_kill_postmaster "$LEADER") || { fail "crash: postmaster found"; return; }
    echo "# crash: SIGKILL to postmaster $pm of node $LEADER"
    ha__wait 30 "postmaster $pm to exit" ha__gone "$pm"
    ha__wait 60 "Patroni to start a new postmaster on node $LEADER" ha_postmaster "$LEADER"
    check "crash: Patroni restarted the postmaster in place (node $LEADER leads again)" wait_leader "$LEADER" 60
    t=$(now)
    echo "# crash: node $LEADER primary again $(awk -v a="$t" -v b="$LOSS" 'BEGIN {printf "%.1f", a - b}') s after the kill"
}
round crash crash_postmaster
check "crash: node 2 is still the synchronous standby" ha__wait 60 "node 2 sync" ha_is_sync 2

# --- 2. the primary node is lost: failover to node 2
lose_node() {
    old=$LEADER new=$((3 - LEADER))
    LOSS=$(now)
    ha_kill_node "$old"
    echo "# lose: SIGKILL to Patroni and postmaster of node $old"
    if wait_leader "$new" 60; then
        ok "lose: node $new was promoted"
        echo "# lose: node $new promoted $(awk -v a="$(now)" -v b="$LOSS" 'BEGIN {printf "%.1f", a - b}') s after the loss"
        LEADER=$new
    else
        fail "lose: node $new was not promoted within 60 s"
    fi
}
round lose lose_node
check_monitor lose

# --- 3. the old primary rejoins as a standby, then failover back
# pg_rewind makes node 1 replay up to the position the primary had reached
# when it ran; an idle primary may not have sent that far yet, so each poll
# also writes a little WAL there (a checkpoint), as traffic would.
rejoined() {
    ha_is_replica 1 && return 0
    ha_psql "$LEADER" -c CHECKPOINT >/dev/null 2>&1
    return 1
}
ha_start_node 1
check "rejoin: node 1 rejoined as a streaming standby" ha__wait 90 "node 1 replica" rejoined
check "rejoin: node 1 is the synchronous standby again" ha__wait 60 "node 1 sync" ha_is_sync 1
check "rejoin: Patroni rewound node 1 with pg_rewind" grep -q "pg_rewind: Done" "$T/ha/node1/patroni.log"
round back lose_node
check_monitor back
eq "back: node 1 leads again" "$(ha_leader)" 1

sys_finish
