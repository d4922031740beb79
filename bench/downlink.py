"""What a generator's subscriber tells the SFU about its downlink and its tiles (``--simulcast``).

The SFU picks each subscriber's layers from two things (sfu/layers.py): the bandwidth
its browser estimates for the subscribe connection (REMB), and how tall it draws each
video (``visibility`` ``sizes``). ``Downlink`` plays both for one generator client:

- **REMB**, about once a second, on the subscribe connection, naming every video SSRC
  the SFU sends it (RTCP PSFB fmt 15, ``aiortc.rtp.pack_remb_fci``). A *high* subscriber
  reports a fixed estimate (``--high-kbps``); a *capped* one (``--capped-share`` of the
  participants) models a link of ``--cap-kbps``: it reports the cap while what arrived
  in the last second (every RTP datagram, padding probes included) stays under it, and
  85 % of the cap when more arrived, as a congestion controller that sees its
  bottleneck overflow does.
- **Receiver reports** (capped subscribers only), with the same period: the share of
  what arrived above the cap as ``fraction_lost`` on every video SSRC, the loss a
  tail-drop queue at the cap would cause (the SFU ends a probe on it). Nothing is
  really dropped: the cap exists only in the feedback, so the loss and latency the
  benchmark measures stay what the SFU and the machine make them.
- **Tile sizes**: the instructor (and in gallery mode everyone) draws the other
  participants as thumbnails ``--thumbnail-height`` px high; the instructor's video has
  no size (the largest layer its link carries). Sent again whenever someone new shows up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    pack_remb_fci,
)

from sfu import aiortc_adapter as adapter

from .tap import ReceiveTap

REMB_INTERVAL_S = 1.0
FIRST_REMB_POLL_S = 0.2  # until the first video SSRC is known
OVERUSE_FACTOR = 0.85  # a falling estimate: 85 % of the bottleneck (GCC on overuse)
REPORTS_PER_RR = 31  # report blocks one RTCP receiver report holds

SendSizes = Callable[[dict[str, int]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DownlinkSpec:
    """One subscriber's downlink: a cap (bits/s) or None for a fast line; its estimate
    when fast; the height it draws participants' thumbnails at (0: sends no sizes)."""

    cap_bps: int | None
    high_bps: int
    thumbnail_height: int


def feedback(spec: DownlinkSpec, received_bps: float) -> tuple[int, int]:
    """``(REMB bits/s, fraction lost of 256)`` a subscriber reports after receiving
    ``received_bps`` over the last second (a fast line reports no loss)."""
    if spec.cap_bps is None:
        return spec.high_bps, 0
    if received_bps > spec.cap_bps:
        lost = 1 - spec.cap_bps / received_bps
        return int(spec.cap_bps * OVERUSE_FACTOR), min(255, int(256 * lost))
    return spec.cap_bps, 0


def thumbnail_sizes(publishers: set[str], host_id: str, height: int) -> dict[str, int]:
    """``visibility`` sizes: every publisher but the instructor drawn ``height`` px high."""
    return {p: height for p in sorted(publishers) if p != host_id}


class Downlink:
    """REMB and tile sizes of one subscriber; ``run`` is its one task (owned by the client)."""

    def __init__(self, spec: DownlinkSpec, tap: ReceiveTap) -> None:
        self.spec = spec
        self.rembs_sent = 0
        self.overuse_reports = 0  # estimates below the cap: the link was offered too much
        self.sizes_sent = 0
        self.lost_estimate = 0  # packets a queue at the cap would have dropped (cumulative)
        self._tap = tap
        self._sizes: dict[str, int] = {}

    async def run(
        self,
        connection: Callable[[], RTCPeerConnection | None],
        video_publishers: Callable[[], set[str]],
        host_id: Callable[[], str],
        send_sizes: SendSizes,
    ) -> None:
        """Until cancelled: REMB (and receiver reports) each second, ``visibility`` when
        the tiles change."""
        tap = self._tap
        last_at, last_octets, last_packets = time.monotonic(), tap.octets, tap.rtp_packets
        while True:
            ssrcs = sorted(s for s, stream in tap.by_ssrc.items() if stream.kind == "video")
            await asyncio.sleep(REMB_INTERVAL_S if ssrcs else FIRST_REMB_POLL_S)
            now, octets, packets = time.monotonic(), tap.octets, tap.rtp_packets
            received_bps = (octets - last_octets) * 8 / max(now - last_at, 1e-3)
            bitrate, lost = feedback(self.spec, received_bps)
            self.lost_estimate += (packets - last_packets) * lost // 256
            last_at, last_octets, last_packets = now, octets, packets
            pc = connection()
            if ssrcs and pc is not None:
                await self._send_remb(pc, bitrate, ssrcs)
                if self.spec.cap_bps is not None:
                    await self._send_reports(pc, lost, ssrcs)
            if self.spec.thumbnail_height:
                sizes = thumbnail_sizes(video_publishers(), host_id(), self.spec.thumbnail_height)
                if sizes and sizes != self._sizes:
                    self._sizes = sizes
                    await send_sizes(sizes)
                    self.sizes_sent += 1

    async def _send_remb(self, pc: RTCPeerConnection, bitrate: int, ssrcs: list[int]) -> None:
        transceivers = pc.getTransceivers()
        if not transceivers:
            return
        receiver = transceivers[0].receiver
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=adapter.rtcp_ssrc(receiver) or 1,
            media_ssrc=0,
            fci=pack_remb_fci(bitrate, ssrcs),
        )
        await adapter.send_rtcp(receiver, packet)
        self.rembs_sent += 1
        if self.spec.cap_bps is not None and bitrate < self.spec.cap_bps:
            self.overuse_reports += 1

    async def _send_reports(self, pc: RTCPeerConnection, lost: int, ssrcs: list[int]) -> None:
        """RTCP receiver reports saying ``lost`` (of 256) for every video SSRC."""
        receiver = pc.getTransceivers()[0].receiver
        sender_ssrc = adapter.rtcp_ssrc(receiver) or 1
        for i in range(0, len(ssrcs), REPORTS_PER_RR):
            blocks = [
                RtcpReceiverInfo(
                    ssrc=ssrc,
                    fraction_lost=lost,
                    packets_lost=self.lost_estimate,
                    highest_sequence=0,
                    jitter=0,
                    lsr=0,
                    dlsr=0,
                )
                for ssrc in ssrcs[i : i + REPORTS_PER_RR]
            ]
            await adapter.send_rtcp(receiver, RtcpRrPacket(ssrc=sender_ssrc, reports=blocks))
