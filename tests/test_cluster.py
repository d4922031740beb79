"""Several nodes over real Redis and PostgreSQL: placement, redirects, a node's death.

Every node is a real ``pulseroom serve`` process (tests/cluster_nodes.py); clients are
real Socket.IO clients, aiortc bots and headless Chromium.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import socketio

from client.joining import join_following
from pulseroom.bot import Bot
from signaling.cluster import Cluster as NodeCluster
from signaling.cluster import NodeInfo
from tests import peers
from tests.browser_fixtures import (
    NEEDS_CHROMIUM,
    Tab,
    assert_video_flowing,
    browser_fixture,  # noqa: F401 (fixture "browser")
    open_tab,
    screenshot,
)
from tests.browser_fixtures import join as browser_join
from tests.cluster_nodes import SECRET, Cluster, cluster_fixture, link_on
from tests.conftest import REDIS_URL, ROOT, start_server, stop_server
from tests.netns import Host, netns_host, require_netns
from tests.sio_client import Client

# One loop for the module: the browser fixture is module-scoped.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(name="cluster")
def cluster_(tmp_path: Path, postgres_url: str) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, postgres_url)


def join_payload(link: str, name: str) -> dict[str, Any]:
    room, token = link.split("/r/", 1)[1].split("#t=")
    return {"token": token, "name": name, "room": room}


async def wait_until(predicate: Any, timeout: float, what: Any) -> None:
    """Poll ``predicate``; ``what`` (text, or a function giving it) says what failed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what}")
        await asyncio.sleep(0.1)


