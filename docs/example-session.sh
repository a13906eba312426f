#!/bin/sh
# docs/example-session.sh: makes the annotated example of docs/PROTOCOL.md
# from a real run.  Starts the whole system the way the integration tests
# do (a throwaway PostgreSQL, test keys, ota-gateway with its workers; see
# tests/integration/lib.sh), personalizes a simulated card with the test
# keys, runs a first top-up (with the profile check), then a second top-up
# and a check with `ota-card run --trace`, and prints the traces of the
# second top-up and of the check (one JSON line per message; the code is
# shown as ***), or with --markdown the second top-up annotated by
# docs/annotate_trace.py.  Everything is stopped and removed on exit.
#
#   docs/example-session.sh [--build DIR] [--protocol v1|v2] [--markdown]
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${OTA_BUILDDIR:-$SRC/build/main}
PROTO=v2
MD=0
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=${2:?}; shift ;;
    --protocol) PROTO=${2:?}; shift ;;
    --markdown) MD=1 ;;
    *) echo "usage: $0 [--build DIR] [--protocol v1|v2] [--markdown]" >&2; exit 2 ;;
    esac
    shift
done
OTA_SRCDIR=$SRC
OTA_BUILDDIR=$(cd "$BUILD" && pwd)
export OTA_SRCDIR OTA_BUILDDIR
. "$OTA_SRCDIR/tests/integration/lib.sh"
sys_start >/dev/null
card=$(sys_card 04a1b2c3d4e5f6) || exit 1
codes=$(sys_codes 500 2 2>/dev/null) || exit 1
first=$(echo "$codes" | sed -n 1p)
second=$(echo "$codes" | sed -n 2p)
ota-card run --url "$PUB_URL" --card "$card" --quiet --protocol "$PROTO" \
    --trace "$T/first.trace" topup "$first" >&2 || exit 1
ota-card run --url "$PUB_URL" --card "$card" --quiet --protocol "$PROTO" \
    --trace "$T/topup.trace" topup "$second" >&2 || exit 1
ota-card run --url "$PUB_URL" --card "$card" --quiet --protocol "$PROTO" \
    --trace "$T/check.trace" check >&2 || exit 1
if [ "$MD" = 1 ]; then
    /usr/bin/python3 "$SRC/docs/annotate_trace.py" "$T/topup.trace"
    exit
fi
echo "# first top-up (profile check), protocol $PROTO"
cat "$T/first.trace"
echo "# second top-up, protocol $PROTO"
cat "$T/topup.trace"
echo "# check, protocol $PROTO"
cat "$T/check.trace"
