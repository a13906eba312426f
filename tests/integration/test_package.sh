#!/bin/sh
# test_package.sh: the Debian package, end to end on this machine.
#   1. builds it with `dpkg-buildpackage -us -uc -b` (DEB_BUILD_OPTIONS=
#      nocheck parallel=2) in a copy of the tree; its version is
#      configure's; lintian reports no error;
#   2. installs it with dpkg -i: the five programs in /usr/bin say their
#      version, the ota user exists, the units are in /lib/systemd/system
#      and not enabled, the manual pages, the schema and the configuration
#      example (a conffile in /etc/ota) are in place;
#   3. runs the quick start's demo and hand-over (deploy/quickstart with
#      QUICKSTART_PATH=/usr/bin) against the installed programs, schema and
#      worker, in a temporary directory with free ports;
#   4. removes the package (dpkg -r, then dpkg --purge) and checks that
#      nothing of it is left.
# Needs root (dpkg -i); otherwise it is skipped (exit 77) and says so.  One
# run at a time per machine (a lock), and it refuses to touch an ota-topup
# that was installed before it started.  Takes a few minutes (the build).
set -u
SRC=${OTA_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/tap.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "# SKIP: test_package.sh installs a package with dpkg -i and must run as root"
    exit 77
fi
for c in dpkg-buildpackage dh lintian flock; do
    if ! command -v $c >/dev/null 2>&1; then
        fail "$c is not installed (deploy/setup.sh installs it)"
        exit 1
    fi
done

T=$(mktemp -d /tmp/ota-pkg.XXXXXX) || exit 1
chmod 755 "$T"
QS=
INSTALLED=0
cleanup() {
    if [ -n "$QS" ]; then
        kill -TERM "$QS" 2>/dev/null
        wait "$QS" 2>/dev/null
    fi
    if [ -f "$T/var/pg/postmaster.pid" ]; then
        runuser -u ota -- /usr/lib/postgresql/15/bin/pg_ctl -D "$T/var/pg" stop -m immediate >/dev/null 2>&1
    fi
    # Whatever happened, the package does not stay installed.
    [ "$INSTALLED" = 1 ] && dpkg --purge ota-topup >/dev/null 2>&1
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

exec 9>/tmp/ota-package-test.lock
if ! flock -w 1800 9; then
    fail "another test_package.sh held /tmp/ota-package-test.lock for 30 minutes"
    exit 1
fi
if dpkg-query -W -f='${Status}' ota-topup 2>/dev/null | grep -q 'ok installed'; then
    fail "ota-topup is already installed on this machine; this test will not replace or remove it"
    exit 1
fi

# dpkg_locked ARGS...: dpkg, waiting (up to 2 min) while apt or dpkg of
# someone else holds the dpkg lock.
dpkg_locked() {
    _i=0
    while ! dpkg "$@" >"$T/dpkg.out" 2>&1; do
        grep -q 'lock' "$T/dpkg.out" || return 1
        _i=$((_i + 1))
        [ $_i -gt 60 ] && return 1
        sleep 2
    done
}
# What a package could leave behind, listed before and after.
leftovers() {
    find /etc/ota /lib/systemd/system /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
        /var/lib/systemd/deb-systemd-helper-masked /usr/share/doc/ota-topup /usr/share/ota-topup \
        /var/log/ota /usr/bin -name '*ota*' 2>/dev/null | sort
}
leftovers >"$T/before.txt"

# ---- 1. build --------------------------------------------------------------
mkdir "$T/src"
# A git checkout of its own (a release tree may sit inside another checkout).
if [ "$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$SRC" && pwd -P)" ]; then
    (cd "$SRC" && git ls-files -z | tar --null -T - -cf -) | tar -C "$T/src" -xf -
else
    (cd "$SRC" && tar --exclude=./build --exclude=./_build --exclude=./_inst --exclude=./var -cf - .) |
        tar -C "$T/src" -xf -
fi
chmod -R u+w "$T/src" # a release tree under make distcheck is read-only
VERSION=$(sed -n 's/^AC_INIT(\[[^]]*\], \[\([^]]*\)\].*/\1/p' "$T/src/configure.ac")
DEBVERSION=$(dpkg-parsechangelog -l "$T/src/debian/changelog" -S Version)
check "debian/changelog's version ($DEBVERSION) is configure's ($VERSION)" [ "${VERSION:-none}" = "$DEBVERSION" ]
start=$(date +%s)
if (cd "$T/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) >"$T/build.log" 2>&1; then
    ok "dpkg-buildpackage -us -uc -b built the package in $(($(date +%s) - start)) s"
else
    fail "dpkg-buildpackage failed:"
    tail -n 40 "$T/build.log" | sed 's/^/#   /'
    exit 1
fi
DEB=$(ls "$T"/ota-topup_"$DEBVERSION"_*.deb 2>/dev/null | head -n 1)
check "the package file ota-topup_${DEBVERSION}_ARCH.deb exists" [ -n "$DEB" ]
[ -n "$DEB" ] || exit 1

lintian --fail-on error --tag-display-limit 0 "$DEB" >"$T/lintian.out" 2>&1
rc=$?
if [ $rc = 0 ] && ! grep -q '^E: ' "$T/lintian.out"; then
    ok "lintian: no error ($(grep -c '^W: ' "$T/lintian.out") warnings)"
else
    fail "lintian reports errors:"
    grep -v 'root privileges' "$T/lintian.out" | sed 's/^/#   /'
fi
grep '^W: ' "$T/lintian.out" | sed 's/^/# lintian: /'

# ---- 2. install ------------------------------------------------------------
if dpkg_locked -i "$DEB"; then
    INSTALLED=1
    ok "dpkg -i $(basename "$DEB")"
else
    fail "dpkg -i failed:"
    sed 's/^/#   /' "$T/dpkg.out"
    exit 1
fi
check "ota-ctl --version from /usr/bin says $VERSION" \
    [ "$(/usr/bin/ota-ctl --version)" = "ota-ctl (ota-topup) $VERSION" ]
bad=
for p in ota-gateway ota-worker ota-card ota-load; do
    [ "$(/usr/bin/$p --version 2>&1)" = "$p (ota-topup) $VERSION" ] || bad="$bad $p"
done
check "ota-gateway, ota-worker, ota-card, ota-load in /usr/bin say $VERSION${bad:+ (not:$bad)}" [ -z "$bad" ]
check "the system user and group ota exist" sh -c 'getent passwd ota >/dev/null && getent group ota >/dev/null'
# deploy/setup.sh made the ota user on a test machine already, so the
# postinst's own account creation runs again in a private mount namespace
# whose /etc (a copy) has no ota user: it must make a system user and
# group ota with no login.
mkuser=$(sed -n '/^    if ! getent passwd ota/,/^    fi$/p' /var/lib/dpkg/info/ota-topup.postinst)
if [ -z "$mkuser" ]; then
    fail "the installed postinst has no 'if ! getent passwd ota' block"
else
    cp -a /etc "$T/etc"
    for f in passwd group shadow gshadow; do
        [ -f "$T/etc/$f" ] && sed -i '/^ota:/d' "$T/etc/$f"
    done
    printf '%s\n' "$mkuser" >"$T/mkuser.sh"
    unshare -m sh -c "mount --bind '$T/etc' /etc && ! getent passwd ota && sh -e '$T/mkuser.sh' &&
        getent passwd ota && getent group ota" >"$T/user.out" 2>&1
    rc=$?
    line=$(grep '^ota:' "$T/user.out" | head -n 1)
    uid=$(echo "$line" | cut -d: -f3)
    if [ $rc = 0 ] && [ -n "$uid" ] && [ "$uid" -lt 1000 ] &&
        [ "$(echo "$line" | cut -d: -f6-)" = "/nonexistent:/usr/sbin/nologin" ] &&
        grep -q '^ota:' "$T/user.out"; then
        ok "the postinst creates ota as a system user (uid $uid, no home, nologin) where it is missing"
    else
        fail "the postinst's user creation, on an /etc without ota:"
        sed 's/^/#   /' "$T/user.out"
    fi
fi
if grep -qx 'ExecStart=/usr/bin/ota-gateway .*' /lib/systemd/system/ota-gateway.service 2>/dev/null &&
    grep -q '^ExecStart=/usr/bin/ota-worker ' /lib/systemd/system/ota-worker@.service 2>/dev/null; then
    ok "the units are in /lib/systemd/system and start /usr/bin/ota-gateway and /usr/bin/ota-worker"
else
    fail "the units are missing from /lib/systemd/system or do not name /usr/bin"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    # The installed unit: its program, its man page, its syntax.
    if systemd-analyze verify /lib/systemd/system/ota-gateway.service >"$T/sd.out" 2>&1 &&
        [ ! -s "$T/sd.out" ]; then
        ok "systemd-analyze verify: the installed ota-gateway.service finds its program and manual page"
    else
        fail "systemd-analyze verify /lib/systemd/system/ota-gateway.service:"
        sed 's/^/#   /' "$T/sd.out"
    fi
fi
if [ ! -e /etc/systemd/system/multi-user.target.wants/ota-gateway.service ] &&
    ! ls /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/ota-gateway.service >/dev/null 2>&1; then
    ok "ota-gateway.service is shipped disabled"
else
    fail "ota-gateway.service was enabled by the installation"
fi
missing=
for m in ota-gateway.8 ota-worker.8 ota-ctl.8 ota-card.1 ota-load.1 ota.conf.5; do
    man -w "${m%.*}" 2>/dev/null | grep -q "/usr/share/man/man${m##*.}/$m.gz" || missing="$missing $m"
done
check "man finds the six installed pages${missing:+ (not:$missing)}" [ -z "$missing" ]
check "/etc/ota/ota.conf.example is a conffile" \
    sh -c "dpkg-query -W -f='\${Conffiles}' ota-topup | grep -q '/etc/ota/ota.conf.example'"
missing=
for s in "$T"/src/schema/*.sql; do
    [ -f "/usr/share/ota-topup/schema/$(basename "$s")" ] || missing="$missing $(basename "$s")"
done
check "the schema is in /usr/share/ota-topup/schema${missing:+ (missing:$missing)}" [ -z "$missing" ]

# ---- 3. the quick demo on the installed programs -----------------------------
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
ADM=$(free_port)
QUICKSTART_SETUP=no QUICKSTART_PATH=/usr/bin QUICKSTART_VAR="$T/var" \
    QUICKSTART_PORTS="$(free_port) $(free_port) $ADM" "$T/src/deploy/quickstart" >"$T/qs.out" 2>&1 &
QS=$!
i=0
while ! grep -q '^== the manual pages' "$T/qs.out" && kill -0 "$QS" 2>/dev/null && [ $i -lt 1800 ]; do
    sleep 0.1
    i=$((i + 1))
done
if grep -q '^top-up ok: +500, balance 500 ' "$T/qs.out" && grep -q '^== the manual pages' "$T/qs.out"; then
    ok "the quick start's demo (personalize, check, top-up 500, check) ran on the installed package"
else
    fail "the quick start's demo failed on the installed package:"
    tail -n 30 "$T/qs.out" | sed 's/^/#   /'
fi
check "ota-ctl db migrate applied the installed schema" grep -q '^applied 001_base' "$T/qs.out"
# The processes serving it are the installed ones.
exes=
for p in /proc/[0-9]*; do
    grep -q "$T/var/ota.conf" "$p/cmdline" 2>/dev/null || continue
    exes="$exes $(readlink "$p/exe" 2>/dev/null)"
done
exes=$(echo $exes | tr ' ' '\n' | sort -u | tr '\n' ' ')
check "the demo's gateway and workers run /usr/bin/ota-gateway and /usr/bin/ota-worker ($exes)" \
    [ "$exes" = "/usr/bin/ota-gateway /usr/bin/ota-worker " ]
sed -n '/^== the gateway keeps running/,/^== the manual pages/s/^    //p' "$T/qs.out" >"$T/second.sh"
if (cd / && env -i PATH=/usr/bin:/bin HOME="$T" sh -e "$T/second.sh") >"$T/second.out" 2>&1 &&
    grep -q '^top-up ok: +250, balance 750 ' "$T/second.out"; then
    ok "the hand-over's commands work on the installed package (top-up 250, balance 750)"
else
    fail "the hand-over's commands failed on the installed package:"
    sed 's/^/#   /' "$T/second.out"
fi
kill -TERM "$QS"
wait "$QS" 2>/dev/null
QS=
check "the quick start stopped its database" [ ! -f "$T/var/pg/postmaster.pid" ]

# ---- 4. remove and purge -----------------------------------------------------
if dpkg_locked -r ota-topup && [ ! -e /usr/bin/ota-ctl ] && [ -f /etc/ota/ota.conf.example ]; then
    ok "dpkg -r removes the programs and keeps the conffile"
else
    fail "dpkg -r: $(cat "$T/dpkg.out")"
fi
if dpkg_locked --purge ota-topup; then
    INSTALLED=0
    ok "dpkg --purge ota-topup"
else
    fail "dpkg --purge failed: $(cat "$T/dpkg.out")"
fi
check "dpkg no longer knows ota-topup" \
    sh -c "! dpkg-query -W -f='\${Status}' ota-topup 2>/dev/null | grep -q 'ok installed\|config-files'"
leftovers >"$T/after.txt"
if cmp -s "$T/before.txt" "$T/after.txt"; then
    ok "nothing of the package is left (units, /etc/ota, docs, schema, logs, programs)"
else
    fail "left behind after the purge:"
    diff "$T/before.txt" "$T/after.txt" | sed 's/^/#   /'
fi

tap_summary
