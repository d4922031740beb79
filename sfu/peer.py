"""A participant's two connections to the SFU: one it publishes on, one it receives on.

The *publish* connection is offered by the client (send-only audio and video, and
optionally the ``telemetry`` data channel carrying heart-rate readings) and answered
here. The *subscribe* connection is offered from here, one send-only
m-line per forwarded track, and renegotiated whenever that set changes; offers go
out one at a time through the participant's ``PeerSignal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

from . import aiortc_adapter as adapter
from . import candidates, opus, simulcast
from .backend import PeerSignal, Role, SfuError, TrackInfo
from .consumer import Consumer, Numbering
from .forwarder import Codec, Ingress, Producer, Source
from .layers import LayerControl
from .stats import ForwardingStats

logger = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 15.0
TELEMETRY_LABEL = "telemetry"
# A reading is ~100 bytes; anything longer is cut here and refused (and counted) upstream.
MAX_TELEMETRY_MESSAGE = 1024
# Readings come at ~1 Hz; a client re-sending what it took during a network drop may
# burst. More than this is flooding: dropped here, before it costs the class anything.
TELEMETRY_RATE = 20.0  # messages per second, sustained
TELEMETRY_BURST = 600.0

TelemetryCallback = Callable[[str, str], None]  # (participant id, message text)
# An inactive m-line and where its numbering left off (None: it never carried a track).
Idle = tuple[RTCRtpTransceiver, "Numbering | None"]


def matching_capability(kind: str, codec: Codec) -> RTCRtpCodecCapability:
    """aiortc's capability for the publisher's codec, so a subscriber gets the same one."""
    candidates = [
        c
        for c in RTCRtpSender.getCapabilities(kind).codecs
        if c.mimeType.lower() == codec.mime_type.lower()
    ]
    if not candidates:
        raise SfuError("bad_sdp", f"codec {codec.mime_type} cannot be forwarded")
    if codec.mime_type.lower() == "video/h264":
        for c in candidates:
            if c.parameters.get("profile-level-id") == codec.parameters.get(
                "profile-level-id"
            ) and c.parameters.get("packetization-mode") == codec.parameters.get(
                "packetization-mode"
            ):
                return c
    return candidates[0]


def subscriber_codecs(kind: str, codec: Codec) -> list[RTCRtpCodecCapability]:
    """The codec to offer a subscriber (the publisher's), with RTX for video."""
    chosen = [matching_capability(kind, codec)]
    if kind == "video":
        chosen += [
            c
            for c in RTCRtpSender.getCapabilities(kind).codecs
            if c.mimeType.lower() == "video/rtx"
        ]
    return chosen


class Participant:
    """One member of a class as the SFU sees them: published tracks and subscriptions."""

    def __init__(
        self,
        participant_id: str,
        role: Role,
        signal: PeerSignal,
        configuration: RTCConfiguration,
        stats: ForwardingStats,
        on_producer: Callable[[Producer], None],
        max_bitrate: dict[str, int] | None = None,
        on_telemetry: TelemetryCallback | None = None,
        candidate_policy: candidates.CandidatePolicy = candidates.LAN_POLICY,
    ) -> None:
        self.id = participant_id
        self._candidates = candidate_policy
        self.role: Role = role
        self.producers: dict[str, Producer] = {}
        self._signal = signal
        self._configuration = configuration
        self._stats = stats
        self._on_producer = on_producer
        self._max_bitrate = max_bitrate or {"audio": 64_000, "video": 2_500_000}
        self._publish_pc: RTCPeerConnection | None = None
        self._subscribe_pc = RTCPeerConnection(configuration)
        self._wanted: dict[str, Source] = {}
        self._consumers: dict[str, tuple[Consumer, RTCRtpTransceiver]] = {}
        self._idle: list[Idle] = []  # inactive m-lines, for reuse
        self._retiring: list[Idle] = []  # turning inactive in the next offer
        self._answer: asyncio.Future[str] | None = None
        self._visible: set[str] | None = None  # None: everything is shown
        self._layers = LayerControl(self._all_consumers, self._stats)
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirty = asyncio.Event()
        self._negotiator = asyncio.create_task(self._negotiate_loop(), name=f"negotiate-{self.id}")
        self._closed = False
        self._on_telemetry = on_telemetry
        self._telemetry_tokens = TELEMETRY_BURST
        self._telemetry_at = 0.0
        self.telemetry_dropped = 0

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, offer_sdp: str) -> str:
        """Answer the client's publish offer; its tracks become producers."""
        if self._closed:
            raise SfuError("not_joined", "this participant has left")
        if self._publish_pc is not None:
            raise SfuError("bad_request", "already publishing; leave and join again to republish")
        pc = RTCPeerConnection(self._configuration)
        self._publish_pc = pc
        pc.on("datachannel", self._on_datachannel)
        try:
            offer = RTCSessionDescription(sdp=self._candidates.strip(offer_sdp), type="offer")
            await pc.setRemoteDescription(offer)
        except Exception as exc:
            self._publish_pc = None
            await pc.close()
            raise SfuError("bad_sdp", f"the offer could not be applied: {exc}") from None
        transceivers = [t for t in pc.getTransceivers() if t.kind in ("audio", "video")]
        kinds = sorted(t.kind for t in transceivers)
        has_data = pc.sctp is not None
        if kinds not in (["audio"], ["video"], ["audio", "video"]) and not (has_data and not kinds):
            self._publish_pc = None
            await pc.close()
            raise SfuError(
                "bad_sdp", "publish at most one audio and one video track (or data only)"
            )
        opus_offered = opus.offered_parameters(offer_sdp)
        for transceiver in transceivers:
            adapter.keep_first_codec(transceiver)
            if not adapter.negotiated_codecs(transceiver):
                self._publish_pc = None
                await pc.close()
                raise SfuError(
                    "bad_sdp", f"no {transceiver.kind} codec in common (need Opus, VP8 or H.264)"
                )
            if transceiver.kind == "audio":
                # Stereo and its rate, as offered (music): aiortc's answer would drop them.
                offered = opus_offered.get(transceiver.mid or "", {})
                adapter.add_codec_parameters(transceiver, opus.publish_parameters(offered))
        layers = self._simulcast_layers(offer_sdp, transceivers)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        producers = [
            Producer(
                producer_id=f"{self.id}:{transceiver.kind}",
                owner_id=self.id,
                transceiver=transceiver,
                stats=self._stats,
                max_bitrate=self._max_bitrate[transceiver.kind],
                layers=layers.get(transceiver.mid or ""),
            )
            for transceiver in transceivers
        ]
        for producer in producers:
            producer.on_layers = self._send_layers
        # max-bundle: every m-line of the publish connection shares one transport.
        if transceivers:
            Ingress(transceivers[0].receiver.transport, producers, self._stats)
        for producer in producers:
            self.producers[producer.kind] = producer
            self._on_producer(producer)
        return simulcast.answer_layers(str(pc.localDescription.sdp), layers)

    @staticmethod
    def _simulcast_layers(
        offer_sdp: str, transceivers: list[RTCRtpTransceiver]
    ) -> dict[str, simulcast.OfferedLayers]:
        """The offered simulcast layers to accept: VP8 video only (its layers are
        switched at keyframes read from the VP8 header)."""
        offered = simulcast.offered_layers(offer_sdp)
        vp8_mids = {
            t.mid
            for t in transceivers
            if t.kind == "video"
            and any(c.mimeType.lower() == "video/vp8" for c in adapter.negotiated_codecs(t))
        }
        return {mid: layers for mid, layers in offered.items() if mid in vp8_mids}

    def _send_layers(self, rids: list[str]) -> None:
        self._spawn(self._signal.send_layers(rids))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != TELEMETRY_LABEL or self._on_telemetry is None:
            channel.close()  # nothing else is carried: do not let a client hold one open
            return
        channel.on("message", self._on_telemetry_message)

    def _on_telemetry_message(self, message: str | bytes) -> None:
        # Token bucket: a flood costs one comparison per message, then nothing.
        now = time.monotonic()
        self._telemetry_tokens = min(
            TELEMETRY_BURST, self._telemetry_tokens + (now - self._telemetry_at) * TELEMETRY_RATE
        )
        self._telemetry_at = now
        if self._telemetry_tokens < 1 or self._on_telemetry is None:
            self.telemetry_dropped += 1
            return
        self._telemetry_tokens -= 1
        if isinstance(message, bytes):
            message = message[: MAX_TELEMETRY_MESSAGE + 1].decode("utf-8", "replace")
        # One byte over the limit is kept so the validator upstream refuses it as oversize.
        self._on_telemetry(self.id, message[: MAX_TELEMETRY_MESSAGE + 1])

    # -- subscribing --------------------------------------------------------------------

    def set_wanted(self, producers: list[Source]) -> None:
        """The producers this participant should receive; renegotiates if that changed."""
        wanted = {p.id: p for p in producers}
        if wanted.keys() != self._wanted.keys():
            self._wanted = wanted
            self._dirty.set()

    async def subscribe_answer(self, answer_sdp: str) -> None:
        """The client's answer to the latest subscribe offer."""
        if self._answer is None or self._answer.done():
            raise SfuError("bad_request", "no subscribe offer is waiting for an answer")
        self._answer.set_result(answer_sdp)

    async def _negotiate_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._negotiate_once()
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                # A client that never answers (a browser without WebRTC, a closed tab):
                # expected, nothing to debug, so no traceback.
                logger.warning("subscriber %s did not answer its subscribe offer", self.id)
            except Exception:
                logger.exception("subscribe negotiation failed for %s", self.id)

    async def _negotiate_once(self) -> None:
        # Tracks that ended go first, in an offer of their own: their m-lines are free
        # for new tracks only once negotiated inactive (a browser fires no `track` event
        # for an m-line that changes tracks without pausing).
        removed = [pid for pid in self._consumers if pid not in self._wanted]
        for pid in removed:
            consumer, transceiver = self._consumers.pop(pid)
            consumer.close()
            # An m-line cannot be removed; it turns inactive and the browser ends the track.
            transceiver.direction = "inactive"
            self._retiring.append((transceiver, consumer.numbering()))
        if self._retiring:
            await self._exchange([])
            if any(p.id not in self._consumers for p in self._wanted.values()):
                self._dirty.set()
            return
        added: list[tuple[Source, RTCRtpTransceiver, Numbering | None]] = []
        for producer in self._wanted.values():
            if producer.id in self._consumers or producer.codec is None:
                continue
            reused = self._reuse(producer)
            if reused is not None:
                added.append((producer, *reused))
                continue
            transceiver = self._subscribe_pc.addTransceiver(producer.kind, direction="sendonly")
            transceiver.setCodecPreferences(subscriber_codecs(producer.kind, producer.codec))
            adapter.prepare_sender(transceiver, stream_id=producer.owner_id)
            added.append((producer, transceiver, None))
        if not added:
            return
        await self._exchange(added)
        for producer, transceiver, numbering in added:
            payload_type = adapter.negotiated_payload_type(transceiver)
            if payload_type is None or transceiver.mid is None:
                continue
            if producer.id not in self._wanted:  # left while the offer was out
                transceiver.direction = "inactive"
                self._retiring.append((transceiver, numbering))
                self._dirty.set()
                continue
            consumer = Consumer(
                producer, self.id, transceiver, payload_type, self._stats,
                on_estimate=self._layers.on_estimate, follows=numbering,
                on_loss=self._layers.on_loss, pacer=self._layers.pacer,
            )  # fmt: skip
            consumer.paused = self._hidden(producer)
            self._consumers[producer.id] = (consumer, transceiver)

    async def _exchange(
        self, added: list[tuple[Source, RTCRtpTransceiver, Numbering | None]]
    ) -> None:
        """One subscribe offer and its answer; m-lines it turned inactive become free."""
        pc = self._subscribe_pc
        retiring, self._retiring = self._retiring, []
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        owners = {t.mid: p for p, t, _n in added}
        owners.update({t.mid: c.producer for c, t in self._consumers.values()})
        tracks = [TrackInfo(mid, p.owner_id, p.kind) for mid, p in owners.items() if mid]
        # aiortc offers its own Opus parameters: say which tracks are stereo (sfu/opus.py).
        stereo = {
            mid: opus.stereo_parameters(p.codec.parameters)
            for mid, p in owners.items()
            if mid and p.kind == "audio" and p.codec is not None
        }
        sdp = opus.describe_tracks(str(pc.localDescription.sdp), stereo)
        self._answer = asyncio.get_running_loop().create_future()
        await self._signal.send_offer(sdp, tracks)
        answer = await asyncio.wait_for(self._answer, ANSWER_TIMEOUT_S)
        answer = self._candidates.strip(answer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self._idle += retiring

    def _reuse(self, producer: Source) -> tuple[RTCRtpTransceiver, Numbering | None] | None:
        """An inactive m-line of the same kind and codec, made to carry ``producer``:
        the subscribe offer then stays as long as what is received, however many
        people came and went. Its numbering continues where its last track left it."""
        codec = producer.codec
        for index, (transceiver, numbering) in enumerate(self._idle):
            codecs = adapter.negotiated_codecs(transceiver)
            if (
                transceiver.kind == producer.kind
                and codec is not None
                and codecs
                and codecs[0].mimeType.lower() == codec.mime_type.lower()
                and all(
                    codecs[0].parameters.get(key) == codec.parameters.get(key)
                    for key in ("profile-level-id", "packetization-mode")
                )
            ):
                del self._idle[index]
                transceiver.direction = "sendonly"
                adapter.set_stream_id(transceiver, producer.owner_id)
                return transceiver, numbering
        return None

    def set_visible(
        self,
        participant_ids: set[str] | None,
        sizes: dict[str, int] | None = None,
        max_height: int | None = None,
    ) -> None:
        """Whose video the client shows (None: everyone's; the rest is not sent at all),
        how tall each is drawn (device pixels) and the viewer's own cap on layers."""
        self._visible = participant_ids
        for consumer, _transceiver in self._consumers.values():
            consumer.paused = self._hidden(consumer.producer)
        self._layers.view(sizes or {}, max_height)

    def _all_consumers(self) -> list[Consumer]:
        return [c for c, _t in self._consumers.values()]

    def _hidden(self, producer: Source) -> bool:
        return (
            producer.kind == "video"
            and self._visible is not None
            and producer.owner_id not in self._visible
        )

    # -- both ---------------------------------------------------------------------------

    async def add_ice_candidate(
        self, target: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled ICE candidate from the client for one of its connections."""
        pc = self._publish_pc if target == "publish" else self._subscribe_pc
        if pc is None:
            raise SfuError("bad_request", f"no {target} connection yet")
        if not candidate:
            return  # end of candidates: aiortc needs no marker
        if self._candidates.refuses(candidate):
            return  # loopback, link-local, multicast (sfu/candidates.py): no client is there
        text = candidate.removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts 8+ fields
            raise SfuError("bad_request", f"unreadable ICE candidate: {exc}") from None
        if not 0 < parsed.port < 65536:
            raise SfuError("bad_request", f"ICE candidate port {parsed.port} is out of range")
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        if sdp_mid is None and sdp_mline_index is None:
            parsed.sdpMLineIndex = 0
        await pc.addIceCandidate(parsed)

    async def close(self) -> None:
        """Close both connections and everything forwarded to or from them (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._negotiator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._negotiator
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
        await self._layers.aclose()
        for task in list(self._tasks):
            task.cancel()
        for producer in self.producers.values():
            producer.close()
        for consumer, _transceiver in self._consumers.values():
            consumer.close()
        self._consumers.clear()
        # What the closes above cancelled ends before this does.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for producer in self.producers.values():
            await producer.wait_closed()
        for pc in (self._publish_pc, self._subscribe_pc):
            if pc is not None:
                await pc.close()
