#!/bin/sh
# The hardening points of issue 9 on the whole system (real processes, a
# real PostgreSQL that logs every statement with its parameters):
#   1. a freeze: a record on a card whose txn_id the ledger does not know;
#      finance and ops see it; top-up
#      answers card-error until `ota-ctl cards unfreeze`, which is recorded;
#   2. a card personalized through the system keeps its application: the
#      factory PICC keys are dead, DeleteApplication is refused
#      (tests/unit/test_picc_lock on the card file);
#   3. the gateway holds no keys (symbols, open files, its memory) and,
#      once the sessions are over, no code or operator token a client sent,
#      whole or in part (it wipes what held them and sends the code to the
#      worker sealed), also right after a fresh gateway's first session;
#      the worker is not dumpable, has no core limit, locks its key memory
#      and runs unprivileged;
#   4. code-failure limits per client address (PROXY protocol v1 through
#      proxy_client.py) and per authenticated card, never per claimed UID;
#      over a limit wrong codes are throttled, a valid code always tops up;
#   5. the worker refuses a database with synchronous_commit off;
#   6. last: no log of the whole run holds a code, a token or a key, and
#      the gateway's and workers' logs hold no full card UID.
. "$OTA_SRCDIR/tests/integration/lib.sh"
FORGE="$OTA_BUILDDIR/tests/integration/card_forge"
PICC_LOCK="$OTA_BUILDDIR/tests/unit/test_picc_lock"
PROXY_CLIENT="$OTA_SRCDIR/tests/integration/proxy_client.py"
for p in "$FORGE" "$PICC_LOCK"; do
    [ -x "$p" ] || { echo "missing $p (make check builds it)" >&2; exit 1; }
done

# Every statement the database sees is logged with its parameters, so the
# log check below covers everything that ever reached PostgreSQL.
PG_EXTRA_OPTS="-c log_statement=all -c log_parameter_max_length=-1"
SYS_EXTRA_CONF="log.level = debug"
export PG_EXTRA_OPTS
sys_start

C="$T/client"  # client-side outputs: not logs, never grepped
mkdir -p "$C"
SECRETS="$C/secrets"
: >"$SECRETS"
CTL_ERR="$T/ctl.err"  # ota-ctl's diagnostics: grepped like a log

secret() { for s in "$@"; do [ -n "$s" ] && printf '%s\n' "$s" >>"$SECRETS"; done; return 0; }
# A code in display form, normalized form (no dashes) and lower case.
secret_code() {
    secret "$1" "$(printf '%s' "$1" | tr -d -- '-')" "$(printf '%s' "$1" | tr -d -- '-' | tr 'A-Z' 'a-z')"
}
codes() {
    out=$(ota-ctl --config "$CONF" codes issue --amount "$1" --count "${2:-1}" 2>>"$CTL_ERR")
    for c in $out; do secret_code "$c"; done
    printf '%s\n' "$out"
}
unknown_code() {
    u=$(ota-ctl codes generate 2>>"$CTL_ERR")
    secret_code "$u"
    printf '%s\n' "$u"
}
UIDS="$C/uids" # every card UID of the run: logs may show only their last bytes
: >"$UIDS"
card() {
    printf '%s\n' "$1" >>"$UIDS"
    f=$(sys_card "$@") || return 1
    secret $("$FORGE" keys "$1" "$MASTER_KEYS")
    printf '%s\n' "$f"
}
run() { ota-card run --json "$@" 2>>"$C/client.err"; }
field() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d.get(sys.argv[1], ""))' "$1"; }
# pc ADDR CARD OPERATION [CODE] [options]: proxy_client.py, the result JSON
pc() {
    a=$1
    shift
    /usr/bin/python3 "$PROXY_CLIENT" "127.0.0.1:$PUB_PORT" "$a" "$@" 2>>"$C/client.err"
}
metrics() { curl -fsS "$ADMIN/metrics" 2>/dev/null; }
# No session running and no client connection open (closing ones too).
gateway_quiet() {
    metrics | awk '/^ota_gateway_(sessions|connections)_active / {n++; s += $2} END {exit !(n == 2 && s == 0)}'
}
worker_pids() { pgrep -P "$GW_PID" -x ota-worker; }

