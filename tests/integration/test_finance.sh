#!/bin/sh
# test_finance.sh: the ledger as finance reads it (issue "finance"), on the
# whole system: real PostgreSQL, ota-gateway with its workers, ota-card
# playing the phone, with db.conninfo naming the socket directory
# relative to the working directory (common/dbconn.c).
#
# A generated workload (seeded: FINANCE_SEED, printed) over 10 simulated
# cards and 40 issued codes: fresh codes, codes used twice, unknown,
# mistyped, expired and revoked codes, and four sessions cut after the
# reservation (two dropped before CommitTransaction, two torn right after
# it) that stay in doubt until the card's next check settles them.  Then:
# every report adds up (daily totals = the per-transaction rows; liability
# total = the per-card rows; codes by state = the codes issued), the
# liability of every card equals the balance on its card file and the
# test's own model, the card's records name exactly its committed
# transactions, the filters partition the rows, the exports carry the
# columns FINANCE.md documents, a finance login runs every report but
# cannot write anything or read any table or code hash, and
# `ota-ctl audit` passes.
. "$OTA_SRCDIR/tests/integration/lib.sh"
command -v ota-card >/dev/null || { echo "ota-card not built" >&2; exit 99; }

# Failed code attempts are part of the workload, all from 127.0.0.1.
SYS_EXTRA_CONF="worker.code_failures_per_card = 1000
worker.code_failures_per_peer = 10000"
sys_start

PY=/usr/bin/python3
SEED=${FINANCE_SEED:-$(date +%s)}
echo "# workload seed $SEED (rerun with FINANCE_SEED=$SEED)"
ctl() { ota-ctl --config "$CONF" "$@"; }
eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (got '$2', wanted '$3')"; fi; }
field() { $PY -c 'import json,sys
lines=[l for l in sys.stdin.read().splitlines() if l.strip()]
d=json.loads(lines[-1]) if lines else {}
print(d.get(sys.argv[1], ""))' "$1"; }
card_value() { ota-card show --card "$1" | awk '/file 1: value/ {getline; print $2; exit}'; }

# --- the gateway and its workers again, with a relative socket directory
sys_gateway_stop
rel_pg=$($PY -c 'import os,sys; print(os.path.relpath(sys.argv[1]))' "$PG_DIR")
case "$rel_pg" in /*) fail "no relative path to $PG_DIR" ;; */*) ;; *) rel_pg="./$rel_pg" ;; esac
sed -i "s|^db.conninfo = .*|db.conninfo = host=$rel_pg dbname=ota user=ota|" "$CONF"
echo "# db.conninfo = host=$rel_pg (relative to $(pwd))"
sys_gateway_start
ok "gateway and workers ready with db.conninfo host=$rel_pg"

# --- the workload's material: 10 cards, 40 codes
ncards=10
i=0
while [ $i -lt $ncards ]; do
    sys_card "04f100000000$(printf '%02d' $i)" >/dev/null || fail "card $i"
    i=$((i + 1))
done
issue() { ctl codes issue --amount "$1" --count "$2" --batch "$3" ${4:+--expires "$4"} >"$T/codes.$3" 2>>"$T/ctl.err"; }
issue 500 10 a
issue 1000 8 b
issue 250 10 c
issue 2000 6 d
issue 700 4 old 30
issue 300 2 void
ncodes=40
eq "40 codes issued" "$(cat "$T"/codes.* | wc -l | tr -d ' ')" $ncodes
face=$((500 * 10 + 1000 * 8 + 250 * 10 + 2000 * 6 + 700 * 4 + 300 * 2))
# Batch "old" expired a second ago; batch "void" is withdrawn.
sys_sql "UPDATE codes SET expires_at = now() - interval '1 second' WHERE batch = 'old'" >/dev/null
ctl codes revoke $(sys_sql "SELECT id FROM codes WHERE batch = 'void' ORDER BY id") >/dev/null ||
    fail "codes revoke"
ctl codes generate --count 3 >"$T/codes.unknown" || fail "codes generate"
# Typos: one data character changed, so the check character disagrees.
head -n 2 "$T/codes.c" | $PY -c 'import sys
for l in sys.stdin.read().split():
    print(l[0] + ("Y" if l[1] == "Z" else "Z") + l[2:])' >"$T/codes.typo"

