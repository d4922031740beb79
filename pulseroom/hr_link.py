"""The sending end of heart rate: a class link in, readings out over a data channel.

``HeartRateLink`` joins a class the way the browser does (docs/protocol.md), with a
publish connection that carries only the ``telemetry`` data channel, and sends each
reading with its own sequence number and device time. It keeps every reading until
the server acknowledges it (``telemetry_ack``, sent once the reading is durable) and
re-sends what is unacknowledged after a reconnect, so a dropped network loses nothing
and the server stores each reading once.

Given a participant's device link it acts for that participant (their tile shows the
readings); given the class link it joins as a participant of its own, and keeps that
identity across reconnects with the token the server hands back on join.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import socketio
from aiortc import RTCDataChannel, RTCPeerConnection

from client.connections import publish, rtc_configuration
from client.joining import Membership
from client.protocol import ClientError, call, parse_link
from telemetry.hrm import HeartRateMeasurement
from telemetry.messages import CHANNEL_LABEL

# Refusals that retrying cannot fix: the bridge stops and says why.
FATAL_CODES = frozenset({"invalid_token", "token_expired", "wrong_room", "room_ended", "not_found"})

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PENDING = 100_000  # readings kept for re-sending: > 24 h at 1 Hz
RESEND_RATE = 15.0  # per second, under the server's data-channel rate limit
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)
# With several nodes: how long to keep sweeping them (every 0.5 s) before backing off;
# a dead holder's heartbeat lapses within 3 s, then any live node takes the class.
FAILOVER_S = 6.0


class HeartRateLink:
    """Joins a class by link and delivers readings at least once (stored exactly once)."""

    def __init__(
        self,
        link: str,
        name: str = "Heart-rate bridge",
        on_status: Callable[[str], None] | None = None,
        backoff: tuple[float, ...] = BACKOFF_S,
    ) -> None:
        base_url, self.room_id, token = parse_link(link)
        # Where the class is and the token to rejoin with (bound after the first join).
        self.membership = Membership(base_url=base_url, token=token, name=name, room=self.room_id)
        self._on_status = on_status or (lambda _text: None)
        self._backoff = backoff
        self._seq = 0
        self._pending: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._channel: RTCDataChannel | None = None
        self._session_ended = asyncio.Event()
        self._open = asyncio.Event()
        self._ready = asyncio.Event()  # open, and readings go straight out
        self._started = asyncio.Event()  # the class is under way (not in its lobby)
        self.participant_id: str | None = None  # whose tile the readings show on
        self._sio: socketio.AsyncClient | None = None
        self.fatal: str | None = None  # a refusal that retrying cannot fix
        self.counts = {"queued": 0, "sent": 0, "resent": 0, "acked": 0, "dropped": 0, "joins": 0}

    # -- readings -----------------------------------------------------------------------

    def send(self, measurement: HeartRateMeasurement, t_ms: int | None = None) -> int:
        """Queue one reading (sent now if connected); returns its sequence number."""
        seq = self._seq
        self._seq += 1
        self.counts["queued"] += 1
        t = t_ms if t_ms is not None else int(time.time() * 1000)
        message: dict[str, Any] = {"v": 1, "type": "hr", "seq": seq, "t": t, "bpm": measurement.bpm}
        if measurement.rr:
            message["rr"] = [round(v, 1) for v in measurement.rr_ms]
        if measurement.energy_kj is not None:
            message["energy_kj"] = measurement.energy_kj
        if measurement.contact is not None:
            message["contact"] = measurement.contact
        text = json.dumps(message, separators=(",", ":"))
        if len(self._pending) >= MAX_PENDING:
            self._pending.popitem(last=False)  # the oldest is the least useful
            self.counts["dropped"] += 1
        self._pending[(seq, t)] = text
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)
            self.counts["sent"] += 1
        return seq

    @property
    def pending(self) -> int:
        """Readings not yet acknowledged by the server."""
        return len(self._pending)

    async def wait_acked(self, timeout: float = 10.0) -> None:
        """Wait until the server acknowledged everything sent so far."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._pending)} readings unacknowledged")
            await asyncio.sleep(0.05)

    async def wait_open(self, timeout: float = 20.0) -> None:
        """Wait until the data channel is open and readings go straight out."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    def _on_ack(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        for pair in [*data.get("acks", []), *data.get("refused", [])]:
            if (
                isinstance(pair, list)
                and len(pair) == 2
                and self._pending.pop((int(pair[0]), int(pair[1])), None) is not None
            ):
                self.counts["acked"] += 1

    # -- session ------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay joined until cancelled: reconnect with backoff whenever the session drops."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except ClientError as exc:
                if self.fatal is not None:
                    raise
                self._on_status(f"not connected: {exc}")
            except Exception as exc:  # network trouble of any kind: retry
                self._on_status(f"not connected: {exc.__class__.__name__}: {exc}")
            if time.monotonic() - started > 30:
                attempt = 0  # it worked for a while: start the backoff over
            delay = self._backoff[min(attempt, len(self._backoff) - 1)]
            attempt += 1
            self._on_status(f"connection lost, retrying in {delay:g} s")
            await asyncio.sleep(delay)

    def _setup(self, sio: socketio.AsyncClient) -> None:
        def ended(*_args: Any) -> None:
            if sio is self._sio:  # not a client left behind by a `moved` answer
                self._session_ended.set()

        sio.on("telemetry_ack", self._on_ack)
        sio.on("disconnect", ended)
        sio.on("class_ended", self._class_ended)
        sio.on("media_failed", ended)
        sio.on("class_state", self._on_class_state)

    def _on_class_state(self, data: Any) -> None:
        """``class_state`` (and the join ack's controls): whether the class has started."""
        state = data.get("state") if isinstance(data, dict) else None
        if not isinstance(state, dict) or state.get("started", True):
            self._started.set()
        else:
            self._started.clear()

    async def _connect(self) -> tuple[socketio.AsyncClient, dict[str, Any]]:
        """Join on the node that holds the class: this one, else the others it named."""
        deadline = time.monotonic() + FAILOVER_S
        while True:
            failure: ClientError | None = None
            for url in self.membership.candidates():
                try:
                    return await self._checked(self.membership.join(self._setup, url=url))
                except ClientError as exc:
                    if exc.code is not None and exc.code != "unavailable":
                        raise  # the server answered: another node would say the same
                    failure = exc
            assert failure is not None
            if len(self.membership.nodes) < 2 or time.monotonic() > deadline:
                raise failure
            await asyncio.sleep(0.5)

    async def _session(self) -> None:
        pc: RTCPeerConnection | None = None
        self._session_ended.clear()
        self._open.clear()
        resend: asyncio.Task[None] | None = None
        sio: socketio.AsyncClient | None = None
        try:
            sio, joined = await self._connect()
            self._sio = sio
            if not sio.connected:
                raise ClientError("the connection closed while joining")
            self.counts["joins"] += 1
            you = joined["you"]
            self.participant_id = you.get("acts_for") or you["id"]
            pc = RTCPeerConnection(rtc_configuration(joined))
            channel = pc.createDataChannel(CHANNEL_LABEL)
            channel.on("open", self._open.set)
            channel.on("close", self._session_ended.set)

            @pc.on("connectionstatechange")
            def _state() -> None:
                if pc is not None and pc.connectionState in ("failed", "closed"):
                    self._session_ended.set()

            # Joined by a class link into a scheduled class's lobby: nothing may be sent
            # until the instructor starts it (a device link's bridge sends from the lobby).
            self._on_class_state({"state": joined.get("controls")})
            if you.get("role") != "device" and not self._started.is_set():
                self._on_status("waiting in the lobby for the instructor to start the class")
                await _first(self._started, self._session_ended)
                if not self._started.is_set():
                    raise ClientError(self.fatal or "the connection closed in the lobby")
            await self._checked(publish(pc, lambda event, data: call(sio, event, data)))
            await asyncio.wait_for(self._open.wait(), 20)
            self._channel = channel
            self._on_status(f"sending heart rate for {self.participant_id} in {self.room_id}")
            resend = asyncio.create_task(self._resend(channel))
            self._ready.set()
            await self._session_ended.wait()
            if self.fatal is not None:
                raise ClientError(self.fatal)
        finally:
            self._channel = None
            self._open.clear()
            self._ready.clear()
            if resend is not None:
                resend.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resend
            if pc is not None:
                await pc.close()
            self._sio = None
            if sio is not None:
                with contextlib.suppress(Exception):
                    await sio.disconnect()

    async def _resend(self, channel: RTCDataChannel) -> None:
        """Re-send what the server has not acknowledged, paced under its rate limit."""
        # Anything sent before this session's channel opened may not have arrived.
        for key, text in list(self._pending.items()):
            if channel.readyState != "open":
                return
            if key in self._pending:
                channel.send(text)
                self.counts["resent"] += 1
                await asyncio.sleep(1 / RESEND_RATE)

    def _class_ended(self, _data: Any = None) -> None:
        self.fatal = "the class has ended"
        self._session_ended.set()

    async def _checked(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except ClientError as exc:
            if exc.code in FATAL_CODES:
                self.fatal = str(exc)
            raise


async def _first(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
