"""Erasing people's data: a class, one participant in it, or every class past its time.

Heart rate, chat and the participants (names, zone profiles) go; the class itself (its
title and times) stays, with nobody in it. On TimescaleDB the per-minute aggregate is
refreshed over what was deleted (``HeartRateHistory.delete_participant``): it would
otherwise keep the minutes for ever after the raw readings are gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from storage.audit import SERVER, SHELL, AuditLog
from storage.migrations import migrated
from storage.recordings import RecordingFiles
from storage.store import Store
from telemetry.history import HeartRateHistory

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 3600.0  # how often the server looks for classes past retention


@dataclass
class Erased:
    """What an erasure deleted: heart-rate readings, and chat and participant rows."""

    readings: int = 0
    rows: int = 0


async def erase_participant(
    store: Store, history: HeartRateHistory, room_id: str, participant_id: str
) -> Erased:
    """One participant's data in one class."""
    readings = await history.delete_participant(room_id, participant_id)
    return Erased(readings, await store.forget_participant(room_id, participant_id))


async def erase_class(store: Store, history: HeartRateHistory, room_id: str) -> Erased:
    """Everyone's data in one class."""
    readings = await history.delete_participant(room_id, None)
    return Erased(readings, await store.forget_class(room_id))


async def expire(
    store: Store,
    history: HeartRateHistory,
    days: float,
    now: float | None = None,
    audit: AuditLog | None = None,
) -> list[str]:
    """Erase every class that ended more than ``days`` ago (in ``audit``, by "server",
    when given); returns their ids."""
    cutoff = (now if now is not None else time.time()) - days * 86400
    classes = await store.classes_before(cutoff)
    for room_id in classes:
        erased = await erase_class(store, history, room_id)
        logger.info(
            "retention: class %s erased (%d readings, %d rows)", room_id, erased.readings,
            erased.rows, extra={"class_id": room_id},
        )  # fmt: skip
        if audit is not None:
            await audit.record(
                "data_erased", SERVER, f"class {room_id}", retention_days=days,
                heart_rate=erased.readings, other=erased.rows,
            )  # fmt: skip
    return classes


async def sweep(store: Store, history: HeartRateHistory, days: float, audit: AuditLog) -> None:
    """``expire`` now and every SWEEP_INTERVAL_S until cancelled; a failure is logged and
    tried again next time (a database away for a while)."""
    while True:
        try:
            await expire(store, history, days, audit=audit)
        except Exception:
            logger.exception("retention sweep failed; trying again in %g s", SWEEP_INTERVAL_S)
        await asyncio.sleep(SWEEP_INTERVAL_S)


async def erase_in(database_url: str, room_id: str, participant_id: str | None) -> Erased | None:
    """``pulseroom erase``: on the database at ``database_url`` (migrated first); None
    when there is no such class."""
    async with migrated(database_url) as engine:
        store, history = Store(engine), HeartRateHistory(engine)
        if await store.get_room(room_id) is None:
            return None
        if participant_id is None:
            erased = await erase_class(store, history, room_id)
        else:
            erased = await erase_participant(store, history, room_id, participant_id)
        await AuditLog(engine).record(
            "data_erased", SHELL, f"class {room_id}", participant=participant_id,
            heart_rate=erased.readings, other=erased.rows,
        )  # fmt: skip
        return erased


async def expire_recordings(
    files: RecordingFiles, days: float, audit: AuditLog, now: float | None = None
) -> list[tuple[str, str]]:
    """PULSEROOM_RECORDING_RETENTION_DAYS: delete recordings finished more than ``days``
    ago (in ``audit``, by "server"); returns their (class id, recording id)."""
    cutoff = (now if now is not None else time.time()) - days * 86400
    gone: list[tuple[str, str]] = await asyncio.to_thread(files.expire, cutoff)  # off the loop
    for room_id, recording_id in gone:
        logger.info("retention: recording %s of class %s deleted", recording_id, room_id,
                    extra={"class_id": room_id})  # fmt: skip
        await audit.record(
            "recording_deleted", SERVER, f"recording {recording_id} of class {room_id}",
            retention_days=days,
        )  # fmt: skip
    return gone


async def recording_sweep(files: RecordingFiles, days: float, audit: AuditLog) -> None:
    """``expire_recordings`` now and every SWEEP_INTERVAL_S until cancelled."""
    while True:
        try:
            await expire_recordings(files, days, audit)
        except Exception:
            logger.exception("recording retention failed; trying again in %g s", SWEEP_INTERVAL_S)
        await asyncio.sleep(SWEEP_INTERVAL_S)
