#!/usr/bin/env python3
"""An independent TWAMP-light session-reflector for the test suite, written from RFC 5357 4.2.1's
packet layout (unauthenticated mode), not from netprobify's code:

    0  Sequence Number (4)          4  Timestamp (8, NTP)         12 Error Estimate (2)
    14 MBZ (2)                      16 Receive Timestamp (8)      24 Sender Sequence Number (4)
    28 Sender Timestamp (8)         36 Sender Error Estimate (2)  38 MBZ (2)
    40 Sender TTL (1)               41 Packet Padding

Stateful (its own counter per sender address and port, from 0) or stateless (it echoes the
sender's sequence number as its own, RFC 5357 4.2.1's allowance for reflectors that keep no state).
The receive timestamp is the kernel's (SO_TIMESTAMPNS), the send timestamp the clock before sendto.

usage: twamp_reflector.py ADDRESS PORT stateful|stateless
Prints "listening PORT" once bound; runs until killed.
"""
import socket
import struct
import sys
import time

NTP_UNIX = 2208988800
# Linux's values (asm-generic/socket.h, in.h): Python's socket module does not name them all.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = getattr(socket, "IP_TTL", 2)


def ntp(sec, nsec):
    return struct.pack("!II", (sec + NTP_UNIX) & 0xFFFFFFFF, (nsec << 32) // 1_000_000_000)


def main():
    address, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    s.bind((address, port))
    print(f"listening {s.getsockname()[1]}", flush=True)
    counters = {}
    while True:
        data, ancillary, _flags, sender = s.recvmsg(65535, 256)
        if len(data) < 14:
            continue
        t2 = None
        ttl = 0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                t2 = ntp(sec, nsec)
            elif level == socket.IPPROTO_IP and kind == IP_TTL:
                ttl = struct.unpack("i", value[:4])[0] & 0xFF
        if t2 is None:
            now = time.time_ns()
            t2 = ntp(now // 1_000_000_000, now % 1_000_000_000)
        key = sender[:2]
        if mode == "stateful":
            seq = counters.get(key, 0)
            counters[key] = (seq + 1) & 0xFFFFFFFF
        else:
            seq = struct.unpack("!I", data[:4])[0]
        padding = bytes(max(len(data), 41) - 41)
        now = time.time_ns()
        t3 = ntp(now // 1_000_000_000, now % 1_000_000_000)
        packet = struct.pack("!I", seq) + t3 + data[12:14] + b"\0\0" + t2 + data[:14] + b"\0\0" + bytes([ttl]) + padding
        s.sendto(packet, sender)


if __name__ == "__main__":
    main()
