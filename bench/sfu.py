"""Benchmark the SFU's forwarding path.

Scenarios (``--scenario``): ``all-to-all`` (the default, below), ``class`` and ``gallery``
(``bench.classbench``: an instructor at 720p and N participants at 360p, or P people in
gallery mode, played by cheap generators; with ``--simulcast`` publishers send RID
layers and subscribers report mixed downlinks, ``bench.simulcast``/``bench.downlink``),
and ``floor`` (``bench.floor``: what stock aiortc's own send and receive paths cost
per packet, for comparison).

``all-to-all``: N publishers in one class, everyone receives everyone.
``python -m bench.sfu --publishers N --seconds S [--json]`` starts ``pulseroom serve`` in
its own process, creates a class, and starts load-generator processes
(``bench.loadgen``) whose clients join it: one host that turns gallery mode on and
N-1 participants, all publishing the same pre-encoded VP8 (and Opus) clip on a loop.
Every client receives the other N-1, so the SFU forwards N*(N-1) copies of each kind.

After every client receives every stream and a warm-up, it measures over one window:
forwarded packets/s (``/api/stats`` delta), server CPU per 1,000 forwarded packets
(/proc utime+stime delta), loss (packets sent by publishers in the window times N-1
versus distinct packets subscribers got), one-way latency publisher → SFU → subscriber
from the abs-send-time header extension, server RSS, and the generators' CPU.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .classbench import ClassOptions, run_class
from .floor import measure_floor
from .floor import summary as floor_summary
from .media import Clip, encode_clip, save_clip
from .procs import (
    BenchError,
    Generator,
    Server,
    dump_logs,
    load_average,
    machine_cpu_seconds,
    tree_cpu_seconds,
    tree_memory_mib,
)
from .report import class_summary, floor_ratio
from .sampling import percentile, py_spy

__all__ = ["build_parser", "main", "percentile", "run"]

READY_TIMEOUT_S = 45.0

METHOD = {
    "forwarded_packets_per_s": "delta of /api/stats forwarded_packets over the window / its length",
    "server_cpu": "delta of utime+stime(+cutime+cstime) summed over the server process and "
    "all its descendants (ppid links in /proc/*/stat), over the same window",
    "loss": "1 - distinct packets received (per subscriber and stream, sent inside the window) "
    "/ (packets each publisher sent in the window x (N-1)); sent counts are aiortc's outbound "
    "packetsSent; video packets are placed in the window by their abs-send-time, audio by arrival",
    "latency": "video only: subscriber arrival time (after SRTP, at the RTP tap) minus the "
    "abs-send-time the publisher's aiortc sender stamped, which the SFU forwards unchanged; "
    "same machine clock; includes both clients' stacks and event loops, not only the SFU",
    "media": "pre-encoded clip replayed as av.Packet (aiortc packs, never encodes); "
    "subscribers count RTP via sfu.aiortc_adapter.take_rtp and never decode",
}


@dataclass(frozen=True, slots=True)
class Options:
    """What to run."""

    publishers: int
    seconds: float
    warmup: float
    generators: int
    audio: bool
    video_kbps: int
    py_spy: Path | None


def _client_plan(links: dict[str, Any], options: Options) -> list[list[dict[str, Any]]]:
    """Clients per generator process, round-robin; the host (client 0) goes to the first."""
    plans: list[list[dict[str, Any]]] = [[] for _ in range(options.generators)]
    for i in range(options.publishers):
        host = i == 0
        plans[i % options.generators].append(
            {
                "link": links["host_link"] if host else links["join_link"],
                "name": "host" if host else f"p{i}",
                "host": host,
            }
        )
    return plans


def _loss(results: list[dict[str, Any]], publishers: int) -> dict[str, Any]:
    """Sent x (N-1) versus received, overall and per kind."""
    sent: dict[str, int] = defaultdict(int)
    received: dict[str, int] = defaultdict(int)
    duplicates = 0
    for result in results:
        for s in result["sent"]:
            if s["packets"] is None:
                raise BenchError(f"publisher {s['publisher_id']} sent no {s['kind']} in the window")
            sent[s["kind"]] += int(s["packets"])
        for r in result["received"]:
            received[r["kind"]] += int(r["packets"])
            duplicates += int(r["duplicates"])
    subscribers = publishers - 1

    def loss(kinds: list[str]) -> float | None:
        expected = sum(sent[k] for k in kinds) * subscribers
        if expected == 0:
            return None
        got = sum(received[k] for k in kinds)
        return round(100.0 * (1 - got / expected), 3)

    kinds = sorted(sent)
    return {
        "loss_percent": loss(kinds),
        "loss_percent_by_kind": {k: loss([k]) for k in kinds},
        "packets": {
            "sent": dict(sent),
            "expected": {k: sent[k] * subscribers for k in kinds},
            "received": dict(received),
            "duplicates": duplicates,
        },
    }


@dataclass(frozen=True, slots=True)
class _Edge:
    """The server, the generators and the machine sampled at one edge of the window."""

    time: float
    stats: dict[str, Any]
    server_cpu: float
    generators_cpu: float
    busy: float
    total: float
    load: float

    @classmethod
    async def sample(cls, server: Server, session: aiohttp.ClientSession, pids: list[int]) -> _Edge:
        """Sample now: wall clock, the server's counters, CPU seconds, the load average."""
        now = time.time()
        stats = await server.stats(session)
        server_cpu = tree_cpu_seconds(server.pid)
        generators_cpu = sum(tree_cpu_seconds(p) for p in pids)
        busy, total = machine_cpu_seconds()
        return cls(now, stats, server_cpu, generators_cpu, busy, total, load_average())


