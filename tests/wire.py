"""A userspace netem: IP packets carried between two TUN devices, late and lossy.

This kernel has no sch_netem, so ``tc qdisc add dev X root netem delay 200ms loss 10%``
cannot be had. ``python -m tests.wire`` does that job in a process of its own: it opens
two TUN devices in the root namespace (``--outside`` and ``--inside``; tests/netns.py
moves the inside one into a host's namespace, and this process's descriptor still
reaches it there) and writes every IP packet that the kernel routes out of one device
into the other, after a delay and with random loss.

Each direction has its own ``Impairment``, which is netem's ``delay``/``loss`` on that
direction's egress qdisc: ``down`` is the root namespace → the host (``outside`` →
``inside``), ``up`` the host → the root namespace. A link with ``delay_ms=200`` both ways
is what ``netem delay 200ms`` on both ends of a veth pair gives: 200 ms each way, a
400 ms round trip (netem on one end alone delays one direction only). Where netem's
jitter lets packets overtake each other, here a packet is never sent before the one
queued ahead of it (its due time is at least that one's), so jitter delays but never
reorders: what a real access link does. ``limit`` bounds each direction's queue, tail
drop past it (netem's default is 1000 packets).

One thread, one ``poll`` loop over both devices and stdin, and a FIFO per direction
(due times never decrease, so no heap is needed), at a real-time priority where that
is allowed, so that the machine's load does not slow the link. Each packet's lateness
(written at minus due at) is kept, so the wire measures its own error. Control is JSON lines on
stdin, one answer line each on stdout: ``{"op": "set", "down": {...}, "up": {...}}``
and ``{"op": "stats"}``. End of stdin ends the process, and the devices vanish with
their descriptors.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int), linux/if_tun.h
IFF_TUN = 0x0001  # IP packets, no Ethernet header
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix
MAX_PACKET = 65535
IPPROTO_UDP = 17
LATENESS_SAMPLES = 20000  # the newest per direction, for percentiles
REALTIME_PRIORITY = 10  # SCHED_FIFO, low among real-time tasks
ROOT = Path(__file__).resolve().parent.parent


class WireError(Exception):
    """The wire could not start, or answered a command with an error."""


class Impairment(BaseModel):
    """What one direction does to a packet, like netem's ``delay D J loss L``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay_ms: float = Field(0.0, ge=0, le=10_000)
    jitter_ms: float = Field(0.0, ge=0, le=10_000)  # uniform in ±jitter, never reordering
    loss: float = Field(0.0, ge=0, le=1)  # share of packets dropped, 0.1 = 10 %


class SetCommand(BaseModel):
    """Change one or both directions; an absent one stays as it is."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["set"]
    down: Impairment | None = None
    up: Impairment | None = None


class StatsCommand(BaseModel):
    """Ask for ``WireStats``."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["stats"]


Command = Annotated[SetCommand | StatsCommand, Field(discriminator="op")]
COMMAND = TypeAdapter(Command)


class DirectionStats(BaseModel):
    """Counters of one direction, and how late the wire wrote packets (ms past due)."""

    impairment: Impairment
    received: int
    udp_received: int  # of ``received``: IPv4 UDP (media, STUN, DTLS)
    lost: int  # dropped at random, by ``loss``
    overflowed: int  # dropped because the queue held ``limit`` packets
    sent: int
    write_errors: int
    last_write_error: str | None
    queued: int
    late_ms_p50: float | None
    late_ms_p99: float | None
    late_ms_max: float | None


class WireStats(BaseModel):
    """Both directions' ``DirectionStats``, and the CPU time the wire process used."""

    down: DirectionStats
    up: DirectionStats
    cpu_s: float


