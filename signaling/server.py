"""Socket.IO event handlers: validate, act as the session's own participant, answer.

Every event is declared once in ``_EVENTS`` (name → model, handler, who may send it);
one wrapper validates the payload, finds the session's member, turns every refusal
into an ack plus an ``error`` event, and never lets an exception reach python-socketio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import socketio
from pydantic import BaseModel, ValidationError

from runtime.logs import set_log_context
from sfu.backend import MediaBackend, SfuError
from storage.store import Store
from telemetry.writer import HeartRateWriter
from telemetry.zones import Profile

from .class_control import ClassControl
from .cluster import Cluster, ClusterError, Moved, NodeInfo
from .errors import SignalError
from .heart_rate import HeartRateRelay
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
    RemoveIn,
    RoomOut,
    SpotlightIn,
    SubscribeAnswerIn,
    TimerIn,
    VisibilityIn,
    error_payload,
)
from .outbound import SocketSignal, chat_out
from .presence import Member, Presence
from .profiles import profile_of, profile_out, record_of
from .ratelimit import RateLimit
from .relay import Relay
from .tokens import TokenError, TokenSigner
from .turn import TurnIssuer

logger = logging.getLogger(__name__)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


Handler = Callable[[str, Any, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Event:
    model: type[BaseModel]
    handler: Handler
    joined: bool  # the session must have joined first
    host_only: bool = False
    device: bool = False  # a strap bridge's session may send it too


class Elsewhere(Exception):
    """Relay routing: the class is held by node ``holder``, so its join goes there."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


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
    ) -> None:
        self.sio = sio
        self.store = store
        self.sfu = sfu
        self.signer = signer
        self.max_participants = max_participants
        self.ice_servers = ice_servers
        self.turn = turn
        self.presence = Presence()
        self.heart_rate = HeartRateRelay(sio, self.presence, heart_rate_writer)
        self.controls = ClassControl(sio, self.presence, sfu, self._remove)
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
        # For /metrics: events handled, and refusals by event and error code.
        self.event_counts: Counter[str] = Counter()
        self.error_counts: Counter[tuple[str, str]] = Counter()
        sfu.on_active_speaker = self._active_speaker_changed
        sfu.on_room_failed = self._media_failed
        sfu.on_telemetry = self.heart_rate.receive
        events: dict[str, _Event] = {
            "join": _Event(JoinIn, self._join, joined=False),
            "publish": _Event(PublishIn, self._publish, joined=True, device=True),
            "subscribe_answer": _Event(
                SubscribeAnswerIn, self._subscribe_answer, joined=True, device=True
            ),
            "ice": _Event(IceIn, self._ice, joined=True, device=True),
            "chat": _Event(ChatIn, self._chat, joined=True),
            "media_state": _Event(MediaStateIn, self._media_state, joined=True),
            "visibility": _Event(VisibilityIn, self._visibility, joined=True),
            "profile": _Event(ProfileIn, self._profile, joined=True),
            "gallery": _Event(GalleryIn, self._gallery, joined=True, host_only=True),
            "end_class": _Event(EmptyIn, self._end_class, joined=True, host_only=True),
            # The instructor's controls (signaling/class_control.py).
            "lock": _Event(LockIn, self.controls.lock, joined=True, host_only=True),
            "mute": _Event(MuteIn, self.controls.mute, joined=True, host_only=True),
            "remove": _Event(RemoveIn, self.controls.remove, joined=True, host_only=True),
            "spotlight": _Event(SpotlightIn, self.controls.spotlight, joined=True, host_only=True),
            "timer": _Event(TimerIn, self.controls.timer, joined=True, host_only=True),
            "clock": _Event(ClockIn, self.controls.clock, joined=True, host_only=True),
            "time": _Event(EmptyIn, self.controls.time, joined=True),
            "leave": _Event(EmptyIn, self._leave, joined=True, device=True),
            "ping": _Event(EmptyIn, self.controls.time, joined=False, device=True),
        }
        # Per session: what a person does by hand is far below these; a script is not.
        self._limits = {
            "join": RateLimit(rate=0.2, burst=5),
            "chat": RateLimit(rate=1.0, burst=5),
            "profile": RateLimit(rate=1.0, burst=5),
            "publish": RateLimit(rate=0.2, burst=3),
            "media_state": RateLimit(rate=2.0, burst=10),
            "gallery": RateLimit(rate=1.0, burst=5),
            "visibility": RateLimit(rate=5.0, burst=20),
            "time": RateLimit(rate=2.0, burst=10),
            **{
                name: RateLimit(rate=2.0, burst=10)
                for name in ("lock", "mute", "remove", "spotlight", "timer", "clock")
            },
        }
        self._flood = RateLimit(rate=50.0, burst=300)  # every event, trickled ICE included
        # Refusals for rate limits: a person never collects this many. A script that keeps
        # sending regardless is disconnected: answering it would cost more than it does.
        self._strikes = RateLimit(rate=5.0, burst=200)
        self._handlers = {name: self._wrap(name, event) for name, event in events.items()}
        for name, handler in self._handlers.items():
            sio.on(name, handler)
        sio.on("*", self._unknown_event)
        sio.on("disconnect", self._on_disconnect)
        # Read-only: the whole client→server surface, so tests can cover every event.
        self.events: Mapping[str, _Event] = MappingProxyType(events)

    def _wrap(self, name: str, event: _Event) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def _handle(sid: str, data: Any = None, *_extra: Any) -> dict[str, Any]:
            # python-socketio runs each event in a task of its own (async_handlers), so
            # the ids set here name this event's log records only.
            known = self.presence.by_sid.get(sid)
            if known is not None:
                set_log_context(known.room_id, known.id)
            holder = self.relay.holder_of(sid) if self.relay is not None else None
            if holder is not None:
                return await self._forward(sid, holder, name, event, data)
            self.event_counts[name] += 1
            try:
                limit = self._limits.get(name)
                if not self._flood.allow(sid) or (limit is not None and not limit.allow(sid)):
                    raise SignalError("rate_limited", f"too many '{name}' requests: slow down")
                payload = event.model.model_validate(data)
                member = self.presence.by_sid.get(sid)
                if event.joined and member is None:
                    raise SignalError("not_joined", "join a class first")
                if event.host_only and (member is None or member.role != "host"):
                    raise SignalError("forbidden", "only the instructor can do this")
                if member is not None and member.role == "device" and not event.device:
                    raise SignalError("forbidden", "a heart-rate device can only send readings")
                result = await event.handler(sid, member, payload)
                return {"ok": True, **result}
            except ValidationError as exc:
                code, message = "bad_request", _validation_message(exc)
            except Elsewhere as exc:  # relay routing: the join goes to the class's node
                return await self._join_elsewhere(sid, exc.holder, data)
            except (SignalError, SfuError, TokenError) as exc:
                code, message = exc.code, exc.message
                if isinstance(exc, Moved):  # the client connects there and joins again
                    error = {"code": code, "message": message, "url": exc.url}
                    return {"ok": False, "error": error}
            except Exception:
                logger.exception("event %s failed", name)
                code, message = "internal", "the server could not handle this request"
            self.error_counts[(name, code)] += 1
            return await self._refuse(sid, name, code, message)

        return _handle

    async def _forward(
        self, sid: str, holder: str, name: str, event: _Event, data: Any
    ) -> dict[str, Any]:
        """An event of a relayed session: checked here, handled by the class's node."""
        assert self.relay is not None
        try:
            if not self._flood.allow(sid):
                raise SignalError("rate_limited", f"too many '{name}' requests: slow down")
            event.model.model_validate(data)  # malformed input never reaches Redis
            return await self.relay.forward(holder, sid, name, data)
        except ValidationError as exc:
            code, message = "bad_request", _validation_message(exc)
        except SignalError as exc:
            code, message = exc.code, exc.message
        self.error_counts[(name, code)] += 1
        return await self._refuse(sid, name, code, message)

    async def _join_elsewhere(self, sid: str, holder: str, data: Any) -> dict[str, Any]:
        """Join a class held by another node: the session stays here, relayed there."""
        assert self.relay is not None
        if self.relay.edge_of(sid) is not None:
            # Relayed to us, and the class moved on meanwhile: no chains of relays.
            message = "this class is moving to another server: rejoin"
            return await self._refuse(sid, "join", "unavailable", message)
        self.relay.bind(sid, holder)  # before sending: a disconnect meanwhile is relayed too
        try:
            ack = await self.relay.forward(holder, sid, "join", data)
        except SignalError as exc:
            self.relay.unbind(sid)
            return await self._refuse(sid, "join", exc.code, exc.message)
        if not ack.get("ok"):
            self.relay.unbind(sid)  # the holder has sent its own error event
        return ack

    async def _serve_relayed(self, sid: str, name: str, data: Any) -> dict[str, Any]:
        """As the class's node: an event of a session connected to another node."""
        handler = self._handlers.get(name)
        if handler is None:
            return {"ok": False, "error": {"code": "bad_request", "message": "unknown event"}}
        return await handler(sid, data)

    async def _drop_relayed(self, sid: str) -> None:
        """The node holding this session's class died: the client rejoins (as after a
        node's death, without an error to show: the class is placed again)."""
        await self.sio.disconnect(sid)

    async def _refuse(self, sid: str, event: str, code: str, message: str) -> dict[str, Any]:
        """The ``error`` event and the ack of a refusal; a session flooding on is cut off."""
        if code == "rate_limited" and not self._strikes.allow(sid):
            logger.warning("session %s kept flooding (%s): disconnected", sid, event)
            message = "too many requests after being rate limited: disconnected"
            await self.sio.emit("error", error_payload(code, message, event), to=sid)
            await self.sio.disconnect(sid)
        else:
            await self.sio.emit("error", error_payload(code, message, event), to=sid)
        return {"ok": False, "error": {"code": code, "message": message}}

    async def _unknown_event(self, *args: Any) -> dict[str, Any]:
        """An event the protocol does not have: refused, not left without an answer."""
        # python-socketio passes (event, sid, data…), but for an event named "*" itself
        # (sid, data…). The ack reaches the sender either way; the side effects (error
        # event, rate limit) need the sender's sid, so an ambiguous call gets none.
        first, second = (*args, None, None)[:2]
        if self._connected(second) and not self._connected(first):
            event, sid = first, str(second)
        elif self._connected(first) and not self._connected(second):
            event, sid = "*", str(first)
        else:
            return {"ok": False, "error": {"code": "bad_request", "message": "unknown event"}}
        name = str(event)[:64]
        if not self._flood.allow(sid):
            return await self._refuse(sid, name, "rate_limited", "too many requests: slow down")
        return await self._refuse(sid, name, "bad_request", f"unknown event {name!r}")

    def _connected(self, sid: Any) -> bool:
        return isinstance(sid, str) and bool(self.sio.manager.is_connected(sid, "/"))

    # -- events -------------------------------------------------------------------------

    async def _join(self, sid: str, member: Member | None, msg: JoinIn) -> dict[str, Any]:
        if member is not None:
            raise SignalError("already_joined", "this connection has already joined a class")
        grant = self.signer.verify(msg.token, room_id=msg.room)
        room = await self.store.get_room(grant.room_id)
        if room is None:
            raise SignalError("room_not_found", "this class does not exist")
        if room.ended_at is not None:
            raise SignalError("room_ended", "this class has ended")
        await self._check_holder(room.id)
        self.controls.admit(room.id, grant.role, grant.participant_id)
        if grant.role == "device":
            return await self._join_device(sid, msg, grant.room_id, str(grant.participant_id))
        chat = await self.store.recent_chat(room.id)
        if sid in self.presence.by_sid:  # joined meanwhile, from the same session
            raise SignalError("already_joined", "this connection has already joined a class")
        # A bound token (from an earlier join) rejoins as the same participant: their
        # heart-rate history, profile and readings' sequence numbers carry on.
        participant_id = grant.participant_id or uuid.uuid4().hex[:12]
        set_log_context(room.id, participant_id)
        stale = self.presence.by_room.get(room.id, {}).get(participant_id)
        if stale is not None:
            await self._replace(stale)
        # The limit counts participants: an instructor always gets in to their own class.
        participants = sum(1 for m in self.presence.members(room.id) if m.role == "participant")
        if grant.role == "participant" and participants >= self.max_participants:
            raise SignalError(
                "room_full", f"this class is full ({self.max_participants} participants)"
            )
        member = Member(id=participant_id, sid=sid, room_id=room.id, name=msg.name, role=grant.role)
        # Counted in before the await below, so concurrent joins cannot overfill the class.
        self.presence.add(member)
        try:
            await self.store.add_participant(room.id, participant_id, msg.name, grant.role)
            record = await self.store.participant(room.id, participant_id)
            profile = profile_of(record.profile if record is not None else None)
            self.heart_rate.set_profile(room.id, participant_id, profile)
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
        others = [m for m in self.presence.people(room.id) if m is not member]
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
        rejoin_token, _ = self.signer.issue(room.id, grant.role, participant_id=participant_id)
        device_token, _ = self.signer.issue(room.id, "device", participant_id=participant_id)
        return {
            "v": PROTOCOL_VERSION,
            "you": member.out().model_dump(),
            "room": RoomOut(id=room.id, title=room.title, gallery=room.gallery).model_dump(),
            "participants": [m.out().model_dump() for m in [*others, member]],
            "chat": [chat_out(r) for r in chat],
            "ice_servers": self._ice_servers(participant_id),
            "token": rejoin_token,
            "device_token": device_token,
            "profile": profile_out(profile),
            "heart_rates": self.heart_rate.latest(
                room.id, None if grant.role == "host" else participant_id
            ),
            **(await self.controls.joined(member)),
            **(await self._nodes()),
        }

    async def _join_device(
        self, sid: str, msg: JoinIn, room_id: str, participant_id: str
    ) -> dict[str, Any]:
        """A strap bridge joins to send one participant's heart rate, and nothing else."""
        record = await self.store.participant(room_id, participant_id)
        if record is None:
            raise SignalError("not_found", "the participant of this device link never joined")
        if sid in self.presence.by_sid:
            raise SignalError("already_joined", "this connection has already joined a class")
        member = Member(
            id=uuid.uuid4().hex[:12],
            sid=sid,
            room_id=room_id,
            name=msg.name,
            role="device",
            audio=False,
            video=False,
            acts_for=participant_id,
        )
        self.presence.add(member)
        try:
            self.heart_rate.set_profile(room_id, participant_id, profile_of(record.profile))
            await self.sfu.join(room_id, member.id, "device", SocketSignal(self.sio, sid), False)
        except BaseException:
            self.presence.remove(sid)
            raise
        if self.presence.by_sid.get(sid) is not member:
            await self.sfu.leave(room_id, member.id)
            raise SignalError("not_joined", "the connection closed while joining")
        await self.sio.enter_room(sid, room_id)
        logger.info(
            "device %s joined room %s for %s", member.id, room_id, participant_id,
            extra={"class_id": room_id, "participant_id": member.id, "acts_for": participant_id},
        )  # fmt: skip
        return {
            "v": PROTOCOL_VERSION,
            "you": {**member.out().model_dump(), "acts_for": participant_id},
            "room": {"id": room_id},
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
        """``nodes`` of a join ack: where to look for the class if this node goes away.

        Asked of Redis now, not taken from the last heartbeat: a node that started a
        moment ago must be on the list, or a client that joined meanwhile would know no
        other node to rejoin on.
        """
        if self.cluster is None:
            return {}
        with contextlib.suppress(ClusterError):
            await self.cluster.refresh_live()
        return {"nodes": self.cluster.node_urls()}

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
        self.heart_rate.forget_room(room_id)
        self.controls.forget(room_id)
        await self.sfu.close_room(room_id)
        for member in members:
            await self.sio.disconnect(member.sid)
        logger.warning(
            "room %s moved to node %s: let %d sessions go",
            room_id,
            holder.id if holder is not None else "?",
            len(members),
        )

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
        await self.store.set_profile(member.room_id, member.id, record_of(profile))
        self.heart_rate.set_profile(member.room_id, member.id, profile)
        return {"profile": profile_out(profile)}

    async def _publish(self, _sid: str, member: Member, msg: PublishIn) -> dict[str, Any]:
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

    async def _chat(self, _sid: str, member: Member, msg: ChatIn) -> dict[str, Any]:
        if not msg.text:
            raise SignalError("bad_request", "text: must not be empty")
        record = await self.store.add_chat(member.room_id, member.id, member.name, msg.text)
        message = chat_out(record)
        await self.sio.emit(
            "chat", {"v": PROTOCOL_VERSION, "message": message}, room=member.room_id
        )
        return {"message": message}

    async def _media_state(self, _sid: str, member: Member, msg: MediaStateIn) -> dict[str, Any]:
        member.audio, member.video = msg.audio, msg.video
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
        self.heart_rate.forget_room(room_id)
        self.controls.forget(room_id)
        logger.info("room %s ended by %s", room_id, member.id)
        return {}

    async def _leave(self, sid: str, member: Member, _msg: EmptyIn) -> dict[str, Any]:
        await self._remove(sid)
        await self.controls.left(member)
        return {}

    async def _on_disconnect(self, sid: str, *_reason: Any) -> dict[str, Any] | None:
        if self.sio.manager.is_connected(sid, "/"):
            # A client's own event named "disconnect", not the real one: it must neither
            # reset the session's rate limits nor take it out of its class.
            return await self._unknown_event("disconnect", sid)
        await self._session_gone(sid)
        return None

    async def _session_gone(self, sid: str) -> None:
        """A session's client went away (here, or on the node it is relayed from)."""
        self._flood.forget(sid)
        self._strikes.forget(sid)
        for limit in self._limits.values():
            limit.forget(sid)
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
        await self.sio.leave_room(sid, member.room_id)
        if member.role != "device":
            await self.sio.emit(
                "participant_left", {"v": PROTOCOL_VERSION, "id": member.id}, room=member.room_id
            )
        await self.sfu.leave(member.room_id, member.id)
        logger.info(
            "participant %s left room %s", member.id, member.room_id,
            extra={"class_id": member.room_id, "participant_id": member.id},
        )  # fmt: skip

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
