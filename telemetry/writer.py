"""Batched, never-losing persistence of heart-rate readings (PostgreSQL or SQLite).

Readings are put in memory by the hot path and written by one owned task, a batch per
statement. When the database is unreachable the rows wait in memory and, past a limit
(or when a flush or close asks for durability), go to an append-only spool file that is
fsynced before the rows are reported durable. The spool is written to the database
first when it is reachable again, also by a later process. Every insert is
``ON CONFLICT DO NOTHING`` on (room, participant, seq, time), so writing a row twice —
after a crash between a commit and the removal of the spool — only costs a duplicate
the database ignores, never a loss. The row and its statements are in
``telemetry.rows``, the spool file's format in ``telemetry.spool``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import IO

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.shutdown import end_within

from .rows import PG_INSERT, SQLITE_INSERT, HeartRateRow, is_data_error, pg_arrays, sqlite_params
from .spool import append_spool, fsync_dir, read_spool, spool_line

__all__ = ["HeartRateRow", "HeartRateWriter"]

log = logging.getLogger(__name__)

# At close, how long the database may take the rows left before they are spooled (a
# round cancelled then gets runtime.shutdown.CANCEL_GRACE_S more): well inside the
# 10 s a service manager or `docker compose stop` waits before killing the server.
CLOSE_TIMEOUT_S = 3.0


def _describe(exc: BaseException) -> str:
    """The first line of an error, for one-line log messages."""
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"


class HeartRateWriter:
    """Batched, never-losing writer of heart-rate readings.

    ``put`` is for the event loop's thread (the data-channel handler) and only appends
    to memory. One task, started by ``start`` and stopped by ``close``, writes batches
    of up to ``batch_max`` rows every ``flush_interval`` seconds, or as soon as a batch
    is full. ``on_durable(rows)`` is called, from that task, once rows are committed or
    fsynced to the spool; it is called once per row (rows drained from the spool were
    reported when they were spooled). Rows the database refuses as data (a value out of
    range) are dropped, logged and counted as ``rejected``, never reported durable.

    While the database is unreachable the task retries every ``retry_interval``
    seconds; when more than ``memory_max_rows`` rows wait in memory, the oldest go to
    the spool, down to half the limit so that each fsync moves many rows. On
    PostgreSQL a batch (connect included) taking longer than ``statement_timeout``
    seconds counts as an outage too: a server that stops answering cannot hold the
    task. The spool at ``spool_path`` belongs to one writer at a time (a lock file next
    to it enforces that); a ``.draining`` file beside it is a spool being written.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        spool_path: Path,
        *,
        batch_max: int = 2000,
        flush_interval: float = 0.2,
        memory_max_rows: int = 100_000,
        retry_interval: float = 1.0,
        on_durable: Callable[[list[HeartRateRow]], None] | None = None,
        statement_timeout: float = 10.0,
    ) -> None:
        if batch_max < 1 or memory_max_rows < 1:
            raise ValueError("batch_max and memory_max_rows must be positive")
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._spool = spool_path
        self._draining = spool_path.with_name(spool_path.name + ".draining")
        self._lock_path = spool_path.with_name(spool_path.name + ".lock")
        self._batch_max = batch_max
        self._flush_interval = flush_interval
        self._memory_max = memory_max_rows
        self._retry_interval = retry_interval
        self._statement_timeout = statement_timeout
        # Public so that the owner can wire it after construction.
        self.on_durable = on_durable

        # Rows waiting, oldest first, with the monotonic time each was put (a second
        # deque rather than tuples: no allocation per reading). Rows leave from the
        # head only — to the database or to the spool — and only once durable, so
        # resolved + len(pending) == put_total, and "every row put before flush() was
        # called is durable" is "resolved >= put_total as it was then".
        self._pending: deque[HeartRateRow] = deque()
        self._put_at: deque[float] = deque()
        self._put_total = 0
        self._resolved = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

        self._wake = asyncio.Event()
        self._round_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._force = False
        self._closed = False
        self._lock_file: IO[bytes] | None = None
        self._db_ok = True
        self._next_retry = 0.0
        self._drain_offset = 0
        self._given_up: set[asyncio.Task[None]] = set()  # see close()

        self._written = 0
        self._duplicates = 0
        self._rejected = 0
        self._spooled = 0
        self._unspooled = 0
        self._spool_skipped = 0
        self._spool_errors = 0
        self._spool_failing = False
        self._batches = 0
        self._db_errors = 0
        self._lag = 0.0
        self._max_lag = 0.0

    @property
    def engine(self) -> AsyncEngine:
        """The database the readings go to."""
        return self._engine

    async def start(self) -> None:
        """Take the spool and start the writing task; a leftover spool is written first."""
        if self._closed:
            raise RuntimeError("heart-rate writer is closed")
        if self._task is not None:
            return
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        lock_file = self._lock_path.open("a+b")
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise RuntimeError(
                f"heart-rate spool {self._spool} is in use by another writer"
            ) from None
        self._lock_file = lock_file
        self._force = True
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="heart-rate writer")

    def put(self, row: HeartRateRow) -> None:
        """Queue one reading; O(1), no I/O, never raises for database trouble."""
        if self._closed:
            raise RuntimeError("heart-rate writer is closed")
        self._pending.append(row)
        self._put_at.append(time.monotonic())
        self._put_total += 1
        waiting = len(self._pending)
        # A full batch wakes the task; during an outage only a full memory does.
        limit = self._batch_max if self._db_ok else self._memory_max + 1
        if waiting >= limit:
            self._wake.set()

    async def flush(self) -> None:
        """Return once every row put before the call is durable (in the database or spool).

        The database is tried at once, even during an outage; when it is reachable the
        spool is written to it too. Rows that cannot reach it go to the spool.
        """
        if self._closed:
            return  # close() already made everything durable it could
        target = self._put_total
        if self._task is None or self._task.done():
            await self._round(force=True, need=target)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._force = True
        self._wake.set()
        await future

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the task and make what is left durable: stored if the database takes it
        within ``timeout`` seconds, spooled otherwise (written at the next start).

        Idempotent. A batch in flight gets the same time to finish. Nothing here waits on
        the database past ``timeout`` and a short grace, even when a driver holds on to
        the cancellation (``runtime.shutdown``): a stopping server must not hang on a
        database that went away.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        task, self._task = self._task, None
        try:
            stuck = False
            if task is not None:
                if self._busy:
                    self._wake.set()  # _closed makes the loop end after this round
                else:
                    task.cancel()
                stuck = not await self._bounded(task, deadline)
            if not stuck and time.monotonic() < deadline:
                final = asyncio.create_task(
                    self._round(force=True, need=self._put_total), name="heart-rate writer close"
                )
                await self._bounded(final, deadline)
            if self._pending:
                # The database did not take them in time: the spool keeps them.
                await self._spill(len(self._pending))
        finally:
            if self._pending:
                log.error(
                    "heart-rate writer closed with %d readings neither stored nor spooled",
                    len(self._pending),
                )
            for target, future in self._waiters:
                if not future.done():
                    if self._resolved >= target:
                        future.set_result(None)
                    else:
                        future.set_exception(RuntimeError("heart-rate writer closed"))
            self._waiters.clear()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None

    async def _bounded(self, task: asyncio.Task[None], deadline: float) -> bool:
        """Wait for ``task`` until ``deadline`` (then cancel it: ``end_within``).

        False when it did not end even then: it is given up (``_gave_up_on_me``) and
        close goes on without it, spooling what it held.
        """
        if not await end_within(task, deadline - time.monotonic()):
            log.error(
                "heart-rate writer: %s did not end when cancelled; its rows go to the spool",
                task.get_name(),
            )
            self._given_up.add(task)
            return False
        if time.monotonic() > deadline and task.cancelled():
            log.warning(
                "heart-rate writer: the database took too long at close; rows go to the spool"
            )
        elif not task.cancelled() and (exc := task.exception()) is not None:
            log.error("heart-rate writer: %s failed", task.get_name(), exc_info=exc)
        return True

    def _gave_up_on_me(self) -> bool:
        """Whether close went on without the task running this, which must then change
        nothing: close spooled the rows it held (a late insert of them is a duplicate
        the database ignores when the spool is written)."""
        return asyncio.current_task() in self._given_up

    def stats(self) -> dict[str, float | int]:
        """Counters since start; ``lag_s`` is put-to-commit of the oldest row in the last
        batch written from memory, ``max_lag_s`` the largest such delay."""
        return {
            "written": self._written,
            "duplicates_ignored": self._duplicates,
            "rejected": self._rejected,
            "spooled": self._spooled,
            "unspooled": self._unspooled,
            "spool_skipped": self._spool_skipped,
            "spool_errors": self._spool_errors,
            "pending": len(self._pending),
            "batches": self._batches,
            "db_errors": self._db_errors,
            "lag_s": self._lag,
            "max_lag_s": self._max_lag,
        }

    async def _run(self) -> None:
        while not self._closed:
            if not self._wake.is_set():
                if self._db_ok:
                    timeout = self._flush_interval
                else:
                    timeout = max(0.0, self._next_retry - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            self._wake.clear()
            force, self._force = self._force, False
            need = max((target for target, _ in self._waiters), default=0)
            self._busy = True
            try:
                await self._round(force=force, need=need)
            except Exception:
                # Not a database error (those are handled in the round): a bug or the
                # spool's disk. The rows stay in memory; try again later.
                log.exception("heart-rate writer round failed")
                self._db_ok = False
                self._next_retry = time.monotonic() + self._retry_interval
            finally:
                self._busy = False

    async def _round(self, *, force: bool, need: int) -> None:
        """One pass: the spool, then memory; during an outage, spill to the spool.

        ``force`` tries the database even before the retry time; ``need`` is how many
        rows must have left memory by the end (flush and close), spooled if necessary.
        """
        async with self._round_lock:
            if not self._db_ok:
                # First make room, so that a database that hangs on connect cannot let
                # memory grow past the limit while we wait for it.
                await self._spill(self._overflow())
            if self._db_ok or force or time.monotonic() >= self._next_retry:
                try:
                    await self._drain_spool()
                    await self._write_memory()
                except Exception as exc:
                    self._outage(exc)
                else:
                    if not self._db_ok:
                        log.warning("heart-rate database reachable again")
                    self._db_ok = True
            if not self._db_ok:
                await self._spill(max(self._overflow(), need - self._resolved))
            for target, future in self._waiters:
                if self._resolved >= target and not future.done():
                    future.set_result(None)
            self._waiters = [w for w in self._waiters if not w[1].done()]

    def _overflow(self) -> int:
        if len(self._pending) <= self._memory_max:
            return 0
        return len(self._pending) - self._memory_max // 2

    def _outage(self, exc: Exception) -> None:
        self._db_errors += 1
        self._next_retry = time.monotonic() + self._retry_interval
        if not self._db_ok:
            log.debug("heart-rate database still unreachable: %s", _describe(exc))
        elif isinstance(exc, sa_exc.SQLAlchemyError | OSError):
            log.warning(
                "heart-rate database unreachable (%s); retrying every %.2f s, spooling past"
                " %d rows to %s",
                _describe(exc),
                self._retry_interval,
                self._memory_max,
                self._spool,
            )
        else:  # not a database error: keep the rows and retry, but show where it came from
            log.error("heart-rate write failed unexpectedly; will retry", exc_info=exc)
        self._db_ok = False

    async def _write_memory(self) -> None:
        """Write the rows that were waiting when called, batch by batch, oldest first."""
        remaining = len(self._pending)
        while remaining > 0 and self._pending:
            size = min(remaining, self._batch_max, len(self._pending))
            batch = list(islice(self._pending, size))
            refused = await self._insert(batch)
            if self._gave_up_on_me():
                return
            now = time.monotonic()
            lag = now - self._put_at[0]
            # Only now do the rows leave memory: a failure above keeps them queued.
            for _ in range(size):
                self._pending.popleft()
                self._put_at.popleft()
            self._resolved += size
            remaining -= size
            self._lag = lag
            self._max_lag = max(self._max_lag, lag)
            if refused:
                refused_ids = {id(row) for row in refused}
                batch = [row for row in batch if id(row) not in refused_ids]
            self._durable(batch)

    async def _insert(self, rows: Sequence[HeartRateRow]) -> list[HeartRateRow]:
        """Insert in one statement; returns the rows refused as data errors.

        On a data error the batch is split in halves and each half tried alone, so one
        poisonous reading costs about 2·log2(batch) statements and never blocks the
        queue, while connection errors propagate and keep every row for a retry.
        """
        try:
            # A server that stops answering (rather than refusing) must not hold the
            # task: past the timeout it counts as an outage and rows can be spooled.
            async with (
                asyncio.timeout(self._statement_timeout if self._postgres else None),
                self._engine.begin() as conn,
            ):
                if self._postgres:
                    result = await conn.execute(PG_INSERT, pg_arrays(rows))
                else:
                    result = await conn.execute(SQLITE_INSERT, sqlite_params(rows))
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(rows) == 1:
                self._rejected += 1
                log.warning(
                    "heart-rate reading refused by the database and dropped: %s (%s)",
                    rows[0],
                    _describe(exc),
                )
                return list(rows)
            middle = len(rows) // 2
            return await self._insert(rows[:middle]) + await self._insert(rows[middle:])
        inserted = result.rowcount if result.rowcount >= 0 else len(rows)
        self._batches += 1
        self._written += inserted
        self._duplicates += len(rows) - inserted
        return []

    async def _spill(self, count: int) -> None:
        """Move the oldest ``count`` rows to the spool, fsynced, then report them durable."""
        count = min(count, len(self._pending))
        if count <= 0:
            return
        rows = list(islice(self._pending, count))
        data = "".join(spool_line(row) for row in rows).encode()
        try:
            await asyncio.to_thread(append_spool, self._spool, data)
        except OSError as exc:
            self._spool_errors += 1
            if not self._spool_failing:
                log.error(
                    "cannot write the heart-rate spool %s (%s); rows stay in memory",
                    self._spool,
                    _describe(exc),
                )
            self._spool_failing = True
            return
        if self._gave_up_on_me():
            return
        if self._spool_failing:
            log.warning("heart-rate spool %s writable again", self._spool)
            self._spool_failing = False
        for _ in range(count):
            self._pending.popleft()
            self._put_at.popleft()
        self._resolved += count
        self._spooled += count
        self._durable(rows)

    async def _drain_spool(self) -> None:
        """Write the spool to the database, oldest first, then remove it.

        The spool is first renamed to ``.draining`` (atomic), so rows spooled meanwhile
        go to a new file. The draining file is removed only after all its rows are
        committed: a crash in between makes the next run write them again, which the
        unique index turns into ignored duplicates.
        """
        while True:
            if not self._draining.exists():
                if not self._spool.exists():
                    return
                os.replace(self._spool, self._draining)
                await asyncio.to_thread(fsync_dir, self._spool.parent)
                self._drain_offset = 0
            while True:
                rows, offset, skipped = await asyncio.to_thread(
                    read_spool, self._draining, self._drain_offset, self._batch_max
                )
                self._spool_skipped += skipped
                if rows:
                    refused = await self._insert(rows)
                    if self._gave_up_on_me():
                        return  # the next start writes the file again
                    self._unspooled += len(rows) - len(refused)
                if offset == self._drain_offset:
                    break
                # Progress is kept for retries in this process only; a new process
                # starts the file again (duplicates are ignored).
                self._drain_offset = offset
            self._draining.unlink()
            await asyncio.to_thread(fsync_dir, self._spool.parent)
            self._drain_offset = 0
            log.info("heart-rate spool written to the database")

    def _durable(self, rows: list[HeartRateRow]) -> None:
        if self.on_durable is None or not rows:
            return
        try:
            self.on_durable(rows)
        except Exception:
            log.exception("heart-rate on_durable callback failed")
