"""An SFU worker process: one ``SfuServer``, driven over a socket by the signaling process.

Started by ``WorkerPool`` as ``python -m sfu.worker --fd N --links-fd M``; N is its end
of a Unix socket pair. It answers ``Request`` frames, sends ``OfferEvent`` /
``SpeakerEvent`` frames, and exits when the other end closes. M is a datagram socket
on which the pool hands it links to the other workers (sfu/pipe.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import socket
from typing import Any

from aiortc import RTCIceServer
from pydantic import ValidationError

from pulseroom.collector import tune_for_latency
from pulseroom.logs import configure_logging, log_context

from .peer import SfuError, TrackInfo
from .pipe import PipeHub, params_of
from .server import SfuServer
from .worker_protocol import (
    MAX_FRAME_BYTES,
    LayersEvent,
    OfferEvent,
    PipeCloseArgs,
    PipeInArgs,
    PipeOutArgs,
    PublishResult,
    Request,
    Response,
    SetSplitArgs,
    SpeakerCandidateEvent,
    SpeakerEvent,
    TelemetryEvent,
    TrackOut,
    UnlinkArgs,
    decode,
    encode,
)

logger = logging.getLogger(__name__)


class Channel:
    """The worker's end of the socket: frames out, requests in, one task per request."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sfu: SfuServer,
        pipes: PipeHub | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._sfu = sfu
        self._pipes = pipes or PipeHub(sfu.rooms, sfu.stats_counters)
        self._tasks: set[asyncio.Task[None]] = set()
        sfu.on_active_speaker = self._speaker
        sfu.on_telemetry = self._telemetry
        sfu.on_speaker_candidate = self._speaker_candidate

    async def send(self, frame: Response | OfferEvent | LayersEvent | SpeakerEvent) -> None:
        """Write one frame (a single write per frame keeps frames whole)."""
        self._writer.write(encode(frame))
        await self._writer.drain()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _telemetry(self, room_id: str, participant_id: str, message: str) -> None:
        # No task or drain per message: the data channel's rate limit bounds the buffer.
        frame = TelemetryEvent(room_id=room_id, participant_id=participant_id, data=message)
        self._writer.write(encode(frame))

    def _speaker(self, room_id: str, participant_id: str | None) -> None:
        self._spawn(self.send(SpeakerEvent(room_id=room_id, participant_id=participant_id)))

    def _speaker_candidate(self, room_id: str, participant_id: str | None, loud: float) -> None:
        # ~2.5 small frames a second per split class: written without a task or drain.
        frame = SpeakerCandidateEvent(
            room_id=room_id, participant_id=participant_id, loudness=round(loud, 2)
        )
        self._writer.write(encode(frame))

    async def serve(self) -> None:
        """Handle requests until the signaling process closes the socket."""
        try:
            while line := await self._reader.readline():
                try:
                    frame = decode(line)
                except ValidationError as exc:
                    logger.error("unreadable frame from the signaling process: %s", exc)
                    continue
                if isinstance(frame, Request):
                    self._spawn(self._handle(frame))
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, request: Request) -> None:
        # Records (and tasks started) while serving a request name its class; not its
        # participant on a join, whose room-wide tasks would carry the first joiner's id.
        room_id = request.args.get("room_id")
        participant_id = None if request.op == "join" else request.args.get("participant_id")
        with log_context(
            class_id=room_id if isinstance(room_id, str) else None,
            participant_id=participant_id if isinstance(participant_id, str) else None,
        ):
            await self._answer(request)

    async def _answer(self, request: Request) -> None:
        try:
            result = await self._call(request)
            response = Response(id=request.id, ok=True, result=result)
        except SfuError as exc:
            response = Response(id=request.id, ok=False, code=exc.code, message=exc.message)
        except (TypeError, ValueError) as exc:
            response = Response(id=request.id, ok=False, code="bad_request", message=str(exc))
        except Exception:
            logger.exception("worker operation %s failed", request.op)
            response = Response(
                id=request.id, ok=False, code="internal", message="the media server failed"
            )
        with contextlib.suppress(ConnectionError):
            await self.send(response)

    async def _call(self, request: Request) -> Any:
        args = dict(request.args)
        if request.op == "join":
            signal = _RemoteSignal(self, args["room_id"], args["participant_id"])
            await self._sfu.join(
                args["room_id"],
                args["participant_id"],
                args["role"],
                signal,
                args["gallery"],
                args.get("spotlight"),
            )
            return None
        if request.op == "stats":
            return {
                **await self._sfu.stats(),
                "pipe_links": self._pipes.links(),
                # "uvloop" or "asyncio": which loop this worker really runs.
                "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
            }
        if request.op == "publish":
            answer = await self._sfu.publish(**args)
            room = self._sfu.rooms.get(args["room_id"])
            participant = room.participants.get(args["participant_id"]) if room else None
            producers = list(participant.producers.values()) if participant else []
            result = PublishResult(answer=answer, producers=[params_of(p) for p in producers])
            return result.model_dump()
        if request.op == "pipe_in":
            return await self._pipes.pipe_in(PipeInArgs.model_validate(args))
        if request.op == "pipe_out":
            return await self._pipes.pipe_out(PipeOutArgs.model_validate(args))
        if request.op == "pipe_close":
            closing = PipeCloseArgs.model_validate(args)
            return self._pipes.pipe_close(closing.link_id, closing.pipe_id)
        if request.op == "unlink":
            return self._pipes.unlink(UnlinkArgs.model_validate(args).link_id)
        if request.op == "set_split":
            split = SetSplitArgs.model_validate(args)
            return self._sfu.set_split(split.room_id, split.split)
        # Every other operation has the MediaBackend signature with plain arguments.
        method = getattr(self._sfu, request.op)
        return await method(**args)