def open_tun(name: str) -> int:
    """A non-blocking descriptor of a new TUN device ``name`` (gone when it is closed)."""
    encoded = name.encode()
    if not 0 < len(encoded) < 16:
        raise WireError(f"a device name has 1 to 15 bytes, not {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", encoded, IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise WireError(f"cannot create TUN device {name}: {exc}") from None
    return fd


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Direction:
    """Packets read from ``source`` wait in a FIFO until due, then go to ``sink``."""

    def __init__(
        self, source: int, sink: int, impairment: Impairment, rng: random.Random, limit: int
    ) -> None:
        self.source, self.sink = source, sink
        self.impairment = impairment
        self._rng = rng
        self._limit = limit
        self._queue: deque[tuple[float, bytes]] = deque()
        self._last_due = 0.0
        self._lateness: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        self.received = self.lost = self.overflowed = self.sent = self.write_errors = 0
        self.udp_received = 0
        self.last_write_error: str | None = None

    def take(self) -> None:
        """Queue (or drop) every packet waiting on the source device."""
        queue, rng = self._queue, self._rng
        while True:
            try:
                packet = os.read(self.source, MAX_PACKET)
            except BlockingIOError:
                return
            now = time.monotonic()
            self.received += 1
            if len(packet) > 9 and packet[9] == IPPROTO_UDP and packet[0] >> 4 == 4:
                self.udp_received += 1
            impairment = self.impairment
            if impairment.loss and rng.random() < impairment.loss:
                self.lost += 1
                continue
            if len(queue) >= self._limit:
                self.overflowed += 1
                continue
            due = now + impairment.delay_ms / 1000
            if impairment.jitter_ms:
                due += rng.uniform(-impairment.jitter_ms, impairment.jitter_ms) / 1000
            # FIFO: never before the packet ahead, so jitter cannot reorder.
            due = max(due, self._last_due)
            self._last_due = due
            queue.append((due, packet))

    def release(self) -> None:
        """Write every packet that is due."""
        queue = self._queue
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            due, packet = queue.popleft()
            try:
                os.write(self.sink, packet)
            except OSError as exc:
                # The device is down, or the kernel refused the packet: a lost packet.
                self.write_errors += 1
                self.last_write_error = f"{exc} (a {len(packet)}-byte IPv{packet[0] >> 4} packet)"
                continue
            now = time.monotonic()
            self.sent += 1
            self._lateness.append(now - due)

    def next_due(self) -> float | None:
        """When the head of the queue is due (monotonic seconds), None when empty."""
        return self._queue[0][0] if self._queue else None

    def stats(self) -> DirectionStats:
        """The counters and lateness percentiles so far."""
        late = sorted(self._lateness)
        return DirectionStats(
            impairment=self.impairment,
            received=self.received,
            udp_received=self.udp_received,
            lost=self.lost,
            overflowed=self.overflowed,
            sent=self.sent,
            write_errors=self.write_errors,
            last_write_error=self.last_write_error,
            queued=len(self._queue),
            late_ms_p50=round(_percentile(late, 0.5) * 1000, 3) if late else None,
            late_ms_p99=round(_percentile(late, 0.99) * 1000, 3) if late else None,
            late_ms_max=round(late[-1] * 1000, 3) if late else None,
        )


def answer(line: bytes, down: Direction, up: Direction) -> dict[str, object]:
    """Carry out one control line; a bad one gets an error and changes nothing."""
    try:
        command = COMMAND.validate_json(line)
    except ValidationError as exc:
        return {"ok": False, "error": f"bad command: {exc.errors(include_url=False)}"}
    if isinstance(command, SetCommand):
        if command.down is not None:
            down.impairment = command.down
        if command.up is not None:
            up.impairment = command.up
        return {"ok": True}
    stats = WireStats(down=down.stats(), up=up.stats(), cpu_s=round(time.process_time(), 3))
    return {"ok": True, "stats": stats.model_dump(mode="json")}


def serve(outside: int, inside: int, down: Direction, up: Direction) -> None:
    """The loop: shuttle packets and answer stdin until it ends."""
    control = sys.stdin.fileno()
    os.set_blocking(control, False)
    poller = select.poll()
    for fd in (outside, inside, control):
        poller.register(fd, select.POLLIN)
    pending = b""
    while True:
        dues = [d for d in (down.next_due(), up.next_due()) if d is not None]
        # poll's timeout is whole milliseconds, rounded up: a packet is up to ~1 ms late.
        timeout = max(0.0, (min(dues) - time.monotonic()) * 1000) if dues else None
        for fd, _event in poller.poll(timeout):
            if fd == outside:
                down.take()
            elif fd == inside:
                up.take()
            else:
                chunk = os.read(control, 65536)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        reply = answer(line, down, up)
                        sys.stdout.write(json.dumps(reply) + "\n")
                        sys.stdout.flush()
        down.release()
        up.release()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.wire --outside A --inside B [--delay-ms D --loss L ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--outside", required=True, help="TUN device left in this namespace")
    parser.add_argument("--inside", required=True, help="TUN device for the host's namespace")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="each direction")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="each direction")
    parser.add_argument("--loss", type=float, default=0.0, help="share, each direction")
    parser.add_argument("--limit", type=int, default=10_000, help="packets queued per direction")
    parser.add_argument("--seed", type=int, default=None, help="for reproducible loss")
    args = parser.parse_args(argv)
    try:
        impairment = Impairment(delay_ms=args.delay_ms, jitter_ms=args.jitter_ms, loss=args.loss)
    except ValidationError as exc:
        parser.error(str(exc))
    if args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        outside = open_tun(args.outside)
        inside = open_tun(args.inside)
    except WireError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}), flush=True)
        return 1
    # A link is not slowed by the machine's load: run ahead of the server and bots that
    # share these 2 cores. Where that is not allowed, the lateness figures show the cost.
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    rng = random.Random(args.seed)
    down = Direction(outside, inside, impairment, rng, args.limit)
    up = Direction(inside, outside, impairment, rng, args.limit)
    print(json.dumps({"ok": True, "ready": [args.outside, args.inside]}), flush=True)
    serve(outside, inside, down, up)
    return 0