@pytest.fixture(name="prefix")
def prefix_() -> Iterator[str]:
    """A Redis key prefix of this test's own, cleaned up afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


async def start_nodes(prefix: str, *urls: str, heartbeat_s: float = 0.2) -> list[NodeCluster]:
    nodes = [
        NodeCluster(REDIS_URL, prefix, url, heartbeat_s=heartbeat_s, ttl_s=0.6) for url in urls
    ]
    for node in nodes:
        await node.start()
    return nodes


@pytest.mark.timeout(60)
async def test_takeover_of_a_dead_nodes_classes_is_atomic(prefix: str) -> None:
    """Two survivors asking at once for each class of a dead node agree on one holder."""
    # A node that beats once and then never again: dead 0.6 s later, without a word.
    (dead,) = await start_nodes(prefix, "http://dead:1", heartbeat_s=3600)
    b, c = await start_nodes(prefix, "http://b:1", "http://c:1")
    try:
        rooms = [f"room{i}" for i in range(30)]
        for room in rooms:
            assert (await dead.holder(room)).id == dead.node_id  # idle: it keeps them
        assert (await b.holder("room0")).url == "http://dead:1"  # alive: it holds them
        await asyncio.sleep(0.8)
        assert {n.id for n in await b.live_nodes()} == {b.node_id, c.node_id}
        answers = await asyncio.gather(*[node.holder(room) for room in rooms for node in (b, c)])
        for i, room in enumerate(rooms):
            from_b, from_c = answers[2 * i], answers[2 * i + 1]
            assert from_b.id == from_c.id, (room, from_b, from_c)
            assert from_b.id in (b.node_id, c.node_id)
        # Redis agrees with what both were told, and asking again changes nothing.
        again = await c.holder(rooms[0])
        assert again.id == answers[0].id
    finally:
        for node in (dead, b, c):
            await node.close()


@pytest.mark.timeout(60)
async def test_a_node_that_lapsed_lets_go_of_its_taken_over_class(prefix: str) -> None:
    a, b = await start_nodes(prefix, "http://a:1", "http://b:1")
    lost: list[tuple[str, str | None]] = []

    async def on_lost(room_id: str, holder: NodeInfo | None) -> None:
        lost.append((room_id, holder.url if holder else None))

    a.rooms = lambda: ["spin"]
    a.on_lost = on_lost
    try:
        assert (await a.holder("spin")).id == a.node_id
        await asyncio.sleep(0.5)
        assert not lost  # still its own: the placement is renewed
        # a's heartbeat lapses (a stall: its key expires) and b takes the class over.
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        a_beats = a.beats
        await client.delete(f"{prefix}:node:{a.node_id}")
        assert (await b.holder("spin")).id == b.node_id
        await client.aclose()
        await wait_until(lambda: a.beats > a_beats + 1, 3, "a beats again")
        assert lost and lost[0] == ("spin", "http://b:1"), lost
        assert (await a.holder("spin")).id == b.node_id  # a sends joins there now
    finally:
        await a.close()
        await b.close()


@pytest.mark.timeout(60)
async def test_origins_are_the_nodes_own(prefix: str) -> None:
    a, b = await start_nodes(prefix, "https://a.example:8443/", "https://b.example")
    try:
        await wait_until(lambda: a.beats > 1, 3, "a beats after b started")
        assert a.allows_origin("https://a.example:8443")
        assert a.allows_origin("https://b.example")  # a page of b may connect to a
        assert not a.allows_origin("https://evil.example")
        assert not a.allows_origin("https://b.example.evil.example")
        same_host = {"wsgi.url_scheme": "http", "HTTP_HOST": "localhost:8080"}
        assert a.allows_origin("http://localhost:8080", same_host)
        assert not a.allows_origin("http://localhost:9090", same_host)
    finally:
        await a.close()
        await b.close()
    # A node that left is no longer live, but its pages may still connect elsewhere.
    (c,) = await start_nodes(prefix, "https://c.example")
    try:
        assert c.allows_origin("https://b.example")
        assert [n.url for n in await c.live_nodes()] == ["https://c.example"]
    finally:
        await c.close()


@pytest.mark.timeout(120)
async def test_classes_spread_over_nodes_and_joins_reach_the_holder(cluster: Cluster) -> None:
    a = cluster.start_node("a")
    b = cluster.start_node("b")
    await wait_until(lambda: len(cluster.live()) == 2, 5, "both nodes beat")
    # No wait for a's next heartbeat: a join ack reads the live nodes from Redis.
    a_id, b_id = cluster.node_id(a), cluster.node_id(b)

    # The first class goes to the node the join reached (both are idle: no redirect).
    first = a.create_room("Spin")
    first_id = str(first["room"]["id"])  # type: ignore[index]
    ann = await Client(a.url).connect()
    joined = await ann.join(str(first["host_link"]), "Ann")
    assert joined["ok"], joined
    assert cluster.holder(first_id) == a_id
    assert set(joined["nodes"]) == {a.url, b.url}
    assert joined["nodes"][0] == a.url  # the node you are on comes first

    # Once a's heartbeat carries its load, a new class joined through a goes to b.
    await wait_until(lambda: cluster.live()[a.url]["participants"] == 1, 5, "a's load")
    second = a.create_room("Yoga")
    second_id = str(second["room"]["id"])  # type: ignore[index]
    probe = await Client(a.url).connect()
    moved = await probe.join(str(second["host_link"]), "Bo")
    assert moved == {
        "ok": False,
        "error": {"code": "moved", "message": moved["error"]["message"], "url": b.url},
    }
    assert cluster.holder(second_id) == b_id
    assert not probe.received["error"], "a redirect is not an error to show"
    sio, node, bo_ack = await join_following(a.url, join_payload(str(second["host_link"]), "Bo"))
    assert node == b.url and bo_ack["ok"] and bo_ack["room"]["id"] == second_id

    # A join link for the first class sent to b still ends up in the first class, on a.
    cy_sio, cy_node, cy = await join_following(
        b.url, join_payload(link_on(str(first["join_link"]), b), "Cy")
    )
    assert cy_node == a.url
    assert cy["room"]["id"] == first_id
    assert [p["name"] for p in cy["participants"]] == ["Ann", "Cy"]
    await ann.wait_for("participant_joined", lambda e: e["participant"]["name"] == "Cy")

    # A bad token is refused by any node, before placement.
    stranger = await Client(b.url).connect()
    refused = await stranger.call(
        "join", {"v": 1, "token": "forged.token", "name": "X", "room": first_id}
    )
    assert refused["error"]["code"] == "invalid_token"

    for client in (ann, probe, stranger):
        await client.close()
    for s in (sio, cy_sio):
        await s.disconnect()


@pytest.mark.timeout(120)
async def test_events_cross_nodes_through_redis(cluster: Cluster) -> None:
    """Both directions of python-socketio's Redis manager, on this cluster's own channel."""
    a = cluster.start_node("a")
    b = cluster.start_node("b")
    room = a.create_room("Spin")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    ann = await Client(a.url).connect()
    assert (await ann.join(str(room["host_link"]), "Ann"))["ok"]

    # What a node emits to a class is published for the other nodes' sessions ...
    pubsub = cluster.redis.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(f"{cluster.prefix}:socketio")
    sent = await ann.call("chat", {"v": 1, "text": "hello, other nodes"})
    assert sent["ok"], sent
    published: list[Any] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        m.get("event") == "chat" for m in published if isinstance(m, dict)
    ):
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            published.append(json.loads(message["data"]))
    pubsub.close()
    chat = next(m for m in published if isinstance(m, dict) and m.get("event") == "chat")
    assert chat["room"] == room_id and chat["data"][0]["message"]["text"] == "hello, other nodes"

    # ... and what another node emits to the class reaches the sessions on this one.
    other = socketio.AsyncRedisManager(
        REDIS_URL, channel=f"{cluster.prefix}:socketio", write_only=True
    )
    await other.emit("chat", {"v": 1, "message": {"text": "from b's side"}}, room=room_id)
    received = await ann.wait_for("chat", lambda e: e["message"]["text"] == "from b's side")
    assert received["v"] == 1
    # Another cluster's channel (another prefix) does not reach it.
    stranger = socketio.AsyncRedisManager(REDIS_URL, channel="other:socketio", write_only=True)
    await stranger.emit("chat", {"v": 1, "message": {"text": "elsewhere"}}, room=room_id)
    await asyncio.sleep(1.0)
    assert all(e["message"]["text"] != "elsewhere" for e in ann.received["chat"])
    await ann.close()
    assert b.process.poll() is None


def received(bot: Bot, publisher_id: str) -> tuple[int, int]:
    """(frames decoded, RTP packets) of video from ``publisher_id`` in ``bot``'s session."""
    tracks = [
        t for t in bot.tracks.values() if t.publisher_id == publisher_id and t.kind == "video"
    ]
    return sum(t.frames for t in tracks), sum(t.packets for t in tracks)


