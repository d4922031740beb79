"""Smoke test of the recording benchmark: it runs end to end, for both codecs, and what
it recorded is there. Not a timing test: the figures depend on the machine."""

from __future__ import annotations

import pytest

from tests.test_bench import run_json


@pytest.mark.timeout(90)
def test_bench_recording_records_both_codecs_and_reports_its_cpu() -> None:
    report = run_json(
        "bench.recording", "--seconds", "2", "--clip", "0.5", "--width", "320",
        "--height", "180", "--no-baseline", "--json",
    )  # fmt: skip
    assert report["scenario"]["seconds"] == 2.0
    for codec, suffix in (("vp8", ".webm"), ("h264", ".mkv")):
        figures = report[codec]
        assert figures["file"].endswith(suffix), figures
        assert figures["file_pictures"] == 2 * 30, figures  # every picture sent, written
        assert 1.5 < figures["file_s"] < 5.0, figures  # paced: a loaded machine lags
        assert figures["packets"] >= 60 + 100, figures  # pictures and 20 ms Opus frames
        assert 0 < figures["recorder_cpu_s"] < 2.0, figures
        assert figures["percent_of_a_core"] == pytest.approx(
            100 * figures["recorder_cpu_s"] / 2, abs=0.01
        )
