"""Signaling over real Socket.IO against a real server process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, wait_for_no_participants
from tests.loopback import Loopback, loopback_server
from tests.sio_client import Client
from tests.waiting import until

Connect = Callable[[], Any]

# Each test makes classes of its own: one server for them all (tests/conftest.py).
pytestmark = pytest.mark.shared_server


def links(server: RunningServer, title: str = "Spin") -> tuple[str, str]:
    room = server.create_room(title)
    return str(room["host_link"]), str(room["join_link"])


def test_create_room_gives_signed_links(server: RunningServer) -> None:
    response = server.instructor().post("/api/rooms", json={"title": "  Tabata  "})
    assert response.status_code == 201
    body = response.json()
    assert body["room"]["title"] == "Tabata"
    room_id = body["room"]["id"]
    assert body["host_link"].startswith(f"{server.url}/r/{room_id}#t=")
    assert body["join_link"].startswith(f"{server.url}/r/{room_id}#t=")
    assert body["host_link"] != body["join_link"]
    page = httpx.get(body["join_link"].split("#")[0])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ('{"title": ""}', "application/json", 400),
        ('{"title": "x", "extra": 1}', "application/json", 400),
        ('{"title": 5}', "application/json", 400),
        ('{"title": "' + "x" * 121 + '"}', "application/json", 400),
        ("not json", "application/json", 400),
        ('{"title": "x"}', "text/plain", 415),
    ],
)
def test_bad_room_requests_are_refused(
    server: RunningServer, body: str, content_type: str, status: int
) -> None:
    before = server.stored_rooms()
    response = server.instructor().post(
        "/api/rooms", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_request"
    assert response.json()["error"]["message"]
    assert server.stored_rooms() == before


async def test_join_roster_and_presence(server: RunningServer, connect: Connect) -> None:
    host_link, join_link = links(server)
    host = await connect()
    joined = await host.join(host_link, "Coach")
    assert joined["ok"] and joined["you"]["role"] == "host"
    assert [p["name"] for p in joined["participants"]] == ["Coach"]
    ann = await connect()
    ann_joined = await ann.join(join_link, "Ann")
    assert ann_joined["you"]["role"] == "participant"
    assert [p["name"] for p in ann_joined["participants"]] == ["Coach", "Ann"]
    event = await host.wait_for("participant_joined")
    assert event["participant"]["name"] == "Ann"
    assert (await ann.call("leave", {"v": 1}))["ok"]
    left = await host.wait_for("participant_left")
    assert left["id"] == ann_joined["you"]["id"]


async def test_disconnect_counts_as_leave(server: RunningServer, connect: Connect) -> None:
    host_link, join_link = links(server)
    host = await connect()
    await host.join(host_link, "Coach")
    bob = await connect()
    bob_id = (await bob.join(join_link, "Bob"))["you"]["id"]
    await bob.close()
    left = await host.wait_for("participant_left")
    assert left["id"] == bob_id


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda t: t[:-3] + "AAA", "invalid_token"),
        (lambda t: "garbage", "invalid_token"),
        (lambda t: t.split(".")[0], "invalid_token"),
    ],
)
async def test_forged_tokens_are_refused(
    server: RunningServer, connect: Connect, mangle: Callable[[str], str], code: str
) -> None:
    wait_for_no_participants(server)  # the count below is the server's
    _, join_link = links(server)
    client = await connect()
    room, token = join_link.split("/r/")[1].split("#t=")
    ack = await client.call("join", {"v": 1, "token": mangle(token), "name": "Eve", "room": room})
    assert ack == {"ok": False, "error": {"code": code, "message": ack["error"]["message"]}}
    error = await client.wait_for("error")
    assert error["code"] == code and error["event"] == "join"
    assert server.stats()["participants"] == 0


async def test_token_for_other_room_is_refused(server: RunningServer, connect: Connect) -> None:
    _, join_a = links(server, "A")
    _, join_b = links(server, "B")
    room_b = join_b.split("/r/")[1].split("#")[0]
    token_a = join_a.split("#t=")[1]
    client = await connect()
    ack = await client.call("join", {"v": 1, "token": token_a, "name": "Eve", "room": room_b})
    assert ack["error"]["code"] == "wrong_room"


async def test_expired_token_is_refused(server: RunningServer, connect: Connect) -> None:
    from signaling.tokens import TokenSigner
    from tests.conftest import SHARED_SECRET

    room_id = str(server.create_room()["room"]["id"])  # type: ignore[index]
    token, _ = TokenSigner(SHARED_SECRET.encode(), 60).issue(room_id, "participant", now=0)
    client = await connect()
    ack = await client.call("join", {"v": 1, "token": token, "name": "Late", "room": room_id})
    assert ack["error"]["code"] == "token_expired"
    assert "expired" in ack["error"]["message"]


async def test_a_rejoin_token_expires_with_its_link(
    server: RunningServer, connect: Connect
) -> None:
    """The bound and device tokens a join hands out expire when the link did: rejoining
    does not renew a link (else an unended class could be re-entered for ever)."""
    from signaling.tokens import TokenSigner
    from tests.conftest import SHARED_SECRET

    signer = TokenSigner(SHARED_SECRET.encode(), 3600)
    room_id = str(server.create_room()["room"]["id"])  # type: ignore[index]
    link_expiry = int(time.time()) + 90
    token, _ = signer.issue(room_id, "participant", expires_at=link_expiry)
    client = await connect()
    ack = await client.call("join", {"v": 1, "token": token, "name": "Ann", "room": room_id})
    assert ack["ok"], ack
    for bound in (ack["token"], ack["device_token"]):
        grant = signer.verify(bound, room_id=room_id)
        assert grant.expires_at == link_expiry and grant.participant_id == ack["you"]["id"]
    rejoin = await connect()
    payload = {"v": 1, "token": ack["token"], "name": "Ann", "room": room_id}
    again = await rejoin.call("join", payload)
    assert signer.verify(again["token"]).expires_at == link_expiry


async def test_chat_is_persisted_and_late_joiners_get_the_last_100(
    server: RunningServer, connect: Connect
) -> None:
    host_link, join_link = links(server)
    host = await connect()
    await host.join(host_link, "Coach")
    # Chat is limited to bursts of 5 per person: 21 people write the 105 messages.
    for person in range(21):
        chatter = await connect()
        await chatter.join(join_link, f"Rider {person}")
        for i in range(person * 5, person * 5 + 5):
            ack = await chatter.call("chat", {"v": 1, "text": f"rep {i}"})
            assert ack["ok"] and ack["message"]["text"] == f"rep {i}"
        await chatter.close()
    late = await connect()
    joined = await late.join(join_link, "Late")
    assert [m["text"] for m in joined["chat"]] == [f"rep {i}" for i in range(5, 105)]
    await late.call("chat", {"v": 1, "text": "hi all"})
    got = await host.wait_for("chat", lambda m: m["message"]["text"] == "hi all")
    assert got["message"]["name"] == "Late"


async def test_every_answer_carries_the_security_headers(
    server: RunningServer, tmp_path: Path
) -> None:
    """Pages, files, API answers and errors: CSP without inline script, no framing, no
    sniffing, no referrer, no version in Server; HSTS only behind an https public URL."""
    room_id = server.create_room()["room"]["id"]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        answers = [
            await http.get(path)
            for path in ("/", f"/r/{room_id}", "/static/room.js", "/api/stats", "/no-such-page")
        ]
    for answer in answers:
        headers = answer.headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert headers["server"] == "PulseRoom", headers["server"]
        assert "strict-transport-security" not in headers  # the shared server is http
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 404]
    async with (
        loopback_server(tmp_path, PULSEROOM_PUBLIC_URL="https://class.example") as https,
        httpx.AsyncClient(timeout=10) as http,
    ):
        answer = await http.get(f"{https.url}/api/stats")
    assert answer.headers["strict-transport-security"].startswith("max-age=")


async def test_nobody_passes_for_the_instructor(server: RunningServer, connect: Connect) -> None:
    """Names with invisible formatting characters, or the instructor's own name, are
    refused; the instructor's chat messages carry their role, live and in the history;
    a participant's CSV cell cannot become a spreadsheet formula."""
    host_link, join_link = links(server)
    host = await connect()
    await host.join(host_link, "Coach Ana")
    for name, code in [
        ("coach ana", "name_taken"),
        ("Coach Ana ", "name_taken"),
        ("Ann\u202egnp.exe", "bad_request"),  # right-to-left override
        ("Co\u200bach Ana", "bad_request"),  # zero-width space
    ]:
        fake = await connect()
        ack = await fake.join(join_link, name)
        assert ack["error"]["code"] == code, (name, ack)
        await fake.close()
    room_id = host_link.split("/r/", 1)[1].split("#t=")[0]
    formula = '=HYPERLINK("http://x.io","hi")'
    ann = await connect()
    ann_ack = await ann.join(join_link, formula)
    assert ann_ack["ok"], ann_ack
    assert {p["name"] for p in ann_ack["participants"]} == {"Coach Ana", formula}
    await host.call("chat", {"v": 1, "text": "Squats next"})
    await ann.call("chat", {"v": 1, "text": "Coach says: stop"})
    live = await ann.wait_for("chat", lambda m: m["message"]["text"] == "Squats next")
    assert live["message"]["role"] == "host"
    late = await connect()
    history = (await late.join(join_link, "Late"))["chat"]
    assert [(m["text"], m["role"]) for m in history] == [
        ("Squats next", "host"),
        ("Coach says: stop", "participant"),
    ]
    host_token = host_link.split("#t=")[1]
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(
            f"{server.url}/api/rooms/{room_id}/summary.csv",
            headers={"Authorization": f"Bearer {host_token}"},
        )
    csv_text = answer.text
    names = [line.split(",", 2)[1] for line in csv_text.splitlines()[1:]]
    assert '\'=HYPERLINK(""http://x.io""' in csv_text, csv_text
    assert not any(name.lstrip('"').startswith("=") for name in names), names


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("chat", {"v": 1, "text": ""}),
        ("chat", {"v": 1, "text": "x" * 1001}),
        ("chat", {"v": 1, "text": "hi", "participant_id": "someone-else"}),
        ("chat", {"v": 2, "text": "hi"}),
        ("chat", "just a string"),
        ("chat", None),
        ("chat", {"v": 1, "text": 5}),
        ("media_state", {"v": 1, "audio": "yes", "video": True}),
        ("ice", {"v": 1, "pc": "other", "candidate": ""}),
        ("publish", {"v": 1, "type": "offer", "sdp": "x" * (64 * 1024 + 1)}),
        ("publish", {"v": 1, "type": "offer", "sdp": "not sdp at all"}),
        ("subscribe_answer", {"v": 1, "type": "answer", "sdp": "v=0"}),
        ("subscribe_answer", {"v": 1, "type": "answer", "sdp": "x" * (1024 * 1024 + 1)}),
    ],
)
async def test_bad_payloads_get_an_error_and_change_nothing(
    server: RunningServer, connect: Connect, event: str, payload: Any
) -> None:
    host_link, join_link = links(server)
    host = await connect()
    await host.join(host_link, "Coach")
    client = await connect()
    await client.join(join_link, "Ann")
    ack = await client.call(event, payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] in ("bad_request", "bad_sdp")
    error = await client.wait_for("error")
    assert error["event"] == event and error["message"]
    # Nothing changed: no chat went out, the session still works.
    assert host.received["chat"] == []
    assert host.received["participant_updated"] == []
    assert (await client.call("chat", {"v": 1, "text": "still here"}))["ok"]
    assert "internal" not in server.log().lower() or "Traceback" not in server.log()


