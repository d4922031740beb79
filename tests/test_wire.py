"""The userspace netem (tests/wire.py): delay, loss, order and throughput, measured."""

from __future__ import annotations

import json
import math
import os
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from tests.netns import Host, netns_host, require_netns
from tests.wire import Impairment, WireError

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


@dataclass
class PingResult:
    """Round trips by sequence number, and the order the replies came in."""

    sent: int
    rtt_ms: dict[int, float] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)

    def median(self) -> float:
        """The median round trip, ms."""
        values = sorted(self.rtt_ms.values())
        return values[len(values) // 2]


def ping(address: str, count: int, interval: float, wait: float = 1.5) -> PingResult:
    """ICMP echo ``count`` times, every ``interval`` seconds, from the root namespace."""
    ident = (os.getpid() ^ int(time.monotonic() * 1000)) & 0xFFFF
    sent_at: dict[int, float] = {}
    result = PingResult(sent=count)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setblocking(False)
        start = time.monotonic()
        deadline = start + count * interval + wait
        seq = 0
        while time.monotonic() < deadline and len(result.rtt_ms) < count:
            now = time.monotonic()
            if seq < count and now >= start + seq * interval:
                body = struct.pack("!d", now) + b"pulseroom-wire" * 2
                header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
                header = struct.pack(
                    "!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + body), ident, seq
                )
                sock.sendto(header + body, (address, 0))
                sent_at[seq] = now
                seq += 1
                continue
            next_send = start + seq * interval if seq < count else deadline
            ready, _, _ = select.select([sock], [], [], max(0.0, next_send - now))
            if not ready:
                continue
            data = sock.recv(4096)
            offset = (data[0] & 0x0F) * 4  # past the IP header
            kind, _, _, their_ident, their_seq = struct.unpack_from("!BBHHH", data, offset)
            if kind != ICMP_ECHO_REPLY or their_ident != ident or their_seq not in sent_at:
                continue  # someone else's ICMP
            if their_seq not in result.rtt_ms:
                result.rtt_ms[their_seq] = (time.monotonic() - sent_at[their_seq]) * 1000
                result.order.append(their_seq)
    return result


def binomial_bound(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    """Where a Binomial(n, p) count lands but once in ~150,000 runs (normal approximation)."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


@pytest.mark.alone  # a deadline measured in wall time: the cores to itself
def test_ping_through_the_wire_shows_the_configured_round_trip() -> None:
    with netns_host(link="wire", delay_ms=100) as host:
        symmetric = ping(host.address, count=40, interval=0.025)
        assert host.wire is not None
        # Changed while running, per direction: 150 ms towards the host, 0 back.
        host.wire.set(down=Impairment(delay_ms=150), up=Impairment())
        asymmetric = ping(host.address, count=40, interval=0.025)
        stats = host.wire.stats()
    print(
        f"wire RTT, 100 ms each way: median {symmetric.median():.1f} ms, "
        f"min {min(symmetric.rtt_ms.values()):.1f}, max {max(symmetric.rtt_ms.values()):.1f}; "
        f"150 ms + 0: median {asymmetric.median():.1f} ms; lateness {stats}"
    )
    for result, configured in ((symmetric, 200.0), (asymmetric, 150.0)):
        assert len(result.rtt_ms) == result.sent, "no loss was configured"
        rtts = sorted(result.rtt_ms.values())
        assert rtts[0] >= configured, rtts  # never early
        assert abs(result.median() - configured) <= 20, rtts
        assert rtts[int(0.9 * len(rtts))] <= configured + 20, rtts
    assert stats.down.impairment.delay_ms == 150 and stats.up.impairment.delay_ms == 0
    assert stats.down.late_ms_p50 is not None and stats.down.late_ms_p50 < 5, stats


def test_loss_rate_is_within_a_binomial_bound() -> None:
    count, loss = 600, 0.2
    with netns_host(link="wire", loss=loss) as host:
        result = ping(host.address, count=count, interval=0.003)
        assert host.wire is not None
        stats = host.wire.stats()
    print(f"wire loss 20 % each way: {len(result.rtt_ms)}/{count} replies; {stats}")
    # A reply needs its request and itself through: each survives with 1 - loss.
    low, high = binomial_bound(count, (1 - loss) ** 2)
    assert low <= len(result.rtt_ms) <= high, (len(result.rtt_ms), low, high)
    for direction in (stats.down, stats.up):
        low, high = binomial_bound(direction.received, loss)
        assert low <= direction.lost <= high, direction
        assert direction.sent == direction.received - direction.lost, direction


def test_jitter_delays_but_never_reorders() -> None:
    with netns_host(link="wire", delay_ms=50, jitter_ms=20) as host:
        result = ping(host.address, count=200, interval=0.002)
    rtts = sorted(result.rtt_ms.values())
    print(f"wire 50 ± 20 ms each way: RTT {rtts[0]:.1f} .. {rtts[-1]:.1f} ms")
    assert len(rtts) == 200
    assert result.order == sorted(result.order), "a reply overtook an earlier one"
    assert rtts[-1] - rtts[0] > 15, rtts  # the jitter is there
    assert rtts[0] >= 2 * (50 - 20), rtts


# Real-time priority (below the wire's) so that the machine's load shows up in neither
# figure: this measures the wire.
RECEIVER = """
import contextlib, json, os, socket, struct, sys, time
with contextlib.suppress(OSError):
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sock.bind(("0.0.0.0", 0))
print(sock.getsockname()[1], flush=True)
sock.settimeout(5)
delays, seqs = [], []
try:
    while True:
        data = sock.recv(2048)
        seq, sent = struct.unpack_from("!Id", data)
        if seq == 0xFFFFFFFF:
            break
        delays.append((time.monotonic() - sent) * 1000)
        seqs.append(seq)
except socket.timeout:
    pass
delays.sort()
print(json.dumps({
    "received": len(seqs),
    "in_order": seqs == sorted(seqs),
    "p50": delays[len(delays) // 2] if delays else None,
    "p99": delays[int(0.99 * len(delays))] if delays else None,
    "max": delays[-1] if delays else None,
}), flush=True)
"""


def blast(host: Host, megabits: float, seconds: float, size: int = 1200) -> dict[str, object]:
    """UDP from the root namespace to ``host`` at ``megabits``/s; the host's receipt report."""
    receiver = subprocess.Popen(
        host.command(sys.executable, "-c", RECEIVER),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        interval = size * 8 / (megabits * 1e6)
        count = int(seconds / interval)
        padding = b"\0" * (size - 12)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            start = time.monotonic()
            for seq in range(count):
                delay = start + seq * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sock.sendto(struct.pack("!Id", seq, time.monotonic()) + padding,
                            (host.address, port))  # fmt: skip
            time.sleep(1.0)  # the last packets are still on the wire
            sock.sendto(struct.pack("!Id", 0xFFFFFFFF, 0.0), (host.address, port))
        out, err = receiver.communicate(timeout=15)
        assert receiver.returncode == 0, err
        report: dict[str, object] = json.loads(out.strip().splitlines()[-1])
        report["sent"] = count
        return report
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


def test_the_wire_keeps_up_with_video_rates() -> None:
    with netns_host(link="wire", delay_ms=100) as host:
        report = blast(host, megabits=8, seconds=3)
        assert host.wire is not None
        stats = host.wire.stats()
    print(f"wire at 8 Mbit/s, 100 ms: {report}; down {stats.down}")
    assert report["received"] == report["sent"], report
    assert report["in_order"], report
    p50, p99 = float(report["p50"]), float(report["p99"])  # type: ignore[arg-type]
    assert 100 <= p50 <= 110 and p99 <= 130, report
    assert stats.down.overflowed == 0 and stats.down.write_errors == 0, stats


def test_bad_settings_get_a_clear_error_and_change_nothing() -> None:
    require_netns()
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    with pytest.raises(ValidationError), netns_host(link="wire", loss=1.5):
        pass
    with pytest.raises(ValueError, match="need link='wire'"), netns_host(delay_ms=100):
        pass
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert after == before
    with netns_host(link="wire", delay_ms=30, loss=0.05) as host:
        assert host.wire is not None
        with pytest.raises(WireError, match="bad command"):
            host.wire.command({"op": "set", "down": {"delay_ms": -1}})
        with pytest.raises(WireError, match="bad command"):
            host.wire.command({"op": "reboot"})
        stats = host.wire.stats()
        assert stats.down.impairment == Impairment(delay_ms=30, loss=0.05)
        assert len(ping(host.address, count=5, interval=0.01).rtt_ms) >= 1
