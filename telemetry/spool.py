"""The heart-rate spool file: rows the database could not take yet, one JSON line each.

Appends are fsynced before the rows count as durable; a torn last line (a crash or a
full disk mid-write) is never read, and an unreadable line is skipped and counted. The
writer (``telemetry.writer``) owns the file: it appends, renames and drains it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .rows import HeartRateRow

log = logging.getLogger(__name__)


def spool_line(row: HeartRateRow) -> str:
    """The row as one JSON line (floats in ``repr`` form, so they read back exactly)."""
    return (
        json.dumps(
            {
                "time": row.time,
                "room_id": row.room_id,
                "participant_id": row.participant_id,
                "seq": row.seq,
                "bpm": row.bpm,
                "rr_ms": list(row.rr_ms),
                "energy_kj": row.energy_kj,
                "contact": row.contact,
            },
            separators=(",", ":"),
        )
        + "\n"
    )


def parse_spool_line(line: bytes) -> HeartRateRow:
    data = json.loads(line)
    return HeartRateRow(
        time=float(data["time"]),
        room_id=str(data["room_id"]),
        participant_id=str(data["participant_id"]),
        seq=int(data["seq"]),
        bpm=int(data["bpm"]),
        rr_ms=tuple(float(x) for x in data["rr_ms"]),
        energy_kj=None if data["energy_kj"] is None else int(data["energy_kj"]),
        contact=None if data["contact"] is None else bool(data["contact"]),
    )


def fsync_dir(path: Path) -> None:
    """Make a create, rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_spool(path: Path, data: bytes) -> None:
    """Append ``data`` and fsync it (runs in a thread: fsync can take milliseconds)."""
    created = not path.exists()
    with path.open("a+b") as f:
        # A write torn by a full disk or a crash leaves a line without its newline;
        # start on a fresh line so the torn one cannot swallow the first row appended.
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if created:
        fsync_dir(path.parent)


def read_spool(path: Path, offset: int, limit: int) -> tuple[list[HeartRateRow], int, int]:
    """Up to ``limit`` rows from ``offset``: (rows, the offset after them, lines skipped).

    A last line without its newline is a torn write whose rows were never reported
    durable: it is left unread. A line that does not parse is skipped (and counted).
    """
    rows: list[HeartRateRow] = []
    skipped = 0
    with path.open("rb") as f:
        f.seek(offset)
        while len(rows) < limit:
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            if not line.strip():
                continue
            try:
                rows.append(parse_spool_line(line))
            except (ValueError, KeyError, TypeError):
                skipped += 1
                log.error("heart-rate spool %s: unreadable line skipped: %r", path, line[:200])
    return rows, offset, skipped
