"""A user-space packet delayer (``tc netem`` is not in this kernel): NFQUEUE over raw netlink.

Run inside a node's namespace: ``python -m raftq_jepsen.delayer --queue N --delay-ms D
[--jitter-ms J]``. An iptables rule there sends packets to queue N (``-j NFQUEUE --queue-num N
--queue-bypass``: with no delayer bound, packets pass); each packet is held D ms (+ up to J)
and then accepted. SIGTERM accepts everything still held and exits.

The netlink messages (linux/netfilter/nfnetlink_queue.h) are packed by hand: no C extension.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

__all__ = ["main"]

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NLA_F_MASK = 0x3FFF


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _msg(msg: int, queue: int, attrs: bytes, seq: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def _packet_ids(data: bytes) -> list[int]:
    """Packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    ids, off = [], 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20  # nlmsghdr (16) + nfgenmsg (4)
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & NLA_F_MASK == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, a + 4)[0])
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="raftq_jepsen.delayer")
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    args = p.parse_args(argv)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    cmd = _attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))
    sock.send(_msg(NFQNL_MSG_CONFIG, args.queue, cmd, 1))
    params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    sock.send(_msg(NFQNL_MSG_CONFIG, args.queue, params, 2))
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    held: list[tuple[float, int]] = []  # (release time, packet id)
    seq = 3

    def accept(packet_id: int) -> None:
        nonlocal seq
        seq += 1
        verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
        sock.send(_msg(NFQNL_MSG_VERDICT, args.queue, verdict, seq))

    print(f"delayer: queue {args.queue}, {args.delay_ms:g} ms", file=sys.stderr, flush=True)
    while not stop:
        now = time.monotonic()
        timeout = min(0.2, max(0.0, held[0][0] - now)) if held else 0.2
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        if readable:
            try:
                data = sock.recv(1 << 20)
            except OSError:  # ENOBUFS: the kernel dropped messages; go on with what comes
                data = b""
            for pid in _packet_ids(data):
                delay = args.delay_ms + random.uniform(0.0, args.jitter_ms)
                heapq.heappush(held, (now + delay / 1000, pid))
        while held and held[0][0] <= now:
            accept(heapq.heappop(held)[1])
    while held:
        accept(heapq.heappop(held)[1])
    sock.close()
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("raftq_jepsen.delayer: needs root (netlink)")
    sys.exit(main())
