#!/usr/bin/env bash
# Builds the libpcap that rides inside the netprobify binary: the Debian release's libpcap source,
# configured without D-Bus, RDMA, libnl, Bluetooth, USB and netmap so the only runtime dependency
# is glibc (Debian's own libpcap.so pulls libdbus, libsystemd and seven more libraries).
# Usage: build-libpcap.sh [amd64|arm64] (default: this machine's architecture). The machine's own
# architecture goes to build/libpcap/ (what `bun src/main.ts` and the native build embed), another
# to build/libpcap-<arch>/, built with Debian's cross toolchain for it. Each holds libpcap.so and
# its version in VERSION (git-ignored). Re-running with the artefact present does nothing.
# Needs root for apt-get when the source or the native build tools are missing; a missing cross
# toolchain is not installed but named (exit 69), as the release script does.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
native=$(dpkg --print-architecture)
arch=${1:-$native}
case "$arch" in
  amd64) triplet=x86_64-linux-gnu; cross_gcc=gcc-x86-64-linux-gnu; cross_libc=libc6-dev-amd64-cross ;;
  arm64) triplet=aarch64-linux-gnu; cross_gcc=gcc-aarch64-linux-gnu; cross_libc=libc6-dev-arm64-cross ;;
  *) echo "libpcap: unknown architecture $arch (amd64 or arm64)" >&2; exit 64 ;;
esac
if [ "$arch" = "$native" ]; then
  out=$here/build/libpcap
  host=()
  tool_prefix=
else
  out=$here/build/libpcap-$arch
  command -v "$triplet-gcc" >/dev/null || { echo "libpcap: no $triplet-gcc to build for $arch: install the Debian package $cross_gcc" >&2; exit 69; }
  [ -f "/usr/$triplet/include/stdio.h" ] || { echo "libpcap: no C library headers for $arch in /usr/$triplet: install the Debian package $cross_libc" >&2; exit 69; }
  host=(--host="$triplet")
  tool_prefix=$triplet-
  # The machine's pkg-config must not offer its own architecture's libraries to the cross build.
  export PKG_CONFIG_LIBDIR=/usr/$triplet/lib/pkgconfig
fi
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
# A deb-src entry derived from the machine's own apt sources (whatever mirror or proxy they name):
# every `deb` entry of the release's main suite, as deb-src, in a file of its own so the system's
# sources stay untouched. Both formats: deb822 (*.sources) and one-line (sources.list, *.list).
src_list=/etc/apt/sources.list.d/netprobify-src.sources
if ! apt-get source --print-uris libpcap >/dev/null 2>&1; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || { echo "libpcap: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }
  derived=$(
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && [ "$f" != "$src_list" ] && awk -v suite="$codename" '
        BEGIN { RS = ""; FS = "\n" }
        {
          types = ""; uris = ""; suites = ""; comps = ""; key = ""
          for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^#/) continue
            split(line, kv, ":"); name = kv[1]; value = substr(line, length(name) + 2); gsub(/^[ \t]+|[ \t]+$/, "", value)
            if (name == "Types") types = value; else if (name == "URIs") uris = value
            else if (name == "Suites") suites = value; else if (name == "Components") comps = value
            else if (name == "Signed-By") key = value
          }
          if ((" " types " ") !~ / deb / || (" " suites " ") !~ (" " suite " ")) next
          printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n", uris, suite, comps
          if (key != "") printf "Signed-By: %s\n", key
          printf "\n"
        }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] && awk -v suite="$codename" '
        $1 == "deb" {
          opts = ""; i = 2
          if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { opts = opts " " $i; i++ }; opts = substr(opts " " $i, 2); i++ }
          if ($(i + 1) != suite) next
          printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", $i, suite
          for (j = i + 2; j <= NF; j++) printf " %s", $j
          printf "\n"
          if (match(opts, /signed-by=[^] ]+/)) printf "Signed-By: %s\n", substr(opts, RSTART + 10, RLENGTH - 10)
          printf "\n"
        }' "$f"
    done
    true # a missing sources.list is no failure
  )
  [ -n "$derived" ] || { echo "libpcap: no deb entry for $codename in the apt sources to derive a deb-src entry from" >&2; exit 1; }
  printf '%s\n' "$derived" >"$src_list"
  apt-get update -qq
fi
cd "$work"
apt-get source -qq libpcap >/dev/null 2>&1 || { echo "apt-get source libpcap failed" >&2; exit 1; }
srcdir=$(find . -maxdepth 1 -type d -name 'libpcap-*' | head -n1)
cd "$srcdir"
# SOURCE_DATE_EPOCH and a fixed build path keep the output the same from run to run.
export SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -STimestamp)
# configure's warnings (no DPDK, pkg-config unprefixed) are noise unless it fails.
CFLAGS="-O2 -g0 -ffile-prefix-map=$PWD=. -fPIC" ./configure --quiet "${host[@]}" --disable-dbus --disable-rdma --without-libnl \
  --disable-bluetooth --disable-usb --disable-netmap >"$work/configure.log" 2>&1 || { tail -n 20 "$work/configure.log" >&2; echo "libpcap: configure failed" >&2; exit 1; }
make -s -j"$(nproc)" shared >/dev/null 2>&1
so=$(ls libpcap.so.[0-9]*.[0-9]*.[0-9]* | head -n1)
"${tool_prefix}strip" --strip-unneeded -o "$out/libpcap.so" "$so"
cat VERSION >"$out/VERSION"
deps=$("${tool_prefix}objdump" -p "$out/libpcap.so" | awk '/NEEDED/ {print $2}' | tr '\n' ' ')
case "$deps" in
  "libc.so.6 ") ;;
  *) echo "libpcap: unexpected dependencies: $deps" >&2; exit 1 ;;
esac
echo "libpcap $(cat "$out/VERSION") built for $arch: $out/libpcap.so ($(stat -c %s "$out/libpcap.so") bytes, needs $deps)"