def frames_from(bot: Bot, publisher_id: str) -> int:
    """Video frames ``bot`` decoded from ``publisher_id`` in its current session."""
    return received(bot, publisher_id)[0]


async def assert_bot_receives(bot: Bot, publishers: dict[str, str], timeout: float) -> None:
    """Video from each publisher (id → name) reaches ``bot``: decoded, and still arriving.

    "Still arriving" counts packets: on a loaded machine the bot's decoder may lag
    behind for seconds, the network path does not.
    """
    deadline = time.monotonic() + timeout
    while not all(frames_from(bot, pid) > 0 for pid in publishers):
        if time.monotonic() > deadline:
            got = {name: received(bot, pid) for pid, name in publishers.items()}
            raise AssertionError(
                f"{bot.name}: no video (frames, packets) from {got} in {timeout} s"
            )
        await asyncio.sleep(0.2)
    before = {pid: received(bot, pid)[1] for pid in publishers}

    def stalled() -> dict[str, tuple[int, int]]:
        return {
            name: (before[pid], received(bot, pid)[1])
            for pid, name in publishers.items()
            if received(bot, pid)[1] < before[pid] + 20
        }

    # 15 s for 20 packets: a bot encodes in Python, and with the other worker's test
    # busy too one sent 13 in 8 s here (its packets were still coming).
    await wait_until(
        lambda: not stalled(), 15, lambda: f"{bot.name}: video stopped (packets): {stalled()}"
    )


async def chat_texts(tab: Tab) -> list[str]:
    texts: list[str] = await tab.page.evaluate(
        "[...document.querySelectorAll('[data-testid=chat-text]')].map((e) => e.textContent)"
    )
    return texts


