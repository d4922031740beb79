"""The class-level behaviour behind the Socket.IO events of docs/protocol.md.

Each event is declared once in ``SignalingServer._events`` (name → model, handler, who
may send it, its rate limit); ``signaling/dispatch.py`` validates, checks and answers,
and calls the handlers here as the session's own participant.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import socketio
from pydantic import BaseModel

from runtime.logs import set_log_context
from sfu.backend import MediaBackend
from storage.recordings import RecordingFiles
from storage.store import RoomRecord, Store
from telemetry.writer import HeartRateWriter
from telemetry.zones import Profile

from .board import Boards
from .chat import MAX_CHAT, Chat
from .class_control import ClassControl
from .client_address import ConnectionCap
from .cluster import Cluster, ClusterError, Moved, NodeInfo
from .dispatch import JOIN_TIMEOUT_S, Dispatcher, Elsewhere, Event, Handler
from .effort import EffortBoard
from .errors import SignalError
from .heart_rate import MAX_READINGS, HeartRateRelay
from .heart_signals import HeartSignals
from .idle import IDLE_CLASS_S, IdleClasses
from .messages import (
    PROTOCOL_VERSION,
    ChatIn,
    ClockIn,
    EmptyIn,
    GalleryIn,
    IceIn,
    JoinIn,
    LockIn,
    MediaStateIn,
    MuteIn,
    ProfileIn,
    PublishIn,
    RecordIn,
    RemoveIn,
    SpotlightIn,
    SubscribeAnswerIn,
    TimerIn,
    VisibilityIn,
    error_payload,
)
from .outbound import SocketSignal, chat_out
from .participant_accounts import AccountVisits
from .presence import Member, Presence
from .profiles import profile_of, profile_out, record_of
from .ratelimit import RateLimit
from .recording import Recording, RecordingMode
from .relay import Relay
from .schedule import Schedule, room_out
from .shout_outs import ShoutOuts
from .tokens import Grant, TokenError, TokenSigner
from .turn import TurnIssuer

logger = logging.getLogger(__name__)


# An instructor on a laptop, a phone and a studio screen, with co-instructors: enough.
MAX_HOST_SESSIONS = 5


class SignalingServer:
    """The class-level behaviour behind the Socket.IO events of docs/protocol.md."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: Store,
        sfu: MediaBackend,
        signer: TokenSigner,
        max_participants: int,
        ice_servers: list[dict[str, Any]],
        heart_rate_writer: HeartRateWriter,
        turn: TurnIssuer | None = None,
        cluster: Cluster | None = None,
        relay: bool = False,
        join_timeout: float = JOIN_TIMEOUT_S,
        connection_cap: ConnectionCap | None = None,
        recordings: RecordingFiles | None = None,
        recording_mode: RecordingMode = "on-request",
        idle_class_s: float = IDLE_CLASS_S,
        max_chat: int = MAX_CHAT,
        max_readings: int = MAX_READINGS,
    ) -> None:
        self.sio = sio
        self.store = store
        self.sfu = sfu
        self.signer = signer
        self.max_participants = max_participants
        self.ice_servers = ice_servers
        self.turn = turn
        self.presence = Presence()
        self.effort = EffortBoard(sio, self.presence, store)
        self.chat = Chat(sio, store, max_chat)
        self.visits = AccountVisits(sio, store, self.effort)  # a logged-in participant's
        signals = HeartSignals(sio, self.presence, store)  # RMSSD, signal, learned max
        self.heart_rate = HeartRateRelay(
            sio, self.presence, heart_rate_writer, self.effort, signals, max_readings
        )
        self.controls = ClassControl(sio, self.presence, sfu, store, self._remove)
        self.schedule = Schedule(store.engine)  # a series' link → this week's
        self.recording = Recording(sio, sfu, recordings, recording_mode)
        self.boards = Boards(sio, self.presence, sfu, self.heart_rate, self.effort, self.controls,
                             self._ice_servers, self._nodes, self.recording.on)  # fmt: skip
        self.idle = IdleClasses(
            idle_class_s, lambda room_id: not self.presence.members(room_id), self._forget_class
        )
        # With REDIS_URL: several nodes; a class's sessions all live on its holder.
        self.cluster = cluster
        if cluster is not None:
            cluster.load = lambda: (len(self.presence.by_sid), len(self.presence.by_room))
            cluster.rooms = lambda: list(self.presence.by_room)
            cluster.on_lost = self._class_taken_over
        # With relay routing, a session stays on the node it reached (signaling/relay.py).
        self.relay = (
            Relay(cluster, self._serve_relayed, self._session_gone, self._drop_relayed)
            if cluster is not None and relay
            else None
        )
        self._tasks: set[asyncio.Task[None]] = set()
        sfu.on_active_speaker = self._active_speaker_changed
        sfu.on_room_failed = self._media_failed
        sfu.on_telemetry = self.heart_rate.receive
        self.dispatch = Dispatcher(
            sio, self.presence, self._events(), self.relay, self._session_gone, join_timeout,
            connection_cap,
        )  # fmt: skip
        # The whole client→server surface (tests cover every event), and for /metrics:
        # events handled, and refusals by event and error code.
        self.events = self.dispatch.events
        self.event_counts = self.dispatch.event_counts
        self.error_counts = self.dispatch.error_counts

    def _events(self) -> dict[str, Event]:
        """Every client→server event: model, handler, who may send it, its rate limit."""
        controls = self.controls  # the instructor's controls (signaling/class_control.py)

        def limit(rate: float, burst: float) -> RateLimit:
            return RateLimit(rate=rate, burst=burst)

        def host(
            model: type[BaseModel], handler: Handler, rate: float = 2.0, burst: float = 10
        ) -> Event:
            # An instructor's control: host sessions only, a person's pace.
            return Event(model, handler, joined=True, host_only=True, limit=limit(rate, burst))

        return {
            "join": Event(JoinIn, self._join, joined=False, limit=limit(0.2, 5)),
            "publish": Event(
                PublishIn, self._publish, joined=True, device=True, limit=limit(0.2, 3)
            ),
            "subscribe_answer": Event(
                SubscribeAnswerIn, self._subscribe_answer, joined=True, device=True, board=True
            ),
            "ice": Event(IceIn, self._ice, joined=True, device=True, board=True),
            "chat": Event(ChatIn, self.chat.send, joined=True, limit=limit(1.0, 5)),
            "media_state": Event(
                MediaStateIn, self._media_state, joined=True, limit=limit(2.0, 10)
            ),
            "visibility": Event(
                VisibilityIn, self._visibility, joined=True, board=True, limit=limit(5.0, 20)
            ),
            "profile": Event(ProfileIn, self._profile, joined=True, limit=limit(1.0, 5)),
            "gallery": host(GalleryIn, self._gallery, 1.0, 5),
            "end_class": Event(EmptyIn, self._end_class, joined=True, host_only=True),
            "start_class": host(EmptyIn, controls.start_class, 0.5, 4),
            "lock": host(LockIn, controls.lock),
            "mute": host(MuteIn, controls.mute),
            "remove": host(RemoveIn, controls.remove),
            "spotlight": host(SpotlightIn, controls.spotlight),
            "timer": host(TimerIn, controls.timer),
            "clock": host(ClockIn, controls.clock),
            "record": host(RecordIn, self.recording.record, 0.5, 4),
            "time": Event(EmptyIn, controls.time, joined=True, board=True, limit=limit(2.0, 10)),
            "leave": Event(EmptyIn, self._leave, joined=True, device=True, board=True),
            "ping": Event(EmptyIn, controls.time, joined=False, device=True, board=True),
            **self.effort.events(),
            **ShoutOuts(self.sio, self.presence).events(),
        }

    async def _serve_relayed(self, sid: str, name: str, data: Any) -> dict[str, Any]:
        """As the class's node: an event of a session connected to another node."""
        return await self.dispatch.serve_relayed(sid, name, data)

    async def _drop_relayed(self, sid: str) -> None:
        """The node holding this session's class died: the client rejoins (as after a
        node's death, without an error to show: the class is placed again)."""
        await self.sio.disconnect(sid)

    # -- events -------------------------------------------------------------------------

    async def _join(self, sid: str, member: Member | None, msg: JoinIn) -> dict[str, Any]:
        if member is not None:
            raise SignalError("already_joined", "this connection has already joined a class")
        grant, room = await self._admit(msg)
        if grant.role == "device":
            return await self._join_device(sid, msg, room, str(grant.participant_id))
        if grant.role == "board":  # the studio TV's read-only view (signaling/board.py)
            return await self.boards.join(sid, msg, room, self.idle.joined)
        chat = await self.chat.history(room.id)
        if sid in self.presence.by_sid:  # joined meanwhile, from the same session
            raise SignalError("already_joined", "this connection has already joined a class")
        # A bound token (from an earlier join) rejoins as the same participant: their
        # heart-rate history, profile and readings' sequence numbers carry on.
        participant_id = grant.participant_id or uuid.uuid4().hex[:12]
        set_log_context(room.id, participant_id)
        stale = self.presence.by_room.get(room.id, {}).get(participant_id)
        if stale is not None:
            await self._replace(stale)
        await self._check_room(room.id, grant, msg.name)
        member = Member(id=participant_id, sid=sid, room_id=room.id, name=msg.name, role=grant.role)
        # Counted in before the await below, so concurrent joins cannot overfill the class.
        self.presence.add(member)
        self.idle.joined(room.id)
        try:
            await self.store.add_participant(room.id, participant_id, msg.name, grant.role)
            record = await self.visits.joined(sid, room.id, participant_id, grant.role)
            profile = profile_of(record.profile if record is not None else None)
            await self.heart_rate.joined(room.id, participant_id, profile)
            await self.sfu.join(
                room.id,
                participant_id,
                grant.role,
                SocketSignal(self.sio, sid),
                room.gallery,
                self.controls.spotlit(room.id),
            )
        except BaseException:
            self.presence.remove(sid)
            raise
        if self.presence.by_sid.get(sid) is not member:
            # The session went away while the media side was being set up.
            await self.sfu.leave(room.id, participant_id)
            raise SignalError("not_joined", "the connection closed while joining")
        await self.sio.enter_room(sid, room.id)
        await self.sio.emit(
            "participant_joined",
            {"v": PROTOCOL_VERSION, "participant": member.out().model_dump()},
            room=room.id,
            skip_sid=sid,
        )
        logger.info(
            "participant %s joined room %s as %s", participant_id, room.id, grant.role,
            extra={"class_id": room.id, "participant_id": participant_id, "role": grant.role},
        )  # fmt: skip
        await self.recording.joined(member)
        late = {**(await self.controls.joined(member, room)), **(await self._nodes())}
        late.update(await self.effort.joined(member))
        # The roster is read after the last await: anyone who joined or left while this
        # join awaited was announced to this session already (it is in the socket.io room),
        # and the client replaces its roster with this list when the ack arrives.
        others = [m for m in self.presence.people(room.id) if m is not member]
        return {
            "v": PROTOCOL_VERSION,
            "you": member.out().model_dump(),
            "room": room_out(room),
            "participants": [m.out().model_dump() for m in [*others, member]],
            "chat": [chat_out(r) for r in chat],
            "ice_servers": self._ice_servers(participant_id),
            **self.signer.bound_tokens(
                room.link_id, room.generation, grant, participant_id, room.id
            ),
            "profile": profile_out(profile),
            "recording": self.recording.on(room.id),
            "heart_rates": self.heart_rate.latest(
                room.id, None if grant.role == "host" else participant_id
            ),
            **late,
        }

    async def _check_room(self, room_id: str, grant: Grant, name: str) -> None:
        """Whether the class takes this joiner now: their name, and its limits."""
        if grant.role == "participant" and grant.participant_id is None:
            await self._check_name(room_id, name)
        # The limit counts participants: an instructor always gets in to their own class.
        participants = sum(1 for m in self.presence.members(room_id) if m.role == "participant")
        if grant.role == "participant" and participants >= self.max_participants:
            raise SignalError(
                "room_full", f"this class is full ({self.max_participants} participants)"
            )
        # The instructor's sessions have a limit of their own: the instructor always gets
        # in past a full class, but a leaked host link must not let in any number.
        if grant.role == "host" and len(self.presence.hosts(room_id)) >= MAX_HOST_SESSIONS:
            raise SignalError(
                "room_full", f"this class has its {MAX_HOST_SESSIONS} instructor sessions"
            )

    async def _check_name(self, room_id: str, name: str) -> None:
        """A participant may not come in under the instructor's name (to give orders in
        chat as them); a rejoin with a bound token keeps the name it was let in with."""
        taken = {m.name.casefold() for m in self.presence.hosts(room_id)}
        taken.update(
            p.name.casefold() for p in await self.store.participants(room_id) if p.role == "host"
        )
        if name.casefold() in taken:
            raise SignalError("name_taken", "that is the instructor's name: choose another")

    async def _admit(self, msg: JoinIn) -> tuple[Grant, RoomRecord]:
        """What a join's token grants, in which class, if that class takes it here."""
        grant = self.signer.verify(msg.token, room_id=msg.room)
        if grant.summary_only:
            raise TokenError(
                "invalid_token", "This link opens the class summary only: join with the class link."
            )
        room = await self.store.get_room(grant.room_id)
        if room is None:
            raise SignalError("room_not_found", "this class does not exist")
        if room.ended_at is not None:
            raise SignalError("room_ended", "this class has ended")
        room = await self.schedule.session_for(room, time.time())
        await self._check_holder(room.id)
        await self.controls.admit(room, grant)
        return grant, room

    async def _join_device(
        self, sid: str, msg: JoinIn, room: RoomRecord, acts_for: str
    ) -> dict[str, Any]:
        """A strap bridge joins to send one participant's heart rate, and nothing else."""
        room_id, record = room.id, await self.store.participant(room.id, acts_for)
        if record is None:
            raise SignalError("not_found", "the participant of this device link never joined")
        if sid in self.presence.by_sid:
            raise SignalError("already_joined", "this connection has already joined a class")
        # One bridge per device link at a time: a second would double every reading (or a
        # copied link would feed someone else's). A bridge retries; once the first is gone
        # (or the server noticed its connection dead), it gets in.
        if any(m.role == "device" for m in self.presence.acting_for(room_id, acts_for)):
            raise SignalError("device_in_use", "another heart-rate bridge is using this link")
        member = Member(
            id=uuid.uuid4().hex[:12],
            sid=sid,
            room_id=room_id,
            name=msg.name,
            role="device",
            audio=False,
            video=False,
            acts_for=acts_for,
        )
        self.presence.add(member)
        self.idle.joined(room_id)
        try:
            await self.heart_rate.joined(room_id, acts_for, profile_of(record.profile))
            await self.sfu.join(room_id, member.id, "device", SocketSignal(self.sio, sid), False)
        except BaseException:
            self.presence.remove(sid)
            raise
        if self.presence.by_sid.get(sid) is not member:
            await self.sfu.leave(room_id, member.id)
            raise SignalError("not_joined", "the connection closed while joining")
        await self.sio.enter_room(sid, room_id)
        logger.info(
            "device %s joined room %s for %s", member.id, room_id, acts_for,
            extra={"class_id": room_id, "participant_id": member.id, "acts_for": acts_for},
        )  # fmt: skip
        return {
            "v": PROTOCOL_VERSION,
            "you": {**member.out().model_dump(), "acts_for": acts_for, "for_name": record.name},
            "room": {"id": room_id, "title": room.title},
            "ice_servers": self._ice_servers(member.id),
            **(await self._nodes()),
        }

    # -- several nodes ------------------------------------------------------------------

    async def _check_holder(self, room_id: str) -> None:
        """Only the node holding a class takes its joins; others say where it is.

        With relay routing they pass the join on instead (``Elsewhere``).
        """
        if self.cluster is None:
            return
        try:
            holder = await self.cluster.holder(room_id)
        except ClusterError as exc:
            logger.error("cannot place room %s: %s", room_id, exc)
            raise SignalError(
                "unavailable", "the server cannot reach its cluster: try again"
            ) from None
        if holder.id != self.cluster.node_id:
            if self.relay is not None:
                raise Elsewhere(holder.id)
            raise Moved(holder.url)

    async def _nodes(self) -> dict[str, Any]:
        """``nodes`` of a join ack: where to look for the class if this node goes away."""
        return {} if self.cluster is None else {"nodes": await self.cluster.fresh_node_urls()}

    async def _class_taken_over(self, room_id: str, holder: NodeInfo | None) -> None:
        """Another node holds this class now (this one stalled past its heartbeat's TTL).

        Its sessions here are let go without a ``participant_left`` (that would reach the
        holder's sessions through Redis, where the same people are rejoining): each client
        sees its connection close, finds the holder and rejoins there.
        """
        members = self.presence.members(room_id)
        for member in members:
            self.presence.remove(member.sid)
            self.heart_rate.forget_session(member.sid)
        self._forget_class(room_id)
        await self.sfu.close_room(room_id)
        for member in members:
            await self.sio.disconnect(member.sid)
        logger.warning(
            "room %s moved to node %s: let %d sessions go", room_id,
            holder.id if holder is not None else "?", len(members),
        )  # fmt: skip

    def _ice_servers(self, participant_id: str) -> list[dict[str, Any]]:
        """STUN as configured, plus TURN credentials of this participant's own."""
        if self.turn is None:
            return self.ice_servers
        return [*self.ice_servers, self.turn.issue(participant_id)]

    async def _replace(self, stale: Member) -> None:
        """The participant joined again from a new session: the old one is let go."""
        await self._remove(stale.sid)
        await self.sio.emit(
            "error",
            error_payload("replaced", "you joined this class from another window", "join"),
            to=stale.sid,
        )
        await self.sio.disconnect(stale.sid)

    async def _profile(self, _sid: str, member: Member, msg: ProfileIn) -> dict[str, Any]:
        profile = Profile(
            age=msg.age,
            max_hr=msg.max_hr,
            resting_hr=msg.resting_hr,
            weight_kg=msg.weight_kg,
            sex=msg.sex,
            method=msg.zone_method,
        )
        profile = self.heart_rate.sent_profile(member.room_id, member.id, profile)
        await self.store.set_profile(member.room_id, member.id, record_of(profile))
        self.heart_rate.set_profile(member.room_id, member.id, profile)
        return {"profile": profile_out(profile)}

    async def _publish(self, _sid: str, member: Member, msg: PublishIn) -> dict[str, Any]:
        self.controls.check_started(member)  # nothing flows in a scheduled class's lobby
        answer = await self.sfu.publish(member.room_id, member.id, msg.sdp)
        return {"type": "answer", "sdp": answer}

    async def _subscribe_answer(
        self, _sid: str, member: Member, msg: SubscribeAnswerIn
    ) -> dict[str, Any]:
        await self.sfu.subscribe_answer(member.room_id, member.id, msg.sdp)
        return {}

    async def _ice(self, _sid: str, member: Member, msg: IceIn) -> dict[str, Any]:
        await self.sfu.add_ice_candidate(
            member.room_id, member.id, msg.pc, msg.candidate, msg.sdpMid, msg.sdpMLineIndex
        )
        return {}

    async def _media_state(self, _sid: str, member: Member, msg: MediaStateIn) -> dict[str, Any]:
        member.audio, member.video = msg.audio, msg.video
        if msg.music is not None and member.role == "host":
            await self.recording.music(member, msg.music)
        await self.sio.emit(
            "participant_updated",
            {"v": PROTOCOL_VERSION, "participant": member.out().model_dump()},
            room=member.room_id,
        )
        return {}

    async def _visibility(self, _sid: str, member: Member, msg: VisibilityIn) -> dict[str, Any]:
        await self.sfu.set_visible(
            member.room_id, member.id, msg.visible, msg.sizes, msg.max_height
        )
        return {}

    async def _gallery(self, _sid: str, member: Member, msg: GalleryIn) -> dict[str, Any]:
        await self.store.set_gallery(member.room_id, msg.enabled)
        await self.sfu.set_gallery(member.room_id, msg.enabled)
        await self.sio.emit(
            "gallery", {"v": PROTOCOL_VERSION, "enabled": msg.enabled}, room=member.room_id
        )
        return {}

    async def _end_class(self, _sid: str, member: Member, _msg: EmptyIn) -> dict[str, Any]:
        room_id = member.room_id
        await self.store.end_room(room_id)
        await self.sio.emit("class_ended", {"v": PROTOCOL_VERSION}, room=room_id)
        # Media first: readings already on their way from the SFU arrive before its answer
        # and still find their senders, so the class's last seconds are stored too.
        await self.sfu.close_room(room_id)
        for other in self.presence.members(room_id):
            self.presence.remove(other.sid)
            self.heart_rate.forget_session(other.sid)
            await self.sio.leave_room(other.sid, room_id)
        self._forget_class(room_id)
        logger.info("room %s ended by %s", room_id, member.id)
        return {}

    async def _leave(self, sid: str, member: Member, _msg: EmptyIn) -> dict[str, Any]:
        await self._remove(sid)
        await self.controls.left(member)
        return {}

    async def _session_gone(self, sid: str) -> None:
        """A session's client went away (here, or on the node it is relayed from)."""
        self.dispatch.forget(sid)
        if self.relay is not None and self.relay.holder_of(sid) is not None:
            await self.relay.left(sid)  # its class's node takes it out
            return
        try:
            await self._remove(sid)
        except Exception:
            logger.exception("cleanup after disconnect of %s failed", sid)

    async def _remove(self, sid: str) -> None:
        member = self.presence.remove(sid)
        if member is None:
            return
        self.heart_rate.forget_session(sid)
        self.recording.left(member)
        await self.sio.leave_room(sid, member.room_id)
        if member.role not in ("device", "board"):  # never announced as joined either
            await self.sio.emit(
                "participant_left", {"v": PROTOCOL_VERSION, "id": member.id}, room=member.room_id
            )
        await self.sfu.leave(member.room_id, member.id)
        logger.info(
            "participant %s left room %s", member.id, member.room_id,
            extra={"class_id": member.room_id, "participant_id": member.id},
        )  # fmt: skip
        if not self.presence.members(member.room_id):
            self.idle.emptied(member.room_id)

    def _forget_class(self, room_id: str) -> None:
        """Let go of what this node keeps in memory for a class (what is stored stays)."""
        self.idle.joined(room_id)
        self.heart_rate.forget_room(room_id)
        self.controls.forget(room_id)
        self.recording.forget(room_id)

    def _active_speaker_changed(self, room_id: str, participant_id: str | None) -> None:
        # Called from the SFU's detector loop, which must not wait on the network.
        task = asyncio.create_task(
            self.sio.emit(
                "active_speaker", {"v": PROTOCOL_VERSION, "id": participant_id}, room=room_id
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _media_failed(self, room_id: str, reason: str) -> None:
        # The class's media worker died: its members' media sessions are gone, so they
        # are out of the class; clients rejoin (a new worker takes the class).
        logger.error("media for room %s failed: %s", room_id, reason)
        members = self.presence.members(room_id)
        for member in members:
            self.presence.remove(member.sid)

        async def tell() -> None:
            await self.sio.emit(
                "media_failed",
                {"v": PROTOCOL_VERSION, "message": "The class's media server restarted: rejoin."},
                room=room_id,
            )
            for member in members:
                await self.sio.leave_room(member.sid, room_id)

        task = asyncio.create_task(tell())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Disconnect every session (the SFU and the writer are closed by their owners)."""
        self.idle.close()
        await self.visits.close()
        await self.heart_rate.close()
        if self.relay is not None:
            await self.relay.close()
            for sid in list(self.relay.holders):
                await self.relay.left(sid)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sid in list(self.presence.by_sid):
            await self.sio.disconnect(sid)
