"""The figures of one class or gallery run, from what was sampled at the window's edges.

``bench.classbench`` runs the class and samples the server, the generators and the
machine at both edges of the measuring window (``Sample``, ``worker_sample``) and gathers
every generator's result; ``figures`` turns that into the report: forwarded packets/s,
server CPU per forwarded and per received packet, loss, latency, memory, the
generators' own cost, contention, and with ``--simulcast`` the layers
(``bench.layerreport``).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .fastpath import histogram_summary, merge_histograms
from .layerreport import simulcast_figures
from .procs import (
    BenchError,
    cpu_seconds,
    load_average,
    machine_cpu_seconds,
    tree_cpu_seconds,
    udp_receive_errors,
    udp_socket_drops,
)

GOAL_LOSS_PERCENT = 0.5
GOAL_P99_MS = 20.0
SERVER_COUNTERS = (
    "received_packets",
    "keyframe_requests",
    "nacks_received",
    "retransmitted_packets",
    "piped_packets",
    "pipe_dropped_packets",
    "dropped_packets",
    "layer_switches",
    "probe_packets",
    "probe_bytes",
)

METHOD = {
    "forwarded_packets_per_s": "delta of /api/stats forwarded_packets over the window / its length",
    "server_cpu": "delta of utime+stime(+cutime+cstime) summed over the server process and all "
    "its descendants (ppid links in /proc/*/stat), over the same window; per forwarded packet "
    "(/api/stats forwarded_packets) and per received packet (received_packets: RTP from "
    "publishers)",
    "loss": "1 - distinct packets received / packets sent, per subscription, for packets sent "
    "inside the window; video placed by its abs-send-time stamp, audio by the RTP marker the "
    "publisher sets on its first packet at or after each window edge; simulcast video: the "
    "packets sent are the sequence numbers the SFU gave the subscription from its first to "
    "its last packet stamped inside the window (it numbers on without a gap across layer "
    "switches; copies it drops for a full subscriber queue are numbered over and show only "
    "in server_counters_delta.dropped_packets)",
    "latency": "video only: subscriber's datagram arrival (before any decryption) minus the "
    "abs-send-time the publisher stamped right before SRTP and sendto; same machine clock; "
    "arrival is the kernel's SO_TIMESTAMPNS stamp on the subscriber's socket (how late the "
    "generator's own event loop then read it is generator_receive_delay_ms); "
    "10 us histogram buckets, upper edges reported; simulcast: the stamp carries the layer "
    "in its 2 low bits, moved back by up to 3 units (11.4 us)",
    "generators": "aiortc only negotiates; RTP is written by hand from pre-packetized frames, "
    "SRTP-protected and sent with sendto; subscribers read the clear RTP header of the "
    "encrypted datagram at aioice's callback and never decrypt",
    "layers": "simulcast: per layer, packets each publisher sent inside the window, and "
    "distinct packets subscribers received stamped inside it, told apart by the layer index "
    "in abs-send-time's low bits (the SFU sends every layer of a video to a subscriber "
    "under one SSRC); layer switches and probes from /api/stats",
}


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
    """Per SFU worker over the window: CPU, forwarded, received and piped packets/s, drops,
    layer switches and probes."""
    rows = []
    for b, a in zip(before, after, strict=False):
        if b["pid"] != a["pid"]:
            continue  # replaced during the window: no figure
        cpu = a["cpu"] - b["cpu"]

        def delta(key: str, b: dict[str, Any] = b, a: dict[str, Any] = a) -> int:
            return int(a["counters"].get(key, 0)) - int(b["counters"].get(key, 0))

        forwarded = delta("forwarded_packets")
        received = delta("received_packets")
        rows.append(
            {
                "pid": a["pid"],
                "participants": a["participants"],
                "event_loop": a.get("event_loop"),
                "cpu_percent": round(100 * cpu / elapsed, 1),
                "forwarded_packets_per_s": round(forwarded / elapsed, 1),
                "us_per_forwarded_packet": round(cpu / forwarded * 1e6, 2) if forwarded else None,
                "received_packets_per_s": round(received / elapsed, 1),
                "us_per_received_packet": round(cpu / received * 1e6, 2) if received else None,
                "piped_packets_per_s": round(delta("piped_packets") / elapsed, 1),
                "pipe_dropped_packets": delta("pipe_dropped_packets"),
                "dropped_packets": delta("dropped_packets"),
                "layer_switches": delta("layer_switches"),
                "probe_packets": delta("probe_packets"),
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
    server_socket_drops: int = 0
    generator_socket_drops: int = 0

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
            udp_socket_drops(server_pid),
            sum(udp_socket_drops(p) for p in generator_pids),
        )


def _sent_in_window(results: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Packets each publisher sent inside the window, per kind (simulcast layers summed)."""
    sent: dict[tuple[str, str], int] = defaultdict(int)
    for result in results:
        for s in result["sent"]:
            sent[(s["publisher_id"], s["kind"])] += int(s["packets"])
    return sent


