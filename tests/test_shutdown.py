"""SIGTERM ends `pulseroom serve` within seconds, also after a database restart mid-class.

Issue 17, item 12: a self-hoster stopped PostgreSQL for 6 s mid-class and started it
again; every reading was stored once, but afterwards the server sometimes did not exit
on SIGTERM (still running 150 s later). Here: a real server process on a private
PostgreSQL cluster (tests/pg_cluster.py), heart-rate bridges over real data channels,
PostgreSQL stopped like a crash and started again, then SIGTERM; the exit is timed, and
every reading the server accepted is in the database once after the spool it may have
left is written (as the next start does), several times over.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from pulseroom.hr_link import HeartRateLink
from runtime.shutdown import end_within, run_within
from storage.store import create_engine
from telemetry.simulate import SimulatedStrap
from telemetry.writer import HeartRateRow, HeartRateWriter
from tests.conftest import ROOT, RunningServer, start_server
from tests.pg_cluster import PgCluster, running_cluster

# "Within a few seconds": the server's own bounds (1 s + 1 s for requests in flight, the
# writer's 3 s, the pool's 1 s) stay under this; its watchdog fires at 9 s (exit 70).
EXIT_DEADLINE_S = 6.0
RUNS = 3  # about 20 s each: a server start, a class with an outage, the stop


async def _holds_on_to_cancellation(release: asyncio.Event) -> None:
    """What SQLAlchemy's async connection does while it closes (_run_to_completion):
    a cancellation is kept until the close is done, then raised."""
    cancelled = False
    while not release.is_set():
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


async def _fails() -> None:
    raise OSError("closed")


async def test_a_task_that_holds_on_to_its_cancellation_defeats_wait_for_not_end_within() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_holds_on_to_cancellation(release))
    guard = asyncio.create_task(asyncio.wait_for(asyncio.shield(task), 0.1))
    started = time.monotonic()
    assert not await end_within(task, 0.1, grace=0.1)  # returns; the task still runs
    assert time.monotonic() - started < 0.5 and not task.done()
    assert await run_within("a quick step", asyncio.sleep(0), 1.0)
    assert not await run_within("a failing step", _fails(), 1.0)
    release.set()
    await asyncio.gather(task, guard, return_exceptions=True)
    assert task.cancelled()


def test_the_watchdog_ends_a_process_whose_loop_waits_on_such_a_task() -> None:
    """The last resort of `pulseroom serve` (pulseroom/cli.py): armed when shutdown
    begins, it logs where the tasks wait and exits, even with the loop stuck."""
    child = textwrap.dedent(
        """
        import asyncio, logging
        from runtime.shutdown import Watchdog
        from tests.test_shutdown import _holds_on_to_cancellation

        async def main():
            Watchdog(0.5).arm()
            task = asyncio.create_task(_holds_on_to_cancellation(asyncio.Event()), name="stuck")
            await asyncio.sleep(0.05)
            task.cancel()
            await task  # never ends: the cancellation is held

        logging.basicConfig()
        asyncio.run(main())
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert time.monotonic() - started < 10
    assert done.returncode == 70, done.stderr
    assert "shutdown did not finish within 0.5 s" in done.stderr
    assert "still running: task stuck in _holds_on_to_cancellation" in done.stderr


