#!/bin/sh
# build-libnfc.sh: builds libnfc 1.8.0 with its PC/SC driver from Debian's
# own source package (Debian's binary package has no pcsc driver) and
# installs it into a cache prefix, so the interop test can load it with
# LD_LIBRARY_PATH under Debian's unchanged libfreefare.
# It must never change anything in /etc or in the system's apt state: apt
# runs with its source list, parts and lists in a temporary directory.
#
# Usage: build-libnfc.sh [PREFIX]
#   PREFIX defaults to $OTA_CACHE/libnfc-pcsc if OTA_CACHE is set, else
#   /var/cache/ota-topup/libnfc-pcsc.  Prints the prefix on stdout (the
#   last line); progress goes to stderr.  Does nothing if already built.
set -eu

if [ $# -gt 1 ]; then
    echo "usage: $0 [PREFIX]" >&2
    exit 2
fi
if [ $# -eq 1 ]; then
    prefix=$1
elif [ -n "${OTA_CACHE:-}" ]; then
    prefix=$OTA_CACHE/libnfc-pcsc
else
    prefix=/var/cache/ota-topup/libnfc-pcsc
fi

# The stamp is written last, so a half-finished build is redone.
stamp=$prefix/.ota-built-pcsc
if [ -f "$stamp" ] && [ -e "$prefix/lib/libnfc.so.6" ]; then
    echo "$prefix"
    exit 0
fi

# Two test runs at once (two build trees) must not build into one prefix
# together: the second waits for the first, then finds its stamp.
mkdir -p "$(dirname "$prefix")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$prefix.lock"
    flock 9
    if [ -f "$stamp" ] && [ -e "$prefix/lib/libnfc.so.6" ]; then
        echo "$prefix"
        exit 0
    fi
fi

for tool in apt-get dpkg-source autoreconf make cc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build-libnfc: '$tool' not found (run deploy/setup.sh)" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ota-libnfc.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/archives/partial" "$tmp/src"
echo "deb-src http://deb.debian.org/debian bookworm main" >"$tmp/src.list"

# Everything apt would read from or write to /etc or /var/lib/apt is
# redirected into the temporary directory.
aptopts="-o Dir::Etc::SourceList=$tmp/src.list -o Dir::Etc::SourceParts=$tmp/parts
 -o Dir::State::Lists=$tmp/lists -o Dir::Cache::Archives=$tmp/archives
 -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root"

echo "build-libnfc: fetching Debian's libnfc source package" >&2
# shellcheck disable=SC2086
apt-get $aptopts -qq update >&2
# shellcheck disable=SC2086
(cd "$tmp/src" && apt-get $aptopts -qq source --download-only libnfc >&2)

dsc=""
for f in "$tmp"/src/libnfc_1.8.0*.dsc; do
    [ -f "$f" ] && dsc=$f && break
done
if [ -z "$dsc" ]; then
    echo "build-libnfc: no libnfc 1.8.0 source package was downloaded:" >&2
    ls "$tmp/src" >&2
    exit 1
fi
(cd "$tmp/src" && dpkg-source --no-check -x "$dsc" libnfc >&2)

cd "$tmp/src/libnfc"
if [ ! -x configure ]; then
    echo "build-libnfc: autoreconf" >&2
    autoreconf -fi >&2
fi
echo "build-libnfc: configure --with-drivers=pcsc --prefix=$prefix" >&2
./configure -q --with-drivers=pcsc --prefix="$prefix" --disable-static \
    --disable-doc --sysconfdir="$prefix/etc" >&2
make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null 2>&1 || {
    # Repeat serially so the error is readable.
    make >&2
}
mkdir -p "$prefix"
make install >/dev/null
touch "$stamp"
echo "build-libnfc: installed into $prefix" >&2
echo "$prefix"