# The secrets every log is checked against.
secret $(printf '%s' "$MASTER_KEYS" | tr ',' ' ')
secret $("$FORGE" sealed "$T/keys.sealed" "$T/kek")
secret "$(od -An -v -tx1 "$T/kek" | tr -d ' \n')"
secret "$TOKEN"
WRONG_TOKEN=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
secret "$WRONG_TOKEN"
check "the sealed key file holds the 5 test master keys and a code HMAC key" \
    [ "$("$FORGE" sealed "$T/keys.sealed" "$T/kek" | head -n 5 | paste -sd, -)" = "$MASTER_KEYS" ]

# ---------------------------------------------------------------- scenario
# A whole run of the product: personalize (right and wrong token, and on
# the public listener), top-ups, a used code, an unknown code, a mistyped
# code, a code typed in lower case without dashes.
PUID=04a1b2c3d4e5f6
pers="$T/$PUID.card"
ota-card new --card "$pers" --uid "$PUID" --blank >/dev/null
printf '%s\n' "$PUID" >>"$UIDS"
secret $("$FORGE" keys "$PUID" "$MASTER_KEYS")
out=$(run --url "$OP_URL" --card "$pers" personalize "$TOKEN"); rc=$?
check "scenario: personalize with the operator token" [ "$rc" -eq 0 ]
out=$(run --url "$OP_URL" --card "$pers" personalize "$WRONG_TOKEN"); rc=$?
check "scenario: a wrong operator token is refused" [ "$(echo "$out" | field error)" = auth-failed ]
run --url "$PUB_URL" --card "$pers" personalize "$TOKEN" >/dev/null
set -- $(codes 100 3)
ok_topups=0
for c in "$@"; do
    out=$(run --url "$PUB_URL" --card "$pers" topup "$c") && ok_topups=$((ok_topups + 1))
done
check "scenario: three top-ups with codes" [ "$ok_topups/$(echo "$out" | field balance)" = 3/300 ]
out=$(run --url "$PUB_URL" --card "$pers" topup "$1")
check "scenario: a used code answers code-used" [ "$(echo "$out" | field error)" = code-used ]
out=$(run --url "$PUB_URL" --card "$pers" topup "$(unknown_code)")
check "scenario: an unknown code answers code-invalid" [ "$(echo "$out" | field error)" = code-invalid ]
c4=$(codes 50 1)
first=$(printf '%s' "$c4" | cut -c1)
if [ "$first" = A ]; then swap=B; else swap=A; fi
typo="$swap$(printf '%s' "$c4" | cut -c2-)"
secret_code "$typo"
out=$(run --url "$PUB_URL" --card "$pers" topup "$typo")
check "scenario: a mistyped code answers code-invalid" [ "$(echo "$out" | field error)" = code-invalid ]
lower=$(printf '%s' "$c4" | tr -d -- '-' | tr 'A-Z' 'a-z')
out=$(run --url "$PUB_URL" --card "$pers" topup "$lower"); rc=$?
check "scenario: the same code typed in lower case without dashes tops up" \
    [ "$rc/$(echo "$out" | field balance)" = 0/350 ]

# ------------------------------------------- 2. the PICC lock, card level
PICC_KEY=$("$FORGE" keys "$PUID" "$MASTER_KEYS" | sed -n 5p)
if OTA_PICC_CARD="$pers" OTA_PICC_KEY="$PICC_KEY" CK_FORK=no "$PICC_LOCK" >"$C/picc_lock.out" 2>&1; then
    ok "personalized through the system: zero DES/AES PICC keys dead, DeleteApplication/CreateApplication/FormatPICC refused without the key, the card's own PICC key works (test_picc_lock)"
else
    fail "test_picc_lock on the card personalized through the system"
    sed 's/^/# /' "$C/picc_lock.out"
fi

# --------------------------------------------- 1a. freeze: unknown record
FUID=04f0f0f0f0f001
fz=$(card "$FUID")
out=$(run --url "$PUB_URL" --card "$fz" topup "$(codes 400 1)"); rc=$?
check "freeze: the card has ledger history (a top-up of 400)" [ "$rc" -eq 0 ]
forged=$("$FORGE" record "$fz" "${MASTER_KEYS%,*}"); rc=$?
check "freeze: a record with a txn_id the ledger does not know is committed on the card" \
    [ "$rc/$(ota-card show --card "$fz" | grep -ci "record 1 (newest) $forged")" = 0/1 ]
