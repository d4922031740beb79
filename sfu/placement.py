"""Where a class's participants go across SFU workers, and which tracks are piped
between them: the pool's view of one class, as pure rules tested alone.

A class starts on the least-loaded worker and stays there until it has ``threshold``
participants on it (piping costs; small classes never pay it). The next ones spill
onto another worker, and once every worker is past the threshold each newcomer goes
where the estimated forwarding work is least. The estimate counts, per worker, the
streams its subscribers receive plus its incoming streams (weighted: taking a packet
in costs more than sending a copy); so the instructor's worker, which carries the
instructor's subscription to everyone, takes fewer participants.

A track is piped to every other worker holding someone who should receive it
(sfu/topology.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .backend import Role
from .speaker import SPEAKER_WINDOW_S, SpeakerElection
from .topology import receives
from .worker_protocol import TrackParams

# Server CPU per incoming packet over CPU per forwarded copy, measured at N = 50
# (docs/benchmarks.md): ~38 µs in, ~25 µs per copy out.
INGRESS_WEIGHT = 1.5
# A worker's speaker report older than this no longer counts in the election.
CANDIDATE_TTL_S = 2.5 * SPEAKER_WINDOW_S


@dataclass(eq=False)
class Member:
    """A participant of the class and the worker holding both their connections."""

    id: str
    role: Role
    worker: int


@dataclass(frozen=True, slots=True)
class Pipe:
    """One piped track: its id, the link it runs on, and the two workers."""

    pipe_id: int
    link_id: int
    origin: int
    destination: int


@dataclass(eq=False)
class ClassPlan:
    """One class as the pool sees it: members, published tracks, pipes, speaker."""

    room_id: str
    gallery: bool = False
    spotlight: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    tracks: dict[str, tuple[str, TrackParams]] = field(default_factory=dict)  # id → owner
    pipes: dict[tuple[str, int], Pipe] = field(default_factory=dict)  # (track, to worker)
    split_workers: set[int] = field(default_factory=set)  # told to report speakers
    election: SpeakerElection = field(default_factory=SpeakerElection)
    candidates: dict[int, tuple[str | None, float, float]] = field(default_factory=dict)

    def workers(self) -> set[int]:
        """Workers holding at least one member."""
        return {m.worker for m in self.members.values()}

    def count_on(self, worker: int) -> int:
        """Members on ``worker``."""
        return sum(1 for m in self.members.values() if m.worker == worker)

    def _receives(self, subscriber_role: Role, publisher: Member) -> bool:
        return receives(
            subscriber_role, publisher.role, self.gallery, publisher.id == self.spotlight
        )

    def load_on(self, worker: int) -> float:
        """Estimated forwarding work on ``worker`` (streams out + weighted streams in)."""
        publishers = Counter(m.role for m in self.members.values())
        total = 0.0
        for member in self.members.values():
            if member.worker != worker:
                continue
            if member.role not in ("device", "board"):  # they publish no media
                total += INGRESS_WEIGHT * 2  # audio and video
            for role, count in publishers.items():
                if receives(member.role, role, self.gallery):
                    total += 2 * (count - (role == member.role))
        return total

    def choose_worker(
        self, alive: Sequence[int], global_load: Mapping[int, int], threshold: int
    ) -> int:
        """Where a newcomer goes (see the module docstring); ``alive`` is not empty."""
        mine = sorted(w for w in self.workers() if w in alive)
        if not mine:
            return min(alive, key=lambda w: (global_load.get(w, 0), w))
        candidates = [w for w in mine if self.count_on(w) < threshold]
        if not candidates:
            others = [w for w in alive if w not in mine]
            if others:  # spill onto another worker
                return min(others, key=lambda w: (global_load.get(w, 0), w))
            candidates = mine
        if len(candidates) == 1:
            return candidates[0]
        return min(candidates, key=lambda w: (self.load_on(w), w))

    def wanted_pipes(self) -> set[tuple[str, int]]:
        """``(track id, worker)`` for every track someone on another worker should get."""
        roles_on: dict[int, set[Role]] = {}
        for member in self.members.values():
            roles_on.setdefault(member.worker, set()).add(member.role)
        wanted: set[tuple[str, int]] = set()
        for track_id, (owner_id, _params) in self.tracks.items():
            owner = self.members.get(owner_id)
            if owner is None:
                continue
            for worker, roles in roles_on.items():
                if worker != owner.worker and any(self._receives(r, owner) for r in roles):
                    wanted.add((track_id, worker))
        return wanted

    def candidate(
        self, worker: int, participant_id: str | None, loudness: float, now: float
    ) -> str | None:
        """One worker's speaker window; returns the class's speaker after it."""
        self.candidates[worker] = (participant_id, loudness, now)
        loud = [
            (level, who)
            for who, level, at in self.candidates.values()
            if who is not None and who in self.members and now - at < CANDIDATE_TTL_S
        ]
        loudest = max(loud)[1] if loud else None
        return self.election.decide(loudest, now, self.members)
