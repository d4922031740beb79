"""The stock aiortc floor: what aiortc's own send and receive paths cost per RTP packet.

``python -m bench.floor [--streams K] [--seconds S] [--json]`` (also
``python -m bench.sfu --scenario floor``) runs two aiortc peers in two processes on this
machine, connected over loopback-reachable host candidates:

- the **sender** publishes K video tracks (the 640x360 VP8 clip at ~500 kbit/s) and K
  Opus tracks through stock ``RTCRtpSender``s; each track yields the pre-encoded frames
  as ``av.Packet``, so aiortc only packetizes (``encoder.pack``), serializes, protects and
  sends — its normal path for already-encoded media, never an encoder;
- the **receiver** takes them through stock ``RTCDtlsTransport`` → ``RtpPacket.parse`` →
  ``RTCRtpReceiver._handle_rtp_packet`` (statistics, NACK tracking, depayload, jitter
  buffer) with the decoder threads stopped, so nothing is decoded.

Each side's CPU (``time.process_time()``, all threads) over the window divided by the
packets it sent or received gives microseconds of CPU per packet. That is the price an
SFU built from stock aiortc objects would pay per packet in and per packet out, to
compare with PulseRoom's fast path (``server_cpu_us_per_forwarded_packet``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from sfu import aiortc_adapter as adapter

from .genproc import emit, read_line
from .media import ReplayTrack, encode_clip, load_clip, save_clip
from .procs import BenchError, Generator

METHOD = {
    "send": "CPU of the sending process (all threads) over the window / RTP packets its "
    "RTCRtpSenders sent (their packet counters); av.Packet in, aiortc packs, no encoder",
    "receive": "CPU of the receiving process over the window / RTP packets that reached "
    "RTCRtpReceiver._handle_rtp_packet (its statistics); decoder threads stopped",
}


# -- the two peers (``python -m bench.floor --peer``) -------------------------------------


def _received(receivers: list[RTCRtpReceiver]) -> int:
    total = 0
    for receiver in receivers:
        streams = getattr(receiver, "_RTCRtpReceiver__remote_streams")  # noqa: B009
        total += sum(s.packets_received for s in streams.values())
    return total


async def _peer() -> None:
    config = await read_line()
    clip = load_clip(Path(config["clip"]))
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        if config["role"] == "send":
            senders = []
            for _ in range(int(config["streams"])):
                for stream in (clip.audio, clip.video):
                    if stream is not None:
                        transceiver = pc.addTransceiver(ReplayTrack(stream), direction="sendonly")
                        senders.append(transceiver.sender)
            await pc.setLocalDescription(await pc.createOffer())
            emit({"sdp": pc.localDescription.sdp})
            answer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

            def count() -> int:
                return sum(s.__dict__["_RTCRtpSender__packet_count"] for s in senders)

        else:
            offer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            receivers = [t.receiver for t in pc.getTransceivers()]
            for receiver in receivers:
                adapter.suppress_decoder(receiver)
            await pc.setLocalDescription(await pc.createAnswer())
            emit({"sdp": pc.localDescription.sdp})

            def count() -> int:
                return _received(receivers)

        while True:
            message = await read_line()
            if message.get("stop"):
                return
            emit({"packets": count(), "cpu_s": time.process_time(), "at": time.time()})
    finally:
        await pc.close()


# -- the controller -------------------------------------------------------------------------


async def measure_floor(
    streams: int = 16, seconds: float = 10.0, warmup: float = 3.0, pin: bool = False
) -> dict[str, Any]:
    """Run the two peers and return µs of CPU per packet sent and per packet received."""
    with tempfile.TemporaryDirectory(prefix="pulseroom-floor-") as tmp:
        workdir = Path(tmp)
        clip = await asyncio.to_thread(encode_clip, 4.0, True, 500)
        clip_path = workdir / "clip.bin"
        save_clip(clip, clip_path)
        sender = Generator(
            0, workdir / "send.log", "bench.floor", {0} if pin else None, ("--peer",)
        )
        receiver = Generator(
            1, workdir / "recv.log", "bench.floor", {1} if pin else None, ("--peer",)
        )
        try:
            common = {"clip": str(clip_path), "streams": streams}
            await sender.start({"role": "send", **common})
            offer = await sender.receive(timeout=30)
            await receiver.start({"role": "recv", **common})
            await receiver.send(offer)
            await sender.send(await receiver.receive(timeout=30))
            deadline = time.monotonic() + 30
            while True:
                await receiver.send({"sample": True})
                if (await receiver.receive(timeout=10))["packets"] > 0:
                    break
                if time.monotonic() > deadline:
                    raise BenchError("the floor receiver got no RTP within 30 s")
                await asyncio.sleep(0.2)
            await asyncio.sleep(warmup)
            first = await _sample(sender, receiver)
            await asyncio.sleep(seconds)
            last = await _sample(sender, receiver)
            for peer in (sender, receiver):
                await peer.send({"stop": True})
        except BaseException:
            with contextlib.suppress(Exception):
                for peer in (sender, receiver):
                    sys.stderr.write(f"--- floor peer {peer.index}:\n{peer.log_tail()}\n")
            raise
        finally:
            for peer in (sender, receiver):
                await peer.stop()
    window = last["send"]["at"] - first["send"]["at"]
    report: dict[str, Any] = {
        "scenario": "floor",
        "tracks": {"video": streams, "audio": streams},
        "window_s": round(window, 3),
        "pinning": {"sender": [0], "receiver": [1]} if pin else None,
    }
    for side in ("send", "receive"):
        packets = last[side]["packets"] - first[side]["packets"]
        cpu = last[side]["cpu_s"] - first[side]["cpu_s"]
        report[side] = {
            "packets": packets,
            "packets_per_s": round(packets / window, 1),
            "cpu_percent": round(100 * cpu / window, 1),
            "us_per_packet": round(cpu / packets * 1e6, 1) if packets else None,
        }
    report["method"] = METHOD
    return report


async def _sample(sender: Generator, receiver: Generator) -> dict[str, dict[str, Any]]:
    await sender.send({"sample": True})
    await receiver.send({"sample": True})
    return {
        "send": await sender.receive(timeout=10),
        "receive": await receiver.receive(timeout=10),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.floor``."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--streams", type=int, default=16, help="video + audio track pairs")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=3.0, help="after RTP flows")
    parser.add_argument("--pin", action="store_true", help="sender on CPU 0, receiver on CPU 1")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        asyncio.run(_peer())
        return 0
    try:
        report = asyncio.run(measure_floor(args.streams, args.seconds, args.warmup, args.pin))
    except BenchError as exc:
        print(f"bench.floor: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return 0


def summary(report: dict[str, Any]) -> str:
    """A short plain-text version of a floor report."""
    send, receive = report["send"], report["receive"]
    return "\n".join(
        [
            f"stock aiortc, {report['tracks']['video']} video + {report['tracks']['audio']} "
            f"audio tracks, {report['window_s']:.1f}s window",
            f"  send     {send['us_per_packet']} us CPU per packet "
            f"({send['packets_per_s']} packets/s, {send['cpu_percent']}% of a core)",
            f"  receive  {receive['us_per_packet']} us CPU per packet "
            f"({receive['packets_per_s']} packets/s, {receive['cpu_percent']}% of a core)",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
