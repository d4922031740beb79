"""Pipes: one class's tracks carried between SFU worker processes, like mediasoup's
pipeToRouter.

A class too big for one core spans workers (``WorkerPool`` places each participant).
For every track some subscriber on another worker should receive, the publisher's
worker sends each packet once more, in the clear, over a *link*: a connected Unix
datagram socket pair between the two workers, made by the pool and handed to each as
a file descriptor (nothing else can reach it, so there is no SRTP and no token). On
the other end a ``PipeProducer`` feeds that worker's consumers exactly as a local
``Producer`` would (same NACK cache, keyframe merging, pausing of hidden video).
What flows back — keyframe requests, bandwidth estimates, and whether anyone there
shows the video at all — goes over the same link, merged and rate-limited.

Ownership, as mediasoup's router owns its pipe transports: a worker's ``SfuServer``
owns its ``Links`` (the sockets, shared by every class split across the same two
workers), and each ``Room`` owns its pipes' ends on this worker (``Room.pipe_in`` /
``pipe_out``), closing them once when the pool ends a pipe, when their link is lost, or
when the room closes. A link only routes datagrams to the pipes registered on it.

Datagrams, all big-endian, first byte the type:

- ``RTP`` (origin → other): pipe id, flags (padding 0x20 | simulcast layer << 2 |
  marker 0x01), sequence
  number, timestamp, the publisher's SSRC, length of the forwarded header extensions
  (already re-numbered to what subscribers are offered, padded to 32 bits), then those
  extensions and the payload. RTX is already unwrapped at the origin.
- ``REPORT`` (origin → other): pipe id, the publisher's sender report (NTP, RTP time),
  layer.
- ``KEYFRAME`` (layer), ``ESTIMATE`` (bits/s), ``SHOWING`` (0/1), ``LAYERS`` (how many
  layers, from the lowest, subscribers there want) (other → origin): pipe id, then those.
- ``NACK`` (other → origin): pipe id, layer, a count, then that many sequence numbers that
  never came through the pipe (a full socket drops datagrams); the origin sends them
  again from its NACK cache, so the subscribers on the other worker find them there.

Per packet the origin does one ``join`` and one ``send``; the other side one ``recv``,
one ``unpack`` and the usual fan-out. No coroutine, no object per packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from .backend import SfuError
from .forwarder import Codec, Producer, Source
from .stats import ForwardingStats
from .stream import Stream
from .worker_protocol import LinkFrame, TrackParams

logger = logging.getLogger(__name__)

T_RTP: Final = 1
T_REPORT: Final = 2
T_KEYFRAME: Final = 3
T_ESTIMATE: Final = 4
T_SHOWING: Final = 5
T_NACK: Final = 6
T_LAYERS: Final = 7
_RTP = struct.Struct("!BIBHIIH")
_REPORT = struct.Struct("!BIQIB")
_KEYFRAME = struct.Struct("!BIB")
_ESTIMATE = struct.Struct("!BII")
_SHOWING = struct.Struct("!BIB")
_LAYERS = struct.Struct("!BIB")
_NACK = struct.Struct("!BIBH")  # then `count` sequence numbers of 2 bytes
_HEAD = _RTP.size
_PIPE_ID = struct.Struct("!I")

RECV_SIZE: Final = 65536  # a datagram is never cut: the largest possible UDP payload
READ_BATCH: Final = 64  # datagrams read per wake-up before the event loop runs others
SHOWING_REPEAT_S: Final = 1.0  # re-say "nobody shows it" if packets keep coming
LINK_TIMEOUT_S: Final = 10.0  # how long an operation waits for its link's socket
# Packets of one hole in a pipe asked for again; a bigger hole is older than any
# subscriber will wait for (~0.4 s of 720p), and its keyframe requests repair it.
PIPE_NACK_MAX: Final = 64


def codec_of(track: TrackParams) -> Codec:
    """The codec a pipe's parameters describe."""
    return Codec(track.mime_type, track.clock_rate, track.channels, dict(track.parameters))


def params_of(producer: Producer) -> TrackParams:
    """What another worker needs to hold a copy of ``producer``."""
    codec = producer.codec
    if codec is None or producer.kind not in ("audio", "video"):
        raise SfuError("bad_sdp", f"track {producer.id} has no codec to pipe")
    return TrackParams(
        producer_id=producer.id,
        kind="audio" if producer.kind == "audio" else "video",
        mime_type=codec.mime_type,
        clock_rate=codec.clock_rate,
        channels=codec.channels,
        parameters={k: v for k, v in codec.parameters.items() if isinstance(v, str | int)},
        max_bitrate=producer.max_bitrate,
        rids=[s.rid for s in producer.streams] if producer.layered else [],
    )


