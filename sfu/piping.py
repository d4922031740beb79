"""The pool's side of pipes between workers (sfu/pipe.py), as mediasoup's pipeToRouter
sets up a pair of pipe transports: links between two worker processes, made on first
use and handed to both, and each split class's pipes kept to exactly what its members
need (sfu/placement.py says which), one update at a time per class.

Owned by the ``WorkerPool``, which it reaches through the small ``PoolView``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from typing import Protocol

from .backend import SfuError
from .link_ends import send_link, socket_pair
from .placement import ClassPlan, Pipe
from .worker_protocol import (
    PIPE_CLOSE,
    PIPE_IN,
    PIPE_OUT,
    SET_SPLIT,
    A,
    Op,
    PipeCloseArgs,
    PipeInArgs,
    PipeOutArgs,
    R,
    SetSplitArgs,
)

logger = logging.getLogger(__name__)


class PoolView(Protocol):
    """What piping needs of its pool."""

    async def call_worker(self, index: int, op: Op[A, R], args: A) -> R:
        """Run an operation on worker ``index``."""

    def link_channel(self, index: int) -> socket.socket:
        """Where worker ``index`` takes its ends of links."""

    def class_plan(self, room_id: str) -> ClassPlan | None:
        """The class as the pool places it now (None: it ended)."""


class Piping:
    """Links between the pool's workers and the pipes of its split classes."""

    def __init__(self, pool: PoolView) -> None:
        self._pool = pool
        self._links: dict[frozenset[int], int] = {}  # worker pair -> link id
        self._syncing: dict[str, asyncio.Lock] = {}  # one pipe update at a time per class
        self._link_ids = itertools.count(1)
        self._pipe_ids = itertools.count(1)

    def link(self, a: int, b: int) -> int:
        """The link between two workers, made (and handed to both) on first use."""
        pair = frozenset((a, b))
        link_id = self._links.get(pair)
        if link_id is None:
            link_id = next(self._link_ids)
            end_a, end_b = socket_pair()
            try:
                send_link(self._pool.link_channel(a), link_id, b, end_a)
                send_link(self._pool.link_channel(b), link_id, a, end_b)
            except OSError as exc:
                raise SfuError("media_failed", f"no link between media workers: {exc}") from None
            finally:
                end_a.close()  # the workers hold their own copies now
                end_b.close()
            self._links[pair] = link_id
        return link_id

    def drop_worker(self, index: int) -> list[tuple[int, int]]:
        """Forget the links of a worker that died: ``(other worker, link id)`` each,
        for the other ends to be told."""
        dropped = []
        for pair in [pair for pair in self._links if index in pair]:
            link_id = self._links.pop(pair)
            dropped += [(other, link_id) for other in pair - {index}]
        return dropped

    def forget(self, room_id: str) -> None:
        """A class ended: its update lock goes."""
        self._syncing.pop(room_id, None)

    async def sync(self, room_id: str) -> None:
        """Make a class's workers hold exactly the pipes its members need now."""
        lock = self._syncing.setdefault(room_id, asyncio.Lock())
        async with lock:
            plan = self._pool.class_plan(room_id)
            if plan is None:
                return
            workers = plan.workers()
            split = len(workers) > 1
            for index in sorted(workers | plan.split_workers):
                want = split and index in workers
                if want != (index in plan.split_workers):
                    (plan.split_workers.add if want else plan.split_workers.discard)(index)
                    with contextlib.suppress(SfuError):
                        await self._pool.call_worker(
                            index, SET_SPLIT, SetSplitArgs(room_id=room_id, split=want)
                        )
            wanted = plan.wanted_pipes()
            gone = [plan.pipes.pop(key) for key in list(plan.pipes) if key not in wanted]
            new = [key for key in wanted if key not in plan.pipes]
            await self.close_pipes(room_id, gone)
            await asyncio.gather(*(self._open_pipe(plan, *key) for key in new))

    async def _open_pipe(self, plan: ClassPlan, track_id: str, destination: int) -> None:
        entry = plan.tracks.get(track_id)
        owner = plan.members.get(entry[0]) if entry is not None else None
        if entry is None or owner is None:
            return  # its publisher left while the update ran
        owner_id, track = entry
        try:
            link_id = self.link(owner.worker, destination)
        except SfuError as exc:
            logger.error("class %s: cannot pipe %s: %s", plan.room_id, track_id, exc.message)
            return
        pipe = Pipe(next(self._pipe_ids), link_id, owner.worker, destination)
        plan.pipes[(track_id, destination)] = pipe
        try:
            # The receiving end first: packets for a pipe nobody holds yet are dropped.
            await self._pool.call_worker(
                destination, PIPE_IN, PipeInArgs(
                    room_id=plan.room_id, link_id=link_id, pipe_id=pipe.pipe_id,
                    owner_id=owner_id, owner_role=owner.role, track=track,
                ),
            )  # fmt: skip
            await self._pool.call_worker(
                owner.worker, PIPE_OUT, PipeOutArgs(
                    room_id=plan.room_id, link_id=link_id, pipe_id=pipe.pipe_id,
                    owner_id=owner_id, producer_id=track_id,
                ),
            )  # fmt: skip
        except SfuError as exc:
            # Someone left meanwhile: the next update (their leave's) settles it.
            logger.info("class %s: pipe for %s not set up: %s", plan.room_id, track_id, exc)
            if plan.pipes.get((track_id, destination)) is pipe:
                del plan.pipes[(track_id, destination)]
            await self._close_pipe(plan.room_id, pipe)

    async def close_pipes(self, room_id: str, pipes: list[Pipe]) -> None:
        """End pipes of a class at both their ends."""
        await asyncio.gather(*(self._close_pipe(room_id, pipe) for pipe in pipes))

    async def _close_pipe(self, room_id: str, pipe: Pipe) -> None:
        for index in (pipe.origin, pipe.destination):
            with contextlib.suppress(SfuError):
                await self._pool.call_worker(
                    index, PIPE_CLOSE,
                    PipeCloseArgs(room_id=room_id, link_id=pipe.link_id, pipe_id=pipe.pipe_id),
                )  # fmt: skip
