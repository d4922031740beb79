"""The ``telemetry`` data channel fuzzed through a real aiortc peer against a real server.

Each hostile message is followed by a valid reading. The valid one must be stored once
and counted as accepted; the hostile one counted as refused and stored nowhere. A
reading the server can parse but never store (its time is far off) is also named in a
``telemetry_ack`` as refused, so the sender stops re-sending it. A flood is cut by the
SFU's token bucket: past the burst, messages are dropped before they cost anything.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from hypothesis import given
from hypothesis import strategies as st

from sfu.peer import MAX_TELEMETRY_MESSAGE, TELEMETRY_BURST, TELEMETRY_RATE
from signaling.heart_rate import MAX_FUTURE_S, MAX_PAST_S
from telemetry.messages import Reading, TelemetryError, parse
from tests.fuzz_payloads import edge_text, fuzz_settings, json_values, malformed
from tests.fuzz_target import Database, Target, run_target
from tests.sio_client import Client

FUZZ = fuzz_settings(25)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from run_target(tmp_path_factory.mktemp("fuzz-datachannel"))


def now_ms() -> int:
    return int(time.time() * 1000)


def reading(seq: int, bpm: int = 120, t: int | None = None) -> dict[str, Any]:
    return {"v": 1, "type": "hr", "seq": seq, "t": now_ms() if t is None else t, "bpm": bpm}


def as_received(message: str | bytes) -> str:
    """What the SFU hands on: bytes decoded, anything past the limit cut (sfu/peer.py)."""
    if isinstance(message, bytes):
        message = message[: MAX_TELEMETRY_MESSAGE + 1].decode("utf-8", "replace")
    return message[: MAX_TELEMETRY_MESSAGE + 1]


def refused_how(message: str | bytes) -> str | None:
    """ "parse" or "time" for a message the server must refuse; None if it would store it."""
    try:
        parsed = parse(as_received(message))
    except TelemetryError:
        return "parse"
    offset = parsed.t / 1000 - time.time()
    # Only times far outside the window: the test must not race the server's clock.
    if offset > MAX_FUTURE_S + 600 or -offset > MAX_PAST_S + 600:
        return "time"
    if offset > MAX_FUTURE_S - 600 or -offset > MAX_PAST_S - 600:
        return "unsure"
    return None


def hostile_messages() -> st.SearchStrategy[str | bytes]:
    """Non-JSON, binary, oversized, wrong types, out-of-range values, far-off times."""
    base = reading(1_000_000)
    t = base["t"]
    json_text = st.builds(json.dumps, json_values)
    return st.one_of(
        edge_text,
        st.binary(min_size=1, max_size=300),
        json_text,
        st.builds(lambda r: json.dumps(r), malformed(Reading, base)),
        st.integers(MAX_TELEMETRY_MESSAGE - 100, 4000).map(
            lambda n: json.dumps({**base, "rr": [1.5] * (n // 5)})
        ),
        st.integers()
        .filter(lambda b: not 20 <= b <= 300)
        .map(lambda b: json.dumps({**base, "bpm": b})),
        st.integers(2**53 + 1, 2**70).map(lambda s: json.dumps({**base, "seq": s})),
        st.one_of(
            st.integers(t + int((MAX_FUTURE_S + 3600) * 1000), 2**53),
            st.integers(0, t - int((MAX_PAST_S + 3600) * 1000)),
        ).map(lambda far: json.dumps({**base, "t": far})),
    ).filter(lambda m: sendable(m) and refused_how(m) in ("parse", "time"))


def sendable(message: str | bytes) -> bool:
    """What a data channel can carry: text is UTF-8 (no lone surrogates), and aiortc
    refuses more than 64 KiB itself (the SFU's SCTP limit is 256 KiB)."""
    if isinstance(message, str):
        try:
            message = message.encode()
        except UnicodeEncodeError:
            return False
    return len(message) <= 65536


@dataclass
class Strap:
    """A joined participant publishing a telemetry channel, an instructor, the database."""

    target: Target
    room_id: str
    host: Client
    owner: Client
    owner_id: str
    pc: RTCPeerConnection
    channel: RTCDataChannel
    db: Database
    http: httpx.AsyncClient
    seq: int = 0

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.target.url}/api/stats")
        heart_rate: dict[str, Any] = response.json()["heart_rate"]
        return heart_rate

    async def stored(self) -> list[int]:
        rows = await self.db.rows(
            "SELECT seq FROM heart_rate WHERE room_id = $1 AND participant_id = $2 ORDER BY seq",
            self.room_id,
            self.owner_id,
        )
        return [int(r["seq"]) for r in rows]

    def send_valid(self) -> int:
        self.seq += 1
        self.channel.send(json.dumps(reading(self.seq)))
        return self.seq


