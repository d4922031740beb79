"""The ``class`` and ``gallery`` scenarios of ``python -m bench.sfu``.

``class``: one instructor (the host) publishing 1280x720 VP8 at ~1.5 Mbit/s and N
participants publishing 640x360 VP8 at ~500 kbit/s, Opus for everyone. In
``instructor`` mode (gallery off) everyone receives the instructor and the instructor
receives everyone; in ``gallery`` mode participants also receive each other.
``gallery``: P people (default 8) in gallery mode, all at 360p, everyone receiving
everyone else: the P x P matrix without its diagonal.

Clients run in ``bench.classgen`` processes, which negotiate with aiortc but send and
count RTP by hand (``bench.fastpath``). The controller measures one window: forwarded
packets/s, server CPU per forwarded packet (summed over the server process and all its
descendants), loss, publisher → subscriber latency, server memory, the generators' own
CPU, and what else ran on the machine. See docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .fastpath import PACE_MULTIPLIER, histogram_summary, merge_histograms
from .packetized import encode_class_clips
from .procs import (
    BenchError,
    Generator,
    Server,
    cpu_seconds,
    dump_logs,
    load_average,
    machine_cpu_seconds,
    pin_tree,
    tree_cpu_seconds,
    tree_memory_mib,
    udp_receive_errors,
)
from .sampling import py_spy

GOAL_LOSS_PERCENT = 0.5
GOAL_P99_MS = 20.0

METHOD = {
    "forwarded_packets_per_s": "delta of /api/stats forwarded_packets over the window / its length",
    "server_cpu": "delta of utime+stime(+cutime+cstime) summed over the server process and all "
    "its descendants (ppid links in /proc/*/stat), over the same window",
    "loss": "1 - distinct packets received / packets sent, per subscription, for packets sent "
    "inside the window; video placed by its abs-send-time stamp, audio by the RTP marker the "
    "publisher sets on its first packet at or after each window edge",
    "latency": "video only: subscriber's datagram arrival (before any decryption) minus the "
    "abs-send-time the publisher stamped right before SRTP and sendto; same machine clock; "
    "arrival is the kernel's SO_TIMESTAMPNS stamp on the subscriber's socket (how late the "
    "generator's own event loop then read it is generator_receive_delay_ms); "
    "10 us histogram buckets, upper edges reported",
    "generators": "aiortc only negotiates; RTP is written by hand from pre-packetized frames, "
    "SRTP-protected and sent with sendto; subscribers read the clear RTP header of the "
    "encrypted datagram at aioice's callback and never decrypt",
}


@dataclass(frozen=True, slots=True)
class ClassOptions:
    """What to run."""

    scenario: str  # "class" or "gallery"
    participants: int  # class: besides the instructor; gallery: everyone
    mode: str  # class: "instructor" or "gallery"
    seconds: float
    warmup: float
    generators: int
    audio: bool
    pin: bool
    py_spy: Path | None
    sfu_workers: int | None
    join_batch: int = 5
    pacing: bool = True  # video paced like a browser (2.5x its bitrate), or frames at once
    worker_participants: int | None = None  # PULSEROOM_SFU_WORKER_PARTICIPANTS
    # SFU worker i on CPU i, generator i on CPU i + 1 (so the instructor's generator, the
    # busiest, shares a core with the other worker); main process and controller unpinned
    pin_workers: bool = False
    # Load generators this much nicer than the server: unpinned, the server gets a core
    # when it needs one and the generators take what is left (their lateness is
    # measured apart: kernel arrival stamps, pacer lag).
    generator_nice: int = 0


@dataclass(frozen=True, slots=True)
class Person:
    """One planned client."""

    name: str
    host: bool
    clip: str


def plan_people(options: ClassOptions) -> list[Person]:
    """The host first, then the participants."""
    if options.scenario == "class":
        people = [Person("instructor", True, "instructor")]
        people += [
            Person(f"p{i}", False, "participant") for i in range(1, options.participants + 1)
        ]
        return people
    return [Person("host", True, "participant")] + [
        Person(f"p{i}", False, "participant") for i in range(1, options.participants)
    ]


def gallery_on(options: ClassOptions) -> bool:
    """Whether the host turns gallery mode on."""
    return options.scenario == "gallery" or options.mode == "gallery"


def receives(subscriber: Person, publisher: Person, gallery: bool) -> bool:
    """docs/protocol.md: the host is seen by and sees everyone; others only in gallery mode."""
    return subscriber is not publisher and (subscriber.host or publisher.host or gallery)


def assign(
    people: list[Person], options: ClassOptions, pps: dict[str, float]
) -> list[list[Person]]:
    """Spread clients over generator processes by estimated packets/s (sent + received)."""
    gallery = gallery_on(options)
    loads = [0.0] * options.generators
    plans: list[list[Person]] = [[] for _ in range(options.generators)]
    for person in people:
        weight = pps[person.clip] + sum(pps[p.clip] for p in people if receives(person, p, gallery))
        target = 0 if person.host else loads.index(min(loads))
        plans[target].append(person)
        loads[target] += weight
    return plans


def worker_sample(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Each SFU worker's pid, participants, CPU seconds so far and counters."""
    out = []
    for worker in stats.get("workers", []):
        counters = worker.get("counters", {})
        try:
            cpu = tree_cpu_seconds(int(worker["pid"]))
        except OSError:
            cpu = 0.0
        out.append({"pid": worker["pid"], "participants": worker.get("participants"),
                    "event_loop": worker.get("event_loop"), "cpu": cpu,
                    "counters": counters})  # fmt: skip
    return out


