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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .classreport import METHOD, Sample, figures, worker_sample
from .fastpath import PACE_MULTIPLIER
from .packetized import SIMULCAST_LAYERS, clips_needed, encode_class_clips
from .procs import BenchError, Generator, Server, dump_logs, pin_tree, tree_memory_mib
from .sampling import py_spy


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
    # --simulcast: publishers send layers (bench.simulcast); subscribers report their
    # downlink with REMB (this share of the participants capped at cap_kbps, the rest at
    # high_kbps) and draw participants' videos as thumbnails (bench.downlink)
    simulcast: bool = False
    capped_share: float = 0.0
    cap_kbps: int = 400
    high_kbps: int = 5000
    thumbnail_height: int = 180
    # --py-spy records the generators too (FILE.gen<i>) unless this is off: three
    # samplers at 250 Hz cost most of a core, which a saturated machine does not have
    py_spy_generators: bool = True


@dataclass(frozen=True, slots=True)
class Person:
    """One planned client."""

    name: str
    host: bool
    clip: str
    capped: bool = False  # --simulcast: its downlink is --cap-kbps


def is_capped(index: int, share: float) -> bool:
    """Whether participant ``index`` (1-based) is capped: ``share`` of them, spread evenly
    (with 0.3: the 4th, 7th and 10th of every ten)."""
    return int(index * share + 1e-9) > int((index - 1) * share + 1e-9)


def plan_people(options: ClassOptions) -> list[Person]:
    """The host first, then the participants (the host's downlink is never capped)."""
    share = options.capped_share if options.simulcast else 0.0
    if options.scenario == "class":
        people = [Person("instructor", True, "instructor")]
        people += [
            Person(f"p{i}", False, "participant", is_capped(i, share))
            for i in range(1, options.participants + 1)
        ]
        return people
    return [Person("host", True, "participant")] + [
        Person(f"p{i}", False, "participant", is_capped(i, share))
        for i in range(1, options.participants)
    ]


def downlink(person: Person, options: ClassOptions) -> dict[str, Any] | None:
    """The ``downlink`` a generator client plays (``bench.downlink.DownlinkSpec``)."""
    if not options.simulcast:
        return None
    return {
        "cap_bps": options.cap_kbps * 1000 if person.capped else None,
        "high_bps": options.high_kbps * 1000,
        "thumbnail_height": options.thumbnail_height,
    }


def publisher_rates(
    shapes: dict[str, dict[str, float]], simulcast: bool
) -> dict[str, dict[str, float]]:
    """Packets/s each kind of publisher sends (with simulcast: all its layers)."""
    rates = {}
    for name in ("instructor", "participant"):
        layers = [c for _r, c in SIMULCAST_LAYERS[name]] if simulcast else [name]
        if all(c in shapes for c in layers):
            rates[name] = {
                "video_packets_per_s": sum(shapes[c]["video_packets_per_s"] for c in layers),
                "audio_packets_per_s": shapes[layers[0]]["audio_packets_per_s"],
            }
    return rates


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
        for i, pid in enumerate(pids if options.py_spy_generators else []):
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
    return figures(
        options.scenario, options.seconds, (s0, s1), (stats0, stats1), memory, results,
        expected_subscriptions, (workers0, workers1),
    )  # fmt: skip


def _server_env(options: ClassOptions, people: int) -> dict[str, str]:
    env = {"PULSEROOM_MAX_PARTICIPANTS": str(min(1000, max(100, people + 5)))}
    if options.sfu_workers is not None:
        env["PULSEROOM_SFU_WORKERS"] = str(options.sfu_workers)
    if options.worker_participants is not None:
        env["PULSEROOM_SFU_WORKER_PARTICIPANTS"] = str(options.worker_participants)
    return env


def _generators(options: ClassOptions, workdir: Path, people: int) -> list[Generator]:
    count = max(1, min(options.generators, people))
    cores = sorted(os.sched_getaffinity(0))

    def cpus(i: int) -> set[int] | None:
        if options.pin:
            return {1}
        if options.pin_workers:
            return {cores[(i + 1) % len(cores)]}
        return None

    return [
        Generator(
            i, workdir / f"classgen-{i}.log", "bench.classgen", cpus(i), nice=options.generator_nice
        )
        for i in range(count)
    ]


