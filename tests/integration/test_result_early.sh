#!/bin/sh
# A booked top-up answers `ok` before its lease is released (issue 16
# point 8), on real processes.
#
# The test holds a FOR KEY SHARE lock on the card's lease row (made
# beforehand, expired, so the worker's acquire may still take it over:
# that UPDATE does not touch the key and is not blocked), so the worker's
# lease release (a DELETE) waits on the lock while everything before it
# runs.  The client must have its result `ok` while the release still
# waits: nothing after the booking (a stray client message, the worker's
# death) can then turn it into `failed`.  A worker that answered only after
# the release would answer once the release failed (the database request
# timeout, 15 s) and would log that failure first.
. "$OTA_SRCDIR/tests/integration/lib.sh"

SYS_WORKERS=1
sys_start

run() { ota-card run --json "$@" 2>>"$T/client.err"; }
field() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d.get(sys.argv[1], ""))' "$1"; }

uid=04d0d0d0d0d001
card=$(sys_card $uid)
code=$(sys_codes 300 1)
stale='\x00000000000000000000000000000000'
sys_sql "INSERT INTO card_leases (card_uid, holder, expires_at)
         VALUES ('\\x$uid', '$stale', now() - interval '1 hour')" >/dev/null

# The lock, held by a psql session of its own until the test ends it.
pg_as_owner "$PG_BIN/psql" -X -q -h "$PG_DIR" -U ota -d ota >"$T/lock.out" 2>&1 <<SQL &
BEGIN;
SELECT 1 FROM card_leases WHERE card_uid = '\\x$uid' FOR KEY SHARE;
SELECT pg_sleep(300);
COMMIT;
SQL
locker=$!
lock_held() {
    [ "$(sys_sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%' AND state = 'active'")" = 1 ]
}
check "the lease row is locked FOR KEY SHARE" wait_for 30 lock_held

run --url "$PUB_URL" --card "$card" topup "$code" >"$T/topup.out" &
client=$!
client_done() { ! kill -0 "$client" 2>/dev/null; }
check "the client has its result (30 s bound)" wait_for 30 client_done
wait "$client"
# The worker's log says in which order things happened: its result for the
# top-up, then (later, if at all) the release's failure.  A worker that
# answered after the release logs the release's end first (here: its
# database timeout, 15 s after the booking).
first_line() { grep -n "$1" "$T/gateway.log" | head -n 1 | cut -d: -f1; }
res_line=$(first_line 'prog=ota-worker .*event=session_result .*op=topup')
rel_line=$(first_line 'request=lease_release')
check "the worker sent the result before its lease release ended (result at line $res_line, release at line ${rel_line:-none})" \
    eval '[ -n "$res_line" ] && { [ -z "$rel_line" ] || [ "$res_line" -lt "$rel_line" ]; }'
check "the result is ok with the amount" eval '[ "$(field status <"$T/topup.out")" = ok ] && [ "$(field amount <"$T/topup.out")" = 300 ]'
release_waits() {
    [ "$(sys_sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT ota_worker_lease_release%' AND wait_event_type = 'Lock'")" = 1 ]
}
check "... and the worker's lease release was still waiting on the lock" wait_for 10 release_waits
check "the worker holds the lease (the release has not happened)" \
    [ "$(sys_sql "SELECT count(*) FROM card_leases WHERE card_uid = '\\x$uid' AND holder <> '$stale'")" = 1 ]
check "the ledger has the committed entry" \
    [ "$(sys_sql "SELECT count(*) FROM ledger WHERE card_uid = '\\x$uid' AND kind = 'committed' AND amount = 300")" = 1 ]

# The lock goes; the release completes.
sys_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%'" >/dev/null
lease_gone() { [ "$(sys_sql "SELECT count(*) FROM card_leases WHERE card_uid = '\\x$uid'")" = 0 ]; }
check "once the lock is gone the lease is released" wait_for 30 lease_gone
out=$(run --url "$PUB_URL" --card "$card" check)
check "the card answers check with its new balance" [ "$(echo "$out" | field balance)" = 300 ]
check "ota-ctl audit finds no violation" ota-ctl --config "$CONF" audit
wait "$locker"

sys_finish
