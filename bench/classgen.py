"""A cheap load-generator process for the class and gallery scenarios.

Run by ``bench.sfu`` as ``python -m bench.classgen`` (never inside the server). It talks
JSON lines like ``bench.loadgen``: a config line on stdin; ``{"event": "host_ready"}``
once its host (if it has one) has joined and publishes; ``{"event": "ready"}`` once every
client receives every stream it should; then a ``{"window": [t0, t1]}`` line; then
``{"event": "result", ...}`` after ``t1``.

Clients speak docs/protocol.md over Socket.IO through ``client`` (joining, offers), but
use aiortc only to negotiate: media is sent and counted by ``bench.fastpath`` (hand-made
RTP, real SRTP, no decryption on receipt), so one process can play dozens of participants
for less CPU than the SFU spends forwarding them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import socketio
from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription

from client.connections import publish, rtc_configuration
from client.joining import Membership, close_session
from client.protocol import ClientError, call, parse_link
from client.subscriber import Subscriber
from sfu import aiortc_adapter as adapter
from sfu import packet as rtp

from .downlink import Downlink, DownlinkSpec
from .fastpath import Histogram, OutStream, Pacer, Window
from .genproc import emit, read_line, serve
from .media import load_clip
from .packetized import SIMULCAST_LAYERS, PacketizedClip, PacketizedStream, packetize_clip
from .simulcast import apply_layers, layer_wires, offer_simulcast
from .tap import InStream, ReceiveTap

logger = logging.getLogger("bench.classgen")

GRACE_S = 1.0  # keep counting this long after the window for packets still in flight
CONNECT_TIMEOUT_S = 30.0
# Socket.IO connect and ack timeouts: dozens of clients join at once on a loaded machine.
SIO_CONNECT_S, SIO_CALL_S = 20.0, 30.0
RECEIVE_BUFFER = 1 << 20  # SO_RCVBUF of the clients' subscribe sockets (kernel doubles it)
DIRECTIONS = (
    "instructor_to_participant",
    "participant_to_instructor",
    "participant_to_participant",
)


# Lines of an aiortc answer that a receive-only BUNDLE answer does not need.
_DROPPED = ("a=fingerprint:", "a=msid:", "a=ssrc", "a=rtcp:")


class ClassgenError(Exception):
    """A client could not join, publish or subscribe."""


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One participant to play, as the controller planned it."""

    name: str
    link: str
    host: bool
    clip: str
    expected_streams: int
    # --simulcast: the subscriber's downlink (a cap in kbit/s or null, its estimate when
    # not capped, thumbnail height); null without --simulcast
    downlink: dict[str, Any] | None = None


def compact_answer(sdp: str) -> str:
    """An aiortc answer without what BUNDLE makes redundant, so that it fits the server's
    64 KiB ``subscribe_answer`` limit with many m-lines.

    ICE credentials, the (sha-256) fingerprint and the DTLS role move to the session level
    (RFC 8839 / RFC 8122 allow it); candidates stay on the first m-line only; the extra
    sha-384/sha-512 fingerprints, ``msid``, ``ssrc`` and ``rtcp`` lines (a receive-only
    answer sends no media) go. aiortc's parser reads the result exactly like the original.
    """
    session, *media = sdp.split("\r\nm=")
    shared: list[str] = []
    sections: list[str] = []
    for index, section in enumerate(media):
        kept: list[str] = []
        for line in section.split("\r\n"):
            if line.startswith(("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:sha-256", "a=setup:")):
                if index == 0:
                    shared.append(line)
            elif not line.startswith(_DROPPED) and not (
                index > 0 and line.startswith(("a=candidate:", "a=end-of-candidates"))
            ):
                kept.append(line)
        sections.append("\r\n".join(kept))
    head = session.rstrip("\r\n") + "\r\n" + "\r\n".join(shared) if shared else session
    return "\r\nm=".join([head, *sections])


def _tune_socket(protocol: Any) -> None:
    with contextlib.suppress(Exception):
        sock = protocol.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


