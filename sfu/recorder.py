"""Recording a class: the instructor's best video layer and audio into one file (WebM
for VP8, Matroska for H.264: sfu/recording_file.py), from the packets the SFU forwards,
without decoding or re-encoding.

The recorder is a subscriber inside the SFU: each ``RecordingTap`` of it sits in a
Stream's consumer list beside the class's Consumers and gets the same packets through
the same ``send`` call (retransmissions the Producer asks the publisher for come the
same way, and fill the holes of its reorder window), so it costs no connection and no
SRTP. Like a Consumer, a video tap
takes one simulcast layer at a time (the best one arriving), enters a layer only at
its keyframe, asks for a keyframe when it starts and after loss it cannot repair, and
keeps the layers it wants switched on at the publisher (``preferred``).

Each tap turns packets into frames (sfu/depacketize.py, sfu/h264.py) and puts them on
one timeline:
a *segment* of a track (from its first frame, a new SSRC or a layer switch, until the
next) is anchored on the arrival time of its first frame, and its frames follow by RTP
timestamp. Audio and video share the wall clock, so they stay in sync across a layer
switch or the instructor leaving and coming back (the file then holds a pause). The
file starts at the first video keyframe; audio before it is not written, so both
tracks start together.

``Room`` owns the recorder and tells it whose tracks to follow (``follow``), each time
the class's tracks change. The instructor's music goes out with their voice in one
audio track (music mode is the microphone without speech processing), so leaving music
out of a recording means leaving their audio out while music mode is on: ``audio``
False drops the audio frames (the file has silence there) until it is True again.

A file holds one video codec. An instructor who comes back publishing another one (a
browser that prefers H.264 after one that sent VP8) starts the recording's next file
at its first keyframe: the class's recordings are then two files, one after the other.
H.264 comes as a track of one layer (the SFU accepts simulcast for VP8 only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from .depacketize import Frame, FrameAssembler, pictures_for
from .forwarder import Source
from .recording_file import RecordingFile
from .stream import Stream

logger = logging.getLogger(__name__)

TICK_S = 0.25  # how often layers and waited-for keyframes are looked at
KEYFRAME_RETRY_S = 1.0  # a keyframe waited for this long is asked for again
ARRIVING_S = 1.0  # a layer with no packet for this long is not being sent
REANCHOR_S = 0.5  # a frame this far from where its segment puts it starts a new one
RECORDED_KINDS = ("video", "audio")


class RecordingTap:
    """The recording's subscription to one track (a ``Subscription``, sfu/stream.py)."""

    def __init__(self, recorder: Recorder, source: Source) -> None:
        self.recorder = recorder
        self.source = source
        self.kind = source.kind
        mime_type = source.codec.mime_type.lower() if source.codec is not None else ""
        self.pictures = pictures_for(mime_type) if source.kind == "video" else None
        self.video = self.pictures is not None
        self.codec = mime_type.removeprefix("video/")  # a file's video track: vp8 or h264
        self.remb = 0  # never an estimate: a file has no bandwidth to hold the track to
        self.fraction_lost = 0
        self.preferred = len(source.streams) - 1  # the best layer
        self.stream: Stream | None = None
        self.target: Stream | None = None
        self.need_keyframe = self.video
        self.closed = False
        self.clock_rate = source.codec.clock_rate if source.codec else 90000
        self.anchor: tuple[int, float] | None = None  # (RTP timestamp, arrival) of a segment
        self.assembler = FrameAssembler(self.pictures)
        self._keyframe_asked_at = 0.0
        source.consumers.append(self)
        if source.layered:
            self.switch_to(source.streams[-1])
        else:
            self.stream = source.streams[0]  # its consumer list is the track's own
            self._ask_keyframe(time.monotonic())
        source.showing_changed()

    @property
    def paused(self) -> bool:
        """Never: a recording takes everything it is sent."""
        return False

    @property
    def layer(self) -> int:
        """The layer it is fed from (-1 before its first keyframe)."""
        return self.stream.index if self.stream is not None else -1

    @property
    def wanted(self) -> int:
        """The layer it is fed from, or is switching to."""
        stream = self.target or self.stream
        return stream.index if stream is not None else -1

    def send(
        self, padding: int, marker: int, seq: int, timestamp: int, shared: bytes,
        payload: memoryview,
    ) -> int:  # fmt: skip
        """One source packet: reorder it into frames and hand the complete ones on."""
        if self.closed:
            return 0
        end = len(payload)
        if padding and end:
            end = max(0, end - payload[end - 1])
        frames = self.assembler.push(seq, timestamp, marker, bytes(payload[:end]), time.monotonic())
        for frame in frames:
            self.recorder.write(self, frame)
        return 0  # nothing went out on the network

    def switch_to(self, stream: Stream) -> None:
        """Take ``stream`` from its next keyframe on (asked for at once)."""
        if self.closed or stream is self.target:
            return
        if self.target is not None:
            # A switch still waiting for its keyframe is called off.
            if self in self.target.joining:
                self.target.joining.remove(self)
            self.target = None
        if stream is self.stream:
            return
        self.target = stream
        stream.joining.append(self)
        stream.want_keyframe()
        self._keyframe_asked_at = time.monotonic()

    def enter(self, stream: Stream) -> None:
        """Called by ``stream`` at its keyframe: this is our layer now, a new segment."""
        old = self.stream
        if old is not None and self in old.consumers:
            old.consumers.remove(self)
        self.stream = stream
        self.target = None
        stream.consumers.append(self)
        self.resync()

    def resync(self) -> None:
        """A new SSRC or layer: another numbering and timestamp base, a new segment."""
        self.assembler.reset()
        self.anchor = None
        if self.video:
            self.need_keyframe = True

    def source_report(self, ntp_time: int, rtp_timestamp: int) -> None:
        """Not used yet: segments are anchored on arrival times."""

    def tick(self, now: float) -> None:
        """Take the best layer arriving; ask again for a keyframe waited for in vain."""
        if self.closed:
            return
        if self.source.layered:
            arriving = [s for s in self.source.streams if now - s.last_packet_at < ARRIVING_S]
            if arriving and arriving[-1] is not (self.target or self.stream):
                self.switch_to(arriving[-1])
        if (self.need_keyframe or self.target is not None) and (
            now - self._keyframe_asked_at >= KEYFRAME_RETRY_S
        ):
            self._ask_keyframe(now)

    def _ask_keyframe(self, now: float) -> None:
        stream = self.target or self.stream
        if stream is not None and self.video:
            stream.want_keyframe()
            self._keyframe_asked_at = now

    def lost(self) -> None:
        """A frame could not be repaired: wait for (and ask for) the next keyframe."""
        self.need_keyframe = True
        self._ask_keyframe(time.monotonic())

    def close(self) -> None:
        """Detach from the track and its layers (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for stream in (self.stream, self.target):
            if stream is not None:
                if self in stream.joining:
                    stream.joining.remove(self)
                if self in stream.consumers:
                    stream.consumers.remove(self)
        self.stream = self.target = None
        if self in self.source.consumers:
            self.source.consumers.remove(self)
            self.source.showing_changed()


class Recorder:
    """One recording of one class, into ``directory``: owned by its Room, which closes it."""

    def __init__(self, room_id: str, directory: Path) -> None:
        self.room_id = room_id
        self.directory = directory
        self.writer = self._new_file()
        self.taps: dict[str, RecordingTap] = {}
        self.origin: float | None = None  # monotonic time of the file's zero
        self.audio = True  # False: the instructor's audio is left out (music excluded)
        self._refused: set[str] = set()  # tracks already warned about
        self.closed = False
        self._task = asyncio.create_task(self._tick(), name=f"recorder-{room_id}")
        logger.info("recording room %s into %s", room_id, directory)

    def _new_file(self) -> RecordingFile:
        return RecordingFile(self.directory, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))

    def follow(self, sources: Mapping[str, Source]) -> None:
        """Record these tracks (the instructor's, by kind) from now on; none: pause."""
        if self.closed:
            return
        for kind in RECORDED_KINDS:
            source = sources.get(kind)
            tap = self.taps.get(kind)
            if tap is not None and tap.source is source and not tap.closed:
                continue
            if tap is not None:
                tap.close()
                del self.taps[kind]
            if source is not None and self._recordable(source):
                self.taps[kind] = RecordingTap(self, source)

    def _recordable(self, source: Source) -> bool:
        """Whether this recording can take ``source``: Opus audio, VP8 or H.264 video."""
        if source.closed:
            return False
        codec = source.codec.mime_type.lower() if source.codec is not None else "unknown"
        if codec == "audio/opus" if source.kind == "audio" else pictures_for(codec) is not None:
            return True
        if source.id not in self._refused:
            self._refused.add(source.id)
            logger.warning("room %s: cannot record %s (%s)", self.room_id, source.id, codec)
        return False

    def write(self, tap: RecordingTap, frame: Frame) -> None:
        """One complete frame of ``tap``'s track, onto the file's timeline."""
        if not tap.video and not self.audio:
            return
        if tap.video:
            if frame.after_loss and not frame.keyframe:
                tap.lost()
            if tap.need_keyframe and not frame.keyframe:
                return
            tap.need_keyframe = False
        at = self._place(tap, frame)
        writer = self.writer
        if tap.video and writer.opened and tap.codec != writer.codec:
            writer = self._next_file()  # a file holds one video codec
        if not writer.opened:
            size = tap.pictures.size(frame.data) if tap.pictures is not None else None
            if size is None or not self._open(tap.codec, size, at):
                return  # the file starts at the first video keyframe
        assert self.origin is not None
        pts = round((at - self.origin) * 1000)
        if pts < 0:
            return  # audio from before the file's first picture
        try:
            if tap.video:
                writer.write_video(pts, frame.data, frame.keyframe)
            else:
                writer.write_audio(pts, frame.data)
        except Exception:
            # A full disk or a muxer's refusal ends this recording, not the class.
            logger.exception("recording of room %s failed", self.room_id)
            self.close()

    def _open(self, codec: str, size: tuple[int, int], at: float) -> bool:
        # The file's zero on the wall clock: the replay lines heart-rate readings up on it.
        started_at = time.time() - (time.monotonic() - at)
        try:
            self.writer.open(codec, *size, started_at)
        except Exception:
            logger.exception("cannot create the recording of room %s", self.room_id)
            self.close()
            return False
        self.origin = at
        assert self.writer.path is not None
        logger.info("recording room %s into %s", self.room_id, self.writer.path.name)
        return True

    def _next_file(self) -> RecordingFile:
        """Finish this file and start the next (opened at its first keyframe)."""
        self._finish()
        self.writer = self._new_file()
        self.origin = None
        return self.writer

    def _finish(self) -> None:
        try:
            self.writer.close()
        except Exception:
            logger.exception("cannot finish the recording of room %s", self.room_id)

    @staticmethod
    def _place(tap: RecordingTap, frame: Frame) -> float:
        """When ``frame`` was captured, on the monotonic clock, by its segment's anchor."""
        anchor = tap.anchor
        if anchor is not None:
            delta = (frame.timestamp - anchor[0]) & 0xFFFFFFFF
            if delta >= 0x80000000:
                delta -= 0x100000000
            at = anchor[1] + delta / tap.clock_rate
            if abs(at - frame.arrived) < REANCHOR_S:
                return at
        # The first frame of a segment, or the publisher's timestamps jumped.
        tap.anchor = (frame.timestamp, frame.arrived)
        return frame.arrived

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for tap in list(self.taps.values()):
                try:
                    tap.tick(now)
                except Exception:
                    logger.exception("recording tap of room %s failed", self.room_id)

    def close(self) -> None:
        """Stop: detach from the tracks and finish the file (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._task.cancel()
        for tap in self.taps.values():
            tap.close()
        self.taps.clear()
        self._finish()

    async def wait_closed(self) -> None:
        """After ``close()``: wait until its task has ended."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
