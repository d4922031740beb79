"""The instructor's controls over real Socket.IO against a real server (SFU on workers).

Lock, mute, remove, spotlight, interval timer and class clock: what changes, who is told,
and that participants and malformed payloads change nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from pulseroom.bot import Bot
from sfu.backend import Role
from sfu.topology import receives
from signaling.interval_timer import IntervalTimer, Phase, Program
from tests import peers
from tests.conftest import RunningServer, start_server, stop_server
from tests.sio_client import Client

Connect = Callable[[], Awaitable[Client]]
TABATA = {
    "title": "Tabata",
    "phases": [
        {"name": "Work", "seconds": 20, "kind": "work"},
        {"name": "Rest", "seconds": 10, "kind": "rest"},
    ],
    "rounds": 8,
}
HOST_ONLY: list[tuple[str, dict[str, Any]]] = [
    ("lock", {"locked": True}),
    ("mute", {"participant_id": None}),
    ("remove", {"participant_id": "someone"}),
    ("spotlight", {"participant_id": None}),
    ("timer", {"action": "start", "program": TABATA}),
    ("timer", {"action": "stop"}),
    ("clock", {"action": "start"}),
]


@pytest.fixture(scope="module", name="control_server")
def control_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module, with two SFU workers (the pool path carries spotlight)."""
    running = start_server(tmp_path_factory.mktemp("controls"), PULSEROOM_SFU_WORKERS="2")
    yield running
    stop_server(running)


@pytest_asyncio.fixture(name="connect")
async def connect_fixture(control_server: RunningServer) -> AsyncIterator[Connect]:
    """Socket.IO clients that also record ``class_state`` and ``muted``."""
    clients: list[Client] = []

    async def make() -> Client:
        client = Client(control_server.url)
        for name in ("class_state", "muted"):
            client.sio.on(name, client._recorder(name))
        await client.connect()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def links(server: RunningServer, title: str = "Controls") -> tuple[str, str]:
    room = server.create_room(title)
    return str(room["host_link"]), str(room["join_link"])


def bound(link: str, ack: dict[str, Any], key: str = "token") -> str:
    """The link with the join ack's bound (or device) token instead of the link's."""
    return f"{link.split('#t=')[0]}#t={ack[key]}"


