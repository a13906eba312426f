#!/bin/sh
# Worker supervision (issue "operations"): one local worker, fast
# heartbeats (100 ms, silent after 1 s) and a short back-off (100 ms
# doubling to 800 ms):
#   1. a worker that stops answering (SIGSTOP) is killed and restarted,
#      and the restart shows in the log, /status and /metrics;
#   2. a worker that dies again and again is restarted with a growing
#      delay, the crash loop is logged and shows in /metrics and /status
#      while it lasts, and the gateway keeps answering /healthz;
#   3. when the dying stops, the worker comes back, the crash-loop gauge
#      returns to 0 once it has stayed up, and top-ups work again.
. "$OTA_SRCDIR/tests/integration/lib.sh"

SYS_WORKERS=1
SYS_EXTRA_CONF="gateway.heartbeat_ms = 100
gateway.worker_dead_ms = 1000
gateway.restart_backoff_ms = 100
gateway.restart_backoff_max_ms = 800"
sys_start

worker_pid() { pgrep -P "$GW_PID" -x ota-worker | head -n 1; }
metric() { curl -fsS "$ADMIN/metrics" 2>/dev/null | sed -n "s/^$1{worker=\"0\"} //p"; }
status_field() {
    curl -fsS "$ADMIN/status" 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["workers"][0][sys.argv[1]]))' "$1"
}
ready() { curl -fsS -o /dev/null "$ADMIN/readyz" 2>/dev/null; }

# ------------------------------------------------ 1. a silent worker
w0=$(worker_pid)
check "a worker is running (pid $w0)" [ -n "$w0" ]
r0=$(metric ota_gateway_worker_restarts_total)
kill -STOP "$w0"
new_worker() { w=$(worker_pid); [ -n "$w" ] && [ "$w" != "$w0" ]; }
if wait_for 10 new_worker; then
    ok "a stopped (silent) worker is replaced within 10 s"
else
    fail "the stopped worker was not replaced within 10 s"
    kill -CONT "$w0" 2>/dev/null
fi
check "the gateway killed it for being silent (log)" \
    grep -q "event=worker_killed worker=0 pid=$w0 why=silent" "$T/gateway.log"
check "the silent worker is gone" sh -c "! kill -0 $w0 2>/dev/null"
check "the gateway is ready again with the new worker" wait_for 10 ready
r1=$(metric ota_gateway_worker_restarts_total)
check "/metrics counts the restart ($r0 -> $r1)" [ "$r1" -gt "$r0" ]
check "/status counts it too" [ "$(status_field restarts)" = "$r1" ]
check "no crash loop after a single restart" [ "$(metric ota_gateway_worker_crash_loop)" = 0 ]

# ------------------------------------------------ 2. a crash loop
# Kill every worker the gateway starts, for 5 s.
mark=$(wc -l <"$T/gateway.log")
end=$(($(date +%s) + 5))
kills=0
loop_seen=0
status_loop=false
while [ "$(date +%s)" -lt "$end" ]; do
    w=$(worker_pid)
    if [ -n "$w" ]; then
        kill -KILL "$w" 2>/dev/null && kills=$((kills + 1))
    fi
    if [ $loop_seen = 0 ] && [ "$(metric ota_gateway_worker_crash_loop)" = 1 ]; then
        loop_seen=1
        status_loop=$(status_field crash_loop)
    fi
    sleep 0.02
done
# The delays between a worker's exit and the next start, in ms, from the
# log lines written during the loop.
delays=$(tail -n +"$((mark + 1))" "$T/gateway.log" | /usr/bin/python3 -c '
import re, sys
from datetime import datetime
def t(line):
    return datetime.strptime(re.search(r"ts=(\S+)Z", line).group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
exited = None
out = []
for line in sys.stdin:
    if "event=worker_exited worker=0 " in line:
        exited = t(line)
    elif "event=worker_started worker=0 " in line and exited is not None:
        out.append(round((t(line) - exited) * 1000))
        exited = None
print(" ".join(map(str, out)))')
set -- $delays
check "crash loop: $kills workers killed as they started, $# restarts in 5 s" [ "$kills" -ge 4 -a $# -ge 4 ]
# Back-off 100, 200, 400, 800, 800, ... ms (each start also takes a moment).
grows=$(echo "$delays" | /usr/bin/python3 -c '
import sys
d = [int(x) for x in sys.stdin.read().split()]
ok = len(d) >= 4 and 80 <= d[0] <= 400 and d[1] > d[0] and d[2] > d[1]
ok = ok and all(700 <= x <= 2000 for x in d[3:]) and max(d) <= 2000
print("yes" if ok else "no")')
check "crash loop: the restart delay doubles from 100 ms and stops at 800 ms (ms: $delays)" [ "$grows" = yes ]
check "crash loop: logged (worker_crash_loop at the longest delay)" \
    grep -q 'event=worker_crash_loop worker=0 restarts=[0-9]* delay_ms=800' "$T/gateway.log"
check "crash loop: /metrics showed ota_gateway_worker_crash_loop 1 while it lasted" [ $loop_seen = 1 ]
check "crash loop: /status showed crash_loop true" [ "$status_loop" = true ]
check "crash loop: the gateway kept answering /healthz" curl -fsS -o /dev/null "$ADMIN/healthz"

# ------------------------------------------------ 3. recovery
check "recovery: the worker comes back and the gateway is ready" wait_for 15 ready
# Up for longer than the longest back-off: no longer a loop.
loop_over() { [ "$(metric ota_gateway_worker_crash_loop)" = 0 ]; }
check "recovery: the crash-loop gauge returns to 0 once the worker stayed up" wait_for 5 loop_over
card=$(sys_card 04c0ffee000001)
out=$(ota-card run --json --url "$PUB_URL" --card "$card" topup "$(sys_codes 300 1)" 2>/dev/null | tail -n 1)
check "recovery: a top-up works" [ "$(echo "$out" | /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read()).get("balance"))')" = 300 ]

sys_finish
