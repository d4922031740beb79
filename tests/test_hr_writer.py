"""The heart-rate writer on real databases: batches, idempotency, outages, crashes.

SQLite in a temporary file and the shared PostgreSQL for the ordinary cases; a private
PostgreSQL cluster (tests/pg_cluster.py) for the ones that stop the server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage import migrations
from storage.store import create_engine
from telemetry.history import HeartRateHistory
from telemetry.writer import HeartRateRow, HeartRateWriter
from tests.conftest import ROOT, free_port
from tests.pg_cluster import PgCluster, running_cluster

BASE = 1_700_000_040.0  # a minute boundary
ROOM = "room1"


def reading(participant: str, seq: int, room: str = ROOM) -> HeartRateRow:
    """A reading four per second, at whole milliseconds like a real device's."""
    return HeartRateRow(
        time=BASE + seq * 0.25 + 0.001,
        room_id=room,
        participant_id=participant,
        seq=seq,
        bpm=60 + seq % 120,
        rr_ms=(812.5, 790.0) if seq % 2 else (),
    )


def make_rows(n: int, participants: int = 10) -> list[HeartRateRow]:
    return [reading(f"p{i % participants}", i // participants) for i in range(n)]


def spool_files(spool: Path) -> list[Path]:
    return [p for p in (spool, spool.with_name(spool.name + ".draining")) if p.exists()]


async def stored_keys(engine: AsyncEngine, room: str = ROOM) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT participant_id, seq FROM heart_rate WHERE room_id = :r"), {"r": room}
        )
        return [(r[0], int(r[1])) for r in result]


class Acks:
    """An ``on_durable`` that remembers what it was told."""

    def __init__(self) -> None:
        self.rows: list[HeartRateRow] = []

    def __call__(self, rows: list[HeartRateRow]) -> None:
        self.rows.extend(rows)

    def keys(self) -> list[tuple[str, int]]:
        return [(r.participant_id, r.seq) for r in self.rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'pulseroom.db'}"
    url: str = request.getfixturevalue("postgres_url")  # the shared server, a fresh database
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrations.migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    yield from running_cluster()


async def fresh_database(cluster: PgCluster) -> str:
    """A new, migrated database on the private cluster; its URL."""
    name = f"hr_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(cluster.url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    url = cluster.url.rsplit("/", 1)[0] + "/" + name
    engine = create_engine(url)
    await migrations.migrate(engine)
    await engine.dispose()
    return url


def count_inserts(engine: AsyncEngine) -> list[int]:
    """A list that grows by one per INSERT INTO heart_rate sent to the database."""
    sent: list[int] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*args: Any) -> None:
        if args[2].lstrip().startswith("INSERT INTO heart_rate"):
            sent.append(1)

    return sent


async def test_rows_go_in_one_statement_per_batch(engine: AsyncEngine, tmp_path: Path) -> None:
    acks = Acks()
    inserts = count_inserts(engine)
    writer = HeartRateWriter(engine, tmp_path / "spool.jsonl", on_durable=acks)
    await writer.start()
    rows = make_rows(5000)
    for row in rows:
        writer.put(row)
    await writer.flush()
    stats = writer.stats()
    await writer.close()

    assert len(inserts) == 3  # 2000 + 2000 + 1000
    assert stats["batches"] == 3 and stats["written"] == 5000
    assert stats["pending"] == 0 and stats["spooled"] == 0 and stats["db_errors"] == 0
    assert 0 < stats["lag_s"] <= stats["max_lag_s"]
    assert await HeartRateHistory(engine).count(ROOM) == 5000
    assert sorted(acks.keys()) == sorted((r.participant_id, r.seq) for r in rows)
    assert spool_files(tmp_path / "spool.jsonl") == []