check "freeze: the forged txn_id is unknown to the ledger" \
    [ "${forged:-none}/$(sys_sql "SELECT count(*) FROM ledger WHERE txn_id = '$forged'::uuid")" = "$forged/0" ]
cg=$(codes 150 1)
out=$(run --url "$PUB_URL" --card "$fz" topup "$cg")
check "freeze: the top-up answers card-error" [ "$(echo "$out" | field error)" = card-error ]
check "freeze: the card is frozen in the database (reason records)" \
    [ "$(sys_sql "SELECT frozen_reason FROM cards WHERE card_uid = '\\x$FUID' AND frozen")" = records ]
check "freeze: finance sees it (finance_frozen_cards, as ota_finance)" \
    [ "$(sys_sql "SET ROLE ota_finance; SELECT count(*) FROM finance_frozen_cards WHERE card_uid = '$FUID' AND frozen_detail LIKE '%unknown txn_id%'")" = 1 ]
check "freeze: recorded in card_events" \
    [ "$(sys_sql "SELECT count(*) FROM card_events WHERE card_uid = '\\x$FUID' AND event = 'freeze'")" = 1 ]
# The session reserved the code with its lease (the card had nothing in
# doubt), then read the forged record, froze the card and voided the
# reservation: no WriteRecord went out, the code is free again.
check "freeze: the refused code was voided and released (nothing else booked)" \
    [ "$(sys_sql "SELECT string_agg(kind, ',' ORDER BY id) FROM ledger WHERE card_uid = '\\x$FUID'")/$(sys_sql "SELECT state FROM codes WHERE code_hash IN (SELECT code_hash FROM ledger WHERE card_uid = '\\x$FUID' AND kind = 'voided')")" = "reserved,committed,reserved,voided/issued" ]
# The workers read the database-wide counts every 5 s and report them on
# their next statistics tick, so the gauge may lag by up to ~10 s.
frozen_now() { metrics | sed -n 's/^ota_cards_frozen \([0-9]*\)$/\1/p'; }
# frozen_is OP N: the gauge is there and OP N (-ge, -lt).
frozen_is() { v=$(frozen_now); [ -n "$v" ] && [ "$v" "$1" "$2" ]; }
wait_for 20 frozen_is -ge 1
rc=$?
fm=$(frozen_now)
check "freeze: ops see it (/metrics ota_cards_frozen = ${fm:-absent})" [ "$rc" -eq 0 ]
out=$(run --url "$PUB_URL" --card "$fz" topup "$cg")
check "freeze: a second top-up still answers card-error" [ "$(echo "$out" | field error)" = card-error ]
check "freeze: the card kept its balance" \
    [ "$(ota-card show --card "$fz" | sed -n 's/^ *value \([0-9]*\)$/\1/p' | head -n 1)" = 400 ]
ota-ctl --config "$CONF" cards unfreeze "$FUID" >>"$T/ctl.out" 2>>"$CTL_ERR"; rc=$?
check "unfreeze without a reason is refused (exit $rc, still frozen)" \
    [ "$([ "$rc" -ne 0 ] && echo refused)/$(sys_sql "SELECT frozen FROM cards WHERE card_uid = '\\x$FUID'")" = refused/t ]
ota-ctl --config "$CONF" cards unfreeze "$FUID" --reason "hardening test: forged record" \
    >>"$T/ctl.out" 2>>"$CTL_ERR"; rc=$?
check "unfreeze with a reason" \
    [ "$rc/$(sys_sql "SELECT frozen FROM cards WHERE card_uid = '\\x$FUID'")" = 0/f ]
check "unfreeze is recorded in card_events with its reason and actor" \
    [ "$(sys_sql "SELECT count(*) FROM card_events WHERE card_uid = '\\x$FUID' AND event = 'unfreeze' AND reason = 'hardening test: forged record' AND actor LIKE 'ota-ctl:%'")" = 1 ]
wait_for 20 frozen_is -lt "$fm"
rc=$?
check "unfreeze: the ota_cards_frozen gauge went down ($fm -> $(frozen_now))" [ "$rc" -eq 0 ]
# The foreign record cannot leave the card (no ClearRecordFile right), so
# the card's next session finds it again and freezes the card again.
out=$(run --url "$PUB_URL" --card "$fz" topup "$cg")
check "unfreeze: the forged record is still there, the next top-up freezes the card again" \
    [ "$(echo "$out" | field error)/$(sys_sql "SELECT count(*) FROM card_events WHERE card_uid = '\\x$FUID' AND event = 'freeze'")" = card-error/2 ]

