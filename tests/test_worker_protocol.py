"""The typed worker protocol: every operation has its own argument and result model,
a request that does not fit its model is refused with the fields named, and a
result that does not fit is refused at the pool. A real worker ``Channel`` over a
Unix socket pair, in this process."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from sfu.server import SfuServer
from sfu.worker import Channel
from sfu.worker_protocol import (
    JOIN,
    LEAVE,
    MAX_FRAME_BYTES,
    OPERATIONS,
    PUBLISH,
    STATS,
    JoinArgs,
    OpName,
    ParticipantArgs,
    Response,
    RoomArgs,
    decode,
    request,
)


class Pool:
    """The pool's end of a worker's socket: raw request lines in, responses out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._ids = iter(range(1, 1_000_000))

    async def send(self, op: str, args: dict[str, Any]) -> Response:
        request_id = next(self._ids)
        frame = {"type": "request", "id": request_id, "op": op, "args": args}
        self.writer.write(json.dumps(frame).encode() + b"\n")
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            response = decode(line)
            if isinstance(response, Response) and response.id == request_id:
                return response


@pytest.fixture
async def worker() -> AsyncIterator[Pool]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_FRAME_BYTES)
    w_reader, w_writer = await asyncio.open_unix_connection(sock=theirs, limit=MAX_FRAME_BYTES)
    sfu = SfuServer(ice_servers=[])
    serving = asyncio.create_task(Channel(w_reader, w_writer, sfu).serve())
    yield Pool(reader, writer)
    writer.close()
    await asyncio.wait_for(serving, 10)
    await sfu.close()
    w_writer.close()


def test_every_operation_has_its_own_models_and_a_name_on_the_wire() -> None:
    assert set(OPERATIONS) == set(get_args(OpName))
    assert all(op.name == name for name, op in OPERATIONS.items())
    assert PUBLISH.args is not JOIN.args and STATS.result is not PUBLISH.result


def test_a_request_takes_only_its_own_operations_model() -> None:
    good = request(7, LEAVE, ParticipantArgs(room_id="r", participant_id="p"))
    assert (good.id, good.op, good.args) == (7, "leave", {"room_id": "r", "participant_id": "p"})
    with pytest.raises(TypeError, match="leave takes ParticipantArgs, not RoomArgs"):
        request(8, LEAVE, RoomArgs(room_id="r"))


def test_a_result_that_does_not_fit_is_refused_at_the_pool() -> None:
    with pytest.raises(ValidationError, match="producers"):
        PUBLISH.result_of(Response(id=1, ok=True, result={"answer": "v=0"}))
    stats = STATS.result_of(
        Response(id=2, ok=True, result={"counters": {"rooms": 1}, "event_loop": "asyncio"})
    )
    assert stats.counters == {"rooms": 1}


async def test_a_request_whose_arguments_do_not_fit_is_refused_with_the_fields_named(
    worker: Pool,
) -> None:
    missing = await worker.send("join", {"room_id": "r", "participant_id": "p"})
    assert (missing.ok, missing.code) == (False, "bad_request")
    assert "join" in missing.message and "JoinArgs" in missing.message
    assert "role" in missing.message and "gallery" in missing.message
    assert "Field required" in missing.message

    renamed = await worker.send("leave", {"room": "r", "participant_id": "p"})
    assert (renamed.ok, renamed.code) == (False, "bad_request")
    assert "room_id" in renamed.message and "room" in renamed.message
    assert "Extra inputs are not permitted" in renamed.message

    mistyped = await worker.send("set_gallery", {"room_id": "r", "enabled": {"not": "a bool"}})
    assert (mistyped.ok, mistyped.code) == (False, "bad_request")
    assert "enabled" in mistyped.message

    # Nothing ran: the worker holds no room, and still serves.
    stats = await worker.send("stats", {})
    assert stats.ok
    counters = STATS.result_of(stats).counters
    assert counters["rooms"] == 0 and counters["pipe_links"] == 0


async def test_a_well_formed_request_runs_and_answers_its_result_model(worker: Pool) -> None:
    args = JoinArgs(room_id="r", participant_id="p", role="host", gallery=False)
    joined = await worker.send("join", args.model_dump(mode="json"))
    assert joined.ok and JOIN.result_of(joined) == JOIN.result()
    again = await worker.send("join", args.model_dump(mode="json"))
    assert (again.ok, again.code) == (False, "already_joined")
    stats = STATS.result_of(await worker.send("stats", {}))
    assert stats.counters["rooms"] == 1 and stats.counters["participants"] == 1
    assert stats.event_loop == "asyncio"
    left = await worker.send("leave", {"room_id": "r", "participant_id": "p"})
    assert left.ok
    assert STATS.result_of(await worker.send("stats", {})).counters["rooms"] == 0
