#!/bin/sh
# test_install.sh: `make install DESTDIR=...` from the build tree puts
# everything a host needs in place: the five programs, every migration of
# schema/, the six manual pages, the systemd units with their paths
# rewritten to the prefix, ota.conf.example under sysconfdir, and the
# documentation; `make uninstall` removes all of it again.  And `make
# distdir` puts every file of the git checkout in the tarball.
# Runs standalone or from make check (OTA_SRCDIR, OTA_BUILDDIR).
set -u
SRC=${OTA_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BLD=${OTA_BUILDDIR:-$SRC/build/main}
. "$SRC/tests/integration/tap.sh"

T=$(mktemp -d /tmp/ota-install.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

# The directories this build installs to, as configure set them.
var() { sed -n "s|^$1 = ||p" "$BLD/Makefile" | head -n 1; }
prefix=$(var prefix)
exp() { echo "$1" | sed -e "s|\${prefix}|$prefix|g" -e "s|\$(prefix)|$prefix|g"; }
bindir=$(exp "$(var bindir | sed 's|\${exec_prefix}|${prefix}|')")
sysconfdir=$(exp "$(var sysconfdir)")
unitdir=$(exp "$(var systemdsystemunitdir)")
datadir=$(exp "$(var datarootdir)")
docdir=$datadir/doc/ota-topup
mandir=$datadir/man
R=$T/root

if make -s -C "$BLD" install DESTDIR="$R" >"$T/install.out" 2>&1; then
    ok "make install DESTDIR=... (prefix $prefix)"
else
    fail "make install failed:"
    tail -20 "$T/install.out" | sed 's/^/#   /'
fi

missing=
for f in $bindir/ota-gateway $bindir/ota-worker $bindir/ota-ctl $bindir/ota-card $bindir/ota-load; do
    [ -x "$R$f" ] || missing="$missing $f"
done
check "the five programs are installed in $bindir${missing:+ (missing:$missing)}" [ -z "$missing" ]
check "the installed ota-ctl runs" sh -c "'$R$bindir/ota-ctl' --version >/dev/null"

missing=
for s in "$SRC"/schema/*.sql; do
    [ -f "$R$datadir/ota-topup/schema/$(basename "$s")" ] || missing="$missing $(basename "$s")"
done
check "every schema/*.sql is installed in $datadir/ota-topup/schema${missing:+ (missing:$missing)}" [ -z "$missing" ]

missing=
for m in man1/ota-card.1 man1/ota-load.1 man5/ota.conf.5 man8/ota-gateway.8 man8/ota-worker.8 \
    man8/ota-ctl.8; do
    [ -s "$R$mandir/$m" ] || missing="$missing $m"
done
check "the six manual pages are installed in $mandir${missing:+ (missing:$missing)}" [ -z "$missing" ]

for u in ota-gateway.service ota-worker@.service; do
    f=$R$unitdir/$u
    name=${u%%@*}
    name=${name%.service}
    if [ -f "$f" ] && grep -q "^ExecStart=$bindir/$name " "$f"; then
        ok "$u installed in $unitdir, ExecStart=$bindir/$name"
    else
        fail "$u not installed in $unitdir or ExecStart not $bindir/$name"
    fi
    grep -q "^Documentation=.*file:$docdir/OPERATIONS.md" "$f" 2>/dev/null &&
        ok "$u: Documentation names the installed OPERATIONS.md" ||
        fail "$u: Documentation does not name $docdir/OPERATIONS.md"
done

check "ota.conf.example installed in $sysconfdir/ota" \
    cmp -s "$SRC/deploy/ota.conf.example" "$R$sysconfdir/ota/ota.conf.example"
missing=
for d in README.md OPERATIONS.md FINANCE.md examples/alerts.yml examples/prometheus.yml \
    examples/ota-dashboard.json examples/haproxy.cfg.in; do
    [ -s "$R$docdir/$d" ] || missing="$missing $d"
done
check "the documentation is installed in $docdir${missing:+ (missing:$missing)}" [ -z "$missing" ]

make -s -C "$BLD" uninstall DESTDIR="$R" >"$T/uninstall.out" 2>&1
left=$(find "$R" -type f | sed "s|^$R||")
if [ -z "$left" ]; then
    ok "make uninstall removes every installed file"
else
    fail "make uninstall left:"
    echo "$left" | sed 's/^/#   /'
fi

# The tarball holds every file of the checkout, so that `make distcheck`
# (which builds and tests from it) sees what a checkout sees.
# A git checkout of its own (a release tree may sit inside another checkout).
if [ "$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$SRC" && pwd -P)" ]; then
    if make -s -C "$BLD" distdir distdir="$T/dist" >"$T/dist.out" 2>&1; then
        git -C "$SRC" ls-files | sort >"$T/git.txt"
        (cd "$T/dist" && find . -type f | sed 's|^\./||' | sort) >"$T/dist.txt"
        missing=$(comm -13 "$T/dist.txt" "$T/git.txt")
        if [ -z "$missing" ]; then
            ok "make distdir: the tarball holds every file of git ls-files"
        else
            fail "make distdir: not in the tarball (add them to EXTRA_DIST in a .mk fragment):"
            echo "$missing" | sed 's/^/#   /'
        fi
    else
        fail "make distdir failed:"
        tail -20 "$T/dist.out" | sed 's/^/#   /'
    fi
else
    echo "# skip: not a git checkout (a release tree); the tarball contents are not compared"
fi

tap_summary