# ------------------------------------- 3. the gateway holds no keys; worker
GW_BIN="$OTA_BUILDDIR/gateway/ota-gateway"
WK_BIN="$OTA_BUILDDIR/worker/ota-worker"
gw_syms=$(nm "$GW_BIN" 2>/dev/null | grep -cE ' [A-Za-z] (dfc_|keyfile_|sim_card|sim_|code_hash|code_normalize)')
if [ "$gw_syms" -eq 0 ] && nm "$GW_BIN" | grep -q ' pp_parse$'; then
    ok "the gateway binary links no key code (no dfc_/keyfile_/sim_/code_hash symbols)"
else
    fail "the gateway binary links no key code (no dfc_/keyfile_/sim_/code_hash symbols)"
fi
check "control: the worker binary has them (the nm check can fail)" \
    nm "$WK_BIN" | grep -qE ' T (dfc_auth_start|keyfile_open)$'
check "the gateway has no key file or KEK open or mapped" \
    sh -c "! ls -l /proc/$GW_PID/fd 2>/dev/null | grep -qE 'keys.sealed|/kek' && ! grep -qE 'keys.sealed|/kek' /proc/$GW_PID/maps"
wpids=$(worker_pids)
check "workers are running" [ -n "$wpids" ]
# Scans a process's memory (heap, stacks, anonymous and writable mappings)
# for every master key and the code HMAC key (raw bytes); prints the number
# of hits.
mem_hits() {
    "$FORGE" sealed "$T/keys.sealed" "$T/kek" >"$C/keyhex"
    mem_scan "$1" "$C/keyhex" hex
}
# mem_scan PID FILE hex|text|parts: counts the occurrences of FILE's lines
# (hex bytes, or text) in the process's memory; parts: of every aligned
# 8-character piece of each line, so that any 15 characters in a row of a
# secret are found (a buffer that was partly overwritten keeps the rest).
mem_scan() {
    /usr/bin/python3 - "$1" "$2" "$3" <<'EOF'
import sys
pid, keyfile, form = sys.argv[1], sys.argv[2], sys.argv[3]
lines = [l.strip() for l in open(keyfile) if l.strip()]
if form == "hex":
    keys = [bytes.fromhex(l) for l in lines]
elif form == "parts":
    keys = sorted({l[i:i + 8].encode() for l in lines for i in range(0, len(l) - 7, 8)})
else:
    keys = [l.encode() for l in lines]
hits = 0
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        f = line.split()
        # Read-only mappings of files (libraries, the binary) hold no
        # runtime data; the test keys are simple patterns that some
        # library tables contain (00112233...eeff in libnorm's).
        if "[vsyscall]" in line or hi - lo > (1 << 30):
            continue
        if len(f) >= 6 and f[5].startswith("/") and "w" not in f[1]:
            continue
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except OSError:
            continue
        for k in keys:
            at = data.find(k)
            while at >= 0:
                hits += 1
                # Where it was, for whoever has to find the copy: the
                # mapping and the bytes before the hit (never the secret).
                name = f[5] if len(f) >= 6 else "[anon]"
                print(f"# found in {name} {f[0]} +{at:#x}, before: "
                      f"{data[max(0, at - 48):at].hex()}", file=sys.stderr)
                at = data.find(k, at + 1)
print(hits)
EOF
}
if [ "$(id -u)" -eq 0 ]; then
    check "the gateway runs as the unprivileged user ota" [ "$(ps -o user= -p "$GW_PID" | tr -d ' ')" = ota ]
    for w in $wpids; do
        check "worker $w runs as the unprivileged user ota" [ "$(ps -o user= -p "$w" | tr -d ' ')" = ota ]
        # /proc/PID files of a non-dumpable process belong to root.
        check "worker $w is not dumpable (/proc/$w/status owned by root while it runs as ota)" \
            [ "$(stat -c %U "/proc/$w/status")" = root ]
        check "worker $w has a core size limit of 0" \
            [ "$(awk '/^Max core file size/ {print $5 "/" $6}' "/proc/$w/limits")" = 0/0 ]
        check "worker $w keeps locked memory (sodium_malloc keys)" \
            [ "$(awk '/^VmLck:/ {print $2}' "/proc/$w/status")" -gt 0 ]
    done
    setpriv --reuid ota --regid ota --clear-groups sleep 30 &
    sp=$!
    sleep 0.3
    check "control: an ordinary process of ota has its /proc files owned by ota" \
        [ "$(stat -c %U "/proc/$sp/status")" = ota ]
    kill "$sp" 2>/dev/null
    wait "$sp" 2>/dev/null
    w1=$(echo "$wpids" | head -n 1)
    check "control: the memory scan finds the master keys in a worker" [ "$(mem_hits "$w1")" -gt 0 ]
    check "the gateway's memory holds no master key and no code HMAC key" [ "$(mem_hits "$GW_PID")" -eq 0 ]
    # The codes and tokens the scenario's clients sent (each in every form
    # it was typed in) passed through the gateway's JSON parser, WebSocket
    # buffers and worker frames; all were wiped.
    grep -vE '^[0-9a-f]{32,}$' "$SECRETS" >"$C/sent"
    /usr/bin/python3 -c 'import sys, time; held = sys.argv[1]; time.sleep(10)' \
        "$(head -n 1 "$C/sent")" >/dev/null 2>&1 &
    holder=$!
    sleep 0.5
    check "control: the memory scan finds a code in a process that holds one" \
        [ "$(mem_scan "$holder" "$C/sent" text)" -gt 0 ]
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
    # 15 characters of it, not from its start: what a partly overwritten
    # buffer keeps.
    /usr/bin/python3 -c 'import sys, time; held = sys.argv[1]; time.sleep(10)' \
        "$(head -n 1 "$C/sent" | cut -c2-16)" >/dev/null 2>&1 &
    holder=$!
    sleep 0.5
    check "control: the memory scan finds 15 characters of a code in a process that holds only them" \
        [ "$(mem_scan "$holder" "$C/sent" parts)" -gt 0 ]
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
    # Scanned once every session is over and every connection closed: a
    # live connection still holds its client's last message, and that is
    # not what this proves.  What it proves: after the sessions no buffer
    # of the gateway (libevent's, wslay's, jansson's, ours, the stack,
    # ZeroMQ's, which only ever see the authCode sealed) keeps a code or a
    # token, whole or in part.
    wait_for 30 gateway_quiet
    check "control: every session is over and every client connection closed before the scan" \
        gateway_quiet
    check "the gateway's memory holds none of the $(wc -l <"$C/sent") codes and tokens clients sent" \
        [ "$(mem_scan "$GW_PID" "$C/sent" text)" -eq 0 ]
    check "the gateway's memory holds no 15 characters in a row of any of them" \
        [ "$(mem_scan "$GW_PID" "$C/sent" parts)" -eq 0 ]
