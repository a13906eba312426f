# pcsc_env.sh: the private PC/SC stack of the interop tests (run.sh,
# test_pcsc_e2e.sh): a pcscd with vsmartcard's vpcd driver inside
# `unshare --net --mount --pid`, simulated cards attached with `ota-card vicc`,
# and libnfc rebuilt with its pcsc driver (build-libnfc.sh).
#
# Sourced (POSIX sh), never executed.  It must never change the host: vpcd's
# sockets exist only on the namespace's loopback, /run/pcscd is a private
# tmpfs, and every process it starts is stopped by its pid.
#
# Outside the namespaces:
#   pcsc_env_check BUILDDIR PROGRAM...  the tools, the vpcd driver, built programs
#   prefix=$(pcsc_env_libnfc SRCDIR)    libnfc with the pcsc driver (cached build)
#   pcsc_env_reader_conf DIR PORT       DIR/reader.conf.d/vpcd for vpcd on PORT
#   pcsc_env_userns || exit 77          sets PCSC_USERNS (flags for unshare)
#   pcsc_env_enter SCRIPT ARGS...       runs `sh SCRIPT --inside ARGS` inside
# Inside:
#   pcsc_env_private_run                private /run/pcscd, loopback up
#   pcsc_env_start_pcscd DIR            pcscd reading DIR/reader.conf.d
#   pcsc_env_start_vicc CARD PORT LOG   one simulated card on vpcd's PORT
#   pcsc_env_wait_cards PREFIX DIR UID... until pcscd has seen every card
#                                       inserted and libnfc lists every UID
#   pcsc_env_stop_viccs                 SIGTERM; fails unless each exits 0
#   pcsc_env_stop_all                   stops what is left (safe in traps)
#
# vpcd runs in its normal mode (pcscd listens, each vicc connects to one
# slot: port 35963 is "Virtual PCD 00 00", 35964 "Virtual PCD 00 01");
# the reversed mode crashes pcscd when a slot is empty.

PCSC_VPCD_DRIVER=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
PCSC_PORT0=35963
PCSC_PORT1=35964
PCSC_READER0="Virtual PCD 00 00"
PCSC_READER1="Virtual PCD 00 01"
PCSC_WAIT_SECONDS=${PCSC_WAIT_SECONDS:-30}
PCSC_NAME=${PCSC_NAME:-interop}
PCSC_USERNS=
PCSC_PIDS=
PCSC_VICC_PIDS=
PCSC_VICC_PORTS=
PCSC_PCSCD_PID=

pcsc_env_fail() {
    echo "$PCSC_NAME: $*" >&2
    exit 1
}

# ---- outside -------------------------------------------------------------

pcsc_env_check() {
    pe_builddir=$1
    shift
    for pe_tool in pcscd unshare ip mount; do
        command -v "$pe_tool" >/dev/null 2>&1 ||
            pcsc_env_fail "'$pe_tool' not found (run deploy/setup.sh)"
    done
    [ -r "$PCSC_VPCD_DRIVER" ] || pcsc_env_fail "$PCSC_VPCD_DRIVER not found (package vsmartcard-vpcd)"
    for pe_prog in "$@"; do
        [ -x "$pe_builddir/$pe_prog" ] || pcsc_env_fail "$pe_builddir/$pe_prog is not built"
    done
}

# Prints the prefix of the rebuilt libnfc (builds it once, then cached).
pcsc_env_libnfc() {
    if [ "$(id -u)" -ne 0 ] && [ -z "${OTA_CACHE:-}" ]; then
        OTA_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ota-topup
        export OTA_CACHE
    fi
    pe_prefix=$("$1/tests/interop/build-libnfc.sh" | tail -n 1)
    [ -x "$pe_prefix/bin/nfc-list" ] || pcsc_env_fail "build-libnfc.sh gave no usable prefix ($pe_prefix)"
    echo "$pe_prefix"
}

pcsc_env_reader_conf() {
    mkdir -p "$1/reader.conf.d"
    cat >"$1/reader.conf.d/vpcd" <<EOF
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:$2
LIBPATH      $PCSC_VPCD_DRIVER
CHANNELID    $2
EOF
}

