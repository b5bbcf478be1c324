#!/usr/bin/env bash
# Installs everything netprobify needs to build and test on a fresh Debian machine (root):
# Debian packages (network tools the tests use, Prometheus, htpasswd and openssl for the web
# config tests, dnsmasq for the dns inventory's tests, the libpcap build tools, systemd for systemd-analyze, podman and buildah for the
# container image; installing systemd does not make it PID 1; for the release, the arm64 cross
# toolchain, qemu-user and readelf), Bun and the npm packages (npm ci, from package-lock.json),
# and the libc-only libpcap embedded in the binary.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs Debian packages)" >&2; exit 77; }
packages=(iproute2 iputils-ping tcpdump tshark procps curl util-linux libcap2-bin flex bison gcc make dpkg-dev libpcap0.8-dev prometheus apache2-utils openssl systemd podman buildah
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static binutils dnsmasq-base)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # tshark asks whether non-root users may capture: the answer does not matter here (root).
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The web config tests start their own Prometheus on a free port: the package's service, where
# systemd started it, would only scrape and store in the background.
if command -v systemctl >/dev/null && systemctl is-enabled prometheus >/dev/null 2>&1; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
# npm ci again when a package added to package.json since the last install is missing.
[ -x node_modules/.bin/bun ] && [ -d node_modules/prom-client ] && [ -d node_modules/kubernetes-models ] || npm ci --no-audit --no-fund --loglevel=error
bash scripts/build-libpcap.sh
