"""Shared fixtures: real servers started as subprocesses on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

# Hooks, found by their names here: in CI (CI=true) a skipped test fails; the tests marked
# paired are put in two lanes of about equal length.
from tests.ci_skips import pytest_make_collect_report, pytest_runtest_makereport
from tests.instructor import LoggedIn
from tests.pairing import pytest_addoption, pytest_collection_modifyitems
from tests.waiting import until_sync

__all__ = [
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_make_collect_report",
    "pytest_runtest_makereport",
]

ROOT = Path(__file__).resolve().parent.parent

# The README's test command starts these services when they are not running.
POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The shared server's signing secret, so a test can sign a token of its own (an expired one).
SHARED_SECRET = "5f2a9c0d7e41b8a3c6f90e12d4b7a85c3e0f6d19a2b4c7e8f01d3a5b6c9e2f47"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """A ``pulseroom serve`` subprocess."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    # The test instructor's session here, opened by the first class (tests/instructor.py).
    _instructor: LoggedIn | None = field(default=None, repr=False)

    def stored_rooms(self) -> int:
        """How many classes the embedded SQLite database holds."""
        import sqlite3

        with sqlite3.connect(self.data_dir / "pulseroom.db") as db:
            return int(db.execute("SELECT count(*) FROM rooms").fetchone()[0])

    def instructor(self) -> LoggedIn:
        """The test instructor logged in here (the first admin, by the setup link)."""
        if self._instructor is None:
            self._instructor = LoggedIn.open(self.url, self.log())
        return self._instructor

    def create_room(self, title: str = "Spin class") -> dict[str, object]:
        """POST /api/rooms as the logged-in test instructor and return the JSON answer."""
        return dict(self.instructor().create_room(title))

    def stats(self) -> dict[str, int]:
        """GET /api/stats."""
        data: dict[str, int] = httpx.get(f"{self.url}/api/stats", timeout=10).json()
        return data

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, **env: str) -> RunningServer:
    """Start ``pulseroom serve`` with ``env`` on a free port and wait until it answers."""
    port = int(env["PULSEROOM_PORT"]) if "PULSEROOM_PORT" in env else free_port()
    # Only what the test asks for: an inherited DATABASE_URL must not leak in.
    inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    full_env = {
        # One SFU worker unless the test asks for more (the default, one per core, costs
        # a process start each; the pool and pipe tests set the count they need).
        # An exported PULSEROOM_SFU_WORKERS overrides this for a whole run.
        "PULSEROOM_SFU_WORKERS": "1",
        **inherited,
        "PULSEROOM_PORT": str(port),
        "PULSEROOM_DATA_DIR": str(tmp / "data"),
        "PULSEROOM_LOG_LEVEL": "INFO",
        # Tests create classes faster than people do; the limit has a test of its own.
        "PULSEROOM_ROOMS_PER_MINUTE": "10000",
        **env,
    }
    log_path = tmp / f"server-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pulseroom.cli", "serve"],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # 60 s: on a loaded machine the imports alone have taken 25 s.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/api/stats", timeout=1).status_code == 200:
                return RunningServer(url, process, log_path, tmp / "data")
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not answer within 60 s:\n{log_path.read_text()}")


def stop_server(server: RunningServer) -> None:
    """Stop the subprocess (SIGTERM, then SIGKILL)."""
    if server._instructor is not None:
        server._instructor.close()
        server._instructor = None
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def pytest_configure(config: pytest.Config) -> None:
    """Register this suite's marks."""
    config.addinivalue_line(
        "markers",
        "shared_server: the `server` fixture is one server shared by every test so marked "
        "(each test makes its own classes and waits for no one else's participants)",
    )
    config.addinivalue_line(
        "markers",
        "alone: judges video as a viewer sees it (frame sizes, frame rates, freezes on a "
        "limited link) or holds a deadline in wall time, which needs the machine's cores to "
        "itself: scripts/test runs these after the rest, one at a time, while the rest run "
        "in parallel (pytest-xdist)",
    )
    config.addinivalue_line(
        "markers",
        "paired(seconds): a test marked alone that holds a deadline in wall time but keeps "
        "less than one core busy (bots; a browser page at most briefly; measured with -p "
        "tests.cpu_log): "
        "scripts/test runs these in two lanes at once (--lane 0, --lane 1), each on a core of "
        "its own, before the rest of the alone tests; seconds is how long its module takes "
        "there (tests/pairing.py)",
    )


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One default server for the whole run, for the tests marked ``shared_server``."""
    running = start_server(tmp_path_factory.mktemp("shared-server"), PULSEROOM_SECRET=SHARED_SECRET)
    yield running
    stop_server(running)


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """A server on the embedded default (SQLite, in-memory Socket.IO manager).

    Marked ``shared_server`` (a module's ``pytestmark``), the test gets the session's
    shared server: it makes classes of its own, compares counters that only grow before
    and after, and a test that counts the server's participants first waits for the
    tests before it to have left (``wait_for_no_participants``). Otherwise the test gets
    a server of its own.
    """
    if request.node.get_closest_marker("shared_server"):
        yield request.getfixturevalue("shared_server")
        return
    # A folder of its own: a test may start a second server in tmp_path beside it.
    home = tmp_path / "default-server"
    home.mkdir()
    running = start_server(home)
    yield running
    stop_server(running)


def wait_for_no_participants(server: RunningServer) -> None:
    """Until the participants of the tests before this one have left a shared server."""
    until_sync(lambda: server.stats()["participants"] == 0, 20, "no participant left")


def _admin_dsn() -> str:
    """POSTGRES_URL as a plain libpq DSN on the maintenance database."""
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    return dsn.rsplit("/", 1)[0] + "/postgres"


def fresh_database(prefix: str = "pulseroom_test") -> Iterator[str]:
    """A new, empty PostgreSQL database on the real server, dropped afterwards (a fixture body)."""
    import asyncio
    import uuid

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_admin_dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the real server; dropped afterwards."""
    yield from fresh_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind the store supports: an SQLite file, then a
    PostgreSQL database on the real server (``postgres_url``)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'pulseroom.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """Makes Socket.IO test clients connected to ``server``; closes them afterwards."""
    from tests.sio_client import Client

    clients: list[Client] = []

    async def make() -> Client:
        client = await Client(server.url).connect()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