@NEEDS_CHROMIUM
@pytest.mark.timeout(240)
async def test_holder_killed_mid_class_everyone_rejoins_on_the_survivor(
    cluster: Cluster, browser: Any
) -> None:
    a = cluster.start_node("a")
    b = cluster.start_node("b")
    await wait_until(lambda: len(cluster.live()) == 2, 5, "both nodes beat")
    room = a.create_room("Failover spin")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    coach = await peers.join(host_link, "Coach")
    ann = await peers.join(join_link, "Ann")
    tab = await open_tab(browser, "Bea")
    try:
        bea_id = await browser_join(tab, join_link, "Bea")
        ids = {"Coach": coach.you["id"], "Ann": ann.you["id"], "Bea": bea_id}
        assert cluster.holder(room_id) == cluster.node_id(a)
        assert coach.base_url == ann.base_url == a.url
        assert await tab.page.evaluate("window.pulseroom.node") == a.url

        # Chat before: from a bot and from the page.
        await coach.call("chat", {"text": "warm-up done"})
        await tab.page.get_by_test_id("chat-input").fill("ready!")
        await tab.page.get_by_test_id("chat-send").click()
        await tab.page.wait_for_function(
            "document.querySelectorAll('[data-testid=chat-text]').length === 2"
        )
        # The instructor's message is marked as theirs (the server says who sent it).
        assert await tab.page.get_by_test_id("chat-instructor").count() == 1
        await assert_video_flowing(tab, {ids["Coach"]: "Coach"})
        await assert_bot_receives(coach, {ids["Ann"]: "Ann", ids["Bea"]: "Bea"}, 20)

        # The holder dies mid-class, with no word to anyone.
        await tab.page.evaluate("window.__oldPc = window.pulseroom.subscribePc")
        killed_at = time.monotonic()
        cluster.kill(a)
        rejoined: dict[str, float] = {}
        deadline = killed_at + 20
        while len(rejoined) < 3 and time.monotonic() < deadline:
            for name, bot in (("Coach", coach), ("Ann", ann)):
                if name not in rejoined and bot.rejoins:
                    rejoined[name] = time.monotonic() - killed_at
            if "Bea" not in rejoined and await tab.page.evaluate(
                "window.pulseroom.phase === 'joined' && window.pulseroom.rejoins.length > 0"
            ):
                rejoined["Bea"] = time.monotonic() - killed_at
            await asyncio.sleep(0.05)
        bea_rejoins = await tab.page.evaluate("window.pulseroom.rejoins")
        print(
            f"rejoin after SIGKILL of the holder (seen by the test): {rejoined}; "
            f"as the clients measured it: Coach {coach.rejoins}, Ann {ann.rejoins}, "
            f"Bea {bea_rejoins}"
        )
        assert len(rejoined) == 3, (
            rejoined,
            await tab.state(),
            tab.diagnostics(),
            coach.timeline[-8:],
            ann.timeline[-8:],
        )
        assert max(rejoined.values()) < 5.0, rejoined

        # On the survivor, as the same people; the class is placed there now.
        assert cluster.holder(room_id) == cluster.node_id(b)
        assert coach.base_url == ann.base_url == b.url
        assert await tab.page.evaluate("window.pulseroom.node") == b.url
        assert coach.you["id"] == ids["Coach"] and ann.you["id"] == ids["Ann"]
        assert await tab.page.evaluate("window.pulseroom.you.id") == bea_id

        # Roster and chat history intact.
        await tab.page.wait_for_function(
            "window.pulseroom.participants.length === 3", timeout=5_000
        )
        roster = await tab.page.evaluate("window.pulseroom.participants")
        assert {p["name"]: p["id"] for p in roster} == ids
        assert await chat_texts(tab) == ["warm-up done", "ready!"]
        await ann.call("chat", {"text": "still here"})
        await tab.page.wait_for_function(
            "document.querySelectorAll('[data-testid=chat-text]').length === 3"
        )
        assert (await chat_texts(tab))[-1] == "still here"

        # Media flows again, through the survivor's SFU.
        assert await tab.page.evaluate("window.pulseroom.subscribePc !== window.__oldPc")
        await assert_video_flowing(tab, {ids["Coach"]: "Coach"})
        await assert_bot_receives(coach, {ids["Ann"]: "Ann", ids["Bea"]: "Bea"}, 20)
        await assert_bot_receives(ann, {ids["Coach"]: "Coach"}, 20)
        stats = b.stats()
        assert stats["participants"] == 3 and stats["rooms"] == 1, stats
        await screenshot(tab, "cluster-after-failover")
        assert not tab.errors, tab.diagnostics()
    except BaseException:
        print(tab.diagnostics())
        cluster.print_logs()
        raise
    finally:
        await tab.close()
        await coach.stop()
        await ann.stop()


