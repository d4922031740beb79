"""Smoke test of the SFU benchmark: it runs end to end and reports sane figures.

Not a timing test: the numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def run_json(module: str, *args: str) -> dict[str, Any]:
    """``python -m module args...`` (at most 60 s); its JSON report."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_bench_sfu_two_publishers() -> None:
    """``python -m bench.sfu --publishers 2 --seconds 4 --json`` forwards with little loss."""
    report = run_json("bench.sfu", "--publishers", "2", "--seconds", "4", "--json")
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
    direct = [
        "Consumer.send (sfu/consumer.py:2)",
        "_direct_srtp.<locals>.process (sfu/aiortc_adapter.py:3)",
    ]
    assert stage_of(direct) == "egress: SRTP protect"
    direct[0] = "take_datagrams.<locals>._fast (sfu/aiortc_adapter.py:1)"
    assert stage_of(direct) == "ingress: SRTP unprotect"
    text = summarize(
        [(send, 3), (["run_app (aiohttp/web.py:1)", "EpollSelector.select (selectors.py:5)"], 7)]
    )
    assert text.startswith("3 busy samples (7 more")
    assert len(STAGES) > 5


CLASS_KEYS = {
    "scenario",
    "forwarded_packets_per_s",
    "server_cpu_us_per_forwarded_packet",
    "server_cpu_percent",
    "server_memory_mib",
    "loss_percent",
    "loss_percent_by_kind",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_ms",
    "goals",
    "generator_cpu_percent",
    "generators_cheaper_than_server",
    "machine",
    "method",
}


def test_bench_class_smoke() -> None:
    """``--scenario class --participants 4 --seconds 4``: every subscription is counted."""
    report = run_json(
        "bench.sfu", "--scenario", "class", "--participants", "4", "--seconds", "4", "--json"
    )
    missing = CLASS_KEYS - report.keys()
    assert not missing, missing
    scenario = report["scenario"]
    assert (scenario["name"], scenario["mode"], scenario["people"]) == ("class", "instructor", 5)
    # instructor <-> 4 participants, audio + video each way
    assert scenario["subscriptions"] == 16
    assert report["packets"]["subscriptions_counted"] == 16
    assert report["forwarded_packets_per_s"] > 0
    assert report["loss_percent"] is not None
    assert report["loss_percent"] < 50
    assert report["server_cpu_us_per_forwarded_packet"] is not None
    assert report["server_memory_mib"]["rss_mib"] > 0
    assert report["latency_ms"]["samples"] > 0
    assert report["generator_cpu_percent"] >= 0
    assert set(report["goals"]) == {"loss_below_0_5_percent", "latency_p99_below_20_ms"}


def test_bench_floor_smoke() -> None:
    """``python -m bench.floor``: stock aiortc's CPU per packet sent and received."""
    report = run_json("bench.floor", "--streams", "2", "--seconds", "3", "--warmup", "1", "--json")
    for side in ("send", "receive"):
        assert report[side]["packets"] > 0
        assert report[side]["us_per_packet"] is not None
        assert 0 < report[side]["us_per_packet"] < 100_000


def test_receive_tap_counts_clear_headers() -> None:
    """The tap reads SSRC, sequence number and abs-send-time without decrypting."""
    import time

    from bench.fastpath import UNITS, Histogram, Window, abs_units
    from bench.tap import InStream, ReceiveTap
    from sfu import packet as rtp

    now = time.time()
    window = Window.from_unix(now - 1, now + 1)
    histograms = {"d": Histogram()}
    tap = ReceiveTap(histograms, Histogram())
    tap.window = window
    video = InStream("0", "video", "pub", "d", abs_id=3)
    tap.by_ssrc[1234] = video
    tap.rtx_ssrcs.add(99)
    stamp = abs_units(now - 0.002) & 0xFFFFFF
    ext = bytes((0x32, stamp >> 16 & 0xFF, stamp >> 8 & 0xFF, stamp & 0xFF))
    mid = rtp.mid_element(1, "0")
    for seq in (10, 11, 11):
        data = rtp.write(0, 0, 96, seq, 5, 1234, mid, ext, b"\x00" * 100 + b"auth-tag")
        tap.count(data)
    tap.count(rtp.write(0, 0, 97, 1, 5, 99, b"", b"", b"x"))
    tap.count(rtp.write(0, 0, 97, 1, 5, 7, b"", b"", b"x"))
    assert video.received_in_window() == (2, "abs-send-time")
    assert video.duplicates == 1
    assert (tap.rtx_packets, tap.unknown_packets) == (1, 1)
    counts = histograms["d"].counts
    assert sum(counts.values()) == 2
    assert all(0.0015 < b * histograms["d"].bucket < 0.1 for b in counts)
    assert UNITS == 1 << 18


