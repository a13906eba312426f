#!/bin/bash
# test_finance_replica.sh: finance reads a hot standby (issue 15 item 2).
#
# The whole system on a primary (lib.sh) with pg_stat_statements, and a hot
# standby streaming from it (pg_basebackup -R, its own socket directory).
# After some top-ups and once the standby has replayed all of the
# primary's WAL:
#   - with db.finance_conninfo naming the standby, every finance report
#     (ledger show/daily/in-doubt/liability/reconcile, codes summary/list,
#     audit) equals the same report read from the primary (--conninfo);
#   - a finance login (role ota_finance) reads the standby the same way;
#   - the standby reports leave the primary's statement counters
#     (pg_stat_statements) without a single finance query, while the same
#     reports run on the primary do show up there (the counters work);
#   - writing through the standby (codes issue) fails with a clear error.
. "$OTA_SRCDIR/tests/integration/lib.sh"
command -v ota-card >/dev/null || { echo "ota-card not built" >&2; exit 99; }

PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
sys_start
SB_DIR=
SB_PID=
stop_standby() {
    if [ -n "$SB_PID" ]; then
        kill -INT "$SB_PID" 2>/dev/null
        pg__wait_gone "$SB_PID" 30 || kill -KILL "$SB_PID" 2>/dev/null
    fi
    SB_PID=
}
trap 'stop_standby; sys_cleanup' EXIT
eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (got '$2', wanted '$3')"; fi; }

sys_sql "CREATE EXTENSION pg_stat_statements" >/dev/null || { fail "pg_stat_statements"; sys_finish; }

# --- the hot standby
SB_DIR=$T/standby
mkdir -p "$SB_DIR" && chmod 700 "$SB_DIR"
[ "$(id -u)" -eq 0 ] && chown ota "$SB_DIR"
pg_as_owner "$PG_BIN/pg_basebackup" -h "$PG_DIR" -U ota -D "$SB_DIR" -R -X stream -c fast \
    --no-sync >"$T/basebackup.log" 2>&1 || { cat "$T/basebackup.log"; fail "pg_basebackup"; sys_finish; }
# The primary's data directory is its socket directory too: the copy holds
# its socket lock file, which is not ours.
rm -f "$SB_DIR"/.s.PGSQL.*
pg_as_owner "$PG_BIN/pg_ctl" -D "$SB_DIR" -l "$SB_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $SB_DIR -c hot_standby=on" start >/dev/null ||
    { tail "$SB_DIR/server.log"; fail "standby started"; sys_finish; }
SB_PID=$(head -n 1 "$SB_DIR/postmaster.pid")
SB_CONNINFO="host=$SB_DIR dbname=ota user=ota"
sb_sql() { pg_as_owner "$PG_BIN/psql" -X -q -h "$SB_DIR" -U ota -d ota -tAc "$1"; }
eq "the standby is in recovery (a hot standby)" "$(sb_sql 'SELECT pg_is_in_recovery()')" t

# --- some money: four top-ups on two cards, and codes left unused
c1=$(sys_card 04b1000000000a) && c2=$(sys_card 04b1000000000b) || { fail "cards"; sys_finish; }
for code in $(sys_codes 700 3); do
    ota-card run --json --url "$PUB_URL" --card "$c1" topup "$code" >/dev/null 2>&1
done
ota-card run --json --url "$PUB_URL" --card "$c2" topup "$(sys_codes 300 1)" >/dev/null 2>&1
sys_codes 50 5 >/dev/null
eq "four top-ups committed" "$(sys_sql "SELECT count(*) FROM ledger WHERE kind = 'committed'")" 4

# --- the standby catches up
caught_up() {
    lsn=$(sys_sql "SELECT pg_current_wal_lsn()")
    [ "$(sb_sql "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ]
}
check "the standby replayed all of the primary's WAL" wait_for 30 caught_up

# --- the reports, from the standby and from the primary
REPORTS="ledger show --format csv|ledger daily --format csv|ledger in-doubt --format csv|ledger liability --format csv|ledger liability --per-card --format csv|ledger reconcile --format csv|codes summary --format csv|codes list --format csv|audit"
run_reports() { # OUT ARGS...: every report, one file each
    out=$1
    shift
    mkdir -p "$out"
    i=0
    IFS='|'
    for r in $REPORTS; do
        i=$((i + 1))
        IFS=' '
        # shellcheck disable=SC2086
        ota-ctl --config "$CONF" "$@" $r >"$out/$i" 2>"$out/$i.err" || echo "report '$r' failed" >>"$out/errors"
        IFS='|'
    done
    IFS=' '
}
stmt_calls() {
    sys_sql "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d
             ON d.oid = s.dbid WHERE d.datname = 'ota' AND s.query ILIKE '%finance\\_%'"
}

sys_sql "SELECT pg_stat_statements_reset()" >/dev/null
run_reports "$T/standby-reports" "--db.finance_conninfo=$SB_CONNINFO"
after_standby=$(stmt_calls)
run_reports "$T/primary-reports" --conninfo "$PG_CONNINFO"
after_primary=$(stmt_calls)

check "every report ran on the standby" [ ! -e "$T/standby-reports/errors" ]
check "every report ran on the primary" [ ! -e "$T/primary-reports/errors" ]
if diff -r "$T/standby-reports" "$T/primary-reports" >"$T/reports.diff"; then
    ok "the reports read from the standby equal those from the primary"
else
    fail "standby and primary reports differ: $(head -c 400 "$T/reports.diff")"
fi
check "the reports are not empty (four committed top-ups in the ledger show)" \
    [ "$(grep -c ',committed,' "$T/standby-reports/1")" -ge 4 ]
eq "finance reports on the standby ran no finance query on the primary" "$after_standby" 0
check "the same reports on the primary show in its counters ($after_primary calls)" \
    [ "$after_primary" -gt 0 ]

# --- a finance login, as FINANCE.md sets one up, on the standby
sys_sql "CREATE ROLE fin_replica LOGIN IN ROLE ota_finance" >/dev/null
check "the finance login reached the standby" wait_for 30 eval \
    '[ "$(sb_sql "SELECT count(*) FROM pg_roles WHERE rolname = '"'fin_replica'"'")" = 1 ]'
sys_sql "SELECT pg_stat_statements_reset()" >/dev/null
ota-ctl --config "$CONF" "--db.finance_conninfo=host=$SB_DIR dbname=ota user=fin_replica" \
    ledger liability --per-card --format csv >"$T/fin.csv" 2>"$T/fin.err"
if [ "$(wc -l <"$T/fin.csv")" -ge 3 ] && cmp -s "$T/fin.csv" "$T/primary-reports/5"; then
    ok "the finance login's liability report (two cards) from the standby equals the primary's"
else
    fail "the finance login's liability report: $(head -c 300 "$T/fin.csv" "$T/fin.err")"
fi
eq "...and ran no finance query on the primary" "$(stmt_calls)" 0

# --- the standby cannot be written
out=$(ota-ctl --config "$CONF" --conninfo "$SB_CONNINFO" codes issue --amount 1 --count 1 2>&1)
check "issuing codes on the standby is refused with a clear error" eval \
    'echo "$out" | grep -qi "read-only"'

sys_finish
