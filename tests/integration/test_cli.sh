#!/bin/sh
# test_cli.sh: every program's command line and manual page.
#   - --version prints "NAME (ota-topup) VERSION" with configure's version,
#     on stdout, exit 0; --help prints the usage on stdout, exit 0; an
#     unknown option is named on stderr and exits 2;
#   - every manual page (man/*.[158] and the generated ota.conf.5) is clean
#     under `mandoc -T lint -W warning` and `man --warnings`;
#   - every option a program's --help names appears in its manual page, and
#     every key of deploy/ota.conf.example has an entry in ota.conf(5).
# Runs standalone or from make check (OTA_SRCDIR, OTA_BUILDDIR).
set -u
SRC=${OTA_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BLD=${OTA_BUILDDIR:-$SRC/build/main}
. "$SRC/tests/integration/tap.sh"

T=$(mktemp -d /tmp/ota-cli.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

VERSION=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$BLD/ota_autoconf.h")
[ -n "$VERSION" ] || fail "no PACKAGE_VERSION in $BLD/ota_autoconf.h"

# prog NAME: the built program's path.
prog() {
    case $1 in
    ota-gateway) echo "$BLD/gateway/ota-gateway" ;;
    ota-worker) echo "$BLD/worker/ota-worker" ;;
    *) echo "$BLD/tools/$1" ;;
    esac
}
# page NAME: its manual page.
page() {
    case $1 in
    ota-card | ota-load) echo "$SRC/man/$1.1" ;;
    ota.conf) echo "$BLD/man/ota.conf.5" ;;
    *) echo "$SRC/man/$1.8" ;;
    esac
}

# ---- --version, --help, unknown options -------------------------------------
for p in ota-gateway ota-worker ota-ctl ota-card ota-load; do
    bin=$(prog $p)
    "$bin" --version >"$T/out" 2>"$T/err"
    rc=$?
    if [ $rc = 0 ] && [ "$(cat "$T/out")" = "$p (ota-topup) $VERSION" ] && [ ! -s "$T/err" ]; then
        ok "$p --version: '$p (ota-topup) $VERSION', exit 0"
    else
        fail "$p --version: exit $rc, stdout '$(cat "$T/out")', stderr '$(head -c 200 "$T/err")'"
    fi
    "$bin" --help >"$T/help.$p" 2>"$T/err"
    rc=$?
    if [ $rc = 0 ] && grep -q "^usage: $p " "$T/help.$p" && grep -q -- '--version' "$T/help.$p" &&
        [ ! -s "$T/err" ]; then
        ok "$p --help: usage (naming --version) on stdout, exit 0"
    else
        fail "$p --help: exit $rc, stdout '$(head -c 200 "$T/help.$p")', stderr '$(head -c 200 "$T/err")'"
    fi
    "$bin" --no-such-option >"$T/out" 2>"$T/err"
    rc=$?
    if [ $rc = 2 ] && grep -q -- "--no-such-option" "$T/err" && [ ! -s "$T/out" ]; then
        ok "$p --no-such-option: named on stderr, exit 2"
    else
        fail "$p --no-such-option: exit $rc, stderr '$(head -c 200 "$T/err")'"
    fi
done
# ota-card run has its own, longer help: the manual page covers it too.
"$(prog ota-card)" run --help >"$T/help.ota-card-run" 2>/dev/null
check "ota-card run --help exits 0 with a usage" grep -q '^usage: ota-card run ' "$T/help.ota-card-run"
cat "$T/help.ota-card-run" >>"$T/help.ota-card"

# ---- the manual pages ------------------------------------------------------
if ! command -v mandoc >/dev/null 2>&1; then
    fail "mandoc is not installed (deploy/setup.sh installs it)"
fi
for p in ota-gateway ota-worker ota-ctl ota-card ota-load ota.conf; do
    f=$(page $p)
    if [ ! -s "$f" ]; then
        fail "manual page $f is missing"
        continue
    fi
    if command -v mandoc >/dev/null 2>&1; then
        # Warnings and errors; the style notes (such as "referenced manual
        # not found" before installation) are not failures.
        if mandoc -T lint -W warning "$f" >"$T/lint" 2>&1 && [ ! -s "$T/lint" ]; then
            ok "mandoc -T lint -W warning $(basename "$f"): clean"
        else
            fail "mandoc -T lint $(basename "$f"):"
            sed 's/^/#   /' "$T/lint"
        fi
    fi
    if LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" >"$T/man.out" 2>"$T/man.err" &&
        [ ! -s "$T/man.err" ] && grep -q NAME "$T/man.out"; then
        ok "man --warnings $(basename "$f"): renders, no warning"
    else
        fail "man --warnings $(basename "$f"):"
        sed 's/^/#   /' "$T/man.err"
    fi
done

# Every option of --help in the page, written as mdoc's Fl -name.
for p in ota-gateway ota-worker ota-ctl ota-card ota-load; do
    f=$(page $p)
    missing=
    # --key=value stands for every configuration key (ota.conf(5)).
    for o in $(sed "s/--key=value//g" "$T/help.$p" | grep -o -- "--[a-z][a-z0-9-]*" | sort -u); do
        grep -q -- "Fl -${o#--}\\( \\|\$\\)" "$f" || missing="$missing $o"
    done
    if [ -z "$missing" ]; then
        ok "$p: every option of --help is in $(basename "$f")"
    else
        fail "$p: --help names$missing, which $(basename "$f") does not describe"
    fi
done

# Every key of the example in ota.conf(5), as an entry (.It Cm KEY).
missing=
for k in $(sed -n 's/^\([a-z_.]*\) *=.*/\1/p' "$SRC/deploy/ota.conf.example"); do
    grep -qx "\\.It Cm $k" "$(page ota.conf)" || missing="$missing $k"
done
n=$(grep -c '^[a-z_.]* *=' "$SRC/deploy/ota.conf.example")
if [ -z "$missing" ] && [ "$n" -gt 40 ]; then
    ok "ota.conf(5) has an entry for each of the $n keys of deploy/ota.conf.example"
else
    fail "ota.conf(5) lacks the keys$missing (of $n)"
fi

tap_summary
