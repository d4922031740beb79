"""``python -m bench.signaling_load`` at a tiny scale: it runs end to end on the real
services and its report holds together. Not a timing test (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bench.signaling_load import plan_rooms
from tests.conftest import POSTGRES_URL, ROOT

ADMIN_DSN = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + (
    "/postgres"
)


def run_bench(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    """``python -m bench.signaling_load args...``."""
    return subprocess.run(
        [sys.executable, "-m", "bench.signaling_load", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def summary_ok(summary: dict[str, Any], samples: int) -> None:
    """A p50/p99/max summary of ``samples`` positive figures, in order."""
    assert summary["samples"] == samples
    if samples:
        assert 0 < summary["p50"] <= summary["p99"] <= summary["max"]


@pytest.mark.timeout(180)
def test_twenty_clients_and_a_chat_class_of_ten() -> None:
    """20 clients in classes of 10 (the first is the chat class): every join, ping and
    chat delivery is accounted for."""
    completed = run_bench(
        "--clients", "20", "--chat-room", "10", "--room-size", "10",
        "--rate", "20", "--seconds", "2", "--chat-rate", "2", "--chat-seconds", "2",
        "--generators", "2", "--database", ADMIN_DSN, "--json",
        # The class settles and idles for a second each, not the 5 and 10 a measurement takes.
        "--settle-seconds", "1", "--idle-seconds", "1",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout)

    assert report["scenario"] == "signaling_load"
    assert report["clients"] == 20 and report["joined"] == 20 and report["failed"] == 0
    assert report["rooms"] == 2 and report["room_sizes"] == [10]
    assert report["server_participants"] == 20  # the server counted them too
    summary_ok(report["connect_ms"], 20)
    summary_ok(report["join_ms"], 20)

    ping = report["ping"]
    assert ping["sent"] == 40 and ping["answered"] == 40 and ping["unanswered"] == 0
    summary_ok(ping["rtt_ms"], 40)
    assert ping["cpu"]["server_cpu_cores"] >= ping["cpu"]["server_main_cpu_cores"] > 0
    per_event = ping["server_cpu_us_per_event"]
    assert per_event["all_in"] > 0 and per_event["over_idle"] <= per_event["all_in"]

    chat = report["chat"]
    assert chat["room_size"] == 10 and chat["refused"] == []
    assert chat["messages_sent"] == 4  # 2 per second for 2 seconds, across the generators
    # Everyone in the class gets every message, the sender included.
    assert chat["deliveries"] == chat["expected_deliveries"] == 4 * 10
    assert chat["messages_reaching_everyone"] == 4
    summary_ok(chat["delivery_ms"], 40)
    summary_ok(chat["all_received_ms"], 4)
    assert chat["all_received_ms"]["max"] == chat["delivery_ms"]["max"]
    assert chat["server_cpu_us_per_delivery"]["all_in"] > 0

    memory = report["server_memory_mib"]
    assert memory["processes"] >= 2  # the server and its SFU workers
    assert memory["rss_mib"] >= memory["main_rss_mib"] > 10
    assert report["config"]["database"] == "postgresql" and report["config"]["generators"] == 2
    assert report["machine"]["cores"] >= 1
    assert report["goal"] == {"clients": 2000, "chat_room": 200, "chat_p99_ms": 100}


def test_nothing_to_do_is_refused() -> None:
    """No clients and no chat class: a clear error, and no server started."""
    completed = run_bench("--database", "sqlite", timeout=60)
    assert completed.returncode == 1
    assert "give --clients N and/or --chat-room M" in completed.stderr
    completed = run_bench("--clients", "-3", timeout=60)
    assert completed.returncode == 2 and "positive" in completed.stderr
    completed = run_bench("--clients", "3", "--idle-seconds", "0", timeout=60)
    assert completed.returncode == 2 and "--idle-seconds must be > 0" in completed.stderr


def test_plan_rooms() -> None:
    """The chat class first, then classes of room-size, the last one what is left."""
    assert plan_rooms(2000, 200, 100) == [200] + [100] * 18
    assert plan_rooms(250, 0, 100) == [100, 100, 50]
    assert plan_rooms(10, 200, 100) == [200]  # the chat class alone
    assert plan_rooms(0, 0, 100) == []