async def send(client: Client, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return await client.call(event, {"v": 1, **payload})


def refused(ack: dict[str, Any], code: str) -> None:
    assert ack["ok"] is False, ack
    assert ack["error"]["code"] == code, ack
    assert ack["error"]["message"]


async def quiet(client: Client, event: str, seconds: float = 0.5) -> None:
    """Nothing of ``event`` arrives for a while."""
    before = len(client.received[event])
    await asyncio.sleep(seconds)
    assert client.received[event][before:] == []


# -- state in the join ack, clock ------------------------------------------------------


async def test_join_ack_carries_the_controls_and_the_clock_starts_with_the_host(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(control_server)
    early = await connect()
    ack = await early.join(join_link, "Early")
    assert ack["ok"], ack
    assert ack["controls"] == {
        "locked": False,
        "spotlight": None,
        "clock_started_at": None,
        "timer": None,
        # An instant class: under way from the start, no lobby (tests/test_schedule.py).
        "started": True,
        "starts_at": None,
        "duration_s": None,
    }
    assert abs(ack["server_time"] - time.time()) < 2  # same machine: same clock

    host = await connect()
    before = time.time()
    host_ack = await host.join(host_link, "Coach")
    started = host_ack["controls"]["clock_started_at"]
    assert before - 1 <= started <= time.time() + 1
    # Whoever came before the instructor hears that the clock started.
    event = await early.wait_for("class_state")
    assert event["state"]["clock_started_at"] == started
    assert event["server_time"] >= started

    # A rejoining instructor does not restart it; stopping and starting does.
    second = await connect()
    assert (await second.join(host_link, "Coach 2"))["controls"]["clock_started_at"] == started
    assert (await send(host, "clock", {"action": "stop"}))["ok"]
    stopped = await early.wait_for("class_state", lambda e: e["state"]["clock_started_at"] is None)
    assert stopped["state"]["locked"] is False
    await asyncio.sleep(0.05)
    assert (await send(host, "clock", {"action": "start"}))["ok"]
    restarted = await early.wait_for(
        "class_state", lambda e: (e["state"]["clock_started_at"] or 0) > started
    )
    assert restarted["state"]["clock_started_at"] <= restarted["server_time"]


async def test_time_answers_with_the_server_clock(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, _ = links(control_server)
    client = await connect()
    refused(await send(client, "time", {}), "not_joined")
    await client.join(host_link, "Coach")
    sent = time.time()
    ack = await send(client, "time", {})
    assert ack["ok"] and sent - 0.5 <= ack["server_time"] <= time.time() + 0.5


# -- lock ------------------------------------------------------------------------------


async def test_locked_class_refuses_newcomers_but_not_rejoins(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(control_server)
    host = await connect()
    await host.join(host_link, "Coach")
    ann = await connect()
    ann_ack = await ann.join(join_link, "Ann")
    assert (await send(host, "lock", {"locked": True}))["ok"]
    state = await ann.wait_for("class_state", lambda e: e["state"]["locked"])
    assert state["state"]["spotlight"] is None

    # Someone new with the class link is refused, clearly, and nobody sees them.
    newcomer = await connect()
    ack = await newcomer.join(join_link, "Newcomer")
    refused(ack, "room_locked")
    assert "locked" in ack["error"]["message"]
    error = await newcomer.wait_for("error")
    assert (error["code"], error["event"]) == ("room_locked", "join")
    refused(await send(newcomer, "chat", {"text": "hi"}), "not_joined")
    await quiet(host, "participant_joined", 0.3)

    # Ann drops and comes back with her bound token: let in, as herself.
    await ann.close()
    await host.wait_for("participant_left", lambda e: e["id"] == ann_ack["you"]["id"])
    ann_again = await connect()
    again = await ann_again.join(bound(join_link, ann_ack), "Ann")
    assert again["ok"], again
    assert again["you"]["id"] == ann_ack["you"]["id"]
    assert again["controls"]["locked"] is True
    # An instructor (a second window with the host link) always gets in.
    assert (await (await connect()).join(host_link, "Coach again"))["ok"]

    # Unlocked: newcomers welcome again.
    assert (await send(host, "lock", {"locked": False}))["ok"]
    await ann_again.wait_for("class_state", lambda e: not e["state"]["locked"])
    assert (await (await connect()).join(join_link, "Newcomer"))["ok"]


# -- mute ------------------------------------------------------------------------------


async def test_mute_one_then_everyone(control_server: RunningServer, connect: Connect) -> None:
    host_link, join_link = links(control_server)
    host = await connect()
    host_ack = await host.join(host_link, "Coach")
    ann, bob = await connect(), await connect()
    ann_id = (await ann.join(join_link, "Ann"))["you"]["id"]
    bob_id = (await bob.join(join_link, "Bob"))["you"]["id"]

    ack = await send(host, "mute", {"participant_id": ann_id})
    assert ack == {"ok": True, "muted": [ann_id]}
    told = await ann.wait_for("muted")
    assert told == {"v": 1, "by": host_ack["you"]["id"], "all": False}
    # Everyone sees Ann muted at once, from the server itself.
    for client in (host, bob, ann):
        await client.wait_for(
            "participant_updated",
            lambda e: e["participant"]["id"] == ann_id and e["participant"]["audio"] is False,
        )
    assert bob.received["muted"] == []

    # She may unmute herself, as in any class app; everyone sees that too.
    assert (await send(ann, "media_state", {"audio": True, "video": True}))["ok"]
    await bob.wait_for(
        "participant_updated",
        lambda e: e["participant"]["id"] == ann_id and e["participant"]["audio"] is True,
    )

    # Mute all: every participant, never the instructor.
    ack = await send(host, "mute", {"participant_id": None})
    assert ack["ok"] and sorted(ack["muted"]) == sorted([ann_id, bob_id])
    for client in (ann, bob):
        await client.wait_for("muted", lambda e: e["all"] is True)
    await host.wait_for(
        "participant_updated",
        lambda e: e["participant"]["id"] == bob_id and e["participant"]["audio"] is False,
    )
    assert host.received["muted"] == []
    # Again: nobody's microphone is on, so nobody is told or counted.
    told_before = len(ann.received["muted"])
    assert (await send(host, "mute", {"participant_id": None}))["muted"] == []
    await asyncio.sleep(0.2)
    assert len(ann.received["muted"]) == told_before
    roster = (await (await connect()).join(host_link, "Coach 2"))["participants"]
    audio = {p["name"]: p["audio"] for p in roster}
    assert audio == {"Coach": True, "Ann": False, "Bob": False, "Coach 2": True}

    # The instructor cannot be muted by mute, and unknown ids are said to be unknown.
    refused(await send(host, "mute", {"participant_id": host_ack["you"]["id"]}), "bad_request")
    refused(await send(host, "mute", {"participant_id": "nobody"}), "not_found")


# -- remove ----------------------------------------------------------------------------


async def test_removed_participant_is_out_and_stays_out(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(control_server)
    host = await connect()
    host_id = (await host.join(host_link, "Coach"))["you"]["id"]
    ann, bob = await connect(), await connect()
    ann_ack = await ann.join(join_link, "Ann")
    ann_id = ann_ack["you"]["id"]
    await bob.join(join_link, "Bob")
    strap = await connect()
    device = {
        "v": 1,
        "token": ann_ack["device_token"],
        "name": "strap",
        "room": ann_ack["room"]["id"],
    }
    assert (await strap.call("join", device))["ok"]

    assert (await send(host, "remove", {"participant_id": ann_id}))["ok"]
    error = await ann.wait_for("error")
    assert error["code"] == "removed"
    for _ in range(100):
        if not ann.sio.connected and not strap.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not ann.sio.connected and not strap.sio.connected  # her bridge went too
    for client in (host, bob):
        await client.wait_for("participant_left", lambda e: e["id"] == ann_id)

    # Her bound token and her device link no longer let her in; Bob carries on.
    back = await connect()
    refused(await back.join(bound(join_link, ann_ack), "Ann"), "removed")
    refused(await (await connect()).call("join", device), "removed")
    assert (await send(bob, "chat", {"text": "still here"}))["ok"]

    refused(await send(host, "remove", {"participant_id": host_id}), "bad_request")
    refused(await send(host, "remove", {"participant_id": ann_id}), "not_found")

    # Another instructor session (a host link that went where it should not): removed
    # too, its bound token refused; the instructor who removed it carries on.
    intruder = await connect()
    intruder_ack = await intruder.join(host_link, "Not the coach")
    assert (await send(host, "remove", {"participant_id": intruder_ack["you"]["id"]}))["ok"]
    assert (await intruder.wait_for("error"))["code"] == "removed"
    refused(await (await connect()).join(bound(host_link, intruder_ack), "x"), "removed")
    assert (await send(host, "chat", {"text": "where were we"}))["ok"]


# -- who may, and what is malformed ----------------------------------------------------


async def test_participants_cannot_use_the_controls(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(control_server)
    host = await connect()
    await host.join(host_link, "Coach")
    ann, bob = await connect(), await connect()
    await ann.join(join_link, "Ann")
    bob_id = (await bob.join(join_link, "Bob"))["you"]["id"]
    for event, payload in [*HOST_ONLY, ("remove", {"participant_id": bob_id})]:
        ack = await send(ann, event, payload)
        refused(ack, "forbidden")
        assert "instructor" in ack["error"]["message"]
    await quiet(host, "class_state", 0.3)
    assert bob.sio.connected and bob.received["muted"] == []
    # Nothing changed: a newcomer sees the class as it was, and gets in (not locked).
    late = await (await connect()).join(join_link, "Late")
    assert late["ok"], late
    assert late["controls"]["timer"] is None and late["controls"]["spotlight"] is None


BAD_PAYLOADS: list[tuple[str, Any]] = [
    ("lock", {"v": 1}),
    ("lock", {"v": 1, "locked": "yes"}),
    ("lock", {"v": 1, "locked": True, "extra": 1}),
    ("lock", {"v": 2, "locked": True}),
    ("mute", {"v": 1}),
    ("mute", {"v": 1, "participant_id": ""}),
    ("mute", {"v": 1, "participant_id": "x" * 65}),
    ("remove", {"v": 1, "participant_id": None}),
    ("spotlight", {"v": 1, "participant_id": 5}),
    ("timer", {"v": 1, "action": "start"}),
    ("timer", {"v": 1, "action": "pause", "program": TABATA}),
    ("timer", {"v": 1, "action": "rewind"}),
    ("timer", {"v": 1, "action": "start", "program": {**TABATA, "rounds": 0}}),
    ("timer", {"v": 1, "action": "start", "program": {**TABATA, "rounds": "8"}}),
    ("timer", {"v": 1, "action": "start", "program": {**TABATA, "phases": []}}),
    (
        "timer",
        {
            "v": 1,
            "action": "start",
            "program": {**TABATA, "phases": [{"name": "Work", "seconds": 0, "kind": "work"}]},
        },
    ),
    (
        "timer",
        {
            "v": 1,
            "action": "start",
            "program": {**TABATA, "phases": [{"name": "Work", "seconds": 20, "kind": "nap"}]},
        },
    ),
    (
        "timer",
        {
            "v": 1,
            "action": "start",
            "program": {**TABATA, "phases": [{"name": "", "seconds": 20, "kind": "work"}]},
        },
    ),
    (  # 100 rounds of 10 minutes: more than four hours
        "timer",
        {
            "v": 1,
            "action": "start",
            "program": {
                "phases": [{"name": "Long", "seconds": 600, "kind": "work"}],
                "rounds": 100,
            },
        },
    ),
    ("clock", {"v": 1, "action": "pause"}),
    ("time", {"v": 1, "now": 1}),
    ("lock", "locked"),
]


async def test_bad_payloads_are_refused_and_change_nothing(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(control_server)
    host = await connect()
    token = (await host.join(host_link, "Coach"))["token"]
    # The same instructor on a new connection (it replaces the old session: instructor
    # sessions are limited in number).
    bound = host_link.split("#t=")[0] + f"#t={token}"
    ann = await connect()
    first = await ann.join(join_link, "Ann")
    # Refusals count against the per-session rate limit too: a fresh window every few.
    for index, (event, payload) in enumerate(BAD_PAYLOADS):
        if index and index % 5 == 0:
            host = await connect()
            await host.join(bound, "Coach")
        ack = await host.call(event, payload)
        refused(ack, "bad_request")
    host = await connect()
    await host.join(bound, "Coach")
    # Well-formed but impossible now: also refused, also no change.
    for action in ("pause", "resume", "stop"):
        refused(await send(host, "timer", {"action": action}), "bad_request")
    refused(await send(host, "spotlight", {"participant_id": "not-here"}), "not_found")
    await quiet(ann, "class_state", 0.3)
    assert ann.received["muted"] == []
    late = await (await connect()).join(join_link, "Late")
    assert late["controls"] == first["controls"]


# -- interval timer --------------------------------------------------------------------


def program_of(out: dict[str, Any]) -> Program:
    phases = tuple(Phase(p["name"], p["seconds"], p["kind"]) for p in out["phases"])
    return Program(phases=phases, rounds=out["rounds"], title=out["title"])


async def test_timer_start_pause_resume_stop(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(control_server)
    host = await connect()
    await host.join(host_link, "Coach")
    ann = await connect()
    await ann.join(join_link, "Ann")

    assert (await send(host, "timer", {"action": "start", "program": TABATA}))["ok"]
    started = await ann.wait_for("class_state", lambda e: e["state"]["timer"] is not None)
    timer = started["state"]["timer"]
    assert timer["title"] == "Tabata" and timer["rounds"] == 8 and timer["total_s"] == 240
    assert [p["kind"] for p in timer["phases"]] == ["work", "rest"]
    assert timer["paused_at"] is None
    assert 0 <= started["server_time"] - timer["started_at"] < 1

    # A late joiner gets the same timer in the ack, and with the ack's server time it
    # computes the same position the server holds.
    await asyncio.sleep(1.2)
    late = await connect()
    late_ack = await late.join(join_link, "Late")
    assert late_ack["controls"]["timer"] == timer
    running = IntervalTimer(program_of(timer), timer["started_at"])
    where = running.position(late_ack["server_time"])
    assert (where.round, where.phase.name) == (1, "Work")
    assert 17.5 < where.remaining_s < 19

    assert (await send(host, "timer", {"action": "pause"}))["ok"]
    paused = await ann.wait_for("class_state", lambda e: e["state"]["timer"]["paused_at"])
    paused_at = paused["state"]["timer"]["paused_at"]
    refused(await send(host, "timer", {"action": "pause"}), "bad_request")
    await asyncio.sleep(1.0)
    frozen = IntervalTimer(program_of(paused["state"]["timer"]), timer["started_at"], paused_at)
    assert frozen.elapsed(time.time()) == pytest.approx(paused_at - timer["started_at"])

    assert (await send(host, "timer", {"action": "resume"}))["ok"]
    resumed = await ann.wait_for(
        "class_state",
        lambda e: e["state"]["timer"] and e["state"]["timer"]["started_at"] > timer["started_at"],
    )
    # The pause (about a second) moved the start forward by as much: no second is lost.
    shifted = resumed["state"]["timer"]["started_at"] - timer["started_at"]
    assert resumed["state"]["timer"]["paused_at"] is None
    assert 0.9 < shifted < 3
    refused(await send(host, "timer", {"action": "resume"}), "bad_request")

    assert (await send(host, "timer", {"action": "stop"}))["ok"]
    await ann.wait_for("class_state", lambda e: e["state"]["timer"] is None)
    refused(await send(host, "timer", {"action": "stop"}), "bad_request")


# -- spotlight: what the SFU forwards --------------------------------------------------


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


def frames_from(bot: Bot, publisher_id: str) -> int:
    return sum(t.frames for t in bot.tracks.values() if t.publisher_id == publisher_id)


def offered(bot: Bot) -> list[str]:
    """Publishers in the latest subscribe offer the bot answered."""
    offers = [item for _, kind, item in bot.timeline if kind == "subscribe_offer"]
    return list(offers[-1]) if offers else []


async def test_spotlight_forwards_a_participant_to_everyone(
    control_server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(control_server)
    host = await connect()  # watches only: publishes nothing
    await host.join(host_link, "Coach")
    ann = await peers.join(join_link, "Ann")
    bob = await peers.join(join_link, "Bob")
    late: Bot | None = None
    try:
        ann_id, bob_id = ann.you["id"], bob.you["id"]
        await asyncio.sleep(1.5)
        # Without gallery mode, participants do not receive each other.
        assert frames_from(bob, ann_id) == 0 and ann_id not in offered(bob)

        assert (await send(host, "spotlight", {"participant_id": ann_id}))["ok"]
        state = await host.wait_for("class_state", lambda e: e["state"]["spotlight"] == ann_id)
        assert state["state"]["locked"] is False
        await wait_until(lambda: frames_from(bob, ann_id) > 5, 20, "Bob decodes Ann's video")
        assert offered(bob) == [ann_id]
        assert frames_from(ann, bob_id) == 0  # Bob is not spotlighted: Ann still lacks him

        # Someone joining now gets the spotlighted participant at once (the join carries it).
        late = await peers.join(join_link, "Late")
        await wait_until(lambda: frames_from(late, ann_id) > 5, 20, "Late decodes Ann's video")

        # Back to the instructor: Ann's m-lines go inactive for the participants.
        assert (await send(host, "spotlight", {"participant_id": None}))["ok"]
        await wait_until(lambda: ann_id not in offered(bob), 10, "Bob's offer drops Ann")
        await wait_until(lambda: ann_id not in offered(late), 10, "Late's offer drops Ann")

        # Spotlighted, then gone: a participant who leaves is unspotlighted.
        assert (await send(host, "spotlight", {"participant_id": bob_id}))["ok"]
        await host.wait_for("class_state", lambda e: e["state"]["spotlight"] == bob_id)
        await bob.stop()
        cleared = await host.wait_for(
            "class_state",
            lambda e: (
                e["state"]["spotlight"] is None and e["server_time"] > state["server_time"] + 0.1
            ),
        )
        assert cleared["state"]["spotlight"] is None
    finally:
        for bot in (ann, bob, late):
            if bot is not None:
                await bot.stop()


# -- the topology rule alone -----------------------------------------------------------


@pytest.mark.parametrize(
    ("subscriber", "publisher", "gallery", "spotlit", "expected"),
    [
        ("participant", "participant", False, True, True),
        ("participant", "participant", False, False, False),
        ("participant", "participant", True, False, True),
        ("host", "participant", False, False, True),
        ("device", "participant", False, True, False),
        ("participant", "device", False, True, False),
    ],
)
def test_spotlit_publishers_reach_everyone(
    subscriber: Role, publisher: Role, gallery: bool, spotlit: bool, expected: bool
) -> None:
    assert receives(subscriber, publisher, gallery, spotlit) is expected
