#!/bin/sh
# test_quickstart.sh: deploy/quickstart on the built tree, in a temporary
# var directory with free ports (QUICKSTART_* settings, see the script):
#   - its demo personalizes, checks and tops up the demo card;
#   - it writes var/env, which puts the programs on PATH when sourced;
#   - the commands it prints for a second terminal work as printed: they
#     run in a fresh shell with only var/env sourced (issue a code, top up
#     and check the demo card, read /metrics, show the ledger);
#   - SIGTERM (what Ctrl-C does) stops the gateway and the database.
# The package test (test_package.sh) runs the same script against the
# installed programs.  Runs standalone or from make check.
set -u
SRC=${OTA_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BLD=${OTA_BUILDDIR:-$SRC/build/main}
. "$SRC/tests/integration/tap.sh"

T=$(mktemp -d /tmp/ota-qs.XXXXXX) || exit 1
chmod 755 "$T"
QS=
cleanup() {
    if [ -n "$QS" ]; then
        kill -TERM "$QS" 2>/dev/null
        wait "$QS" 2>/dev/null
    fi
    # Never leave a cluster behind, even if the quick start could not stop it.
    if [ -f "$T/var/pg/postmaster.pid" ]; then
        if [ "$(id -u)" -eq 0 ]; then
            runuser -u ota -- /usr/lib/postgresql/15/bin/pg_ctl -D "$T/var/pg" stop -m immediate >/dev/null 2>&1
        else
            /usr/lib/postgresql/15/bin/pg_ctl -D "$T/var/pg" stop -m immediate >/dev/null 2>&1
        fi
    fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
PUB=$(free_port)
OP=$(free_port)
ADM=$(free_port)

QUICKSTART_SETUP=no QUICKSTART_PATH="$BLD/gateway:$BLD/worker:$BLD/tools" \
    QUICKSTART_VAR="$T/var" QUICKSTART_PORTS="$PUB $OP $ADM" \
    "$SRC/deploy/quickstart" >"$T/qs.out" 2>&1 &
QS=$!

# The hand-over's last line, or the quick start's end.
i=0
while ! grep -q '^== the manual pages' "$T/qs.out" && kill -0 "$QS" 2>/dev/null && [ $i -lt 1800 ]; do
    sleep 0.1
    i=$((i + 1))
done
if grep -q '^== the manual pages' "$T/qs.out"; then
    ok "the quick start ran its demo and printed the hand-over"
else
    fail "the quick start ended or hung before its hand-over:"
    tail -n 30 "$T/qs.out" | sed 's/^/#   /'
fi
check "demo: top-up of 500 on the demo card" grep -q '^top-up ok: +500, balance 500 ' "$T/qs.out"
check "demo: check shows balance 500" grep -q '^check ok: balance 500' "$T/qs.out"

# var/env alone, in an otherwise empty environment, finds the programs.
found=$(env -i PATH=/usr/bin:/bin sh -c ". '$T/var/env' && command -v ota-ctl && command -v ota-card" 2>&1)
if [ "$found" = "$BLD/tools/ota-ctl
$BLD/tools/ota-card" ]; then
    ok "sourcing var/env puts the built ota-ctl and ota-card on PATH"
else
    fail "after . var/env, ota-ctl and ota-card are: $found"
fi

# The printed commands, exactly as printed, in a second shell.
sed -n '/^== the gateway keeps running/,/^== the manual pages/s/^    //p' "$T/qs.out" >"$T/second.sh"
check "the hand-over prints six commands, the first one sources var/env" \
    [ "$(wc -l <"$T/second.sh")/$(head -n 1 "$T/second.sh")" = "6/. $T/var/env" ]
if (cd / && env -i PATH=/usr/bin:/bin HOME="$T" sh -e "$T/second.sh") >"$T/second.out" 2>&1; then
    ok "the printed commands run without an error"
else
    fail "the printed commands failed:"
    sed 's/^/#   /' "$T/second.out"
fi
check "second terminal: the top-up adds 250 (balance 750)" grep -q '^top-up ok: +250, balance 750 ' "$T/second.out"
check "second terminal: check shows balance 750" grep -q '^check ok: balance 750' "$T/second.out"
check "second terminal: /metrics counts the two top-ups" \
    grep -q '^ota_gateway_sessions_total{operation="topup",result="ok"} 2$' "$T/second.out"
check "second terminal: the ledger shows both top-ups committed (500 and 250)" \
    [ "$(awk '$2 == "04a1b2c3d4e5f6" && $6 == "committed" { print $3 }' "$T/second.out" | sort | tr '\n' ' ')" = "250 500 " ]

# Ctrl-C (here SIGTERM: a background job ignores SIGINT) stops everything.
kill -TERM "$QS"
i=0
while kill -0 "$QS" 2>/dev/null && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
done
if ! kill -0 "$QS" 2>/dev/null; then
    wait "$QS" 2>/dev/null
    QS=
    if [ ! -f "$T/var/pg/postmaster.pid" ] && ! curl -fsS -o /dev/null "http://127.0.0.1:$ADM/healthz" 2>/dev/null; then
        ok "SIGTERM stops the quick start, its gateway and its database"
    else
        fail "after the quick start ended, the gateway or the database still runs"
    fi
else
    fail "the quick start did not end within 60 s of SIGTERM"
fi

tap_summary || { echo "# quick start output:"; sed 's/^/#   /' "$T/qs.out"; exit 1; }