@pytest.mark.timeout(150)
async def test_a_stalled_holder_loses_its_class_and_its_sessions_follow(cluster: Cluster) -> None:
    """SIGSTOP the holder past its TTL: a join elsewhere takes the class over; when the
    holder wakes it lets the class's sessions go and they rejoin on the new holder."""
    a = cluster.start_node("a")
    b = cluster.start_node("b")
    await wait_until(lambda: len(cluster.live()) == 2, 5, "both nodes beat")
    room = a.create_room("Stall")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    ann = await peers.join(str(room["host_link"]), "Ann")
    bo: Bot | None = None
    try:
        assert ann.base_url == a.url
        ann_id = ann.you["id"]
        a.process.send_signal(signal.SIGSTOP)
        try:
            await wait_until(lambda: a.url not in cluster.live(), 6, "a's heartbeat lapses")
            bo = await peers.join(link_on(str(room["join_link"]), b), "Bo")
            assert bo.base_url == b.url and cluster.holder(room_id) == cluster.node_id(b)
        finally:
            a.process.send_signal(signal.SIGCONT)
        # a wakes, finds the class held by b, and lets Ann's session go: she follows.
        await wait_until(lambda: bool(ann.rejoins), 15, lambda: f"Ann rejoins: {a.log()[-2000:]}")
        assert ann.base_url == b.url and ann.you["id"] == ann_id
        assert "let 1 sessions go" in a.log()
        await assert_bot_receives(bo, {ann_id: "Ann"}, 20)
        assert b.stats()["participants"] == 2
        await wait_until(lambda: a.stats()["participants"] == 0, 5, "a holds nothing")
    finally:
        await ann.stop()
        if bo is not None:
            await bo.stop()


def cut(host: Host) -> None:
    """Cut ``host``'s network: every packet in or out dropped (loopback inside it passes)."""
    table = ("inet", "pulseroom_cut")
    subprocess.run(host.command("nft", "add", "table", *table), check=True, timeout=20)
    for hook, interface in (("input", "iifname"), ("output", "oifname")):
        subprocess.run(host.command(
            "nft", "add", "chain", *table, hook,
            f"{{ type filter hook {hook} priority -10; policy accept; }}",
        ), check=True, timeout=20)  # fmt: skip
        subprocess.run(host.command(
            "nft", "add", "rule", *table, hook, interface, "!=", "lo", "drop",
        ), check=True, timeout=20)  # fmt: skip


def uncut(host: Host) -> None:
    subprocess.run(
        host.command("nft", "delete", "table", "inet", "pulseroom_cut"), check=True, timeout=20
    )