def per_worker(
    before: list[dict[str, Any]], after: list[dict[str, Any]], elapsed: float
) -> list[dict[str, Any]]:
    """Per SFU worker over the window: CPU, forwarded and piped packets/s, pipe drops."""
    rows = []
    for b, a in zip(before, after, strict=False):
        if b["pid"] != a["pid"]:
            continue  # replaced during the window: no figure
        cpu = a["cpu"] - b["cpu"]

        def delta(key: str, b: dict[str, Any] = b, a: dict[str, Any] = a) -> int:
            return int(a["counters"].get(key, 0)) - int(b["counters"].get(key, 0))

        forwarded = delta("forwarded_packets")
        rows.append(
            {
                "pid": a["pid"],
                "participants": a["participants"],
                "event_loop": a.get("event_loop"),
                "cpu_percent": round(100 * cpu / elapsed, 1),
                "forwarded_packets_per_s": round(forwarded / elapsed, 1),
                "us_per_forwarded_packet": round(cpu / forwarded * 1e6, 2) if forwarded else None,
                "piped_packets_per_s": round(delta("piped_packets") / elapsed, 1),
                "pipe_dropped_packets": delta("pipe_dropped_packets"),
                "dropped_packets": delta("dropped_packets"),
            }
        )
    return rows


@dataclass(frozen=True, slots=True)
class Sample:
    """Counters at one edge of the window."""

    at: float
    server_cpu: float
    main_cpu: float  # the server's own process (signaling), without its workers
    generator_cpu: float
    busy: float
    total: float
    load: float
    udp: dict[str, int]

    @classmethod
    def take(cls, server_pid: int, generator_pids: list[int]) -> Sample:
        """Read everything now."""
        busy, total = machine_cpu_seconds()
        return cls(
            time.time(),
            tree_cpu_seconds(server_pid),
            cpu_seconds(server_pid),
            sum(tree_cpu_seconds(p) for p in generator_pids),
            busy,
            total,
            load_average(),
            udp_receive_errors(),
        )


def _loss(results: list[dict[str, Any]], expected_subscriptions: int) -> dict[str, Any]:
    sent: dict[tuple[str, str], int] = {}
    for result in results:
        for s in result["sent"]:
            sent[(s["publisher_id"], s["kind"])] = int(s["packets"])
    expected: dict[str, int] = defaultdict(int)
    got: dict[str, int] = defaultdict(int)
    duplicates = 0
    methods: dict[str, int] = defaultdict(int)
    counted = 0
    for result in results:
        for r in result["received"]:
            key = (r["publisher_id"], r["kind"])
            if key not in sent:
                raise BenchError(f"a subscriber counted {key}, which no publisher reported")
            counted += 1
            for group in ("all", r["kind"], r["direction"]):
                expected[group] += sent[key]
                got[group] += int(r["packets"])
            duplicates += int(r["duplicates"])
            methods[f"{r['kind']}:{r['method']}"] += 1

    def loss(group: str) -> float | None:
        if not expected[group]:
            return None
        return round(100.0 * (1 - got[group] / expected[group]), 3)

    groups = sorted(g for g in expected if g != "all")
    return {
        "loss_percent": loss("all"),
        "loss_percent_by_kind": {g: loss(g) for g in groups if g in ("audio", "video")},
        "loss_percent_by_direction": {g: loss(g) for g in groups if g not in ("audio", "video")},
        "packets": {
            "sent_in_window": sum(sent.values()),
            "expected": expected["all"],
            "received": got["all"],
            "duplicates": duplicates,
            "subscriptions_counted": counted,
            "subscriptions_expected": expected_subscriptions,
            "window_placement": dict(methods),
        },
    }


