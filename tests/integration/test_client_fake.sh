#!/bin/sh
# ota-card run against a fake gateway (tests/integration/fake_gateway.py,
# python3-websockets): every result status and error code, modal texts,
# pings, a server that closes early, breaks the protocol, says nothing or
# never closes, the test-only faults (drop, lost tag, tear, stall), usage
# errors, an interrupt, and that the card file is saved after the session;
# protocol v2 batches (stop rule, lost tag, stall and drop inside a batch,
# a batch larger than announced), --trace, ota-card relay batch lines, a
# Python v2 client and ota-load's round-trip counts.
# Needs no database and no real gateway.  Asserts exit statuses and what
# the fake gateway saw, never timings.
set -u
: "${OTA_SRCDIR:?run through make check (OTA_SRCDIR unset)}"
: "${OTA_BUILDDIR:?run through make check (OTA_BUILDDIR unset)}"
PATH="$OTA_BUILDDIR/tools:$PATH"
export PATH
PY=/usr/bin/python3

T=$(mktemp -d /tmp/ota-client.XXXXXX)
FAKE_PID=
cleanup() {
    if [ -n "$FAKE_PID" ]; then
        kill -TERM "$FAKE_PID" 2>/dev/null
        wait "$FAKE_PID" 2>/dev/null
    fi
    if [ "${KEEP_TMP:-0}" != 1 ]; then rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$OTA_SRCDIR/tests/integration/tap.sh"

# --- start the fake gateway; wait (bounded) for the port it chose
LOG="$T/fake.log"
$PY "$OTA_SRCDIR/tests/integration/fake_gateway.py" --port-file "$T/port" --log "$LOG" \
    2>"$T/fake.err" &
FAKE_PID=$!
i=0
while [ ! -s "$T/port" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$FAKE_PID" 2>/dev/null; then
        echo "Bail out! the fake gateway did not start within 10 s"
        cat "$T/fake.err"
        exit 1
    fi
    sleep 0.1
done
BASE="ws://127.0.0.1:$(cat "$T/port")"

# A fresh card file per case (committed state only, like a real card).
KEYS=00112233445566778899aabbccddeeff,102132435465768798a9bacbdcedfe0f,2b7e151628aed2a6abf7158809cf4f3c,603deb1015ca71be2b73aef0857d7781
card() {
    ota-card new --card "$T/$1.card" --uid "$2" --profile --master-keys "$KEYS" >/dev/null ||
        { echo "Bail out! ota-card new failed" >&2; exit 1; }
    echo "$T/$1.card"
}
blank() {
    ota-card new --card "$T/$1.card" --uid "$2" --blank >/dev/null ||
        { echo "Bail out! ota-card new --blank failed" >&2; exit 1; }
    echo "$T/$1.card"
}
# runs ota-card run; stdout in $T/out, stderr in $T/err, exit status in $rc
run() {
    ota-card run "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
# Queries the fake's log for one path: `q PATH PYTHON-EXPR` prints the
# expression over E (the list of log entries for that path, oldest first).
q() {
    $PY -c 'import json,sys
E=[json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["path"]==sys.argv[2]]
print(eval(sys.argv[3]))' "$LOG" "$1" "$2"
}
last_json() { $PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get(sys.argv[2], ""))' "$T/out" "$1"; }

C=$(card main 04a1b2c3d4e5f6)

# --- ok results, modal, what the operation message carries
run --url "$BASE/ok" --card "$C" check
check "check ok: exit 0" [ "$rc" -eq 0 ]
check "check ok: a clear line with the balance" grep -q '^check ok: balance 1500$' "$T/out"
check "modal text is shown" grep -q '^modal: Hold the card still$' "$T/out"

: >"$LOG"
run --url "$BASE/ok" --card "$C" --json --request-id rq-42 topup 1234-5678-9012-3456-7
check "topup ok --json: exit 0" [ "$rc" -eq 0 ]
if [ "$(last_json status)" = ok ] && [ "$(last_json requestId)" = rq-42 ] && [ "$(last_json balance)" = 1500 ]; then
    ok "--json prints the result message itself"
else
    fail "--json prints the result message itself"
fi
check "--json keeps stdout to the result (modal on stderr)" [ "$(wc -l <"$T/out")" -eq 1 ]
check "operation: type, operation, tech, uid from the card, authCode, requestId, batch 16 (v2 by default)" \
    [ "$(q /ok 'E[0]["msg"]')" = "{'type': 'operation', 'operation': 'topup', 'uid': '04a1b2c3d4e5f6', 'tech': 'IsoDep', 'authCode': '1234-5678-9012-3456-7', 'requestId': 'rq-42', 'batch': 16}" ]
check "every command got a hex response from the card (4 of 4)" \
    [ "$(q /ok 'sum(1 for e in E if e["event"]=="recv" and e["msg"]["type"]=="response")')" = 4 ]
check "the card answered GetVersion with more frames (91af)" \
    [ "$(q /ok 'E[2]["msg"]["data"][-4:]')" = 91af ]
check "the client closed the session cleanly (1000)" [ "$(q /ok 'E[-1]["code"]')" = 1000 ]
run --url "$BASE/ok" --card "$C" topup 1111-2222-3333-4444-5
check "top-up line: amount, balance and txn" \
    grep -q '^top-up ok: +500, balance 1500 (txn 00112233445566778899aabbccddeeff)$' "$T/out"

: >"$LOG"
run --url "$BASE/ok" --card "$C" --uid 04998877665544 check
check "--uid overrides the card's UID (a lying client)" [ "$(q /ok 'E[0]["msg"]["uid"]')" = 04998877665544 ]
check "default requestId is set" [ -n "$(q /ok 'E[0]["msg"]["requestId"]')" ]
check "check sends an empty authCode" [ "$(q /ok 'repr(E[0]["msg"]["authCode"])')" = "''" ]

# --- protocol v1 exactly as before; v2 batches (docs/PROTOCOL.md section 8)
: >"$LOG"
run --url "$BASE/ok" --card "$C" --protocol v1 --request-id rq-43 topup 1234-5678-9012-3456-7
check "--protocol v1: ok against a v1 server (exit 0)" [ "$rc" -eq 0 ]
check "--protocol v1: the operation announces no batch" \
    [ "$(q /ok 'E[0]["msg"]')" = "{'type': 'operation', 'operation': 'topup', 'uid': '04a1b2c3d4e5f6', 'tech': 'IsoDep', 'authCode': '1234-5678-9012-3456-7', 'requestId': 'rq-43'}" ]
: >"$LOG"
run --url "$BASE/batch" --card "$C" --batch 4 check
check "v2: a batch of four APDUs and a single command in one session: ok (exit 0)" [ "$rc" -eq 0 ]
check "v2: --batch 4 is announced" [ "$(q /batch 'E[0]["msg"]["batch"]')" = 4 ]
check "v2: one responses message with the four answers in order (the last 9100)" \
    [ "$(q /batch '[(len(e["msg"]["data"]), e["msg"]["data"][2][-4:], e["msg"]["data"][3][-4:]) for e in E if e["event"]=="recv" and e["msg"]["type"]=="responses"]')" = "[(4, '91af', '9100')]" ]
check "v2: the single command inside the v2 session got a response" \
    [ "$(q /batch '[e["msg"]["type"] for e in E if e["event"]=="recv"]')" = "['operation', 'responses', 'response']" ]
: >"$LOG"
run --url "$BASE/batch" --card "$C" --protocol v1 check
check "v1 client on a v2-capable path: served one command at a time (exit 0)" \
    eval '[ "$rc" -eq 0 ] && [ "$(q /batch "sum(1 for e in E if e[\"event\"]==\"recv\" and e[\"msg\"][\"type\"]==\"response\")")" = 4 ]'
: >"$LOG"
run --url "$BASE/batch-stop" --card "$C" check
check "v2: the client stops after the first answer that is neither 9100 nor 91af (2 of 3 answers)" [ "$rc" -eq 0 ]
check "v2: the APDU after the refusal never reached the card" \
    [ "$(q /batch-stop '[len(e["msg"]["data"]) for e in E if e["event"]=="recv" and e["msg"]["type"]=="responses"]')" = "[2]" ]
: >"$LOG"
run --url "$BASE/batch-too-big" --card "$C" --batch 3 check
check "v2: a batch larger than announced is a protocol error (exit 4)" [ "$rc" -eq 4 ]
check "v2: ... the client answers nothing and closes with 1002" \
    [ "$(q /batch-too-big '([e["msg"]["type"] for e in E if e["event"]=="recv"], E[-1]["code"])')" = "(['operation'], 1002)" ]
: >"$LOG"
run --url "$BASE/batch" --card "$C" --lost-tag-after 2 check
check "v2 --lost-tag-after 2: the fake fails the operation with lost-tag (exit 1)" \
    eval '[ "$rc" -eq 1 ] && grep -q "failed: lost-tag" "$T/out"'
check "v2 --lost-tag-after 2: responses carries the first answer and error lost-tag" \
    [ "$(q /batch '[(len(e["msg"]["data"]), e["msg"].get("error")) for e in E if e["event"]=="recv" and e["msg"]["type"]=="responses"]')" = "[(1, 'lost-tag')]" ]
: >"$LOG"
run --url "$BASE/batch" --card "$C" --stall-after 3 --stall-ms 300 check
check "v2 --stall-after 3: the batch is answered late, whole (exit 0)" [ "$rc" -eq 0 ]
: >"$LOG"
run --url "$BASE/batch" --card "$C" --json --drop-after 3 check
check "v2 --drop-after 3: exit 4, kind dropped, no responses sent" \
    eval '[ "$rc" -eq 4 ] && [ "$(last_json kind)" = dropped ] && [ "$(q /batch "sum(1 for e in E if e[\"event\"]==\"recv\" and e[\"msg\"][\"type\"]==\"responses\")")" = 0 ]'
: >"$LOG"
rm -f "$T/trace"
run --url "$BASE/batch" --card "$C" --trace "$T/trace" topup 9999-8888-7777-6666-5
check "--trace: one JSON line per message, both ways (operation, modal, commands, responses, command, response, result)" \
    [ "$($PY -c 'import json,sys; print(",".join(json.loads(l)["dir"] + ":" + json.loads(l)["msg"]["type"] for l in open(sys.argv[1])))' "$T/trace")" = "out:operation,in:modal,in:commands,out:responses,in:command,out:response,in:result" ]
check "--trace: the code never appears, the operation shows ***" \
    eval '! grep -q 9999-8888 "$T/trace" && grep -q "\"authCode\":\"\*\*\*\"" "$T/trace"'

# --- ota-card relay: batch lines for apps in other languages
RL="$T/relay.card"
cp "$C" "$RL"
printf '905a00000300000000 9060000000 90af000000 90af000000\n905a00000300000000 90bd0000070100000000000000 9060000000\n9060000000\n9060000000  90af000000\nzz\n' |
    ota-card relay --card "$RL" >"$T/relay.out" 2>"$T/relay.err"
check "relay: the first line is the card's UID" [ "$(sed -n 1p "$T/relay.out")" = 04a1b2c3d4e5f6 ]
check "relay: a batch line of four APDUs gets four answers on one line, the last ending 9100" \
    [ "$(sed -n 2p "$T/relay.out" | awk '{ print NF, substr($2, length($2) - 3), substr($4, length($4) - 3) }')" = "4 91af 9100" ]
check "relay: a batch stops after the first answer that is neither 9100 nor 91af (2 answers)" \
    [ "$(sed -n 3p "$T/relay.out" | awk '{ print NF }')" = 2 ]
check "relay: one APDU per line still gets one answer (v1)" \
    [ "$(sed -n 4p "$T/relay.out" | awk '{ print NF, substr($1, length($1) - 3) }')" = "1 91af" ]
check "relay: two spaces or a word that is not hex: error, nothing runs" \
    [ "$(sed -n '5,6p' "$T/relay.out" | tr '\n' ' ')" = "error error " ]
: >"$LOG"
$PY "$OTA_SRCDIR/tests/integration/batch_client.py" "$BASE/batch" "$RL" check --batch 8 >"$T/bc.out" 2>"$T/bc.err"
check "batch_client.py (python, through ota-card relay) gets ok from a v2 batch session" [ $? -eq 0 ]
check "batch_client.py: two round trips (one batch, one single command), five APDUs" \
    grep -q '^round_trips=2 apdus=5$' "$T/bc.err"

# --- ota-load counts round trips and APDUs per operation, v2 and v1
lj() { $PY -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/load.json" "$1"; }
ota-load --url "$BASE/batch" --master-keys "${KEYS}" --count 3 --mix check=1 --seed 7 --json \
    >"$T/load.json" 2>"$T/load.err"
check "ota-load v2: 3 checks ok, 2 round trips (one batch of 4, one single command) and 5 APDUs each" \
    [ "$(lj '(r["ok"], r["protocol"], r["by_op"]["check"]["round_trips"], r["by_op"]["check"]["apdus"])')" = "(3, 'v2', 2.0, 5.0)" ]
ota-load --url "$BASE/batch" --master-keys "${KEYS}" --count 3 --mix check=1 --seed 7 --json \
    --protocol v1 >"$T/load.json" 2>"$T/load.err"
check "ota-load v1: the same path one command at a time, 4 round trips of one APDU" \
    [ "$(lj '(r["ok"], r["protocol"], r["by_op"]["check"]["round_trips"], r["by_op"]["check"]["apdus"])')" = "(3, 'v1', 4.0, 4.0)" ]

# --- every error code of docs/PROTOCOL.md section 4
for code in bad-request unsupported-card auth-failed card-error integrity code-invalid \
    code-used limit-exceeded card-busy timeout lost-tag overloaded internal; do
    run --url "$BASE/failed/$code" --card "$C" --quiet topup 1234
    if [ "$rc" -eq 1 ] && grep -q "failed: $code — ." "$T/out"; then
        ok "failed $code: exit 1 and a sentence"
    else
        fail "failed $code: exit 1 and a sentence"
    fi
done
run --url "$BASE/failed/code-used" --card "$C" --quiet topup 1234
check "code-used reads: this code was already used" grep -q 'failed: code-used — this code was already used' "$T/out"
check "--quiet hides modal texts" sh -c "! grep -q modal '$T/out'"
run --url "$BASE/failed/code-used" --card "$C" topup 1234
check "without --quiet the modal is shown" grep -q '^modal:' "$T/out"

run --url "$BASE/pending" --card "$C" topup 1234
check "pending: exit 3" [ "$rc" -eq 3 ]
check "pending: says so, with the txn" grep -q '^pending: .*00112233445566778899aabbccddeeff' "$T/out"

# --- the server misbehaves
run --url "$BASE/close-early" --card "$C" check
check "closed without a result: exit 4" [ "$rc" -eq 4 ]
check "closed without a result: the close code is reported" grep -q '1011' "$T/err"
: >"$LOG"
run --url "$BASE/bad-json" --card "$C" --json check
check "a message that is not JSON: exit 4" [ "$rc" -eq 4 ]
check "--json without a result: a client-error line" [ "$(last_json kind)" = protocol ]
check "a protocol error closes with 1002" [ "$(q /bad-json 'E[-1]["code"]')" = 1002 ]
: >"$LOG"
# The first command is held (stall), so the second arrives while it is outstanding.
run --url "$BASE/two-commands" --card "$C" --stall-after 1 --stall-ms 5000 check
check "a command while another is outstanding: exit 4" [ "$rc" -eq 4 ]
if [ "$(q /two-commands 'len([e for e in E if e["event"]=="recv"])')" = 1 ] && [ "$(q /two-commands 'E[-1]["code"]')" = 1002 ]; then
    ok "a command while another is outstanding: neither answered, closed with 1002"
else
    fail "a command while another is outstanding: neither answered, closed with 1002"
fi
: >"$LOG"
run --url "$BASE/big" --card "$C" check
check "a message over the limit: exit 4" [ "$rc" -eq 4 ]
check "a message over the limit closes with 1009" [ "$(q /big 'E[-1]["code"]')" = 1009 ]
run --url "$BASE/silent" --card "$C" --json --timeout-ms 700 check
check "a silent server: exit 4 after the timeout" eval '[ "$rc" -eq 4 ] && [ "$(last_json kind)" = timeout ]'
run --url "$BASE/no-close" --card "$C" check
check "a server that never closes after the result: exit 0 all the same" [ "$rc" -eq 0 ]
: >"$LOG"
run --url "$BASE/ping" --card "$C" check
if [ "$rc" -eq 0 ] && [ "$(q /ping 'sum(1 for e in E if e["event"]=="pong")')" = 1 ]; then
    ok "pings are answered (the fake got its pong)"
else
    fail "pings are answered (the fake got its pong)"
fi
run --url "$BASE/nowhere" --card "$C" check
check "an unknown path answers bad-request (exit 1)" [ "$rc" -eq 1 ]

# --- test-only faults
: >"$LOG"
run --url "$BASE/ok" --card "$C" --json --drop-after 2 check
check "--drop-after 2: exit 4, kind dropped" eval '[ "$rc" -eq 4 ] && [ "$(last_json kind)" = dropped ]'
if [ "$(q /ok 'sum(1 for e in E if e["event"]=="recv" and e["msg"]["type"]=="response")')" = 1 ] && [ "$(q /ok 'E[-1]["code"]')" = 1006 ]; then
    ok "--drop-after 2: one response, then the connection ends without a close frame"
else
    fail "--drop-after 2: one response, then the connection ends without a close frame"
fi
: >"$LOG"
run --url "$BASE/ok" --card "$C" --lost-tag-after 2 check
if [ "$rc" -eq 1 ] && grep -q 'failed: lost-tag' "$T/out"; then
    ok "--lost-tag-after 2: the fake fails the operation with lost-tag (exit 1)"
else
    fail "--lost-tag-after 2: the fake fails the operation with lost-tag (exit 1)"
fi
check "--lost-tag-after 2: the second answer is error lost-tag" \
    [ "$(q /ok '[e["msg"] for e in E if e["event"]=="recv"][2]')" = "{'type': 'error', 'kind': 'lost-tag'}" ]
: >"$LOG"
run --url "$BASE/ok" --card "$C" --stall-after 2 --stall-ms 300 check
if [ "$rc" -eq 0 ] && [ "$(q /ok 'sum(1 for e in E if e["event"]=="recv" and e["msg"]["type"]=="response")')" = 4 ]; then
    ok "--stall-after 2: answered late, all the same (exit 0, 4 responses)"
else
    fail "--stall-after 2: answered late, all the same (exit 0, 4 responses)"
fi

# --- the card really runs the APDUs and is saved afterwards
B=$(blank fresh 04010203040506)
check "a factory card has no application yet" sh -c "! ota-card show --card '$B' | grep -q 'application 332211'"
run --url "$BASE/create-app" --card "$B" check
check "the card ran CreateApplication and listed it (exit 0)" [ "$rc" -eq 0 ]
check "the card file was saved: the application is there" sh -c "ota-card show --card '$B' | grep -q 'application 332211'"
B2=$(blank torn 04010203040507)
: >"$LOG"
run --url "$BASE/create-app" --card "$B2" --json --tear-after 2 check
check "--tear-after 2: exit 4, kind torn" eval '[ "$rc" -eq 4 ] && [ "$(last_json kind)" = torn ]'
check "--tear-after 2: the answer to command 2 never left the phone" \
    [ "$(q /create-app 'sum(1 for e in E if e["event"]=="recv" and e["msg"]["type"]=="response")')" = 1 ]
check "--tear-after 2: the card file is still a valid card" sh -c "ota-card show --card '$B2' >/dev/null"

# --- interrupted: the card is saved, the server hears 1001
I=$(blank intr 04010203040508)
: >"$LOG"
ota-card run --url "$BASE/silent" --card "$I" check >"$T/out" 2>"$T/err" &
RUN_PID=$!
i=0
until [ "$(q /silent 'len(E)' 2>/dev/null)" = 1 ] || [ $i -gt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT "$RUN_PID"
wait "$RUN_PID"
rc=$?
check "interrupted: exit 4" [ "$rc" -eq 4 ]
i=0
until [ "$(q /silent 'E[-1]["event"]' 2>/dev/null)" = closed ] || [ $i -gt 50 ]; do sleep 0.1; i=$((i + 1)); done
check "interrupted: the session closes with 1001 (going away)" [ "$(q /silent 'E[-1]["code"]')" = 1001 ]
check "interrupted: the card file is still a valid card" sh -c "ota-card show --card '$I' >/dev/null"

# --- usage and connection errors
run --card "$C" check
check "no --url: exit 2" [ "$rc" -eq 2 ]
run --url "$BASE/ok" check
check "neither --card nor --pcsc: exit 2" [ "$rc" -eq 2 ]
run --url "$BASE/ok" --card "$C" topup
check "topup without a code: exit 2" [ "$rc" -eq 2 ]
run --url "$BASE/ok" --card "$C" refund 5
check "an unknown operation: exit 2" [ "$rc" -eq 2 ]
run --url "http://127.0.0.1/" --card "$C" check
check "a URL that is not ws:// or wss://: exit 2" [ "$rc" -eq 2 ]
run --url "$BASE/ok" --card "$T/missing.card" check
check "a card file that does not exist: exit 2" [ "$rc" -eq 2 ]
run --url "$BASE/ok" --card "$C" --drop-after 0 check
check "--drop-after 0: exit 2" [ "$rc" -eq 2 ]
FREE=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
run --url "ws://127.0.0.1:$FREE/v1/session" --card "$C" --json check
check "nobody listening: exit 4, kind connection" eval '[ "$rc" -eq 4 ] && [ "$(last_json kind)" = connection ]'
run --help
if [ "$rc" -eq 0 ] && grep -q -- '--tear-after' "$T/out" && grep -q -- '--lost-tag-after' "$T/out"; then
    ok "--help: exit 0 and documents the fault flags"
else
    fail "--help: exit 0 and documents the fault flags"
fi

tap_summary
