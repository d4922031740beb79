"""``python -m bench.telemetry``: simulated straps at 1 Hz into one server on PostgreSQL.

Each strap is a real participant: a Socket.IO session and an aiortc data channel
(``pulseroom.hr_link``, what ``pulseroom hr-bridge`` uses), run in ``bench.strapgen``
processes. Straps are spread over classes of ``--room-size``; each class has an
instructor session in this process that receives the ``hr`` events. Measured over one
window of ``--seconds``:

- readings/s sustained: delta of the server's accepted readings over the window;
- fan-out latency: the instructor's receipt time minus the server's ``received_at``
  (same machine clock), p50/p99/max over every reading the instructors got;
- end to end: receipt minus the device time ``t`` the strap stamped;
- DB write lag: the writer's put → commit delay (last and max), and at the end every
  acknowledged reading is counted in the table, once;
- server CPU (process tree) and memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import socketio

from client.protocol import ClientError, call, join_payload, parse_link

from .database import DEFAULT_DATABASE, drop_database, fresh_database
from .procs import (
    BenchError,
    Generator,
    Server,
    dump_logs,
    machine_cpu_seconds,
    tree_cpu_seconds,
    tree_memory_mib,
)
from .sampling import percentile


class Instructor:
    """One class's host session, timing every heart-rate reading it is shown."""

    def __init__(self, base_url: str, link: str) -> None:
        self.base_url = base_url
        _base, self.room, self.token = parse_link(link)  # joined at ``base_url``
        self.sio = socketio.AsyncClient(reconnection=False)
        self.fanout: list[float] = []
        self.end_to_end: list[float] = []
        self.measuring = False
        self.sio.on("hr", self._on_hr)

    async def _on_hr(self, data: dict[str, Any]) -> None:
        now = time.time()
        if not self.measuring:
            return
        for reading in data["readings"]:
            self.fanout.append(now - reading["received_at"])
            self.end_to_end.append(now - reading["t"] / 1000)

    async def join(self) -> None:
        await self.sio.connect(self.base_url, transports=["websocket"], wait_timeout=10)
        try:
            await call(self.sio, "join", join_payload(self.token, "Coach", self.room))
        except ClientError as exc:
            raise BenchError(f"the instructor could not join: {exc}") from None

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


