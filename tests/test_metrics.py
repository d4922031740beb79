"""``GET /metrics``: a real server with real peers and heart-rate readings, scraped and parsed
with prometheus_client's own parsers; the collector's arithmetic on a made-up snapshot."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from pulseroom.hr_link import HeartRateLink
from signaling.metrics import MetricsApi, Snapshot, SnapshotCollector
from telemetry.hrm import HeartRateMeasurement
from tests.conftest import RunningServer
from tests.peers import start_bot
from tests.sio_client import Client

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: RunningServer) -> tuple[str, str]:
    """``GET /metrics``: (body, content type)."""
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text, response.headers["content-type"]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Family name → type, and (sample name, labels) → value; fails on a malformed line."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in types, f"family {family.name} exposed twice"
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"sample {key} exposed twice"
            samples[key] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value."""
    return samples[(name, frozenset(labels.items()))]


def total(samples: Samples, name: str) -> float:
    """The sum of a metric's samples over all label values (e.g. over SFU workers)."""
    return sum(v for (n, _labels), v in samples.items() if n == name)


def workers(server: RunningServer) -> list[dict[str, Any]]:
    """The SFU workers as /api/stats lists them."""
    listed: list[dict[str, Any]] = httpx.get(f"{server.url}/api/stats", timeout=10).json()[
        "workers"
    ]
    return listed


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.25)


@pytest.mark.timeout(150)
async def test_metrics_follow_a_live_class(server: RunningServer) -> None:
    """Two bots publishing and a strap bridge sending readings: every figure moves."""
    room = server.create_room("Metrics")
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    types, samples = parse(scrape(server)[0])
    assert value(samples, "pulseroom_classes") == 0
    assert total(samples, "pulseroom_sfu_forwarded_packets_total") == 0

    bots = [await start_bot(host_link, "Coach", 40)]
    # The coach first (once a 1.5 s sleep, which a loaded machine could outlast).
    await until(lambda: server.stats()["participants"] == 1, 40, "the coach joined")
    bots.append(await start_bot(join_link, "Ann", 40))
    link = HeartRateLink(join_link, name="Ben's strap")
    link_task = asyncio.create_task(link.run())
    pinger = await Client(server.url).connect()
    try:
        await link.wait_open(30)
        sent = [120, 125, 131, 140, 152, 149, 143]
        for bpm in sent:
            link.send(HeartRateMeasurement(bpm=bpm, contact=True, rr=(480,)))
            await asyncio.sleep(0.05)
        await link.wait_acked(timeout=15)
        assert (await pinger.call("ping", {"v": 1}))["ok"]

        current: dict[str, Samples] = {}

        def forwarding() -> bool:
            current["samples"] = parse(scrape(server)[0])[1]
            return total(current["samples"], "pulseroom_sfu_forwarded_packets_total") > 200

        await until(forwarding, 40, "forwarded packets > 200")
        text, content_type = scrape(server)
        types, samples = parse(text)
    finally:
        await pinger.close()
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
        for bot in bots:
            if bot.returncode is None:
                bot.terminate()
            await bot.wait()

    assert content_type.startswith("text/plain; version=0.0.4")
    # Conventions: one prefix, counters end in _total, units in the names.
    assert types["pulseroom_sfu_forwarded_packets"] == "counter"
    assert types["pulseroom_hr_db_write_lag_seconds"] == "gauge"
    for name in types:
        assert name.startswith(("pulseroom_", "process_", "python_")), name
    for (name, _labels), number in samples.items():
        assert not math.isnan(number), name
    counters = {n for n, t in types.items() if t == "counter"}
    for name, _labels in samples:
        base = name.removesuffix("_total").removesuffix("_created")
        if base in counters:
            assert name.endswith(("_total", "_created")), name

    assert value(samples, "pulseroom_classes") == 1
    assert value(samples, "pulseroom_participants", role="host") == 1
    assert value(samples, "pulseroom_participants", role="participant") == 2  # Ann, the bridge
    assert value(samples, "pulseroom_participants", role="device") == 0
    assert value(samples, "pulseroom_socketio_sessions") >= 4
    assert total(samples, "pulseroom_sfu_participants") == 3
    assert value(samples, "pulseroom_sfu_workers") == len(workers(server))
    assert value(samples, "pulseroom_sfu_worker_restarts_total") == 0
    assert total(samples, "pulseroom_sfu_forwarded_packets_total") > 200
    assert total(samples, "pulseroom_sfu_forwarded_bytes_total") > 200 * 100
    assert total(samples, "pulseroom_sfu_subscriber_streams") >= 4  # 2 tracks each way
    assert total(samples, "pulseroom_sfu_keyframe_requests_sent_total") >= 1  # first frames
    loss = [v for (n, _l), v in samples.items() if n == "pulseroom_sfu_subscriber_loss_ratio"]
    assert loss and all(0 <= x <= 1 for x in loss)

    assert value(samples, "pulseroom_hr_readings_received_total") == len(sent)
    assert value(samples, "pulseroom_hr_readings_accepted_total") == len(sent)
    assert value(samples, "pulseroom_hr_readings_rejected_total", reason="invalid") == 0
    assert value(samples, "pulseroom_hr_readings_durable_total") == len(sent)
    assert value(samples, "pulseroom_hr_readings_stored_total") == len(sent)
    assert value(samples, "pulseroom_hr_writer_queue_rows") == 0
    assert 0 < value(samples, "pulseroom_hr_db_write_lag_seconds") < 5
    assert value(samples, "pulseroom_hr_db_batches_total") >= 1

    assert value(samples, "pulseroom_signaling_events_total", event="join") == 3
    assert value(samples, "pulseroom_signaling_events_total", event="ping") == 1
    assert value(samples, "pulseroom_signaling_events_total", event="publish") >= 3
    assert value(samples, "process_resident_memory_bytes") > 10e6


