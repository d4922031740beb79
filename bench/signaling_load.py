"""``python -m bench.signaling_load``: thousands of Socket.IO clients on one server.

The server is ``pulseroom serve`` in its own process (PostgreSQL by default, a fresh
database per run; Redis with ``--redis``). Clients are ``bench.sio_light`` websocket
clients in ``bench.siogen`` processes: each connects, joins a class (classes of
``--room-size``; the first class has ``--chat-room`` people when given) and stays.

- Connect and join: per client, websocket + namespace connect time, then the ``join``
  ack time, while all the others connect too (``--concurrency`` at once per generator).
- Event round trip (``--clients``): with everyone connected and joined, ``ping`` events
  with acks at ``--rate`` per second in total, spread evenly over time and clients, for
  ``--seconds``; round trip = ack receipt - send, in the sending process.
- Chat fan-out (``--chat-room``): messages at ``--chat-rate`` per second into the big
  class, senders rotating over its members; each member stamps the receipt of every
  message (send time is in the text; one machine, one clock). Per delivery p50/p99, and
  per message the time until the last member had it.
- Server CPU (the whole process tree, and the main process alone) per phase, memory at
  the end; the generators' CPU beside it, and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from .database import DEFAULT_DATABASE, drop_database, fresh_database
from .procs import (
    BenchError,
    Generator,
    Server,
    cpu_seconds,
    dump_logs,
    load_average,
    machine_cpu_seconds,
    memory_mib,
    tree_cpu_seconds,
    tree_memory_mib,
)
from .sampling import percentile, py_spy

IDLE_WINDOW_S = 10.0
SETTLE_S = 5.0  # after the last join, before measuring: its fan-out and writes finish


def _summary(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else None,
        "samples": len(ordered),
    }


class Meter:
    """CPU of the server (tree and main process), the generators and the machine."""

    def __init__(self, server: Server, generators: list[Generator]) -> None:
        self.server = server
        self.generators = generators
        self._start: tuple[float, float, float, float, float] | None = None
        self._started_at = 0.0

    def _read(self) -> tuple[float, float, float, float, float]:
        busy, _total = machine_cpu_seconds()
        generators = sum(cpu_seconds(g.pid) for g in self.generators)
        return (
            time.monotonic(),
            tree_cpu_seconds(self.server.pid),
            cpu_seconds(self.server.pid),
            generators,
            busy,
        )

    def start(self) -> None:
        """Begin a window."""
        self._started_at = time.time()
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """Cores used since ``start``."""
        assert self._start is not None
        end = self._read()
        elapsed = max(1e-9, end[0] - self._start[0])
        tree, main, generators, busy = (end[i] - self._start[i] for i in range(1, 5))
        return {
            "started_at": round(self._started_at, 2),  # unix time, to match logs against
            "seconds": round(elapsed, 2),
            "server_cpu_cores": round(tree / elapsed, 3),
            "server_main_cpu_cores": round(main / elapsed, 3),
            "generators_cpu_cores": round(generators / elapsed, 3),
            "machine_busy_cores": round(busy / elapsed, 2),
        }


def plan_rooms(clients: int, chat_room: int, room_size: int) -> list[int]:
    """Class sizes: the chat class first (if any), the rest in classes of ``room_size``."""
    sizes = [chat_room] if chat_room else []
    rest = max(0, clients - chat_room)
    while rest > 0:
        sizes.append(min(room_size, rest))
        rest -= sizes[-1]
    return sizes


async def _profile(
    args: argparse.Namespace, server: Server, phase: str, seconds: float
) -> asyncio.subprocess.Process | None:
    """py-spy on the server's main process for a phase, with ``--py-spy PREFIX``."""
    if not args.py_spy:
        return None
    return await py_spy(server.pid, seconds, Path(f"{args.py_spy}-{phase}.txt"))


def _per_item(cpu: dict[str, float], idle: dict[str, float], items: int) -> dict[str, float]:
    """The server main process's CPU per item: all of it in the window, and what the
    window took beyond the idle one's rate (keeping every session alive)."""
    all_in = cpu["server_main_cpu_cores"] * cpu["seconds"]
    over = (cpu["server_main_cpu_cores"] - idle["server_main_cpu_cores"]) * cpu["seconds"]
    return {
        "all_in": round(all_in / max(1, items) * 1e6, 1),
        "over_idle": round(over / max(1, items) * 1e6, 1),
    }


