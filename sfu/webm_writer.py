"""Encoded frames into a WebM file with PyAV's muxer (libavformat): nothing is decoded
or re-encoded.

The file is written as ``NAME.webm.part`` and renamed to ``NAME.webm`` when it is
closed (cues and duration written), so a listing tells a finished recording from one
still being made or cut short by a crash. Beside it, ``NAME.json`` says when the file's
zero was on the wall clock (``started_at``, unix seconds): what a replay needs to put the
class's heart-rate readings under the picture. The same instant is the file's Matroska
``DateUTC``, so a downloaded file still knows it. It opens at the first video keyframe, whose
size goes in the track header; later keyframes may change size (a layer switch, the
instructor back with another camera), which VP8 decoders follow.

PyAV only muxes streams it made with a codec context, which it opens when the header
is written: the VP8 and Opus encoders are opened once for that (their parameters, and
the Opus header WebM needs, come from them) and never fed a frame. Opening libvpx for
720p takes ~30 ms of the worker's loop, once per recording (at its first keyframe).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

logger = logging.getLogger(__name__)

MS = Fraction(1, 1000)  # WebM's own time base
OPUS_FRAME_MS = 20


class WebmWriter:
    """One recording file: ``write_video`` / ``write_audio`` frames in ms, then ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = path  # the finished file's name
        self.part = path.with_name(path.name + ".part")
        self.sidecar = sidecar_of(path)
        self.started_at: float | None = None  # unix seconds of the file's zero
        self.frames = {"video": 0, "audio": 0}
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._last = {"video": -1, "audio": -1}
        self._closed = False

    @property
    def opened(self) -> bool:
        """Whether the file exists (its first keyframe came)."""
        return self._container is not None

    def open(self, width: int, height: int, started_at: float) -> None:
        """Create the file with a VP8 track of this size and an Opus track, its zero at
        ``started_at`` (unix seconds), and the sidecar that says so."""
        self.part.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        container = av.open(str(self.part), mode="w", format="webm")
        try:
            container.metadata["creation_time"] = stamp  # Matroska's DateUTC
            video = container.add_stream("libvpx", rate=30)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.time_base = MS
            audio = container.add_stream("libopus", rate=48000)
            audio.layout = "stereo"
            audio.time_base = MS
        except BaseException:
            container.close()
            raise
        self._container, self._video, self._audio = container, video, audio
        self.started_at = started_at
        # Written whole, then renamed: a reader never sees half of it.
        temporary = self.sidecar.with_name(self.sidecar.name + ".tmp")
        temporary.write_text(json.dumps({"started_at": round(started_at, 3)}))
        os.replace(temporary, self.sidecar)

    def write_video(self, pts_ms: int, data: bytes, keyframe: bool) -> None:
        """Mux one VP8 picture at ``pts_ms`` (kept strictly increasing)."""
        self._mux(self._video, "video", pts_ms, data, keyframe, None)

    def write_audio(self, pts_ms: int, data: bytes) -> None:
        """Mux one Opus frame at ``pts_ms``."""
        self._mux(self._audio, "audio", pts_ms, data, True, OPUS_FRAME_MS)

    def _mux(
        self, stream: Any, kind: str, pts_ms: int, data: bytes, keyframe: bool, duration: int | None
    ) -> None:
        if self._container is None or self._closed:
            return
        pts = max(pts_ms, self._last[kind] + 1)  # a muxer refuses time going backwards
        self._last[kind] = pts
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = MS
        packet.pts = packet.dts = pts
        if duration is not None:
            packet.duration = duration
        packet.is_keyframe = keyframe
        self._container.mux(packet)
        self.frames[kind] += 1

    def close(self) -> None:
        """Write the trailer and give the file its final name (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            return
        try:
            self._container.close()
        finally:
            os.replace(self.part, self.path)
        logger.info(
            "recording %s closed: %d video frames, %d audio frames",
            self.path.name, self.frames["video"], self.frames["audio"],
        )  # fmt: skip


def sidecar_of(path: Path) -> Path:
    """The ``NAME.json`` beside the recording ``NAME.webm``."""
    return path.with_suffix(".json")


def new_path(directory: Path, stem: str) -> Path:
    """``directory/stem.webm``, or ``stem-2.webm``… if that (its ``.part``, its sidecar)
    exists."""
    for counter in range(1, 1000):
        name = stem if counter == 1 else f"{stem}-{counter}"
        path = directory / f"{name}.webm"
        taken = (path, path.with_name(path.name + ".part"), sidecar_of(path))
        if not any(p.exists() for p in taken):
            return path
    raise FileExistsError(f"no free recording name for {stem} in {directory}")
