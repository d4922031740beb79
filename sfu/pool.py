"""Classes placed across SFU worker processes, like mediasoup workers.

``WorkerPool`` implements ``MediaBackend`` (sfu/backend.py): each class lives on one
worker, chosen least-loaded when its first participant joins; every call about the
class goes to that worker over its socket (sfu/worker_protocol.py). A worker that dies
ends only its classes (reported through ``on_room_failed``) and is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .backend import FailureCallback, SpeakerCallback, TelemetryCallback
from .peer import PeerSignal, SfuError, TrackInfo
from .topology import Role
from .worker_protocol import (
    MAX_FRAME_BYTES,
    OfferEvent,
    Operation,
    Request,
    Response,
    SpeakerEvent,
    TelemetryEvent,
    decode,
    encode,
)

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


@dataclass(eq=False)
class Worker:
    """One worker process and what is placed on it."""

    index: int
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: dict[int, asyncio.Future[Response]] = field(default_factory=dict)
    rooms: dict[str, int] = field(default_factory=dict)  # room id -> participants
    alive: bool = True

    @property
    def load(self) -> int:
        """Participants on this worker."""
        return sum(self.rooms.values())


class WorkerPool:
    """``count`` SFU worker processes behind the MediaBackend interface."""

    def __init__(
        self,
        count: int,
        log_level: str = "INFO",
        video_bitrate_cap: int = 2_500_000,
        stun_urls: tuple[str, ...] = (),
    ) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.count = count
        self.on_active_speaker: SpeakerCallback | None = None
        self.on_room_failed: FailureCallback | None = None
        self.on_telemetry: TelemetryCallback | None = None
        self._log_level = log_level
        self._video_bitrate_cap = video_bitrate_cap
        self._stun_urls = stun_urls
        self._workers: list[Worker] = []
        self._placement: dict[str, Worker] = {}
        self._signals: dict[tuple[str, str], PeerSignal] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker."""
        self._workers = [await self._spawn(i) for i in range(self.count)]

    async def _spawn(self, index: int) -> Worker:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sfu.worker", "--fd", str(child.fileno()),
                "--log-level", self._log_level,
                "--video-bitrate-cap", str(self._video_bitrate_cap),
                *[arg for url in self._stun_urls for arg in ("--stun", url)],
                pass_fds=[child.fileno()],
            )  # fmt: skip
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=MAX_FRAME_BYTES)
        worker = Worker(index, process, reader, writer)
        self._own(self._read(worker))
        logger.info("SFU worker %d started (pid %d)", index, process.pid)
        return worker

    def _own(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, worker: Worker) -> None:
        try:
            while line := await worker.reader.readline():
                try:
                    frame = decode(line)
                except ValidationError as exc:
                    logger.error("unreadable frame from worker %d: %s", worker.index, exc)
                    continue
                if isinstance(frame, Response):
                    future = worker.pending.pop(frame.id, None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif isinstance(frame, OfferEvent):
                    self._deliver_offer(frame)
                elif isinstance(frame, TelemetryEvent):
                    if self.on_telemetry is not None:
                        self.on_telemetry(frame.room_id, frame.participant_id, frame.data)
                elif isinstance(frame, SpeakerEvent) and self.on_active_speaker is not None:
                    self.on_active_speaker(frame.room_id, frame.participant_id)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not self._closed:
                await self._lost(worker)

    def _deliver_offer(self, event: OfferEvent) -> None:
        signal = self._signals.get((event.room_id, event.participant_id))
        if signal is None:
            return
        tracks = [TrackInfo(t.mid, t.participant_id, t.kind) for t in event.tracks]
        self._own(signal.send_offer(event.sdp, tracks))

    async def _lost(self, worker: Worker) -> None:
        """A worker died: fail its calls, end its classes, start a replacement."""
        worker.alive = False
        code = await worker.process.wait()
        logger.error(
            "SFU worker %d (pid %d) exited with %s; ending its %d classes",
            worker.index, worker.process.pid, code, len(worker.rooms),
        )  # fmt: skip
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(SfuError("media_failed", "the media server stopped"))
        worker.pending.clear()
        for room_id in list(worker.rooms):
            self._placement.pop(room_id, None)
            for key in [k for k in self._signals if k[0] == room_id]:
                del self._signals[key]
            if self.on_room_failed is not None:
                self.on_room_failed(room_id, f"media worker exited with {code}")
        worker.rooms.clear()
        if not self._closed:
            self._workers[worker.index] = await self._spawn(worker.index)

    async def close(self) -> None:
        """Stop every worker (they close their rooms), then the reading tasks."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.writer.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- calls --------------------------------------------------------------------------

    async def _call(self, worker: Worker, op: Operation, **args: Any) -> Any:
        if not worker.alive:
            raise SfuError("media_failed", "the media server for this class stopped")
        request = Request(id=next(self._ids), op=op, args=args)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        worker.pending[request.id] = future
        worker.writer.write(encode(request))
        try:
            await worker.writer.drain()
            response = await asyncio.wait_for(future, CALL_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            raise SfuError("media_failed", "the media server did not answer") from None
        finally:
            worker.pending.pop(request.id, None)
        if not response.ok:
            raise SfuError(response.code, response.message)
        return response.result

    def _placed(self, room_id: str) -> Worker:
        worker = self._placement.get(room_id)
        if worker is None:
            raise SfuError("not_joined", "this class has no media session")
        return worker

    # -- MediaBackend -------------------------------------------------------------------

    async def join(
        self, room_id: str, participant_id: str, role: Role, signal: PeerSignal, gallery: bool
    ) -> None:
        """Place the class on the least-loaded worker if new, then add the participant."""
        worker = self._placement.get(room_id)
        if worker is None:
            alive = [w for w in self._workers if w.alive]
            if not alive:
                raise SfuError("media_failed", "no media server is running")
            worker = self._placement[room_id] = min(alive, key=lambda w: (w.load, len(w.rooms)))
        worker.rooms[room_id] = worker.rooms.get(room_id, 0) + 1
        self._signals[(room_id, participant_id)] = signal
        try:
            await self._call(
                worker, "join", room_id=room_id, participant_id=participant_id, role=role,
                gallery=gallery,
            )  # fmt: skip
        except BaseException:
            self._forget(worker, room_id, participant_id)
            raise

    def _forget(self, worker: Worker, room_id: str, participant_id: str) -> None:
        self._signals.pop((room_id, participant_id), None)
        left = worker.rooms.get(room_id, 0) - 1
        if left > 0:
            worker.rooms[room_id] = left
        else:
            worker.rooms.pop(room_id, None)
            if self._placement.get(room_id) is worker:
                del self._placement[room_id]

    async def leave(self, room_id: str, participant_id: str) -> None:
        """Remove a participant; the worker closes the room when it empties."""
        worker = self._placement.get(room_id)
        if worker is None or (room_id, participant_id) not in self._signals:
            return
        self._forget(worker, room_id, participant_id)
        with contextlib.suppress(SfuError):
            await self._call(worker, "leave", room_id=room_id, participant_id=participant_id)

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Answer a publish offer on the class's worker."""
        answer = await self._call(
            self._placed(room_id), "publish", room_id=room_id, participant_id=participant_id,
            offer_sdp=offer_sdp,
        )  # fmt: skip
        return str(answer)

    async def subscribe_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        """Apply a subscribe answer on the class's worker."""
        await self._call(
            self._placed(room_id), "subscribe_answer", room_id=room_id,
            participant_id=participant_id, answer_sdp=answer_sdp,
        )  # fmt: skip

    async def add_ice_candidate(
        self,
        room_id: str,
        participant_id: str,
        target: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled ICE candidate, to the class's worker."""
        await self._call(
            self._placed(room_id), "add_ice_candidate", room_id=room_id,
            participant_id=participant_id, target=target, candidate=candidate,
            sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index,
        )  # fmt: skip

    async def set_visible(
        self, room_id: str, participant_id: str, visible: list[str] | None
    ) -> None:
        """Whose video a participant shows."""
        await self._call(
            self._placed(room_id), "set_visible", room_id=room_id,
            participant_id=participant_id, visible=visible,
        )  # fmt: skip

    async def set_gallery(self, room_id: str, enabled: bool) -> None:
        """Gallery mode, on the class's worker (nothing to do for an empty class)."""
        worker = self._placement.get(room_id)
        if worker is not None:
            await self._call(worker, "set_gallery", room_id=room_id, enabled=enabled)

    async def close_room(self, room_id: str) -> None:
        """End a class's media side on its worker."""
        worker = self._placement.pop(room_id, None)
        if worker is None:
            return
        worker.rooms.pop(room_id, None)
        for key in [k for k in self._signals if k[0] == room_id]:
            del self._signals[key]
        with contextlib.suppress(SfuError):
            await self._call(worker, "close_room", room_id=room_id)

    async def stats(self) -> dict[str, Any]:
        """Counters summed over the workers, and each worker's pid and load."""
        total: dict[str, Any] = {}
        workers = []
        for worker in self._workers:
            info: dict[str, Any] = {
                "pid": worker.process.pid, "alive": worker.alive,
                "rooms": len(worker.rooms), "participants": worker.load,
            }  # fmt: skip
            workers.append(info)
            if not worker.alive:
                continue
            with contextlib.suppress(SfuError):
                for key, value in (await self._call(worker, "stats")).items():
                    total[key] = total.get(key, 0) + value
        total.setdefault("rooms", 0)
        total.setdefault("participants", 0)
        total["workers"] = workers
        return total