async def _start_generators(
    options: ClassOptions,
    generators: list[Generator],
    people: list[Person],
    links: dict[str, Any],
    clips: dict[str, str],
    pps: dict[str, float],
) -> None:
    """Hand each generator its clients (the host's first) and wait until all are ready."""
    gallery = gallery_on(options)
    ready_timeout = 60.0 + 1.0 * len(people)
    host_id = ""
    per_kind = 2 if options.audio else 1
    for generator, plan in zip(generators, assign(people, options, pps), strict=True):
        clients = [
            {
                "name": p.name,
                "link": links["host_link" if p.host else "join_link"],
                "host": p.host,
                "clip": p.clip,
                "expected_streams": sum(1 for q in people if receives(p, q, gallery)) * per_kind,
                "downlink": downlink(p, options),
            }
            for p in plan
        ]
        await generator.start(
            {
                "clips": clips, "clients": clients, "gallery": gallery, "host_id": host_id,
                "ready_timeout": ready_timeout, "join_batch": options.join_batch,
                "pacing": options.pacing, "simulcast": options.simulcast,
            }
        )  # fmt: skip
        message = await generator.receive(timeout=60)
        host_id = host_id or str(message.get("host_id", ""))
    for generator in generators:
        await generator.receive(timeout=ready_timeout + 4.0 * len(people))


async def run_class(options: ClassOptions) -> dict[str, Any]:
    """One run of the class or gallery scenario; returns the figures."""
    if options.pin and len(os.sched_getaffinity(0)) < 2:
        raise BenchError("--pin needs at least 2 CPUs")
    people = plan_people(options)
    gallery = gallery_on(options)
    clip_names = clips_needed([p.clip for p in people], options.simulcast)
    expected_subscriptions = sum(1 for s in people for p in people if receives(s, p, gallery)) * (
        2 if options.audio else 1
    )
    if options.pin:
        os.sched_setaffinity(0, {1})  # the controller shares the generators' core
    with tempfile.TemporaryDirectory(prefix="pulseroom-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "data").mkdir()
        server = Server(
            data_dir=workdir / "data",
            log_path=workdir / "server.log",
            extra_env=_server_env(options, len(people)),
            cpus={0} if options.pin else None,
        )
        generators = _generators(options, workdir, len(people))
        began = time.monotonic()
        async with aiohttp.ClientSession() as session:
            clip_task = asyncio.create_task(
                asyncio.to_thread(encode_class_clips, workdir, clip_names, options.audio)
            )
            try:
                await server.start(session)
                shapes = await clip_task
                rates = publisher_rates(shapes, options.simulcast)
                pps = {
                    n: r["video_packets_per_s"] + r["audio_packets_per_s"] for n, r in rates.items()
                }
                links = await server.create_room(session, f"bench {options.scenario}")
                clips = {n: str(workdir / f"{n}.clip") for n in clip_names}
                await _start_generators(options, generators, people, links, clips, pps)
                setup_s = time.monotonic() - began
                report = await _measure(
                    options, server, generators, session, expected_subscriptions
                )
                if report["errors"] or report["streams_failed"]:
                    report["server_log_tail"] = server.log_tail(3000)
            except BaseException:
                dump_logs("classgen", generators, server)
                raise
            finally:
                clip_task.cancel()  # only still running if the server failed to start
                for generator in generators:
                    await generator.stop()
                await server.stop()
    scenario = _scenario(options, people, expected_subscriptions, generators)
    scenario.update({"clients_per_generator": [len(p) for p in assign(people, options, pps)],
                     "clips": shapes, "setup_s": round(setup_s, 2)})  # fmt: skip
    return {"scenario": scenario, **report, "method": METHOD}


def _scenario(
    options: ClassOptions,
    people: list[Person],
    expected_subscriptions: int,
    generators: list[Generator],
) -> dict[str, Any]:
    """The report's ``scenario``: what ran."""
    return {
        "name": options.scenario,
        "mode": (options.mode if options.scenario == "class" else "gallery"),
        "participants": options.participants,
        "people": len(people),
        "subscriptions": expected_subscriptions,
        "seconds": options.seconds,
        "warmup_s": options.warmup,
        "generator_processes": len(generators),
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
            "SFU worker i on CPU i, load generator i on CPU i + 1" if options.pin_workers else None
        ),
        "generator_nice": options.generator_nice,
        "simulcast": (
            {
                "layers": {
                    n: [r for r, _c in SIMULCAST_LAYERS[n]] for n in ("instructor", "participant")
                },
                "capped_participants": sum(p.capped for p in people),
                "cap_kbps": options.cap_kbps,
                "high_kbps": options.high_kbps,
                "thumbnail_height": options.thumbnail_height,
            }
            if options.simulcast
            else None
        ),
    }
