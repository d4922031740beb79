"""Live signal quality, RMSSD and the learning maximum, per participant.

``HeartRateRelay`` hands each live reading to ``record``, which returns what goes into
the ``hr`` event with it: ``signal`` ("ok", "no_contact", "artefacts") and
``rmssd_ms`` (telemetry/hrv.py), so both reach exactly who heart rate reaches, the
class's instructor and the participant themselves. It also feeds the participant's
``MaxHrLearner`` (telemetry/max_hr.py): when a hold raises their maximum, ``record``
returns the new profile, which the relay uses from that reading on, and the raise is
stored (the summary and later joins use it) and told, as ``max_hr_raised``, to the
participant's own sessions and the class's hosts, by this module's owned task: the hot
path does no I/O.

The windows and holds live in memory: a class that moves to another node starts them
again there; a raise, once stored, stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

import socketio
from sqlalchemy.exc import SQLAlchemyError

from storage.store import Store
from telemetry.hrv import HrvWindow
from telemetry.max_hr import MaxHrLearner
from telemetry.messages import Reading
from telemetry.zones import Profile

from .messages import PROTOCOL_VERSION
from .presence import Presence
from .profiles import profile_out, record_of

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (room, participant)


class HeartSignals:
    """HRV windows and max-HR learners of every participant on this node."""

    def __init__(self, sio: socketio.AsyncServer, presence: Presence, store: Store | None) -> None:
        self._sio = sio
        self._presence = presence
        self._store = store  # None: raises are told but not stored (benchmarks)
        self._windows: dict[Key, HrvWindow] = {}
        self._learners: dict[Key, MaxHrLearner] = {}
        self._raised: list[tuple[Key, Profile, int]] = []  # (who, new profile, previous)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the owned task that stores and tells raised maxima."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="max-hr-raises")

    async def close(self) -> None:
        """Stop the task (idempotent), after storing the raises already made."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._deliver()
        except Exception:
            logger.exception("max-HR raises not delivered at shutdown")

    # -- live (HeartRateRelay's hot path) -----------------------------------------------

    def record(
        self, room_id: str, subject: str, reading: Reading, profile: Profile
    ) -> tuple[dict[str, Any], Profile | None]:
        """A live reading: the fields ``hr`` shows with it, and the participant's new
        profile when this reading raised their maximum (else None)."""
        key = (room_id, subject)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = HrvWindow()
            self._learners[key] = MaxHrLearner()
        t = reading.t / 1000
        window.add(t, reading.rr)  # without intervals too: old artefacts age out
        signal = window.signal(reading.contact)
        shown = {"signal": signal, "rmssd_ms": window.rmssd() if signal == "ok" else None}
        raised = self._learners[key].add(t, reading.bpm, profile.hr_max, signal == "ok")
        if raised is None:
            return shown, None
        new = dataclasses.replace(profile, max_hr=raised, max_hr_learned=True)
        self._raised.append((key, new, round(profile.hr_max)))
        self._wake.set()
        return shown, new

    def forget_room(self, room_id: str) -> None:
        """The class ended (or moved): its windows and holds go."""
        for table in (self._windows, self._learners):
            for key in [k for k in table if k[0] == room_id]:
                table.pop(key, None)

    # -- out ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._deliver()
            except Exception:
                logger.exception("max-HR raise not delivered")

    async def _deliver(self) -> None:
        raised, self._raised = self._raised, []
        for (room_id, participant_id), profile, previous in raised:
            if self._store is not None:
                try:
                    await self._store.set_profile(room_id, participant_id, record_of(profile))
                except (SQLAlchemyError, OSError) as exc:
                    # Live zones use it anyway; the summary keeps the stored maximum.
                    logger.warning("room %s: raised max HR not stored (%s)", room_id, exc)
            logger.info(
                "room %s participant %s: max HR %d → %s bpm",
                room_id, participant_id, previous, profile.max_hr,
            )  # fmt: skip
            payload = {
                "v": PROTOCOL_VERSION,
                "participant_id": participant_id,
                "previous_hr_max": previous,
                "hr_max": profile.max_hr,
                "profile": profile_out(profile),
                "message": f"Your max heart rate was raised to {profile.max_hr} bpm",
            }
            for member in self._presence.members(room_id):
                own = member.subject == participant_id and member.role != "device"
                if own or member.role == "host":
                    await self._sio.emit("max_hr_raised", payload, to=member.sid)
