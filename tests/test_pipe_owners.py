"""Who owns a pipe's end: its room, over a link its server owns. Closing a room, losing
a link or ending a pipe closes each end once, in this process with real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sfu.link_ends import socket_pair
from sfu.pipe import Link, PipeProducer
from sfu.server import SfuServer
from tests.test_pipe import Subscriber, track_params


class Counted(Subscriber):
    """A subscriber that counts how often it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


@dataclass
class Worker:
    """A worker's SfuServer holding link 1 to another worker (whose end is ``peer``)."""

    sfu: SfuServer
    link: Link
    peer: socket.socket


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    sfu = SfuServer(ice_servers=[])
    ours, peer = socket_pair()
    link = sfu.links.add_link(1, 1, ours)
    for room_id in ("a", "b"):
        sfu.room(room_id)
    yield Worker(sfu, link, peer)
    await sfu.close()
    peer.close()


@dataclass
class Held:
    """A copy of a track held in a room, and its one viewer."""

    copy: PipeProducer
    viewer: Counted

    @property
    def closed(self) -> bool:
        return self.copy.closed

    @property
    def closes(self) -> int:
        """How often its viewer was closed (once, when the copy closed)."""
        return self.viewer.closes


async def held(sfu: SfuServer, room_id: str, pipe_id: int, owner: str) -> Held:
    """A copy of ``owner``'s video held in ``room_id`` over link 1, with one viewer."""
    params = track_params(f"{owner}:video", "video")
    await sfu.pipe_in(room_id, 1, pipe_id, owner, "participant", params)
    producer = sfu.rooms[room_id].remote[owner].producers["video"]
    assert isinstance(producer, PipeProducer)
    viewer = Counted()
    producer.consumers.append(viewer)  # type: ignore[arg-type]
    return Held(producer, viewer)


async def test_closing_a_room_closes_its_pipes_once(worker: Worker) -> None:
    sfu, link = worker.sfu, worker.link
    first, second = await held(sfu, "a", 7, "ann"), await held(sfu, "a", 8, "bob")
    other = await held(sfu, "b", 9, "cat")
    viewers = [first.viewer, second.viewer]
    await sfu.pipe_in("a", 1, 7, "ann", "participant", track_params("ann:video", "video"))
    assert sfu.rooms["a"].remote["ann"].producers["video"] is first.copy, "idempotent"

    await sfu.close_room("a")
    assert first.closed and second.closed and not other.closed
    assert [v.closes for v in viewers] == [1, 1]
    assert set(link.incoming) == {9}, "the link routes only what is still held"
    # The pool's pipe_close and the link's loss come after: nothing is closed twice.
    await sfu.pipe_close("a", 1, 7)
    await sfu.unlink(1)
    assert [v.closes for v in viewers] == [1, 1]
    assert other.closed and other.closes == 1 and "cat" not in sfu.rooms["b"].remote


async def test_a_lost_link_closes_the_pipes_on_it_in_every_room(worker: Worker) -> None:
    sfu = worker.sfu
    copies = [await held(sfu, "a", 7, "ann"), await held(sfu, "b", 8, "bob")]
    ours, theirs = socket_pair()
    sfu.links.add_link(2, 2, ours)
    await sfu.pipe_in("b", 2, 20, "dan", "participant", track_params("dan:audio", "audio"))
    assert sfu.links.count() == 2

    await sfu.unlink(1)  # the worker at the other end died
    assert all(c.closed and c.closes == 1 for c in copies)
    assert "ann" not in sfu.rooms["a"].remote and "bob" not in sfu.rooms["b"].remote
    assert "dan" in sfu.rooms["b"].remote, "a pipe on another link stays"
    assert sfu.links.count() == 1
    await sfu.unlink(1)  # idempotent
    theirs.close()


async def test_a_pipe_ends_once_at_the_room_that_holds_it(worker: Worker) -> None:
    sfu, link = worker.sfu, worker.link
    copy = await held(sfu, "a", 7, "ann")
    await sfu.pipe_close("b", 1, 7)  # another room: not its pipe
    assert not copy.closed
    await sfu.pipe_close("a", 1, 7)
    await sfu.pipe_close("a", 1, 7)
    assert copy.closed and copy.closes == 1 and 7 not in link.incoming
    assert "ann" not in sfu.rooms["a"].remote
    await sfu.pipe_close("gone", 1, 7)  # a room this worker no longer holds: nothing to do


async def test_pipes_are_refused_where_their_owner_is_missing(worker: Worker) -> None:
    sfu = worker.sfu
    params = track_params("ann:video", "video")
    with pytest.raises(Exception, match="no media session on this worker"):
        await sfu.pipe_in("nowhere", 1, 7, "ann", "participant", params)
    with pytest.raises(Exception, match="no track ann:video"):
        await sfu.pipe_out("a", 1, 7, "ann", "ann:video")
    room = sfu.rooms["a"]
    await room.close()
    with pytest.raises(Exception, match="this class has ended"):
        room.pipe_in(worker.link, 7, "ann", "participant", params)


async def test_closing_the_server_closes_rooms_then_links(worker: Worker) -> None:
    sfu, link = worker.sfu, worker.link
    copy = await held(sfu, "b", 8, "bob")
    await sfu.close()
    assert copy.closed and copy.closes == 1 and sfu.links.count() == 0
    assert sfu.rooms == {}
    with pytest.raises(OSError):
        link.send(b"x")  # its socket is closed
    await sfu.close()  # idempotent


def running(name: str) -> list[asyncio.Task[object]]:
    """Tasks still running a coroutine called ``name``."""
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and t.get_coro().__name__ == name  # type: ignore[union-attr]
    ]


async def test_owners_await_the_tasks_a_close_cancelled(worker: Worker) -> None:
    """A layered copy measures its layers in a task, a link sends estimates in tasks:
    once their owner's close returns, none of those runs on."""
    sfu, link = worker.sfu, worker.link
    params = track_params("ann:video", "video").model_copy(update={"rids": ["q", "h"]})
    await sfu.pipe_in("a", 1, 7, "ann", "participant", params)
    await sfu.pipe_in("b", 1, 8, "bob", "participant", params.model_copy(
        update={"producer_id": "bob:video"}
    ))  # fmt: skip
    assert len(running("_measure_layers")) == 2

    await sfu.pipe_close("a", 1, 7)
    assert len(running("_measure_layers")) == 1, "the closed copy's task has ended"

    async def estimate() -> None:
        await asyncio.sleep(60)

    link.spawn(estimate())
    assert running("estimate")
    await sfu.unlink(1)  # the room's copy on it, then the link and its task
    assert running("_measure_layers") == [] and running("estimate") == []


async def test_a_failing_link_ends_its_pipes_through_its_owner(worker: Worker) -> None:
    sfu, link = worker.sfu, worker.link
    copy = await held(sfu, "a", 7, "ann")
    assert link.on_failed is not None
    link.on_failed(link)  # what its reader does when the socket fails
    assert sfu.links.count() == 0, "no longer routed, at once"
    await asyncio.wait_for(sfu.links.close(), 5)  # awaits the pipes' end
    assert copy.closed and copy.closes == 1 and "ann" not in sfu.rooms["a"].remote