def test_audio_window_by_markers() -> None:
    """Audio counts the distinct sequence numbers from the first marker to the second."""
    from bench.tap import InStream

    stream = InStream("1", "audio", "pub", "d", abs_id=0)
    stream.audio_seqs = {65530, 65531, 65533, 65534, 65535, 0, 1, 2, 3}
    stream.markers = [(65531, 1.0), (2, 2.0)]
    # 65531..1 is 7 sequence numbers, 65532 is missing: 6 received
    assert stream.received_in_window() == (6, "markers")
    stream.markers = stream.markers[:1]
    stream.arrived_in_window = {1, 2}
    assert stream.received_in_window() == (2, "arrival")


def test_compact_answer_keeps_what_aiortc_needs() -> None:
    """The compacted answer parses to the same media, ICE and DTLS parameters."""
    from aiortc.sdp import SessionDescription

    from bench.classgen import compact_answer

    media = (
        "m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 1.2.3.4\r\na=recvonly\r\na=mid:{mid}\r\n"
        "a=msid:a b\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=ssrc:1 cname:x\r\n"
        "a=rtpmap:97 VP8/90000\r\n"
        "a=candidate:1 1 udp 2130706431 1.2.3.4 5000 typ host\r\na=end-of-candidates\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
        "a=fingerprint:sha-256 AA:BB\r\na=fingerprint:sha-512 CC:DD\r\na=setup:active"
    )
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
        + "\r\n".join(media.format(mid=m) for m in (0, 1))
        + "\r\n"
    )
    compact = compact_answer(sdp)
    assert len(compact) < len(sdp)
    assert "sha-512" not in compact and "a=ssrc" not in compact
    parsed = SessionDescription.parse(compact)
    assert [m.rtp.muxId for m in parsed.media] == ["0", "1"]
    for m in parsed.media:
        assert m.ice is not None and m.dtls is not None
        assert m.ice.usernameFragment == "abcd"
        assert [f.algorithm for f in m.dtls.fingerprints] == ["sha-256"]
        assert m.dtls.role == "client"
    assert len(parsed.media[0].ice_candidates) == 1
    assert parsed.media[1].ice_candidates == []


def test_class_plan_and_balance() -> None:
    """Instructor mode: the instructor sees everyone, participants only the instructor."""
    from bench.classbench import ClassOptions, assign, gallery_on, plan_people, receives

    options = ClassOptions(
        scenario="class",
        participants=10,
        mode="instructor",
        seconds=1,
        warmup=1,
        generators=2,
        audio=True,
        pin=False,
        py_spy=None,
        sfu_workers=None,
    )
    people = plan_people(options)
    host, p1, p2 = people[0], people[1], people[2]
    assert host.host and host.clip == "instructor" and len(people) == 11
    assert receives(host, p1, False) and receives(p1, host, False)
    assert not receives(p1, p2, False) and receives(p1, p2, True)
    assert not receives(p1, p1, True)
    assert not gallery_on(options)
    plans = assign(people, options, {"instructor": 211.5, "participant": 115.25})
    assert plans[0][0] is host
    assert sum(len(p) for p in plans) == 11
    assert len(plans[0]) < len(plans[1])  # the instructor's process takes fewer others


def test_histogram_summary_upper_edges() -> None:
    """Percentiles come from bucket upper edges, in milliseconds."""
    from bench.fastpath import Histogram, histogram_summary, merge_histograms

    h = Histogram()
    for value in (0.001, 0.001, 0.002, 0.0105):
        h.add(value)
    summary = histogram_summary(merge_histograms([h.to_json(), h.to_json()]))
    assert summary["samples"] == 8
    assert summary["p50"] == 1.01
    assert summary["max"] == 10.51
    assert histogram_summary({})["p50"] is None


