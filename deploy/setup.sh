#!/bin/sh
# Installs, on a fresh Debian 12 machine, everything the build, the tests and
# the quick start need.  Run as root; safe to run again (idempotent).
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/setup.sh must run as root (try: sudo deploy/setup.sh)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
PACKAGES="
  build-essential autoconf automake libtool pkg-config
  libzmq3-dev libevent-dev libsodium-dev libpq-dev check libssl-dev
  libwslay-dev libjansson-dev
  postgresql postgresql-client
  pcscd libpcsclite-dev vsmartcard-vpcd libfreefare-dev libfreefare-bin libnfc-dev
  dpkg-dev debhelper lintian mandoc man-db libusb-dev libusb-1.0-0-dev
  python3 python3-websockets python3-aiohttp python3-pycryptodome
  haproxy prometheus
  patroni etcd-server python3-etcd
  clang clang-format libclang-rt-14-dev valgrind git
  util-linux iproute2 procps curl ca-certificates openssl
"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
        missing="$missing $p"
done
apt-get update -qq
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
fi

# Debian starts a system PostgreSQL cluster and pcscd; the project uses its
# own clusters and pcscd instances, so the system ones are not needed.  We
# leave them as they are (no changes in /etc).

# Unprivileged account the worker and gateway drop to when started as root,
# and that owns test database clusters (initdb refuses to run as root).
if ! getent passwd ota >/dev/null; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin ota
fi
echo "setup: all packages present"