class Link:
    """This worker's end of a socket pair to another worker: routes datagrams to the
    pipes registered on it (their rooms own them). ``on_failed`` tells its owner when
    the socket fails, so that the pipes on it are closed."""

    def __init__(
        self,
        link_id: int,
        peer: int,
        sock: socket.socket,
        stats: ForwardingStats,
        on_failed: Callable[[Link], None] | None = None,
    ) -> None:
        self.id = link_id
        self.peer = peer
        self.incoming: dict[int, PipeProducer] = {}  # copies of the peer's tracks
        self.outgoing: dict[int, PipeSink] = {}  # our tracks going to the peer
        self.stats = stats
        self.on_failed = on_failed
        self.send = sock.send  # the hot path calls it directly
        self._sock = sock
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def send_control(self, data: bytes) -> None:
        """Send one small feedback datagram; a full pipe drops it (the sender retries)."""
        if self._closed:
            return
        try:
            self.send(data)
        except OSError:
            self.stats.pipe_dropped_packets += 1

    def _readable(self) -> None:
        recv = self._sock.recv
        incoming = self.incoming
        for _ in range(READ_BATCH):
            try:
                data = recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                logger.error("pipe link %d to worker %d failed: %s", self.id, self.peer, exc)
                if self.on_failed is not None:
                    self.on_failed(self)  # its owner closes the pipes on it, then it
                self.close()
                return
            if len(data) < _KEYFRAME.size:
                continue
            if data[0] == T_RTP:
                pipe = incoming.get(_PIPE_ID.unpack_from(data, 1)[0])
                if pipe is not None and len(data) >= _HEAD:
                    pipe.on_piped(data)
            else:
                try:
                    self._control(data)
                except (struct.error, ValueError):
                    logger.warning("malformed pipe control datagram on link %d", self.id)

    def _control(self, data: bytes) -> None:
        kind = data[0]
        pipe_id = _PIPE_ID.unpack_from(data, 1)[0]
        if kind == T_REPORT:
            incoming = self.incoming.get(pipe_id)
            if incoming is not None:
                _t, _id, ntp, rtp_time, layer = _REPORT.unpack(data)
                if layer < len(incoming.streams):
                    incoming.streams[layer].source_report(ntp, rtp_time)
            return
        sink = self.outgoing.get(pipe_id)
        if sink is None:
            return
        if kind == T_KEYFRAME:
            sink.paused = False  # whoever asks for a picture shows it
            layer = _KEYFRAME.unpack(data)[2]
            if layer < len(sink.producer.streams):
                sink.producer.want_keyframe(layer)
        elif kind == T_ESTIMATE:
            sink.remb = _ESTIMATE.unpack(data)[2]
            self.spawn(sink.producer.send_remb())
        elif kind == T_SHOWING:
            sink.paused = not _SHOWING.unpack(data)[2]
        elif kind == T_NACK:
            _t, _id, layer, count = _NACK.unpack_from(data)
            count = min(count, PIPE_NACK_MAX)
            if layer < len(sink.producer.streams):
                sink.resend(struct.unpack_from(f"!{count}H", data, _NACK.size), layer)
        elif kind == T_LAYERS:
            sink.wanted = _LAYERS.unpack(data)[2]
            sink.producer.update_layers(time.monotonic())

    def spawn(self, coro: Any) -> None:
        """Run a rare piece of feedback work (a REMB towards a publisher) as a task."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop reading and close the socket (idempotent). The pipes on it are their
        rooms' to close: a pipe left on a closed link sends nothing."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        for task in self._tasks:
            task.cancel()
        self._sock.close()

    async def wait_closed(self) -> None:
        """After ``close()``: wait until the tasks it cancelled have ended."""
        if self._closed:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class PipeSink:
    """A local track's copy going to another worker (the origin end of a pipe)."""

    def __init__(self, pipe_id: int, producer: Source, link: Link) -> None:
        self.id = pipe_id
        self.producer = producer
        self.remb = 0
        self.paused = False  # nobody on the other worker shows this video
        self.wanted = 1  # layers subscribers on the other worker want (a bit per layer)
        self._link = link
        self._send = link.send
        self._stats = link.stats
        self._closed = False
        producer.pipes.append(self)
        link.outgoing[pipe_id] = self

    def send(
        self, padding: int, marker: int, seq: int, timestamp: int, ssrc: int, shared: bytes,
        payload: memoryview, layer: int,
    ) -> None:  # fmt: skip
        """Pipe one packet (called by the Producer for every packet it receives)."""
        if self.paused:
            return
        flags = padding | marker | (layer << 2)
        head = _RTP.pack(T_RTP, self.id, flags, seq, timestamp, ssrc, len(shared))
        try:
            self._send(b"".join((head, shared, payload)))
        except OSError:  # full (the other worker is behind) or gone: dropped, counted
            self._stats.pipe_dropped_packets += 1
            return
        self._stats.piped_packets += 1

    def resend(self, seqs: tuple[int, ...], layer: int = 0) -> None:
        """Pipe again the packets the other worker missed, from the layer's NACK cache."""
        stream = self.producer.streams[layer]
        ssrc = stream.media_ssrc
        if self.paused or self._closed or ssrc is None:
            return
        for seq in seqs:
            cached = stream.cached(seq)
            if cached is None:
                continue  # lost before the SFU too: the origin NACKs its publisher
            padding, marker, timestamp, shared, payload = cached
            self.send(padding, marker, seq, timestamp, ssrc, shared, payload, layer)
            self._stats.pipe_resent_packets += 1

    def wanted_layers(self) -> int:
        """The layers subscribers on the other worker want, a bit per layer (the lowest
        while nobody says)."""
        return 0 if self.paused else self.wanted

    def source_report(self, ntp_time: int, rtp_timestamp: int, layer: int) -> None:
        """Pass on the publisher's sender report for one layer."""
        self._link.send_control(_REPORT.pack(T_REPORT, self.id, ntp_time, rtp_timestamp, layer))

    def close(self) -> None:
        """Stop piping (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self in self.producer.pipes:
            self.producer.pipes.remove(self)
        if self._link.outgoing.get(self.id) is self:
            del self._link.outgoing[self.id]


class PipeProducer(Source):
    """A copy of a track published on another worker: a Producer to consumers here.
    Made and closed by its room (``Room.pipe_in``)."""

    def __init__(self, pipe_id: int, link: Link, owner_id: str, track: TrackParams) -> None:
        super().__init__(
            track.producer_id, owner_id, track.kind, codec_of(track), link.stats,
            track.max_bitrate, tuple(track.rids),
        )  # fmt: skip
        self.pipe_id = pipe_id
        self._link = link
        self._showing: bool | None = None
        self._showing_said_at = 0.0
        # Per layer, the sequence number the pipe should bring next.
        self._next_seq: list[int | None] = [None] * len(self.streams)
        self.on_layers = self._say_layers
        link.incoming[pipe_id] = self

    def on_piped(self, data: bytes) -> None:
        """One packet from the origin worker."""
        _t, _id, flags, seq, timestamp, ssrc, length = _RTP.unpack_from(data)
        layer = (flags >> 2) & 0x03
        if layer >= len(self.streams):
            return
        stream = self.streams[layer]
        if ssrc != stream.media_ssrc:
            stream.new_ssrc(ssrc)
            self._next_seq[layer] = None
        expected = self._next_seq[layer]
        if expected is None or seq == expected:
            self._next_seq[layer] = (seq + 1) & 0xFFFF
        elif (seq - expected) & 0xFFFF < 0x8000:  # a hole: ask the origin's cache
            self._next_seq[layer] = (seq + 1) & 0xFFFF
            self._ask_again(expected, seq, layer)
        self.packets_in += 1
        if self._showing is False:
            self._say_showing(repeat=True)  # the origin did not hear it: say it again
        end = _HEAD + length
        stream.fan_out(
            data, memoryview(data)[end:], flags & 0x20, flags & 0x01, seq, timestamp, end,
            data[_HEAD:end],
        )  # fmt: skip

    def _ask_again(self, first: int, end: int, layer: int) -> None:
        """Packets ``first`` up to ``end`` (excluded) never came: NACK the newest of them."""
        count = min((end - first) & 0xFFFF, PIPE_NACK_MAX)
        seqs = [(end - count + i) & 0xFFFF for i in range(count)]
        self.stats.pipe_nacks_sent += 1
        self._link.send_control(
            _NACK.pack(T_NACK, self.pipe_id, layer, count) + struct.pack(f"!{count}H", *seqs)
        )

    def _say_layers(self, rids: list[str]) -> None:
        mask = sum(1 << s.index for s in self.streams if s.rid in rids)
        self._link.send_control(_LAYERS.pack(T_LAYERS, self.pipe_id, mask))

    def showing_changed(self) -> None:
        """Pause the pipe while no consumer here sends this track; resume on demand."""
        showing = any(not c.paused for c in self.consumers)
        if showing == self._showing:
            return
        self._showing = showing
        self._next_seq = [None] * len(self.streams)  # nothing is piped while paused: no hole
        self._say_showing()
        for stream in self.streams if showing else ():
            if stream.keyframe_wanted and stream.media_ssrc is not None:
                stream.want_keyframe()  # no packet may come to trigger it while paused

    def _say_showing(self, repeat: bool = False) -> None:
        now = time.monotonic()
        if repeat and now - self._showing_said_at < SHOWING_REPEAT_S:
            return
        self._showing_said_at = now
        self._link.send_control(_SHOWING.pack(T_SHOWING, self.pipe_id, int(bool(self._showing))))

    def request_keyframe(self, stream: Stream) -> None:
        """Ask the origin for a keyframe of ``stream``'s layer."""
        self._link.send_control(_KEYFRAME.pack(T_KEYFRAME, self.pipe_id, stream.index))

    def _request_keyframe(self, media_ssrc: int) -> None:
        stream = self.stream_of(media_ssrc)
        if stream is not None:
            self.request_keyframe(stream)

    async def _send_estimate(self, bitrate: int) -> None:
        if any(c.remb for c in self.consumers):  # only real estimates travel
            self._link.send_control(_ESTIMATE.pack(T_ESTIMATE, self.pipe_id, bitrate))

    def close(self) -> None:
        """Close its consumers and leave the link (idempotent; its room has stopped
        routing it)."""
        if self.closed:
            return
        super().close()
        if self._link.incoming.get(self.pipe_id) is self:
            del self._link.incoming[self.pipe_id]


