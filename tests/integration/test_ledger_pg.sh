#!/bin/sh
# test_ledger_pg.sh: runs tests/integration/test_ledger_pg (worker/ledger_pg.c
# against a real PostgreSQL 15) on a throwaway cluster with schema/ applied.
# Needs OTA_SRCDIR and OTA_BUILDDIR (set by `make check`), or runs from a
# build directory with the source tree next to this script.
set -u
here=$(cd "$(dirname "$0")" && pwd)
OTA_SRCDIR=${OTA_SRCDIR:-$(cd "$here/../.." && pwd)}
OTA_BUILDDIR=${OTA_BUILDDIR:-$(pwd)}
prog="$OTA_BUILDDIR/tests/integration/test_ledger_pg"
[ -x "$prog" ] || { echo "test_ledger_pg.sh: $prog not built (make tests/integration/test_ledger_pg)" >&2; exit 99; }

. "$OTA_SRCDIR/tests/integration/pg.sh"
tmp=$(mktemp -d /tmp/ota-ledger-pg.XXXXXX) || exit 99
trap 'pg_stop; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

pg_start "$tmp" || exit 99
pg_migrate "$OTA_SRCDIR/schema" || exit 1

# The C test restarts the cluster through this command (fast shutdown,
# start again on the same directory and socket).
OTA_TEST_PG_RESTART=". '$OTA_SRCDIR/tests/integration/pg.sh'; PG_DIR='$PG_DIR'; pg_restart fast"
OTA_TEST_CONNINFO=$PG_CONNINFO
export OTA_TEST_PG_RESTART OTA_TEST_CONNINFO
# $OTA_VALGRIND, if set, prefixes the program (tests/run-all).
${OTA_VALGRIND:-} "$prog"
