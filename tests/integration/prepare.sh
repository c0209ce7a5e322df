#!/usr/bin/env bash
# Installs what the lab needs on a fresh machine (as root): dnsmasq and the _dhcp user.
# Used by `make demo` and by CI.
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
if ! getent passwd _dhcp >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin _dhcp
fi
