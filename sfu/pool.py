"""Classes placed across SFU worker processes, like mediasoup workers.

``WorkerPool`` implements ``MediaBackend`` (sfu/backend.py). A class starts on the
least-loaded worker; each participant (both their connections) is placed on one worker
of their class, and a class bigger than ``worker_participants`` spills onto other
workers (sfu/placement.py), its tracks piped between them like mediasoup's
pipeToRouter (sfu/pipe.py; the pool's ``Piping``, sfu/piping.py, makes the links and
tells each worker which pipes to hold). Every call about a participant goes to their
worker over its socket (sfu/worker_protocol.py). A worker that dies ends only the
classes with someone on it (reported through ``on_room_failed``; their parts on other
workers are closed) and is replaced.
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

from .backend import (
    FailureCallback,
    PeerSignal,
    Role,
    SfuError,
    SpeakerCallback,
    TelemetryCallback,
    TrackInfo,
)
from .piping import Piping
from .placement import ClassPlan, Member
from .worker_protocol import (
    ADD_ICE_CANDIDATE,
    CLOSE_ROOM,
    JOIN,
    LEAVE,
    MAX_FRAME_BYTES,
    PUBLISH,
    SET_GALLERY,
    SET_RECORDING,
    SET_SPOTLIGHT,
    SET_VISIBLE,
    STATS,
    SUBSCRIBE_ANSWER,
    UNLINK,
    A,
    IceCandidateArgs,
    JoinArgs,
    LayersEvent,
    NoArgs,
    OfferEvent,
    Op,
    ParticipantArgs,
    PublishArgs,
    R,
    Response,
    RoomArgs,
    SetGalleryArgs,
    SetRecordingArgs,
    SetSpotlightArgs,
    SetVisibleArgs,
    SpeakerCandidateEvent,
    SpeakerEvent,
    SubscribeAnswerArgs,
    TelemetryEvent,
    UnlinkArgs,
    decode,
    encode,
    request,
)

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
# Participants of one class on one worker before it spills onto another (the
# PULSEROOM_SFU_WORKER_PARTICIPANTS default; docs/benchmarks.md, "One class across two
# workers").
WORKER_PARTICIPANTS = 40


@dataclass(eq=False)
class Worker:
    """One worker process and what is placed on it."""

    index: int
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    links: socket.socket  # where this worker's ends of links to other workers go
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
        log_format: str = "text",
        worker_participants: int = WORKER_PARTICIPANTS,
        event_loop: str = "uvloop",
        private_candidates: bool = True,
    ) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        if worker_participants < 1:
            raise ValueError("a class needs room for at least one participant per worker")
        self.count = count
        self.worker_participants = worker_participants
        self.on_active_speaker: SpeakerCallback | None = None
        self.on_room_failed: FailureCallback | None = None
        self.on_telemetry: TelemetryCallback | None = None
        self._log_level = log_level
        self._log_format = log_format
        self._event_loop = event_loop
        self.restarts = 0  # workers replaced after dying
        self._video_bitrate_cap = video_bitrate_cap
        self._stun_urls = stun_urls
        self._private_candidates = private_candidates
        self._workers: list[Worker] = []
        self._classes: dict[str, ClassPlan] = {}
        self._piping = Piping(self)  # links between the workers, split classes' pipes
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
        links, links_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sfu.worker", "--fd", str(child.fileno()),
                "--links-fd", str(links_child.fileno()),
                "--log-level", self._log_level, "--log-format", self._log_format,
                "--video-bitrate-cap", str(self._video_bitrate_cap),
                "--event-loop", self._event_loop,
                *[arg for url in self._stun_urls for arg in ("--stun", url)],
                *([] if self._private_candidates else ["--refuse-private-candidates"]),
                pass_fds=[child.fileno(), links_child.fileno()],
            )  # fmt: skip
        except BaseException:
            links.close()
            raise
        finally:
            child.close()
            links_child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=MAX_FRAME_BYTES)
        worker = Worker(index, process, reader, writer, links)
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
                elif isinstance(frame, LayersEvent):
                    self._deliver_layers(frame)
                elif isinstance(frame, TelemetryEvent):
                    if self.on_telemetry is not None:
                        self.on_telemetry(frame.room_id, frame.participant_id, frame.data)
                elif isinstance(frame, SpeakerEvent) and self.on_active_speaker is not None:
                    self.on_active_speaker(frame.room_id, frame.participant_id)
                elif isinstance(frame, SpeakerCandidateEvent):
                    self._speaker_candidate(worker, frame)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not self._closed:
                await self._lost(worker)

    def _speaker_candidate(self, worker: Worker, event: SpeakerCandidateEvent) -> None:
        """A split class's speaker window on one worker: the election is here."""
        plan = self._classes.get(event.room_id)
        if plan is None:
            return
        before = plan.election.current
        after = plan.candidate(
            worker.index, event.participant_id, event.loudness, asyncio.get_running_loop().time()
        )
        if after != before and self.on_active_speaker is not None:
            self.on_active_speaker(event.room_id, after)

    def _deliver_layers(self, event: LayersEvent) -> None:
        signal = self._signals.get((event.room_id, event.participant_id))
        if signal is not None:
            self._own(signal.send_layers(event.rids))

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
        worker.links.close()
        ended = [r for r, plan in self._classes.items() if worker.index in plan.workers()]
        for room_id in ended:
            plan = self._classes.pop(room_id)
            self._piping.forget(room_id)
            for key in [k for k in self._signals if k[0] == room_id]:
                del self._signals[key]
            if self.on_room_failed is not None:
                self.on_room_failed(room_id, f"media worker exited with {code}")
            # The class's parts on other workers end too: half a class is no class.
            for index in plan.workers() - {worker.index}:
                other = self._workers[index]
                other.rooms.pop(room_id, None)
                with contextlib.suppress(SfuError):
                    await self._call(other, CLOSE_ROOM, RoomArgs(room_id=room_id))
        worker.rooms.clear()
        for index, link_id in self._piping.drop_worker(worker.index):
            with contextlib.suppress(SfuError):
                await self._call(self._workers[index], UNLINK, UnlinkArgs(link_id=link_id))
        if not self._closed:
            self.restarts += 1
            self._workers[worker.index] = await self._spawn(worker.index)

    async def close(self) -> None:
        """Stop every worker (they close their rooms), then the reading tasks."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.writer.close()
            worker.links.close()
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

    async def _call(self, worker: Worker, op: Op[A, R], args: A) -> R:
        """Run ``op`` on ``worker`` with its argument model; its result model back."""
        if not worker.alive:
            raise SfuError("media_failed", "the media server for this class stopped")
        call = request(next(self._ids), op, args)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        worker.pending[call.id] = future
        worker.writer.write(encode(call))
        try:
            await worker.writer.drain()
            response = await asyncio.wait_for(future, CALL_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            raise SfuError("media_failed", "the media server did not answer") from None
        finally:
            worker.pending.pop(call.id, None)
        if not response.ok:
            raise SfuError(response.code, response.message)
        return op.result_of(response)

    def _placed(self, room_id: str, participant_id: str) -> Worker:
        """The worker holding a participant's connections."""
        plan = self._classes.get(room_id)
        member = plan.members.get(participant_id) if plan is not None else None
        if member is None:
            raise SfuError("not_joined", "this participant has no media session")
        return self._workers[member.worker]

    def _class_workers(self, room_id: str) -> list[Worker]:
        plan = self._classes.get(room_id)
        return [self._workers[i] for i in sorted(plan.workers())] if plan is not None else []

    # -- pipes (sfu/piping.py) --------------------------------------------------------

    async def call_worker(self, index: int, op: Op[A, R], args: A) -> R:
        """Run an operation on worker ``index`` (for the pool's ``Piping``)."""
        return await self._call(self._workers[index], op, args)

    def link_channel(self, index: int) -> socket.socket:
        """Where worker ``index`` takes its ends of links (for the pool's ``Piping``)."""
        return self._workers[index].links

    def class_plan(self, room_id: str) -> ClassPlan | None:
        """A class as placed now (for the pool's ``Piping``)."""
        return self._classes.get(room_id)

    def _resync(self, room_id: str) -> None:
        """Update a class's pipes in the background: a join or publish must not wait for
        it (signaling acks the join only after it returns, and the pipes' renegotiation
        sends offers the client can only answer once joined)."""
        self._own(self._sync_logged(room_id))

    async def _sync_logged(self, room_id: str) -> None:
        try:
            await self._piping.sync(room_id)
        except Exception:
            logger.exception("class %s: updating its pipes failed", room_id)

    # -- MediaBackend -------------------------------------------------------------------

    async def join(
        self,
        room_id: str,
        participant_id: str,
        role: Role,
        signal: PeerSignal,
        gallery: bool,
        spotlight: str | None = None,
    ) -> None:
        """Place the participant on a worker of their class (sfu/placement.py), add them."""
        plan = self._classes.get(room_id)
        if plan is None:
            plan = self._classes[room_id] = ClassPlan(room_id, gallery, spotlight)
        if participant_id in plan.members:
            raise SfuError("already_joined", "this participant is already in the class")
        alive = [w.index for w in self._workers if w.alive]
        if not alive:
            if not plan.members:
                del self._classes[room_id]
            raise SfuError("media_failed", "no media server is running")
        loads = {w.index: w.load for w in self._workers}
        worker = self._workers[plan.choose_worker(alive, loads, self.worker_participants)]
        plan.members[participant_id] = Member(participant_id, role, worker.index)
        worker.rooms[room_id] = worker.rooms.get(room_id, 0) + 1
        self._signals[(room_id, participant_id)] = signal
        try:
            await self._call(
                worker, JOIN, JoinArgs(
                    room_id=room_id, participant_id=participant_id, role=role,
                    gallery=gallery, spotlight=spotlight,
                ),
            )  # fmt: skip
        except BaseException:
            self._forget(room_id, participant_id)
            raise
        self._resync(room_id)

    def _forget(self, room_id: str, participant_id: str) -> None:
        self._signals.pop((room_id, participant_id), None)
        plan = self._classes.get(room_id)
        member = plan.members.pop(participant_id, None) if plan is not None else None
        if plan is None or member is None:
            return
        for track_id in [t for t, (owner, _) in plan.tracks.items() if owner == participant_id]:
            del plan.tracks[track_id]
        worker = self._workers[member.worker]
        left = worker.rooms.get(room_id, 0) - 1
        if left > 0:
            worker.rooms[room_id] = left
        else:
            worker.rooms.pop(room_id, None)
            # Its part of the class closes with its last member, and the pipes' ends
            # there with it: forget them now (a newcomer there gets new ones), close the
            # other ends.
            stale = [k for k, p in plan.pipes.items() if member.worker in (p.origin, p.destination)]
            self._own(self._piping.close_pipes(room_id, [plan.pipes.pop(k) for k in stale]))
        if not plan.members:
            del self._classes[room_id]
            self._piping.forget(room_id)

    async def leave(self, room_id: str, participant_id: str) -> None:
        """Remove a participant; their worker closes its part of the class when it empties."""
        plan = self._classes.get(room_id)
        member = plan.members.get(participant_id) if plan is not None else None
        if member is None:
            return
        worker = self._workers[member.worker]
        self._forget(room_id, participant_id)
        with contextlib.suppress(SfuError):
            await self._call(
                worker, LEAVE, ParticipantArgs(room_id=room_id, participant_id=participant_id)
            )
        self._resync(room_id)

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Answer a publish offer on the participant's worker; pipe the new tracks."""
        worker = self._placed(room_id, participant_id)
        result = await self._call(
            worker, PUBLISH,
            PublishArgs(room_id=room_id, participant_id=participant_id, offer_sdp=offer_sdp),
        )  # fmt: skip
        plan = self._classes.get(room_id)
        if plan is not None and participant_id in plan.members:
            for track in result.producers:
                plan.tracks[track.producer_id] = (participant_id, track)
            self._resync(room_id)
        return result.answer

    async def subscribe_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        """Apply a subscribe answer on the participant's worker."""
        await self._call(
            self._placed(room_id, participant_id), SUBSCRIBE_ANSWER, SubscribeAnswerArgs(
                room_id=room_id, participant_id=participant_id, answer_sdp=answer_sdp
            ),
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
        """A trickled ICE candidate, to the participant's worker."""
        await self._call(
            self._placed(room_id, participant_id), ADD_ICE_CANDIDATE, IceCandidateArgs(
                room_id=room_id, participant_id=participant_id, target=target,
                candidate=candidate, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index,
            ),
        )  # fmt: skip

    async def set_visible(
        self,
        room_id: str,
        participant_id: str,
        visible: list[str] | None,
        sizes: dict[str, int] | None = None,
        max_height: int | None = None,
    ) -> None:
        """Whose video a participant shows (a pipe nobody shows pauses by itself)."""
        await self._call(
            self._placed(room_id, participant_id), SET_VISIBLE, SetVisibleArgs(
                room_id=room_id, participant_id=participant_id, visible=visible, sizes=sizes,
                max_height=max_height,
            ),
        )  # fmt: skip

    async def set_gallery(self, room_id: str, enabled: bool) -> None:
        """Gallery mode on every worker of the class, then the pipes it needs."""
        plan = self._classes.get(room_id)
        if plan is None:
            return
        plan.gallery = enabled
        for worker in self._class_workers(room_id):
            await self._call(worker, SET_GALLERY, SetGalleryArgs(room_id=room_id, enabled=enabled))
        self._resync(room_id)

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None:
        """Spotlight a participant on every worker of the class, then the pipes it needs."""
        plan = self._classes.get(room_id)
        if plan is None:
            return
        plan.spotlight = participant_id
        for worker in self._class_workers(room_id):
            await self._call(
                worker, SET_SPOTLIGHT,
                SetSpotlightArgs(room_id=room_id, participant_id=participant_id),
            )  # fmt: skip
        self._resync(room_id)

    async def set_recording(self, room_id: str, directory: str | None, audio: bool = True) -> None:
        """Record on the worker of the class's (first) instructor, where their tracks
        are local; the class's other workers are told to stop, so one file is written.
        An instructor who comes back on another worker is recorded there once signaling
        calls again (it does at each instructor join)."""
        plan = self._classes.get(room_id)
        if plan is None:
            return
        hosts = [m.worker for m in plan.members.values() if m.role == "host"]
        workers = self._class_workers(room_id)
        chosen = self._workers[hosts[0]] if hosts and directory is not None else None
        for worker in workers:
            if worker is not chosen:
                args = SetRecordingArgs(room_id=room_id, directory=None)
                await self._call(worker, SET_RECORDING, args)
        if chosen is not None:
            args = SetRecordingArgs(room_id=room_id, directory=directory, audio=audio)
            await self._call(chosen, SET_RECORDING, args)

    async def close_room(self, room_id: str) -> None:
        """End a class's media side on every worker holding part of it (pipes end with it)."""
        workers = self._class_workers(room_id)
        if self._classes.pop(room_id, None) is None:
            return
        self._piping.forget(room_id)
        for key in [k for k in self._signals if k[0] == room_id]:
            del self._signals[key]
        for worker in workers:
            worker.rooms.pop(room_id, None)
            with contextlib.suppress(SfuError):
                await self._call(worker, CLOSE_ROOM, RoomArgs(room_id=room_id))

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
                result = await self._call(worker, STATS, NoArgs())
                info["event_loop"] = result.event_loop
                # Per worker too: a replaced worker starts from zero, and a monitor
                # must see that as one series resetting, not the sum going down.
                info["counters"] = result.counters
                for key, value in result.counters.items():
                    total[key] = total.get(key, 0) + value
        total.setdefault("participants", 0)
        total["rooms"] = len(self._classes)  # a class split across workers counts once
        total["split_rooms"] = sum(1 for p in self._classes.values() if len(p.workers()) > 1)
        total["pipes"] = sum(len(p.pipes) for p in self._classes.values())
        total["workers"] = workers
        total["worker_restarts"] = self.restarts
        return total
