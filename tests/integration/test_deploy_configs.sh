#!/bin/sh
# test_deploy_configs.sh: checks the operations files in deploy/ with the
# real tools that read them:
#   - promtool check rules / test rules (alerts.yml, alerts_test.yml) and
#     promtool check config (prometheus.yml);
#   - haproxy -c on deploy/patroni/haproxy-db.cfg (the database primary);
#   - haproxy -c on haproxy.cfg.in rendered for two gateways on loopback,
#     then a live run of that configuration in front of two fake gateways
#     (deploy_fake_gw.py): /readyz health checks on the admin ports, the
#     PROXY v2 header with the client's own address, the WebSocket upgrade
#     through HAProxy, and a draining gateway taken out of rotation;
#   - systemd-analyze verify on the units (skipped if systemd-analyze is
#     missing), with ExecStart pointed at stub programs;
#   - the Grafana dashboard: valid JSON, unique panel ids, every query
#     valid PromQL (checked by promtool as recording rules);
#   - every ota_* metric the alerts and the dashboard use exists in the
#     gateway or worker sources, except the ledger gauges listed below.
# Exits 0 when every check passed, 1 otherwise.  Runs standalone or from
# make check (OTA_SRCDIR).
set -u
SRC=${OTA_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3
# Metrics the rules and dashboard use that no gateway or worker source
# exports (none now: the ledger gauges come from gateway/wmetrics.c).
ASSUMED_METRICS=""

T=$(mktemp -d /tmp/ota-deploy.XXXXXX) || exit 1
PIDS=
cleanup() {
    for p in $PIDS; do
        kill "$p" 2>/dev/null
    done
    for p in $PIDS; do
        wait "$p" 2>/dev/null
    done
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$SRC/tests/integration/tap.sh"
# run DESCRIPTION COMMAND...: ok if it exits 0; its output is shown on failure.
run() {
    d=$1
    shift
    if "$@" >"$T/out" 2>&1; then
        ok "$d"
    else
        fail "$d"
        sed 's/^/#   /' "$T/out"
    fi
}
need() {
    command -v "$1" >/dev/null 2>&1 || { fail "$1 is not installed (deploy/setup.sh installs it)"; return 1; }
}
free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ---- Prometheus ------------------------------------------------------------
if need promtool; then
    run "promtool check rules deploy/prometheus/alerts.yml" \
        promtool check rules "$SRC/deploy/prometheus/alerts.yml"
    run "promtool test rules deploy/prometheus/alerts_test.yml (alerts fire and stay quiet as specified)" \
        promtool test rules "$SRC/deploy/prometheus/alerts_test.yml"
    run "promtool check config deploy/prometheus/prometheus.yml" \
        promtool check config "$SRC/deploy/prometheus/prometheus.yml"
fi

# ---- HAProxy ---------------------------------------------------------------
if need haproxy; then
    HA_PORT=$(free_port)
    STATS_PORT=$(free_port)
    G1=$(free_port)
    A1=$(free_port)
    G2=$(free_port)
    A2=$(free_port)
    if "$SRC/deploy/haproxy/render.sh" --bind "127.0.0.1:$HA_PORT" --stats "127.0.0.1:$STATS_PORT" \
        "gw1=127.0.0.1:$G1:$A1" "gw2=127.0.0.1:$G2:$A2" >"$T/haproxy.cfg" 2>"$T/render.err"; then
        ok "render.sh renders haproxy.cfg.in for two gateways"
    else
        fail "render.sh failed"
        sed 's/^/#   /' "$T/render.err"
    fi
    if [ "$(grep -c "^    server gw[12] 127.0.0.1:[0-9]* port [0-9]*$" "$T/haproxy.cfg")" = 2 ] &&
        grep -q '^    default-server .*check.*send-proxy-v2' "$T/haproxy.cfg" &&
        grep -q '^    option httpchk GET /readyz$' "$T/haproxy.cfg" &&
        grep -q '^    timeout tunnel 1h$' "$T/haproxy.cfg" &&
        ! grep -q '@[A-Z_]*@' "$T/haproxy.cfg"; then
        ok "rendered config: 2 servers, send-proxy-v2, httpchk GET /readyz, tunnel timeout, no placeholder left"
    else
        fail "rendered config lacks a server line, send-proxy-v2, the /readyz check or the tunnel timeout"
    fi
    if haproxy -c -f "$T/haproxy.cfg" >"$T/hac.out" 2>&1 && ! grep -q 'WARNING\|ALERT' "$T/hac.out"; then
        ok "haproxy -c -f haproxy.cfg: valid, no warnings"
    else
        fail "haproxy -c -f haproxy.cfg:"
        sed 's/^/#   /' "$T/hac.out"
    fi
    # render.sh must refuse a malformed gateway.
    if "$SRC/deploy/haproxy/render.sh" "gw1=127.0.0.1:x:9090" >/dev/null 2>&1; then
        fail "render.sh accepted a gateway without a numeric port"
    else
        ok "render.sh refuses a gateway without a numeric port"
    fi

    # The database side: HAProxy in front of Patroni (GET /primary).
    if haproxy -c -f "$SRC/deploy/patroni/haproxy-db.cfg" >"$T/hadb.out" 2>&1 &&
        ! grep -q 'WARNING\|ALERT' "$T/hadb.out" &&
        grep -q '^    option httpchk GET /primary$' "$SRC/deploy/patroni/haproxy-db.cfg"; then
        ok "haproxy -c -f deploy/patroni/haproxy-db.cfg: valid, no warnings, checks GET /primary"
    else
        fail "deploy/patroni/haproxy-db.cfg:"
        sed 's/^/#   /' "$T/hadb.out"
    fi

    # Live, in front of two fake gateways: the same configuration minus
    # what needs root (user, admin socket, syslog) and with fewer
    # connections (so no raised descriptor limit is needed).
    "$SRC/deploy/haproxy/render.sh" --bind "127.0.0.1:$HA_PORT" --stats "127.0.0.1:$STATS_PORT" \
        --maxconn 1000 --server-maxconn 100 "gw1=127.0.0.1:$G1:$A1" "gw2=127.0.0.1:$G2:$A2" |
        sed -e '/^    user haproxy$/d' -e '/^    group haproxy$/d' -e '/^    stats socket /d' \
            -e 's#^    log /dev/log .*#    log stdout format raw local0#' >"$T/haproxy-live.cfg"
    touch "$T/gw1.ready"
    $PY "$SRC/tests/integration/deploy_fake_gw.py" gw1 "$G1" "$A1" "$T/gw1.ready" 2>"$T/gw1.err" &
    PIDS="$PIDS $!"
    $PY "$SRC/tests/integration/deploy_fake_gw.py" gw2 "$G2" "$A2" "$T/gw2.ready" 2>"$T/gw2.err" &
    PIDS="$PIDS $!"
    # Both fake gateways answer on their admin ports before HAProxy starts.
    i=0
    until curl -sS -o /dev/null "http://127.0.0.1:$A1/readyz" 2>/dev/null &&
        curl -sS -o /dev/null "http://127.0.0.1:$A2/readyz" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            fail "the fake gateways did not listen within 10 s"
            cat "$T/gw1.err" "$T/gw2.err" | sed 's/^/#   /'
            break
        fi
        sleep 0.1
    done
    haproxy -db -f "$T/haproxy-live.cfg" >"$T/haproxy.out" 2>&1 &
    HA_PID=$!
    PIDS="$PIDS $HA_PID"

    # wait_status "gw1=UP gw2=DOWN": polls HAProxy's CSV stats, at most 20 s.
    wait_status() {
        i=0
        while [ $i -lt 200 ]; do
            curl -fsS "http://127.0.0.1:$STATS_PORT/stats;csv" 2>/dev/null |
                awk -F, '$1 == "ota_gateways" && $2 ~ /^gw/ { printf "%s=%s ", $2, $18 }' >"$T/st"
            [ "$(cat "$T/st")" = "$1 " ] && return 0
            kill -0 "$HA_PID" 2>/dev/null || return 1
            sleep 0.1
            i=$((i + 1))
        done
        return 1
    }
    # ws_gateway: one WebSocket session through HAProxy; prints the gateway
    # it reached, or why not.  Checks that the PROXY header carried this
    # client's own address and port.
    ws_gateway() {
        $PY - "ws://127.0.0.1:$HA_PORT/v1/session" <<'PY'
import asyncio, json, sys
import websockets

async def main():
    try:
        async with websockets.connect(sys.argv[1], open_timeout=5, close_timeout=2) as ws:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            host, port = ws.local_address[:2]
            if msg["proxy_src"] != f"{host}:{port}" or msg["path"] != "/v1/session":
                print(f"wrong PROXY source or path: {msg} (client {host}:{port})")
                return
            print(msg["gateway"])
    except Exception as e:
        print(f"failed: {type(e).__name__}: {e}")

asyncio.run(main())
PY
    }

    if wait_status "gw1=UP gw2=DOWN"; then
        ok "HAProxy checks /readyz on the admin ports: ready gw1 UP, unready gw2 DOWN"
    else
        fail "HAProxy did not mark gw1 UP and gw2 DOWN within 20 s (saw: $(cat "$T/st"))"
        tail -n 20 "$T/haproxy.out" | sed 's/^/#   /'
    fi
    r=""
    for _ in 1 2 3 4; do r="$r$(ws_gateway) "; done
    if [ "$r" = "gw1 gw1 gw1 gw1 " ]; then
        ok "4 WebSocket sessions through HAProxy reach the ready gateway with the client's address in PROXY v2"
    else
        fail "WebSocket sessions through HAProxy: $r"
        cat "$T/gw1.err" "$T/gw2.err" | sed 's/^/#   /'
    fi
    # Drain gw1 (its /readyz fails), gw2 becomes ready.
    rm -f "$T/gw1.ready"
    touch "$T/gw2.ready"
    if wait_status "gw1=DOWN gw2=UP"; then
        ok "a draining gateway (/readyz 503) leaves rotation and a ready one joins"
    else
        fail "after the drain, HAProxy shows: $(cat "$T/st")"
    fi
    r=$(ws_gateway)
    if [ "$r" = gw2 ]; then
        ok "new sessions go to the gateway still in rotation"
    else
        fail "after the drain a new session reached: $r"
    fi
    if [ -s "$T/gw1.err" ] || [ -s "$T/gw2.err" ]; then
        fail "a fake gateway refused a connection (bad PROXY header or upgrade):"
        cat "$T/gw1.err" "$T/gw2.err" | sed 's/^/#   /'
    else
        ok "no connection reached a gateway without a valid PROXY v2 header"
    fi
fi

# ---- systemd ---------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
    # The units name /usr/local/bin; verify refuses a missing program, so
    # check copies that point at stubs (nothing else changes).
    mkdir -p "$T/units" "$T/bin"
    printf '#!/bin/sh\nexit 0\n' >"$T/bin/ota-gateway"
    cp "$T/bin/ota-gateway" "$T/bin/ota-worker"
    chmod 755 "$T/bin/ota-gateway" "$T/bin/ota-worker"
    sed "s#/usr/local/bin/#$T/bin/#g" "$SRC/deploy/systemd/ota-gateway.service" >"$T/units/ota-gateway.service"
    sed "s#/usr/local/bin/#$T/bin/#g" "$SRC/deploy/systemd/ota-worker@.service" >"$T/units/ota-worker@gw1a.service"
    # verify also runs man for Documentation=man:PAGE(8): give it ours.
    mkdir -p "$T/man/man8"
    cp "$SRC/man/ota-gateway.8" "$SRC/man/ota-worker.8" "$T/man/man8/"
    for u in ota-gateway.service ota-worker@gw1a.service; do
        # verify exits 0 on unknown keys and bad values; any message fails.
        if (cd "$T/units" && MANPATH="$T/man" systemd-analyze verify "./$u") >"$T/sd.out" 2>&1 &&
            [ ! -s "$T/sd.out" ]; then
            ok "systemd-analyze verify $u: no complaint"
        else
            fail "systemd-analyze verify $u:"
            sed 's/^/#   /' "$T/sd.out"
        fi
    done
    before=$TESTS_FAILED
    for k in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes LimitCORE=0 \
        MemoryDenyWriteExecute=yes KillSignal=SIGTERM; do
        for u in ota-gateway.service ota-worker@.service; do
            grep -qx "$k" "$SRC/deploy/systemd/$u" || fail "$u lacks $k"
        done
    done
    [ "$TESTS_FAILED" -ne "$before" ] || ok "both units set NoNewPrivileges, ProtectSystem=strict, PrivateTmp, LimitCORE=0, MemoryDenyWriteExecute, KillSignal=SIGTERM"
    # The stop timeout must exceed the drain: gateway 30 s drain + 2.5 s
    # closing + 10 s worker stop; remote worker 60 s operation + 5 s + 5 s.
    gw_stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$SRC/deploy/systemd/ota-gateway.service")
    wk_stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$SRC/deploy/systemd/ota-worker@.service")
    if [ "${gw_stop:-0}" -gt 43 ] && [ "${wk_stop:-0}" -gt 70 ]; then
        ok "TimeoutStopSec above the drain deadlines (gateway ${gw_stop}s > 43s, worker ${wk_stop}s > 70s)"
    else
        fail "TimeoutStopSec too short (gateway ${gw_stop:-?}s, need > 43s; worker ${wk_stop:-?}s, need > 70s)"
    fi
else
    echo "# skip: systemd-analyze not installed; units not verified"
fi

# ---- Grafana dashboard -----------------------------------------------------
DASH=$SRC/deploy/grafana/ota-dashboard.json
run "python3 -m json.tool deploy/grafana/ota-dashboard.json" $PY -m json.tool "$DASH"
# Every query as a recording rule, so promtool parses the PromQL.
if $PY - "$DASH" "$T/dash_rules.yml" >"$T/dash.out" 2>&1 <<'PY'; then
import json, sys
d = json.load(open(sys.argv[1]))
ids, exprs, errs = set(), [], []
def walk(ps):
    for p in ps:
        if p.get("id") in ids:
            errs.append(f"duplicate panel id {p.get('id')}")
        ids.add(p.get("id"))
        for k in ("type", "title", "gridPos"):
            if k not in p:
                errs.append(f"panel {p.get('id')} has no {k}")
        if p.get("type") != "row":
            ts = p.get("targets") or []
            if not ts or not all(t.get("expr") for t in ts):
                errs.append(f"panel '{p.get('title')}' has no query")
            exprs.extend(t["expr"] for t in ts if t.get("expr"))
        walk(p.get("panels", []))
walk(d.get("panels", []))
if not d.get("title") or not d.get("uid") or not exprs:
    errs.append("no title, uid or query")
with open(sys.argv[2], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$instance", ".*")
        f.write(f"      - record: dashboard:q{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(ids)} panels, {len(exprs)} queries")
for e in errs:
    print(e)
sys.exit(1 if errs else 0)
PY
    ok "dashboard structure: $(cat "$T/dash.out")"
else
    fail "dashboard structure:"
    sed 's/^/#   /' "$T/dash.out"
fi
if command -v promtool >/dev/null 2>&1; then
    run "every dashboard query is valid PromQL (promtool)" promtool check rules "$T/dash_rules.yml"
fi

# ---- metric names ----------------------------------------------------------
# Metric names only: not label values ("ota_gateways") and not comments.
grep -v '^ *#' "$SRC/deploy/prometheus/alerts.yml" "$DASH" | grep -oE '(^|[^"a-z_])ota_[a-z_]*[a-z]' |
    sed -e 's/^[^o]//' -e 's/_bucket$//' -e 's/_count$//' -e 's/_sum$//' | sort -u >"$T/used"
missing=""
assumed=""
for m in $(cat "$T/used"); do
    if cat "$SRC"/gateway/*.c "$SRC"/worker/*.c 2>/dev/null | grep -q "\"${m}[\"{ ]"; then
        continue
    fi
    case " $ASSUMED_METRICS " in
    *" $m "*) assumed="$assumed $m" ;;
    *) missing="$missing $m" ;;
    esac
done
if [ -z "$missing" ]; then
    ok "every metric in alerts.yml and the dashboard is exported by gateway/ or worker/ ($(wc -l <"$T/used") names)"
else
    fail "metrics used but exported nowhere in gateway/ or worker/:$missing"
fi
[ -z "$assumed" ] || echo "# note: assumed ledger metrics, not exported yet:$assumed"

tap_summary || exit 1
exit 0
