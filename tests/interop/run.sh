#!/bin/sh
# run.sh: the libfreefare interop test.  Two simulated cards (one
# personalized with known master keys, one blank) are attached with
# `ota-card vicc` to vsmartcard's vpcd inside a private pcscd, and
# df_interop checks them with Debian's libfreefare over libnfc's pcsc
# driver (rebuilt by build-libnfc.sh, loaded with LD_LIBRARY_PATH).
#
# Everything runs inside `unshare --net --mount --pid` (pcsc_env.sh):
# vpcd's listening sockets exist only on that namespace's loopback and
# /run/pcscd is a private tmpfs, so nothing on the host (its pcscd, /etc,
# /run) is seen or changed.
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

PCSC_NAME=interop
. "$here/pcsc_env.sh"

# ---------------------------------------------------------------------------
# Inside the namespaces: private pcscd, two virtual cards, df_interop.
# ---------------------------------------------------------------------------
inside() {
    tmp=$1 prefix=$2
    trap 'pcsc_env_stop_all' EXIT
    trap 'pcsc_env_stop_all; exit 1' INT TERM

    pcsc_env_private_run
    pcsc_env_start_pcscd "$tmp"
    pcsc_env_start_vicc "$tmp/perso.card" "$PCSC_PORT0" "$tmp/vicc-perso.log"
    pcsc_env_start_vicc "$tmp/blank.card" "$PCSC_PORT1" "$tmp/vicc-blank.log"
    pcsc_env_wait_cards "$prefix" "$tmp" "$PERSO_UID" "$BLANK_UID" || exit 1

    status=0
    LD_LIBRARY_PATH="$prefix/lib" "$OTA_BUILDDIR/tests/interop/df_interop" \
        --reader "pcsc:$PCSC_READER0" --uid "$PERSO_UID" \
        --master-keys "$MASTER_KEYS" --system-id "$SYSTEM_ID" --balance "$BALANCE" \
        --blank-reader "pcsc:$PCSC_READER1" --blank-uid "$BLANK_UID" || status=$?
    pcsc_env_stop_viccs || status=1
    pcsc_env_stop_all
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
pcsc_env_check "$builddir" tools/ota-card tests/interop/df_interop
prefix=$(pcsc_env_libnfc "$srcdir") || exit 1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ota-interop.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'rm -rf "$tmp"; exit 1' INT TERM

"$builddir/tools/ota-card" new --card "$tmp/perso.card" --uid "$PERSO_UID" --profile \
    --master-keys "$MASTER_KEYS" --system-id "$SYSTEM_ID" --balance "$BALANCE" ||
    pcsc_env_fail "ota-card new (personalized) failed"
"$builddir/tools/ota-card" new --card "$tmp/blank.card" --uid "$BLANK_UID" --blank ||
    pcsc_env_fail "ota-card new (blank) failed"

pcsc_env_reader_conf "$tmp" "$PCSC_PORT0"
if ! pcsc_env_userns; then
    echo "interop: SKIP: cannot create network and mount namespaces (run as root)" >&2
    exit 77
fi

status=0
OTA_BUILDDIR=$builddir
export OTA_BUILDDIR
pcsc_env_enter "$here/run.sh" "$tmp" "$prefix" || status=$?
if [ "$status" -eq 0 ]; then
    # The committed state went back to the card files.
    "$builddir/tools/ota-card" show --card "$tmp/perso.card" >"$tmp/show.out" ||
        pcsc_env_fail "ota-card show failed"
    echo "# ota-card show after the test:"
    sed 's/^/#   /' "$tmp/show.out"
fi
exit "$status"