def _figures(
    options: ClassOptions,
    s0: Sample,
    s1: Sample,
    stats: tuple[dict[str, Any], dict[str, Any]],
    memory: dict[str, float],
    results: list[dict[str, Any]],
    expected_subscriptions: int,
    workers: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
) -> dict[str, Any]:
    elapsed = s1.at - s0.at
    forwarded = stats[1]["forwarded_packets"] - stats[0]["forwarded_packets"]
    forwarded_bytes = stats[1]["forwarded_bytes"] - stats[0]["forwarded_bytes"]
    server_cpu = s1.server_cpu - s0.server_cpu
    generator_cpu = s1.generator_cpu - s0.generator_cpu
    loss = _loss(results, expected_subscriptions)
    by_direction = {
        d: merge_histograms([r["latency_histograms"].get(d, []) for r in results])
        for d in {d for r in results for d in r["latency_histograms"]}
    }
    overall = merge_histograms([[[b, c] for b, c in h.items()] for h in by_direction.values()])
    latency = histogram_summary(overall)
    lag = histogram_summary(merge_histograms([r["pacer_lag_histogram"] for r in results]), 1e-4)
    handled = loss["packets"]["sent_in_window"] + loss["packets"]["received"]
    sent_in_window = loss["packets"]["sent_in_window"]
    goals = None
    if options.scenario == "class":
        goals = {
            "loss_below_0_5_percent": loss["loss_percent"] is not None
            and loss["loss_percent"] < GOAL_LOSS_PERCENT,
            "latency_p99_below_20_ms": latency["p99"] is not None and latency["p99"] < GOAL_P99_MS,
        }
    return {
        "forwarded_packets_per_s": round(forwarded / elapsed, 1),
        "forwarded_kbit_per_s": round(forwarded_bytes * 8 / elapsed / 1000, 1),
        "delivered_packets_per_s": round(loss["packets"]["received"] / options.seconds, 1),
        "expected_forwarded_packets_per_s": round(loss["packets"]["expected"] / options.seconds, 1),
        "incoming_packets_per_s": round(sent_in_window / options.seconds, 1),
        "server_cpu_us_per_forwarded_packet": (
            round(server_cpu / forwarded * 1e6, 2) if forwarded else None
        ),
        "server_cpu_percent": round(100 * server_cpu / elapsed, 1),
        "server_main_process_cpu_percent": round(100 * (s1.main_cpu - s0.main_cpu) / elapsed, 1),
        "server_workers": per_worker(workers[0], workers[1], elapsed),
        "server_memory_mib": {k: round(v, 1) for k, v in memory.items()},
        **loss,
        "latency_p50_ms": latency["p50"],
        "latency_p99_ms": latency["p99"],
        "latency_ms": latency,
        "latency_ms_by_direction": {
            d: histogram_summary(h) for d, h in sorted(by_direction.items()) if h
        },
        "goals": goals,
        "generator_cpu_percent": round(100 * generator_cpu / elapsed, 1),
        "generator_cpu_us_per_packet": round(generator_cpu / handled * 1e6, 2) if handled else None,
        "generators_cheaper_than_server": generator_cpu < server_cpu,
        "generator_pacer_lag_ms": lag,
        "generator_receive_delay_ms": histogram_summary(
            merge_histograms([r.get("receive_delay_histogram", []) for r in results])
        ),
        "latency_arrival_stamp": (
            "kernel"
            if all(r.get("kernel_stamped_packets", 0) > 0 for r in results)
            else "generator loop"
        ),
        "generator_pacer_skipped_frames": sum(r["pacer_skipped_frames"] for r in results),
        "streams_failed": [f for r in results for f in r["streams_failed"]][:20],
        "rtx_packets_received": sum(r["rtx_packets"] for r in results),
        "unknown_ssrc_packets": sum(r["unknown_ssrc_packets"] for r in results),
        "answer_sdp_bytes": {
            "aiortc_max": max(r["answer_sdp_bytes_raw_max"] for r in results),
            "sent_max": max(r["answer_sdp_bytes_sent_max"] for r in results),
        },
        "machine": {
            "cores": os.cpu_count(),
            "busy_percent_of_all_cores": round(
                100 * (s1.busy - s0.busy) / max(s1.total - s0.total, 1e-9), 1
            ),
            "others_cpu_percent_approx": round(
                100 * ((s1.busy - s0.busy) - server_cpu - generator_cpu) / elapsed, 1
            ),
            "load_average_1m": [s0.load, s1.load],
            "udp_receive_buffer_drops": s1.udp["RcvbufErrors"] - s0.udp["RcvbufErrors"],
            "udp_in_errors": s1.udp["InErrors"] - s0.udp["InErrors"],
        },
        "server_counters_delta": {
            k: stats[1][k] - stats[0][k]
            for k in (
                "keyframe_requests",
                "nacks_received",
                "retransmitted_packets",
                "piped_packets",
                "pipe_dropped_packets",
                "dropped_packets",
            )
            if k in stats[0] and k in stats[1]
        },
        "window_s": round(elapsed, 3),
        "window_unix": [round(s0.at, 3), round(s1.at, 3)],
        "errors": [e for r in results for e in r["errors"]][:20],
    }