# Sets PCSC_USERNS; returns 1 when no network and mount namespaces can be
# made (the caller skips).
pcsc_env_userns() {
    PCSC_USERNS=
    if [ "$(id -u)" -ne 0 ]; then
        PCSC_USERNS="--user --map-root-user"
    fi
    # shellcheck disable=SC2086
    unshare $PCSC_USERNS --net --mount --pid --mount-proc --fork true 2>/dev/null
}

# The script inside is PID 1 of its own PID namespace: if the caller is
# killed, the script gets SIGTERM (its traps stop what it started, by pid)
# and whatever still runs when it exits is killed by the kernel.
pcsc_env_enter() {
    pe_script=$1
    shift
    # shellcheck disable=SC2086
    unshare $PCSC_USERNS --net --mount --pid --mount-proc --fork --kill-child=TERM \
        sh "$pe_script" --inside "$@"
}

# ---- inside --------------------------------------------------------------

# A private /run/pcscd; if the host has none, a private /run to hold it
# (mkdir on the host's /run would change the host).
pcsc_env_private_run() {
    if [ -d /run/pcscd ]; then
        mount -t tmpfs -o mode=0755 ota-pcscd /run/pcscd || pcsc_env_fail "cannot mount a private /run/pcscd"
    else
        mount -t tmpfs -o mode=0755 ota-run /run || pcsc_env_fail "cannot mount a private /run"
        mkdir /run/pcscd
    fi
    ip link set lo up || pcsc_env_fail "cannot bring up the namespace's loopback"
}

pcsc_env_start_pcscd() {
    pcscd --foreground --config "$1/reader.conf.d" >"$1/pcscd.log" 2>&1 &
    PCSC_PCSCD_PID=$!
    PCSC_PIDS="$PCSC_PIDS $PCSC_PCSCD_PID"
}

pcsc_env_start_vicc() {
    "$OTA_BUILDDIR/tools/ota-card" vicc --card "$1" --connect "127.0.0.1:$2" >"$3" 2>&1 &
    PCSC_VICC_PIDS="$PCSC_VICC_PIDS $!"
    PCSC_VICC_PORTS="$PCSC_VICC_PORTS $2"
    PCSC_PIDS="$PCSC_PIDS $!"
}

# Waits (bounded) until pcscd's own reader state says "present" for every
# slot with a vicc.  This must come before anything touches the cards:
# libnfc connects in direct mode and resets the card itself, so it sees the
# card before pcscd's polling thread does; when that thread then notices
# the "insertion", it resets the slot's protocol, and a shared-mode client
# (ota-card run --pcsc) in the middle of a session gets "protocol mismatch".
# No PC/SC command-line tool is installed, so python3 asks libpcsclite.
pcsc_env_wait_present() {
    pe_readers=
    for pe_port in $PCSC_VICC_PORTS; do
        pe_readers="$pe_readers|Virtual PCD 00 $(printf '%02d' $((pe_port - PCSC_PORT0)))"
    done
    /usr/bin/python3 - "$PCSC_WAIT_SECONDS" "${pe_readers#|}" <<'PY'
import ctypes, sys, time

# pcsc-lite on Linux: DWORD is unsigned long, LONG and SCARDCONTEXT long.
class ReaderState(ctypes.Structure):
    _fields_ = [("szReader", ctypes.c_char_p), ("pvUserData", ctypes.c_void_p),
                ("dwCurrentState", ctypes.c_ulong), ("dwEventState", ctypes.c_ulong),
                ("cbAtr", ctypes.c_ulong), ("rgbAtr", ctypes.c_ubyte * 33)]

SCARD_SCOPE_SYSTEM, SCARD_STATE_PRESENT = 2, 0x20
lib = ctypes.CDLL("libpcsclite.so.1")
lib.SCardEstablishContext.argtypes = [ctypes.c_ulong, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.POINTER(ctypes.c_long)]
lib.SCardGetStatusChange.argtypes = [ctypes.c_long, ctypes.c_ulong,
                                     ctypes.POINTER(ReaderState), ctypes.c_ulong]
lib.SCardReleaseContext.argtypes = [ctypes.c_long]
deadline = time.monotonic() + float(sys.argv[1])
names = sys.argv[2].split("|")
ctx = ctypes.c_long(0)
while lib.SCardEstablishContext(SCARD_SCOPE_SYSTEM, None, None, ctypes.byref(ctx)) != 0:
    if time.monotonic() > deadline:
        sys.exit("pcscd did not answer")
    time.sleep(0.1)
missing = names
while True:
    states = (ReaderState * len(names))()
    for i, n in enumerate(names):
        states[i].szReader = n.encode()
    rv = lib.SCardGetStatusChange(ctx, 0, states, len(names))
    missing = [n for i, n in enumerate(names)
               if rv != 0 or not states[i].dwEventState & SCARD_STATE_PRESENT]
    if not missing or time.monotonic() > deadline:
        break
    time.sleep(0.1)
lib.SCardReleaseContext(ctx)
sys.exit("pcscd does not see a card in: " + ", ".join(missing) if missing else 0)
PY
}

