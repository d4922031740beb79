"""client/: the protocol's Python client, piece by piece (no server: the pieces that
need one are exercised by the bot, heart-rate and benchmark tests, and test_cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCBundlePolicy, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from hypothesis import given
from hypothesis import strategies as st

from client.connections import publish, rtc_configuration
from client.joining import Membership
from client.protocol import (
    FINAL_CODES,
    ClientError,
    call,
    checked,
    join_payload,
    node_urls,
    offer_owners,
    parse_link,
)
from client.subscriber import Subscriber


class Recorder:
    """A Socket.IO client stand-in that answers every call with ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[str, Any, float]] = []

    async def call(self, event: str, data: Any, timeout: float = 30.0) -> Any:
        self.sent.append((event, data, timeout))
        return self.answer


def test_parse_link_splits_base_room_and_token() -> None:
    assert parse_link("https://gym.example/r/abc123#t=TOKEN") == (
        "https://gym.example",
        "abc123",
        "TOKEN",
    )
    # Behind a path prefix, with a trailing slash and other fragment parts.
    assert parse_link("http://h:8080/classes/r/room/#x=1&t=a.b") == (
        "http://h:8080/classes",
        "room",
        "a.b",
    )


@pytest.mark.parametrize(
    "link",
    ["ftp://h/r/room#t=x", "https://h/room#t=x", "https://h/r/room", "https://h/r/room#t="],
)
def test_parse_link_refuses_what_is_not_a_class_link(link: str) -> None:
    with pytest.raises(ClientError) as refused:
        parse_link(link)
    assert refused.value.code is None  # not the server's refusal


@given(
    room=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20),
    token=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1),
)
def test_parse_link_reads_back_what_the_server_writes(room: str, token: str) -> None:
    assert parse_link(f"https://node.example/r/{room}#t={token}") == (
        "https://node.example",
        room,
        token,
    )


def test_an_ok_ack_is_returned_and_a_refusal_raised_with_its_code() -> None:
    assert checked("chat", {"ok": True, "message": {}}) == {"ok": True, "message": {}}
    with pytest.raises(ClientError) as refused:
        checked("join", {"ok": False, "error": {"code": "room_full", "message": "full"}})
    assert (refused.value.code, refused.value.url) == ("room_full", None)
    assert str(refused.value) == "join refused: room_full: full"


def test_a_moved_refusal_carries_the_node_url() -> None:
    ack = {"ok": False, "error": {"code": "moved", "message": "elsewhere", "url": "http://b"}}
    with pytest.raises(ClientError) as moved:
        checked("join", ack)
    assert (moved.value.code, moved.value.url) == ("moved", "http://b")


@pytest.mark.parametrize("ack", [None, "ok", [], {"ok": False}, {"ok": False, "error": "x"}])
def test_a_malformed_ack_is_a_refusal_without_a_code(ack: Any) -> None:
    with pytest.raises(ClientError) as refused:
        checked("publish", ack)
    assert refused.value.code is None


async def test_call_adds_the_protocol_version_and_checks_the_ack() -> None:
    sio = Recorder({"ok": True, "server_time": 1.0})
    assert await call(sio, "time", {}) == {"ok": True, "server_time": 1.0}
    assert await call(sio, "chat", {"text": "hi"}, timeout=3) == {"ok": True, "server_time": 1.0}
    assert sio.sent == [("time", {"v": 1}, 20.0), ("chat", {"v": 1, "text": "hi"}, 3)]
    sio.answer = {"ok": False, "error": {"code": "not_joined", "message": "join first"}}
    with pytest.raises(ClientError, match="not_joined"):
        await call(sio, "chat", {"text": "hi"})