async def test_events_before_join_are_refused(server: RunningServer, connect: Connect) -> None:
    client = await connect()
    for event, payload in [
        ("chat", {"v": 1, "text": "hi"}),
        ("publish", {"v": 1, "type": "offer", "sdp": "v=0"}),
        ("gallery", {"v": 1, "enabled": True}),
    ]:
        ack = await client.call(event, payload)
        assert ack["error"]["code"] == "not_joined"


async def test_a_connection_that_never_joins_is_closed(tmp_path: Path) -> None:
    """PULSEROOM_JOIN_TIMEOUT after connecting, a session that has not joined is cut off;
    one that joined in time stays, well past it."""
    async with loopback_server(tmp_path, PULSEROOM_JOIN_TIMEOUT=1) as server:
        room = await server.create_room()
        idle, joiner = Client(server.url), Client(server.url)
        await idle.connect()
        await joiner.connect()
        try:
            assert (await joiner.join(str(room["join_link"]), "Ann"))["ok"]
            await until(lambda: not idle.sio.connected, 5, "the idle connection is closed")
            await asyncio.sleep(1.2)  # past the joiner's own deadline
            assert joiner.sio.connected
            assert (await joiner.call("chat", {"v": 1, "text": "still here"}))["ok"]
        finally:
            await idle.close()
            await joiner.close()