class FastClient:
    """One participant: joins, publishes by hand, answers subscribe offers, counts RTP."""

    def __init__(
        self,
        spec: ClientSpec,
        clip: PacketizedClip,
        pacer: Pacer,
        histograms: dict[str, Histogram],
        gallery: bool,
        pacing: bool = True,
        receive_delay: Histogram | None = None,
        layers: tuple[PacketizedStream, ...] = (),
    ) -> None:
        self.spec = spec
        base_url, room, token = parse_link(spec.link)
        self._membership = Membership(base_url=base_url, token=token, name=spec.name, room=room)
        self.id = ""
        self.host_id = ""
        self.errors: list[dict[str, Any]] = []
        self.out_streams: list[OutStream] = []
        self.in_streams: dict[str, InStream] = {}
        self.tap = ReceiveTap(histograms, receive_delay or Histogram())
        self.answer_bytes = {"raw_max": 0, "sent_max": 0}
        self._clip = clip
        self._pacer = pacer
        self._gallery = gallery
        self._pacing = pacing
        self._sio = socketio.AsyncClient(reconnection=False)
        self._config = rtc_configuration()
        self._publish_pc: RTCPeerConnection | None = None
        self._subscriber = Subscriber(
            prepare=lambda offer: self._map_ssrcs(offer["sdp"]),
            applied=self._quiet_decoders,
            compact=self._compact,
        )
        # --simulcast: the video layers this client publishes (low to high, rid, stream)
        # and what it tells the SFU about its downlink
        rids = [rid for rid, _clip in SIMULCAST_LAYERS[spec.clip]] if layers else []
        self._layers = tuple(zip(rids, layers, strict=True))
        self.simulcast = bool(layers)
        self.video_layers: list[OutStream] = []
        self.layers_events = 0
        self.downlink: Downlink | None = None
        if spec.downlink is not None:
            self.downlink = Downlink(DownlinkSpec(**spec.downlink), self.tap)
        self._downlink_task: asyncio.Task[None] | None = None
        self._quiet: set[int] = set()
        self._offer_task: asyncio.Task[None] | None = None
        self._offer_error: BaseException | None = None

    async def _call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return await call(self._sio, event, payload, SIO_CALL_S)
        except ClientError as exc:
            raise ClassgenError(f"{self.spec.name}: {exc}") from None

    def _setup(self, sio: socketio.AsyncClient) -> None:
        sio.on("subscribe_offer", lambda data: self._subscriber.offered(sio, data))
        sio.on("error", self._on_error)
        sio.on("layers", self._on_layers)

    async def start(self, host_id: str) -> None:
        """Connect, join, turn gallery mode on (host, if asked), publish."""
        self.host_id = host_id
        self._offer_task = asyncio.create_task(
            self._answer_offers(), name=f"offers-{self.spec.name}"
        )
        try:
            self._sio, joined = await self._membership.join(
                self._setup, connect_timeout=SIO_CONNECT_S, call_timeout=SIO_CALL_S
            )
        except ClientError as exc:
            raise ClassgenError(f"{self.spec.name}: {exc}") from None
        self.id = str(joined["you"]["id"])
        if self.spec.host:
            self.host_id = self.id
        self._config = rtc_configuration(joined)
        self._subscriber.joined(self._sio, self._config)
        if self.spec.host and self._gallery:
            await self._call("gallery", {"enabled": True})
        await self._publish()
        if self.downlink is not None:
            self._downlink_task = asyncio.create_task(
                self.downlink.run(
                    lambda: self._subscriber.pc,
                    lambda: {p for p, kind in self._subscriber.owners.values() if kind == "video"},
                    lambda: self.host_id,
                    self._send_sizes,
                ),
                name=f"downlink-{self.spec.name}",
            )
            self._downlink_task.add_done_callback(self._downlink_ended)

    def _downlink_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(
                {"code": "downlink_failed", "client": self.spec.name,
                 "message": repr(task.exception()), "at": time.time()}
            )  # fmt: skip

    async def _send_sizes(self, sizes: dict[str, int]) -> None:
        await self._call("visibility", {"visible": None, "sizes": sizes})

    async def _on_layers(self, data: dict[str, Any]) -> None:
        self.layers_events += 1
        active = data.get("active")
        if isinstance(active, list):
            apply_layers(self.video_layers, [str(rid) for rid in active])

    async def _publish(self) -> None:
        pc = RTCPeerConnection(self._config)
        self._publish_pc = pc
        media = [m for m in (self._clip.audio, self._clip.video) if m is not None]
        transceivers = [
            pc.addTransceiver(adapter.IdleTrack(m.kind), direction="sendonly") for m in media
        ]
        rid_id = 0

        def simulcast(offer: str) -> str:
            nonlocal rid_id
            offer, rid_id = offer_simulcast(offer, [rid for rid, _stream in self._layers])
            return offer

        await publish(pc, self._call, simulcast if self._layers else None)
        transport = transceivers[0].sender.transport
        self._watch(transport, "publish")
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        egress = adapter.egress(transport)
        while egress is None:
            if time.monotonic() > deadline:
                raise ClassgenError(f"{self.spec.name}: publish connection never connected")
            await asyncio.sleep(0.05)
            egress = adapter.egress(transport)
        for stream, transceiver in zip(media, transceivers, strict=True):
            payload_type = adapter.negotiated_payload_type(transceiver)
            if payload_type is None or transceiver.mid is None:
                raise ClassgenError(f"{self.spec.name}: no {stream.kind} codec negotiated")
            if stream.kind == "video" and self._layers:
                self._publish_layers(egress, transceiver, payload_type, rid_id)
                continue
            out = OutStream(
                stream,
                egress,
                transceiver.sender,
                payload_type,
                adapter.extension_ids(transceiver),
                transceiver.mid,
                self.id,
                audio_level=30 if self.spec.host else 90,  # the instructor talks
                pacing=self._pacing,
            )
            self.out_streams.append(out)
            self._pacer.add(out)

    def _publish_layers(
        self, egress: adapter.Egress, transceiver: Any, payload_type: int, rid_id: int
    ) -> None:
        """One OutStream per simulcast layer, all at one phase (one camera's frames)."""
        rids = [rid for rid, _stream in self._layers]
        wires = layer_wires(rids, transceiver.sender._ssrc, rid_id)
        phase = random.random()
        for (_rid, stream), wire in zip(self._layers, wires, strict=True):
            out = OutStream(
                stream, egress, transceiver.sender, payload_type,
                adapter.extension_ids(transceiver), transceiver.mid, self.id,
                pacing=self._pacing, layer=wire,
            )  # fmt: skip
            self.out_streams.append(out)
            self.video_layers.append(out)
            self._pacer.add(out, phase)

    def _watch(self, transport: Any, which: str) -> None:
        """Note in ``errors`` when a connection of ours closes or fails, and when."""

        def changed(state: str) -> None:
            if state in ("closed", "failed"):
                self.errors.append(
                    {"code": f"{which}_{state}", "client": self.spec.name, "at": time.time()}
                )

        adapter.on_state_change(transport, changed)

    async def _on_error(self, data: dict[str, Any]) -> None:
        self.errors.append(data)

    async def _answer_offers(self) -> None:
        try:
            while True:
                await self._subscriber.answer(await self._subscriber.next_offer(), self._call)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._offer_error = exc
            logger.exception("%s: subscribe negotiation failed", self.spec.name)

    def _quiet_decoders(self, pc: RTCPeerConnection, _offer: dict[str, Any]) -> None:
        for transceiver in pc.getTransceivers():
            if id(transceiver) not in self._quiet:
                self._quiet.add(id(transceiver))
                adapter.suppress_decoder(transceiver.receiver)  # no decoder threads

    def _compact(self, pc: RTCPeerConnection, raw: str) -> str:
        """Tap the subscribe connection (on the first answer) and shorten the answer."""
        dtls = pc.getTransceivers()[0].receiver.transport
        connection = dtls.transport._connection
        if self.tap.attach(connection):  # the first answer: the connection is new
            self._watch(dtls, "subscribe")
            for protocol in connection._protocols:
                _tune_socket(protocol)
        sent = compact_answer(raw)
        self.answer_bytes["raw_max"] = max(self.answer_bytes["raw_max"], len(raw.encode()))
        self.answer_bytes["sent_max"] = max(self.answer_bytes["sent_max"], len(sent.encode()))
        return sent

    def _map_ssrcs(self, sdp: str) -> None:
        """SSRC -> stream for every m-line the offer announces (from its a=ssrc lines)."""
        for media in SessionDescription.parse(sdp).media:
            mid = media.rtp.muxId
            if mid not in self._subscriber.owners or media.direction != "sendonly":
                continue
            rtx = {int(g.items[1]) for g in media.ssrc_group if g.semantic == "FID"}
            self.tap.rtx_ssrcs |= rtx
            main = [s.ssrc for s in media.ssrc if s.ssrc not in rtx]
            if not main or main[0] in self.tap.by_ssrc:
                continue
            publisher, kind = self._subscriber.owners[mid]
            abs_id = next(
                (e.id for e in media.rtp.headerExtensions if e.uri == rtp.URI_ABS_SEND_TIME), 0
            )
            layered = kind == "video" and self.simulcast  # every publisher sends layers
            stream = InStream(mid, kind, publisher, self._direction(publisher), abs_id, layered)
            self.in_streams[mid] = stream
            self.tap.by_ssrc[main[0]] = stream

    def _direction(self, publisher: str) -> str:
        if self.spec.host:
            return DIRECTIONS[1]
        return DIRECTIONS[0] if publisher == self.host_id else DIRECTIONS[2]

    def missing(self) -> int:
        """Streams still expected that have not delivered a packet (raises if negotiation died)."""
        if self._offer_error is not None:
            raise ClassgenError(f"{self.spec.name}: {self._offer_error!r}")
        flowing = sum(1 for s in self.in_streams.values() if s.seen)
        return self.spec.expected_streams - flowing

    def set_window(self, window: Window) -> None:
        """Start classifying packets against ``window`` (both directions)."""
        for out in self.out_streams:
            out.window = window
        self.tap.window = window

    async def stop(self) -> None:
        """Leave and close everything this client owns."""
        for out in self.out_streams:
            out.closed = True
        if self._downlink_task is not None:
            self._downlink_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # noted when it ended
                await self._downlink_task
        await close_session(self._sio, [self._offer_task], [self._publish_pc, self._subscriber.pc])


