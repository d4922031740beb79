"""Where a class's recordings are kept: one directory per class under ``recordings/``.

The SFU writes each recording as ``STAMP.webm.part`` (VP8) or ``STAMP.mkv.part``
(H.264, in Matroska) and renames it ``STAMP.webm`` / ``STAMP.mkv`` when it is finished
(sfu/recording_file.py), with ``STAMP.json`` beside it saying when the file's zero was on
the wall clock; this module lists, finds and deletes them for the HTTP API. A
recording's id is its stamp, whichever the format. Names come from the server (a UTC
time stamp), never from a request: a class id or recording id that is not of the
server's own form is refused before any path is made of it. Object storage (a later
slice) can take this interface's place.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

_ROOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RECORDING_ID = re.compile(r"\d{8}T\d{6}Z(?:-\d{1,3})?")
PART = ".part"
# The formats a recording comes in, by suffix: what its file is served as.
MEDIA_TYPES: Final = MappingProxyType({".webm": "video/webm", ".mkv": "video/x-matroska"})


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """One recording of a class."""

    id: str
    bytes: int
    complete: bool  # finished; False while it is being made (or if its writer died)
    modified_at: float  # unix seconds
    # When the file's zero was (unix seconds); None for a file without its sidecar.
    started_at: float | None = None
    media_type: str = "video/webm"  # video/webm (VP8) or video/x-matroska (H.264)


class RecordingFiles:
    """The recordings under one directory (``DATA_DIR/recordings``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def directory(self, room_id: str) -> Path:
        """Where a class's recordings go (ValueError for an id not of the server's form)."""
        if not _ROOM_ID.fullmatch(room_id):
            raise ValueError("not a class id")
        return self.root / room_id

    def list(self, room_id: str) -> list[RecordingInfo]:
        """A class's recordings, oldest first."""
        try:
            directory = self.directory(room_id)
            entries = list(directory.iterdir())
        except (ValueError, FileNotFoundError):
            return []
        found = []
        for path in entries:
            name = Path(path.name.removesuffix(PART))
            if name.suffix not in MEDIA_TYPES or not _RECORDING_ID.fullmatch(name.stem):
                continue
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # renamed or deleted meanwhile
            found.append(
                RecordingInfo(
                    name.stem, info.st_size, not path.name.endswith(PART), info.st_mtime,
                    _started_at(directory / f"{name.stem}.json"), MEDIA_TYPES[name.suffix],
                )
            )  # fmt: skip
        return sorted(found, key=lambda r: r.id)

    def path(self, room_id: str, recording_id: str) -> Path | None:
        """The finished file of one recording (None: no such finished recording)."""
        if not _RECORDING_ID.fullmatch(recording_id):
            return None
        try:
            directory = self.directory(room_id)
        except ValueError:
            return None
        for suffix in MEDIA_TYPES:
            path = directory / f"{recording_id}{suffix}"
            if path.is_file():
                return path
        return None

    def in_progress(self, room_id: str, recording_id: str) -> bool:
        """Whether this recording is still being written."""
        if not _RECORDING_ID.fullmatch(recording_id):
            return False
        try:
            directory = self.directory(room_id)
        except ValueError:
            return False
        return any((directory / f"{recording_id}{s}{PART}").is_file() for s in MEDIA_TYPES)

    def delete(self, room_id: str, recording_id: str) -> bool:
        """Delete a finished recording; False if there was none."""
        path = self.path(room_id, recording_id)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        return True

    def expire(self, cutoff: float) -> builtins.list[tuple[str, str]]:
        """Delete every finished recording last written before ``cutoff`` (unix s);
        returns their (class id, recording id). One being made is never touched."""
        gone: builtins.list[tuple[str, str]] = []
        try:
            directories = [d for d in self.root.iterdir() if _ROOM_ID.fullmatch(d.name)]
        except FileNotFoundError:
            return []
        for directory in directories:
            for info in self.list(directory.name):
                old = info.complete and info.modified_at < cutoff
                if old and self.delete(directory.name, info.id):
                    gone.append((directory.name, info.id))
        return gone


def _started_at(sidecar: Path) -> float | None:
    """The ``started_at`` of a recording's sidecar; None if it is missing or damaged."""
    try:
        value = json.loads(sidecar.read_text())["started_at"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def media_type(path: Path) -> str:
    """What a recording's file is served as (by its suffix)."""
    return MEDIA_TYPES.get(path.suffix, "application/octet-stream")