def _machine(
    edge0: _Edge, edge1: _Edge, server_cpu: float, generators_cpu: float, elapsed: float
) -> dict[str, Any]:
    """The machine's share of the window: how busy, and how much of it was not ours."""
    busy = edge1.busy - edge0.busy
    return {
        "cores": os.cpu_count(),
        "busy_percent_of_all_cores": round(100 * busy / max(edge1.total - edge0.total, 1e-9), 1),
        # CPU used by processes other than this benchmark's: contention skews every figure
        "others_cpu_percent_approx": round(100 * (busy - server_cpu - generators_cpu) / elapsed, 1),
        "load_average_1m": [edge0.load, edge1.load],
    }


async def _measure(
    options: Options, server: Server, generators: list[Generator], session: aiohttp.ClientSession
) -> dict[str, Any]:
    """Set the window, sample server and generators at its edges, gather the results."""
    start = time.time() + options.warmup
    end = start + options.seconds
    for generator in generators:
        await generator.send({"window": [start, end]})
    pids = [g.pid for g in generators]
    await asyncio.sleep(max(0.0, start - time.time()))
    edge0 = await _Edge.sample(server, session, pids)
    spy = await py_spy(server.pid, options.seconds, options.py_spy) if options.py_spy else None
    try:
        await asyncio.sleep(max(0.0, end - time.time()))
        edge1 = await _Edge.sample(server, session, pids)
        memory = tree_memory_mib(server.pid)
        results = [await g.receive(timeout=options.seconds + 30) for g in generators]
        if spy is not None:
            await spy.wait()
    finally:
        if spy is not None and spy.returncode is None:
            spy.kill()  # only on failure: it stops by itself after --duration
            await spy.wait()
    elapsed = edge1.time - edge0.time
    forwarded = edge1.stats["forwarded_packets"] - edge0.stats["forwarded_packets"]
    forwarded_bytes = edge1.stats["forwarded_bytes"] - edge0.stats["forwarded_bytes"]
    server_cpu = edge1.server_cpu - edge0.server_cpu
    generators_cpu = edge1.generators_cpu - edge0.generators_cpu
    latencies = sorted(v for r in results for v in r["latency_ms"])
    loss = _loss(results, options.publishers)
    sent_total = sum(loss["packets"]["sent"].values())
    return {
        "forwarded_packets_per_s": round(forwarded / elapsed, 1),
        "forwarded_kbit_per_s": round(forwarded_bytes * 8 / elapsed / 1000, 1),
        "expected_forwarded_packets_per_s": round(
            sent_total * (options.publishers - 1) / options.seconds, 1
        ),
        "server_cpu_s_per_1000_packets": (
            round(server_cpu / forwarded * 1000, 4) if forwarded else None
        ),
        "server_cpu_percent": round(100 * server_cpu / elapsed, 1),
        "server_rss_mib": round(memory["rss_mib"], 1),
        "server_pss_mib": round(memory["pss_mib"], 1),
        "server_peak_rss_mib": round(memory["max_peak_rss_mib"], 1),
        "server_processes": memory["processes"],
        **loss,
        "latency_p50_ms": percentile(latencies, 0.50),
        "latency_p99_ms": percentile(latencies, 0.99),
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else None,
            "samples": len(latencies),
        },
        "generator_cpu_percent": round(100 * generators_cpu / elapsed, 1),
        "machine": _machine(edge0, edge1, server_cpu, generators_cpu, elapsed),
        "server_counters_delta": {
            k: edge1.stats[k] - edge0.stats[k]
            for k in ("keyframe_requests", "nacks_received", "retransmitted_packets")
            if k in edge0.stats and k in edge1.stats
        },
        "window_s": round(elapsed, 3),
        "errors": [e for r in results for e in r["errors"]],
    }


