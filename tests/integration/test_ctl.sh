#!/bin/sh
# test_ctl.sh: ota-ctl and the schema on a throwaway PostgreSQL 15:
# migrations (twice: idempotent), the key file (KEK file and passphrase),
# codes issued once on stdout and stored only as hashes, the database's own
# ledger rules (append-only, one final entry, no final entry without a
# reservation, a code committed once), the roles (finance reads views only
# and never a code hash; the worker cannot issue codes), freezing and
# unfreezing (recorded), the reports, and `ota-ctl audit` (passes on a
# clean database, fails on a broken invariant or a disabled guard).
# Needs OTA_SRCDIR and OTA_BUILDDIR (set by `make check`), or runs from a
# build directory with the source tree next to this script.
set -u
here=$(cd "$(dirname "$0")" && pwd)
OTA_SRCDIR=${OTA_SRCDIR:-$(cd "$here/../.." && pwd)}
OTA_BUILDDIR=${OTA_BUILDDIR:-$(pwd)}
ctl_bin="$OTA_BUILDDIR/tools/ota-ctl"
[ -x "$ctl_bin" ] || { echo "test_ctl.sh: $ctl_bin not built (make tools/ota-ctl)" >&2; exit 99; }

. "$OTA_SRCDIR/tests/integration/pg.sh"
tmp=$(mktemp -d /tmp/ota-ctl.XXXXXX) || exit 99
trap 'pg_stop; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

. "$OTA_SRCDIR/tests/integration/tap.sh"
# expect CODE DESCRIPTION COMMAND...: the command exits with CODE.
expect() {
    want=$1 what=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" -eq "$want" ]; then ok "$what"; else
        fail "$what (exit $got, wanted $want)"
        sed 's/^/    | /' "$tmp/out" "$tmp/err" | head -20
    fi
}
# sql_fails DESCRIPTION SQL [USER]: the statement is refused.
sql_fails() {
    if pg_as_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -U "${3:-ota}" -d ota \
        -c "$2" >"$tmp/out" 2>"$tmp/err"; then
        fail "$1 (the database accepted: $2)"
    else
        ok "$1 ($(head -n 1 "$tmp/err" | cut -c1-90))"
    fi
}
# sql_value SQL [USER]: one value.
sql_value() {
    pg_as_owner "$PG_BIN/psql" -X -q -tA -v ON_ERROR_STOP=1 -h "$PG_DIR" -U "${2:-ota}" -d ota -c "$1"
}
eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (got '$2', wanted '$3')"; fi; }

pg_start "$tmp" || exit 99
conf="$tmp/ota.conf"
cat >"$conf" <<EOF
db.conninfo = $PG_CONNINFO
worker.keyfile = $tmp/keys.sealed
worker.kek_file = $tmp/kek
currency = EUR
EOF
ctl() { "$ctl_bin" --config "$conf" "$@"; }

