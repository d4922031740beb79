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
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCIceServer
from pydantic import BaseModel, ValidationError

from runtime.collector import tune_for_latency
from runtime.logs import configure_logging, log_context

from .backend import SfuError, TrackInfo
from .candidates import CandidatePolicy
from .pipe import params_of
from .server import SfuServer
from .worker_protocol import (
    ADD_ICE_CANDIDATE,
    CLOSE_ROOM,
    JOIN,
    LEAVE,
    MAX_FRAME_BYTES,
    PIPE_CLOSE,
    PIPE_IN,
    PIPE_OUT,
    PUBLISH,
    SET_GALLERY,
    SET_RECORDING,
    SET_SPLIT,
    SET_SPOTLIGHT,
    SET_VISIBLE,
    STATS,
    SUBSCRIBE_ANSWER,
    UNLINK,
    A,
    Done,
    IceCandidateArgs,
    JoinArgs,
    LayersEvent,
    NoArgs,
    OfferEvent,
    Op,
    ParticipantArgs,
    PipeCloseArgs,
    PipeInArgs,
    PipeOutArgs,
    PublishArgs,
    PublishResult,
    R,
    Request,
    Response,
    RoomArgs,
    SetGalleryArgs,
    SetRecordingArgs,
    SetSplitArgs,
    SetSpotlightArgs,
    SetVisibleArgs,
    SpeakerCandidateEvent,
    SpeakerEvent,
    StatsResult,
    SubscribeAnswerArgs,
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
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._sfu = sfu
        self._tasks: set[asyncio.Task[None]] = set()
        sfu.on_active_speaker = self._speaker
        sfu.on_telemetry = self._telemetry
        sfu.on_speaker_candidate = self._speaker_candidate
        self._handlers: dict[str, Handler] = dict(
            [
                bind(JOIN, self._join),
                bind(LEAVE, self._leave),
                bind(PUBLISH, self._publish),
                bind(SUBSCRIBE_ANSWER, self._subscribe_answer),
                bind(ADD_ICE_CANDIDATE, self._add_ice_candidate),
                bind(SET_VISIBLE, self._set_visible),
                bind(SET_GALLERY, self._set_gallery),
                bind(SET_SPOTLIGHT, self._set_spotlight),
                bind(CLOSE_ROOM, self._close_room),
                bind(STATS, self._stats),
                bind(PIPE_IN, self._pipe_in),
                bind(PIPE_OUT, self._pipe_out),
                bind(PIPE_CLOSE, self._pipe_close),
                bind(UNLINK, self._unlink),
                bind(SET_SPLIT, self._set_split),
                bind(SET_RECORDING, self._set_recording),
            ]
        )

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
            result = await self._handlers[request.op](request)
            response = Response(id=request.id, ok=True, result=result.model_dump(mode="json"))
        except SfuError as exc:
            response = Response(id=request.id, ok=False, code=exc.code, message=exc.message)
        except BadArguments as exc:
            # The pool and the worker disagree on an operation's signature: a bug.
            logger.exception("worker operation %s refused: %s", request.op, exc)
            response = Response(id=request.id, ok=False, code="bad_request", message=str(exc))
        except (TypeError, ValueError) as exc:
            response = Response(id=request.id, ok=False, code="bad_request", message=str(exc))
        except Exception:
            logger.exception("worker operation %s failed", request.op)
            response = Response(
                id=request.id, ok=False, code="internal", message="the media server failed"
            )
        with contextlib.suppress(ConnectionError):
            await self.send(response)

    # -- the operations (sfu/worker_protocol.py), each with its own models ---------------

    async def _join(self, args: JoinArgs) -> Done:
        signal = _RemoteSignal(self, args.room_id, args.participant_id)
        await self._sfu.join(
            args.room_id, args.participant_id, args.role, signal, args.gallery, args.spotlight
        )
        return Done()

    async def _leave(self, args: ParticipantArgs) -> Done:
        await self._sfu.leave(args.room_id, args.participant_id)
        return Done()

    async def _publish(self, args: PublishArgs) -> PublishResult:
        answer = await self._sfu.publish(args.room_id, args.participant_id, args.offer_sdp)
        producers = self._sfu.published(args.room_id, args.participant_id)
        return PublishResult(answer=answer, producers=[params_of(p) for p in producers])

    async def _subscribe_answer(self, args: SubscribeAnswerArgs) -> Done:
        await self._sfu.subscribe_answer(args.room_id, args.participant_id, args.answer_sdp)
        return Done()

    async def _add_ice_candidate(self, args: IceCandidateArgs) -> Done:
        await self._sfu.add_ice_candidate(
            args.room_id, args.participant_id, args.target, args.candidate, args.sdp_mid,
            args.sdp_mline_index,
        )  # fmt: skip
        return Done()

    async def _set_visible(self, args: SetVisibleArgs) -> Done:
        await self._sfu.set_visible(
            args.room_id, args.participant_id, args.visible, args.sizes, args.max_height
        )
        return Done()

    async def _set_gallery(self, args: SetGalleryArgs) -> Done:
        await self._sfu.set_gallery(args.room_id, args.enabled)
        return Done()

    async def _set_spotlight(self, args: SetSpotlightArgs) -> Done:
        await self._sfu.set_spotlight(args.room_id, args.participant_id)
        return Done()

    async def _set_recording(self, args: SetRecordingArgs) -> Done:
        await self._sfu.set_recording(args.room_id, args.directory, args.audio)
        return Done()

    async def _close_room(self, args: RoomArgs) -> Done:
        await self._sfu.close_room(args.room_id)
        return Done()

    async def _stats(self, _args: NoArgs) -> StatsResult:
        return StatsResult(
            counters={**await self._sfu.stats(), "pipe_links": self._sfu.links.count()},
            event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )

    async def _pipe_in(self, args: PipeInArgs) -> Done:
        await self._sfu.pipe_in(
            args.room_id, args.link_id, args.pipe_id, args.owner_id, args.owner_role, args.track
        )
        return Done()

    async def _pipe_out(self, args: PipeOutArgs) -> Done:
        await self._sfu.pipe_out(
            args.room_id, args.link_id, args.pipe_id, args.owner_id, args.producer_id
        )
        return Done()

    async def _pipe_close(self, args: PipeCloseArgs) -> Done:
        await self._sfu.pipe_close(args.room_id, args.link_id, args.pipe_id)
        return Done()

    async def _unlink(self, args: UnlinkArgs) -> Done:
        await self._sfu.unlink(args.link_id)
        return Done()

    async def _set_split(self, args: SetSplitArgs) -> Done:
        self._sfu.set_split(args.room_id, args.split)
        return Done()


class BadArguments(Exception):
    """A request whose arguments do not fit its operation's model."""


Handler = Callable[[Request], Awaitable[BaseModel]]


def bind(op: Op[A, R], run: Callable[[A], Awaitable[R]]) -> tuple[str, Handler]:
    """``op``'s handler: its arguments validated against its model, then ``run``
    (mypy checks that ``run`` takes the operation's argument model and returns its
    result model)."""

    async def handle(request: Request) -> BaseModel:
        try:
            args = op.arguments(request)
        except ValidationError as exc:
            raise BadArguments(f"{op.name}: {exc}") from exc
        return await run(args)

    return op.name, handle


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
    fd: int,
    video_bitrate_cap: int,
    stun_urls: tuple[str, ...] = (),
    links_fd: int | None = None,
    private_candidates: bool = True,
) -> None:
    """Serve the socket ``fd`` until it closes, then close every room and link."""
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME_BYTES)
    servers = [RTCIceServer(urls=url) for url in stun_urls]
    sfu = SfuServer(
        ice_servers=servers,
        video_bitrate_cap=video_bitrate_cap,
        candidate_policy=CandidatePolicy(private=private_candidates),
    )
    if links_fd is not None:
        sfu.links.listen(socket.socket(fileno=links_fd))
    try:
        await Channel(reader, writer, sfu).serve()
    finally:
        await sfu.close()  # its rooms, their pipes, then its links
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
        "--refuse-private-candidates", action="store_true",
        help="ignore clients' ICE candidates in private address ranges",
    )  # fmt: skip
    parser.add_argument(
        "--event-loop", choices=["uvloop", "asyncio"], default="uvloop",
        help="uvloop (default; falls back to asyncio where it is not installed) or asyncio",
    )  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format, process_label="sfu-worker")
    tune_for_latency()  # a full collection stops forwarding for its length
    main_task = run(
        args.fd, args.video_bitrate_cap, tuple(args.stun), args.links_fd,
        private_candidates=not args.refuse_private_candidates,
    )  # fmt: skip
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
