"""Encoded frames into a recording file with PyAV's muxer (libavformat): nothing is
decoded or re-encoded. VP8 goes into WebM, H.264 into its parent format Matroska
(``.mkv``; WebM allows only VP8, VP9 and AV1), each with the Opus audio.

The file is written as ``NAME.webm.part`` (``.mkv.part``) and renamed when it is
closed (cues and duration written), so a listing tells a finished recording from one
still being made or cut short by a crash. Beside it, ``NAME.json`` says when the file's
zero was on the wall clock (``started_at``, unix seconds): what a replay needs to put the
class's heart-rate readings under the picture. The same instant is the file's Matroska
``DateUTC``, so a downloaded file still knows it. It opens at the first video keyframe,
whose codec picks the format and whose size goes in the track header; later keyframes
may change size (a layer switch, the instructor back with another camera), which
decoders follow (H.264 pictures carry their parameter sets in band).

PyAV muxes the VP8 and Opus tracks as streams it made with a codec context, which it
opens when the header is written: the VP8 and Opus encoders are opened once for that
(their parameters, and the Opus header Matroska needs, come from them) and never fed a
frame. Opening libvpx for 720p takes ~30 ms of the worker's loop, once per recording
(at its first keyframe). The H.264 track is a stream without a codec context
(``add_mux_stream``): an opened x264 would write its own parameter sets into the track
header, not the publisher's. Its pictures are Annex-B; PyAV holds the first back until
its parameter sets give the header's ``avcC``, and FFmpeg's muxer rewrites each picture
into the length-prefixed form Matroska stores.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import av

logger = logging.getLogger(__name__)

MS = Fraction(1, 1000)  # Matroska's own time base
OPUS_FRAME_MS = 20
PART: Final = ".part"  # the suffix of a file still being written
VIDEO_CODECS: Final = ("vp8", "h264")  # what ``open`` takes
SUFFIXES: Final = (".webm", ".mkv")  # a recording's file is one of these


def suffix_of(codec: str) -> str:
    """The file name suffix of a recording whose video is ``codec``."""
    return ".mkv" if codec == "h264" else ".webm"


class RecordingFile:
    """One recording file: ``open``, ``write_video`` / ``write_audio`` frames in ms, then
    ``close``. Named ``STEM`` + the suffix of the video codec it is opened with, in
    ``directory``."""

    def __init__(self, directory: Path, stem: str) -> None:
        self.directory = directory
        self.stem = stem
        self.codec: str | None = None  # the video's, once open
        self.path: Path | None = None  # the finished file's name, once open
        self.part: Path | None = None
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

    def open(self, codec: str, width: int, height: int, started_at: float) -> None:
        """Create the file with a ``codec`` video track (``vp8``, ``h264``) of this size and
        an Opus track, its zero at ``started_at`` (unix seconds), and the sidecar that
        says so (ValueError: another codec)."""
        if codec not in VIDEO_CODECS:
            raise ValueError(f"cannot record {codec} video")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = new_path(self.directory, self.stem, suffix_of(codec))
        part = path.with_name(path.name + PART)
        stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        container = av.open(str(part), mode="w", format="webm" if codec == "vp8" else "matroska")
        try:
            container.metadata["creation_time"] = stamp  # Matroska's DateUTC
            video: Any
            if codec == "vp8":
                video = container.add_stream("libvpx", rate=30)
                video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            else:
                video = container.add_mux_stream("h264", width=width, height=height)
            video.time_base = MS
            audio: Any = container.add_stream("libopus", rate=48000)
            audio.layout = "stereo"
            audio.time_base = MS
        except BaseException:
            container.close()
            part.unlink(missing_ok=True)
            raise
        self._container, self._video, self._audio = container, video, audio
        self.codec, self.path, self.part, self.started_at = codec, path, part, started_at
        # Written whole, then renamed: a reader never sees half of it.
        sidecar = sidecar_of(path)
        temporary = sidecar.with_name(sidecar.name + ".tmp")
        temporary.write_text(json.dumps({"started_at": round(started_at, 3)}))
        os.replace(temporary, sidecar)

    def write_video(self, pts_ms: int, data: bytes, keyframe: bool) -> None:
        """Mux one picture (VP8, or an H.264 access unit in Annex-B) at ``pts_ms`` (kept
        strictly increasing)."""
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
        if self._container is None or self.path is None or self.part is None:
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
    """The ``NAME.json`` beside the recording ``NAME.webm`` (``NAME.mkv``)."""
    return path.with_suffix(".json")


def new_path(directory: Path, stem: str, suffix: str = ".webm") -> Path:
    """``directory/stem`` + ``suffix``, or ``stem-2``… if a recording of that name (in
    either format, finished or not, or its sidecar) exists: a recording's id is its
    name without the suffix."""
    for counter in range(1, 1000):
        name = stem if counter == 1 else f"{stem}-{counter}"
        taken = [directory / f"{name}.json"]
        for other in SUFFIXES:
            taken += [directory / f"{name}{other}", directory / f"{name}{other}{PART}"]
        if not any(p.exists() for p in taken):
            return directory / f"{name}{suffix}"
    raise FileExistsError(f"no free recording name for {stem} in {directory}")