# --- migrations
nfiles=$(ls "$OTA_SRCDIR"/schema/[0-9]*_*.sql | wc -l)
expect 0 "db status before migrating" ctl db status --schema-dir "$OTA_SRCDIR/schema"
eq "db status lists every file as pending" "$(grep -c '^pending' "$tmp/out")" "$nfiles"
expect 0 "db migrate" ctl db migrate --schema-dir "$OTA_SRCDIR/schema"
eq "db migrate applied every file" "$(grep -c '^applied' "$tmp/out")" "$nfiles"
expect 0 "db migrate again (OTA_SCHEMA_DIR)" env OTA_SCHEMA_DIR="$OTA_SRCDIR/schema" "$ctl_bin" --config "$conf" db migrate
eq "the second migrate applies nothing" "$(grep -c '^applied' "$tmp/out")" 0
eq "schema_migrations records each file once" "$(sql_value 'SELECT count(*) FROM schema_migrations')" "$nfiles"
expect 0 "db status after migrating" ctl db status --schema-dir "$OTA_SRCDIR/schema"
grep -q '^0 pending' "$tmp/out" && ok "nothing pending" || fail "db status still shows pending migrations"
mkdir "$tmp/schema-bad" && printf 'CREATE TABLE broken (;\n' >"$tmp/schema-bad/500_broken.sql"
cp "$OTA_SRCDIR"/schema/*.sql "$tmp/schema-bad/"
expect 1 "a failing migration fails db migrate" ctl db migrate --schema-dir "$tmp/schema-bad"
grep -q '500_broken' "$tmp/err" && ok "the error names the file" || fail "the error does not name the file"
eq "a failed migration is not recorded" "$(sql_value "SELECT count(*) FROM schema_migrations WHERE version = '500_broken'")" 0

# --- keys
expect 0 "keys gen-kek" ctl keys gen-kek "$tmp/kek"
eq "the KEK file is 32 bytes" "$(wc -c <"$tmp/kek" | tr -d ' ')" 32
eq "the KEK file is 0600" "$(stat -c %a "$tmp/kek")" 600
expect 1 "keys gen-kek refuses to overwrite" ctl keys gen-kek "$tmp/kek"
expect 0 "keys init" ctl keys init
eq "the key file is 0600" "$(stat -c %a "$tmp/keys.sealed")" 600
eq "keys init prints six fingerprints" "$(grep -cE ' [0-9a-f]{16}$' "$tmp/out")" 6
cp "$tmp/out" "$tmp/init.out"
expect 1 "keys init refuses to overwrite" ctl keys init
expect 0 "keys show" ctl keys show
eq "keys show gives the fingerprints of init" "$(grep -E ' [0-9a-f]{16}$' "$tmp/out")" "$(grep -E ' [0-9a-f]{16}$' "$tmp/init.out")"
"$ctl_bin" keys gen-kek "$tmp/kek2" 2>/dev/null
expect 1 "keys show with another KEK fails" ctl keys show --kek-file "$tmp/kek2"
grep -q 'wrong passphrase or KEK' "$tmp/err" && ok "the error says why" || fail "unclear error: $(cat "$tmp/err")"
expect 0 "keys init with a passphrase" env OTA_KEK_PASSPHRASE=test-pass-phrase "$ctl_bin" --config "$conf" \
    --worker.keyfile="$tmp/pass.sealed" --worker.kek_file= keys init
expect 0 "keys show with the passphrase" env OTA_KEK_PASSPHRASE=test-pass-phrase "$ctl_bin" --config "$conf" \
    --worker.keyfile="$tmp/pass.sealed" --worker.kek_file= keys show
expect 1 "keys show with a wrong passphrase" env OTA_KEK_PASSPHRASE=wrong "$ctl_bin" --config "$conf" \
    --worker.keyfile="$tmp/pass.sealed" --worker.kek_file= keys show
k0=00112233445566778899aabbccddeeff
expect 1 "keys import refuses to overwrite" ctl keys import --master-keys "$k0,$k0,$k0,$k0"
code_fp=$(grep 'code HMAC' "$tmp/init.out")
echo "$k0,$k0,$k0,$k0" | ctl keys import --master-keys - --force >"$tmp/out" 2>"$tmp/err" &&
    ok "keys import from stdin" || fail "keys import failed: $(cat "$tmp/err")"
eq "keys import keeps the code HMAC key" "$(grep 'code HMAC' "$tmp/out")" "$code_fp"
eq "keys import keeps the PICC key" "$(grep 'PICC' "$tmp/out")" "$(grep 'PICC' "$tmp/init.out")"
expect 2 "keys import rejects a short key" ctl keys import --master-keys "00,$k0,$k0,$k0" --force

# --- codes
ctl codes issue --amount 500 --count 3 --expires 30 --batch test >"$tmp/codes" 2>"$tmp/err" &&
    ok "codes issue" || fail "codes issue failed: $(cat "$tmp/err")"
eq "codes issue prints exactly the codes on stdout" "$(grep -cE '^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}-[0-9A-HJKMNP-TV-Z]$' "$tmp/codes")" 3
eq "and nothing else" "$(wc -l <"$tmp/codes" | tr -d ' ')" 3
eq "three codes stored as 32-byte hashes" "$(sql_value "SELECT count(*) FROM codes WHERE octet_length(code_hash) = 32 AND amount = 500 AND currency = 'EUR' AND state = 'issued' AND batch = 'test' AND expires_at > now() + interval '29 days'")" 3
code1=$(head -n 1 "$tmp/codes")
norm1=$(echo "$code1" | tr -d '-')
pg_as_owner "$PG_BIN/pg_dump" -h "$PG_DIR" -U ota ota >"$tmp/dump.sql"
if grep -q -e "$norm1" -e "$code1" "$tmp/dump.sql"; then fail "a code appears in the database dump"; else ok "no code appears in the database dump"; fi
expect 2 "codes issue refuses an amount over topup.max_amount" ctl codes issue --amount 100001 --count 1
expect 2 "codes issue needs --count" ctl codes issue --amount 5
expect 1 "codes issue without the key file fails" ctl --worker.keyfile="$tmp/none" codes issue --amount 5 --count 1
eq "a failed issue prints no code" "$(wc -c <"$tmp/out" | tr -d ' ')" 0

# --- the ledger rules, through the worker's functions (a known hash)
h1='\x'$(printf '%064d' 1)
h2='\x'$(printf '%064d' 2)
uid='\x04a1b2c3d4e5f6'
pg_psql -c "INSERT INTO codes (code_hash, amount) VALUES ('$h1', 700), ('$h2', 300)" || fail "inserting test codes"
txn=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid', '$h1', 'peer1', 5, 20, 3600)")
case "$txn" in ????????-????-????-????-????????????) ok "reserve gives a txn ($txn)" ;; *) fail "reserve gave '$txn'" ;; esac
eq "the code is reserved" "$(sql_value "SELECT state FROM codes WHERE code_hash = '$h1'")" reserved
eq "settle committed" "$(sql_value "SELECT ota_worker_settle('$uid', '$txn', 'committed', 0)")" ok
eq "settle committed again (idempotent)" "$(sql_value "SELECT ota_worker_settle('$uid', '$txn', 'committed', 0)")" ok
eq "settle voided after committed is a conflict" "$(sql_value "SELECT ota_worker_settle('$uid', '$txn', 'voided', 0)")" conflict
eq "the code is used" "$(sql_value "SELECT state FROM codes WHERE code_hash = '$h1'")" used
eq "both entries carry the code's currency and id (written by RESERVE and SETTLE)" "$(sql_value "SELECT string_agg(kind || ':' || currency || ':' || (code_id = (SELECT id FROM codes WHERE code_hash = '$h1')), ',' ORDER BY id) FROM ledger WHERE txn_id = '$txn'")" "reserved:EUR:true,committed:EUR:true"
sql_fails "the ledger refuses UPDATE" "UPDATE ledger SET amount = amount + 1 WHERE txn_id = '$txn'"
sql_fails "the ledger refuses DELETE" "DELETE FROM ledger WHERE txn_id = '$txn'"
sql_fails "the ledger refuses TRUNCATE" "TRUNCATE ledger"
sql_fails "committed and voided exclude each other" "INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash) SELECT txn_id, 'voided', card_uid, amount, code_hash FROM ledger WHERE txn_id = '$txn' AND kind = 'reserved'"
sql_fails "a final entry needs its reservation" "INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash) VALUES (gen_random_uuid(), 'committed', '$uid', 700, '$h1')"
sql_fails "a reservation needs its code reserved for it" "INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash) VALUES (gen_random_uuid(), 'reserved', '$uid', 300, '$h2')"
sql_fails "a used code never moves back" "UPDATE codes SET state = 'issued', txn_id = NULL, card_uid = NULL, reserved_at = NULL, used_at = NULL WHERE code_hash = '$h1'"
sql_fails "a code's amount never changes" "UPDATE codes SET amount = 1 WHERE code_hash = '$h2'"
sql_fails "codes are never deleted" "DELETE FROM codes WHERE code_hash = '$h2'"
# The code state machine (codes_guard): every transition it does not list
# is refused in the database.
sql_fails "an issued code cannot jump to used" "UPDATE codes SET state = 'used', txn_id = gen_random_uuid(), card_uid = '$uid', used_at = now() WHERE code_hash = '$h2'"
sql_fails "a used code cannot be revoked" "UPDATE codes SET state = 'revoked', txn_id = NULL, revoked_at = now() WHERE code_hash = '$h1'"
sql_fails "a used code keeps its card" "UPDATE codes SET card_uid = '\x04000000000009' WHERE code_hash = '$h1'"
sql_fails "a code's hash never changes" "UPDATE codes SET code_hash = '\x$(printf '%064d' 9)' WHERE code_hash = '$h2'"
txn2=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid', '$h2', '', 5, 20, 3600)")
eq "a second txn stays in doubt" "$(sql_value "SELECT count(*) FROM finance_in_doubt WHERE txn_id = '$txn2'")" 1
eq "void releases the code" "$(sql_value "SELECT ota_worker_settle('$uid', '$txn2', 'voided', 0); SELECT state FROM codes WHERE code_hash = '$h2'" | tail -n 1)" issued
t4=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid', '$h2', '', 5, 20, 3600)")
sql_fails "a final entry repeats its reservation's amount" "INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash) SELECT txn_id, 'committed', card_uid, amount + 1, code_hash FROM ledger WHERE code_hash = '$h2' AND kind = 'reserved' ORDER BY id DESC LIMIT 1"
grep -q 'differs from its reservation' "$tmp/err" && ok "for the reason it says" || fail "refused for another reason: $(cat "$tmp/err")"
eq "a reserved code cannot be reserved twice" "$(sql_value "SELECT status FROM ota_worker_reserve('$uid', '$h2', '', 5, 20, 3600)")" code-used
eq "void it" "$(sql_value "SELECT ota_worker_settle('$uid', '$t4', 'voided', 0)")" ok

# --- roles
pg_psql -c "CREATE ROLE fin LOGIN IN ROLE ota_finance; CREATE ROLE wrk LOGIN IN ROLE ota_worker; CREATE ROLE adm LOGIN IN ROLE ota_admin" || fail "creating login roles"
eq "finance reads the transactions view" "$(sql_value 'SELECT count(*) FROM finance_transactions' fin)" 3
eq "finance reads the codes view" "$(sql_value 'SELECT count(*) FROM finance_codes' fin)" 5
sql_fails "finance cannot read code hashes" "SELECT code_hash FROM codes" fin
sql_fails "finance cannot read the raw ledger" "SELECT * FROM ledger" fin
sql_fails "finance cannot write" "INSERT INTO codes (code_hash, amount) VALUES ('\\x$(printf '%064d' 3)', 1)" fin
if sql_value "SELECT * FROM finance_transactions; SELECT * FROM finance_codes; SELECT * FROM finance_reconciliation; SELECT * FROM finance_in_doubt" fin | grep -q "$(printf '%064d' 1)"; then
    fail "a finance view shows a code hash"
else ok "no finance view shows a code hash"; fi
eq "finance has no column named like a hash" "$(sql_value "SELECT count(*) FROM information_schema.columns WHERE table_name LIKE 'finance%' AND column_name LIKE '%hash%'")" 0
sql_fails "the worker cannot issue codes" "INSERT INTO codes (code_hash, amount) VALUES ('\\x$(printf '%064d' 4)', 1)" wrk
sql_fails "the worker cannot change a code's amount" "UPDATE codes SET amount = 1" wrk
sql_fails "the worker cannot update the ledger" "UPDATE ledger SET flags = 1" wrk
sql_fails "the worker cannot unfreeze" "SELECT ota_admin_unfreeze('$uid', 'x', 'y')" wrk
pg_psql -c "INSERT INTO codes (code_hash, amount) VALUES ('\\x$(printf '%064d' 5)', 900)" >/dev/null
uid2='\x04000000000002'
eq "the worker can reserve" "$(sql_value "SELECT status FROM ota_worker_reserve('$uid2', '\\x$(printf '%064d' 5)', 'p', 5, 20, 3600)" wrk)" ok
eq "the worker can take a lease" "$(sql_value "SELECT ota_worker_lease_acquire('$uid2', '\\x01', 90000)" wrk)" t
eq "the worker can count a failure" "$(sql_value "SELECT ota_worker_code_failure('$uid2', 'p')" wrk)" t
eq "the worker can freeze" "$(sql_value "SELECT ota_worker_freeze('$uid2', 'integrity', '3 integrity failures')" wrk)" t
t3=$(sql_value "SELECT txn_id FROM finance_in_doubt WHERE card_uid = '04000000000002'")
eq "the worker can flag an in-doubt txn" "$(sql_value "SELECT ota_txn_flag('$uid2', '$t3', 1)" wrk)" t
eq "flags of another card's txn are refused" "$(sql_value "SELECT ota_txn_flag('$uid', '$t3', 1)" wrk)" f
eq "finance sees the in-doubt flag" "$(sql_value "SELECT flags FROM finance_in_doubt WHERE txn_id = '$t3'" fin)" 1
sql_fails "txn flags only grow" "UPDATE txn_flags SET flags = 0"
eq "the worker can settle" "$(sql_value "SELECT ota_worker_settle('$uid2', '$t3', 'committed', 2)" wrk)" ok

# --- cards
expect 0 "cards frozen" ctl cards frozen
grep -q 04000000000002 "$tmp/out" && ok "the frozen card is listed" || fail "the frozen card is not listed"
expect 0 "cards show" ctl cards show 04000000000002
grep -q freeze "$tmp/out" && ok "cards show lists the freeze" || fail "cards show has no freeze event"
expect 2 "cards unfreeze needs a reason" ctl cards unfreeze 04000000000002
expect 0 "cards unfreeze" ctl cards unfreeze 04000000000002 --reason "card checked by ops"
eq "the card is no longer frozen" "$(sql_value "SELECT frozen FROM cards WHERE card_uid = '$uid2'")" f
eq "freeze and unfreeze are recorded, with who and why" "$(sql_value "SELECT string_agg(event || ':' || reason, ',' ORDER BY id) FROM card_events WHERE card_uid = '$uid2'")" "freeze:integrity,unfreeze:card checked by ops"
eq "the unfreeze names its actor" "$(sql_value "SELECT count(*) FROM card_events WHERE event = 'unfreeze' AND actor LIKE 'ota-ctl:%'")" 1
expect 1 "unfreezing a card that is not frozen fails" ctl cards unfreeze 04000000000002 --reason again
expect 2 "a bad UID is refused" ctl cards show 04zz

# --- reports
expect 0 "ledger show" ctl ledger show
eq "ledger show lists every txn" "$(grep -c -E '^[0-9a-f]{8}-' "$tmp/out")" 4
expect 0 "ledger show --format csv --state committed" ctl ledger show --format csv --state committed
eq "CSV has a header and the committed txns" "$(head -n 1 "$tmp/out")|$(($(wc -l <"$tmp/out") - 1))" "txn_id,card_uid,amount,currency,code_id,state,reserved_at,settled_at,day,flags|2"
expect 0 "ledger show --format json --card" ctl ledger show --format json --card 04A1B2C3D4E5F6
eq "JSON rows of the card" "$(/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r), sum(x["amount"] for x in r if x["state"]=="committed"))' "$tmp/out")" "3 700"
expect 0 "ledger daily" ctl ledger daily --format csv
eq "daily totals add up to the committed sum" "$(awk -F, '$2=="committed"{s+=$5} END{print s}' "$tmp/out")" 1600
expect 0 "ledger liability" ctl ledger liability --format csv
eq "liability is the committed sum" "$(tail -n 1 "$tmp/out")" "EUR,2,2,1600"
expect 0 "ledger in-doubt" ctl ledger in-doubt
expect 0 "codes list" ctl codes list --state used --format csv
eq "codes list shows the used codes" "$(($(wc -l <"$tmp/out") - 1))" 2
expect 0 "codes revoke" ctl codes revoke "$(sql_value "SELECT id FROM codes WHERE state = 'issued' ORDER BY id LIMIT 1")"
expect 1 "a used code cannot be revoked" ctl codes revoke "$(sql_value "SELECT id FROM codes WHERE state = 'used' LIMIT 1")"

# --- expiry: an expired code cannot be reserved; one reserved before it
# expired still settles (its value may be on the card)
h7='\x'$(printf '%064d' 7)
h8='\x'$(printf '%064d' 8)
uid3='\x04000000000003'
pg_psql -c "INSERT INTO codes (code_hash, amount, expires_at) VALUES ('$h7', 400, now() - interval '1 second'), ('$h8', 600, now() + interval '1 hour')" >/dev/null
eq "an expired code answers code-invalid" "$(sql_value "SELECT status FROM ota_worker_reserve('$uid3', '$h7', '', 50, 50, 3600)")" code-invalid
eq "and stays unreserved" "$(sql_value "SELECT state FROM codes WHERE code_hash = '$h7'")" issued
eq "finance sees it as expired" "$(sql_value "SELECT f.state FROM finance_codes f JOIN codes c ON c.id = f.code_id WHERE c.code_hash = '$h7'")" expired
t8=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid3', '$h8', '', 50, 50, 3600)")
pg_psql -c "UPDATE codes SET expires_at = now() - interval '1 second' WHERE code_hash = '$h8'" >/dev/null
eq "a code that expired while reserved still settles committed" "$(sql_value "SELECT ota_worker_settle('$uid3', '$t8', 'committed', 0)")" ok
eq "and is used, not expired" "$(sql_value "SELECT f.state FROM finance_codes f JOIN codes c ON c.id = f.code_id WHERE c.code_hash = '$h8'")" used

# --- codes summary, find, generate
expect 0 "codes summary" ctl codes summary --format csv
eq "codes summary columns" "$(head -n 1 "$tmp/out")" "state,currency,codes,amount"
eq "codes by state add up to every code" "$(awk -F, 'NR>1{n+=$3; a+=$4} END{print n" "a}' "$tmp/out")" "$(sql_value "SELECT count(*) || ' ' || sum(amount) FROM codes")"
eq "codes summary counts the expired code" "$(grep -c '^expired,EUR,1,400$' "$tmp/out")" 1
expect 0 "codes find a typed code" ctl codes find "$(echo "$code1" | tr 'A-Z' 'a-z')" --format csv
eq "codes find gives the code's row (revoked above)" "$(tail -n 1 "$tmp/out" | cut -d, -f2,3,5)" "revoked,500,test"
grep -q "$norm1" "$tmp/out" "$tmp/err" && fail "codes find echoed the code" || ok "codes find does not echo the code"
echo "$code1" | ctl codes find - --format json >"$tmp/out" 2>"$tmp/err" && ok "codes find reads the code from stdin" || fail "codes find -: $(cat "$tmp/err")"
eq "codes find - gives one row" "$(/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r), r[0]["batch"])' "$tmp/out")" "1 test"
last=$(printf '%s' "$code1" | tail -c 1)
typo=$(printf '%s' "$code1" | sed 's/.$//')$( [ "$last" = 2 ] && echo 3 || echo 2)
expect 1 "codes find refuses a typo" ctl codes find "$typo"
grep -q 'check character' "$tmp/err" && ok "and says why" || fail "codes find typo: $(cat "$tmp/err")"
expect 0 "codes generate" ctl codes generate --count 3
eq "codes generate prints well-formed codes" "$(grep -cE '^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}-[0-9A-HJKMNP-TV-Z]$' "$tmp/out")" 3
nbefore=$(sql_value "SELECT count(*) FROM codes")
expect 1 "a generated code is unknown to the database" ctl codes find "$(head -n 1 "$tmp/out")"
eq "generate stores nothing" "$(sql_value "SELECT count(*) FROM codes")" "$nbefore"

# --- the relative socket directory of db.conninfo (common/dbconn.c)
(cd "$tmp" && "$ctl_bin" --config "$conf" "--db.conninfo=host=./pg dbname=ota user=ota" ledger daily) \
    >"$tmp/out" 2>"$tmp/err" && ok "host=./pg is taken relative to the working directory" ||
    fail "relative host=./pg: $(cat "$tmp/err")"
rel=$(/usr/bin/python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], "/"))' "$PG_DIR")
(cd / && "$ctl_bin" --config "$conf" "--db.conninfo=host=$rel dbname=ota user=ota" ledger daily) \
    >"$tmp/out" 2>"$tmp/err" && ok "host=$rel from / is a socket directory" ||
    fail "relative host=$rel: $(cat "$tmp/err")"
(cd "$tmp" && "$ctl_bin" --config "$conf" "--db.conninfo=host=./nonexistent dbname=ota user=ota password=pw-in-conninfo" ledger daily) \
    >"$tmp/out" 2>"$tmp/err"
grep -q "host=$tmp/nonexistent" "$tmp/err" && ok "a connect error names the resolved directory" || fail "connect error: $(cat "$tmp/err")"
grep -q 'pw-in-conninfo' "$tmp/err" && fail "a connect error shows the password" || ok "a connect error hides the password"

# --- ledger resolve (issue 16): an operator decides an entry in doubt
uid4='\x04000000000004'
h6='\x'$(printf '%064d' 96)
h7='\x'$(printf '%064d' 97)
h8='\x'$(printf '%064d' 98)
pg_psql -c "INSERT INTO codes (code_hash, amount) VALUES ('$h6', 600), ('$h7', 800), ('$h8', 50)" >/dev/null
r6=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid4', '$h6', '', 5, 20, 3600)")
r7=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid4', '$h7', '', 5, 20, 3600)")
r8=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid4', '$h8', '', 5, 20, 3600)")
eq "three entries in doubt" "$(sql_value "SELECT count(*) FROM finance_in_doubt WHERE card_uid = '04000000000004'")" 3
rows=$(sql_value "SELECT count(*) FROM ledger")
expect 2 "resolve needs a reason" ctl ledger resolve "$r6" --voided
expect 2 "resolve needs exactly one outcome" ctl ledger resolve "$r6" --voided --committed --reason x
expect 2 "resolve needs an outcome" ctl ledger resolve "$r6" --reason x
expect 2 "resolve refuses a txn id that is not a UUID" ctl ledger resolve 12345 --voided --reason x
expect 1 "resolve refuses an unknown txn" ctl ledger resolve 00000000-0000-0000-0000-000000000000 --voided --reason x
eq "refusals wrote nothing" "$(sql_value "SELECT count(*) FROM ledger")" "$rows"
expect 0 "resolve --voided" ctl ledger resolve "$r6" --voided --reason "card destroyed, customer refunded by re-use"
eq "  the voided entry is appended" "$(sql_value "SELECT string_agg(kind, ',' ORDER BY id) FROM ledger WHERE txn_id = '$r6'")" reserved,voided
eq "  the code is released (issued again)" "$(sql_value "SELECT state FROM codes WHERE code_hash = '$h6'")" issued
eq "  recorded with who and why" "$(sql_value "SELECT outcome || ':' || reason || ':' || (actor LIKE 'ota-ctl:%') FROM ledger_resolutions WHERE txn_id = '$r6'")" "voided:card destroyed, customer refunded by re-use:true"
expect 1 "resolve refuses an entry that already has its final entry" ctl ledger resolve "$r6" --committed --reason again
grep -q 'already voided' "$tmp/err" && ok "  and says why" || fail "  resolve error: $(cat "$tmp/err")"
eq "  the worker's settle of it is now a conflict" "$(sql_value "SELECT ota_worker_settle('$uid4', '$r6', 'committed', 0)")" conflict
# The txn at risk was flagged by an integrity failure: resolving it
# committed keeps the flag (a flag alone never refunds, FINANCE.md).
sql_value "SELECT ota_worker_integrity_failure('$uid4', '$r7')" >/dev/null
expect 0 "resolve --committed" ctl ledger resolve "$r7" --committed --reason "card seen by support, record present"
eq "  the committed entry is appended with the txn's flags" "$(sql_value "SELECT kind || ':' || flags FROM ledger WHERE txn_id = '$r7' AND kind <> 'reserved'")" committed:1
eq "  the code is used" "$(sql_value "SELECT state FROM codes WHERE code_hash = '$h7'")" used
eq "  the worker's settle voided of it is a conflict" "$(sql_value "SELECT ota_worker_settle('$uid4', '$r7', 'voided', 0)")" conflict
eq "  two entries more, no row changed (append-only)" "$(sql_value "SELECT count(*) FROM ledger")" $((rows + 2))
sql_value "SELECT ota_worker_lease_acquire('$uid4', '\x02', 90000)" >/dev/null
expect 1 "resolve refuses while the card is in a session (lease held)" ctl ledger resolve "$r8" --voided --reason x
grep -q 'in a session' "$tmp/err" && ok "  and says why" || fail "  resolve error: $(cat "$tmp/err")"
sql_value "SELECT ota_worker_lease_release('$uid4', '\x02')" >/dev/null
sql_fails "the worker cannot resolve" "SELECT ota_admin_resolve('$r8', 'voided', 'x', 'y')" wrk
sql_fails "finance cannot resolve" "SELECT ota_admin_resolve('$r8', 'voided', 'x', 'y')" fin
eq "an ota_admin login can" "$(sql_value "SELECT ota_admin_resolve('$r8', 'voided', 'checked', 'adm-test')" adm)" 04000000000004
sql_fails "resolutions are append-only" "UPDATE ledger_resolutions SET reason = 'other'"
eq "finance sees the resolutions" "$(sql_value "SELECT string_agg(outcome || ':' || amount, ',' ORDER BY resolved_at, amount) FROM finance_resolutions" fin)" "voided:600,committed:800,voided:50"
eq "nothing of that card is in doubt any more" "$(sql_value "SELECT count(*) FROM finance_in_doubt WHERE card_uid = '04000000000004'")" 0

# --- operator token
echo "operator-token-for-tests-0123456789" | ctl operator token-hash >"$tmp/out" 2>"$tmp/err" &&
    ok "operator token-hash" || fail "operator token-hash failed: $(cat "$tmp/err")"
grep -q '^\$argon2id\$' "$tmp/out" && ok "the hash is an Argon2id string" || fail "not an argon2id hash: $(cat "$tmp/out")"
grep -q operator-token "$tmp/out" "$tmp/err" && fail "the token was printed" || ok "the token is not printed"
echo short | ctl operator token-hash >/dev/null 2>&1 && fail "a short token was accepted" || ok "a short token is refused"

# --- audit
expect 0 "audit passes on a consistent database" ctl audit
grep -q 'audit: ok' "$tmp/out" && ok "audit says ok" || fail "audit output: $(cat "$tmp/out")"
grep -q 'review flagged' "$tmp/out" && ok "the flagged entry is listed for review" || fail "no review line"
pg_psql -c "ALTER TABLE ledger DISABLE TRIGGER ledger_no_update" >/dev/null
expect 1 "audit fails when the append-only trigger is disabled" ctl audit
grep -q 'guard-missing.*ledger_no_update' "$tmp/out" && ok "and names it" || fail "audit output: $(cat "$tmp/out")"
pg_psql -c "ALTER TABLE ledger ENABLE TRIGGER ledger_no_update" >/dev/null
# Break an invariant behind the triggers' back (as a superuser could).
pg_psql -c "SET session_replication_role = replica; UPDATE codes SET state = 'issued', txn_id = NULL, card_uid = NULL, reserved_at = NULL, used_at = NULL WHERE code_hash = '$h1'" >/dev/null
expect 1 "audit fails when a committed txn's code is not used" ctl audit
grep -q 'VIOLATION committed-code-not-used' "$tmp/out" && ok "and names the rule" || fail "audit output: $(cat "$tmp/out")"
eq "finance sees the same finding" "$(sql_value "SELECT count(*) FROM finance_reconciliation WHERE severity = 'violation'" fin)" 1
# The workers find a card's open txns through its reserved codes
# (095_ledger_floor.sql): an open txn whose code was moved by hand is a
# violation the audit names.
uid2='\x04a1b2c3d4e5f7'
txn2=$(sql_value "SELECT txn_id FROM ota_worker_reserve('$uid2', '$h2', 'peer1', 5, 20, 3600)")
eq "card state lists the open txn" "$(sql_value "SELECT txn_id FROM ota_worker_card_state('$uid2', 9, 8) WHERE kind = 'in_doubt'")" "$txn2"
pg_psql -c "UPDATE codes SET state = 'issued', txn_id = NULL, card_uid = NULL, reserved_at = NULL WHERE code_hash = '$h2'" >/dev/null
expect 1 "audit fails when an open txn's code is no longer reserved by it" ctl audit
grep -q "VIOLATION open-txn-code-not-reserved: txn=$txn2" "$tmp/out" && ok "and names the rule and the txn" || fail "audit output: $(cat "$tmp/out")"
# What the foreign keys and the insert trigger checked on every entry
# before 097_ledger_hot_path.sql is the audit's now.  An entry that brings
# its own currency and code id skips the insert trigger (RESERVE and
# SETTLE pass both), so the database takes these as they come.
h3='\x'$(printf '%064d' 3)
pg_psql -c "INSERT INTO codes (code_hash, amount) VALUES ('$h3', 400)" >/dev/null
id3=$(sql_value "SELECT id FROM codes WHERE code_hash = '$h3'")
txn3=$(sql_value "INSERT INTO ledger (txn_id, kind, card_uid, amount, currency, code_hash, code_id)
    VALUES (gen_random_uuid(), 'reserved', '$uid2', 400, 'EUR', '\x$(printf '%064d' 8)', 99999)
    RETURNING txn_id")
expect 1 "audit fails on an entry whose code does not exist" ctl audit
grep -q "VIOLATION entry-code-missing: txn=$txn3 .*code does not exist" "$tmp/out" && ok "and names the rule and the txn" || fail "audit output: $(cat "$tmp/out")"
txn4=$(sql_value "INSERT INTO ledger (txn_id, kind, card_uid, amount, currency, code_hash, code_id)
    VALUES (gen_random_uuid(), 'reserved', '$uid2', 900, 'EUR', '$h3', $id3) RETURNING txn_id")
expect 1 "audit fails on a reservation that does not carry its code's amount" ctl audit
grep -q "VIOLATION reserved-differs-from-code: txn=$txn4 code=$id3 .*900 EUR, its code 400 EUR" "$tmp/out" && ok "and names the rule and the amounts" || fail "audit output: $(cat "$tmp/out")"
txn5=$(sql_value "INSERT INTO ledger (txn_id, kind, card_uid, amount, currency, code_hash, code_id)
    VALUES ('$txn4', 'committed', '$uid2', 900, 'EUR', '$h2', $id3) RETURNING txn_id")
expect 1 "audit fails on a final entry that names another code than its reservation" ctl audit
grep -q "VIOLATION final-differs: txn=$txn5" "$tmp/out" && ok "and names the rule" || fail "audit output: $(cat "$tmp/out")"
grep -q "VIOLATION entry-code-missing: txn=$txn5 .*code id and code hash name different codes" "$tmp/out" && ok "and that its code id and hash disagree" || fail "audit output: $(cat "$tmp/out")"
txn6=$(sql_value "INSERT INTO ledger (txn_id, kind, card_uid, amount, currency, code_hash, code_id)
    VALUES (gen_random_uuid(), 'committed', '$uid2', 400, 'EUR', '$h3', $id3) RETURNING txn_id")
expect 1 "audit fails on a final entry without its reservation" ctl audit
grep -q "VIOLATION final-without-reserved: txn=$txn6" "$tmp/out" && ok "and names the rule and the txn" || fail "audit output: $(cat "$tmp/out")"
pg_psql -c "ALTER TABLE codes DISABLE TRIGGER codes_guard" >/dev/null
expect 1 "audit fails when the codes guard is disabled" ctl audit
grep -q 'guard-missing: trigger codes_guard is disabled' "$tmp/out" && ok "and names it" || fail "audit output: $(cat "$tmp/out")"
pg_psql -c "ALTER TABLE codes ENABLE TRIGGER codes_guard" >/dev/null

# RESERVE and SETTLE write the code's own currency (097: no trigger fills it).
hu='\x'$(printf '%064d' 77)
pg_psql -c "INSERT INTO codes (code_hash, amount, currency) VALUES ('$hu', 250, 'USD')" || fail "inserting a USD code"
txnu=$(sql_value "SELECT txn_id FROM ota_worker_reserve('\x04a1b2c3d4e5f8', '$hu', '', 5, 20, 3600)")
eq "a USD code's reservation is booked in USD" "$(sql_value "SELECT ota_worker_settle('\x04a1b2c3d4e5f8', '$txnu', 'voided', 0); SELECT string_agg(kind || ':' || amount || ':' || currency, ',' ORDER BY id) FROM ledger WHERE txn_id = '$txnu'" | tail -n 1)" "reserved:250:USD,voided:250:USD"

tap_summary