else
    echo "# note: not root: the user, dumpable and memory checks need root; skipped"
fi

# ------------------------------- 4. rate limits behind a PROXY-protocol LB
sys_gateway_stop
cat >>"$CONF" <<CONF
gateway.proxy_protocol_from = 127.0.0.1
worker.code_failures_per_card = 3
worker.code_failures_per_peer = 4
worker.code_failure_delay_ms = 300
CONF
PUB_PORT=${PUB_URL#ws://127.0.0.1:}
PUB_PORT=${PUB_PORT%%/*}
sys_gateway_start

# The first session of a freshly started gateway: its first OPEN makes
# the first calls into ZeroMQ, which the dynamic linker used to bind
# lazily, saving every vector register (the OPEN frame with the code) on
# the stack.  A mistyped code is answered without the database and counts
# toward no limit.
if [ "$(id -u)" -eq 0 ]; then
    cf=$(codes 60 1)
    first=$(printf '%s' "$cf" | cut -c1)
    if [ "$first" = A ]; then swap=B; else swap=A; fi
    typo="$swap$(printf '%s' "$cf" | cut -c2-)"
    secret_code "$typo"
    printf '%s\n' "$typo" >"$C/first"
    out=$(pc 192.0.2.99 "$pers" topup "$typo")
    wait_for 30 gateway_quiet
    check "first session of a fresh gateway: a mistyped code answers code-invalid, the session is over" \
        [ "$(echo "$out" | field error)/$(gateway_quiet && echo over)" = code-invalid/over ]
    check "first session of a fresh gateway: its memory (stack included) holds no part of the code" \
        [ "$(mem_scan "$GW_PID" "$C/first" parts)" -eq 0 ]
fi
out=$(run --url "$PUB_URL" --card "$pers" check)
check "proxy: a peer that must send a PROXY header and does not is refused" [ "$(echo "$out" | field status)" != ok ]
# A sanity run through the proxy client.
ok_card=$(card 04e0e0e0e0e000)
out=$(pc 198.51.100.200 "$ok_card" check)
check "proxy: a check through a PROXY v1 header works" [ "$(echo "$out" | field status)" = ok ]

# Per address: 4 failures from 198.51.100.7, each on another card.
A=198.51.100.7
n=0
for i in 1 2 3 4; do
    cf=$(card "04e1e1e1e1e10$i")
    out=$(pc "$A" "$cf" topup "$(unknown_code)")
    [ "$(echo "$out" | field error)" = code-invalid ] && n=$((n + 1))
done
check "per address: 4 unknown codes from $A answer code-invalid" [ $n -eq 4 ]
check "per address: the failures are counted for the announced address" \
    [ "$(sys_sql "SELECT count(*) FROM code_failures WHERE peer = '$A'")" = 4 ]
check "per address: no failure of those cards names the load balancer's own address" \
    [ "$(sys_sql "SELECT count(*) FROM code_failures WHERE card_uid::text LIKE '\\\\x04e1%' AND peer IS DISTINCT FROM '$A'")" = 0 ]
check "control: without a PROXY header (the scenario above) the TCP peer was counted" \
    [ "$(sys_sql "SELECT count(*) FROM code_failures WHERE peer = '127.0.0.1'")" -ge 2 ]
# Issue 16: over the limit, wrong codes are throttled; a valid one never
# refused (one address may be thousands of phones).
fresh=$(card 04e1e1e1e1e105)
out=$(pc "$A" "$fresh" topup "$(unknown_code)")
check "per address: a fifth unknown code from $A answers limit-exceeded (throttled)" \
    [ "$(echo "$out" | field error)" = limit-exceeded ]
cv1=$(codes 120 1)
out=$(pc "$A" "$fresh" topup "$cv1")
check "per address: a good code from $A on a fresh card tops up (never refused by the limit)" \
    [ "$(echo "$out" | field status)/$(echo "$out" | field balance)" = ok/120 ]
other=$(card 04e1e1e1e1e106)
out=$(pc 203.0.113.9 "$other" topup "$(unknown_code)")
check "per address: another address is unaffected (its unknown code answers code-invalid)" \
    [ "$(echo "$out" | field error)" = code-invalid ]

# Per card: 3 failures on one card, each from another address.
PCUID=04e2e2e2e2e201
pcard=$(card "$PCUID")
n=0
for i in 1 2 3; do
    out=$(pc "192.0.2.$i" "$pcard" topup "$(unknown_code)")
    [ "$(echo "$out" | field error)" = code-invalid ] && n=$((n + 1))
done
check "per card: 3 unknown codes from 3 addresses answer code-invalid" [ $n -eq 3 ]
out=$(pc 192.0.2.4 "$pcard" topup "$(unknown_code)")
check "per card: an unknown code from a fourth address answers limit-exceeded (throttled)" \
    [ "$(echo "$out" | field error)" = limit-exceeded ]
cv2=$(codes 130 1)
out=$(pc 192.0.2.5 "$pcard" topup "$cv2")
check "per card: the holder's good code from a fifth address tops up (a stranger's wrong codes never block it)" \
    [ "$(echo "$out" | field status)/$(echo "$out" | field balance)" = ok/130 ]
other=$(card 04e2e2e2e2e202)
out=$(pc 192.0.2.4 "$other" topup "$(unknown_code)")
check "per card: another card from that address is not limited (code-invalid)" \
    [ "$(echo "$out" | field error)" = code-invalid ]

# A claimed UID alone never counts.
VUID=04e3e3e3e3e301
victim=$(card "$VUID")
liar=$(card 04e3e3e3e3e302)
n=0
for i in 1 2 3 4 5 6; do
    out=$(pc "192.0.2.1$i" "$liar" topup "$(unknown_code)" --uid "$VUID")
    [ "$(echo "$out" | field error)" = auth-failed ] && n=$((n + 1))
done
check "claimed UID: 6 attempts naming the victim's UID with other keys answer auth-failed" [ $n -eq 6 ]
check "claimed UID: no failure counted for the victim" \
    [ "$(sys_sql "SELECT count(*) FROM code_failures WHERE card_uid = '\\x$VUID'")" = 0 ]
check "claimed UID: no lease, no ledger entry for the victim" \
    [ "$(sys_sql "SELECT (SELECT count(*) FROM ledger WHERE card_uid = '\\x$VUID') + (SELECT count(*) FROM card_leases WHERE card_uid = '\\x$VUID')")" = 0 ]
out=$(pc 192.0.2.30 "$victim" topup "$(codes 140 1)")
check "claimed UID: the victim's next top-up with a good code succeeds" \
    [ "$(echo "$out" | field status)/$(echo "$out" | field balance)" = ok/140 ]

# Typos (check character) are answered without the database: not counted.
tcard=$(card 04e4e4e4e4e401)
ct=$(codes 160 1)
first=$(printf '%s' "$ct" | cut -c1)
if [ "$first" = A ]; then swap=B; else swap=A; fi
typo="$swap$(printf '%s' "$ct" | cut -c2-)"
secret_code "$typo"
n=0
for i in 1 2 3 4 5; do
    out=$(pc 192.0.2.40 "$tcard" topup "$typo")
    [ "$(echo "$out" | field error)" = code-invalid ] && n=$((n + 1))
done
out=$(pc 192.0.2.40 "$tcard" topup "$ct")
check "typos: 5 mistyped codes answer code-invalid and use up no limit (the good code then tops up)" \
    [ "$n/$(echo "$out" | field status)" = 5/ok ]

# ------------------------------------ 1b. freeze: 3 integrity failures
# Issue 16: only failures with money at risk (after the WriteRecord went
# out) count toward freezing; anyone who reaches a card can tamper with
# the answers before it.
IUID=04e5e5e5e5e501
icard=$(card "$IUID")
ci=$(codes 170 1)
integrity_total() {
    metrics | awk '/^ota_worker_integrity_failures_total/ {s += $NF} END {print s + 0}'
}
m0=$(integrity_total)
n=0
for i in 1 2 3 4; do
    # Command 4 is the AbortTransaction right after authentication.
    out=$(pc 192.0.2.50 "$icard" topup "$ci" --corrupt 4)
    [ "$(echo "$out" | field error)" = integrity ] && n=$((n + 1))
done
check "integrity: 4 sessions with a tampered answer before the WriteRecord answer integrity" [ $n -eq 4 ]
check "integrity: they never count toward freezing (card not frozen, counter 0)" \
    [ "$(sys_sql "SELECT count(*) FROM cards WHERE card_uid = '\\x$IUID' AND (frozen OR integrity_failures > 0)")" = 0 ]
integrity_is() { [ "$(integrity_total)" -ge "$1" ]; }
wait_for 20 integrity_is $((m0 + 4))
rc=$?
check "integrity: ops still see them (ota_worker_integrity_failures_total $m0 -> $(integrity_total))" [ "$rc" -eq 0 ]
out=$(pc 192.0.2.50 "$icard" topup "$ci")
check "integrity: the card's holder then tops up" \
    [ "$(echo "$out" | field status)/$(echo "$out" | field balance)" = ok/170 ]
n=0
for i in 1 2 3; do
    # The read-back GetValue (0x6C) after the WriteRecord: booked, flagged.
    out=$(pc 192.0.2.50 "$icard" topup "$(codes 10 1)" --corrupt-after-write 6c)
    [ "$(echo "$out" | field status)" = ok ] && n=$((n + 1))
done
check "integrity: 3 top-ups with a tampered read-back are booked" [ $n -eq 3 ]
check "integrity: with money at risk, 3 in a row freeze the card (reason integrity)" \
    [ "$(sys_sql "SELECT frozen_reason FROM cards WHERE card_uid = '\\x$IUID' AND frozen")" = integrity ]
ci2=$(codes 20 1)
out=$(pc 192.0.2.50 "$icard" topup "$ci2")
check "integrity: a clean top-up on the frozen card answers card-error" \
    [ "$(echo "$out" | field error)" = card-error ]
ota-ctl --config "$CONF" cards unfreeze "$IUID" --reason "hardening test: relay replaced" \
    >>"$T/ctl.out" 2>>"$CTL_ERR"
out=$(pc 192.0.2.50 "$icard" topup "$ci2")
check "integrity: after ota-ctl cards unfreeze the same code tops up" \
    [ "$(echo "$out" | field status)/$(echo "$out" | field balance)" = ok/220 ]
check "integrity: freeze and unfreeze recorded in card_events" \
    [ "$(sys_sql "SELECT string_agg(event || ':' || reason, ',' ORDER BY id) FROM card_events WHERE card_uid = '\\x$IUID'")" = "freeze:integrity,unfreeze:hardening test: relay replaced" ]

# ------------------------------------------- 5. synchronous_commit off
sys_gateway_stop
sys_sql "ALTER DATABASE ota SET synchronous_commit = off" >/dev/null
check "control: a new session of database ota now has synchronous_commit off" \
    [ "$(sys_sql "SHOW synchronous_commit")" = off ]
log_lines=$(wc -l <"$T/gateway.log")
ota-gateway --config "$CONF" >>"$T/gateway.out" 2>&1 &
GW_PID=$!
ready=0
i=0
while [ $i -lt 80 ]; do
    if curl -fsS -o /dev/null "$ADMIN/readyz" 2>/dev/null; then ready=1; break; fi
    sleep 0.1
    i=$((i + 1))
done
check "synchronous_commit off: the gateway does not become ready in 8 s" [ $ready -eq 0 ]
check "synchronous_commit off: the worker's log says why (db_not_durable, synchronous_commit is 'off')" \
    sh -c "tail -n +$((log_lines + 1)) '$T/gateway.log' | grep 'db_not_durable' | grep -q \"synchronous_commit is 'off'\""
check "synchronous_commit off: no worker stays up" \
    sh -c "[ -z \"\$(pgrep -P $GW_PID -x ota-worker | while read p; do [ \$(( \$(date +%s) - \$(stat -c %Y /proc/\$p) )) -ge 3 ] && echo \$p; done)\" ]"
sys_sql "ALTER DATABASE ota RESET synchronous_commit" >/dev/null
check "control: with synchronous_commit back on the restarted workers make the gateway ready" \
    wait_http "$ADMIN/readyz" 300
sys_gateway_stop

# ------------------------------------------------------ 6. the logs
# Every log of the run: the gateway's and workers' log file and stderr,
# ota-ctl's diagnostics and non-code output, migrations, PostgreSQL's.
LOGS="$T/gateway.log $T/gateway.out $T/migrate.log $T/ctl.out $CTL_ERR $PG_DIR/server.log"
[ -d "$PG_DIR/log" ] && LOGS="$LOGS $(find "$PG_DIR/log" -type f | tr '\n' ' ')"
sort -u "$SECRETS" >"$C/secrets.u"
# Prints the number of secrets found in the given files (case-insensitive).
leaks() {
    # shellcheck disable=SC2086
    cat "$@" 2>/dev/null | grep -ioFf "$C/secrets.u" | sort | uniq -c | sed 's/^/# leak: /' >"$C/leaks"
    wc -l <"$C/leaks"
}
nsec=$(wc -l <"$C/secrets.u")
check "the run used many secrets ($nsec: codes, tokens, master/diversified/HMAC keys, KEK)" [ "$nsec" -ge 100 ]
check "PostgreSQL logged the statements with their parameters" \
    grep -q 'parameters: \$1' "$PG_DIR/server.log"
# The control: a log with one planted secret is caught.
cp "$T/gateway.log" "$C/planted.log"
sed -n 3p "$C/secrets.u" >>"$C/planted.log"
check "control: the log check finds a planted secret" [ "$(leaks "$C/planted.log")" -ge 1 ]
n=$(leaks $LOGS)
check "no log of the run holds a code, an operator token or a key ($(echo $LOGS | wc -w) files, $(cat $LOGS 2>/dev/null | wc -l) lines)" [ "$n" -eq 0 ]
[ "$n" -eq 0 ] || cat "$C/leaks"
# Full card UIDs: none in the gateway's and workers' logs (PostgreSQL's
# statement log of this test shows them as parameters; ota-ctl prints them
# to the operator on purpose).
nuid=$(wc -l <"$UIDS")
uid_hits=$(cat "$T/gateway.log" "$T/gateway.out" | grep -ciFf "$UIDS")
check "control: the gateway's log names cards by their last bytes ($(grep -c 'uid=\.\.' "$T/gateway.log") lines)" \
    [ "$(grep -c 'uid=\.\.' "$T/gateway.log")" -gt 0 ]
check "no full card UID ($nuid cards) in the gateway's and workers' logs ($uid_hits lines)" [ "$uid_hits" -eq 0 ]

sys_finish
