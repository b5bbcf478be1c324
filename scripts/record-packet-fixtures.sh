#!/usr/bin/env bash
# Records the packet fixtures of tests/packet/ from the kernel's own stack on loopback, so the
# codec is checked against bytes it did not produce: UDP datagrams to a closed port and the
# ICMP/ICMPv6 port-unreachable errors quoting them, a TCP SYN to a closed port and its RST-ACK,
# and ping's echo request and reply, over IPv4 and IPv6. Root only; touches loopback only.
set -euo pipefail
out=$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/pcap
mkdir -p "$out"
record() { # name filter command...
  local name=$1 filter=$2; shift 2
  tcpdump -i lo -nn -U --immediate-mode --time-stamp-precision=nano -w "$out/$name.pcap" "$filter" 2>/dev/null &
  local pid=$!
  sleep 1
  "$@" >/dev/null 2>&1 || true
  sleep 0.5
  kill -INT $pid; wait $pid || true
}
py_udp='import socket,sys
fam=socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s=socket.socket(fam,socket.SOCK_DGRAM); s.bind((sys.argv[1],65000)); s.sendto(b"\0\0\0\x2a",(sys.argv[1],33434))'
py_tcp='import socket,sys
fam=socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s=socket.socket(fam,socket.SOCK_STREAM); s.bind((sys.argv[1],65001))
try: s.connect((sys.argv[1],33435))
except OSError: pass'
record lo-udp4 "udp port 33434 or icmp" python3 -c "$py_udp" 127.0.0.1
record lo-udp6 "udp port 33434 or icmp6" python3 -c "$py_udp" ::1
record lo-tcp4 "tcp port 33435" python3 -c "$py_tcp" 127.0.0.1
record lo-tcp6 "tcp port 33435" python3 -c "$py_tcp" ::1
record lo-icmp4 "icmp" ping -c1 -W1 127.0.0.1
record lo-icmp6 "icmp6 and (ip6[40] == 128 or ip6[40] == 129)" ping -6 -c1 -W1 ::1
ls -l "$out"