# --- the model: what each card should hold, kept by this script
model="$T/model"
: >"$model"
credit() { echo "$1 $2" >>"$model"; }
model_balance() { awk -v c="$1" '$1 == c {s += $2} END {print s + 0}' "$model"; }
card_file() { echo "$T/04f100000000$(printf '%02d' "$1").card"; }
sessions=0
mismatches=0
: >"$T/mismatch"

# run CARD CODE EXPECT [AMOUNT]: one top-up through the gateway; EXPECT is
# ok or the error code.  A card-busy answer (the lease of the previous
# session of this card not yet released) is retried.
run_topup() {
    f=$(card_file "$1")
    n=0
    while :; do
        out=$(ota-card run --json --url "$PUB_URL" --card "$f" topup "$2" 2>>"$T/client.err")
        rc=$?
        err=$(echo "$out" | field error)
        [ "$err" = card-busy ] && [ $n -lt 20 ] || break
        n=$((n + 1))
        sleep 0.25
    done
    sessions=$((sessions + 1))
    st=$(echo "$out" | field status)
    if [ "$3" = ok ]; then
        if [ $rc -eq 0 ] && [ "$st" = ok ] && [ "$(echo "$out" | field amount)" = "$4" ]; then
            credit "$1" "$4"
            bal=$(echo "$out" | field balance)
            [ "$bal" = "$(model_balance "$1")" ] ||
                echo "card $1: result balance $bal, model $(model_balance "$1")" >>"$T/mismatch"
        else
            echo "card $1: wanted ok $4, got rc=$rc $out" >>"$T/mismatch"
        fi
    elif [ $rc -ne 1 ] || [ "$err" != "$3" ]; then
        echo "card $1: wanted $3, got rc=$rc $out" >>"$T/mismatch"
    fi
}

# run_check CARD: a check session (settles what is in doubt), retried on
# card-busy; sets chk_rc and chk_bal.
run_check() {
    f=$(card_file "$1")
    n=0
    while :; do
        out=$(ota-card run --json --url "$PUB_URL" --card "$f" check 2>>"$T/client.err")
        chk_rc=$?
        [ "$(echo "$out" | field error)" = card-busy ] && [ $n -lt 20 ] || break
        n=$((n + 1))
        sleep 0.25
    done
    sessions=$((sessions + 1))
    chk_bal=$(echo "$out" | field balance)
}

# both DESCRIPTION COND1 COND2: ok when both test(1) conditions (given as
# one string each) hold.
both() {
    if eval "$2" && eval "$3"; then ok "$1"; else fail "$1"; fi
}

# plan PART CARDS CODEFILE...: the generated workload, one line per top-up:
# CARD CODE EXPECT AMOUNT.  Fresh codes in random order on random cards;
# now and then a code already used (code-used), or an expired, revoked,
# unknown or mistyped one (code-invalid).
plan() {
    $PY - "$SEED" "$@" <<'PY'
import random, sys
seed, part, ncards = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed * 10 + part)
fresh, bad = [], []
for spec in sys.argv[4:]:
    kind, amount, path = spec.split(":", 2)
    codes = [l.strip() for l in open(path) if l.strip()]
    if kind == "fresh":
        fresh += [(c, int(amount)) for c in codes]
    else:
        bad += [(c, kind) for c in codes]
rng.shuffle(fresh)
used, lines = [], []
for code, amount in fresh:
    card = rng.randrange(ncards)
    lines.append(f"{card} {code} ok {amount}")
    used.append(code)
    r = rng.random()
    if r < 0.2:
        lines.append(f"{rng.randrange(ncards)} {rng.choice(used)} code-used 0")
    elif r < 0.4 and bad:
        code, kind = bad.pop(rng.randrange(len(bad)))
        lines.append(f"{rng.randrange(ncards)} {code} code-invalid 0")
for code, kind in bad:
    lines.append(f"{rng.randrange(ncards)} {code} code-invalid 0")
print("\n".join(lines))
PY
}

run_plan() {
    while read -r pc pcode pexp pamt; do
        run_topup "$pc" "$pcode" "$pexp" "$pamt"
    done <"$1"
}

