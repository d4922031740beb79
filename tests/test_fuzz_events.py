"""Every Socket.IO event, and unknown ones, fuzzed against one real server.

The events come from the server's own table (tests/fuzz_target.py), so an event added
later is fuzzed too. For each malformed payload the ack must be a refusal with a
documented code, the ``error`` event must say the same, the session must still work,
and the database must hold exactly what it held before; an instructor watching the
class must see no broadcast but the fuzzer's own comings and goings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_payloads import (
    fuzz_settings,
    is_valid,
    json_values,
    malformed,
    valid_base,
    with_edge_strings,
)
from tests.fuzz_target import (
    Database,
    RawSocket,
    Session,
    Target,
    assert_refused,
    documented_error_codes,
    protocol_events,
    run_target,
    token_of,
)
from tests.sio_client import Client

EVENTS = protocol_events()
CODES = documented_error_codes()
EDGE_EVENTS = sorted(
    name for name, e in EVENTS.items() if with_edge_strings(valid_base(e.model)) is not None
)
# Hypothesis examples share one server and one session each; 20 an event (fewer where a
# handler runs) keeps the module around a minute on a loaded 2-core machine.
FUZZ = fuzz_settings(20, HealthCheck.data_too_large)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from run_target(tmp_path_factory.mktemp("fuzz-events"))


@dataclass
class Stage:
    """A class with an instructor watching it, and a database to compare."""

    target: Target
    room: dict[str, Any]
    observer: Client
    db: Database
    joined: Session  # a fuzzing instructor: every event is open to them
    newcomer: Session  # connected, not joined: for ``join``

    def session(self, event: str) -> Session:
        """The session to send ``event`` from, reused across examples."""
        return self.newcomer if event == "join" else self.joined

    async def unexpected_broadcasts(self, fuzzers: list[Session]) -> list[tuple[str, Any]]:
        """What the observer received that the fuzzers' own joins and leaves don't explain."""
        # Broadcasts were sent before the fuzzer's ack; this round trip comes after them.
        await self.observer.call("ice", {"v": 1, "pc": "subscribe", "candidate": ""})
        await asyncio.sleep(0)
        names = {s.name for s in fuzzers}
        found = []
        for event, items in self.observer.received.items():
            for item in items:
                if event == "participant_joined" and item["participant"]["name"] in names:
                    continue
                if event in ("participant_left", "error"):
                    continue  # left: only fuzzers come and go here; error: checked per ack
                found.append((event, item))
        return found


@pytest.fixture
async def stage(target: Target) -> AsyncIterator[Stage]:
    room = target.create_room()
    observer = await Client(target.url).connect()
    assert (await observer.join(str(room["host_link"]), "Observer"))["ok"]
    db = await Database(target.database_url).open()
    link = str(room["host_link"])
    joined = Session(target, link, "Fuzzer")
    newcomer = Session(target, link, "Newcomer", join=False)
    target.mark_log()
    yield Stage(target, room, observer, db, joined, newcomer)
    await joined.close()
    await newcomer.close()
    await observer.close()
    await db.close()
    assert target.log_problems() == []


async def refused_without_change(
    stage: Stage, session: Session, event: str, payload: Any, allowed: set[str] | None = None
) -> str:
    """Send one payload the server must refuse; check the refusal and that nothing changed."""
    await session.ready()
    before = await stage.db.snapshot()
    ack = await session.call(event, payload)
    if not ack.get("ok") and ack["error"]["code"] == "rate_limited":
        # Limits come before validation: ask again from a fresh session.
        await session.renew()
        before = await stage.db.snapshot()
        ack = await session.call(event, payload)
    code = assert_refused(ack, CODES, allowed)
    assert session.client is not None
    error = await session.client.wait_for("error", lambda e: e.get("event") == event[:64])
    assert error["code"] == code and error["v"] == 1
    session.client.received["error"].clear()
    assert await stage.db.snapshot() == before
    await session.alive()
    return code


@pytest.mark.parametrize("event", sorted(EVENTS))
@FUZZ
@given(data=st.data())
async def test_malformed_payloads_are_refused_and_change_nothing(
    stage: Stage, event: str, data: st.DataObject
) -> None:
    model = EVENTS[event].model
    payload = data.draw(malformed(model, valid_base(model)), label="payload")
    session = stage.session(event)
    await refused_without_change(stage, session, event, payload, {"bad_request"})
    assert await stage.unexpected_broadcasts([session]) == []


@pytest.mark.parametrize("event", EDGE_EVENTS)
@settings(FUZZ, max_examples=10)
@given(data=st.data())
async def test_edge_case_text_never_breaks_a_handler(
    stage: Stage, event: str, data: st.DataObject
) -> None:
    """Well-typed payloads with hostile text reach the handlers: they answer, never fail."""
    base = valid_base(EVENTS[event].model)
    strategy = with_edge_strings(base)
    assert strategy is not None
    payload = data.draw(strategy, label="payload")
    session = stage.session(event)
    await session.ready()
    before = await stage.db.snapshot()
    ack = await session.call(event, payload)
    if not ack["ok"] and ack["error"]["code"] == "rate_limited":
        await session.renew()
        before = await stage.db.snapshot()
        ack = await session.call(event, payload)
    if ack["ok"]:
        assert is_valid(EVENTS[event].model, payload), ack
    else:
        assert_refused(ack, CODES)
        assert await stage.db.snapshot() == before
    await session.alive()


EDGE_NAMES = st.lists(
    st.sampled_from(["\u200b", "\u202e", "\ufeff", "\ud800", "\x00", "\U0001f600", "e\u0301"])
    | st.characters(codec=None),
    min_size=1,
    max_size=45,
).map("".join)


@settings(FUZZ, max_examples=15)
@given(name=EDGE_NAMES)
async def test_join_names_are_stored_as_shown_or_refused(stage: Stage, name: str) -> None:
    """A name that gets in is stored exactly as everyone is shown it; one refused, nowhere."""
    link = str(stage.room["join_link"])
    client = await Client(stage.target.url).connect()
    try:
        before = await stage.db.snapshot()
        ack = await client.call(
            "join",
            {"v": 1, "token": token_of(link), "name": name, "room": stage.room["room"]["id"]},
        )
        if ack["ok"]:
            you = ack["you"]
            stored = await stage.db.scalar(
                "SELECT name FROM participants WHERE room_id = $1 AND id = $2",
                stage.room["room"]["id"],
                you["id"],
            )
            assert stored == you["name"] == name.strip()
        else:
            assert assert_refused(ack, CODES) == "bad_request"
            assert await stage.db.snapshot() == before
    finally:
        await client.close()


UNKNOWN_NAMES = st.sampled_from(
    ["disconnect", "*", "error", "message", "CHAT", "chat ", "__proto__", "constructor", "x" * 5000]
) | st.text(min_size=1, max_size=40).filter(lambda n: n not in EVENTS and n != "connect")


@FUZZ
@given(name=UNKNOWN_NAMES, payload=json_values)
async def test_unknown_events_are_refused_and_change_nothing(
    stage: Stage, name: str, payload: Any
) -> None:
    session = stage.joined
    await refused_without_change(stage, session, name, payload, {"bad_request"})
    assert await stage.unexpected_broadcasts([session]) == []


async def test_a_disconnect_event_does_not_reset_the_rate_limits(stage: Stage) -> None:
    """A client's own event named "disconnect" neither leaves the class nor resets limits."""
    session = stage.joined
    client = await session.ready()
    acks = [await client.call("chat", {"v": 1, "text": f"hello {i}"}) for i in range(6)]
    assert [a["ok"] for a in acks] == [True] * 5 + [False]
    ack = await client.call("disconnect", {})
    assert_refused(ack, CODES, {"bad_request"})
    again = await client.call("chat", {"v": 1, "text": "after"})
    assert assert_refused(again, CODES) == "rate_limited"  # not "not_joined", not ok
    await session.alive()