class _RemoteSignal:
    """A participant's PeerSignal inside the worker: offers travel to the main process."""

    def __init__(self, channel: Channel, room_id: str, participant_id: str) -> None:
        self._channel = channel
        self._room_id = room_id
        self._participant_id = participant_id

    async def send_offer(self, sdp: str, tracks: list[TrackInfo]) -> None:
        await self._channel.send(
            OfferEvent(
                room_id=self._room_id,
                participant_id=self._participant_id,
                sdp=sdp,
                tracks=[
                    TrackOut(mid=t.mid, participant_id=t.participant_id, kind=t.kind)
                    for t in tracks
                ],
            )
        )

    async def send_layers(self, rids: list[str]) -> None:
        await self._channel.send(
            LayersEvent(room_id=self._room_id, participant_id=self._participant_id, rids=rids)
        )


async def run(
    fd: int, video_bitrate_cap: int, stun_urls: tuple[str, ...] = (), links_fd: int | None = None
) -> None:
    """Serve the socket ``fd`` until it closes, then close every room and link."""
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME_BYTES)
    servers = [RTCIceServer(urls=url) for url in stun_urls]
    sfu = SfuServer(ice_servers=servers, video_bitrate_cap=video_bitrate_cap)
    pipes = PipeHub(sfu.rooms, sfu.stats_counters)
    if links_fd is not None:
        pipes.listen(socket.socket(fileno=links_fd))
    try:
        await Channel(reader, writer, sfu, pipes).serve()
    finally:
        await sfu.close()
        pipes.close()
        writer.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m sfu.worker``."""
    parser = argparse.ArgumentParser(prog="sfu.worker")
    parser.add_argument("--fd", type=int, required=True, help="the worker's socket")
    parser.add_argument("--links-fd", type=int, default=None, help="where links arrive")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--video-bitrate-cap", type=int, default=2_500_000)
    parser.add_argument("--stun", action="append", default=[], help="a STUN URL (repeatable)")
    parser.add_argument(
        "--event-loop", choices=["uvloop", "asyncio"], default="uvloop",
        help="uvloop (default; falls back to asyncio where it is not installed) or asyncio",
    )  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format, process_label="sfu-worker")
    tune_for_latency()  # a full collection stops forwarding for its length
    main_task = run(args.fd, args.video_bitrate_cap, tuple(args.stun), args.links_fd)
    event_loop = args.event_loop
    if event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        logger.warning("uvloop is not installed; using asyncio's loop")
        event_loop = "asyncio"
    if event_loop == "uvloop":
        import uvloop

        uvloop.run(main_task)
    else:
        asyncio.run(main_task)


if __name__ == "__main__":
    main()