# --- calibration: card 0's first two top-ups, traced, give the command
# numbers of CommitTransaction (90 C7) and WriteRecord (90 3B) of a first
# and of a second top-up; the cut sessions below are on cards in exactly
# those states.
trace_topup() {
    ota-card run --json --verbose --url "$PUB_URL" --card "$(card_file "$1")" topup "$2" \
        2>"$T/trace.$3" >"$T/trace.$3.out"
    sessions=$((sessions + 1))
    [ "$(field status <"$T/trace.$3.out")" = ok ] && credit "$1" "$(field amount <"$T/trace.$3.out")"
}
cmd_no() { grep '^> ' "$T/trace.$1" | grep -n "^> $2" | head -n 1 | cut -d: -f1; }
sed -n 1p "$T/codes.a" >"$T/cal.codes"
sed -n 2p "$T/codes.a" >>"$T/cal.codes"
trace_topup 0 "$(sed -n 1p "$T/cal.codes")" first
trace_topup 0 "$(sed -n 2p "$T/cal.codes")" second
commit1=$(cmd_no first 90c7)
commit2=$(cmd_no second 90c7)
write2=$(cmd_no second 903b)
both "calibration: first top-up commits at command $commit1, second at $commit2 (record at $write2)" \
    '[ -n "$commit1" ] && [ -n "$commit2" ] && [ -n "$write2" ]' '[ "$(model_balance 0)" = 1000 ]' 

# The codes of the workload: batch a (minus calibration) and c in part 1;
# b: four for the cut sessions, two for the top-ups before them, the rest
# and d in part 2.
sed -n '3,$p' "$T/codes.a" >"$T/p1.a"
sed -n '1,4p' "$T/codes.b" >"$T/cut.codes"
sed -n '7,$p' "$T/codes.b" >"$T/p2.b"
sed -n '1,2p' "$T/codes.unknown" >"$T/p1.unknown"
sed -n '3p' "$T/codes.unknown" >"$T/p2.unknown"

# --- part 1: cards 0-5
plan 1 6 fresh:500:"$T/p1.a" fresh:250:"$T/codes.c" old:0:"$T/codes.old" \
    unknown:0:"$T/p1.unknown" typo:0:"$T/codes.typo" >"$T/plan1"
run_plan "$T/plan1"
check "part 1: $(wc -l <"$T/plan1" | tr -d ' ') top-ups gave the expected results" [ ! -s "$T/mismatch" ]

# --- cut sessions: each entry goes in doubt
run_topup 6 "$(sed -n 5p "$T/codes.b")" ok 1000
run_topup 9 "$(sed -n 6p "$T/codes.b")" ok 1000
cut_session() { # CARD CODE FAULT N: prints the client's exit status
    ota-card run --json --verbose --url "$PUB_URL" --card "$(card_file "$1")" "$3" "$4" topup "$2" \
        >"$T/cut.$1.out" 2>"$T/cut.$1.err"
    echo $?
}
k1=$(sed -n 1p "$T/cut.codes"); k2=$(sed -n 2p "$T/cut.codes")
k3=$(sed -n 3p "$T/cut.codes"); k4=$(sed -n 4p "$T/cut.codes")
r7=$(cut_session 7 "$k1" --drop-after "$commit1")   # first top-up, dropped before the commit
r8=$(cut_session 8 "$k2" --tear-after "$commit1")   # first top-up, torn right after the commit
r6=$(cut_session 6 "$k3" --drop-after "$write2")    # second top-up, dropped before the record
r9=$(cut_session 9 "$k4" --tear-after "$commit2")   # second top-up, torn right after the commit
sessions=$((sessions + 4))
credit 8 1000
credit 9 1000
eq "the four cut sessions end without a result" "$r7 $r8 $r6 $r9" "4 4 4 4"
last_cmd() { grep '^> ' "$T/cut.$1.err" | tail -n 1 | cut -c3-6; }
eq "each was cut at the command it was meant to be" "$(last_cmd 7) $(last_cmd 8) $(last_cmd 6) $(last_cmd 9)" \
    "90c7 90c7 903b 90c7"

# --- while in doubt
ctl ledger in-doubt --format json >"$T/doubt.json" 2>>"$T/ctl.err" || fail "ledger in-doubt"
eq "the in-doubt report lists the four cut sessions" \
    "$($PY -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r), sum(x["amount"] for x in r), " ".join(sorted(x["card_uid"][-2:] for x in r)))' "$T/doubt.json")" \
    "4 4000 06 07 08 09"