RAW_PACKETS: list[str | bytes] = [
    "42",  # an event without data
    "42[]",  # without a name
    '421[123,{"v":1}]',  # a number for a name
    '422[["chat"],{"v":1}]',  # a list for a name (unhashable)
    '423{"a":1}',  # an object, not a list
    "42[",  # not JSON
    '424["chat",' + "[" * 100_000 + "]" * 100_000 + "]",  # nested past any parser's stack
    '45-["chat",{"_placeholder":true,"num":0}]',  # binary event without its count
    b"\x00\x01\x02",  # binary garbage
]


async def test_malformed_socketio_packets_close_only_that_session(stage: Stage) -> None:
    """What no client library would send: that session is closed, nothing else happens."""
    before = await stage.db.snapshot()
    for packet in RAW_PACKETS:
        raw = await RawSocket(stage.target.url).open()
        try:
            await raw.send(packet)
            ack = await raw.call("time", json.dumps({"v": 1}), 99)
            assert ack is None, f"{packet[:40]!r} was not refused by closing: {ack}"
        finally:
            await raw.close()
    # A well-formed binary event: bytes where the model wants an object, refused as such.
    raw = await RawSocket(stage.target.url).open()
    try:
        await raw.send('451-0["chat",{"_placeholder":true,"num":0}]')
        await raw.send(b"\x00\xff" * 100)
        assert_refused(await raw.ack(0), CODES, {"bad_request"})
        ack = await raw.call("time", json.dumps({"v": 1}), 1)
        assert ack is not None and ack["error"]["code"] == "not_joined", ack
    finally:
        await raw.close()
    # Deep, but within what JSON parsing takes (~1,000 levels): an ordinary refusal.
    raw = await RawSocket(stage.target.url).open()
    try:
        deep = '{"v":1,"text":' + "[" * 900 + "]" * 900 + "}"
        ack = await raw.call("chat", deep, 7)
        assert ack is not None, "a deep but parsable payload is answered"
        assert_refused(ack, CODES, {"bad_request"})
    finally:
        await raw.close()
    assert await stage.db.snapshot() == before
    assert await stage.unexpected_broadcasts([]) == []
    assert (await stage.observer.call("time", {"v": 1}))["ok"]