def test_paced_video_leaves_at_two_and_a_half_times_its_bitrate() -> None:
    """``--pacing on``: a frame's packets are spread like libwebrtc's pacer; off: at once."""
    from types import SimpleNamespace

    from bench.fastpath import PACE_MULTIPLIER, OutStream
    from bench.packetized import PacketizedStream
    from sfu.aiortc_adapter import Egress

    sent: list[bytes] = []
    egress = Egress(lambda d: d, lambda d, _a: sent.append(d), None, lambda: 0)
    # 10 payloads of 1,000 bytes, 30 frames/s: 2.4 Mbit/s, paced at 6 Mbit/s (1.33 ms each)
    frames = ((b"\x00" * 1000,) * 10,)
    media = PacketizedStream("video", 90000, 3000, frames)

    def stream(kind: str, pacing: bool) -> OutStream:
        shaped = media if kind == "video" else PacketizedStream("audio", 48000, 960, frames)
        sender: Any = SimpleNamespace(_ssrc=1)
        return OutStream(shaped, egress, sender, 96, {}, "0", "pub", pacing=pacing)

    assert PACE_MULTIPLIER == 2.5
    paced = stream("video", True)
    t0 = paced.send_frame()
    assert t0 is not None and sent == []
    # Due at 0, 1.33, 2.67, 4.0, 5.33 ... ms; a wake-up sends what is due within 5 ms.
    assert paced.send_due(t0) == pytest.approx(t0 + 4 * 1000 / 750_000)
    assert len(sent) == 4
    paced.send_due(t0 + 0.006)  # 5.33 to 10.67 ms
    assert len(sent) == 9
    assert paced.send_due(t0 + 0.02) is None and len(sent) == 10
    assert [d[1] >> 7 for d in sent] == [0] * 9 + [1]  # the marker ends the frame
    sent.clear()
    assert stream("video", False).send_frame() is None and len(sent) == 10
    sent.clear()
    assert stream("audio", True).send_frame() is None and len(sent) == 10


# -- simulcast (--simulcast) -----------------------------------------------------------


