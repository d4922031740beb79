"""Structured logs: a real server and a real SFU worker in JSON mode, every line parsed;
the formatters and the context variables on their own."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pulseroom.settings import ConfigError, load_settings
from runtime.logs import (
    CLASS_ID,
    PARTICIPANT_ID,
    configure_logging,
    log_context,
    set_log_context,
)
from tests.conftest import ROOT, RunningServer, start_server, stop_server
from tests.sio_client import Client
from tests.waiting import until


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object (a line that is not one fails the test)."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        for key in ("time", "level", "logger", "message", "pid"):
            assert key in record, f"line {number} has no {key}: {line!r}"
        records.append(record)
    return records


async def test_server_logs_json_with_class_and_participant(tmp_path: Path) -> None:
    """PULSEROOM_LOG_FORMAT=json: join, chat and leave; each line of output is JSON and the
    join and leave lines name the class and the participant."""
    server = start_server(tmp_path, PULSEROOM_LOG_FORMAT="json")
    try:
        room = server.create_room("Logged class")
        room_id = str(room["room"]["id"])  # type: ignore[index]
        client = await Client(server.url).connect()
        try:
            ack = await client.join(str(room["join_link"]), "Ann")
            assert ack["ok"], ack
            assert (await client.call("chat", {"v": 1, "text": "hello"}))["ok"]
            assert (await client.call("leave", {"v": 1}))["ok"]
        finally:
            await client.close()
        participant_id = ack["you"]["id"]
    finally:
        stop_server(server)

    records = json_lines(server.log())
    assert any("PulseRoom on" in r["message"] for r in records)  # the banner too
    joined = [r for r in records if r["logger"] == "signaling.server" and "joined" in r["message"]]
    assert len(joined) == 1, records
    line = joined[0]
    assert line["class_id"] == room_id
    assert line["participant_id"] == participant_id
    assert line["role"] == "participant"  # an extra= field
    assert line["level"] == "INFO" and line["process"] == "server"
    assert line["time"].endswith("Z") and "T" in line["time"]
    left = [r for r in records if r["logger"] == "signaling.server" and "left" in r["message"]]
    assert [(r["class_id"], r["participant_id"]) for r in left] == [(room_id, participant_id)]
    access = [r for r in records if r["logger"] == "aiohttp.access"]
    assert any(r.get("response_status") == 201 for r in access)  # POST /api/rooms


@pytest.mark.shared_server  # the default text format; its own class's ids are looked for
async def test_text_logs_carry_the_ids_too(server: RunningServer) -> None:
    """The default text format appends [class=… participant=…] to lines about someone."""
    room = server.create_room()
    client = await Client(server.url).connect()
    try:
        ack = await client.join(str(room["join_link"]), "Ben")
    finally:
        await client.close()
    room_id, participant_id = room["room"]["id"], ack["you"]["id"]  # type: ignore[index]
    wanted = f"[class={room_id} participant={participant_id}]"
    await until(  # the disconnect's "left" line, on a loaded machine too
        lambda: any("left" in line and wanted in line for line in server.log().splitlines()),
        10,
        "the left line",
    )
    lines = [line for line in server.log().splitlines() if wanted in line]
    assert any("joined" in line for line in lines), server.log()[-2000:]
    assert any("left" in line for line in lines), server.log()[-2000:]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_worker_logs_json_with_the_class_of_the_request() -> None:
    """An SFU worker in JSON mode: a failing operation's record names its class (not its
    participant, on a join) and carries its traceback, a malformed frame is logged, and
    nothing else is printed."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    process = subprocess.Popen(
        [sys.executable, "-m", "sfu.worker", "--fd", str(child.fileno()), "--log-format", "json"],
        cwd=ROOT,
        pass_fds=[child.fileno()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.close()
    reader = parent.makefile("rb")
    try:
        # A join without its role: arguments that do not fit the operation's model (a
        # pool and worker out of step), refused and logged with the validation error.
        request = {"type": "request", "id": 1, "op": "join", "args": {"room_id": "room42"}}
        parent.sendall(json.dumps(request).encode() + b"\n")
        response = json.loads(reader.readline())
        assert response["id"] == 1 and response["ok"] is False
        assert response["code"] == "bad_request" and "role" in response["message"]
        parent.sendall(b"not a frame\n")
        request = {"type": "request", "id": 2, "op": "stats", "args": {}}
        parent.sendall(json.dumps(request).encode() + b"\n")
        assert json.loads(reader.readline())["ok"] is True  # still serving
    finally:
        reader.close()
        parent.close()  # the worker exits when its socket closes
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert stdout == b""
    records = json_lines(stderr.decode())
    failed = [r for r in records if "worker operation join refused" in r["message"]]
    assert len(failed) == 1, records
    assert failed[0]["class_id"] == "room42"
    assert "participant_id" not in failed[0]
    assert failed[0]["level"] == "ERROR" and failed[0]["process"] == "sfu-worker"
    assert "ValidationError" in failed[0]["exception"]
    assert any("unreadable frame" in r["message"] for r in records)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger configured into a buffer; restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_json_formatter_fields_context_and_exceptions(captured: io.StringIO) -> None:
    """Context ids, explicit ids winning over them, extra fields, odd values, tracebacks."""
    configure_logging("INFO", "json", stream=captured)
    log = logging.getLogger("pulseroom.test")
    log.info("no context")
    with log_context(class_id="c1", participant_id="p1"):
        log.info("in context %d", 7, extra={"path": Path("/x"), "count": 3})
        log.info("explicit", extra={"participant_id": "p2"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.debug("below the level")
    records = json_lines(captured.getvalue())
    assert [r["message"] for r in records] == ["no context", "in context 7", "explicit", "failed"]
    assert "class_id" not in records[0] and "participant_id" not in records[0]
    assert records[1]["class_id"] == "c1" and records[1]["participant_id"] == "p1"
    assert records[1]["path"] == "/x" and records[1]["count"] == 3
    assert records[2]["class_id"] == "c1" and records[2]["participant_id"] == "p2"
    assert "ValueError: boom" in records[3]["exception"] and records[3]["level"] == "ERROR"
    assert records[0]["pid"] == os.getpid() and records[0]["process"] == "server"


def test_text_formatter(captured: io.StringIO) -> None:
    """Text lines: the ids appended in brackets; a worker's label before the logger name."""
    configure_logging("INFO", "text", process_label="sfu-worker", stream=captured)
    log = logging.getLogger("sfu.test")
    with log_context(class_id="c9"):
        log.warning("about a class")
    log.warning("about nothing")
    first, second = captured.getvalue().splitlines()
    assert first.endswith("WARNING sfu-worker sfu.test: about a class [class=c9]")
    assert second.endswith("WARNING sfu-worker sfu.test: about nothing")


async def test_context_is_per_task_and_restored() -> None:
    """A task inherits its creator's ids; what it sets stays in it; blocks restore."""
    seen: list[tuple[str | None, str | None]] = []

    async def child() -> None:
        seen.append((CLASS_ID.get(), PARTICIPANT_ID.get()))
        set_log_context("other", "someone")
        seen.append((CLASS_ID.get(), PARTICIPANT_ID.get()))

    with log_context(class_id="c1"):
        with log_context(participant_id="p1"):
            await asyncio.create_task(child())
            assert (CLASS_ID.get(), PARTICIPANT_ID.get()) == ("c1", "p1")
        assert (CLASS_ID.get(), PARTICIPANT_ID.get()) == ("c1", None)
    assert (CLASS_ID.get(), PARTICIPANT_ID.get()) == (None, None)
    assert seen == [("c1", "p1"), ("other", "someone")]


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """PULSEROOM_LOG_FORMAT: text by default, json (any case), anything else refused by name."""
    monkeypatch.delenv("PULSEROOM_LOG_FORMAT", raising=False)
    assert load_settings().log_format == "text"
    monkeypatch.setenv("PULSEROOM_LOG_FORMAT", "JSON")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("PULSEROOM_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="PULSEROOM_LOG_FORMAT"):
        load_settings()
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]