def test_payloads_and_ack_fields() -> None:
    assert join_payload("tok", "Ann", "room1") == {"token": "tok", "name": "Ann", "room": "room1"}
    assert node_urls({"nodes": ["http://a/", "http://b"]}) == ["http://a", "http://b"]
    assert node_urls({}) == []
    offer = {
        "sdp": "v=0",
        "tracks": [
            {"mid": "0", "participant_id": "p1", "kind": "audio"},
            {"mid": "1", "participant_id": "p1", "kind": "video"},
        ],
    }
    assert offer_owners(offer) == {"0": ("p1", "audio"), "1": ("p1", "video")}
    assert offer_owners({"sdp": "v=0"}) == {}
    # What a rejoin cannot fix; everything else (a dead node, `unavailable`) is retried.
    assert {"invalid_token", "token_expired", "room_ended"} <= FINAL_CODES
    assert "unavailable" not in FINAL_CODES and "moved" not in FINAL_CODES


def test_membership_rejoins_where_the_class_was_then_on_the_other_nodes() -> None:
    member = Membership(base_url="http://a", token="t", name="Ann", room="r")
    assert member.candidates() == ["http://a"]
    member.nodes = ["http://b", "http://a", "http://c"]
    assert member.candidates() == ["http://a", "http://b", "http://c"]
    member.base_url = "http://c"
    assert member.candidates() == ["http://c", "http://b", "http://a"]


async def test_membership_without_a_server_is_a_client_error() -> None:
    member = Membership(base_url="http://127.0.0.1:9", token="t", name="Ann")
    with pytest.raises(ClientError) as unreachable:
        await member.join()
    assert unreachable.value.code is None  # no server answered: try another node
    assert (member.base_url, member.token) == ("http://127.0.0.1:9", "t")


def test_ice_servers_come_from_the_join_ack_and_everything_is_bundled() -> None:
    alone = rtc_configuration()
    assert alone.iceServers == [] and alone.bundlePolicy == RTCBundlePolicy.MAX_BUNDLE
    ack = {
        "ice_servers": [
            {"urls": ["stun:s.example:3478"]},
            {"urls": ["turn:t.example:3478"], "username": "u", "credential": "c"},
        ]
    }
    configured = rtc_configuration(ack)
    assert configured.bundlePolicy == RTCBundlePolicy.MAX_BUNDLE
    assert configured.iceServers is not None
    stun, turn = configured.iceServers
    assert (stun.urls, stun.username, stun.credential) == (["stun:s.example:3478"], None, None)
    assert (turn.urls, turn.username, turn.credential) == (["turn:t.example:3478"], "u", "c")


async def test_publish_offers_what_the_connection_sends_and_applies_the_answer() -> None:
    """Two real aiortc peers: ``publish`` on one side, the other answering as the SFU would."""
    client, sfu = RTCPeerConnection(), RTCPeerConnection()
    client.createDataChannel("telemetry")
    sent: list[tuple[str, dict[str, Any]]] = []

    async def answer(event: str, payload: dict[str, Any]) -> dict[str, Any]:
        sent.append((event, payload))
        await sfu.setRemoteDescription(RTCSessionDescription(payload["sdp"], "offer"))
        await sfu.setLocalDescription(await sfu.createAnswer())
        return {"ok": True, "type": "answer", "sdp": sfu.localDescription.sdp}

    try:
        await publish(client, answer, munge=lambda sdp: sdp + "a=x-munged:1\r\n")
        [(event, payload)] = sent
        assert event == "publish" and payload["type"] == "offer"
        assert payload["sdp"].endswith("a=x-munged:1\r\n")  # what was sent, munged
        assert client.remoteDescription.type == "answer"
        assert client.signalingState == "stable"
    finally:
        await client.close()
        await sfu.close()


async def sfu_offer(mids: int) -> tuple[RTCPeerConnection, dict[str, Any]]:
    """A send-only offer of ``mids`` audio m-lines, with its ``tracks`` list."""
    sfu = RTCPeerConnection()
    for _ in range(mids):
        sfu.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await sfu.setLocalDescription(await sfu.createOffer())
    tracks = [
        {"mid": t.mid, "participant_id": f"p{i}", "kind": "audio"}
        for i, t in enumerate(sfu.getTransceivers())
    ]
    return sfu, {"v": 1, "type": "offer", "sdp": sfu.localDescription.sdp, "tracks": tracks}