async def _aiortc_offer() -> tuple[Any, str]:
    """A publishing aiortc connection (idle audio + video, as the generators make it) and
    its offer text."""
    from aiortc import RTCPeerConnection

    from sfu import aiortc_adapter as adapter

    pc = RTCPeerConnection()
    for kind in ("audio", "video"):
        pc.addTransceiver(adapter.IdleTrack(kind), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_simulcast_offer_is_what_the_sfu_accepts() -> None:
    """The munged offer carries q/h/f as a browser's does, the SFU's parser reads it, and
    aiortc on both sides takes the offer and the SFU's simulcast answer."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.sdp import SessionDescription

    from bench.simulcast import offer_simulcast
    from sfu import simulcast

    pc, sdp = await _aiortc_offer()
    sfu_pc = RTCPeerConnection()
    try:
        munged, rid_id = offer_simulcast(sdp, ["q", "h", "f"])
        video = munged[munged.index("m=video") :]
        assert "a=ssrc" not in video and "a=ssrc" in munged[: munged.index("m=video")]
        assert "a=simulcast:send q;h;f" in video and "a=rid:h send" in video
        ids = [int(line.split(":")[1].split()[0]) for line in video.split("\r\n")
               if line.startswith("a=extmap:")]  # fmt: skip
        assert len(ids) == len(set(ids)) and all(1 <= i <= 14 for i in ids)
        offered = simulcast.offered_layers(munged)
        assert len(offered) == 1
        (layers,) = offered.values()
        assert layers.rids == ("q", "h", "f") and layers.rid_id == rid_id
        assert layers.rrid_id is not None and layers.rrid_id != rid_id
        assert [m.kind for m in SessionDescription.parse(munged).media] == ["audio", "video"]
        await sfu_pc.setRemoteDescription(RTCSessionDescription(sdp=munged, type="offer"))
        await sfu_pc.setLocalDescription(await sfu_pc.createAnswer())
        answer = simulcast.answer_layers(sfu_pc.localDescription.sdp, offered)
        assert "a=simulcast:recv q;h;f" in answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    finally:
        await pc.close()
        await sfu_pc.close()
    with pytest.raises(ValueError):
        offer_simulcast(sdp, ["q"])


def _capture_stream(layer: Any, kind: str = "video") -> tuple[Any, list[bytes]]:
    from types import SimpleNamespace

    from bench.fastpath import OutStream
    from bench.packetized import PacketizedStream
    from sfu import packet as rtp
    from sfu.aiortc_adapter import Egress

    sent: list[bytes] = []
    egress = Egress(lambda d: d, lambda d, _a: sent.append(d), None, lambda: 0)
    media = PacketizedStream(kind, 90000, 3000, ((b"\x10" + b"\x00" * 99,) * 3,))
    sender: Any = SimpleNamespace(_ssrc=111)
    ids = {rtp.URI_MID: 1, rtp.URI_ABS_SEND_TIME: 3}
    out = OutStream(media, egress, sender, 96, ids, "1", "pub", pacing=False, layer=layer)
    return out, sent


def test_layer_packets_carry_rid_ssrc_and_layer_tag() -> None:
    """Each layer sends on its own SSRC with the rid element beside the MID, and its index
    in abs-send-time's two low bits; a paused layer sends nothing."""
    from bench.simulcast import apply_layers, layer_wires
    from sfu import packet as rtp
    from sfu import simulcast

    wires = layer_wires(["q", "h", "f"], 111, rid_id=4)
    assert wires[0].ssrc == 111 and len({w.ssrc for w in wires}) == 3
    assert len({w.ts0 for w in wires}) == 1 and [w.reports for w in wires] == [True, False, False]
    streams = []
    for wire in wires:
        out, sent = _capture_stream(wire)
        streams.append(out)
        assert out.send_frame() is None and len(sent) == 3
        for data in sent:
            _m, pt, _seq, _ts, ssrc, profile, start, end = rtp.read(data)
            assert (pt, ssrc) == (96, wire.ssrc)
            assert simulcast.rid_of(data, profile, start, end, 4) == wire.rid
            found = dict(rtp.elements(data, profile, start, end))
            assert found[1] == b"1"
            assert int.from_bytes(found[3], "big") & 3 == wire.index
    apply_layers(streams, ["q"])
    assert [s.paused for s in streams] == [False, True, True]
    apply_layers(streams, [])  # the lowest always stays on
    assert [s.paused for s in streams] == [False, True, True]
    apply_layers(streams, ["q", "h", "f"])
    assert not any(s.paused for s in streams)
    paused, sent = _capture_stream(wires[2])
    paused.paused = True
    assert paused.send_frame() is None and sent == []


def test_each_layer_clip_has_keyframes_of_its_height() -> None:
    """The layers' clips are real VP8 with aiortc's payload descriptor: the SFU reads each
    keyframe's height from the first packet (sfu.vp8) and nothing else as a keyframe."""
    from bench.media import encode_video
    from bench.packetized import CLIP_SHAPES, SIMULCAST_LAYERS, clips_needed, packetize
    from sfu import vp8

    assert clips_needed(["instructor", "participant"], True) == [
        "instructor", "participant", "q180",
    ]  # fmt: skip
    assert clips_needed(["participant"], False) == ["participant"]
    assert [c for _r, c in SIMULCAST_LAYERS["participant"]] == ["q180", "participant"]
    for name in ("q180", "participant"):
        width, height, kbps, qmax = CLIP_SHAPES[name]
        video = encode_video(0.2, width, height, kbps=kbps, qmax=qmax, threads=1)
        frames = packetize(video).frames
        heights = [vp8.read(frame[0])[0] for frame in frames]
        assert heights[0] == height and not any(heights[1:])
        assert all(vp8.read(p)[0] == 0 for p in frames[0][1:])


def test_tap_counts_layers_and_the_sfu_numbering() -> None:
    """A layered subscription: packets counted per layer from the stamp's low bits, loss
    from holes in the sequence numbers the SFU gave it (which wrap)."""
    import time

    from bench.fastpath import Histogram, Window, abs_units
    from bench.tap import InStream, ReceiveTap, sequence_span
    from sfu import packet as rtp

    assert sequence_span(set()) == 0
    assert sequence_span({10, 11, 13}) == 4
    assert sequence_span({65534, 65535, 1}) == 4
    now = time.time()
    tap = ReceiveTap({"d": Histogram()}, Histogram())
    tap.window = Window.from_unix(now - 1, now + 1)
    video = InStream("0", "video", "pub", "d", abs_id=3, layered=True)
    tap.by_ssrc[5] = video
    for seq, layer in ((65535, 0), (0, 0), (2, 2), (3, 2)):  # 1 is lost
        units = abs_units(now - 0.002)
        stamp = (units - ((units - layer) & 3)) & 0xFFFFFF
        ext = bytes((0x32, stamp >> 16 & 0xFF, stamp >> 8 & 0xFF, stamp & 0xFF))
        tap.count(rtp.write(0, 0, 96, seq, 5, 5, b"", ext, b"\x00" * 50))
    assert video.received_in_window() == (4, "sequence-span")
    assert video.expected_in_window() == 5
    assert video.layer_packets[:3] == [2, 0, 2] and video.last_layer == 2
    assert tap.octets > 4 * 50


def test_downlink_estimates_and_thumbnails() -> None:
    """A capped subscriber reports its cap, and when more arrived 85 % of it and the share
    above it as lost; a fast one a fixed estimate and no loss; participants are drawn as
    thumbnails, the instructor not."""
    from bench.downlink import DownlinkSpec, feedback, thumbnail_sizes

    capped = DownlinkSpec(cap_bps=400_000, high_bps=5_000_000, thumbnail_height=180)
    fast = DownlinkSpec(cap_bps=None, high_bps=5_000_000, thumbnail_height=180)
    assert feedback(capped, 250_000) == (400_000, 0)
    assert feedback(capped, 800_000) == (340_000, 128)
    assert feedback(fast, 9_000_000) == (5_000_000, 0)
    assert thumbnail_sizes({"a", "host", "b"}, "host", 180) == {"a": 180, "b": 180}


def test_capped_share_is_spread_over_the_participants() -> None:
    """``--capped-share 0.3``: 30 of 100 participants, never the instructor."""
    from bench.classbench import ClassOptions, downlink, is_capped, plan_people

    assert [i for i in range(1, 11) if is_capped(i, 0.3)] == [4, 7, 10]
    assert sum(is_capped(i, 1.0) for i in range(1, 8)) == 7
    options = ClassOptions(
        scenario="class", participants=100, mode="instructor", seconds=1, warmup=1,
        generators=2, audio=True, pin=False, py_spy=None, sfu_workers=None,
        simulcast=True, capped_share=0.3, cap_kbps=400,
    )  # fmt: skip
    people = plan_people(options)
    assert sum(p.capped for p in people) == 30 and not people[0].capped
    assert downlink(people[4], options) == {
        "cap_bps": 400_000, "high_bps": 5_000_000, "thumbnail_height": 180,
    }  # fmt: skip
    assert downlink(people[0], options)["cap_bps"] is None  # type: ignore[index]


def test_simulcast_loss_and_layer_figures() -> None:
    """Layered video is compared with what the SFU numbered, audio with what was sent;
    per-layer packets add up by direction, downlink and final layer."""
    from bench.classreport import loss
    from bench.layerreport import simulcast_figures

    sent = [
        {"publisher_id": "i", "kind": "video", "packets": 300, "layer": "q"},
        {"publisher_id": "i", "kind": "video", "packets": 900, "layer": "f",
         "paused_at_end": False},
        {"publisher_id": "i", "kind": "audio", "packets": 100, "layer": ""},
    ]  # fmt: skip

    def got(sub: str, kind: str, packets: int, expected: int | None, layers: Any, last: int,
            capped: bool) -> dict[str, Any]:  # fmt: skip
        return {"subscriber_id": sub, "publisher_id": "i", "kind": kind, "packets": packets,
                "expected": expected, "duplicates": 0, "method": "m",
                "direction": "instructor_to_participant", "layer_packets": layers,
                "last_layer": last, "capped": capped}  # fmt: skip

    received = [
        got("a", "video", 290, 300, [290, 0, 0, 0], 0, True),
        got("b", "video", 900, 900, [0, 0, 900, 0], 2, False),
        got("a", "audio", 100, None, None, -1, True),
    ]
    results = [
        {"sent": sent, "received": received, "layers_events": 2,
         "downlinks": [{"capped": True, "rembs": 20, "overuse_rembs": 2, "sizes_sent": 0}]},
    ]  # fmt: skip
    lost = loss(results, 3)
    assert lost["packets"]["expected"] == 1300 and lost["packets"]["received"] == 1290
    assert lost["loss_percent_by_kind"] == {"audio": 0.0, "video": 0.833}
    figures = simulcast_figures(results, {"layer_switches": 3, "probe_bytes": 1000}, 10, 10)
    assert figures["sent_packets_per_s_by_layer"] == {"f": 90.0, "q": 30.0}
    assert figures["delivered_packets_per_s_by_layer"] == {"f": 90.0, "q": 29.0}
    assert figures["copies_per_sent_packet_by_layer"] == {"f": 1.0, "q": 0.97}
    assert figures["subscriptions_by_final_layer"] == {
        "instructor_to_participant/capped": {"q": 1},
        "instructor_to_participant/uncapped": {"f": 1},
    }
    assert figures["layer_switches"] == 3 and figures["probe_kbit_per_s"] == 0.8
    assert figures["downlinks"]["capped_overuse_rembs"] == 2


def test_bench_class_simulcast_smoke() -> None:
    """``--simulcast --capped-share 0.5``: every layer is sent, the capped participants get
    the instructor's q, the instructor everyone's q (thumbnails), and the report says so."""
    report = run_json(
        "bench.sfu", "--scenario", "class", "--participants", "4", "--seconds", "4",
        "--warmup", "4", "--simulcast", "--capped-share", "0.5", "--json",
    )  # fmt: skip
    assert report["scenario"]["simulcast"]["capped_participants"] == 2
    assert report["packets"]["subscriptions_counted"] == 16
    assert report["loss_percent"] is not None and report["loss_percent"] < 50
    assert report["server_cpu_us_per_received_packet"] is not None
    sim = report["simulcast"]
    assert {"q", "h", "f"} <= set(sim["sent_packets_per_s_by_layer"])
    final = sim["subscriptions_by_final_layer"]
    assert final["instructor_to_participant/capped"] == {"q": 2}
    assert final["participant_to_instructor/uncapped"] == {"q": 4}
    assert sim["downlinks"]["capped"] == 2 and sim["downlinks"]["rembs_sent"] > 0
    assert "layer_switches" in report["server_counters_delta"]


def test_udp_socket_drops_are_counted_per_process_tree() -> None:
    """A full socket's dropped datagrams show at its owner (/proc/net/udp ``drops``)."""
    import os
    import socket

    from bench.procs import udp_socket_drops

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        rx.bind(("127.0.0.1", 0))
        before = udp_socket_drops(os.getpid())
        for _ in range(200):
            tx.sendto(b"x" * 1000, rx.getsockname())
        assert udp_socket_drops(os.getpid()) > before


async def test_telemetry_bench_instructor_joins_through_the_client(server: Any) -> None:
    """``bench.telemetry``'s instructor joins with client.protocol; a refusal is a BenchError."""
    from bench.procs import BenchError
    from bench.telemetry import Instructor

    room = server.create_room("Bench class")
    instructor = Instructor(server.url, str(room["host_link"]))
    try:
        await instructor.join()
        assert instructor.sio.connected and instructor.room == room["room"]["id"]
    finally:
        await instructor.close()
    forged = Instructor(server.url, f"{server.url}/r/{room['room']['id']}#t=forged.token")
    try:
        with pytest.raises(BenchError, match="invalid_token"):
            await forged.join()
    finally:
        await forged.close()