class Links:
    """A worker's links to the other workers, as the pool hands them over; owned by
    the worker's ``SfuServer``, which ``on_lost`` tells whenever a link ends (its peer
    died, its socket failed) so that its rooms close the pipes on it."""

    def __init__(self, stats: ForwardingStats, on_lost: Callable[[int], Awaitable[None]]) -> None:
        self._stats = stats
        self._on_lost = on_lost
        self._links: dict[int, Link] = {}
        self._waiting: dict[int, asyncio.Future[Link]] = {}
        self._channel: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # links that failed, being ended

    def listen(self, channel: socket.socket) -> None:
        """Take links from ``channel``: LinkFrames with one socket each (SCM_RIGHTS)."""
        channel.setblocking(False)
        self._channel = channel
        asyncio.get_running_loop().add_reader(channel.fileno(), self._receive_links)

    def _receive_links(self) -> None:
        assert self._channel is not None
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._channel, 4096, 1)
            except BlockingIOError:
                return
            except OSError:
                asyncio.get_running_loop().remove_reader(self._channel.fileno())
                return
            if not data and not fds:
                asyncio.get_running_loop().remove_reader(self._channel.fileno())
                return
            try:
                frame = LinkFrame.model_validate_json(data)
            except ValueError as exc:
                logger.error("unreadable link frame: %s", exc)
                for fd in fds:
                    socket.close(fd)
                continue
            if len(fds) != 1:
                logger.error("link frame %d came with %d sockets", frame.link_id, len(fds))
                for fd in fds:
                    socket.close(fd)
                continue
            self.add_link(frame.link_id, frame.peer, socket.socket(fileno=fds[0]))

    def add_link(self, link_id: int, peer: int, sock: socket.socket) -> Link:
        """Start using one end of a socket pair to worker ``peer``."""
        old = self._links.get(link_id)
        if old is not None:  # a link of the same id before: it ends, with its pipes
            self._failed(old)
        link = self._links[link_id] = Link(link_id, peer, sock, self._stats, self._failed)
        waiting = self._waiting.pop(link_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(link)
        return link

    async def get(self, link_id: int) -> Link:
        """The link ``link_id``, once it has arrived (SfuError if it does not in time)."""
        # The socket travels on another channel than the operation naming it: wait.
        link = self._links.get(link_id)
        if link is not None:
            return link
        future = self._waiting.get(link_id)
        if future is None:
            future = self._waiting[link_id] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(future), LINK_TIMEOUT_S)
        except TimeoutError:
            self._waiting.pop(link_id, None)
            raise SfuError("media_failed", f"link {link_id} never arrived") from None

    def _failed(self, link: Link) -> None:
        """End a link from a callback: now for routing, its pipes in a task owned here."""
        if self._links.get(link.id) is not link:
            return
        del self._links[link.id]
        link.close()
        task = asyncio.create_task(self._end(link), name=f"unlink-{link.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def unlink(self, link_id: int) -> None:
        """End a link: the owner closes the pipes on it, then its socket closes."""
        link = self._links.pop(link_id, None)
        if link is not None:
            await self._end(link)

    async def _end(self, link: Link) -> None:
        try:
            await self._on_lost(link.id)
        finally:
            link.close()
            await link.wait_closed()

    def count(self) -> int:
        """Links open now."""
        return len(self._links)

    async def close(self) -> None:
        """Close every link (idempotent; the rooms, and so the pipes, closed before)."""
        if self._channel is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._channel.fileno())
            self._channel.close()
            self._channel = None
        links = list(self._links.values())
        self._links.clear()
        for link in links:
            link.close()
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in links:
            await link.wait_closed()