eq "ledger in-doubt --card names one" "$(ctl ledger in-doubt --card 04f10000000008 --format csv | tail -n +2 | wc -l | tr -d ' ')" 1
eq "ledger in-doubt --min-age 3600 finds none" "$(ctl ledger in-doubt --min-age 3600 --format csv | tail -n +2 | wc -l | tr -d ' ')" 0
eq "their codes are reserved" "$(ctl codes summary --format csv | awk -F, '$1=="reserved"{print $3}')" 4
# A torn card holds the value before the ledger says so: balance =
# committed liability + its in-doubt amount.  A dropped one does not.
for c in 6 7 8 9; do
    bal=$(card_value "$(card_file "$c")")
    liab=$(ctl ledger liability --card "04f100000000$(printf '%02d' "$c")" --format csv | awk -F, 'NR==2{print $4}')
    doubt=$(ctl ledger in-doubt --card "04f100000000$(printf '%02d' "$c")" --format csv | awk -F, 'NR==2{print $3}')
    case $c in 8 | 9) want=$(( ${liab:-0} + doubt )) ;; *) want=${liab:-0} ;; esac
    eq "card $c in doubt: balance $bal = liability ${liab:-0} (+ ${doubt} if torn)" "$bal" "$want"
done
eq "audit passes with entries in doubt" "$(ctl audit | tail -n 1)" "audit: ok"

# --- the next check settles each one
for c in 6 7 8 9; do
    run_check "$c"
    eq "card $c: check ok, balance $chk_bal = model" "$chk_rc $chk_bal" "0 $(model_balance "$c")"
done
eq "nothing is left in doubt" "$(ctl ledger in-doubt --format csv | tail -n +2 | wc -l | tr -d ' ')" 0
doubt_txns=$($PY -c 'import json,sys; print(",".join("\x27%s\x27" % x["txn_id"] for x in json.load(open(sys.argv[1]))))' "$T/doubt.json")
eq "dropped sessions settled voided, torn ones committed (flag: settled later)" \
    "$(sys_sql "SELECT string_agg(right(card_uid, 2) || ':' || state || ':' || (flags & 4), ' ' ORDER BY card_uid) FROM finance_transactions WHERE txn_id IN (${doubt_txns:-NULL})")" \
    "06:voided:0 07:voided:0 08:committed:4 09:committed:4"
eq "the voided codes are free again" "$(ctl codes summary --format csv | awk -F, '$1=="reserved"{print $3}')" ""
# Their codes go back into the workload.
printf '%s\n%s\n' "$k1" "$k3" >"$T/p2.released"

