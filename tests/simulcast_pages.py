"""Bare WebRTC pages in real headless Chromium, wired to an in-process SfuServer.

No PulseRoom client code: each page is an ``RTCPeerConnection`` driven from here, so
what a test sees is what Chromium and the SFU do with each other. The publisher's
camera is Chromium's fake capture fed from a generated clip (``tests.y4m``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sfu.backend import TrackInfo
from sfu.server import SfuServer

PAGE_JS = """
window.h = {
  async publish(encodings) {
    const stream = await navigator.mediaDevices.getUserMedia(
      {video: {width: {ideal: 1280}, height: {ideal: 720}, frameRate: {ideal: 30}}});
    const pc = new RTCPeerConnection();
    const init = {direction: 'sendonly'};
    if (encodings) init.sendEncodings = encodings;
    const t = pc.addTransceiver(stream.getVideoTracks()[0], init);
    const vp8 = RTCRtpSender.getCapabilities('video').codecs.filter(
      c => c.mimeType.toLowerCase() === 'video/vp8');
    t.setCodecPreferences([...vp8, ...RTCRtpSender.getCapabilities('video').codecs.filter(
      c => c.mimeType.toLowerCase() !== 'video/vp8')]);
    this.pub = pc; this.sender = t.sender;
    await pc.setLocalDescription(await pc.createOffer());
    await this.gathered(pc);
    return pc.localDescription.sdp;
  },
  async answered(sdp) { await this.pub.setRemoteDescription({type: 'answer', sdp}); },
  async setActive(rids) {
    const p = this.sender.getParameters();
    p.encodings.forEach((e, i) => { e.active = i === 0 || rids.includes(e.rid); });
    await this.sender.setParameters(p);
    this.active = rids;
  },
  async offered(sdp) {
    if (!this.sub) {
      this.sub = new RTCPeerConnection();
      this.sub.ontrack = (e) => {
        const v = document.createElement('video'); v.muted = true; v.autoplay = true;
        v.srcObject = new MediaStream([e.track]); document.body.appendChild(v);
      };
    }
    await this.sub.setRemoteDescription({type: 'offer', sdp});
    await this.sub.setLocalDescription(await this.sub.createAnswer());
    await this.gathered(this.sub);
    return this.sub.localDescription.sdp;
  },
  gathered(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise(r => {
      const t = setTimeout(r, 2000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); r(); } });
    });
  },
  async inbound() {
    if (!this.sub) return [];
    const out = [];
    (await this.sub.getStats()).forEach(s => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.push({
        height: s.frameHeight || 0, fps: s.framesPerSecond || 0, decoded: s.framesDecoded || 0,
        freezes: s.freezeCount || 0, dropped: s.framesDropped || 0, bytes: s.bytesReceived || 0,
        keyframes: s.keyFramesDecoded || 0, plis: s.pliCount || 0});
    });
    return out;
  },
  async outbound() {
    const out = {};
    (await this.pub.getStats()).forEach(s => {
      if (s.type === 'outbound-rtp') out[s.rid || ''] = {height: s.frameHeight || 0,
        bytes: s.bytesSent || 0, active: s.active};
    });
    return out;
  },
};
"""

LAYERS = [
    {"rid": "q", "scaleResolutionDownBy": 4, "maxBitrate": 150_000},
    {"rid": "h", "scaleResolutionDownBy": 2, "maxBitrate": 500_000},
    {"rid": "f", "scaleResolutionDownBy": 1, "maxBitrate": 1_500_000},
]


@dataclass
class Peer:
    """A page in the class: its PeerSignal, answering subscribe offers in the page."""

    sfu: SfuServer
    room_id: str
    id: str
    page: Any
    layer_messages: list[list[str]] = field(default_factory=list)
    offers: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send_offer(self, sdp: str, tracks: list[TrackInfo]) -> None:
        # Answer from a task: the SFU awaits the answer after this returns.
        task = asyncio.create_task(self._answer(sdp))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, sdp: str) -> None:
        self.offers += 1
        answer = await self.page.evaluate("(sdp) => h.offered(sdp)", sdp)
        await self.sfu.subscribe_answer(self.room_id, self.id, answer)

    async def send_layers(self, rids: list[str]) -> None:
        self.layer_messages.append(rids)
        await self.page.evaluate("(rids) => h.setActive(rids)", rids)

    async def publish(self, encodings: list[dict[str, Any]] | None = LAYERS) -> str:
        """Publish the fake camera (with ``encodings``: simulcast); returns the answer."""
        offer = await self.page.evaluate("(e) => h.publish(e)", encodings)
        answer = await self.sfu.publish(self.room_id, self.id, offer)
        await self.page.evaluate("(sdp) => h.answered(sdp)", answer)
        return answer

    async def inbound(self) -> list[dict[str, int]]:
        """The page's received video streams (getStats inbound-rtp)."""
        return list(await self.page.evaluate("() => h.inbound()"))

    async def outbound(self) -> dict[str, dict[str, Any]]:
        """The page's sent streams by rid (getStats outbound-rtp)."""
        return dict(await self.page.evaluate("() => h.outbound()"))


async def new_peer(
    sfu: SfuServer, context: Any, room_id: str, participant_id: str, role: str
) -> Peer:
    """A fresh page joined to the class as ``participant_id``."""
    page = await context.new_page()
    # A localhost origin is a secure context (the camera needs one); nothing listens there.
    await page.route(
        "http://localhost/sfu-test", lambda route: route.fulfill(body="<!doctype html><title>t")
    )
    await page.goto("http://localhost/sfu-test")
    await page.evaluate(PAGE_JS)
    peer = Peer(sfu, room_id, participant_id, page)
    await sfu.join(room_id, participant_id, role, peer, gallery=False)  # type: ignore[arg-type]
    return peer


async def wait_for(probe: Any, timeout: float, interval: float = 0.5) -> Any:
    """Call the coroutine function ``probe`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    result = None
    while asyncio.get_running_loop().time() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(interval)
    return result
