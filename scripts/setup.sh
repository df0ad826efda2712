#!/usr/bin/env bash
# Installs everything Fulcrum needs to build, test and run its demo on Debian 12.
# Idempotent and fast when everything is already there: apt runs only for missing packages.
set -euo pipefail

packages=(
  # build
  build-essential g++ meson ninja-build pkg-config clang-format
  # libraries
  libdpdk-dev dpdk libbpf-dev libxdp-dev libhyperscan-dev libfmt-dev nlohmann-json3-dev
  libcli11-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  # test bed, end-to-end tests and benchmarks
  iproute2 ethtool iputils-ping procps psmisc curl netcat-openbsd socat python3 jq
  nginx-light wrk haproxy nftables valgrind openssl iperf3
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$package")
done

if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nginx-light's package starts a system nginx on port 80 of the root namespace; the tests run
# their own instances inside namespaces, so keep the system one out of the way.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
  systemctl disable nginx >/dev/null 2>&1 || true
fi
pkill -f 'nginx: master process /usr/sbin/nginx -g daemon on; master_process on;' 2>/dev/null || true
exit 0