async def test_instructor_sessions_are_limited_too(server: RunningServer, connect: Connect) -> None:
    """A leaked host link does not let any number of sessions in: five instructor
    sessions at most, and a rejoin with a bound token still replaces its own."""
    host_link, join_link = links(server)
    hosts = [await connect() for _ in range(5)]
    acks = [await host.join(host_link, f"Coach {i}") for i, host in enumerate(hosts)]
    assert all(ack["ok"] for ack in acks), acks
    extra = await connect()
    refused = await extra.join(host_link, "Coach 5")
    assert refused["error"]["code"] == "room_full", refused
    room_id = host_link.split("/r/", 1)[1].split("#t=")[0]
    bound = f"{server.url}/r/{room_id}#t={acks[0]['token']}"
    again = await connect()
    assert (await again.join(bound, "Coach 0"))["ok"]  # replaces its own stale session
    participant = await connect()
    assert (await participant.join(join_link, "Ann"))["ok"]


async def test_the_summary_token_reads_the_summary_and_joins_nothing(
    server: RunningServer, connect: Connect
) -> None:
    """The join ack's summary token (what the page puts in the summary URL, which may be
    shared) reads the summary with the joiner's rights, but joins as no one: the host's
    would otherwise hand the class to whoever got the URL."""
    host_link, join_link = links(server)
    room_id = host_link.split("/r/", 1)[1].split("#t=")[0]
    host = await connect()
    ack = await host.join(host_link, "Coach")
    ann = await connect()
    ann_ack = await ann.join(join_link, "Ann")
    assert ack["summary_token"] not in (ack["token"], host_link.split("#t=")[1])
    for token in (ack["summary_token"], ann_ack["summary_token"]):
        thief = await connect()
        refused = await thief.join(f"{server.url}/r/{room_id}#t={token}", "Coach")
        assert refused["error"]["code"] == "invalid_token", refused
        assert "summary only" in refused["error"]["message"]
    async with httpx.AsyncClient(timeout=10) as http:

        async def summary(token: str) -> list[str]:
            answer = await http.get(
                f"{server.url}/api/rooms/{room_id}/summary",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 200, answer.text
            return sorted(p["name"] for p in answer.json()["participants"])

        assert await summary(ack["summary_token"]) == ["Ann", "Coach"]
        assert await summary(ann_ack["summary_token"]) == ["Ann"]


async def test_only_the_host_controls_the_class(server: RunningServer, connect: Connect) -> None:
    host_link, join_link = links(server)
    host = await connect()
    await host.join(host_link, "Coach")
    ann = await connect()
    await ann.join(join_link, "Ann")
    for event, payload in [("gallery", {"v": 1, "enabled": True}), ("end_class", {"v": 1})]:
        ack = await ann.call(event, payload)
        assert ack["error"]["code"] == "forbidden"
    assert (await host.call("gallery", {"v": 1, "enabled": True}))["ok"]
    assert (await ann.wait_for("gallery"))["enabled"] is True


async def test_joining_twice_on_one_connection_is_refused(
    server: RunningServer, connect: Connect
) -> None:
    wait_for_no_participants(server)  # the count below is the server's
    _, join_link = links(server)
    client = await connect()
    await client.join(join_link, "Ann")
    ack = await client.join(join_link, "Ann again")
    assert ack["error"]["code"] == "already_joined"
    assert server.stats()["participants"] == 1


async def test_room_full(tmp_path: Path) -> None:
    # A server of its own (in this event loop: tests/loopback.py) for its smaller limit.
    async with loopback_server(tmp_path, PULSEROOM_MAX_PARTICIPANTS=2) as server:
        await room_full(server)


async def room_full(server: Loopback) -> None:
    clients = [await Client(server.url).connect() for _ in range(4)]
    try:
        room = await server.create_room("Spin")
        host_link, join_link = str(room["host_link"]), str(room["join_link"])
        assert (await clients[0].join(join_link, "A"))["ok"]
        assert (await clients[1].join(join_link, "B"))["ok"]
        ack = await clients[2].join(join_link, "C")
        assert ack["error"]["code"] == "room_full"
        assert "2 participants" in ack["error"]["message"]
        # The instructor is not a participant: a full class still lets them in.
        assert (await clients[3].join(host_link, "Coach"))["ok"]
    finally:
        for client in clients:
            await client.close()


async def test_ended_class_refuses_everyone(server: RunningServer, connect: Connect) -> None:
    host_link, join_link = links(server)
    host = await connect()
    await host.join(host_link, "Coach")
    ann = await connect()
    await ann.join(join_link, "Ann")
    assert (await host.call("end_class", {"v": 1}))["ok"]
    await ann.wait_for("class_ended")
    assert (await ann.call("chat", {"v": 1, "text": "hello?"}))["error"]["code"] == "not_joined"
    newcomer = await connect()
    assert (await newcomer.join(join_link, "New"))["error"]["code"] == "room_ended"
    assert (await newcomer.join(host_link, "Coach"))["error"]["code"] == "room_ended"


async def test_links_follow_the_public_url_when_set(tmp_path: Path) -> None:
    public = "https://classes.example.com/"
    async with loopback_server(tmp_path, PULSEROOM_PUBLIC_URL=public) as server:
        room = await server.create_room()
        assert str(room["join_link"]).startswith("https://classes.example.com/r/")


def test_links_follow_the_request_address_by_default(server: RunningServer) -> None:
    port = server.url.rsplit(":", 1)[1]
    response = server.instructor().post(f"http://localhost:{port}/api/rooms", json={"title": "LAN"})
    assert response.json()["join_link"].startswith(f"http://localhost:{port}/r/")


async def test_a_large_subscribe_answer_is_not_refused_for_its_size(
    server: RunningServer, connect: Connect
) -> None:
    """An instructor of 100 answers ~200 m-lines: far more than a publish offer may be."""
    _, join_link = links(server)
    client = await connect()
    await client.join(join_link, "Ann")
    ack = await client.call("subscribe_answer", {"v": 1, "type": "answer", "sdp": "a" * 300_000})
    assert ack["error"] == {"code": "bad_request", "message": ack["error"]["message"]}
    assert "no subscribe offer" in ack["error"]["message"]