async def test_throughput_in_batches(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = HeartRateWriter(engine, tmp_path / "spool.jsonl")
    await writer.start()
    rows = make_rows(40_000, participants=40)
    started = time.perf_counter()
    for row in rows:
        writer.put(row)
    await writer.flush()
    elapsed = time.perf_counter() - started
    stats = writer.stats()
    await writer.close()
    rate = len(rows) / elapsed
    print(f"{engine.dialect.name}: {rate:,.0f} rows/s in {stats['batches']} batches")
    assert stats["written"] == len(rows) and stats["batches"] == 20
    assert rate > 5_000  # ~60k/s on PostgreSQL, ~100k/s on SQLite here


async def test_a_reading_sent_twice_is_stored_once(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = HeartRateWriter(engine, tmp_path / "spool.jsonl")
    await writer.start()
    rows = make_rows(1000)
    for row in rows:
        writer.put(row)
    await writer.flush()
    for row in [*rows, *make_rows(1010)[1000:]]:  # re-sent, plus 10 new
        writer.put(row)
    writer.put(rows[0])  # twice in the same batch
    await writer.flush()
    stats = writer.stats()
    await writer.close()
    assert await HeartRateHistory(engine).count(ROOM) == 1010
    assert stats["written"] == 1010 and stats["duplicates_ignored"] == 1001


async def test_a_poisonous_row_is_dropped_alone(engine: AsyncEngine, tmp_path: Path) -> None:
    acks = Acks()
    writer = HeartRateWriter(engine, tmp_path / "spool.jsonl", on_durable=acks)
    await writer.start()
    rows = make_rows(1000)
    poison = [reading("bad", 2**70)]  # no 64-bit integer can hold it
    if engine.dialect.name == "postgresql":
        poison.append(
            replace(reading("bad", 1), bpm=40_000)
        )  # bpm is SMALLINT; SQLite doesn't care
    for row in rows[:300] + poison + rows[300:]:
        writer.put(row)
    await writer.flush()
    for row in make_rows(1100)[1000:]:  # the queue still moves
        writer.put(row)
    await writer.flush()
    stats = writer.stats()
    await writer.close()
    assert stats["rejected"] == len(poison)
    assert await HeartRateHistory(engine).count(ROOM) == 1100
    assert len(acks.rows) == 1100 and all(r.participant_id != "bad" for r in acks.rows)


async def test_spool_has_one_writer(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    first = HeartRateWriter(engine, tmp_path / "spool.jsonl")
    second = HeartRateWriter(engine, tmp_path / "spool.jsonl")
    await first.start()
    with pytest.raises(RuntimeError, match="in use"):
        await second.start()
    await first.close()
    await first.close()  # idempotent
    await second.start()  # the lock went with the first writer
    await second.close()
    await engine.dispose()


async def test_leftover_spool_is_drained_duplicates_and_torn_tail_tolerated(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """What a crash leaves: a ``.draining`` file partly written already, a newer spool
    whose last line was torn mid-write (never reported durable, so not expected)."""
    rows = make_rows(300)
    spool = tmp_path / "spool.jsonl"
    writer = HeartRateWriter(engine, spool)
    await writer.start()
    for row in rows[:100]:  # the crash came after these were committed
        writer.put(row)
    await writer.close()

    def lines(part: list[HeartRateRow]) -> str:
        return "".join(
            json.dumps(
                {
                    "time": r.time,
                    "room_id": r.room_id,
                    "participant_id": r.participant_id,
                    "seq": r.seq,
                    "bpm": r.bpm,
                    "rr_ms": list(r.rr_ms),
                    "energy_kj": r.energy_kj,
                    "contact": r.contact,
                }
            )
            + "\n"
            for r in part
        )

    spool.with_name("spool.jsonl.draining").write_text(lines(rows[:200]))
    spool.write_text(lines(rows[200:]) + '{"time": 1700000')

    acks = Acks()
    writer = HeartRateWriter(engine, spool, on_durable=acks)
    await writer.start()
    await writer.flush()
    stats = writer.stats()
    await writer.close()
    assert sorted(await stored_keys(engine)) == sorted((r.participant_id, r.seq) for r in rows)
    assert stats["unspooled"] == 300 and stats["duplicates_ignored"] == 100
    assert acks.rows == []  # reported by the process that spooled them
    assert spool_files(spool) == []


async def test_database_restart_loses_nothing_and_stores_each_row_once(
    cluster: PgCluster, tmp_path: Path
) -> None:
    url = await fresh_database(cluster)
    engine = create_engine(url)
    spool = tmp_path / "spool.jsonl"
    acks = Acks()
    writer = HeartRateWriter(
        engine,
        spool,
        batch_max=500,
        flush_interval=0.05,
        memory_max_rows=200,
        retry_interval=0.2,
        on_durable=acks,
    )
    await writer.start()
    sent: list[HeartRateRow] = []
    participants = 8

    async def produce(seconds: float, per_second: int) -> None:
        tick = 0.01
        per_tick = round(per_second * tick)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(per_tick):
                n = len(sent)
                row = reading(f"p{n % participants}", n // participants)
                sent.append(row)
                writer.put(row)
            await asyncio.sleep(tick)

    producer = asyncio.create_task(produce(6.0, 200))
    await asyncio.sleep(1.5)
    await asyncio.to_thread(cluster.stop, "immediate")
    stopped_at = len(sent)
    try:
        await asyncio.sleep(2.0)
    finally:
        restarted = time.monotonic()
        await asyncio.to_thread(cluster.start)
    restarted_at = len(sent)
    for _ in range(1000):  # at most 10 s
        if not spool_files(spool) and writer.stats()["pending"] <= 100:
            break
        await asyncio.sleep(0.01)
    recovered = time.monotonic() - restarted
    await producer
    await writer.flush()
    stats = writer.stats()
    await writer.close()

    keys = [(r.participant_id, r.seq) for r in sent]
    async with engine.connect() as conn:
        total, distinct = (
            await conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT (participant_id, seq)) FROM heart_rate"
                    " WHERE room_id = :r"
                ),
                {"r": ROOM},
            )
        ).one()
    stored = await stored_keys(engine)
    await engine.dispose()
    print(
        f"sent {len(sent)} ({restarted_at - stopped_at} during the outage), spooled"
        f" {stats['spooled']}, db errors {stats['db_errors']}, duplicates ignored"
        f" {stats['duplicates_ignored']}, spool drained {recovered:.2f} s after pg_ctl start began,"
        f" max lag {stats['max_lag_s']:.2f} s"
    )
    assert total == distinct == len(sent) == len(set(keys))
    assert set(stored) == set(keys)
    assert stats["spooled"] > 0 and stats["unspooled"] == stats["spooled"]
    assert stats["db_errors"] >= 1 and stats["rejected"] == 0
    assert spool_files(spool) == []
    assert len(acks.rows) == len(sent) and set(acks.keys()) == set(keys)


async def test_rows_closed_while_the_database_is_down_are_written_by_the_next_writer(
    cluster: PgCluster, tmp_path: Path
) -> None:
    url = await fresh_database(cluster)
    engine = create_engine(url)
    spool = tmp_path / "spool.jsonl"
    rows = make_rows(150)
    acks = Acks()
    cluster.stop("immediate")
    try:
        writer = HeartRateWriter(engine, spool, retry_interval=30.0, on_durable=acks)
        await writer.start()
        for row in rows[:100]:
            writer.put(row)
        started = time.monotonic()
        await writer.flush()  # the database is down: flush makes them durable in the spool
        assert time.monotonic() - started < 5
        assert writer.stats()["spooled"] == 100 and len(acks.rows) == 100
        for row in rows[100:]:
            writer.put(row)
        await writer.close()
        assert writer.stats()["spooled"] == 150 and len(acks.rows) == 150
        # (a drain attempt renamed the first 100 to .draining; the last 50 are in a new spool)
        assert sum(len(p.read_text().splitlines()) for p in spool_files(spool)) == 150
    finally:
        cluster.start()

    # A new process: the spool is written first.
    writer = HeartRateWriter(engine, spool)
    await writer.start()
    await writer.flush()
    stats = writer.stats()
    await writer.close()
    assert stats["unspooled"] == 150 and stats["written"] == 150
    assert sorted(await stored_keys(engine)) == sorted((r.participant_id, r.seq) for r in rows)
    assert spool_files(spool) == []
    await engine.dispose()


CHILD = """
import asyncio, sys
from pathlib import Path
from storage.store import create_engine
from telemetry.writer import HeartRateRow, HeartRateWriter

def durable(rows):
    sys.stdout.write(" ".join(str(r.seq) for r in rows) + "\\n")
    sys.stdout.flush()

async def main(url, spool):
    writer = HeartRateWriter(
        create_engine(url), Path(spool), batch_max=100, flush_interval=0.02,
        memory_max_rows=50, retry_interval=0.05, on_durable=durable,
    )
    await writer.start()
    seq = 0
    while True:
        for _ in range(10):
            writer.put(HeartRateRow(1.7e9 + seq / 4, "room1", "p", seq, 60 + seq % 100))
            seq += 1
        await asyncio.sleep(0.005)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("database", ["up", "down"])
async def test_rows_reported_durable_survive_a_killed_process(
    cluster: PgCluster, tmp_path: Path, database: str
) -> None:
    """SIGKILL a writer's process once it has reported 500 rows durable (committed when
    the database is up, fsynced to the spool when it is down): a new writer finds them
    all."""
    url = await fresh_database(cluster)
    child_url = (
        url if database == "up" else f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    )
    spool = tmp_path / "spool.jsonl"
    # A plain Popen, waited on by pid in this test: once (1 run in ~5 of the whole suite)
    # asyncio's child watcher lost this child's exit status and reported 255.
    child = subprocess.Popen(  # noqa: ASYNC220 (started once; waited on in a thread)
        [sys.executable, "-c", CHILD, child_url, str(spool)], cwd=ROOT, stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    out = child.stdout
    acked: set[int] = set()
    try:
        async with asyncio.timeout(30):
            while len(acked) < 500:
                line = await asyncio.to_thread(out.readline)
                assert line, "the writer process ended by itself"
                acked.update(int(s) for s in line.split())
            child.kill()  # SIGKILL: no close, no final flush
            # What it printed before dying was reported durable too.
            acked.update(int(s) for s in (await asyncio.to_thread(out.read)).split())
    finally:
        if child.poll() is None:
            child.kill()
        await asyncio.to_thread(child.wait)
        out.close()
    assert child.returncode == -9 and len(acked) >= 500

    engine = create_engine(url)
    writer = HeartRateWriter(engine, spool)
    await writer.start()
    await writer.flush()
    stats = writer.stats()
    await writer.close()
    stored = {seq for _, seq in await stored_keys(engine)}
    await engine.dispose()
    assert acked <= stored
    if database == "down":
        assert stats["unspooled"] >= len(acked)
    assert spool_files(spool) == []


async def test_a_server_that_stops_answering_does_not_hold_the_writer(tmp_path: Path) -> None:
    """A listening socket that never answers: connects hang, the statement timeout turns
    that into an outage, and the rows go to the spool."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x")
        acks = Acks()
        writer = HeartRateWriter(
            engine,
            tmp_path / "spool.jsonl",
            memory_max_rows=50,
            statement_timeout=0.3,
            retry_interval=0.1,
            on_durable=acks,
        )
        await writer.start()
        for row in make_rows(200):
            writer.put(row)
        started = time.monotonic()
        await writer.flush()
        elapsed = time.monotonic() - started
        await writer.close()
        await engine.dispose()
    assert elapsed < 2.0
    assert writer.stats()["spooled"] == 200 and len(acks.rows) == 200
    assert writer.stats()["db_errors"] >= 1