async def _measure(
    options: ClassOptions,
    server: Server,
    generators: list[Generator],
    session: aiohttp.ClientSession,
    expected_subscriptions: int,
) -> dict[str, Any]:
    start = time.time() + options.warmup
    end = start + options.seconds
    for generator in generators:
        await generator.send({"window": [start, end]})
    if options.pin:
        pin_tree(server.pid, {0})  # workers started since are pinned too
    if options.pin_workers:
        cores = sorted(os.sched_getaffinity(0))
        for i, worker in enumerate((await server.stats(session)).get("workers", [])):
            pin_tree(int(worker["pid"]), {cores[i % len(cores)]})
    pids = [g.pid for g in generators]
    await asyncio.sleep(max(0.0, start - time.time()))
    s0 = Sample.take(server.pid, pids)
    stats0 = await server.stats(session)
    workers0 = worker_sample(stats0)
    spies = []
    if options.py_spy:
        # The server tree into FILE, each generator into FILE.gen<i> (their cost matters
        # too: they share the machine).
        spies.append(await py_spy(server.pid, options.seconds, options.py_spy))
        for i, pid in enumerate(pids):
            out = options.py_spy.with_name(f"{options.py_spy.name}.gen{i}")
            spies.append(await py_spy(pid, options.seconds, out))
    try:
        await asyncio.sleep(max(0.0, end - time.time()))
        s1 = Sample.take(server.pid, pids)
        stats1 = await server.stats(session)
        workers1 = worker_sample(stats1)
        memory = tree_memory_mib(server.pid)
        results = [await g.receive(timeout=options.seconds + 60) for g in generators]
        for spy in spies:
            await spy.wait()
    finally:
        for spy in spies:
            if spy.returncode is None:
                spy.kill()  # only on failure: it stops by itself after --duration
                await spy.wait()
    return _figures(
        options, s0, s1, (stats0, stats1), memory, results, expected_subscriptions,
        (workers0, workers1),
    )  # fmt: skip


