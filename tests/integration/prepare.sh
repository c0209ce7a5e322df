#!/usr/bin/env bash
# Installs what the lab needs on a fresh machine (as root): dnsmasq and the _dhcp user;
# for the system tests (tests/system), systemd-nspawn and mmdebstrap, and python3-venv
# for `make install` with the system's Python.  Nothing else lands on the host: the
# resolver packages are fetched with `apt-get download` and installed only inside
# throwaway containers (cached in /var/cache/dhcpleased-tests).  Used by `make demo`
# and by CI.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "prepare.sh: run as root (the lab builds network namespaces)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! [ -x /usr/sbin/dnsmasq ] || ! command -v mandoc >/dev/null 2>&1 \
    || ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v gdb >/dev/null 2>&1; then
    apt-get update -qq
    # dnsmasq-base: the binary only, no system service binding the host's port 53;
    # gdb: tests/integration/inject.py runs code inside the running daemon's processes
    apt-get install -y -qq dnsmasq-base iproute2 mandoc groff-base man-db procps make systemd \
        gdb >/dev/null
fi
# The real resolvectl for test_dns_handoff.py, unpacked only: installing systemd-resolved
# would take over this host's resolv.conf.  Same version as the installed systemd (its
# libsystemd-shared).
RESOLVED_DIR=/var/cache/dhcpleased-test/systemd-resolved
if ! [ -x "$RESOLVED_DIR/usr/bin/resolvectl" ]; then
    version=$(dpkg-query -W -f='${Version}' systemd)
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && { apt-get download -qq "systemd-resolved=$version" 2>/dev/null \
        || { apt-get update -qq && apt-get download -qq "systemd-resolved=$version"; }; })
    mkdir -p "$RESOLVED_DIR"
    dpkg-deb -x "$tmp"/systemd-resolved_*.deb "$RESOLVED_DIR"
    rm -rf "$tmp"
fi
if ! command -v systemd-nspawn >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1 \
    || ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get update -qq
    # --no-install-recommends: the recommended libnss-mymachines edits /etc/nsswitch.conf
    apt-get install -y -qq --no-install-recommends systemd-container mmdebstrap python3-venv \
        >/dev/null
fi
if ! getent passwd _dhcp >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin _dhcp
fi