def loss(results: list[dict[str, Any]], expected_subscriptions: int) -> dict[str, Any]:
    """Loss per subscription summed overall, per kind and per direction."""
    sent = _sent_in_window(results)
    expected: dict[str, int] = defaultdict(int)
    got: dict[str, int] = defaultdict(int)
    duplicates = 0
    methods: dict[str, int] = defaultdict(int)
    counted = 0
    empty_layered = 0  # simulcast video with nothing inside the window: its loss is unknown
    for result in results:
        for r in result["received"]:
            key = (r["publisher_id"], r["kind"])
            if key not in sent:
                raise BenchError(f"a subscriber counted {key}, which no publisher reported")
            counted += 1
            # Simulcast video: what the SFU numbered for this subscription (its layers).
            reference = r.get("expected")
            empty_layered += reference is not None and not r["packets"]
            for group in ("all", r["kind"], r["direction"]):
                expected[group] += sent[key] if reference is None else int(reference)
                got[group] += int(r["packets"])
            duplicates += int(r["duplicates"])
            methods[f"{r['kind']}:{r['method']}"] += 1

    def percent(group: str) -> float | None:
        if not expected[group]:
            return None
        return round(100.0 * (1 - got[group] / expected[group]), 3)

    groups = sorted(g for g in expected if g != "all")
    return {
        "loss_percent": percent("all"),
        "loss_percent_by_kind": {g: percent(g) for g in groups if g in ("audio", "video")},
        "loss_percent_by_direction": {g: percent(g) for g in groups if g not in ("audio", "video")},
        "packets": {
            "sent_in_window": sum(sent.values()),
            "expected": expected["all"],
            "received": got["all"],
            "duplicates": duplicates,
            "subscriptions_counted": counted,
            "subscriptions_expected": expected_subscriptions,
            "window_placement": dict(methods),
            "layered_subscriptions_without_packets": empty_layered,
        },
    }


def _latency(results: list[dict[str, Any]]) -> dict[str, Any]:
    by_direction = {
        d: merge_histograms([r["latency_histograms"].get(d, []) for r in results])
        for d in {d for r in results for d in r["latency_histograms"]}
    }
    overall = merge_histograms([[[b, c] for b, c in h.items()] for h in by_direction.values()])
    latency = histogram_summary(overall)
    return {
        "latency_p50_ms": latency["p50"],
        "latency_p99_ms": latency["p99"],
        "latency_ms": latency,
        "latency_ms_by_direction": {
            d: histogram_summary(h) for d, h in sorted(by_direction.items()) if h
        },
    }


def _generators(
    results: list[dict[str, Any]], generator_cpu: float, server_cpu: float, handled: int,
    elapsed: float,
) -> dict[str, Any]:  # fmt: skip
    lag = histogram_summary(merge_histograms([r["pacer_lag_histogram"] for r in results]), 1e-4)
    return {
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
    }


