"""Smoke test of the SFU benchmark: it runs end to end and reports sane figures.

Not a timing test: the numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

EXPECTED_KEYS = {
    "scenario",
    "forwarded_packets_per_s",
    "server_cpu_s_per_1000_packets",
    "server_rss_mib",
    "loss_percent",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_ms",
    "generator_cpu_percent",
    "machine",
    "method",
}


def test_bench_sfu_two_publishers() -> None:
    """``python -m bench.sfu --publishers 2 --seconds 4 --json`` forwards with little loss."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.sfu", "--publishers", "2", "--seconds", "4", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    missing = EXPECTED_KEYS - report.keys()
    assert not missing, missing
    assert report["scenario"]["publishers"] == 2
    assert report["forwarded_packets_per_s"] > 0
    assert report["loss_percent"] is not None
    assert report["loss_percent"] < 50
    assert report["server_cpu_s_per_1000_packets"] is not None
    assert report["server_rss_mib"] > 0
    assert report["latency_ms"]["samples"] > 0


def test_abs_send_latency_wraps_at_64_seconds() -> None:
    """A stamp taken just before the 24-bit clock wrapped still gives a small latency."""
    from bench.loadgen import NTP_UNIX_OFFSET, abs_send_latency

    now = 1_700_000_000.0
    stamp = int((now - 0.004 + NTP_UNIX_OFFSET) * (1 << 18)) & 0xFFFFFF
    assert abs(abs_send_latency(stamp, now) - 0.004) < 1e-5
    wrapped_now = (int(now + NTP_UNIX_OFFSET) // 64 + 1) * 64 - NTP_UNIX_OFFSET + 0.001
    stamp = int((wrapped_now - 0.003 + NTP_UNIX_OFFSET) * (1 << 18)) & 0xFFFFFF
    assert abs(abs_send_latency(stamp, wrapped_now) - 0.003) < 1e-5


def test_percentile_nearest_rank() -> None:
    """p50 and p99 of 1..100 are 50 and 99; an empty list has none."""
    from bench.sfu import percentile

    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_profile_summary_charges_the_deepest_stage() -> None:
    """A sample under Consumer.forward → _send_rtp counts as egress, epoll waits are left out."""
    from bench.profile import STAGES, stage_of, summarize

    send = [
        "run_app (aiohttp/web.py:1)",
        "Consumer.forward (sfu/forwarder.py:2)",
        "RTCDtlsTransport._send_rtp (aiortc/rtcdtlstransport.py:3)",
        "Session.__process (pylibsrtp/__init__.py:4)",
    ]
    assert stage_of(send) == "egress: SRTP protect + ICE send"
    assert stage_of(["run_app (aiohttp/web.py:1)"]) == "event loop and everything else"
    text = summarize(
        [(send, 3), (["run_app (aiohttp/web.py:1)", "EpollSelector.select (selectors.py:5)"], 7)]
    )
    assert text.startswith("3 busy samples (7 more")
    assert len(STAGES) > 5
