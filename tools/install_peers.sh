#!/usr/bin/env bash
# Installs (with apt-get, as root) the Debian packages whose programs the
# test suite uses as real peers: ncat and socat (TLS clients and servers),
# openssl (certificates, a TLS 1.2 client), util-linux's script (a pty),
# iproute2's ss (what the kernel holds), python3-prometheus-client and
# prometheus's promtool (two parsers of /metrics), and the load balancers
# tests/lb_test.ts runs in front of the server: haproxy, nginx-light with
# libnginx-mod-stream (the stream module), and python3 (its clients, which
# bind a chosen 127.0.0.x source address), chromium for the live page, and
# gcc and net-tools (netstat) for the tutorial, which compiles the seed.
# Installs only what is missing.
set -euo pipefail
packages=(ncat socat openssl util-linux iproute2 python3-prometheus-client prometheus
  haproxy nginx-light libnginx-mod-stream python3 chromium gcc net-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "installing: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