class WireLink:
    """The test's handle on a ``python -m tests.wire`` process (``close()`` it)."""

    def __init__(
        self, outside: str, inside: str, impairment: Impairment, seed: int | None = None
    ) -> None:
        command = [
            sys.executable, "-m", "tests.wire", "--outside", outside, "--inside", inside,
            "--delay-ms", str(impairment.delay_ms), "--jitter-ms", str(impairment.jitter_ms),
            "--loss", str(impairment.loss),
        ]  # fmt: skip
        if seed is not None:
            command += ["--seed", str(seed)]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self._buffer = b""
        try:
            ready = self._reply()
        except WireError:
            self.close()
            raise
        if not ready.get("ok"):
            self.close()
            raise WireError(f"wire did not start: {ready.get('error')}")

    def _reply(self, timeout: float = 10.0) -> dict[str, object]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise WireError("the wire did not answer in time")
            chunk = os.read(fd, 65536)
            if not chunk:
                stderr = self.process.stderr.read() if self.process.stderr else b""
                raise WireError(f"the wire exited: {stderr.decode(errors='replace')[-2000:]}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, object] = json.loads(line)
        return reply

    def command(self, command: dict[str, object]) -> dict[str, object]:
        """Send one control command as it is; its answer, or WireError if refused."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        reply = self._reply()
        if not reply.get("ok"):
            raise WireError(str(reply.get("error")))
        return reply

    def set(self, down: Impairment | None = None, up: Impairment | None = None) -> None:
        """Change a direction's (or both directions') impairment from now on."""
        command: dict[str, object] = {"op": "set"}
        if down is not None:
            command["down"] = down.model_dump()
        if up is not None:
            command["up"] = up.model_dump()
        self.command(command)

    def stats(self) -> WireStats:
        """Both directions' counters and lateness so far."""
        return WireStats.model_validate(self.command({"op": "stats"})["stats"])

    def close(self) -> None:
        """End the process (its devices go with it); idempotent."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    sys.exit(main())