def value_or_zero(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0 when it is not exposed yet (nothing counted)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.shared_server  # counters compared before and after (tests/conftest.py)
async def test_refusals_are_counted_by_event_and_code(server: RunningServer) -> None:
    """A chat before joining and a malformed join show up under their codes."""
    figures = (
        ("pulseroom_signaling_errors_total", {"event": "chat", "code": "not_joined"}),
        ("pulseroom_signaling_errors_total", {"event": "join", "code": "bad_request"}),
        ("pulseroom_signaling_events_total", {"event": "chat"}),
    )
    _types, before = parse(scrape(server)[0])
    client = await Client(server.url).connect()
    try:
        assert not (await client.call("chat", {"v": 1, "text": "hi"}))["ok"]
        assert not (await client.call("join", {"v": 1}))["ok"]
    finally:
        await client.close()
    _types, samples = parse(scrape(server)[0])
    chat, bad, chats = (
        value(samples, name, **labels) - value_or_zero(before, name, **labels)
        for name, labels in figures
    )
    assert chat == 1
    assert bad == 1
    assert chats == 1


@pytest.mark.shared_server
def test_openmetrics_when_asked(server: RunningServer) -> None:
    """A scraper asking for OpenMetrics gets it, and it parses as OpenMetrics."""
    response = httpx.get(
        f"{server.url}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = openmetrics_families(response.text)  # type: ignore[no-untyped-call]
    names = {family.name for family in families}
    assert "pulseroom_sfu_forwarded_packets" in names
    assert "pulseroom_hr_readings_accepted" in names


@pytest.mark.timeout(60)
async def test_a_replaced_worker_is_counted(server: RunningServer) -> None:
    """SIGKILL one SFU worker: restarts_total goes to 1 and all workers are alive again."""
    count = len(workers(server))
    victim = int(workers(server)[0]["pid"])
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        samples = parse(scrape(server)[0])[1]
        return (
            value(samples, "pulseroom_sfu_worker_restarts_total") == 1
            and value(samples, "pulseroom_sfu_workers") == count
        )

    await until(replaced, 30, "worker replaced")
    assert workers(server)[0]["pid"] != victim


def _snapshot(media: dict[str, Any]) -> Snapshot:
    return Snapshot(
        sessions=3,
        classes=1,
        members={"host": 1, "participant": 2, "device": 0},
        media=media,
        heart_rate={"received": 9, "accepted": 7, "rejected": 2, "writer": {"lag_s": 0.25}},
        events={"join": 3},
        errors={("chat", "not_joined"): 1},
    )


def test_collector_labels_workers_and_averages_loss() -> None:
    """Per-worker counters keep their own series; loss is the mean over a worker's streams."""
    counters = {
        "forwarded_packets": 100,
        "plis_received": 4,
        "firs_received": 1,
        "subscriber_streams": 4,
        "subscriber_loss_ratio_sum": 0.5,
        "subscriber_streams_lossy": 1,
    }
    media = {
        "rooms": 1,
        "participants": 3,
        "workers": [
            {"pid": 1, "alive": True, "rooms": 1, "participants": 3, "counters": counters},
            {"pid": 2, "alive": False, "rooms": 0, "participants": 0},  # did not answer
        ],
        "worker_restarts": 2,
    }
    snapshot = _snapshot(media)

    async def source() -> Snapshot:
        return snapshot

    api = MetricsApi(source)
    body, content_type = api.render(snapshot)
    assert content_type.startswith("text/plain")
    _types, samples = parse(body.decode())
    assert value(samples, "pulseroom_sfu_workers") == 1
    assert value(samples, "pulseroom_sfu_worker_restarts_total") == 2
    assert value(samples, "pulseroom_sfu_forwarded_packets_total", worker="0") == 100
    assert ("pulseroom_sfu_forwarded_packets_total", frozenset({("worker", "1")})) not in samples
    assert (
        value(samples, "pulseroom_sfu_keyframe_requests_received_total", worker="0", type="pli")
        == 4
    )
    assert (
        value(samples, "pulseroom_sfu_keyframe_requests_received_total", worker="0", type="fir")
        == 1
    )
    assert value(samples, "pulseroom_sfu_subscriber_loss_ratio", worker="0") == 0.125
    assert value(samples, "pulseroom_sfu_subscriber_streams_lossy", worker="0") == 1
    assert value(samples, "pulseroom_hr_readings_rejected_total", reason="invalid") == 2
    assert value(samples, "pulseroom_hr_db_write_lag_seconds") == 0.25
    assert value(samples, "pulseroom_signaling_errors_total", event="chat", code="not_joined") == 1
    # The snapshot is not kept past the render.
    assert api.collector.snapshot is None
    assert list(api.collector.collect()) == []


def test_collector_in_process_sfu() -> None:
    """With PULSEROOM_SFU_WORKERS=0 the counters are the top level's, labelled in-process."""
    media = {"rooms": 2, "participants": 5, "forwarded_packets": 7, "subscriber_streams": 0}
    collector = SnapshotCollector()
    collector.snapshot = _snapshot(media)
    families = {f.name: f for f in collector.collect()}
    assert "pulseroom_sfu_workers" not in families
    forwarded = families["pulseroom_sfu_forwarded_packets"].samples
    assert [(s.labels, s.value) for s in forwarded] == [({"worker": "in-process"}, 7.0)]
    rooms = families["pulseroom_sfu_rooms"].samples
    assert [(s.labels, s.value) for s in rooms] == [({"worker": "in-process"}, 2.0)]
    loss = families["pulseroom_sfu_subscriber_loss_ratio"].samples
    assert loss[0].value == 0.0  # no streams: no loss, not a division by zero
