"""Who is in which class on this node, and which Socket.IO session acts for whom."""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.backend import Role

from .messages import ParticipantOut


@dataclass(slots=True)
class Member:
    """A joined participant, bound to exactly one Socket.IO session."""

    id: str
    sid: str
    room_id: str
    name: str
    role: Role
    audio: bool = True
    video: bool = True
    acts_for: str | None = None  # a device (strap bridge) sends data for this participant

    @property
    def subject(self) -> str:
        """Whose heart rate this session's readings are: its own, or its participant's."""
        return self.acts_for or self.id

    def out(self) -> ParticipantOut:
        """The public view of this member."""
        return ParticipantOut(
            id=self.id, name=self.name, role=self.role, audio=self.audio, video=self.video
        )


@dataclass(slots=True)
class Presence:
    """Members by session and by room; the only place that maps a session to a member."""

    by_sid: dict[str, Member] = field(default_factory=dict)
    by_room: dict[str, dict[str, Member]] = field(default_factory=dict)

    def add(self, member: Member) -> None:
        """Record a member that has joined."""
        self.by_sid[member.sid] = member
        self.by_room.setdefault(member.room_id, {})[member.id] = member

    def remove(self, sid: str) -> Member | None:
        """Forget the member of a session (idempotent)."""
        member = self.by_sid.pop(sid, None)
        if member is not None:
            room = self.by_room.get(member.room_id, {})
            room.pop(member.id, None)
            if not room:
                self.by_room.pop(member.room_id, None)
        return member

    def members(self, room_id: str) -> list[Member]:
        """Members of a class, in join order."""
        return list(self.by_room.get(room_id, {}).values())

    def people(self, room_id: str) -> list[Member]:
        """Members of a class that others see: everyone but devices and boards."""
        return [
            m for m in self.by_room.get(room_id, {}).values() if m.role not in ("device", "board")
        ]

    def acting_for(self, room_id: str, participant_id: str) -> list[Member]:
        """The sessions that act for a participant: theirs and their devices'."""
        return [m for m in self.by_room.get(room_id, {}).values() if m.subject == participant_id]

    def hosts(self, room_id: str) -> list[Member]:
        """The instructor's sessions in a class."""
        return [m for m in self.by_room.get(room_id, {}).values() if m.role == "host"]

    def boards(self, room_id: str) -> list[Member]:
        """The class's boards: read-only views on a studio screen (signaling/board.py)."""
        return [m for m in self.by_room.get(room_id, {}).values() if m.role == "board"]

    def watchers(self, room_id: str) -> list[Member]:
        """The sessions that see everyone's heart rate: the instructor's and the boards."""
        return [m for m in self.by_room.get(room_id, {}).values() if m.role in ("host", "board")]

    def count(self, room_id: str) -> int:
        """How many are in a class."""
        return len(self.by_room.get(room_id, {}))