async def test_writer_close_is_bounded_when_the_database_does_not_answer(tmp_path: Path) -> None:
    """A listening socket that never answers, and a statement timeout longer than any
    shutdown: close() gives the database its bound, then spools every row."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x")
        durable: list[HeartRateRow] = []
        spool = tmp_path / "spool.jsonl"
        writer = HeartRateWriter(engine, spool, statement_timeout=60.0, on_durable=durable.extend)
        await writer.start()
        await asyncio.sleep(0.3)  # the start's round is now waiting on the silent server
        for seq in range(50):
            writer.put(HeartRateRow(1.7e9 + seq, "room", "p", seq, 100))
        started = time.monotonic()
        await writer.close(timeout=0.5)
        elapsed = time.monotonic() - started
        await run_within("dispose", engine.dispose(), 0.5)
    assert elapsed < 2.0
    assert len(durable) == 50 and writer.stats()["spooled"] == 50
    assert len(spool.read_text().splitlines()) == 50


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    yield from running_cluster()


def _accepted(server: RunningServer) -> int:
    stats = httpx.get(f"{server.url}/api/stats", timeout=10).json()
    return int(stats["heart_rate"]["accepted"])


async def _class_through_a_restart(
    server: RunningServer, cluster: PgCluster, down_s: float, tasks: list[asyncio.Task[None]]
) -> tuple[str, int]:
    """Three straps at 10 readings a second each; PostgreSQL stopped (immediate, like a
    crash) for ``down_s`` and started again. Returns the class and how many readings
    were sent, once the server has accepted them all; the bridges stay connected (their
    tasks in ``tasks``), as a class's browsers are when the server is stopped."""
    room = await asyncio.to_thread(server.create_room)
    links = [HeartRateLink(str(room["join_link"]), name=f"rider {i}") for i in range(3)]
    tasks.extend(asyncio.create_task(link.run()) for link in links)
    for link in links:
        await link.wait_open(20)
    curves = [SimulatedStrap(seed=i).readings() for i in range(len(links))]

    async def ride(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for link, curve in zip(links, curves, strict=True):
                link.send(next(curve))
            await asyncio.sleep(0.1)

    await ride(1.0)
    await asyncio.to_thread(cluster.stop, "immediate")
    await ride(down_s)
    await asyncio.to_thread(cluster.start)
    await ride(1.0)
    for link in links:
        await link.wait_acked(timeout=30)
    await ride(0.3)  # and a last few, SIGTERM'd before they are all stored
    sent = sum(link.counts["queued"] for link in links)
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(_accepted, server) < sent:
        assert time.monotonic() < deadline, "the server did not receive every reading"
        await asyncio.sleep(0.02)
    info = room["room"]
    assert isinstance(info, dict)
    return str(info["id"]), sent


async def _stored(url: str, room_id: str) -> tuple[int, int]:
    """(rows, distinct (participant, seq)) of a class, after writing any spool left."""
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (participant_id, seq)) AS d"
            " FROM heart_rate WHERE room_id = $1",
            room_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), int(row["d"])


async def _write_spool(url: str, data_dir: Path) -> int:
    """What the next start does first: the spool into the database. Rows written."""
    engine = create_engine(url)
    writer = HeartRateWriter(engine, data_dir / "spool" / "heart_rate.jsonl")
    try:
        await writer.start()
        await writer.flush()
        unspooled = int(writer.stats()["unspooled"])
    finally:
        await writer.close()
        await engine.dispose()
    return unspooled


@pytest.mark.alone  # a deadline measured in wall time: not beside the parallel part
@pytest.mark.paired(seconds=25)  # ~0.35 of a core (tests/cpu_log.py): beside one other such test
async def test_sigterm_after_a_database_restart_exits_promptly_and_keeps_every_reading(
    cluster: PgCluster, tmp_path: Path
) -> None:
    exits: list[float] = []
    for run in range(RUNS):
        home = tmp_path / f"run{run}"
        home.mkdir()
        server = await asyncio.to_thread(start_server, home, DATABASE_URL=cluster.url)
        bridges: list[asyncio.Task[None]] = []
        try:
            room_id, sent = await _class_through_a_restart(server, cluster, 1.5 + run, bridges)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(server.process.wait, 30)
            except subprocess.TimeoutExpired:
                code = None
            exits.append(time.monotonic() - started)
        finally:
            for task in bridges:
                task.cancel()
            await asyncio.gather(*bridges, return_exceptions=True)
            if server.process.poll() is None:
                server.process.kill()
                await asyncio.to_thread(server.process.wait)
        log = server.log()
        assert code == 0, f"run {run}: exit {code} after {exits[-1]:.1f} s\n{log[-6000:]}"
        assert exits[-1] < EXIT_DEADLINE_S, f"run {run}: {exits[-1]:.1f} s\n{log[-6000:]}"
        unspooled = await _write_spool(cluster.url, server.data_dir)
        rows, distinct = await _stored(cluster.url, room_id)
        print(f"run {run}: exit in {exits[-1]:.2f} s, {sent} readings, {unspooled} from the spool")
        assert rows == distinct == sent, (run, rows, distinct, sent)
    print("exit times (s):", ", ".join(f"{t:.2f}" for t in exits))
