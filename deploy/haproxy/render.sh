#!/bin/sh
# render.sh: writes an HAProxy configuration for N gateways from
# deploy/haproxy/haproxy.cfg.in to standard output.
#
#   render.sh [options] NAME=HOST:PORT:ADMIN_PORT ...
#     --bind 'ADDR:PORT [ssl crt PEM alpn http/1.1]'  public listener [:443 ssl crt
#                                     /etc/haproxy/certs/ota.pem alpn http/1.1]
#     --stats ADDR:PORT               stats and /metrics listener [127.0.0.1:8404]
#     --maxconn N                     connections in total [40000]
#     --server-maxconn N              per gateway; at most gateway.max_connections [20000]
#     --per-ip N                      open connections per client address [256]
#     --per-ip-rate N                 new connections per client address per 10 s [300]
#     --template FILE                 [haproxy.cfg.in next to this script]
#
# HOST:PORT is the gateway's public listener (gateway.listen), ADMIN_PORT
# its admin port (gateway.admin_listen), where HAProxy checks /readyz.
# Only validates the shape of its arguments; run `haproxy -c -f` on the
# result.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
template=$here/haproxy.cfg.in
bind=':443 ssl crt /etc/haproxy/certs/ota.pem alpn http/1.1'
stats=127.0.0.1:8404
maxconn=40000
server_maxconn=20000
per_ip=256
per_ip_rate=300

die() {
    echo "render.sh: $*" >&2
    exit 2
}

number() {
    case $2 in '' | *[!0-9]*) die "$1 needs a number, got '$2'" ;; esac
}

servers=""
while [ $# -gt 0 ]; do
    case $1 in
    --bind) bind=${2:?}; shift 2 ;;
    --stats) stats=${2:?}; shift 2 ;;
    --maxconn) number "$1" "${2:-}"; maxconn=$2; shift 2 ;;
    --server-maxconn) number "$1" "${2:-}"; server_maxconn=$2; shift 2 ;;
    --per-ip) number "$1" "${2:-}"; per_ip=$2; shift 2 ;;
    --per-ip-rate) number "$1" "${2:-}"; per_ip_rate=$2; shift 2 ;;
    --template) template=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *=*:*:*)
        name=${1%%=*}
        rest=${1#*=}
        admin=${rest##*:}
        addr=${rest%:*}
        port=${addr##*:}
        host=${addr%:*}
        case $name in '' | *[!A-Za-z0-9_.-]*) die "bad gateway name '$name'" ;; esac
        number "port of $name" "$port"
        number "admin port of $name" "$admin"
        [ -n "$host" ] || die "no host for $name"
        servers="$servers    server $name $host:$port port $admin
"
        shift
        ;;
    *) die "expected NAME=HOST:PORT:ADMIN_PORT, got '$1'" ;;
    esac
done
[ -n "$servers" ] || die "no gateway given (NAME=HOST:PORT:ADMIN_PORT ...)"
[ -r "$template" ] || die "cannot read $template"

# awk -v would interpret backslashes; pass values through the environment.
R_BIND=$bind R_STATS=$stats R_MAXCONN=$maxconn R_SMAX=$server_maxconn \
    R_PER_IP=$per_ip R_RATE=$per_ip_rate R_SERVERS=$servers awk '
    function put(s, name, v,    out, i) {
        out = ""
        while ((i = index(s, name)) > 0) {
            out = out substr(s, 1, i - 1) v
            s = substr(s, i + length(name))
        }
        return out s
    }
    $0 == "@GATEWAY_SERVERS@" { printf "%s", ENVIRON["R_SERVERS"]; next }
    {
        s = $0
        s = put(s, "@PUBLIC_BIND@", ENVIRON["R_BIND"])
        s = put(s, "@STATS_BIND@", ENVIRON["R_STATS"])
        s = put(s, "@MAXCONN@", ENVIRON["R_MAXCONN"])
        s = put(s, "@SERVER_MAXCONN@", ENVIRON["R_SMAX"])
        s = put(s, "@PER_IP_RATE@", ENVIRON["R_RATE"])
        s = put(s, "@PER_IP@", ENVIRON["R_PER_IP"])
        if (s ~ /@[A-Z_]+@/) {
            print "render.sh: unknown placeholder in: " s > "/dev/stderr"
            bad = 1
        }
        print s
    }
    END { exit bad }
' "$template"
