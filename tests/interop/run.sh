#!/bin/sh
# run.sh: the libfreefare interop test.  Two simulated cards (one
# personalized with known master keys, one blank) are attached with
# `ota-card vicc` to vsmartcard's vpcd inside a private pcscd, and
# df_interop checks them with Debian's libfreefare over libnfc's pcsc
# driver (rebuilt by build-libnfc.sh, loaded with LD_LIBRARY_PATH).
#
# Everything runs inside `unshare --net --mount`: vpcd's listening sockets
# exist only on that namespace's loopback and /run/pcscd is a private
# tmpfs, so nothing on the host (its pcscd, /etc, /run) is seen or changed.
# Every process started here is stopped by its pid, also on failure.
# Exit status: df_interop's; 77 (skip) when namespaces are not available.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${OTA_SRCDIR:-$(cd "$here/../.." && pwd)}
builddir=${OTA_BUILDDIR:-$(pwd)}

# Fixed test material: the personalized card's UID and master keys.
PERSO_UID=04a1b2c3d4e580
BLANK_UID=04c0ffee123481
MASTER_KEYS=000102030405060708090a0b0c0d0e0f,101112131415161718191a1b1c1d1e1f,202122232425262728292a2b2c2d2e2f,303132333435363738393a3b3c3d3e3f
SYSTEM_ID=OTA1
BALANCE=250
PERSO_PORT=35963  # vpcd slot 0 ("Virtual PCD 00 00")
BLANK_PORT=35964  # vpcd slot 1 ("Virtual PCD 00 01")
VPCD_DRIVER=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
WAIT_SECONDS=30

