"""Abuse by clients that hold a real link: acting for others, escaping their role or
class, oversized media descriptions, and flooding. One real server for the module.

Host-only and device-allowed events are read from the server's own table, so an
instructor control added later is checked here without being listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from signaling.messages import MAX_SDP, MAX_SUBSCRIBE_SDP
from tests.fuzz_payloads import valid_base
from tests.fuzz_target import (
    PROBE,
    Database,
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
HOST_ONLY = sorted(name for name, e in EVENTS.items() if e.host_only)
NOT_FOR_DEVICES = sorted(name for name, e in EVENTS.items() if e.joined and not e.device)
# Three: the tightest per-event limit (publish) is a burst of three.
ACTOR_FIELDS = ("participant_id", "from", "acts_for")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from run_target(tmp_path_factory.mktemp("abuse"))


@dataclass
class Class:
    """A class with its instructor, two participants and Ann's strap bridge."""

    target: Target
    room: dict[str, Any]
    coach: Client
    ann: Client
    ben: Client
    strap: Client
    ids: dict[str, str]
    db: Database

    async def quiet(self) -> list[tuple[str, Any]]:
        """Broadcasts the instructor got since the setup (a state change is broadcast)."""
        await self.coach.call(*PROBE)
        await asyncio.sleep(0.05)
        return [(e, i) for e, items in self.coach.received.items() for i in items]


@pytest.fixture
async def klass(target: Target) -> AsyncIterator[Class]:
    room = target.create_room()
    coach, ann, ben, strap = [await Client(target.url).connect() for _ in range(4)]
    ids = {"coach": (await coach.join(str(room["host_link"]), "Coach"))["you"]["id"]}
    joined = await ann.join(str(room["join_link"]), "Ann")
    ids["ann"] = joined["you"]["id"]
    ids["ben"] = (await ben.join(str(room["join_link"]), "Ben"))["you"]["id"]
    device_link = f"{target.url}/r/{room['room']['id']}#t={joined['device_token']}"
    assert (await strap.join(device_link, "Ann's strap"))["ok"]
    db = await Database(target.database_url).open()
    await asyncio.sleep(0.2)
    for client in (coach, ann, ben, strap):
        client.received.clear()
    target.mark_log()
    yield Class(target, room, coach, ann, ben, strap, ids, db)
    for client in (coach, ann, ben, strap):
        await client.close()
    await db.close()
    assert target.log_problems() == []


def disconnection(client: Client) -> asyncio.Event:
    """Set once the server has closed ``client``'s session."""
    gone = asyncio.Event()
    client.sio.on("disconnect", lambda *_reason: gone.set())
    return gone


def _aimed_at(event: str, ids: dict[str, str]) -> dict[str, Any]:
    """A valid payload for ``event``, naming Ben wherever it names a participant."""
    payload = valid_base(EVENTS[event].model)
    if "participant_id" in payload:
        payload["participant_id"] = ids["ben"]
    return payload


@pytest.mark.parametrize("event", HOST_ONLY)
async def test_a_participant_cannot_use_the_instructors_controls(klass: Class, event: str) -> None:
    """Mute, remove (kick), spotlight, lock, timer, gallery, end the class: all refused."""
    before = await klass.db.snapshot()
    ack = await klass.ann.call(event, _aimed_at(event, klass.ids))
    assert assert_refused(ack, CODES) == "forbidden"
    assert await klass.db.snapshot() == before
    assert await klass.quiet() == []
    assert (await klass.ben.call(*PROBE))["ok"]  # Ben was neither removed nor muted


@pytest.mark.parametrize("event", NOT_FOR_DEVICES)
async def test_a_device_link_can_only_send_readings(klass: Class, event: str) -> None:
    """A strap bridge's session may not chat, change media state or use any control."""
    before = await klass.db.snapshot()
    ack = await klass.strap.call(event, _aimed_at(event, klass.ids))
    assert assert_refused(ack, CODES) == "forbidden"
    assert await klass.db.snapshot() == before
    assert await klass.quiet() == []


@pytest.mark.parametrize("event", sorted(EVENTS))
async def test_no_event_takes_an_actor_from_the_payload(klass: Class, event: str) -> None:
    """Naming someone else as the sender is an unknown field: refused, nothing done."""
    base = valid_base(EVENTS[event].model)
    for field in ACTOR_FIELDS:
        if field in base:
            # The instructor's controls name their *target*; only the host may send them.
            assert EVENTS[event].host_only, f"{event} takes {field} from a participant"
            continue
        before = await klass.db.snapshot()
        ack = await klass.ann.call(event, {**base, field: klass.ids["ben"]})
        assert assert_refused(ack, CODES) == "bad_request", (event, field)
        assert await klass.db.snapshot() == before