def _machine(s0: Sample, s1: Sample, server_cpu: float, generator_cpu: float) -> dict[str, Any]:
    elapsed = s1.at - s0.at
    return {
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
        # Of those, at the server's sockets and at the generators' (sockets open at both
        # edges; one closed inside the window takes its count along)
        "udp_drops_at_server_sockets": s1.server_socket_drops - s0.server_socket_drops,
        "udp_drops_at_generator_sockets": s1.generator_socket_drops - s0.generator_socket_drops,
    }


def figures(
    scenario: str,
    seconds: float,
    samples: tuple[Sample, Sample],
    stats: tuple[dict[str, Any], dict[str, Any]],
    memory: dict[str, float],
    results: list[dict[str, Any]],
    expected_subscriptions: int,
    workers: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
) -> dict[str, Any]:
    """The report's figures (everything but the scenario and the method)."""
    s0, s1 = samples
    elapsed = s1.at - s0.at
    counters = {
        k: stats[1][k] - stats[0][k] for k in SERVER_COUNTERS if k in stats[0] and k in stats[1]
    }
    forwarded = stats[1]["forwarded_packets"] - stats[0]["forwarded_packets"]
    forwarded_bytes = stats[1]["forwarded_bytes"] - stats[0]["forwarded_bytes"]
    received = counters.get("received_packets", 0)
    server_cpu = s1.server_cpu - s0.server_cpu
    generator_cpu = s1.generator_cpu - s0.generator_cpu
    lost = loss(results, expected_subscriptions)
    latency = _latency(results)
    sent_in_window = lost["packets"]["sent_in_window"]
    goals = None
    if scenario == "class":
        goals = {
            "loss_below_0_5_percent": lost["loss_percent"] is not None
            and lost["loss_percent"] < GOAL_LOSS_PERCENT,
            "latency_p99_below_20_ms": latency["latency_p99_ms"] is not None
            and latency["latency_p99_ms"] < GOAL_P99_MS,
        }
    report: dict[str, Any] = {
        "forwarded_packets_per_s": round(forwarded / elapsed, 1),
        "forwarded_kbit_per_s": round(forwarded_bytes * 8 / elapsed / 1000, 1),
        "delivered_packets_per_s": round(lost["packets"]["received"] / seconds, 1),
        "expected_forwarded_packets_per_s": round(lost["packets"]["expected"] / seconds, 1),
        "incoming_packets_per_s": round(sent_in_window / seconds, 1),
        "server_cpu_us_per_forwarded_packet": (
            round(server_cpu / forwarded * 1e6, 2) if forwarded else None
        ),
        "server_cpu_us_per_received_packet": (
            round(server_cpu / received * 1e6, 2) if received else None
        ),
        "server_cpu_percent": round(100 * server_cpu / elapsed, 1),
        "server_main_process_cpu_percent": round(100 * (s1.main_cpu - s0.main_cpu) / elapsed, 1),
        "server_workers": per_worker(workers[0], workers[1], elapsed),
        "server_memory_mib": {k: round(v, 1) for k, v in memory.items()},
        **lost,
        **latency,
        "goals": goals,
        **_generators(
            results,
            generator_cpu,
            server_cpu,
            sent_in_window + lost["packets"]["received"],
            elapsed,
        ),
        "machine": _machine(s0, s1, server_cpu, generator_cpu),
        "server_counters_delta": counters,
        "window_s": round(elapsed, 3),
        "window_unix": [round(s0.at, 3), round(s1.at, 3)],
        "errors": [e for r in results for e in r["errors"]][:20],
    }
    if any(r.get("downlinks") for r in results):
        report["simulcast"] = simulcast_figures(results, counters, seconds, elapsed)
        # Most switches happen while the class joins and settles, before the window.
        report["simulcast"]["since_server_start"] = {
            k: stats[1].get(k) for k in ("layer_switches", "probe_packets", "keyframe_requests")
        }
    return report
