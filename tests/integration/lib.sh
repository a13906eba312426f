# lib.sh: start the whole system for one integration test.
#
# Sourced by tests/integration/test_*.sh.  Starts a throwaway PostgreSQL
# (pg.sh), migrates it with `ota-ctl db migrate`, creates sealed test keys,
# an operator token and a configuration with free loopback ports, starts
# `ota-gateway` (which forks its workers) and waits until /readyz says ready.
# Everything lives in one temporary directory and every process is stopped
# by pid on exit, also when the test fails.
#
#   . "$OTA_SRCDIR/tests/integration/lib.sh"
#   sys_start            # sets T (temp dir), CONF, PUB_URL, OP_URL, ADMIN, TOKEN
#   code=$(sys_codes 500 1)
#   sys_card new-card 04112233445566   # personalized card file $T/04112233445566.card
#   ota-card run --url "$PUB_URL" --card "$T/x.card" topup "$code"
#   ok "what was checked"  /  fail "what went wrong"
#
# Binaries come from $OTA_BUILDDIR (exported by `make check`).

set -u
: "${OTA_SRCDIR:?run through make check (OTA_SRCDIR unset)}"
: "${OTA_BUILDDIR:?run through make check (OTA_BUILDDIR unset)}"
PATH="$OTA_BUILDDIR/gateway:$OTA_BUILDDIR/worker:$OTA_BUILDDIR/tools:$PATH"
export PATH

. "$OTA_SRCDIR/tests/integration/pg.sh"

# Test master keys (public: tests only).
MASTER_KEYS=00112233445566778899aabbccddeeff,102132435465768798a9bacbdcedfe0f,2b7e151628aed2a6abf7158809cf4f3c,603deb1015ca71be2b73aef0857d7781,f0e1d2c3b4a5968778695a4b3c2d1e0f

. "$OTA_SRCDIR/tests/integration/tap.sh"

T=
GW_PID=

# Prints a free loopback TCP port.
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# sys_gateway_stop [TENTHS]: SIGTERM to the gateway (it drains), SIGKILL
# if it is still there after TENTHS tenths of a second (default 150).
sys_gateway_stop() {
    if [ -n "$GW_PID" ]; then
        kill -TERM "$GW_PID" 2>/dev/null
        _i=0
        while kill -0 "$GW_PID" 2>/dev/null && [ $_i -lt "${1:-150}" ]; do
            sleep 0.1
            _i=$((_i + 1))
        done
        kill -KILL "$GW_PID" 2>/dev/null
        wait "$GW_PID" 2>/dev/null
    fi
    GW_PID=
}

sys_cleanup() {
    sys_gateway_stop
    pg_stop
    if [ -n "$T" ] && [ "${KEEP_TMP:-0}" != 1 ]; then rm -rf "$T"; fi
}

sys_finish() {
    if ! tap_summary; then
        echo "# gateway log (last 60 lines):"
        tail -n 60 "$T/gateway.log" 2>/dev/null | sed 's/^/# /'
        exit 1
    fi
    exit 0
}

# wait_for SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds;
# fails after SECONDS.
wait_for() {
    _n=$(($1 * 10))
    shift
    _i=0
    until "$@"; do
        _i=$((_i + 1))
        [ $_i -gt $_n ] && return 1
        sleep 0.1
    done
    return 0
}

# Waits up to $2 tenths of a second for URL $1 to answer 200.
wait_http() {
    i=0
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt "$2" ]; then return 1; fi
        if [ -n "$GW_PID" ] && ! kill -0 "$GW_PID" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
}

# sys_write_conf: the configuration of this test (extra lines from $SYS_EXTRA_CONF).
sys_write_conf() {
    PUB_PORT=$(free_port)
    OP_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    PUB_URL="ws://127.0.0.1:$PUB_PORT/v1/session"
    OP_URL="ws://127.0.0.1:$OP_PORT/v1/session"
    ADMIN="http://127.0.0.1:$ADMIN_PORT"
    CONF="$T/ota.conf"
    cat >"$CONF" <<CONF
db.conninfo = $PG_CONNINFO
log.file = $T/gateway.log
gateway.listen = 127.0.0.1:$PUB_PORT
gateway.operator_listen = 127.0.0.1:$OP_PORT
gateway.admin_listen = 127.0.0.1:$ADMIN_PORT
gateway.runtime_dir = $T/run
gateway.workers = ${SYS_WORKERS:-2}
gateway.worker_path = $OTA_BUILDDIR/worker/ota-worker
worker.keyfile = $T/keys.sealed
worker.kek_file = $T/kek
worker.operator_token_hash = $TOKEN_HASH
${SYS_EXTRA_CONF:-}
CONF
    export PUB_URL OP_URL ADMIN CONF
}

sys_start() {
    T=$(mktemp -d /tmp/ota-it.XXXXXX)
    chmod 755 "$T"
    trap 'sys_cleanup' EXIT
    trap 'exit 130' INT TERM
    pg_start "$T" || exit 1
    ota-ctl keys gen-kek "$T/kek" >/dev/null || { echo "keys gen-kek failed" >&2; exit 1; }
    TOKEN=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    TOKEN_HASH=$(printf '%s' "$TOKEN" | ota-ctl operator token-hash) || { echo "token-hash failed" >&2; exit 1; }
    sys_write_conf
    ota-ctl --config "$CONF" db migrate >"$T/migrate.log" 2>&1 || { cat "$T/migrate.log"; exit 1; }
    ota-ctl --config "$CONF" keys import --master-keys "$MASTER_KEYS" --kek-file "$T/kek" \
        >/dev/null || { echo "keys import failed" >&2; exit 1; }
    sys_gateway_start
}

sys_gateway_start() {
    ota-gateway --config "$CONF" >>"$T/gateway.out" 2>&1 &
    GW_PID=$!
    if ! wait_http "$ADMIN/readyz" 300; then
        echo "the gateway did not become ready within 30 s" >&2
        tail -n 40 "$T/gateway.log" "$T/gateway.out" >&2 2>/dev/null
        exit 1
    fi
}

# sys_codes AMOUNT COUNT: issues codes, prints them one per line.
sys_codes() {
    ota-ctl --config "$CONF" codes issue --amount "$1" --count "$2"
}

# sys_card UID [BALANCE]: a card personalized with the test master keys,
# written to $T/UID.card; prints the path.
sys_card() {
    f="$T/$1.card"
    ota-card new --card "$f" --uid "$1" --profile --master-keys "${MASTER_KEYS%,*}" \
        --balance "${2:-0}" >/dev/null || return 1
    echo "$f"
}

# sys_sql SQL: one value from the test database.
sys_sql() {
    pg_as_owner "$PG_BIN/psql" -X -q -h "$PG_DIR" -U ota -d ota -tAc "$1"
}
