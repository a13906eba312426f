#!/bin/sh
# test_pcsc_e2e.sh: the whole system with a card behind the real PC/SC
# stack.  Inside private network and mount namespaces (pcsc_env.sh): the
# system of tests/integration/lib.sh (PostgreSQL on a unix socket, the
# gateway and its workers on the namespace's loopback), a private pcscd
# with vpcd, and a FACTORY card (`ota-card new --blank`) attached with
# `ota-card vicc`.  `ota-card run --pcsc` personalizes it on the operator
# listener, checks, tops up with an issued code (protocol v2: batches run
# on the reader APDU by APDU) and checks again (protocol v1); then
# df_interop --after-personalize (Debian's libfreefare over libnfc's pcsc
# driver) proves that the PICC is locked (issue "hardening": the all-zero
# keys fail, DeleteApplication / FormatPICC / CreateApplication /
# GetApplicationIDs need the PICC key) and that the diversified PICC key
# of master key 5 opens it.
#
# Needs root: PostgreSQL and the workers run as the `ota` user, which a
# user namespace cannot switch to (exit 77 otherwise).  Every process is
# stopped by its pid, also on failure.
set -u

here=$(cd "$(dirname "$0")" && pwd)
OTA_SRCDIR=${OTA_SRCDIR:-$(cd "$here/../.." && pwd)}
OTA_BUILDDIR=${OTA_BUILDDIR:-$(pwd)}
export OTA_SRCDIR OTA_BUILDDIR

CARD_UID=04e2e0c0ffee07
SYSTEM_ID=OTA1
AMOUNT=1250

PCSC_NAME=test_pcsc_e2e
. "$here/pcsc_env.sh"

