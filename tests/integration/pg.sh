# pg.sh: start and stop a throwaway PostgreSQL 15 cluster for one test.
#
# Sourced (POSIX sh or bash), never executed.  The cluster lives in a
# directory the test owns, listens on a unix socket only (no TCP port to
# collide with), keeps fsync and synchronous_commit on (the worker refuses to
# run without them), and belongs to the `ota` user when we are root (initdb
# refuses to run as root; deploy/setup.sh creates that user).  It must never
# touch a cluster it did not create: every stop is by the pid it recorded.
#
#   . tests/integration/pg.sh
#   pg_start "$tmpdir"          # creates $tmpdir/pg, starts, creates db `ota`
#   trap 'pg_stop' EXIT         # safe to call twice, or before pg_start ran
#   pg_migrate                  # applies $OTA_SRCDIR/schema/*.sql in order
#   pg_psql -c 'SELECT 1'       # psql on the test database, ON_ERROR_STOP
#   pg_restart                  # fast stop + start on the same directory
#   pg_stop
#
# After pg_start: PG_DIR (data directory, also the socket directory),
# PG_CONNINFO ("host=PG_DIR dbname=ota user=ota"), PG_PID (postmaster pid).
# PG_START_TIMEOUT / PG_STOP_TIMEOUT (seconds, default 60 / 30) bound every
# wait; PG_EXTRA_OPTS adds server options (e.g. "-c max_connections=300").

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=
PG_PID=
PG_CONNINFO=

# Runs a command as the cluster's owner.
pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u ota -- "$@"
    else
        "$@"
    fi
}

pg__fail() {
    echo "pg.sh: $*" >&2
    if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/server.log" ]; then
        echo "pg.sh: last lines of $PG_DIR/server.log:" >&2
        tail -n 20 "$PG_DIR/server.log" >&2
    fi
    return 1
}

# pg_start BASE: initdb in BASE/pg (unless it already holds a cluster) and
# start it; waits until it accepts connections, then creates database `ota`.
pg_start() {
    pg_base=${1:?pg_start needs a base directory}
    [ -x "$PG_BIN/initdb" ] || { pg__fail "no $PG_BIN/initdb (install postgresql-15)"; return 1; }
    PG_DIR="$(cd "$pg_base" && pwd)/pg"
    # A unix socket path is limited to 107 bytes.
    if [ ${#PG_DIR} -gt 80 ]; then
        pg__fail "socket directory path too long (${#PG_DIR} > 80): $PG_DIR"
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        getent passwd ota >/dev/null || { pg__fail "user ota missing (run deploy/setup.sh)"; return 1; }
        # The owner must be able to reach its directory through ours.
        chmod o+x "$pg_base"
    fi
    if [ ! -f "$PG_DIR/PG_VERSION" ]; then
        mkdir -p "$PG_DIR" || return 1
        [ "$(id -u)" -eq 0 ] && chown ota "$PG_DIR"
        chmod 700 "$PG_DIR"
        # --no-sync only skips initdb's own flush of a throwaway directory;
        # the running server keeps fsync on.
        pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR" -A trust -U ota -E UTF8 --no-sync \
            >"$pg_base/initdb.log" 2>&1 || { pg__fail "initdb failed, see $pg_base/initdb.log"; return 1; }
    fi
    pg__run || return 1
    pg_as_owner "$PG_BIN/psql" -X -q -h "$PG_DIR" -U ota -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'ota'" | grep -q 1 ||
        pg_as_owner "$PG_BIN/createdb" -h "$PG_DIR" -U ota ota ||
        { pg__fail "createdb ota failed"; return 1; }
    PG_CONNINFO="host=$PG_DIR dbname=ota user=ota"
    export PG_DIR PG_PID PG_CONNINFO
}

# Starts the server on an existing PG_DIR and records its pid.
pg__run() {
    # shellcheck disable=SC2086
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w \
        -t "${PG_START_TIMEOUT:-60}" \
        -o "-c listen_addresses='' -k $PG_DIR -c fsync=on -c synchronous_commit=on ${PG_EXTRA_OPTS:-}" \
        start >/dev/null || { pg__fail "server did not start within ${PG_START_TIMEOUT:-60} s"; return 1; }
    PG_PID=$(head -n 1 "$PG_DIR/postmaster.pid" 2>/dev/null)
    case "$PG_PID" in
    '' | *[!0-9]*) pg__fail "no pid in $PG_DIR/postmaster.pid"; PG_PID=; return 1 ;;
    esac
    export PG_PID
}

# Waits up to $2 seconds for pid $1 to exit.
pg__wait_gone() {
    pg_w=0
    pg_limit=$(($2 * 10))
    while kill -0 "$1" 2>/dev/null; do
        [ "$pg_w" -ge "$pg_limit" ] && return 1
        sleep 0.1
        pg_w=$((pg_w + 1))
    done
    return 0
}

# pg_stop [MODE]: MODE fast (default: SIGINT) or immediate (SIGQUIT, like a
# crash: no checkpoint).  Falls back to SIGKILL after PG_STOP_TIMEOUT.
# Never fails, so it is safe in an EXIT trap and when nothing was started.
pg_stop() {
    # Someone may have restarted our cluster (pg_restart in a subshell):
    # the pid file in our own directory names the current postmaster.
    if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/postmaster.pid" ]; then
        pg_cur=$(head -n 1 "$PG_DIR/postmaster.pid" 2>/dev/null)
        case "$pg_cur" in
        '' | *[!0-9]*) ;;
        *) PG_PID=$pg_cur ;;
        esac
    fi
    [ -n "$PG_PID" ] || return 0
    pg_sig=INT
    [ "${1:-fast}" = immediate ] && pg_sig=QUIT
    if kill -0 "$PG_PID" 2>/dev/null; then
        kill -"$pg_sig" "$PG_PID" 2>/dev/null
        if ! pg__wait_gone "$PG_PID" "${PG_STOP_TIMEOUT:-30}"; then
            echo "pg.sh: postmaster $PG_PID still running after ${PG_STOP_TIMEOUT:-30} s; killing it" >&2
            kill -KILL "$PG_PID" 2>/dev/null
            pg__wait_gone "$PG_PID" 5 || echo "pg.sh: postmaster $PG_PID did not die" >&2
        fi
    fi
    PG_PID=
    return 0
}

# pg_restart [MODE]: stops (fast or immediate) and starts the same cluster.
pg_restart() {
    [ -n "$PG_DIR" ] || { pg__fail "pg_restart before pg_start"; return 1; }
    pg_stop "${1:-fast}"
    pg__run
}

# pg_psql ARGS...: psql on the test database as `ota`, stopping at the
# first error, without reading ~/.psqlrc.
pg_psql() {
    pg_as_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -U ota -d ota "$@"
}

# pg_migrate [SCHEMA_DIR]: applies the numbered migrations in order, each in
# one transaction (what `ota-ctl db migrate` does, without its bookkeeping).
pg_migrate() {
    pg_schema=${1:-${OTA_SRCDIR:-.}/schema}
    pg_any=
    for pg_f in "$pg_schema"/[0-9]*.sql; do
        [ -f "$pg_f" ] || continue
        pg_any=1
        # The file is read by psql running as the owner: feed it on stdin.
        pg_psql -1 -f - <"$pg_f" >/dev/null || { pg__fail "migration $pg_f failed"; return 1; }
    done
    [ -n "$pg_any" ] || { pg__fail "no migrations in $pg_schema"; return 1; }
}
