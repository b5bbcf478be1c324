#!/usr/bin/env bash
# Builds the libpcap that rides inside the netprobify binary: Debian bookworm's libpcap source,
# configured without D-Bus, RDMA, libnl, Bluetooth, USB and netmap so the only runtime dependency
# is glibc (Debian's own libpcap.so pulls libdbus, libsystemd and seven more libraries).
# Output: vendor-free build artefact at build/libpcap/libpcap.so (git-ignored), and its version
# in build/libpcap/VERSION. Re-running with the artefact present does nothing.
# Needs root for apt-get when the source or the build tools are missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/build/libpcap
[ -s "$out/libpcap.so" ] && [ -s "$out/VERSION" ] && { echo "libpcap: $out/libpcap.so is already built"; exit 0; }
mkdir -p "$out"
work=$(mktemp -d /tmp/netprobify-libpcap.XXXXXX)
trap 'rm -rf "$work"' EXIT

need=()
for tool in flex bison gcc make dpkg-source; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq flex bison gcc make dpkg-dev >/dev/null
fi
# A deb-src entry for bookworm main, kept in its own file so the system's sources stay untouched.
src_list=/etc/apt/sources.list.d/netprobify-src.sources
if ! apt-get source --print-uris libpcap >/dev/null 2>&1; then
  cat >"$src_list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi
cd "$work"
apt-get source -qq libpcap >/dev/null 2>&1 || { echo "apt-get source libpcap failed" >&2; exit 1; }
srcdir=$(find . -maxdepth 1 -type d -name 'libpcap-*' | head -n1)
cd "$srcdir"
# SOURCE_DATE_EPOCH and a fixed build path keep the output the same from run to run.
export SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -STimestamp)
CFLAGS="-O2 -g0 -ffile-prefix-map=$PWD=. -fPIC" ./configure --quiet --disable-dbus --disable-rdma --without-libnl \
  --disable-bluetooth --disable-usb --disable-netmap >/dev/null
make -s -j"$(nproc)" shared >/dev/null 2>&1
so=$(ls libpcap.so.[0-9]*.[0-9]*.[0-9]* | head -n1)
strip --strip-unneeded -o "$out/libpcap.so" "$so"
cat VERSION >"$out/VERSION"
deps=$(objdump -p "$out/libpcap.so" | awk '/NEEDED/ {print $2}' | tr '\n' ' ')
case "$deps" in
  "libc.so.6 ") ;;
  *) echo "libpcap: unexpected dependencies: $deps" >&2; exit 1 ;;
esac
echo "libpcap $(cat "$out/VERSION") built: $out/libpcap.so ($(stat -c %s "$out/libpcap.so") bytes, needs $deps)"