async def test_an_offer_waits_for_its_session_to_join() -> None:
    subscriber = Subscriber()
    session, other = object(), object()
    subscriber.offered(session, {"sdp": "first"})
    waiting = asyncio.create_task(subscriber.next_offer())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the offer overtook the join's ack
    subscriber.joined(session, rtc_configuration())
    assert await asyncio.wait_for(waiting, 1) == {"sdp": "first"}
    # An offer of another session (one a `moved` answer left behind) is skipped.
    subscriber.offered(other, {"sdp": "stale"})
    subscriber.offered(session, {"sdp": "second"})
    assert await asyncio.wait_for(subscriber.next_offer(), 1) == {"sdp": "second"}


async def test_reset_drops_waiting_offers_until_the_next_join() -> None:
    subscriber = Subscriber()
    old, new = object(), object()
    subscriber.joined(old, rtc_configuration())
    subscriber.offered(old, {"sdp": "old"})
    subscriber.owners["0"] = ("p0", "audio")
    assert subscriber.reset() is None  # no connection was made
    assert subscriber.owners == {}
    subscriber.offered(old, {"sdp": "late, from the dead session"})
    subscriber.offered(new, {"sdp": "new"})
    waiting = asyncio.create_task(subscriber.next_offer())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    subscriber.joined(new, rtc_configuration())
    assert await asyncio.wait_for(waiting, 1) == {"sdp": "new"}


async def test_offers_are_answered_on_one_connection_with_the_hooks_in_order() -> None:
    steps: list[str] = []
    sent: list[tuple[str, dict[str, Any]]] = []
    made: list[RTCPeerConnection] = []

    async def send(event: str, payload: dict[str, Any]) -> dict[str, Any]:
        sent.append((event, payload))
        return {"ok": True}

    def applied(pc: RTCPeerConnection, offer: dict[str, Any]) -> None:
        steps.append(f"applied {len(pc.getTransceivers())}")

    subscriber = Subscriber(
        created=made.append,
        prepare=lambda offer: steps.append(f"prepare {len(offer['tracks'])}"),
        applied=applied,
        compact=lambda pc, sdp: sdp + "a=x-compact:1\r\n",
    )
    first_sfu, first = await sfu_offer(1)
    second_sfu, second = await sfu_offer(2)
    try:
        await subscriber.answer(first, send)
        await subscriber.answer(second, send)
        assert len(made) == 1 and subscriber.pc is made[0]  # one connection for both
        assert steps == ["prepare 1", "applied 1", "prepare 2", "applied 2"]
        assert [event for event, _ in sent] == ["subscribe_answer", "subscribe_answer"]
        assert all(p["type"] == "answer" for _e, p in sent)
        assert all(p["sdp"].endswith("a=x-compact:1\r\n") for _e, p in sent)
        assert subscriber.owners == {"0": ("p0", "audio"), "1": ("p1", "audio")}
        assert subscriber.answered == 2
        closed = subscriber.reset()
        assert closed is made[0] and subscriber.pc is None
    finally:
        for pc in (*made, first_sfu, second_sfu):
            await pc.close()


async def test_an_answer_under_way_during_a_reset_is_not_sent() -> None:
    sent: list[str] = []
    dropped: list[RTCPeerConnection | None] = []

    async def send(event: str, payload: dict[str, Any]) -> dict[str, Any]:
        sent.append(event)
        return {"ok": True}

    # The session drops while the offer is being applied (a rejoin resets the subscriber).
    subscriber = Subscriber(applied=lambda pc, offer: dropped.append(subscriber.reset()))
    sfu, offer = await sfu_offer(1)
    try:
        await subscriber.answer(offer, send)
        assert sent == [] and subscriber.answered == 0
        assert subscriber.pc is None and dropped[0] is not None
    finally:
        for pc in (*dropped, sfu):
            if pc is not None:
                await pc.close()