async def run_class(options: ClassOptions) -> dict[str, Any]:
    """One run of the class or gallery scenario; returns the figures."""
    if options.pin and len(os.sched_getaffinity(0)) < 2:
        raise BenchError("--pin needs at least 2 CPUs")
    people = plan_people(options)
    gallery = gallery_on(options)
    clip_names = sorted({p.clip for p in people})
    expected_subscriptions = sum(1 for s in people for p in people if receives(s, p, gallery)) * (
        2 if options.audio else 1
    )
    env = {"PULSEROOM_MAX_PARTICIPANTS": str(min(1000, max(100, len(people) + 5)))}
    if options.sfu_workers is not None:
        env["PULSEROOM_SFU_WORKERS"] = str(options.sfu_workers)
    if options.worker_participants is not None:
        env["PULSEROOM_SFU_WORKER_PARTICIPANTS"] = str(options.worker_participants)
    if options.pin:
        os.sched_setaffinity(0, {1})  # the controller shares the generators' core
    with tempfile.TemporaryDirectory(prefix="pulseroom-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "data").mkdir()
        server = Server(
            data_dir=workdir / "data",
            log_path=workdir / "server.log",
            extra_env=env,
            cpus={0} if options.pin else None,
        )
        count = max(1, min(options.generators, len(people)))
        cores = sorted(os.sched_getaffinity(0))

        def generator_cpus(i: int) -> set[int] | None:
            if options.pin:
                return {1}
            if options.pin_workers:
                return {cores[(i + 1) % len(cores)]}
            return None

        generators = [
            Generator(
                i,
                workdir / f"classgen-{i}.log",
                "bench.classgen",
                generator_cpus(i),
                nice=options.generator_nice,
            )
            for i in range(count)
        ]
        began = time.monotonic()
        async with aiohttp.ClientSession() as session:
            clip_task = asyncio.create_task(
                asyncio.to_thread(encode_class_clips, workdir, clip_names, options.audio)
            )
            try:
                await server.start(session)
                shapes = await clip_task
                pps = {
                    n: s["video_packets_per_s"] + s["audio_packets_per_s"]
                    for n, s in shapes.items()
                }
                links = await server.create_room(session, f"bench {options.scenario}")
                plans = assign(people, options, pps)
                ready_timeout = 60.0 + 1.0 * len(people)
                host_id = ""
                for generator, plan in zip(generators, plans, strict=True):
                    await generator.start(
                        {
                            "clips": {n: str(workdir / f"{n}.clip") for n in clip_names},
                            "clients": [
                                {
                                    "name": p.name,
                                    "link": links["host_link" if p.host else "join_link"],
                                    "host": p.host,
                                    "clip": p.clip,
                                    "expected_streams": sum(
                                        1 for q in people if receives(p, q, gallery)
                                    )
                                    * (2 if options.audio else 1),
                                }
                                for p in plan
                            ],
                            "gallery": gallery,
                            "host_id": host_id,
                            "ready_timeout": ready_timeout,
                            "join_batch": options.join_batch,
                            "pacing": options.pacing,
                        }
                    )
                    message = await generator.receive(timeout=60)
                    host_id = host_id or str(message.get("host_id", ""))
                for generator in generators:
                    await generator.receive(timeout=ready_timeout + 4.0 * len(people))
                setup_s = time.monotonic() - began
                figures = await _measure(
                    options, server, generators, session, expected_subscriptions
                )
                if figures["errors"] or figures["streams_failed"]:
                    figures["server_log_tail"] = server.log_tail(3000)
            except BaseException:
                dump_logs("classgen", generators, server)
                raise
            finally:
                clip_task.cancel()  # only still running if the server failed to start
                for generator in generators:
                    await generator.stop()
                await server.stop()
    return {
        "scenario": {
            "name": options.scenario,
            "mode": (options.mode if options.scenario == "class" else "gallery"),
            "participants": options.participants,
            "people": len(people),
            "subscriptions": expected_subscriptions,
            "seconds": options.seconds,
            "warmup_s": options.warmup,
            "generator_processes": len(generators),
            "clients_per_generator": [len(p) for p in plans],
            "pinning": (
                {"server_and_descendants": [0], "generators_and_controller": [1]}
                if options.pin
                else None
            ),
            "sfu_workers_env": options.sfu_workers,
            "sfu_worker_participants_env": options.worker_participants,
            "pacing": (
                f"video at {PACE_MULTIPLIER}x its bitrate (browser-like)"
                if options.pacing
                else "off: each frame back to back"
            ),
            "workers_pinned": (
                "SFU worker i on CPU i, load generator i on CPU i + 1"
                if options.pin_workers
                else None
            ),
            "generator_nice": options.generator_nice,
            "clips": shapes,
            "setup_s": round(setup_s, 2),
        },
        **figures,
        "method": METHOD,
    }