async def until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def strap(target: Target) -> AsyncIterator[Strap]:
    room = target.create_room()
    host, owner = await Client(target.url).connect(), await Client(target.url).connect()
    assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
    owner_id = (await owner.join(str(room["join_link"]), "Ann"))["you"]["id"]
    pc = RTCPeerConnection()
    channel = pc.createDataChannel("telemetry")
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await pc.setLocalDescription(await pc.createOffer())
    ack = await owner.call("publish", {"v": 1, "type": "offer", "sdp": pc.localDescription.sdp})
    assert ack["ok"], ack
    await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
    await asyncio.wait_for(opened.wait(), 30)
    db = await Database(target.database_url).open()
    target.mark_log()
    async with httpx.AsyncClient(timeout=10) as http:
        yield Strap(target, str(room["room"]["id"]), host, owner, owner_id, pc, channel, db, http)
    await pc.close()
    await host.close()
    await owner.close()
    await db.close()
    assert target.log_problems() == []


@FUZZ
@given(message=hostile_messages())
async def test_hostile_messages_are_refused_and_stored_nowhere(
    strap: Strap, message: str | bytes
) -> None:
    how = refused_how(message)
    before, stored = await strap.stats(), await strap.stored()
    strap.channel.send(message)
    seq = strap.send_valid()  # the channel still works: this one is stored, once

    async def stored_valid() -> bool:
        return await strap.stored() == [*stored, seq]

    await until(stored_valid)
    after = await strap.stats()
    assert after["rejected"] == before["rejected"] + 1, (message, before, after)
    assert after["accepted"] == before["accepted"] + 1
    assert strap.channel.readyState == "open"
    if how == "time":  # parsed, but never storable: the sender is told to stop re-sending
        sent = json.loads(message)
        await strap.owner.wait_for(
            "telemetry_ack", lambda a: [sent["seq"], sent["t"]] in a.get("refused", [])
        )
    # Refusals are answered with an ``error`` (at most one a second per session).
    await strap.owner.wait_for("error", lambda e: e["code"] == "bad_reading")
    assert {e["event"] for e in strap.owner.received["error"]} == {"telemetry"}


async def test_a_flood_is_cut_by_the_token_bucket(strap: Strap) -> None:
    """Past the burst, messages are dropped at the SFU; the channel recovers at the rate."""
    before = await strap.stats()
    flood = int(TELEMETRY_BURST) * 3
    started = time.monotonic()
    for _ in range(flood):
        strap.send_valid()
        if strap.seq % 200 == 0:
            await asyncio.sleep(0)  # let the SCTP association drain its buffer
    last = -1

    async def settled() -> bool:
        nonlocal last
        received = int((await strap.stats())["received"])
        done, last = received == last, received
        await asyncio.sleep(0.3)
        return done

    await until(settled, timeout=60)
    elapsed = time.monotonic() - started
    got = last - int(before["received"])
    assert got >= TELEMETRY_BURST, got  # the burst itself gets through
    assert got <= TELEMETRY_BURST + TELEMETRY_RATE * elapsed + 5, (got, elapsed)
    assert got < flood

    async def all_stored() -> bool:
        return len(await strap.stored()) == got

    await until(all_stored, timeout=30)
    # The bucket refills: after a pause, a reading gets through and is stored.
    await asyncio.sleep(1.0)
    seq = strap.send_valid()

    async def stored_last() -> bool:
        return seq in await strap.stored()

    await until(stored_last)
