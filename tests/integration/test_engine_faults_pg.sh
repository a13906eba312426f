#!/bin/sh
# test_engine_faults_pg.sh: the engine's fault matrix (tests/unit/
# test_engine_faults.c, the same cases the unit test runs on the in-memory
# ledger) against the PostgreSQL ledger: worker/ledger_pg.c on a throwaway
# cluster with schema/ applied.  $OTA_VALGRIND, if set, prefixes the program
# (tests/run-all runs it under valgrind).
set -u
here=$(cd "$(dirname "$0")" && pwd)
OTA_SRCDIR=${OTA_SRCDIR:-$(cd "$here/../.." && pwd)}
OTA_BUILDDIR=${OTA_BUILDDIR:-$(pwd)}
prog="$OTA_BUILDDIR/tests/integration/test_engine_faults_pg"
[ -x "$prog" ] || { echo "test_engine_faults_pg.sh: $prog not built" >&2; exit 99; }

. "$OTA_SRCDIR/tests/integration/pg.sh"
tmp=$(mktemp -d /tmp/ota-faults-pg.XXXXXX) || exit 99
trap 'pg_stop; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

pg_start "$tmp" || exit 99
pg_migrate "$OTA_SRCDIR/schema" || exit 1

OTA_TEST_CONNINFO=$PG_CONNINFO
export OTA_TEST_CONNINFO
${OTA_VALGRIND:-} "$prog"