async def _wait_ready(clients: list[FastClient], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = {c.spec.name: c.missing() for c in clients}
        if all(m <= 0 for m in missing.values()):
            return
        if time.monotonic() > deadline:
            short = {k: v for k, v in missing.items() if v > 0}
            raise ClassgenError(f"streams still missing after {timeout:.0f}s: {short}")
        await asyncio.sleep(0.2)


async def _join_all(clients: list[FastClient], host_id: str, batch: int) -> None:
    for i in range(0, len(clients), batch):
        await asyncio.gather(*(c.start(host_id) for c in clients[i : i + batch]))


async def run(config: dict[str, Any]) -> dict[str, Any]:
    """Join every configured client, wait for the window, return what was sent and received."""
    clips = {name: packetize_clip(load_clip(Path(path))) for name, path in config["clips"].items()}
    histograms = {d: Histogram() for d in DIRECTIONS}
    receive_delay = Histogram()
    pacer = Pacer()
    specs = [ClientSpec(**c) for c in config["clients"]]
    pacing = bool(config.get("pacing", True))
    simulcast = bool(config.get("simulcast", False))

    def layers(name: str) -> tuple[PacketizedStream, ...]:
        return tuple(clips[c].video for _r, c in SIMULCAST_LAYERS[name]) if simulcast else ()

    clients = [
        FastClient(
            s,
            clips[s.clip],
            pacer,
            histograms,
            bool(config["gallery"]),
            pacing,
            receive_delay,
            layers(s.clip),
        )
        for s in specs
    ]
    pacer_task = asyncio.create_task(pacer.run(), name="pacer")
    try:
        hosts = [c for c in clients if c.spec.host]
        for host in hosts:
            await host.start("")
        host_id = hosts[0].id if hosts else str(config.get("host_id", ""))
        emit({"event": "host_ready", "host_id": host_id})
        others = [c for c in clients if not c.spec.host]
        await _join_all(others, host_id, int(config.get("join_batch", 5)))
        await _wait_ready(clients, float(config["ready_timeout"]))
        emit({"event": "ready"})
        start, end = (await read_line())["window"]
        window = Window.from_unix(float(start), float(end))
        for client in clients:
            client.set_window(window)
        await asyncio.sleep(max(0.0, window.end_s + GRACE_S - time.time()))
        if pacer_task.done():
            pacer_task.result()  # the pacer died: say why
        return _result(clients, histograms, pacer, receive_delay)
    finally:
        pacer_task.cancel()
        await asyncio.gather(pacer_task, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


def _result(
    clients: list[FastClient],
    histograms: dict[str, Histogram],
    pacer: Pacer,
    receive_delay: Histogram,
) -> dict[str, Any]:
    sent = [
        {"publisher_id": c.id, "kind": o.kind, "packets": o.in_window, "total": o.packets,
         "layer": o.rid, "paused_at_end": o.paused}
        for c in clients
        for o in c.out_streams
    ]  # fmt: skip
    received = []
    for c in clients:
        capped = c.downlink is not None and c.downlink.spec.cap_bps is not None
        for s in c.in_streams.values():
            packets, method = s.received_in_window()
            received.append(
                {
                    "subscriber_id": c.id,
                    "publisher_id": s.publisher_id,
                    "kind": s.kind,
                    "direction": s.direction,
                    "packets": packets,
                    "expected": s.expected_in_window(),
                    "duplicates": s.duplicates,
                    "unstamped": s.unstamped,
                    "method": method,
                    "layer_packets": s.layer_packets if s.layered else None,
                    "last_layer": s.last_layer,
                    "capped": capped,
                }
            )
    return {
        "event": "result",
        "sent": sent,
        "received": received,
        "latency_histograms": {d: h.to_json() for d, h in histograms.items()},
        "pacer_lag_histogram": pacer.lag.to_json(),
        "receive_delay_histogram": receive_delay.to_json(),
        "kernel_stamped_packets": sum(c.tap.kernel_stamped for c in clients),
        "pacer_skipped_frames": pacer.skipped_frames,
        "streams_failed": pacer.failed[:20],
        "rtp_packets_sent": sum(o.packets for c in clients for o in c.out_streams),
        "rtp_packets_received": sum(c.tap.rtp_packets for c in clients),
        "rtx_packets": sum(c.tap.rtx_packets for c in clients),
        "unknown_ssrc_packets": sum(c.tap.unknown_packets for c in clients),
        "answer_sdp_bytes_raw_max": max((c.answer_bytes["raw_max"] for c in clients), default=0),
        "answer_sdp_bytes_sent_max": max((c.answer_bytes["sent_max"] for c in clients), default=0),
        "errors": [e for c in clients for e in c.errors],
        "downlinks": [
            {
                "capped": c.downlink.spec.cap_bps is not None,
                "rembs": c.downlink.rembs_sent,
                "overuse_rembs": c.downlink.overuse_reports,
                "sizes_sent": c.downlink.sizes_sent,
            }
            for c in clients
            if c.downlink is not None
        ],
        "layers_events": sum(c.layers_events for c in clients),
    }


def main() -> int:
    """Entry point of ``python -m bench.classgen``."""
    return serve(run)


if __name__ == "__main__":
    raise SystemExit(main())
