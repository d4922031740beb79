"""Real aiortc peers (the ``pulseroom bot`` command) in a class through a real server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, RunningServer, start_server, stop_server


async def run_bot(link: str, name: str, seconds: float, *extra: str) -> dict[str, Any]:
    """Run ``pulseroom bot --json`` as its own process and return its report."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pulseroom.cli",
        "bot",
        link,
        "--seconds",
        str(seconds),
        "--name",
        name,
        "--json",
        *extra,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
    assert process.returncode == 0, f"bot {name} failed:\n{stderr.decode()[-3000:]}"
    report: dict[str, Any] = json.loads(stdout)
    return report


def received(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(publisher name, kind) → track figures, for tracks that really carried media."""
    return {(t["publisher"], t["kind"]): t for t in report["tracks"]}


def assert_flowing(
    tracks: dict[tuple[str, str], dict[str, Any]], expected: set[tuple[str, str]]
) -> None:
    assert set(tracks) == expected, f"expected {sorted(expected)}, got {sorted(tracks)}"
    for key, track in tracks.items():
        assert track["packets"] > 20, f"{key}: {track}"
        assert track["bytes"] > 1000, f"{key}: {track}"
        assert track["frames"] > 5, f"{key}: {track}"
        assert (
            track["time_to_first_frame_s"] is not None and track["time_to_first_frame_s"] < 3.0
        ), f"{key}: {track}"


async def class_of_four(server: RunningServer, gallery: bool) -> list[dict[str, Any]]:
    room = server.create_room("Bots")
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    extra = ("--gallery",) if gallery else ()
    host = asyncio.create_task(run_bot(host_link, "Coach", 14, *extra))
    await asyncio.sleep(2.5)
    participants = [
        asyncio.create_task(run_bot(join_link, name, 9)) for name in ("Ann", "Bob", "Cy")
    ]
    return [await host, *[await p for p in participants]]


@pytest.mark.timeout(120)
async def test_instructor_mode_topology(server: RunningServer) -> None:
    host, *participants = await class_of_four(server, gallery=False)
    kinds = ("audio", "video")
    assert_flowing(received(host), {(n, k) for n in ("Ann", "Bob", "Cy") for k in kinds})
    for report in participants:
        assert_flowing(received(report), {("Coach", k) for k in kinds})
    assert server.stats()["forwarded_packets"] > 2000


@pytest.mark.timeout(120)
async def test_gallery_mode_topology(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        host, *participants = await class_of_four(server, gallery=True)
        names = ("Ann", "Bob", "Cy")
        kinds = ("audio", "video")
        assert_flowing(received(host), {(n, k) for n in names for k in kinds})
        for report in participants:
            me = report["you"]["name"]
            expected = {(n, k) for n in ("Coach", *names) if n != me for k in kinds}
            assert_flowing(received(report), expected)
    finally:
        stop_server(server)


def test_bot_refuses_a_bad_link() -> None:
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pulseroom.cli",
            "bot",
            "http://127.0.0.1:9/nowhere",
            "--seconds",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not a class link" in result.stderr