# ---------------------------------------------------------------------------
# Inside the namespaces.
# ---------------------------------------------------------------------------
inside() {
    tmp=$1 prefix=$2
    card="$tmp/factory.card"
    # The loopback must be up before the gateway binds to it.
    pcsc_env_private_run
    . "$OTA_SRCDIR/tests/integration/lib.sh"
    sys_start
    trap 'pcsc_env_stop_all; sys_cleanup' EXIT

    pcsc_env_start_pcscd "$tmp"
    pcsc_env_start_vicc "$card" "$PCSC_PORT0" "$tmp/vicc.log"
    if ! pcsc_env_wait_cards "$prefix" "$tmp" "$CARD_UID"; then
        fail "the factory card appears in the vpcd reader"
        sys_finish
    fi
    ok "the factory card $CARD_UID appears in the vpcd reader"

    run() {
        echo "## ota-card run $*" | sed 's/\(topup\|personalize\) .*/\1 (hidden)/' >>"$T/client.err"
        ota-card run --json --verbose --pcsc "$PCSC_READER0" "$@" 2>>"$T/client.err"
    }
    field() {
        /usr/bin/python3 -c 'import json,sys
lines = sys.stdin.read().strip().splitlines()
print(json.loads(lines[-1]).get(sys.argv[1], "") if lines else "")' "$1"
    }
    card_value() {
        ota-card show --card "$card" | sed -n 's/^ *value \(-\{0,1\}[0-9][0-9]*\)$/\1/p' | head -n 1
    }

    # --- through PC/SC: personalize, check, top-up, check
    out=$(run --url "$OP_URL" personalize "$TOKEN")
    rc=$?
    check "PC/SC: personalize the factory card on the operator listener ($rc/$(echo "$out" | field status))" \
        [ "$rc/$(echo "$out" | field status)" = 0/ok ]
    check "the database records the card as personalized" \
        [ "$(sys_sql "SELECT count(*) FROM cards WHERE card_uid = '\\x$CARD_UID' AND personalized_at IS NOT NULL")" = 1 ]
    ota-card show --card "$card" >"$tmp/show1.out" 2>&1
    check "the card file: PICC key now AES with key settings 0x09" \
        grep -q "^picc: key settings 0x09, master key AES" "$tmp/show1.out"
    check "the card file: application C0FFEE, value 0" \
        [ "$(grep -c '^application C0FFEE' "$tmp/show1.out")/$(card_value)" = 1/0 ]

    out=$(run --url "$OP_URL" personalize "$TOKEN")
    rc=$?
    check "PC/SC: personalize again leaves the card as it is ($rc/$(echo "$out" | field status))" \
        [ "$rc/$(echo "$out" | field status)" = 0/ok ]

    out=$(run --url "$PUB_URL" check)
    rc=$?
    check "PC/SC: check after personalize: ok, balance 0 ($rc/$(echo "$out" | field balance))" \
        [ "$rc/$(echo "$out" | field balance)" = 0/0 ]

    code=$(sys_codes "$AMOUNT" 1)
    out=$(run --url "$PUB_URL" --trace "$tmp/topup.trace" topup "$code")
    rc=$?
    check "PC/SC: top-up $AMOUNT ok ($rc/$(echo "$out" | field balance))" \
        [ "$rc/$(echo "$out" | field balance)" = "0/$AMOUNT" ]
    batches=$(grep -c '"type":"commands"' "$tmp/topup.trace")
    if [ "$(grep -c '"dir":"in".*"type":"command"' "$tmp/topup.trace")" -gt 0 ] && [ "$batches" = 0 ]; then
        ok "PC/SC: the top-up ran in v2 batches # SKIP the gateway sent no batch: it speaks v1 only"
    else
        check "PC/SC: the top-up ran in v2 batches, APDU by APDU on the reader ($batches batches)" \
            [ "$batches" -gt 0 ]
    fi
    txn=$(echo "$out" | field txn)
    check "the top-up result names its ledger transaction" [ -n "$txn" ]
    check "ledger: exactly one committed entry for it" \
        [ "$(sys_sql "SELECT count(*) FROM ledger WHERE txn_id = '$txn' AND kind = 'committed'")" = 1 ]
    check "the card file's value is $AMOUNT" [ "$(card_value)" = "$AMOUNT" ]

    out=$(run --url "$PUB_URL" --protocol v1 topup "$code")
    rc=$?
    check "PC/SC, protocol v1: the same code again answers code-used ($rc/$(echo "$out" | field error))" \
        [ "$rc/$(echo "$out" | field error)" = 1/code-used ]

    out=$(run --url "$PUB_URL" --protocol v1 check)
    rc=$?
    check "PC/SC, protocol v1: check after top-up: balance $AMOUNT ($rc/$(echo "$out" | field balance))" \
        [ "$rc/$(echo "$out" | field balance)" = "0/$AMOUNT" ]
    check "the card file's value is still $AMOUNT" [ "$(card_value)" = "$AMOUNT" ]

    out=$(ota-card run --json --pcsc "No Such Reader" --url "$PUB_URL" check 2>"$tmp/noreader.err")
    rc=$?
    grep -q "no reader named 'No Such Reader'" "$tmp/noreader.err" && said=named || said=unnamed
    check "PC/SC: a reader that does not exist is a client error ($rc), $said on stderr" \
        [ "$rc/$said" = 4/named ]

    out=$(ota-card run --json --pcsc "$PCSC_READER1" --url "$PUB_URL" check 2>"$tmp/empty.err")
    rc=$?
    grep -q "no card in reader '$PCSC_READER1'" "$tmp/empty.err" && said=named || said=unnamed
    check "PC/SC: an empty reader is a client error ($rc), $said on stderr" [ "$rc/$said" = 4/named ]

    # Without a name, --pcsc takes the first reader (slot 0, the card's).
    out=$(ota-card run --json --pcsc --url "$PUB_URL" check 2>>"$T/client.err")
    rc=$?
    check "PC/SC: --pcsc without a reader name uses the first reader ($rc/$(echo "$out" | field balance))" \
        [ "$rc/$(echo "$out" | field balance)" = "0/$AMOUNT" ]

    # --- libfreefare: the PICC is locked, the diversified keys open it
    LD_LIBRARY_PATH="$prefix/lib" "$OTA_BUILDDIR/tests/interop/df_interop" --after-personalize \
        --reader "pcsc:$PCSC_READER0" --uid "$CARD_UID" --master-keys "$MASTER_KEYS" \
        --system-id "$SYSTEM_ID" --balance "$AMOUNT" >"$tmp/df_interop.out" 2>&1
    rc=$?
    sed 's/^/#   /' "$tmp/df_interop.out"
    check "libfreefare: $(grep '^# [0-9]* of [0-9]* checks passed' "$tmp/df_interop.out" |
        sed 's/^# //') after personalization (exit $rc)" [ "$rc" -eq 0 ]

    # The checks above changed nothing: the system still sees its card.
    out=$(run --url "$PUB_URL" check)
    rc=$?
    check "PC/SC: check after the libfreefare session: balance $AMOUNT ($rc/$(echo "$out" | field balance))" \
        [ "$rc/$(echo "$out" | field balance)" = "0/$AMOUNT" ]

    check "ota-card vicc exits 0 on SIGTERM" pcsc_env_stop_viccs
    pcsc_env_stop_all
    check "the saved card file's value is $AMOUNT" [ "$(card_value)" = "$AMOUNT" ]
    if [ "$TESTS_FAILED" -ne 0 ]; then
        for f in "$T/client.err" "$tmp/vicc.log"; do
            echo "# ===== $f (last 30 lines)"
            tail -n 30 "$f" 2>/dev/null | sed 's/^/# /'
        done
    fi
    sys_finish
}

if [ "${1:-}" = "--inside" ]; then
    inside "$2" "$3"
    exit $?
fi

# ---------------------------------------------------------------------------
# Outside: check the parts, build libnfc, make the card, enter namespaces.
# ---------------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
    echo "test_pcsc_e2e: SKIP: needs root (PostgreSQL and the workers run as user ota)" >&2
    exit 77
fi
pcsc_env_check "$OTA_BUILDDIR" tools/ota-card tools/ota-ctl gateway/ota-gateway \
    worker/ota-worker tests/interop/df_interop
prefix=$(pcsc_env_libnfc "$OTA_SRCDIR") || exit 1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ota-pcsc-e2e.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'rm -rf "$tmp"; exit 1' INT TERM

"$OTA_BUILDDIR/tools/ota-card" new --card "$tmp/factory.card" --uid "$CARD_UID" --blank >/dev/null ||
    pcsc_env_fail "ota-card new --blank failed"
pcsc_env_reader_conf "$tmp" "$PCSC_PORT0"
if ! pcsc_env_userns; then
    echo "test_pcsc_e2e: SKIP: cannot create network and mount namespaces" >&2
    exit 77
fi
status=0
pcsc_env_enter "$here/test_pcsc_e2e.sh" "$tmp" "$prefix" || status=$?
exit "$status"