@pytest.mark.alone  # a deadline measured in wall time: not beside the parallel part
@pytest.mark.paired(seconds=48)  # ~0.5 of a core (tests/cpu_log.py): beside one other such test
@pytest.mark.timeout(180)
async def test_network_drop_of_10s_media_and_heart_rate_recover(tmp_path: Path) -> None:
    """A participant's network is gone for 10 s: no reload, media back, readings stored once."""
    require_netns()
    server = start_server(tmp_path, PULSEROOM_HOST="0.0.0.0", PULSEROOM_SECRET=SECRET)
    coach: Bot | None = None
    process: asyncio.subprocess.Process | None = None
    lines: list[dict[str, Any]] = []
    try:
        room = server.create_room("Patchy wifi")
        room_id = str(room["room"]["id"])  # type: ignore[index]
        host_link, join_link = str(room["host_link"]), str(room["join_link"])
        coach = await peers.join(host_link, "Coach")
        with netns_host() as phone:
            link = f"http://{phone.gateway}:{server.url.rsplit(':', 1)[1]}/r/"
            link += join_link.split("/r/", 1)[1]
            process = await asyncio.create_subprocess_exec(
                *phone.command(sys.executable, "-m", "tests.netns_peer", link, "--seconds", "45"),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip

            async def read() -> None:
                assert process is not None and process.stdout is not None
                async for raw in process.stdout:
                    lines.append(json.loads(raw))

            reader = asyncio.create_task(read())
            await wait_until(
                lambda: bool(lines) and lines[-1]["frames"].get(coach.you["id"], 0) > 0
                and lines[-1]["hr"]["acked"] >= 4,
                30, lambda: f"Nell receives Coach and sends heart rate: {lines[-1:]}",
            )  # fmt: skip
            nell_id = lines[-1]["you"]
            await assert_bot_receives(coach, {nell_id: "Nell"}, 20)

            cut_at = time.time()
            cut(phone)
            await asyncio.sleep(10)
            uncut(phone)
            back_at = time.time()
            cut_frames = frames_from(coach, nell_id)

            # Media back both ways, without anyone reloading anything.
            def up() -> bool:  # Coach decodes Nell's video again
                return frames_from(coach, nell_id) > cut_frames + 10 or (
                    len(coach.tracks) > 0
                    and frames_from(coach, nell_id) > 10
                    and bool(lines[-1]["rejoins"])
                )

            def down() -> bool:  # Nell decodes Coach's video again, in two fresh samples
                later = [x for x in lines if x["t"] > back_at]
                return len(later) >= 2 and (
                    later[-1]["frames"].get(coach.you["id"], 0)
                    > later[-2]["frames"].get(coach.you["id"], 0)
                )

            await wait_until(lambda: up() and down(), 40, lambda: f"media back: {lines[-3:]}")
            media_back = time.time() - back_at
            hr_during = [x for x in lines if cut_at < x["t"] < back_at]
            await asyncio.wait_for(process.wait(), 90)
            await reader
            stderr = (await process.stderr.read()).decode() if process.stderr else ""
        assert process.returncode == 0, stderr[-3000:]
        final = lines[-1]
        assert final.get("final"), final
        print(
            f"10 s network cut: media back {media_back:.1f} s after the network; "
            f"rejoins {final['rejoins']}; heart rate {final['hr']}"
        )
        assert final["you"] == nell_id  # the same participant throughout
        # Readings were taken while the network was away, and none is left unacknowledged.
        assert hr_during and hr_during[-1]["hr"]["queued"] > hr_during[0]["hr"]["queued"]
        taken_meanwhile = [s for s in final["sent"] if cut_at * 1000 < s[1] < back_at * 1000]
        assert len(taken_meanwhile) >= 15, taken_meanwhile
        assert final["hr"]["pending"] == 0, final["hr"]

        # Stored once each: the summary counts every reading that was taken, no more.
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.get(
                f"/api/rooms/{room_id}/summary",
                headers={"Authorization": f"Bearer {host_link.split('#t=', 1)[1]}"},
            )
        assert response.status_code == 200, response.text
        strap = next(
            p for p in response.json()["participants"] if p["id"] == final["hr"]["participant_id"]
        )
        assert strap["readings"] == len(final["sent"]), (strap["readings"], len(final["sent"]))
    except BaseException:
        print(lines[-6:])
        print(server.log()[-4000:])
        raise
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        if coach is not None:
            await coach.stop()
        stop_server(server)


async def test_cluster_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulseroom.settings import ConfigError, load_settings

    monkeypatch.setenv("PULSEROOM_NODE_URL", "node2.example.com")
    with pytest.raises(ConfigError, match="PULSEROOM_NODE_URL"):
        load_settings()
    monkeypatch.setenv("PULSEROOM_NODE_URL", "https://node2.example.com/")
    monkeypatch.setenv("PULSEROOM_PUBLIC_URL", "https://fit.example.com")
    settings = load_settings()
    assert settings.advertised_url == "https://node2.example.com"
    monkeypatch.delenv("PULSEROOM_NODE_URL")
    assert load_settings().advertised_url == "https://fit.example.com"  # the public URL
    monkeypatch.setenv("PULSEROOM_REDIS_PREFIX", "bad prefix:*")
    with pytest.raises(ConfigError, match="PULSEROOM_REDIS_PREFIX"):
        load_settings()
