"""Room logic on its own: active-speaker choice with hold time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiortc import RTCConfiguration

from sfu.room import Room
from sfu.speaker import SPEAKER_HOLD_S
from sfu.stats import ForwardingStats


def speaking(room: Room, levels: dict[str, int]) -> None:
    """Give each participant one window of audio at a level (-dBov, 127 = silence)."""
    for pid, level in levels.items():
        audio: Any = room.participants[pid].producers["audio"]
        audio.loudness, audio.loud_packets = (127 - level) * 20, 20


def make_room(*ids: str) -> Room:
    room = Room("r", RTCConfiguration(iceServers=[]), ForwardingStats())
    for pid in ids:
        audio = SimpleNamespace(loudness=0, loud_packets=0)
        room.participants[pid] = SimpleNamespace(id=pid, producers={"audio": audio})  # type: ignore[assignment]
    return room


def test_loudest_above_threshold_speaks() -> None:
    room = make_room("a", "b")
    speaking(room, {"a": 30, "b": 45})
    assert room.pick_speaker(now=100.0) == "a"


def test_silence_changes_nothing() -> None:
    room = make_room("a", "b")
    speaking(room, {"a": 127, "b": 120})
    assert room.pick_speaker(now=100.0) is None


def test_speaker_holds_for_a_while() -> None:
    room = make_room("a", "b")
    speaking(room, {"a": 30, "b": 127})
    assert room.pick_speaker(now=100.0) == "a"
    speaking(room, {"a": 127, "b": 20})
    assert room.pick_speaker(now=100.0 + SPEAKER_HOLD_S / 2) == "a"
    speaking(room, {"a": 127, "b": 20})
    assert room.pick_speaker(now=100.0 + SPEAKER_HOLD_S + 0.1) == "b"


def test_windows_reset_the_counters() -> None:
    room = make_room("a")
    speaking(room, {"a": 30})
    room.pick_speaker(now=1.0)
    audio: Any = room.participants["a"].producers["audio"]
    assert (audio.loudness, audio.loud_packets) == (0, 0)