async def _ping_phase(
    args: argparse.Namespace, generators: list[Generator], meter: Meter, idle: dict[str, float]
) -> dict[str, Any]:
    share = args.rate / len(generators)
    profiler = await _profile(args, meter.server, "ping", args.seconds)
    meter.start()
    for generator in generators:
        await generator.send({"cmd": "ping", "rate": share, "seconds": args.seconds})
    results = [await g.receive(timeout=args.seconds + 60) for g in generators]
    cpu = meter.stop()
    if profiler is not None:
        await profiler.wait()
    rtts = [x for r in results for x in r["rtt_ms"]]
    sent = sum(r["sent"] for r in results)
    return {
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "sent": sent,
        "answered": len(rtts),
        "unanswered": sent - len(rtts),
        "late_sends": sum(r["late"] for r in results),
        "rtt_ms": _summary(rtts),
        "cpu": cpu,
        "server_cpu_us_per_event": _per_item(cpu, idle, len(rtts)),
    }


async def _chat_phase(
    args: argparse.Namespace,
    generators: list[Generator],
    meter: Meter,
    idle: dict[str, float],
    room_id: str,
) -> dict[str, Any]:
    share = args.chat_rate / len(generators)
    profiler = await _profile(args, meter.server, "chat", args.chat_seconds)
    meter.start()
    for generator in generators:
        await generator.send(
            {
                "cmd": "chat",
                "room": room_id,
                "rate": share,
                "seconds": args.chat_seconds,
                "settle": 3.0,
            }
        )
    results = [await g.receive(timeout=args.chat_seconds + 60) for g in generators]
    cpu = meter.stop()
    if profiler is not None:
        await profiler.wait()
    by_message: dict[str, list[float]] = {}
    for result in results:
        for message_id, latencies in result["received"].items():
            by_message.setdefault(message_id, []).extend(latencies)
    sent = sum(r["sent"] for r in results)
    deliveries = [x for latencies in by_message.values() for x in latencies]
    complete = [max(v) for v in by_message.values() if len(v) >= args.chat_room]
    return {
        "room_size": args.chat_room,
        "rate_per_s": args.chat_rate,
        "seconds": args.chat_seconds,
        "messages_sent": sent,
        "refused": [x for r in results for x in r["refused"]][:5],
        "deliveries": len(deliveries),
        "expected_deliveries": sent * args.chat_room,
        "messages_reaching_everyone": len(complete),
        "delivery_ms": _summary(deliveries),
        "all_received_ms": _summary(complete),
        "cpu": cpu,
        "server_cpu_us_per_delivery": _per_item(cpu, idle, len(deliveries)),
    }


async def _join(
    args: argparse.Namespace,
    server: Server,
    work: Path,
    links: list[str],
    count: int,
    clients: int,
    generators: list[Generator],
) -> tuple[list[dict[str, Any]], float]:
    """Start ``count`` generators (appended to ``generators``, for the caller to stop)
    sharing ``links`` among ``clients`` sessions; returns what each reports once its
    sessions joined, and how long that took."""
    profiler = await _profile(args, server, "join", 3600)
    setup_started = time.monotonic()
    for index in range(count):
        generator = Generator(index, work / f"siogen-{index}.log", "bench.siogen")
        generators.append(generator)
        await generator.start(
            {
                "url": server.base_url,
                "links": links[index::count],
                "concurrency": args.concurrency,
                "index": index,
            }
        )
    ready = [await g.receive(timeout=clients * 0.5 + 120) for g in generators]
    setup_s = time.monotonic() - setup_started
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        await profiler.wait()
    return ready, setup_s


def _server_memory(server: Server) -> dict[str, float]:
    """The server's process tree's memory in MiB, and its main process's RSS."""
    memory = tree_memory_mib(server.pid)
    return {
        **{k: round(v, 1) for k, v in memory.items()},
        "main_rss_mib": round(memory_mib(server.pid)[0], 1),
    }