fail() {
    echo "interop: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Inside the namespaces: private pcscd, two virtual cards, df_interop.
# ---------------------------------------------------------------------------
inside() {
    tmp=$1 prefix=$2
    pids=""
    stop_all() {
        for p in $pids; do
            kill "$p" 2>/dev/null || true
        done
        for p in $pids; do
            wait "$p" 2>/dev/null || true
        done
        pids=""
    }
    trap 'stop_all' EXIT
    trap 'stop_all; exit 1' INT TERM

    # A private /run/pcscd; if the host has none, a private /run to hold it
    # (mkdir on the host's /run would change the host).
    if [ -d /run/pcscd ]; then
        mount -t tmpfs -o mode=0755 ota-pcscd /run/pcscd
    else
        mount -t tmpfs -o mode=0755 ota-run /run
        mkdir /run/pcscd
    fi
    ip link set lo up

    pcscd --foreground --config "$tmp/reader.conf.d" >"$tmp/pcscd.log" 2>&1 &
    pcscd_pid=$!
    pids="$pcscd_pid"
    "$builddir/tools/ota-card" vicc --card "$tmp/perso.card" \
        --connect "127.0.0.1:$PERSO_PORT" >"$tmp/vicc-perso.log" 2>&1 &
    vicc_pids="$!"
    "$builddir/tools/ota-card" vicc --card "$tmp/blank.card" \
        --connect "127.0.0.1:$BLANK_PORT" >"$tmp/vicc-blank.log" 2>&1 &
    vicc_pids="$vicc_pids $!"
    pids="$pids $vicc_pids"

    # Wait (bounded) until both cards are seen through PC/SC by libnfc.
    deadline=$(($(date +%s) + WAIT_SECONDS))
    while :; do
        LD_LIBRARY_PATH="$prefix/lib" "$prefix/bin/nfc-list" -t 1 >"$tmp/nfc-list.out" 2>&1 || true
        # nfc-list prints "UID (NFCID1): 04  a1  ..."; compare without spaces.
        tr -d ' ' <"$tmp/nfc-list.out" >"$tmp/nfc-list.uids"
        if grep -qi "UID(NFCID1):$PERSO_UID" "$tmp/nfc-list.uids" &&
            grep -qi "UID(NFCID1):$BLANK_UID" "$tmp/nfc-list.uids"; then
            break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "interop: after ${WAIT_SECONDS}s libnfc still does not list both cards" \
                "(UIDs $PERSO_UID, $BLANK_UID) in the vpcd readers" >&2
            for f in nfc-list.out vicc-perso.log vicc-blank.log pcscd.log; do
                echo "===== $f" >&2
                tail -n 30 "$tmp/$f" >&2 || true
            done
            exit 1
        fi
        sleep 0.2
    done

    status=0
    LD_LIBRARY_PATH="$prefix/lib" "$builddir/tests/interop/df_interop" \
        --reader "pcsc:Virtual PCD 00 00" --uid "$PERSO_UID" \
        --master-keys "$MASTER_KEYS" --system-id "$SYSTEM_ID" --balance "$BALANCE" \
        --blank-reader "pcsc:Virtual PCD 00 01" --blank-uid "$BLANK_UID" || status=$?
    # ota-card vicc must exit cleanly (status 0) on SIGTERM.
    for p in $vicc_pids; do
        kill -TERM "$p" 2>/dev/null || true
        vstatus=0
        wait "$p" || vstatus=$?
        if [ "$vstatus" -ne 0 ]; then
            echo "interop: ota-card vicc (pid $p) exited with status $vstatus on SIGTERM" >&2
            status=1
        fi
    done
    pids="$pcscd_pid"
    stop_all
    if [ "$status" -ne 0 ]; then
        for f in vicc-perso.log vicc-blank.log; do
            echo "===== $f" >&2
            tail -n 20 "$tmp/$f" >&2 || true
        done
    fi
    return "$status"
}

if [ "${1:-}" = "--inside" ]; then
    inside "$2" "$3"
    exit $?
fi

# ---------------------------------------------------------------------------
# Outside: check the parts, build libnfc, make the cards, enter namespaces.
# ---------------------------------------------------------------------------
for tool in pcscd unshare ip mount; do
    command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found (run deploy/setup.sh)"
done
[ -r "$VPCD_DRIVER" ] || fail "$VPCD_DRIVER not found (package vsmartcard-vpcd)"
[ -x "$builddir/tools/ota-card" ] || fail "$builddir/tools/ota-card is not built"
[ -x "$builddir/tests/interop/df_interop" ] || fail "$builddir/tests/interop/df_interop is not built"

if [ "$(id -u)" -ne 0 ] && [ -z "${OTA_CACHE:-}" ]; then
    OTA_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ota-topup
    export OTA_CACHE
fi
prefix=$("$srcdir/tests/interop/build-libnfc.sh" | tail -n 1)
[ -x "$prefix/bin/nfc-list" ] || fail "build-libnfc.sh gave no usable prefix ($prefix)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ota-interop.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'rm -rf "$tmp"; exit 1' INT TERM

"$builddir/tools/ota-card" new --card "$tmp/perso.card" --uid "$PERSO_UID" --profile \
    --master-keys "$MASTER_KEYS" --system-id "$SYSTEM_ID" --balance "$BALANCE" ||
    fail "ota-card new (personalized) failed"
"$builddir/tools/ota-card" new --card "$tmp/blank.card" --uid "$BLANK_UID" --blank ||
    fail "ota-card new (blank) failed"

# vpcd in its normal mode: pcscd listens, each vicc connects to one slot.
# (The reversed mode crashes pcscd when a slot is empty.)
mkdir "$tmp/reader.conf.d"
cat >"$tmp/reader.conf.d/vpcd" <<EOF
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:$PERSO_PORT
LIBPATH      $VPCD_DRIVER
CHANNELID    $PERSO_PORT
EOF

userns=""
if [ "$(id -u)" -ne 0 ]; then
    userns="--user --map-root-user"
fi
# shellcheck disable=SC2086
if ! unshare $userns --net --mount true 2>/dev/null; then
    echo "interop: SKIP: cannot create network and mount namespaces (run as root)" >&2
    exit 77
fi

status=0
# --kill-child: if this script is killed, nothing inside survives it.
# shellcheck disable=SC2086
OTA_BUILDDIR=$builddir unshare $userns --net --mount --fork --kill-child \
    sh "$here/run.sh" --inside "$tmp" "$prefix" || status=$?
if [ "$status" -eq 0 ]; then
    # The committed state went back to the card files.
    "$builddir/tools/ota-card" show --card "$tmp/perso.card" >"$tmp/show.out" ||
        fail "ota-card show failed"
    echo "# ota-card show after the test:"
    sed 's/^/#   /' "$tmp/show.out"
fi
exit "$status"
