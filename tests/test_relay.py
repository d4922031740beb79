"""Relay routing: people on two nodes in one class, their events relayed through Redis.

Two real ``pulseroom serve`` processes with ``PULSEROOM_CLUSTER_ROUTING=relay``, real
Redis and PostgreSQL, real Socket.IO clients and aiortc bots (tests/cluster_nodes.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import peers
from tests.browser_fixtures import (
    NEEDS_CHROMIUM,
    assert_video_flowing,
    browser_fixture,  # noqa: F401 (fixture "browser")
    open_tab,
)
from tests.browser_fixtures import join as browser_join
from tests.cluster_nodes import Cluster, cluster_fixture, link_on
from tests.conftest import RunningServer
from tests.sio_client import Client
from tests.test_cluster import assert_bot_receives, chat_texts, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

RELAY = {"PULSEROOM_CLUSTER_ROUTING": "relay"}


@pytest.fixture(name="cluster")
def cluster_(tmp_path: Path, postgres_url: str) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, postgres_url)


async def two_nodes(cluster: Cluster) -> tuple[RunningServer, RunningServer]:
    a = cluster.start_node("a", **RELAY)
    b = cluster.start_node("b", **RELAY)
    await wait_until(lambda: len(cluster.live()) == 2, 5, "both nodes beat")
    return a, b


def texts(client: Client) -> list[str]:
    return [e["message"]["text"] for e in client.received["chat"]]


async def said(client: Client, text: str) -> None:
    await client.wait_for("chat", lambda e: e["message"]["text"] == text)


@pytest.mark.timeout(120)
async def test_chat_crosses_nodes_in_classes_held_on_both(cluster: Cluster) -> None:
    a, b = await two_nodes(cluster)
    a_id, b_id = cluster.node_id(a), cluster.node_id(b)

    # Spin is joined through a and placed there; once a carries that load, Yoga (also
    # joined through a) is placed on b: its instructor stays connected to a.
    spin = a.create_room("Spin")
    spin_id = str(spin["room"]["id"])  # type: ignore[index]
    ann = await Client(a.url).connect()
    assert (await ann.join(str(spin["host_link"]), "Ann"))["ok"]
    await wait_until(lambda: cluster.live()[a.url]["participants"] == 1, 5, "a's load")
    yoga = a.create_room("Yoga")
    yoga_id = str(yoga["room"]["id"])  # type: ignore[index]
    bo = await Client(a.url).connect()
    bo_ack = await bo.join(str(yoga["host_link"]), "Bo")
    assert bo_ack["ok"], bo_ack
    assert cluster.holder(spin_id) == a_id and cluster.holder(yoga_id) == b_id
    assert bo_ack["room"]["id"] == yoga_id and "moved" not in str(bo_ack)
    assert not bo.received["error"]

    # Each class gets a member connected to the other node: Cy to b for Spin (held on
    # a), Dee to b for Yoga (held on b, no relay).
    cy = await Client(b.url).connect()
    cy_ack = await cy.join(str(spin["join_link"]), "Cy")
    assert cy_ack["ok"], cy_ack
    assert [p["name"] for p in cy_ack["participants"]] == ["Ann", "Cy"]
    dee = await Client(b.url).connect()
    assert (await dee.join(str(yoga["join_link"]), "Dee"))["ok"]
    await ann.wait_for("participant_joined", lambda e: e["participant"]["name"] == "Cy")
    await bo.wait_for("participant_joined", lambda e: e["participant"]["name"] == "Dee")

    # Chat both ways in both classes, each line once, and nothing across classes.
    for sender, text in ((ann, "a → b"), (cy, "b → a"), (bo, "relayed → b"), (dee, "b → relayed")):
        sent = await sender.call("chat", {"v": 1, "text": text})
        assert sent["ok"], sent
    for client in (ann, cy):
        await said(client, "b → a")
        await said(client, "a → b")
    for client in (bo, dee):
        await said(client, "relayed → b")
        await said(client, "b → relayed")
    await asyncio.sleep(0.5)  # a duplicate or a stray line would have arrived by now
    assert sorted(texts(ann)) == sorted(texts(cy)) == ["a → b", "b → a"]
    spin_history = ["a → b", "b → a"]
    assert sorted(texts(bo)) == sorted(texts(dee)) == ["b → relayed", "relayed → b"]

    # Chat history for a late joiner through b: from the class's node, in order.
    eve = await Client(b.url).connect()
    eve_ack = await eve.join(str(spin["join_link"]), "Eve")
    assert [m["text"] for m in eve_ack["chat"]] == spin_history

    # Garbage on a node's relay channel is ignored (a warning), and nothing changes.
    cluster.redis.publish(f"{cluster.prefix}:relay:{a_id}", "{not json")
    cluster.redis.publish(f"{cluster.prefix}:relay:{a_id}", '{"v": 1, "kind": "event"}')
    assert (await cy.call("chat", {"v": 1, "text": "still relayed"}))["ok"]
    await said(ann, "still relayed")

    # A relayed participant acts only for itself, and host-only events stay refused.
    refused = await cy.call("lock", {"v": 1, "locked": True})
    assert refused["error"]["code"] == "forbidden"
    assert (await cy.wait_for("error"))["code"] == "forbidden"
    # Malformed input is refused by the edge, with the same answer as anywhere.
    bad = await cy.call("chat", {"v": 1, "text": 5})
    assert bad["error"]["code"] == "bad_request"
    # A forged token is refused before anything is relayed.
    stranger = await Client(b.url).connect()
    forged = await stranger.call(
        "join", {"v": 1, "token": "forged.token", "name": "X", "room": spin_id}
    )
    assert forged["error"]["code"] == "invalid_token"

    # The instructor's controls reach relayed people: Ann mutes Cy.
    muted = await ann.call("mute", {"v": 1, "participant_id": cy_ack["you"]["id"]})
    assert muted["ok"], muted

    # Leaving through the edge is seen by the class's node and everyone in the class.
    await eve.close()
    left = await ann.wait_for("participant_left", lambda e: e["id"] == eve_ack["you"]["id"])
    assert left["v"] == 1
    stats = a.stats()
    assert stats["participants"] == 2, stats  # Ann and Cy (Bo is in b's class; Eve left)
    # /metrics on each node: a relays Bo out and serves Cy, b relays Cy out and serves Bo.
    async with httpx.AsyncClient(timeout=10) as http:
        texts_by_node = [(await http.get(f"{n.url}/metrics")).text for n in (a, b)]
    for text in texts_by_node:
        assert 'pulseroom_relayed_sessions{direction="out"} 1.0' in text, text
        assert 'pulseroom_relayed_sessions{direction="in"} 1.0' in text, text
        assert 'pulseroom_relayed_events_total{direction="out"}' in text
    for client in (ann, bo, cy, dee, stranger):
        await client.close()


# A deadline measured in wall time (media still arriving within 15 s): the cores to itself.
# In the parallel part it failed in 2 of 4 runs on 2026-12-07: once slow (13 packets in
# 8 s), once stalled (Ann had 21 packets of the coach's video, then none for 15 s, before
# any node was killed). Not seen again in 14 runs beside load since (CPU burners, three
# Chromium modules): only its two nodes' start grew, to 45-50 s in all.
@pytest.mark.alone
@pytest.mark.timeout(180)
async def test_relayed_bots_get_media_and_a_dead_edge_or_holder_is_noticed(
    cluster: Cluster,
) -> None:
    a, b = await two_nodes(cluster)
    spin = a.create_room("Spin")
    spin_id = str(spin["room"]["id"])  # type: ignore[index]
    coach = await peers.join(str(spin["host_link"]), "Coach")
    # Ann's signaling goes through b; her media goes to a, where the class is.
    ann = await peers.join(link_on(str(spin["join_link"]), b), "Ann")
    try:
        assert cluster.holder(spin_id) == cluster.node_id(a)
        assert ann.base_url == b.url
        await assert_bot_receives(coach, {ann.you["id"]: "Ann"}, 20)
        await assert_bot_receives(ann, {coach.you["id"]: "Coach"}, 20)
        watcher = await Client(a.url).connect()
        assert (await watcher.join(str(spin["join_link"]), "Watcher"))["ok"]
        # A plain client through b, which does not rejoin: only b's death takes it out.
        cy = await Client(b.url).connect()
        cy_ack = await cy.join(str(spin["join_link"]), "Cy")
        assert cy_ack["ok"], cy_ack
        ann_id = ann.you["id"]

        # Chat from the relayed bot reaches the class.
        await ann.call("chat", {"text": "from b"})
        await watcher.wait_for("chat", lambda e: e["message"]["text"] == "from b")

        # b dies: the class's node takes b's sessions out (Cy); Ann's bot rejoins by
        # itself through a (the node it tries next), as the same participant.
        killed_at = time.monotonic()
        cluster.kill(b)
        await watcher.wait_for(
            "participant_left", lambda e: e["id"] == cy_ack["you"]["id"], timeout=10
        )
        out_after = time.monotonic() - killed_at
        await wait_until(lambda: bool(ann.rejoins), 15, "Ann rejoins")
        print(f"edge killed: Cy out after {out_after:.2f} s, Ann rejoined: {ann.rejoins}")
        assert out_after < 5.0
        assert ann.base_url == a.url and ann.you["id"] == ann_id
        await assert_bot_receives(coach, {ann_id: "Ann"}, 20)
        stats = a.stats()
        assert stats["participants"] == 3, stats  # Coach, Ann (again), Watcher: not Cy
        await watcher.close()
    except BaseException:
        cluster.print_logs()
        raise
    finally:
        await coach.stop()
        await ann.stop()


@pytest.mark.timeout(120)
async def test_sessions_relayed_to_a_dead_holder_are_let_go_to_rejoin(cluster: Cluster) -> None:
    a, b = await two_nodes(cluster)
    spin = a.create_room("Spin")
    spin_id = str(spin["room"]["id"])  # type: ignore[index]
    ann = await Client(a.url).connect()
    assert (await ann.join(str(spin["host_link"]), "Ann"))["ok"]
    cy = await Client(b.url).connect()
    cy_ack = await cy.join(str(spin["join_link"]), "Cy")
    assert cy_ack["ok"]
    disconnected = asyncio.Event()
    cy.sio.on("disconnect", lambda *_: disconnected.set())

    killed_at = time.monotonic()
    cluster.kill(a)
    await asyncio.wait_for(disconnected.wait(), 10)
    print(f"holder killed: relayed session let go after {time.monotonic() - killed_at:.2f} s")
    assert time.monotonic() - killed_at < 5.0

    # Rejoining through b with the bound token: the class is placed on b now, and Cy is
    # the same participant with the chat history.
    again = await Client(b.url).connect()
    rejoined = await again.call(
        "join", {"v": 1, "token": cy_ack["token"], "name": "Cy", "room": spin_id}
    )
    assert rejoined["ok"], rejoined
    assert rejoined["you"]["id"] == cy_ack["you"]["id"]
    assert cluster.holder(spin_id) == cluster.node_id(b)
    await again.close()
    await ann.close()


@NEEDS_CHROMIUM
@pytest.mark.timeout(180)
async def test_a_page_on_the_other_node_takes_part_in_the_class(
    cluster: Cluster, browser: Any
) -> None:
    """Headless Chromium, served by b, in a class held on a: video both ways, chat."""
    a, b = await two_nodes(cluster)
    spin = a.create_room("Spin")
    spin_id = str(spin["room"]["id"])  # type: ignore[index]
    coach = await peers.join(str(spin["host_link"]), "Coach")
    tab = await open_tab(browser, "Bea")
    try:
        bea_id = await browser_join(tab, link_on(str(spin["join_link"]), b), "Bea")
        assert cluster.holder(spin_id) == cluster.node_id(a)
        assert await tab.page.evaluate("window.pulseroom.node") == b.url
        await assert_video_flowing(tab, {coach.you["id"]: "Coach"})
        await assert_bot_receives(coach, {bea_id: "Bea"}, 20)
        await coach.call("chat", {"text": "welcome, Bea"})
        await tab.page.get_by_test_id("chat-input").fill("hi from b")
        await tab.page.get_by_test_id("chat-send").click()
        await tab.page.wait_for_function(
            "document.querySelectorAll('[data-testid=chat-text]').length === 2"
        )
        assert sorted(await chat_texts(tab)) == ["hi from b", "welcome, Bea"]
        assert not tab.errors, tab.diagnostics()
    except BaseException:
        print(tab.diagnostics())
        cluster.print_logs()
        raise
    finally:
        await tab.close()
        await coach.stop()