def _scale(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _ms(values: list[float], fraction: float) -> float | None:
    value = percentile(values, fraction)
    return None if value is None else round(value * 1000, 1)


@dataclass(frozen=True, slots=True)
class Window:
    """What was sampled at the edges of the measuring window."""

    before: dict[str, Any]
    after: dict[str, Any]
    final: dict[str, Any]
    done: list[dict[str, Any]]
    cpu_before: float
    cpu_after: float
    machine_before: tuple[float, float]
    machine_after: tuple[float, float]
    elapsed: float
    counted: float
    memory: dict[str, float]


async def _measure(
    args: argparse.Namespace,
    server: Server,
    session: aiohttp.ClientSession,
    generators: list[Generator],
    instructors: list[Instructor],
) -> Window:
    """Let the straps send for ``args.seconds``, sampling the server at both edges."""
    for instructor in instructors:
        instructor.measuring = True
    before = await server.stats(session)
    cpu_before = tree_cpu_seconds(server.pid)
    machine_before = machine_cpu_seconds()
    started = time.monotonic()
    for generator in generators:
        await generator.send({"go": True, "seconds": args.seconds})
    await asyncio.sleep(args.seconds)
    # CPU first: an overloaded server may take long to answer /api/stats.
    cpu_after = tree_cpu_seconds(server.pid)
    machine_after = machine_cpu_seconds()
    elapsed = time.monotonic() - started
    memory = tree_memory_mib(server.pid)
    after = await server.stats(session)
    counted = time.monotonic() - started  # readings are counted until the answer
    for instructor in instructors:
        instructor.measuring = False
    done = [await g.receive(timeout=120) for g in generators]
    final = await server.stats(session)
    return Window(
        before,
        after,
        final,
        done,
        cpu_before,
        cpu_after,
        machine_before,
        machine_after,
        elapsed,
        counted,
        memory,
    )


def _report(
    args: argparse.Namespace,
    joined: int,
    setup_s: float,
    instructors: list[Instructor],
    window: Window,
    stored: int,
    distinct: int,
) -> dict[str, Any]:
    """The JSON report of one run."""
    hr_before, hr_after = window.before["heart_rate"], window.after["heart_rate"]
    accepted = hr_after["accepted"] - hr_before["accepted"]
    fanout = sorted(x for i in instructors for x in i.fanout)
    end_to_end = sorted(x for i in instructors for x in i.end_to_end)
    readings = sum(d["readings"] for d in window.done)
    acked = sum(d["acked"] for d in window.done)
    server_cpu = window.cpu_after - window.cpu_before
    busy = (window.machine_after[0] - window.machine_before[0]) / max(1e-9, window.elapsed)
    return {
        "scenario": "telemetry",
        "straps": args.straps,
        "joined": joined,
        "rooms": len(instructors),
        "seconds": round(window.elapsed, 2),
        "setup_s": round(setup_s, 1),
        "readings_per_s": round(accepted / window.counted, 1),
        "offered_per_s": joined,
        "fanout_ms": {
            "p50": _ms(fanout, 0.5),
            "p99": _ms(fanout, 0.99),
            "max": _ms(fanout, 1.0),
            "samples": len(fanout),
        },
        "end_to_end_ms": {"p50": _ms(end_to_end, 0.5), "p99": _ms(end_to_end, 0.99)},
        # Receipt → emit inside the server (its last 4,096 readings): the rest of the
        # fan-out time above is Socket.IO delivery to the instructors' sessions.
        "server_emit_lag_ms": {
            "p50": _scale(window.after["heart_rate"]["fanout_lag_p50_s"]),
            "p99": _scale(window.after["heart_rate"]["fanout_lag_p99_s"]),
        },
        "db_write_lag_s": {
            "last": hr_after["writer"].get("lag_s"),
            "max": window.final["heart_rate"]["writer"].get("max_lag_s"),
        },
        "writer": window.final["heart_rate"]["writer"],
        "readings_generated": readings,
        "acked": acked,
        "stored": stored,
        "stored_distinct": distinct,
        "unacknowledged": sum(d["unacknowledged"] for d in window.done),
        "rejected": window.final["heart_rate"]["rejected"],
        "rejoins": sum(d["rejoins"] for d in window.done),
        "generator_late_sends": sum(d["late_sends"] for d in window.done),
        "server_cpu_cores": round(server_cpu / window.elapsed, 3),
        "server_cpu_us_per_reading": round(server_cpu / max(1, accepted) * 1e6, 1),
        "machine_busy_cores": round(busy, 2),
        "server_memory_mib": window.memory,
        "goal": {"straps": 5000, "fanout_p99_ms": 250},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """One run; returns the JSON report."""
    db_name, dsn = await fresh_database(args.database)
    work = Path(tempfile.mkdtemp(prefix="pulseroom-bench-telemetry-"))
    server = Server(
        data_dir=work / "data",
        log_path=work / "server.log",
        extra_env={
            "DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://"),
            "PULSEROOM_MAX_PARTICIPANTS": str(args.room_size + 5),
        },
    )
    generators: list[Generator] = []
    instructors: list[Instructor] = []
    try:
        async with aiohttp.ClientSession() as session:
            await server.start(session)
            rooms = math.ceil(args.straps / args.room_size)
            links: list[str] = []
            for index in range(rooms):
                room = await server.create_room(session, f"Bench class {index}")
                instructor = Instructor(server.base_url, room["host_link"])
                await instructor.join()
                instructors.append(instructor)
                in_room = min(args.room_size, args.straps - index * args.room_size)
                links += [room["join_link"]] * in_room
            count = min(args.generators, len(links))
            setup_started = time.monotonic()
            for index in range(count):
                generator = Generator(index, work / f"strapgen-{index}.log", "bench.strapgen")
                generators.append(generator)
                await generator.start(
                    {"links": links[index::count], "join_concurrency": 8, "seed": index}
                )
            ready = [await g.receive(timeout=args.straps * 0.2 + 120) for g in generators]
            setup_s = time.monotonic() - setup_started
            joined = sum(r["joined"] for r in ready)
            await asyncio.sleep(2)  # let the joins' own work settle
            window = await _measure(args, server, session, generators, instructors)
        conn = await asyncpg.connect(dsn)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM heart_rate")
            distinct = await conn.fetchval(
                "SELECT count(*) FROM (SELECT DISTINCT room_id, participant_id, seq, time"
                " FROM heart_rate) AS d"
            )
        finally:
            await conn.close()
    except BenchError:
        dump_logs("telemetry", generators, server)
        raise
    finally:
        for instructor in instructors:
            await instructor.close()
        for generator in generators:
            await generator.stop()
        await server.stop()
        await drop_database(args.database, db_name)

    return _report(args, joined, setup_s, instructors, window, stored, distinct)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__)
    parser.add_argument("--straps", type=int, default=50, help="simulated straps (default 50)")
    parser.add_argument("--room-size", type=int, default=50, help="straps per class (50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window (30)")
    parser.add_argument("--generators", type=int, default=2, help="generator processes (2)")
    parser.add_argument(
        "--database", default=DEFAULT_DATABASE, help="PostgreSQL admin DSN (a fresh DB is made)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        print(f"bench.telemetry: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