# --- part 2: every card; a period boundary first
t_mid=$(sys_sql "SELECT to_char(clock_timestamp(), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
sleep 0.01
plan 2 $ncards fresh:1000:"$T/p2.b" fresh:1000:"$T/p2.released" fresh:2000:"$T/codes.d" \
    revoked:0:"$T/codes.void" unknown:0:"$T/p2.unknown" >"$T/plan2"
# Codes of part 1 used again.
$PY -c 'import random,sys; rng=random.Random(int(sys.argv[1])); print("\n".join(f"{rng.randrange(10)} {l.split()[1]} code-used 0" for l in rng.sample([l for l in open(sys.argv[2]) if " ok " in l], 3)))' \
    "$SEED" "$T/plan1" >>"$T/plan2"
run_plan "$T/plan2"
check "part 2: $(wc -l <"$T/plan2" | tr -d ' ') top-ups gave the expected results" [ ! -s "$T/mismatch" ]
if [ -s "$T/mismatch" ]; then sed 's/^/#   /' "$T/mismatch"; fi
attempts=$((2 + $(wc -l <"$T/plan1") + 2 + 4 + $(wc -l <"$T/plan2")))
oks=$(wc -l <"$model" | tr -d ' ')
echo "# workload: $ncards cards, $ncodes codes, $attempts top-up attempts ($oks credited), $sessions sessions"

# --- the reports, as ota-ctl (admin) exports them
ctl ledger show --format csv >"$T/rows.csv" 2>>"$T/ctl.err" || fail "ledger show csv"
ctl ledger show --format json >"$T/rows.json" 2>>"$T/ctl.err" || fail "ledger show json"
ctl ledger daily --format csv >"$T/daily.csv" 2>>"$T/ctl.err" || fail "ledger daily"
ctl ledger liability --format csv >"$T/liab.csv" 2>>"$T/ctl.err" || fail "ledger liability"
ctl ledger liability --per-card --format csv >"$T/liabcard.csv" 2>>"$T/ctl.err" || fail "ledger liability --per-card"
ctl ledger liability --per-card --format json >"$T/liabcard.json" 2>>"$T/ctl.err" || fail "ledger liability json"
ctl codes summary --format csv >"$T/codes.csv" 2>>"$T/ctl.err" || fail "codes summary"
ctl codes list --format json >"$T/codelist.json" 2>>"$T/ctl.err" || fail "codes list"
ctl ledger reconcile --format csv >"$T/recon.csv" 2>>"$T/ctl.err" || fail "ledger reconcile"
ntx=$(sys_sql "SELECT count(*) FROM ledger WHERE kind = 'reserved'")
eq "the export holds every transaction ($ntx)" "$(tail -n +2 "$T/rows.csv" | wc -l | tr -d ' ')" "$ntx"
eq "CSV and JSON exports hold the same rows" \
    "$($PY -c 'import csv,json,sys
a=sorted((r["txn_id"],r["state"],int(r["amount"]),r["day"]) for r in csv.DictReader(open(sys.argv[1])))
b=sorted((r["txn_id"],r["state"],r["amount"],r["day"]) for r in json.load(open(sys.argv[2])))
print(a == b and len(a) > 0)' "$T/rows.csv" "$T/rows.json")" True
eq "committed transactions = credited top-ups" \
    "$(awk -F, '$6=="committed"{n++; s+=$3} END{print n" "s}' "$T/rows.csv")" \
    "$oks $(awk '{s+=$2} END{print s}' "$model")"
eq "voided transactions = the two dropped sessions" "$(awk -F, '$6=="voided"' "$T/rows.csv" | wc -l | tr -d ' ')" 2

# Daily totals = the per-transaction rows grouped by (day, state, currency).
sums() { $PY -c 'import csv,sys
from collections import defaultdict
t=defaultdict(lambda:[0,0])
for r in csv.DictReader(open(sys.argv[1])):
    k=(r["day"],r["state"],r["currency"]); t[k][0]+=1; t[k][1]+=int(r["amount"])
print(";".join(f"{k[0]},{k[1]},{k[2]},{v[0]},{v[1]}" for k,v in sorted(t.items())))' "$1"; }
eq "daily totals = the sum of the transaction rows, per day and state" \
    "$(tail -n +2 "$T/daily.csv" | sort | paste -sd ';')" "$(sums "$T/rows.csv")"
# Liability total = sum of the per-card rows, and = committed sum.
eq "liability total = sum of liability per card" \
    "$(awk -F, 'NR==2{print $2" "$3" "$4}' "$T/liab.csv")" \
    "$(awk -F, 'NR>1{n++; t+=$3; s+=$4} END{print n" "t" "s}' "$T/liabcard.csv")"
eq "liability total = committed amount" "$(awk -F, 'NR==2{print $4}' "$T/liab.csv")" \
    "$(awk -F, '$6=="committed"{s+=$3} END{print s}' "$T/rows.csv")"

# The key assertion: every card's liability is the balance on its card.
bad_cards=
i=0
while [ $i -lt $ncards ]; do
    uid="04f100000000$(printf '%02d' $i)"
    bal=$(card_value "$(card_file $i)")
    liab=$(awk -F, -v u="$uid" '$1==u{print $4}' "$T/liabcard.csv")
    [ "$bal" = "${liab:-0}" ] && [ "$bal" = "$(model_balance $i)" ] ||
        bad_cards="$bad_cards $uid(card=$bal,ledger=${liab:-0},model=$(model_balance $i))"
    i=$((i + 1))
done
check "liability of each of the $ncards cards = its card file's balance = the model" [ -z "$bad_cards" ]
[ -z "$bad_cards" ] || echo "#  $bad_cards"
eq "sum of the card balances = liability total" \
    "$(i=0; s=0; while [ $i -lt $ncards ]; do s=$((s + $(card_value "$(card_file $i)"))); i=$((i + 1)); done; echo $s)" \
    "$(awk -F, 'NR==2{print $4}' "$T/liab.csv")"
# The records on each card are exactly its newest committed transactions.
rec_bad=
i=0
while [ $i -lt $ncards ]; do
    uid="04f100000000$(printf '%02d' $i)"
    recs=$(ota-card show --card "$(card_file $i)" | awk '/record [0-9]+ \(/ {print tolower(substr($4, 1, 32))}' | sort | paste -sd ' ')
    nrec=$(echo $recs | wc -w)
    ncom=$(sys_sql "SELECT count(*) FROM finance_transactions WHERE card_uid = '$uid' AND state = 'committed'")
    want=$(sys_sql "SELECT string_agg(t, ' ' ORDER BY t) FROM (SELECT replace(txn_id::text, '-', '') AS t FROM finance_transactions WHERE card_uid = '$uid' AND state = 'committed' ORDER BY reserved_at DESC LIMIT $nrec) s")
    { [ "$recs" = "$want" ] && { [ "$nrec" -eq "$ncom" ] || [ "$nrec" -ge 7 ]; }; } || rec_bad="$rec_bad $uid"
    i=$((i + 1))
done
check "each card's records name exactly its newest committed transactions" [ -z "$rec_bad" ]

# Codes by state add up to the codes issued.
eq "codes by state add up to the 40 codes and their face value" \
    "$(awk -F, 'NR>1{n+=$3; a+=$4} END{print n" "a}' "$T/codes.csv")" "$ncodes $face"
eq "codes used = committed transactions" "$(awk -F, '$1=="used"{print $3}' "$T/codes.csv")" "$oks"
eq "expired, revoked, reserved codes" \
    "$(awk -F, '$1=="expired"{e=$3} $1=="revoked"{r=$3} $1=="reserved"{s=$3} END{print e+0" "r+0" "s+0}' "$T/codes.csv")" "4 2 0"
eq "issued = the rest" "$(awk -F, '$1=="issued"{n=$3} END{print n+0}' "$T/codes.csv")" "$((ncodes - oks - 6))"
eq "codes list (JSON) agrees with the summary" \
    "$($PY -c 'import json,sys,collections; c=collections.Counter(r["state"] for r in json.load(open(sys.argv[1]))); print(" ".join(f"{k}={c[k]}" for k in sorted(c)))' "$T/codelist.json")" \
    "$(awk -F, 'NR>1{print $1"="$3}' "$T/codes.csv" | sort | paste -sd ' ')"

# Filters partition the rows.
rows() { ctl ledger show --format csv "$@" | tail -n +2; }
cnt_sum() { awk -F, '{n++; s+=$3} END{print n+0" "s+0}'; }
all=$(tail -n +2 "$T/rows.csv" | cnt_sum)
before=$(rows --to "$t_mid" | cnt_sum)
after=$(rows --from "$t_mid" | cnt_sum)
eq "--to T and --from T split the rows" \
    "$(echo "$before $after" | awk '{print $1+$3" "$2+$4}')" "$all"
both "both sides of the split hold rows ($before | $after)" '[ "${before%% *}" -gt 0 ]' '[ "${after%% *}" -gt 0 ]' 
eq "--state committed + voided + in-doubt = all" \
    "$( (rows --state committed; rows --state voided; rows --state in-doubt) | cnt_sum)" "$all"
eq "a range in the future is empty" "$(rows --from 2999-01-01 | cnt_sum)" "0 0"
card_ok=1
i=0
while [ $i -lt $ncards ]; do
    uid="04f100000000$(printf '%02d' $i)"
    s=$(rows --card "$uid" --state committed | cnt_sum | cut -d' ' -f2)
    [ "$s" = "$(model_balance $i)" ] || card_ok=0
    i=$((i + 1))
done
check "--card: each card's committed rows sum to its balance" [ $card_ok -eq 1 ]
rk1=$(rows --code "$k1" | awk -F, '{print $6}' | sort | paste -sd ' ')
eq "--code with a typed code: the dropped-then-reused code's two transactions" "$rk1" "committed voided"
cid=$(sys_sql "SELECT code_id FROM finance_codes WHERE state = 'used' ORDER BY code_id LIMIT 1")
eq "--code ID: a used code has one committed transaction" "$(rows --code "$cid" --state committed | cnt_sum | cut -d' ' -f1)" 1
eq "ledger daily --state committed --from today" \
    "$(ctl ledger daily --state committed --from "$(date -u +%Y-%m-%d)" --format csv | awk -F, 'NR>1{s+=$5} END{print s+0}')" \
    "$(sys_sql "SELECT COALESCE(sum(amount), 0) FROM finance_transactions WHERE state = 'committed' AND day >= (now() AT TIME ZONE 'UTC')::date")"

# --- exports have the columns FINANCE.md documents
doc_cols() { grep "^| \`ota-ctl $1\`" "$OTA_SRCDIR/FINANCE.md" | head -n 1 | cut -d'|' -f3 | tr -d '` '; }
json_cols() { $PY -c 'import json,sys; r=json.load(open(sys.argv[1])); print(",".join(r[0].keys()) if r else "")' "$1"; }
ctl ledger in-doubt --format csv >"$T/doubt.csv"
ctl ledger in-doubt --format json >"$T/doubt2.json"
for spec in "ledger show:rows" "ledger daily:daily" "ledger liability:liab" \
    "ledger liability --per-card:liabcard" "ledger in-doubt:doubt" "ledger reconcile:recon" \
    "codes summary:codes" "codes list:codelist"; do
    cmd=${spec%%:*}
    file=${spec#*:}
    want=$(doc_cols "$cmd")
    if [ -f "$T/$file.csv" ]; then
        eq "CSV of '$cmd' has the documented columns" "$(head -n 1 "$T/$file.csv")" "$want"
    fi
done
eq "JSON of 'ledger show' has the documented columns" "$(json_cols "$T/rows.json")" "$(doc_cols 'ledger show')"
eq "JSON of 'ledger liability --per-card' has the documented columns" "$(json_cols "$T/liabcard.json")" "$(doc_cols 'ledger liability --per-card')"
eq "JSON of 'codes list' has the documented columns" "$(json_cols "$T/codelist.json")" "$(doc_cols 'codes list')"
eq "JSON types: amount and code_id are numbers, times are ISO 8601 UTC strings" \
    "$($PY -c 'import json,sys,re; r=json.load(open(sys.argv[1]))[0]
print(type(r["amount"]).__name__, type(r["code_id"]).__name__, type(r["flags"]).__name__,
      bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["reserved_at"])),
      bool(re.fullmatch(r"\d{4}-\d\d-\d\d", r["day"])))' "$T/rows.json")" "int int int True True"
eq "no export shows a code hash or a code" \
    "$(cat "$T"/*.csv "$T"/*.json | grep -c -i -e hash -e "$(sed -n 1p "$T/codes.d")" -e "$(sys_sql "SELECT encode(code_hash, 'hex') FROM codes LIMIT 1")")" 0

# --- the finance role
sys_sql "CREATE ROLE fin_user LOGIN IN ROLE ota_finance" >/dev/null
fin() { ota-ctl --config "$CONF" "--db.conninfo=host=$rel_pg dbname=ota user=fin_user" "$@"; }
fin_ok=1
for r in "ledger show" "ledger daily" "ledger in-doubt" "ledger liability" \
    "ledger liability --per-card" "ledger reconcile" "codes summary" "codes list"; do
    # shellcheck disable=SC2086
    fin $r --format csv >"$T/fin.out" 2>"$T/fin.err" || { fin_ok=0; echo "# fin_user: $r: $(cat "$T/fin.err")"; }
done
check "a finance login runs every report" [ $fin_ok -eq 1 ]
check "a finance login runs ota-ctl audit" sh -c 'fin() { ota-ctl --config "$1" "--db.conninfo=host=$2 dbname=ota user=fin_user" audit; }; fin "$1" "$2" | grep -q "^audit: ok"' - "$CONF" "$rel_pg"
eq "a finance login sees the same rows" "$(fin ledger show --format csv | tail -n +2 | cnt_sum)" "$all"
as_fin() { pg_as_owner "$PG_BIN/psql" -X -q -h "$PG_DIR" -U ota -d ota -v ON_ERROR_STOP=1 -tA \
    -c "SET ROLE ota_finance" -c "$1" >/dev/null 2>&1; }
tables=$(sys_sql "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
refused=0
total=0
allowed=
for t in $tables; do
    for stmt in "SELECT * FROM $t LIMIT 1" "INSERT INTO $t DEFAULT VALUES" \
        "UPDATE $t SET $(sys_sql "SELECT attname FROM pg_attribute WHERE attrelid = '$t'::regclass AND attnum = 1") = NULL" \
        "DELETE FROM $t" "TRUNCATE $t"; do
        total=$((total + 1))
        if as_fin "$stmt"; then allowed="$allowed [$stmt]"; else refused=$((refused + 1)); fi
    done
done
both "finance can neither read nor write any table ($refused of $total statements refused over $(echo $tables | wc -w) tables)" \
    '[ -z "$allowed" ]' '[ "$total" -ge 40 ]' 
[ -z "$allowed" ] || echo "# allowed:$allowed"
if as_fin "SELECT code_hash FROM codes"; then fail "finance reads codes.code_hash"; else ok "finance cannot read codes.code_hash"; fi
views=$(sys_sql "SELECT string_agg(viewname, ' ') FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'finance%'")
v_ok=1
for v in $views; do
    as_fin "SELECT * FROM $v LIMIT 1" || v_ok=0
    as_fin "DELETE FROM $v" && v_ok=0
    as_fin "INSERT INTO $v DEFAULT VALUES" && v_ok=0
done
check "finance reads every finance view ($(echo $views | wc -w)) and writes none" [ $v_ok -eq 1 ]
eq "no finance view has a column named like a hash" \
    "$(sys_sql "SELECT count(*) FROM information_schema.columns WHERE table_name LIKE 'finance%' AND (column_name LIKE '%hash%' OR data_type = 'bytea')")" 0
u=$(sys_sql "SELECT '\\x' || card_uid FROM finance_transactions LIMIT 1")
t=$(sys_sql "SELECT txn_id FROM finance_transactions WHERE state = 'committed' LIMIT 1")
w_ok=1
for stmt in "SELECT ota_worker_settle('$u', '$t', 'voided', 0)" \
    "SELECT * FROM ota_worker_reserve('$u', '\\x$(printf '%064d' 9)', '', 9, 9, 9)" \
    "SELECT ota_worker_freeze('$u', 'x', 'y')" "SELECT ota_txn_flag('$u', '$t', 1)" \
    "SELECT ota_admin_unfreeze('$u', 'x', 'y')" "SELECT ota_worker_lease_acquire('$u', '\\x01', 1000)" \
    "SELECT * FROM ota_worker_begin('$u', '\\x01', 1000, 9, 8, '\\x$(printf '%064d' 9)', '', 9, 9, 9)" \
    "SELECT nextval('ledger_id_seq')" "CREATE TABLE fin_t (x int)" "CREATE VIEW fin_v AS SELECT 1"; do
    as_fin "$stmt" && { w_ok=0; echo "# finance could: $stmt"; }
done
check "finance cannot write through the stored functions, sequences or new objects" [ $w_ok -eq 1 ]
check "finance can join a provider's file in a temporary table (FINANCE.md recipe)" as_fin \
    "CREATE TEMP TABLE provider (code_id bigint, amount bigint); INSERT INTO provider SELECT code_id, amount FROM finance_codes WHERE state = 'used'; SELECT 1/(count(*) = $oks)::int FROM provider p JOIN finance_codes c USING (code_id) WHERE c.state = 'used' AND p.amount = c.amount"

# --- audit
ctl audit >"$T/audit.out" 2>&1
rc=$?
both "ota-ctl audit passes after the workload" '[ $rc -eq 0 ]' 'grep -q "^audit: ok" "$T/audit.out"' 
eq "audit counts what the reports count" \
    "$(grep -o 'transactions=[0-9]* committed=[0-9]* voided=[0-9]* in_doubt=[0-9]*' "$T/audit.out")" \
    "transactions=$ntx committed=$oks voided=2 in_doubt=0"
eq "no reconciliation violation" "$(awk -F, '$2=="violation"' "$T/recon.csv" | wc -l | tr -d ' ')" 0

sys_finish
