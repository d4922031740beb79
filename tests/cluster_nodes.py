"""Several ``pulseroom serve`` nodes sharing one PostgreSQL database and one Redis.

Each test gets a fresh database and a Redis key prefix of its own (keys and the
Socket.IO channel), so tests running at the same time on the same Redis do not meet.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import REDIS_URL, RunningServer, start_server, stop_server

SECRET = "c0b1d2e3f4a5968778695a4b3c2d1e0f9e8d7c6b5a49382716051f2e3d4c5b6a"


@dataclass
class Cluster:
    """The nodes of one test and the Redis they share."""

    tmp: Path
    database_url: str
    prefix: str
    nodes: list[RunningServer] = field(default_factory=list)
    redis: redis.Redis = field(default_factory=lambda: redis.Redis.from_url(REDIS_URL))

    def start_node(self, name: str, **env: str) -> RunningServer:
        """One more node: its own port and data directory, the shared secret and stores."""
        home = self.tmp / name
        home.mkdir()
        node = start_server(
            home,
            PULSEROOM_SECRET=SECRET,
            DATABASE_URL=self.database_url,
            REDIS_URL=REDIS_URL,
            PULSEROOM_REDIS_PREFIX=self.prefix,
            PULSEROOM_SFU_WORKERS="1",
            **env,
        )
        self.nodes.append(node)
        return node

    def kill(self, node: RunningServer) -> None:
        """SIGKILL a node: no goodbye to Redis or to its clients."""
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def live(self) -> dict[str, dict[str, Any]]:
        """The node records in Redis by URL (only nodes whose heartbeat is current)."""
        found = {}
        for key in self.redis.scan_iter(f"{self.prefix}:node:*"):
            raw = self.redis.get(key)
            if raw is not None:
                info = json.loads(raw)
                found[info["url"]] = info
        return found

    def node_id(self, node: RunningServer) -> str:
        """The id a running node beats under."""
        return str(self.live()[node.url]["id"])

    def holder(self, room_id: str) -> str | None:
        """The id of the node a class is placed on."""
        value = self.redis.get(f"{self.prefix}:room:{room_id}")
        return value.decode() if isinstance(value, bytes) else None

    def print_logs(self) -> None:
        """The end of each node's log (for a failing test's output)."""
        for node in self.nodes:
            print(f"--- {node.url}\n{node.log()[-3000:]}")

    def close(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                stop_server(node)
        for key in self.redis.scan_iter(f"{self.prefix}:*"):
            self.redis.delete(key)
        self.redis.close()


def cluster_fixture(tmp_path: Path, postgres_url: str) -> Iterator[Cluster]:
    """A fixture body: an empty cluster (start its nodes with ``start_node``)."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    cluster = Cluster(tmp_path, postgres_url, f"test-{uuid.uuid4().hex[:10]}")
    try:
        yield cluster
    finally:
        cluster.close()


def link_on(link: str, node: RunningServer) -> str:
    """The same class link, sent to ``node``."""
    return node.url + "/r/" + link.split("/r/", 1)[1]
