# patroni.sh: a throwaway Patroni cluster (etcd + two PostgreSQL 15 nodes)
# for one test.
#
# Sourced (bash), never executed.  Everything lives under the test's own
# directory: etcd (v2 API, loopback, its own data directory) and two nodes,
# each with its own data directory, PostgreSQL port and REST port, rendered
# from deploy/patroni/patroni.yml.in (the configuration OPERATIONS.md
# documents), with synchronous_mode, use_pg_rewind and wal_log_hints.  The
# nodes run as user postgres when we are root (initdb refuses root); they
# are started with setpriv, which execs, so the pids we keep are Patroni's
# own and the postmaster's comes from its postmaster.pid.  Every stop is by
# those pids; nothing here looks processes up by name.
#
#   . tests/integration/patroni.sh
#   ha_start "$T"                 # etcd, node 1 (leader), node 2 (sync standby)
#   trap 'ha_stop' EXIT
#   ha_leader                     # prints 1 or 2 (the node whose /primary is 200)
#   ha_kill_node 1                # SIGKILL to node 1's Patroni and postmaster
#   ha_kill_postmaster 1          # SIGKILL to the postmaster only
#   ha_start_node 1               # Patroni again on node 1's data directory
#   ha_psql 2 -c 'SELECT 1'       # psql on node 2, database ota, as ota
#
# After ha_start: HA_CONNINFO (libpq multi-host, target_session_attrs=
# read-write), HA_PORT1/2 (PostgreSQL), HA_REST1/2 (Patroni REST).
# HA_TIMEOUT (seconds, default 90) bounds every wait.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
HA_BASE=
HA_ETCD_PID=
HA_PATRONI1=
HA_PATRONI2=
HA_CONNINFO=

ha__fail() {
    echo "patroni.sh: $*" >&2
    return 1
}

ha__port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ha__wait SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s.
ha__wait() {
    _hw_n=$(($1 * 5))
    _hw_what=$2
    shift 2
    _hw_i=0
    until "$@" >/dev/null 2>&1; do
        _hw_i=$((_hw_i + 1))
        [ $_hw_i -gt $_hw_n ] && { ha__fail "timed out after $1 s waiting for: $_hw_what"; return 1; }
        sleep 0.2
    done
    return 0
}

# ha__render N: node N's patroni.yml from the deployed template.
ha__render() {
    _n=$1
    eval "_port=\$HA_PORT$_n _rest=\$HA_REST$_n"
    sed -e "s|@NAME@|node$_n|g" -e "s|@SCOPE@|$HA_SCOPE|g" \
        -e "s|@NAMESPACE@|/ota-test-$$/|g" \
        -e "s|@ETCD@|127.0.0.1:$HA_ETCD_PORT|g" \
        -e "s|@REST_ADDR@|127.0.0.1:$_rest|g" \
        -e "s|@PG_ADDR@|127.0.0.1:$_port|g" \
        -e "s|@DATA_DIR@|$HA_BASE/node$_n/data|g" \
        -e "s|@SOCKET_DIR@|$HA_BASE/node$_n|g" \
        -e "s|@BIN_DIR@|$PG_BIN|g" -e "s|@HBA_METHOD@|trust|g" \
        -e "s|@SUPERUSER@|ota|g" \
        -e "s|@SUPERUSER_PASSWORD@|test-only|g" \
        -e "s|@REPLICATION_PASSWORD@|test-only|g" \
        "$OTA_SRCDIR/deploy/patroni/patroni.yml.in" >"$HA_BASE/node$_n/patroni.yml"
}

# ha_start BASE: etcd, then node 1 until it leads, then node 2 until it is
# the synchronous standby; creates database ota.
ha_start() {
    HA_BASE="$(cd "${1:?ha_start needs a base directory}" && pwd)/ha"
    command -v patroni >/dev/null || { ha__fail "no patroni (run deploy/setup.sh)"; return 1; }
    command -v etcd >/dev/null || { ha__fail "no etcd (run deploy/setup.sh)"; return 1; }
    mkdir -p "$HA_BASE/etcd" "$HA_BASE/node1" "$HA_BASE/node2" || return 1
    if [ "$(id -u)" -eq 0 ]; then
        chmod o+x "$1"
        chown postgres "$HA_BASE/node1" "$HA_BASE/node2"
        chmod 755 "$HA_BASE"
    fi
    HA_ETCD_PORT=$(ha__port)
    HA_ETCD_PEER=$(ha__port)
    HA_PORT1=$(ha__port)
    HA_PORT2=$(ha__port)
    HA_REST1=$(ha__port)
    HA_REST2=$(ha__port)
    HA_SCOPE=ota$$
    etcd --name ha --data-dir "$HA_BASE/etcd/data" --enable-v2 \
        --listen-client-urls "http://127.0.0.1:$HA_ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$HA_ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$HA_ETCD_PEER" \
        --initial-advertise-peer-urls "http://127.0.0.1:$HA_ETCD_PEER" \
        --initial-cluster "ha=http://127.0.0.1:$HA_ETCD_PEER" \
        >"$HA_BASE/etcd/etcd.log" 2>&1 &
    HA_ETCD_PID=$!
    ha__wait "${HA_TIMEOUT:-90}" "etcd on port $HA_ETCD_PORT" \
        curl -fsS "http://127.0.0.1:$HA_ETCD_PORT/v2/keys" || return 1
    ha__render 1 && ha__render 2 || return 1
    ha_start_node 1 || return 1
    ha__wait "${HA_TIMEOUT:-90}" "node 1 to lead (REST /primary)" \
        curl -fsS "http://127.0.0.1:$HA_REST1/primary" || { ha__logs; return 1; }
    ha_start_node 2 || return 1
    ha__wait "${HA_TIMEOUT:-90}" "node 2 to be the synchronous standby (REST /sync)" \
        curl -fsS "http://127.0.0.1:$HA_REST2/sync" || { ha__logs; return 1; }
    ha_psql_db 1 postgres -c "CREATE DATABASE ota" >/dev/null || return 1
    HA_CONNINFO="host=127.0.0.1,127.0.0.1 port=$HA_PORT1,$HA_PORT2 dbname=ota user=ota target_session_attrs=read-write connect_timeout=2 tcp_user_timeout=5000 keepalives_idle=5 keepalives_interval=2 keepalives_count=2"
    export HA_CONNINFO HA_PORT1 HA_PORT2 HA_REST1 HA_REST2
}