async def run(options: Options) -> dict[str, Any]:
    """One benchmark run; returns the figures (see module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pulseroom-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "data").mkdir()
        server = Server(data_dir=workdir / "data", log_path=workdir / "server.log")
        generators = [Generator(i, workdir / f"loadgen-{i}.log") for i in range(options.generators)]
        began = time.monotonic()
        async with aiohttp.ClientSession() as session:
            clip_task = asyncio.create_task(
                asyncio.to_thread(encode_clip, 4.0, options.audio, options.video_kbps)
            )
            try:
                await server.start(session)
                clip: Clip = await clip_task
                clip_path = workdir / "clip.bin"
                save_clip(clip, clip_path)
                links = await server.create_room(session, f"bench {options.publishers}")
                for generator, clients in zip(
                    generators, _client_plan(links, options), strict=True
                ):
                    await generator.start(
                        {
                            "clip": str(clip_path),
                            "clients": clients,
                            "expected_streams": (options.publishers - 1)
                            * (2 if options.audio else 1),
                            "ready_timeout": READY_TIMEOUT_S,
                        }
                    )
                for generator in generators:
                    await generator.receive(timeout=READY_TIMEOUT_S + 15)
                setup_s = time.monotonic() - began
                figures = await _measure(options, server, generators, session)
            except BaseException:
                dump_logs("loadgen", generators, server)
                raise
            finally:
                clip_task.cancel()  # only still running if the server failed to start
                for generator in generators:
                    await generator.stop()
                await server.stop()
    return {
        "scenario": {
            "publishers": options.publishers,
            "subscriptions_per_kind": options.publishers * (options.publishers - 1),
            "seconds": options.seconds,
            "warmup_s": options.warmup,
            "generator_processes": options.generators,
            "video": {
                "codec": "VP8",
                "width": clip.video.width,
                "height": clip.video.height,
                "fps": round(clip.video.clock_rate / clip.video.frame_ticks),
                "clip_kbps": round(clip.video.bitrate_kbps, 1),
            },
            "audio": (
                {"codec": "opus", "clip_kbps": round(clip.audio.bitrate_kbps, 1)}
                if clip.audio is not None
                else None
            ),
            "setup_s": round(setup_s, 2),
        },
        **figures,
        "method": METHOD,
    }


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m bench.sfu``."""
    parser = argparse.ArgumentParser(prog="python -m bench.sfu", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario",
        choices=("all-to-all", "class", "gallery", "floor"),
        default="all-to-all",
        help="what to run (default all-to-all; see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--publishers", type=int, default=4, help="all-to-all: participants, all publishing (>= 2)"
    )
    parser.add_argument(
        "--participants",
        type=int,
        default=None,
        help="class: participants besides the instructor (default 25); "
        "gallery: people in the class (default 8)",
    )
    parser.add_argument(
        "--mode",
        choices=("instructor", "gallery"),
        default="instructor",
        help="class: gallery mode off (instructor) or on (gallery)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window (default 20)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="after all streams flow (default 3; with --simulcast 8, for layers to settle)",
    )
    parser.add_argument(
        "--generators", type=int, default=2, help="load-generator processes (default 2)"
    )
    parser.add_argument("--no-audio", action="store_true", help="publish video only")
    parser.add_argument(
        "--video-kbps", type=int, default=500, help="all-to-all: clip bitrate (default 500)"
    )
    _add_class_arguments(parser)
    _add_simulcast_arguments(parser)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="class/gallery: also measure the stock aiortc floor and report the ratio",
    )
    parser.add_argument(
        "--floor-streams", type=int, default=16, help="floor: video + audio track pairs"
    )
    parser.add_argument(
        "--py-spy", type=Path, default=None, help="record the server with py-spy (raw)"
    )
    parser.add_argument(
        "--py-spy-server-only",
        action="store_true",
        help="class/gallery: with --py-spy, do not also record the generators",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _add_class_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the class and gallery scenarios (placement, pinning, pacing)."""
    parser.add_argument(
        "--pin",
        action="store_true",
        help="class/gallery/floor: server and its descendants on CPU 0, generators and the "
        "controller on CPU 1",
    )
    parser.add_argument(
        "--sfu-workers",
        type=int,
        default=None,
        help="class/gallery: set PULSEROOM_SFU_WORKERS for the server (default: its own)",
    )
    parser.add_argument(
        "--join-batch", type=int, default=5, help="class/gallery: clients joining at once"
    )
    parser.add_argument(
        "--pacing",
        choices=("on", "off"),
        default="on",
        help="class/gallery: publishers pace video like a browser (on: 2.5x its bitrate, "
        "libwebrtc's kDefaultPaceMultiplier) or send each frame back to back (off)",
    )
    parser.add_argument(
        "--worker-participants",
        type=int,
        default=None,
        help="class/gallery: set PULSEROOM_SFU_WORKER_PARTICIPANTS (a class spills onto "
        "another worker past this many participants on one)",
    )
    parser.add_argument(
        "--pin-workers",
        action="store_true",
        help="class/gallery: SFU worker i on CPU i and load generator i on CPU i + 1; the "
        "server's main process and the controller unpinned",
    )
    parser.add_argument(
        "--generator-nice",
        type=int,
        default=0,
        choices=range(0, 20),
        metavar="N",
        help="class/gallery: run the load generators N nicer than the server (0-19), so "
        "the server is not kept waiting for a core by the processes measuring it",
    )


def _add_simulcast_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("class/gallery with simulcast")
    group.add_argument(
        "--simulcast",
        action="store_true",
        help="publishers send RID simulcast layers (instructor q/h/f 180p/360p/720p, "
        "participants q/h) and obey the SFU's layers event; subscribers send REMB and tile "
        "sizes (see docs/benchmarks.md)",
    )
    group.add_argument(
        "--capped-share",
        type=float,
        default=0.0,
        metavar="F",
        help="--simulcast: this share of the participants (0-1) reports a capped downlink",
    )
    group.add_argument(
        "--cap-kbps",
        type=int,
        default=400,
        help="--simulcast: the capped participants' downlink (default 400)",
    )
    group.add_argument(
        "--high-kbps",
        type=int,
        default=5000,
        help="--simulcast: everyone else's REMB estimate (default 5000)",
    )
    group.add_argument(
        "--thumbnail-height",
        type=int,
        default=180,
        help="--simulcast: height the instructor (and in gallery mode everyone) draws "
        "participants' videos at, sent as visibility sizes (0: no sizes; default 180)",
    )


def _summary(report: dict[str, Any]) -> str:
    s = report["scenario"]
    lat = report["latency_ms"]
    r = report
    return "\n".join(
        [
            f"{s['publishers']} publishers, {s['subscriptions_per_kind']} subscriptions per kind, "
            f"{r['window_s']:.1f}s window",
            f"  forwarded         {r['forwarded_packets_per_s']} packets/s "
            f"({r['forwarded_kbit_per_s']} kbit/s; "
            f"expected {r['expected_forwarded_packets_per_s']})",
            f"  server CPU        {r['server_cpu_s_per_1000_packets']} s per 1,000 packets "
            f"({r['server_cpu_percent']}% of a core)",
            f"  server RSS        {r['server_rss_mib']} MiB",
            f"  loss              {r['loss_percent']}% {r['loss_percent_by_kind']}",
            f"  latency (video)   p50 {lat['p50']} ms, p99 {lat['p99']} ms "
            f"({lat['samples']} packets)",
            f"  generators' CPU   {r['generator_cpu_percent']}% of a core",
            f"  other processes   {r['machine']['others_cpu_percent_approx']}% of a core",
        ]
    )


def _run_class(args: argparse.Namespace) -> dict[str, Any]:
    default = 25 if args.scenario == "class" else 8
    participants = args.participants if args.participants is not None else default
    if participants < (1 if args.scenario == "class" else 2):
        raise BenchError("--participants is too small for this scenario")
    if not 0.0 <= args.capped_share <= 1.0:
        raise BenchError("--capped-share is a share of the participants, 0 to 1")
    if (args.capped_share or args.thumbnail_height != 180) and not args.simulcast:
        raise BenchError("--capped-share and --thumbnail-height need --simulcast")
    options = ClassOptions(
        scenario=args.scenario,
        participants=participants,
        mode=args.mode,
        seconds=args.seconds,
        warmup=args.warmup,
        generators=max(1, args.generators),
        audio=not args.no_audio,
        pin=args.pin,
        py_spy=args.py_spy,
        sfu_workers=args.sfu_workers,
        join_batch=max(1, args.join_batch),
        pacing=args.pacing == "on",
        worker_participants=args.worker_participants,
        pin_workers=args.pin_workers,
        generator_nice=args.generator_nice,
        simulcast=args.simulcast,
        capped_share=args.capped_share,
        cap_kbps=args.cap_kbps,
        high_kbps=args.high_kbps,
        thumbnail_height=max(0, args.thumbnail_height),
        py_spy_generators=not args.py_spy_server_only,
    )
    if options.pin and options.pin_workers:
        raise BenchError("--pin (the server on one core) and --pin-workers exclude each other")
    report = asyncio.run(run_class(options))
    if args.floor:
        floor = asyncio.run(
            measure_floor(args.floor_streams, min(args.seconds, 10.0), 3.0, args.pin)
        )
        report["floor"] = floor
        report["floor_ratio"] = floor_ratio(report, floor)
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.sfu``."""
    args = build_parser().parse_args(argv)
    if args.warmup is None:
        args.warmup = 8.0 if args.simulcast else 3.0
    try:
        if args.simulcast and args.scenario not in ("class", "gallery"):
            raise BenchError("--simulcast is for the class and gallery scenarios")
        if args.scenario == "floor":
            report = asyncio.run(
                measure_floor(args.floor_streams, args.seconds, args.warmup, args.pin)
            )
            text = floor_summary(report)
        elif args.scenario in ("class", "gallery"):
            report = _run_class(args)
            text = class_summary(report)
        else:
            if args.publishers < 2:
                print("bench.sfu: --publishers must be at least 2", file=sys.stderr)
                return 2
            options = Options(
                publishers=args.publishers,
                seconds=args.seconds,
                warmup=args.warmup,
                generators=max(1, min(args.generators, args.publishers)),
                audio=not args.no_audio,
                video_kbps=args.video_kbps,
                py_spy=args.py_spy,
            )
            report = asyncio.run(run(options))
            text = _summary(report)
    except BenchError as exc:
        print(f"bench.sfu: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
