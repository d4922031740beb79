"""Summarize a py-spy "raw" (collapsed stacks) profile of the server.

``python -m bench.sfu --py-spy FILE`` records one during the measuring window; then
``python -m bench.profile FILE`` prints where the server's CPU went: the share of
samples under each stage of the packet path (inclusive) and the hottest functions
(self time).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

WAITING = "EpollSelector.select (selectors"
# Thread-pool workers blocked on their queue (asyncio.to_thread, getaddrinfo): py-spy
# cannot tell that they are idle, /proc shows they use no CPU.
IDLE_THREAD = "_worker (concurrent/futures/thread"

# Each sample is charged to the deepest frame that matches one of these markers
# (substrings of "function (file"), so the shares add up to 100%.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("egress: socket sendto", ("_SelectorDatagramTransport.sendto (asyncio",)),
    ("egress: SRTP protect", ("Session.protect (pylibsrtp",)),
    ("egress: SRTP protect + ICE send", ("RTCDtlsTransport._send_rtp (aiortc",)),
    ("egress: RtpPacket.serialize", ("RtpPacket.serialize (aiortc",)),
    ("simulcast: VP8 picture-id renumbering (vp8.rewrite)", ("rewrite (sfu/vp8",)),
    (
        "simulcast: probes and retransmissions (Consumer.pad / _retransmit)",
        ("Consumer.pad (sfu", "Consumer._retransmit (sfu"),
    ),
    (
        "simulcast: layer allocation and measuring (LayerControl, Source._measure_layers)",
        ("LayerControl.", "Source._measure_layers (sfu", "Source.update_layers (sfu"),
    ),
    (
        "forwarding: Consumer.send / forward (header write, counters)",
        ("Consumer.send (sfu", "Consumer.forward (sfu"),
    ),
    (
        "forwarding: Stream fan-out (NACK cache, VP8 descriptor read, layer joins)",
        ("Stream._fan_out (sfu", "Stream._fan_out_layered (sfu", "read (sfu/vp8"),
    ),
    (
        "forwarding: Producer.on_rtp (header read, stats, NACK, extensions)",
        ("Producer.on_rtp (sfu", "Producer._on_rtp (sfu", "Source._fan_out (sfu"),
    ),
    (
        "ingress: socket callback + Ingress.on_rtp (route by SSRC, learn by rid)",
        ("Ingress.on_rtp (sfu", "Ingress._learn (sfu", "_fast (sfu/aiortc_adapter"),
    ),
    ("pipe out: PipeSink.send (join + send on the link)", ("PipeSink.send (sfu",)),
    (
        "pipe in: Link._readable + PipeProducer.on_piped (recv, header read)",
        ("PipeProducer.on_piped (sfu", "Link._readable (sfu"),
    ),
    ("ingress: RtpPacket.parse", ("RtpPacket.parse (aiortc",)),
    ("RTCP", ("_handle_rtcp_data (aiortc", "_run_rtcp (aiortc", "_send_rtcp (aiortc")),
    ("ingress: SRTP unprotect", ("Session.unprotect (pylibsrtp",)),
    ("ingress: SRTP unprotect, DTLS demux, queue", ("RTCDtlsTransport._recv_next (aiortc",)),
    (
        "ingress: UDP read + STUN/ICE (aioice)",
        ("datagram_received (aioice", "_read_ready (asyncio"),
    ),
    # Not plain "(aiohttp/": every stack starts in aiohttp's run_app.
    ("signaling (socket.io, HTTP)", ("(socketio/", "(engineio/", "(aiohttp/web_protocol")),
)
OTHER = "event loop and everything else"
# pylibsrtp's protect and unprotect both run Session.__process; py-spy's non-blocking
# sampling sometimes loses the frames between it and the event loop: when its parent is
# no known stage, the sample cannot be placed.
SRTP_CORE = "Session.__process (pylibsrtp"
SRTP_CALLERS = ("Session.protect (pylibsrtp", "Session.unprotect (pylibsrtp")
SRTP_LOST = "SRTP protect or unprotect (py-spy lost the caller)"
# sfu.aiortc_adapter's direct SRTP: one function for both; unprotect is called only from
# the socket callback.
DIRECT_SRTP = "_direct_srtp.<locals>.process (sfu/aiortc_adapter"
SOCKET_CALLBACK = "_fast (sfu/aiortc_adapter"


def stage_of(frames: list[str]) -> str:
    """The stage a sample (frames root-first) is charged to."""
    if frames and DIRECT_SRTP in frames[-1]:
        parent = frames[-2] if len(frames) > 1 else ""
        return "ingress: SRTP unprotect" if SOCKET_CALLBACK in parent else "egress: SRTP protect"
    if frames and SRTP_CORE in frames[-1]:
        parent = frames[-2] if len(frames) > 1 else ""
        known = [*SRTP_CALLERS, *(m for _, markers in STAGES for m in markers)]
        if not any(caller in parent for caller in known):
            return SRTP_LOST
    for frame in reversed(frames):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    return OTHER


def parse(path: Path) -> list[tuple[list[str], int]]:
    """``(frames root-first, samples)`` for each line of a collapsed-stack file."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]], top: int = 15) -> str:
    """A plain-text table: share of busy samples per stage, and the hottest functions."""
    busy = [
        (frames, count)
        for frames, count in stacks
        if WAITING not in frames[-1] and IDLE_THREAD not in frames[-1]
    ]
    waiting = sum(count for _, count in stacks) - sum(count for _, count in busy)
    total = sum(count for _, count in busy) or 1
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in busy:
        stages[stage_of(frames)] += count
        function, _, where = frames[-1].partition(" (")
        leaves[f"{function} ({where.split(':')[0]})"] += count
    lines = [
        f"{total} busy samples ({waiting} more were waiting in epoll or idle and are left out)",
        "",
        "stage (self time, deepest match)                             share",
    ]
    for stage in [*(name for name, _ in STAGES), SRTP_LOST, OTHER]:
        lines.append(f"  {stage:<60} {100 * stages[stage] / total:5.1f}%")
    lines += ["", "hottest functions (self time)"]
    for name, count in leaves.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.profile``."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("profile", type=Path, help="a py-spy --format raw output file")
    parser.add_argument("--top", type=int, default=15, help="how many functions to list")
    args = parser.parse_args(argv)
    if not args.profile.exists():
        print(f"bench.profile: no such file: {args.profile}", file=sys.stderr)
        return 2
    print(summarize(parse(args.profile), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
