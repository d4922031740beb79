"""Heart rate from data channels to the instructor's screen and the database.

The media side hands over each raw message of a ``telemetry`` data channel with the
participant it came from. Here it is validated (telemetry.messages), attributed to
the participant the session acts for (a strap bridge acts for its participant), put
to the writer, and shown: health data goes only to the class's instructor (their
sessions, and the board their studio screen shows: signaling/board.py) and to the
participant it belongs to, never to the rest of the class.

Fan-out is batched per flush (``FLUSH_INTERVAL_S``): one ``hr`` event per receiving
session carries every reading since the last one, so an instructor of 100 gets ~20
events per second, not 100. Once the writer has a reading durably (database or spool)
the sessions acting for its participant get a ``telemetry_ack``; clients re-send what
was never acknowledged, and the database stores a re-sent reading once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

import socketio

from telemetry.history import HeartRateHistory
from telemetry.messages import Reading, TelemetryError, parse
from telemetry.writer import HeartRateRow, HeartRateWriter
from telemetry.zones import ZONE_NAMES, Profile, percent_of_max, zone

from .effort import EffortBoard
from .heart_signals import HeartSignals
from .messages import PROTOCOL_VERSION, error_payload
from .presence import Presence

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.05
# A reading is shown live only while it is fresh; older ones (re-sent after a network
# drop) are stored but would only make the tile jump back in time.
LIVE_WINDOW_S = 15.0
# Device clocks drift and readings are re-sent after drops, but a time far off is a bug
# or an attack on the time-partitioned table.
MAX_PAST_S = 12 * 3600.0
MAX_FUTURE_S = 300.0
# Acknowledgements are gathered this long: at 1 Hz a participant's readings then cost
# half an ack event each instead of one, and the sender only keeps them a little longer.
ACK_INTERVAL_S = 2.0
RECENT_SEQS = 256  # per participant, to show a re-sent reading once
ERROR_INTERVAL_S = 1.0  # at most one refusal notice per session per second
Ident = tuple[int, int]  # (seq, t): what makes a reading the same reading
# PULSEROOM_MAX_READINGS_PER_PARTICIPANT: readings stored per participant and class. A
# client that sends without end fills its quota, not the disk; 100,000 is a day at 1 Hz.
MAX_READINGS = 100_000


class HeartRateRelay:
    """Validates readings, fans them out to who may see them, stores and acknowledges."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        presence: Presence,
        writer: HeartRateWriter,
        effort: EffortBoard,
        signals: HeartSignals,
        max_readings: int = MAX_READINGS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sio = sio
        self._presence = presence
        self._writer = writer
        self._effort = effort  # live effort points ride along with each shown reading
        self._signals = signals  # and signal quality, RMSSD, the learning maximum
        self._clock = clock
        self._max_readings = max_readings
        self._history = HeartRateHistory(writer.engine)
        # Per participant: readings stored (from the database at their join, then counted).
        self._stored: dict[tuple[str, str], int] = {}
        self._profiles: dict[tuple[str, str], Profile] = {}
        self._latest: dict[tuple[str, str], dict[str, Any]] = {}
        # Per participant: the last RECENT_SEQS (seq, t), as a set for the lookup and a
        # deque for the order they leave in.
        self._recent: dict[tuple[str, str], tuple[set[Ident], deque[Ident]]] = {}
        self._outbox: dict[str, list[dict[str, Any]]] = defaultdict(list)  # room → readings
        self._acks: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
        self._refused: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
        self._acked_at = 0.0
        self._last_error: dict[str, float] = {}
        self._pending_errors: list[tuple[str, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counts: Counter[str] = Counter()
        self.fanout_lag: deque[float] = deque(maxlen=4096)  # receive → emit, seconds

    def start(self) -> None:
        """Start the owned fan-out task, the effort leaderboard's and the raises'."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heart-rate-fanout")
        self._effort.start()
        self._signals.start()

    async def close(self) -> None:
        """Stop the fan-out task (idempotent); the writer is closed by its owner."""
        await self._effort.close()
        await self._signals.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- state --------------------------------------------------------------------------

    async def joined(self, room_id: str, participant_id: str, profile: Profile) -> None:
        """A participant (or their strap bridge) joined: their zones from ``profile``, and
        their quota counted on from what the database holds of them in this class."""
        self.set_profile(room_id, participant_id, profile)
        stored = await self._history.count(room_id, participant_id)
        self._stored[(room_id, participant_id)] = stored

    def sent_profile(self, room_id: str, participant_id: str, profile: Profile) -> Profile:
        """A profile the participant sent: a maximum learned in class stays learned when
        it comes back unchanged (their page remembers it, and sends it on each join)."""
        current = self._profiles.get((room_id, participant_id))
        if current is not None and current.max_hr_learned and current.max_hr == profile.max_hr:
            return dataclasses.replace(profile, max_hr_learned=True)
        return profile

    def set_profile(self, room_id: str, participant_id: str, profile: Profile) -> None:
        """The profile zones are computed with, from now on."""
        self._profiles[(room_id, participant_id)] = profile

    def latest(self, room_id: str, participant_id: str | None = None) -> list[dict[str, Any]]:
        """The last live reading of everyone in a class (or of one participant)."""
        return [
            reading
            for (room, pid), reading in self._latest.items()
            if room == room_id and (participant_id is None or pid == participant_id)
        ]

    def forget_room(self, room_id: str) -> None:
        """Drop what is kept in memory for a class that ended."""
        self._effort.forget_room(room_id)
        self._signals.forget_room(room_id)
        for key in [k for k in self._stored if k[0] == room_id]:
            self._stored.pop(key, None)
        for key in [k for k in self._profiles if k[0] == room_id]:
            self._profiles.pop(key, None)
            self._latest.pop(key, None)
            self._recent.pop(key, None)

    def forget_session(self, sid: str) -> None:
        """A session left: drop its refusal timer."""
        self._last_error.pop(sid, None)

    # -- in -----------------------------------------------------------------------------

    def receive(self, room_id: str, sender_id: str, data: str) -> None:
        """One data-channel message from the session ``sender_id`` of a class."""
        received_at = self._clock()
        self.counts["received"] += 1
        member = self._presence.by_room.get(room_id, {}).get(sender_id)
        if member is None:
            self.counts["rejected_unknown_sender"] += 1
            return
        try:
            reading = parse(data)
        except TelemetryError as exc:
            self.counts["rejected"] += 1
            self._refuse(member.sid, str(exc), received_at)
            return
        subject = member.subject
        key = (room_id, subject)
        try:
            self._check_time(reading, received_at)
        except TelemetryError as exc:
            # Readable but never storable: say so by seq and t, or the sender would keep
            # re-sending it on every reconnect.
            self.counts["rejected"] += 1
            self._refuse(member.sid, str(exc), received_at)
            self._refused[key].append([reading.seq, reading.t])
            self._wake.set()
            return
        stored = self._stored.get(key, 0)
        if stored >= self._max_readings:
            self.counts["rejected_quota"] += 1
            message = f"{self._max_readings} readings are stored for you in this class"
            self._refuse(member.sid, message, received_at, "quota_exceeded")
            self._refused[key].append([reading.seq, reading.t])  # so it is not re-sent
            self._wake.set()
            return
        self._writer.put(
            HeartRateRow(
                time=reading.t / 1000,
                room_id=room_id,
                participant_id=subject,
                seq=reading.seq,
                bpm=reading.bpm,
                rr_ms=tuple(reading.rr),
                energy_kj=reading.energy_kj,
                contact=reading.contact,
            )
        )
        self.counts["accepted"] += 1
        seen, order = self._recent.setdefault(key, (set(), deque()))
        ident = (reading.seq, reading.t)
        if ident in seen:
            self.counts["duplicates"] += 1
            return
        seen.add(ident)
        self._stored[key] = stored + 1
        order.append(ident)
        if len(order) > RECENT_SEQS:
            seen.discard(order.popleft())
        if received_at - reading.t / 1000 > LIVE_WINDOW_S:
            return  # stored, but too old to show as the current heart rate
        shown = self._shown(room_id, subject, reading, received_at)
        previous = self._latest.get(key)
        if previous is None or previous["t"] <= reading.t:
            self._latest[key] = shown
        self._outbox[room_id].append(shown)
        self._wake.set()

    def _check_time(self, reading: Reading, now: float) -> None:
        offset = reading.t / 1000 - now
        if offset > MAX_FUTURE_S or -offset > MAX_PAST_S:
            raise TelemetryError(
                f"t: device time is {offset:+.0f} s from the server's; check the clock"
            )

    def _shown(
        self, room_id: str, subject: str, reading: Reading, received_at: float
    ) -> dict[str, Any]:
        key = (room_id, subject)
        profile = self._profiles.get(key, Profile())
        signals, raised = self._signals.record(room_id, subject, reading, profile)
        if raised is not None:
            profile = self._profiles[key] = raised  # this reading on: the new maximum
        zone_number = zone(reading.bpm, profile)
        return {
            "participant_id": subject,
            "bpm": reading.bpm,
            "zone": zone_number,
            "zone_name": ZONE_NAMES[zone_number],
            "pct_max": percent_of_max(reading.bpm, profile),
            "seq": reading.seq,
            "t": reading.t,
            "contact": reading.contact,
            **signals,
            "received_at": received_at,
            **self._effort.record(room_id, subject, reading.t / 1000, zone_number),
        }

    def _refuse(self, sid: str, message: str, now: float, code: str = "bad_reading") -> None:
        if now - self._last_error.get(sid, 0.0) < ERROR_INTERVAL_S:
            return
        self._last_error[sid] = now
        payload = error_payload(code, message, "telemetry")
        self._pending_errors.append((sid, payload))
        self._wake.set()

    def durable(self, rows: list[HeartRateRow]) -> None:
        """Writer callback: these rows are safe; tell their senders to stop re-sending."""
        for row in rows:
            self._acks[(row.room_id, row.participant_id)].append([row.seq, round(row.time * 1000)])
        self.counts["durable"] += len(rows)
        self._wake.set()

    # -- out ----------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = loop.time()
            try:
                await self._flush()
            except Exception:
                logger.exception("heart-rate fan-out failed")
            # One flush per interval at most; a slow flush does not add a whole interval.
            await asyncio.sleep(max(0.0, started + FLUSH_INTERVAL_S - loop.time()))

    async def _flush(self) -> None:
        outbox, self._outbox = self._outbox, defaultdict(list)
        acks: dict[tuple[str, str], list[list[int]]] = {}
        if self._clock() - self._acked_at >= ACK_INTERVAL_S or self._refused:
            acks, self._acks = self._acks, defaultdict(list)
            self._acked_at = self._clock()
        elif self._acks:
            self._wake.set()  # come back for them
        refused, self._refused = self._refused, defaultdict(list)
        errors, self._pending_errors = self._pending_errors, []
        for sid, payload in errors:
            await self._sio.emit("error", payload, to=sid)
        for room_id, readings in outbox.items():
            if not readings:
                continue
            hosts = {m.sid for m in self._presence.watchers(room_id)}
            for sid in hosts:
                await self._sio.emit("hr", {"v": PROTOCOL_VERSION, "readings": readings}, to=sid)
            # Owners' own sessions (not their devices, not the hosts who got it above).
            owners: dict[str, list[str]] = defaultdict(list)
            for member in self._presence.members(room_id):
                if member.sid not in hosts and member.role != "device":
                    owners[member.subject].append(member.sid)
            own: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for reading in readings:
                for sid in owners.get(reading["participant_id"], ()):
                    own[sid].append(reading)
            for sid, mine in own.items():
                await self._sio.emit("hr", {"v": PROTOCOL_VERSION, "readings": mine}, to=sid)
            now = self._clock()
            self.fanout_lag.extend(now - r["received_at"] for r in readings)
            self.counts["fanned_out"] += len(readings)
        for key in acks.keys() | refused.keys():
            payload = {"v": PROTOCOL_VERSION, "acks": acks.get(key, [])}
            if key in refused:
                payload["refused"] = refused[key]
            for member in self._presence.acting_for(*key):
                await self._sio.emit("telemetry_ack", payload, to=member.sid)

    def stats(self) -> dict[str, Any]:
        """Counters and the fan-out lag (p50/p99 over the last readings), with the writer's."""
        lags = sorted(self.fanout_lag)

        def pct(p: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))], 4) if lags else None

        names = ("received", "accepted", "rejected", "rejected_unknown_sender", "duplicates")
        return {
            **{name: 0 for name in (*names, "fanned_out", "durable")},
            **dict(self.counts),
            "fanout_lag_p50_s": pct(0.5),
            "fanout_lag_p99_s": pct(0.99),
            "writer": self._writer.stats(),
        }