def _config(args: argparse.Namespace, generators: int) -> dict[str, Any]:
    """What the run was configured with."""
    return {
        "database": "sqlite" if args.database == "sqlite" else "postgresql",
        "redis": bool(args.redis),
        "generators": generators,
        "sfu_workers": args.workers if args.workers is not None else "default",
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """One run; returns the JSON report."""
    clients = max(args.clients, args.chat_room)
    if clients <= 0:
        raise BenchError("give --clients N and/or --chat-room M")
    sizes = plan_rooms(clients, args.chat_room, args.room_size)
    work = Path(tempfile.mkdtemp(prefix="pulseroom-bench-signaling-"))
    env = {"PULSEROOM_MAX_PARTICIPANTS": str(max(sizes))}
    db_name = None
    if args.database != "sqlite":
        db_name, dsn = await fresh_database(args.database)
        env["DATABASE_URL"] = dsn.replace("postgresql://", "postgresql+asyncpg://")
    if args.redis:
        env["REDIS_URL"] = args.redis
    if args.workers is not None:
        env["PULSEROOM_SFU_WORKERS"] = str(args.workers)
    server = Server(data_dir=work / "data", log_path=work / "server.log", extra_env=env)
    generators: list[Generator] = []
    report: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as session:
            await server.start(session)
            links: list[str] = []
            room_ids: list[str] = []
            for index, size in enumerate(sizes):
                room = await server.create_room(session, f"Load class {index}")
                room_ids.append(room["room"]["id"])
                links += [room["join_link"]] * size
            count = max(1, min(args.generators, len(links)))
            ready, setup_s = await _join(args, server, work, links, count, clients, generators)
            joined = sum(r["joined"] for r in ready)
            await asyncio.sleep(args.settle_seconds)
            stats = await server.stats(session)
            meter = Meter(server, generators)
            meter.start()
            await asyncio.sleep(args.idle_seconds)
            idle = meter.stop()
            report = {
                "scenario": "signaling_load",
                "clients": clients,
                "joined": joined,
                "failed": sum(r["failed"] for r in ready),
                "join_errors": [e for r in ready for e in r["errors"]][:5],
                "rooms": len(sizes),
                "room_sizes": sorted(set(sizes), reverse=True),
                "server_participants": stats["participants"],
                "setup_s": round(setup_s, 1),
                "connect_ms": _summary([x for r in ready for x in r["connect_ms"]]),
                "join_ms": _summary([x for r in ready for x in r["join_ms"]]),
                "idle": idle,
            }
            if args.clients and args.rate > 0:
                report["ping"] = await _ping_phase(args, generators, meter, idle)
            if args.chat_room:
                report["chat"] = await _chat_phase(args, generators, meter, idle, room_ids[0])
            report["server_memory_mib"] = _server_memory(server)
            for generator in generators:
                await generator.send({"cmd": "stop"})
            for generator in generators:
                await generator.receive(timeout=60)
    except BenchError:
        dump_logs("siogen", generators, server)
        raise
    finally:
        for generator in generators:
            await generator.stop()
        await server.stop()
        if db_name is not None:
            await drop_database(args.database, db_name)
    report["config"] = _config(args, len(generators))
    report["machine"] = {"load_average_1m_at_end": load_average(), "cores": _cores()}
    report["goal"] = {"clients": 2000, "chat_room": 200, "chat_p99_ms": 100}
    return report


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.signaling_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=0, help="Socket.IO clients (ping phase)")
    parser.add_argument("--chat-room", type=int, default=0, help="people in the chat class")
    parser.add_argument("--room-size", type=int, default=100, help="class size (100)")
    parser.add_argument("--rate", type=float, default=200.0, help="pings per second (200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="ping window (20)")
    parser.add_argument("--chat-rate", type=float, default=2.0, help="chat messages per second (2)")
    parser.add_argument("--chat-seconds", type=float, default=20.0, help="chat window (20)")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=SETTLE_S,
        help=f"wait after the last join, before measuring ({SETTLE_S:g})",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=IDLE_WINDOW_S,
        help=f"window measuring the idle class, subtracted from the others ({IDLE_WINDOW_S:g})",
    )
    parser.add_argument("--generators", type=int, default=2, help="generator processes (2)")
    parser.add_argument(
        "--concurrency", type=int, default=25, help="joins in flight per generator (25)"
    )
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help="PostgreSQL admin DSN (a fresh database is made), or 'sqlite'",
    )
    parser.add_argument("--redis", help="REDIS_URL for the server (default: none)")
    parser.add_argument("--workers", type=int, help="PULSEROOM_SFU_WORKERS (default: cores)")
    parser.add_argument(
        "--py-spy",
        metavar="PREFIX",
        help="profile the server per phase into PREFIX-{join,ping,chat}.txt "
        "(summarize with python -m bench.profile FILE)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.clients < 0 or args.chat_room < 0 or args.room_size < 2:
        print("bench.signaling_load: counts must be positive", file=sys.stderr)
        return 2
    if args.idle_seconds <= 0 or args.settle_seconds < 0:
        print(
            "bench.signaling_load: --idle-seconds must be > 0, --settle-seconds >= 0",
            file=sys.stderr,
        )
        return 2
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        print(f"bench.signaling_load: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
