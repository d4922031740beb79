"""The server forwards packets: no video (or audio) encoder or decoder exists while it does.

The server runs in this process so its codec factories can be watched; the peers are
``pulseroom bot`` processes, whose own encoders and decoders do not count.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiortc.codecs
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest

from tests.loopback import Loopback, loopback_server
from tests.peers import run_bot


class CodecWatch:
    """Records every codec aiortc creates in this process, then lets it be created."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.created: list[str] = []
        for module in (aiortc.codecs, aiortc.rtcrtpreceiver, aiortc.rtcrtpsender):
            for name in ("get_decoder", "get_encoder"):
                original = getattr(module, name, None)
                if original is not None:
                    monkeypatch.setattr(module, name, self._wrap(name, original))

    def _wrap(self, name: str, original: Any) -> Any:
        def watched(codec: Any) -> Any:
            self.created.append(f"{name}({codec.mimeType})")
            return original(codec)

        return watched


@pytest.fixture
async def inprocess_server(tmp_path: Path) -> AsyncIterator[Loopback]:
    # In-process SFU (no workers), so this process can watch its codec factories.
    async with loopback_server(tmp_path) as server:
        yield server


def decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


@pytest.mark.timeout(120)
async def test_no_codec_is_created_while_forwarding(
    monkeypatch: pytest.MonkeyPatch, inprocess_server: Loopback
) -> None:
    sfu = inprocess_server.sfu
    watch = CodecWatch(monkeypatch)
    room = await inprocess_server.create_room("No codecs")
    peers = [
        asyncio.create_task(run_bot(room["host_link"], "Coach", 10, "--gallery")),
        asyncio.create_task(run_bot(room["join_link"], "Ann", 9)),
        asyncio.create_task(run_bot(room["join_link"], "Bob", 9)),
    ]
    seen_threads: set[str] = set()
    for _ in range(40):  # sample while media flows
        await asyncio.sleep(0.2)
        seen_threads.update(decoder_threads())
    await asyncio.gather(*peers)
    # The watch is live: a decoder made here would have been recorded.
    aiortc.rtcrtpreceiver.get_decoder(aiortc.codecs.CODECS["video"][0])
    assert watch.created == ["get_decoder(video/VP8)"]
    assert sfu.stats_counters.forwarded_packets > 2000, sfu.stats_counters
    assert seen_threads == set(), f"decoder threads ran in the server: {seen_threads}"