async def test_chat_always_carries_the_senders_own_identity(klass: Class) -> None:
    ack = await klass.ann.call("chat", {"v": 1, "text": "hi from Ann"})
    assert ack["ok"]
    message = await klass.ben.wait_for("chat", lambda c: c["message"]["text"] == "hi from Ann")
    assert message["message"]["participant_id"] == klass.ids["ann"]
    assert message["message"]["name"] == "Ann"
    stored = await klass.db.scalar(
        "SELECT participant_id FROM chat_messages WHERE id = $1", ack["message"]["id"]
    )
    assert stored == klass.ids["ann"]


async def test_a_token_joins_only_its_own_class(klass: Class) -> None:
    other = klass.target.create_room()
    before = await klass.db.snapshot()
    intruder = await Client(klass.target.url).connect()
    try:
        for link in (klass.room["join_link"], klass.room["host_link"]):
            ack = await intruder.call(
                "join",
                {"v": 1, "token": token_of(str(link)), "name": "X", "room": other["room"]["id"]},
            )
            assert assert_refused(ack, CODES) == "wrong_room"
        # Ann's own (bound) token is just as bound to her class.
        ann_token = token_of(str(klass.room["join_link"]))
        forged = {"v": 1, "token": ann_token + "x", "name": "X", "room": klass.room["room"]["id"]}
        ack = await intruder.call("join", forged)
        assert assert_refused(ack, CODES) == "invalid_token"
    finally:
        await intruder.close()
    assert await klass.db.snapshot() == before
    assert await klass.quiet() == []


async def test_oversized_sdp_is_refused(klass: Class) -> None:
    before = await klass.db.snapshot()
    offer = "v=0 " + "x" * MAX_SDP
    ack = await klass.ann.call("publish", {"v": 1, "type": "offer", "sdp": offer})
    assert assert_refused(ack, CODES) == "bad_request"
    answer = "v=0 " + "x" * MAX_SUBSCRIBE_SDP  # past the limit, inside the transport's
    ack = await klass.ann.call("subscribe_answer", {"v": 1, "type": "answer", "sdp": answer})
    assert assert_refused(ack, CODES) == "bad_request"
    assert await klass.db.snapshot() == before
    assert (await klass.ann.call(*PROBE))["ok"]


async def test_a_message_past_the_transport_limit_closes_only_that_session(klass: Class) -> None:
    """Larger than any SDP may be (2 MiB): the connection is cut before anything parses it."""
    before = await klass.db.snapshot()
    ben = klass.ben
    gone = disconnection(ben)
    await ben.sio.emit("chat", {"v": 1, "text": "x" * (2 * 1024 * 1024)})
    await asyncio.wait_for(gone.wait(), 15)
    left = await klass.coach.wait_for("participant_left", lambda e: e["id"] == klass.ids["ben"])
    assert left["v"] == 1
    after = await klass.db.snapshot()
    assert after["chat_messages"] == before["chat_messages"]
    assert (await klass.ann.call(*PROBE))["ok"]


async def test_a_client_that_keeps_flooding_is_disconnected(klass: Class) -> None:
    """Refused for the rate, and still sending: after ~200 refusals the session is cut off."""
    flooder = klass.ben
    gone = disconnection(flooder)
    acks: list[Any] = []
    for _ in range(1500):  # without waiting for answers, as a script would
        await flooder.sio.emit("time", {"v": 1}, callback=lambda *a: acks.append(a))
    await asyncio.wait_for(gone.wait(), 20)
    errors = flooder.received["error"]
    assert errors and errors[-1]["code"] == "rate_limited"
    assert "disconnected" in errors[-1]["message"]
    assert len(acks) < 1000  # cut off well before the flood ended
    await klass.coach.wait_for("participant_left", lambda e: e["id"] == klass.ids["ben"])
    assert (await klass.ann.call(*PROBE))["ok"]  # the others are untouched


async def test_a_few_rate_limited_requests_do_not_disconnect(klass: Class) -> None:
    """A person clicking too fast is told to slow down, and stays."""
    acks = [await klass.ann.call("time", {"v": 1}) for _ in range(40)]
    assert sum(1 for a in acks if not a["ok"]) >= 25
    assert {a["error"]["code"] for a in acks if not a["ok"]} == {"rate_limited"}
    assert klass.ann.sio.connected
    assert (await klass.ann.call(*PROBE))["ok"]