# Waits (bounded) until libnfc lists a card with each UID through PC/SC.
pcsc_env_wait_cards() {
    pe_prefix=$1 pe_dir=$2
    shift 2
    if ! pcsc_env_wait_present 2>"$pe_dir/wait-present.err"; then
        echo "$PCSC_NAME: after ${PCSC_WAIT_SECONDS}s: $(cat "$pe_dir/wait-present.err")" >&2
        for pe_f in "$pe_dir"/vicc*.log "$pe_dir"/pcscd.log; do
            [ -f "$pe_f" ] || continue
            echo "===== $pe_f" >&2
            tail -n 30 "$pe_f" >&2
        done
        return 1
    fi
    pe_deadline=$(($(date +%s) + PCSC_WAIT_SECONDS))
    while :; do
        LD_LIBRARY_PATH="$pe_prefix/lib" "$pe_prefix/bin/nfc-list" -t 1 >"$pe_dir/nfc-list.out" 2>&1 || true
        # nfc-list prints "UID (NFCID1): 04  a1  ..."; compare without spaces.
        tr -d ' ' <"$pe_dir/nfc-list.out" >"$pe_dir/nfc-list.uids"
        pe_all=1
        for pe_uid in "$@"; do
            grep -qi "UID(NFCID1):$pe_uid" "$pe_dir/nfc-list.uids" || pe_all=0
        done
        [ "$pe_all" -eq 1 ] && return 0
        if [ "$(date +%s)" -ge "$pe_deadline" ]; then
            echo "$PCSC_NAME: after ${PCSC_WAIT_SECONDS}s libnfc still does not list the cards" \
                "($*) in the vpcd readers" >&2
            for pe_f in "$pe_dir"/nfc-list.out "$pe_dir"/vicc*.log "$pe_dir"/pcscd.log; do
                [ -f "$pe_f" ] || continue
                echo "===== $pe_f" >&2
                tail -n 30 "$pe_f" >&2
            done
            return 1
        fi
        sleep 0.2
    done
}

# `ota-card vicc` must save and exit cleanly (status 0) on SIGTERM.
pcsc_env_stop_viccs() {
    pe_status=0
    for pe_p in $PCSC_VICC_PIDS; do
        kill -TERM "$pe_p" 2>/dev/null || true
        pe_v=0
        wait "$pe_p" || pe_v=$?
        if [ "$pe_v" -ne 0 ]; then
            echo "$PCSC_NAME: ota-card vicc (pid $pe_p) exited with status $pe_v on SIGTERM" >&2
            pe_status=1
        fi
    done
    PCSC_VICC_PIDS=
    PCSC_VICC_PORTS=
    PCSC_PIDS=$PCSC_PCSCD_PID
    return "$pe_status"
}

pcsc_env_stop_all() {
    for pe_p in $PCSC_PIDS; do
        kill "$pe_p" 2>/dev/null || true
    done
    for pe_p in $PCSC_PIDS; do
        wait "$pe_p" 2>/dev/null || true
    done
    PCSC_PIDS=
    PCSC_VICC_PIDS=
    PCSC_VICC_PORTS=
    PCSC_PCSCD_PID=
}