# ha_start_node N: Patroni for node N (again, after a kill).
ha_start_node() {
    # Not through a shell function: $! must be Patroni's own pid (setpriv
    # and env exec, they do not fork).
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid postgres --regid postgres --init-groups -- \
            env HOME="$HA_BASE/node$1" patroni "$HA_BASE/node$1/patroni.yml" \
            >>"$HA_BASE/node$1/patroni.log" 2>&1 &
    else
        env HOME="$HA_BASE/node$1" patroni "$HA_BASE/node$1/patroni.yml" \
            >>"$HA_BASE/node$1/patroni.log" 2>&1 &
    fi
    eval "HA_PATRONI$1=\$!"
}

# ha_postmaster N: prints node N's postmaster pid (fails if none runs).
ha_postmaster() {
    _pm=$(head -n 1 "$HA_BASE/node$1/data/postmaster.pid" 2>/dev/null)
    case "$_pm" in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$_pm" 2>/dev/null || return 1
    echo "$_pm"
}

# ha_kill_node N: the node is lost: SIGKILL to Patroni and the postmaster.
ha_kill_node() {
    eval "_pp=\$HA_PATRONI$1"
    _pm=$(ha_postmaster "$1") || _pm=
    [ -n "$_pp" ] && kill -KILL "$_pp" 2>/dev/null
    [ -n "$_pm" ] && kill -KILL "$_pm" 2>/dev/null
    [ -n "$_pp" ] && wait "$_pp" 2>/dev/null
    eval "HA_PATRONI$1="
    # The postmaster's children notice its death and exit on their own.
    [ -z "$_pm" ] || ha__wait 30 "postmaster $_pm to exit" ha__gone "$_pm"
}

ha__gone() {
    ! kill -0 "$1" 2>/dev/null
}

# ha_kill_postmaster N: SIGKILL to the postmaster alone (Patroni restarts it).
ha_kill_postmaster() {
    _pm=$(ha_postmaster "$1") || { ha__fail "node $1 has no postmaster"; return 1; }
    kill -KILL "$_pm"
    echo "$_pm"
}

# ha_leader: prints the node whose REST /primary answers 200.
ha_leader() {
    for _n in 1 2; do
        eval "_rest=\$HA_REST$_n"
        if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$_rest/primary" 2>/dev/null; then
            echo "$_n"
            return 0
        fi
    done
    return 1
}

# ha_is_replica N: node N's REST /replica answers 200 (streaming standby).
ha_is_replica() {
    eval "_rest=\$HA_REST$1"
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$_rest/replica"
}

# ha_is_sync N: node N is the synchronous standby.
ha_is_sync() {
    eval "_rest=\$HA_REST$1"
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$_rest/sync"
}

# ha_psql_db N DB ARGS...: psql on node N over TCP.
ha_psql_db() {
    eval "_port=\$HA_PORT$1"
    _db=$2
    shift 2
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$_port" -U ota -d "$_db" "$@"
}

ha_psql() {
    _n=$1
    shift
    ha_psql_db "$_n" ota "$@"
}

ha__logs() {
    for _n in 1 2; do
        echo "patroni.sh: last lines of node $_n's patroni.log:" >&2
        tail -n 15 "$HA_BASE/node$_n/patroni.log" >&2 2>/dev/null
    done
}

# ha_stop: Patroni first (it stops its postmaster), then any postmaster
# left, then etcd.  Never fails; safe before ha_start.
ha_stop() {
    for _n in 1 2; do
        eval "_pp=\$HA_PATRONI$_n"
        [ -n "$_pp" ] && kill -TERM "$_pp" 2>/dev/null
    done
    for _n in 1 2; do
        eval "_pp=\$HA_PATRONI$_n"
        if [ -n "$_pp" ]; then
            ha__wait 20 "Patroni $_pp to stop" ha__gone "$_pp" || kill -KILL "$_pp" 2>/dev/null
            wait "$_pp" 2>/dev/null
        fi
        eval "HA_PATRONI$_n="
        if [ -n "$HA_BASE" ]; then
            _pm=$(ha_postmaster "$_n") && {
                kill -QUIT "$_pm" 2>/dev/null
                ha__wait 20 "postmaster $_pm to stop" ha__gone "$_pm" || kill -KILL "$_pm" 2>/dev/null
            }
        fi
    done
    if [ -n "$HA_ETCD_PID" ]; then
        kill -TERM "$HA_ETCD_PID" 2>/dev/null
        wait "$HA_ETCD_PID" 2>/dev/null
        HA_ETCD_PID=
    fi
    return 0
}
