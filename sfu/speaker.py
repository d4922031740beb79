"""The active speaker: each window's loudest participant, changing at most once per
``SPEAKER_HOLD_S``. A Room elects its own; the pool elects one for a class split across
workers from each worker's candidates (sfu/placement.py).

Apart from ``room.py`` so that the pool, in the main process, does not import the SFU
core (and aiortc) for it.
"""

from __future__ import annotations

from collections.abc import Container

SPEAKER_WINDOW_S = 0.4
SPEAKER_HOLD_S = 1.0  # the active speaker changes at most this often
# Mean loudness (127 - level in -dBov) a window needs to count as speech: louder than
# -50 dBov. Browsers send about -127 in silence and -20…-40 when someone talks.
SPEAKER_THRESHOLD = 77


class SpeakerElection:
    """The active speaker, from each window's loudest candidate, changing at most once
    per SPEAKER_HOLD_S (used by a Room alone, and by the pool for a split class)."""

    def __init__(self) -> None:
        self.current: str | None = None
        self._since = 0.0

    def decide(self, loudest: str | None, now: float, present: Container[str]) -> str | None:
        """Who speaks after a window whose loudest candidate was ``loudest``."""
        if loudest is None or loudest == self.current:
            return self.current
        if now - self._since < SPEAKER_HOLD_S and self.current in present:
            return self.current
        self.current = loudest
        self._since = now
        return loudest
