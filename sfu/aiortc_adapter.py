"""The one place where PulseRoom reaches into aiortc's internals.

aiortc has no public way to receive or send *encoded* RTP packets: its receiver
always depacketizes into a jitter buffer and a decoder thread, and its sender
always pulls frames from a track and packetizes them. An SFU must do neither, so
this module:

- takes over a receiver's RTP input (``RTCRtpReceiver._handle_rtp_packet``) and
  stops the decoder thread ``receive()`` started, so no decoder ever exists;
- gives a sender a track that never yields a frame (so no encoder is created) and
  writes forwarded packets straight to the nominated pair's socket (``egress``);
- takes over a sender's RTCP input to turn PLI/FIR/NACK into forwarding actions;
- sets what the sender's RTCP sender reports say (``set_sender_report``);
- decrypts incoming RTP in the socket callback (``take_datagrams``).

Everything here is written against aiortc 1.16.0 / aioice 0.13.0 (pinned in
pyproject.toml). ``check_compatibility()`` fails loudly if the internals it touches
have changed; the test suite calls it, and so does the SFU at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiortc
import pylibsrtp
from aioice.ice import Connection, StunProtocol
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket, RtpPacket
from pylibsrtp._binding import ffi, lib

logger = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"
SUPPORTED_PYLIBSRTP = "1.0.0"  # srtp_protect and srtp_unprotect use its session's parts
_SRTP_TRAILER = 16 + 128  # what protect may add: libsrtp's longest tag and MKI

RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]
RtcpHandler = Callable[[Any], Awaitable[None]]

# Name-mangled private attributes used below; listed once so the check can find them.
_RECEIVER_ATTRS = (
    "_RTCRtpReceiver__rtcp_ssrc",
    "_RTCRtpReceiver__decoder_thread",
    "_RTCRtpReceiver__stop_decoder",
    "_RTCRtpReceiver__remote_streams",
)
_SENDER_ATTRS = (
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
)


class AdapterError(RuntimeError):
    """aiortc's internals are not what this adapter was written against."""


def srtp_protect(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """``session.protect`` without pylibsrtp's Python around the libsrtp call (a type
    check, a fresh ``int *`` and an error-check call per packet: 0.6 of its 2.5 us). The
    same call on the same buffer, and the same errors."""
    return _direct_srtp(session, lib.srtp_protect, _SRTP_TRAILER)


def srtp_unprotect(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """``session.unprotect``, as ``srtp_protect`` does it."""
    return _direct_srtp(session, lib.srtp_unprotect, 0)


def _direct_srtp(session: pylibsrtp.Session, call: Any, trailer: int) -> Callable[[bytes], bytes]:
    # The context is read through its owner each time: holding the owner keeps libsrtp
    # from freeing it while this function lives (it may outlive the transport).
    owner, cdata, buffer = session._srtp, session._cdata, session._buffer
    limit = len(cdata) - trailer
    size = ffi.new("int *")

    def process(data: bytes) -> bytes:
        length = len(data)
        if length > limit:
            raise ValueError("packet is too long")
        size[0] = length
        buffer[0:length] = data
        failed = call(owner[0], cdata, size)
        if failed:
            raise pylibsrtp.Error(_srtp_error(failed))
        return buffer[0 : size[0]]  # type: ignore[no-any-return]

    return process


def _srtp_error(code: int) -> str:
    errors = pylibsrtp.ERRORS
    return str(errors[code]) if 0 <= code < len(errors) else f"libsrtp error {code}"


def check_compatibility() -> None:
    """Raise AdapterError unless aiortc's internals are the ones this module uses."""
    if aiortc.__version__ != SUPPORTED_AIORTC:
        raise AdapterError(
            f"sfu.aiortc_adapter supports aiortc {SUPPORTED_AIORTC}, found {aiortc.__version__}"
        )
    for cls, names in (
        (RTCRtpReceiver, ("_handle_rtp_packet", "_send_rtcp_pli", "_send_rtcp_nack", "receive")),
        (RTCRtpSender, ("_handle_rtcp_packet", "send", "_ssrc", "_rtx_ssrc", "_stream_id")),
        (
            RTCDtlsTransport,
            (
                "_send_rtp",
                "_rtp_header_extensions_map",
                "_handle_rtp_data",
                "_tx_srtp",
                "_rx_srtp",
                "_rtp_router",
            ),
        ),
        (RtpPacket, ("serialize", "parse")),
        (RTCRtpTransceiver, ("_codecs", "_headerExtensions")),
        (RTCIceTransport, ("_connection",)),
        (Connection, ("_nominated", "_protocols")),
    ):
        for name in names:
            if not hasattr(cls, name) and name not in cls.__init__.__code__.co_names:
                raise AdapterError(f"aiortc {cls.__name__} has no {name}")
    if pylibsrtp.__version__ != SUPPORTED_PYLIBSRTP:
        raise AdapterError(
            f"sfu.aiortc_adapter supports pylibsrtp {SUPPORTED_PYLIBSRTP}, "
            f"found {pylibsrtp.__version__}"
        )
    for name in ("_srtp", "_cdata", "_buffer"):
        if name not in pylibsrtp.Session.__init__.__code__.co_names:
            raise AdapterError(f"pylibsrtp Session has no {name}")
    source_receiver = RTCRtpReceiver.__init__.__code__.co_names
    for name in _RECEIVER_ATTRS:
        if name not in source_receiver and not hasattr(RTCRtpReceiver, name):
            raise AdapterError(f"aiortc RTCRtpReceiver has no {name}")
    source_sender = RTCRtpSender.__init__.__code__.co_names
    for name in _SENDER_ATTRS:
        if name not in source_sender:
            raise AdapterError(f"aiortc RTCRtpSender has no {name}")


class IdleTrack(MediaStreamTrack):
    """A track that never yields a frame: the sender's encoder loop waits on it forever."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        super().stop()
        if not self._never.done():
            self._never.cancel()


# -- receiving side (a publisher's connection) ------------------------------------------


def take_rtp(receiver: RTCRtpReceiver, handler: RtpHandler) -> None:
    """Route every RTP packet of ``receiver`` to ``handler`` instead of its decoder.

    For clients (benchmarks) that count packets without decoding them.
    """

    async def _guarded(packet: RtpPacket, arrival_time_ms: int) -> None:
        # An exception escaping here would end aiortc's receive loop, and with it all
        # media on this connection: drop the packet, log, carry on.
        try:
            await handler(packet, arrival_time_ms)
        except ConnectionError:
            pass
        except Exception:
            logger.exception("forwarding handler failed; packet dropped")

    # Instance attributes shadow the methods aiortc's transport calls.
    setattr(receiver, "_handle_rtp_packet", _guarded)  # noqa: B010
    suppress_decoder(receiver)


def suppress_decoder(receiver: RTCRtpReceiver) -> None:
    """Make sure ``receiver`` never runs a decoder thread, now or when it starts."""
    original_receive = receiver.receive

    async def _receive(parameters: Any) -> None:
        # aiortc starts a decoder thread here; stop it before any packet could reach it.
        await original_receive(parameters)
        stop_decoder(receiver)

    setattr(receiver, "receive", _receive)  # noqa: B010
    stop_decoder(receiver)


def stop_decoder(receiver: RTCRtpReceiver) -> None:
    """Stop the idle decoder thread ``RTCRtpReceiver.receive()`` starts (no decoder exists yet)."""
    getattr(receiver, "_RTCRtpReceiver__stop_decoder")()  # noqa: B009


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs (with the remote's payload types) negotiated for a transceiver."""
    return list(transceiver._codecs)


def keep_first_codec(transceiver: RTCRtpTransceiver) -> None:
    """Narrow a received transceiver to its first codec (and that codec's RTX).

    Call between ``setRemoteDescription(offer)`` and ``createAnswer()``: the answer then
    names one codec, so the publisher sends exactly one and forwarding needs no
    per-packet codec switch.
    """
    media = [c for c in transceiver._codecs if c.mimeType.lower() != "video/rtx"]
    if not media:
        return
    first = media[0]
    transceiver._codecs = [first] + [
        c
        for c in transceiver._codecs
        if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == first.payloadType
    ]


def add_codec_parameters(transceiver: RTCRtpTransceiver, parameters: dict[str, str | int]) -> None:
    """Add ``parameters`` to the fmtp of a received transceiver's first codec.

    Call before ``createAnswer()``: aiortc answers with its own codec parameters, not
    the offer's, so what the answer should say beyond them (stereo Opus) goes in here.
    The transceiver's codecs are its own copies; aiortc's capabilities stay untouched.
    """
    media = [c for c in transceiver._codecs if c.mimeType.lower() != "video/rtx"]
    if media and parameters:
        media[0].parameters = {**media[0].parameters, **parameters}


def bind_ssrc(transport: RTCDtlsTransport, receiver: RTCRtpReceiver, ssrc: int) -> None:
    """Route RTCP about ``ssrc`` (sender reports, BYE) to ``receiver``.

    aiortc learns an SSRC from ``a=ssrc`` lines or from RTP it routes itself; simulcast
    layers have no such line and their RTP never takes aiortc's router.
    """
    transport._rtp_router.ssrc_table[ssrc] = receiver


def receive_statistics(
    receiver: RTCRtpReceiver, ssrc: int, clock_rate: int
) -> Callable[[Any], None]:
    """The ``add`` of aiortc's per-source statistics for ``ssrc`` (made if new): fed every
    packet of that source, so aiortc's receiver reports stay correct. The caller keeps it:
    looking it up costs more per packet than the statistics themselves."""
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams")  # noqa: B009
    stats = streams.get(ssrc)
    if stats is None:
        stats = streams[ssrc] = StreamStatistics(clock_rate)
    return stats.add  # type: ignore[no-any-return]


async def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send a PLI for ``media_ssrc`` to the publisher."""
    await receiver._send_rtcp_pli(media_ssrc)


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    """Ask the publisher to retransmit ``lost`` sequence numbers."""
    await receiver._send_rtcp_nack(media_ssrc, lost)


def new_nack_generator() -> NackGenerator:
    """aiortc's gap tracker, reused for upstream NACKs."""
    return NackGenerator()


# -- sending side (a subscriber's connection) -------------------------------------------


def prepare_sender(transceiver: RTCRtpTransceiver, stream_id: str) -> None:
    """Give a send-only transceiver an idle track, grouped in the browser under ``stream_id``."""
    sender = transceiver.sender
    sender.replaceTrack(IdleTrack(transceiver.kind))
    sender._stream_id = stream_id


def set_stream_id(transceiver: RTCRtpTransceiver, stream_id: str) -> None:
    """Group a (reused) send-only transceiver's track under ``stream_id`` from the next offer."""
    transceiver.sender._stream_id = stream_id


def take_rtcp(sender: RTCRtpSender, handler: RtcpHandler | None) -> None:
    """Route RTCP for ``sender`` to ``handler`` (None: to nobody but aiortc). aiortc sees
    only receiver and sender reports, for its statistics: its NACK, PLI and REMB handling
    is for an encoder this sender does not have (and a REMB naming N streams would be
    unpacked N times on a connection receiving N videos). A new handler replaces the
    previous one, so a reused sender holds no closed consumer."""
    if handler is None:
        sender.__dict__.pop("_handle_rtcp_packet", None)
        return
    original = RTCRtpSender._handle_rtcp_packet.__get__(sender)

    async def _handle(packet: Any) -> None:
        await handler(packet)
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            await original(packet)

    setattr(sender, "_handle_rtcp_packet", _handle)  # noqa: B010


def negotiated_payload_type(transceiver: RTCRtpTransceiver) -> int | None:
    """The payload type the transceiver's first (non-RTX) codec was offered with."""
    for codec in transceiver._codecs:
        if codec.mimeType.lower() != "video/rtx" and codec.payloadType is not None:
            return int(codec.payloadType)
    return None


def negotiated_rtx(transceiver: RTCRtpTransceiver) -> tuple[int, int] | None:
    """``(rtx payload type, rtx ssrc)`` when RTX was negotiated for the transceiver's codec."""
    payload_type = negotiated_payload_type(transceiver)
    for codec in transceiver._codecs:
        if (
            codec.mimeType.lower() == "video/rtx"
            and codec.payloadType is not None
            and str(codec.parameters.get("apt")) == str(payload_type)
        ):
            return int(codec.payloadType), int(transceiver.sender._rtx_ssrc)
    return None


def tap_rtp(receiver: RTCRtpReceiver, callback: Callable[[RtpPacket], None]) -> None:
    """Call ``callback`` for each RTP packet before aiortc's own receive path (client side)."""
    original = receiver._handle_rtp_packet

    async def _handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        callback(packet)
        await original(packet, arrival_time_ms=arrival_time_ms)

    setattr(receiver, "_handle_rtp_packet", _handle)  # noqa: B010


# -- the fast path: bytes in, bytes out ---------------------------------------------------


RawRtpHandler = Callable[[bytes, int], Awaitable[None]]


def take_transport_rtp(transport: RTCDtlsTransport, handler: RawRtpHandler) -> None:
    """Hand every decrypted RTP packet of ``transport`` to ``handler`` as bytes.

    Replaces ``RTCDtlsTransport._handle_rtp_data``: no ``RtpPacket`` is parsed and no
    receiver sees RTP. RTCP still takes aiortc's own path.
    """

    async def _guarded(data: bytes, arrival_time_ms: int) -> None:
        try:
            await handler(data, arrival_time_ms)
        except ConnectionError:
            pass
        except Exception:
            logger.exception("forwarding handler failed; packet dropped")

    setattr(transport, "_handle_rtp_data", _guarded)  # noqa: B010


def take_receiver_rtcp(receiver: RTCRtpReceiver, handler: Callable[[Any], None]) -> None:
    """Show RTCP routed to ``receiver`` (sender reports, BYE) to ``handler`` first."""
    original = receiver._handle_rtcp_packet

    async def _handle(packet: Any) -> None:
        handler(packet)
        await original(packet)

    setattr(receiver, "_handle_rtcp_packet", _handle)  # noqa: B010


def extension_ids(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    """Header-extension URI → id negotiated for a transceiver."""
    return {e.uri: e.id for e in transceiver._headerExtensions}


@dataclass(frozen=True, slots=True)
class Egress:
    """How to put one packet on a subscriber's wire with no coroutine: protect, then sendto."""

    protect: Callable[[bytes], bytes]
    sendto: Callable[[bytes, Any], None]
    address: Any
    backlog: Callable[[], int]  # bytes queued in the socket's user-space buffer


def egress(transport: RTCDtlsTransport) -> Egress | None:
    """The direct send path of a connected transport; None until it is connected.

    aioice's ``Connection.sendto`` is a coroutine per packet; the nominated pair's UDP
    socket is the same thing without it. The SFU's own connections never use TURN
    (``SfuServer`` refuses TURN servers: it is the public side), so the pair is always
    a plain socket.
    """
    if transport.state != "connected" or transport._tx_srtp is None:
        return None
    pair = transport.transport._connection._nominated.get(1)
    if pair is None or pair.protocol.transport is None:
        return None
    if type(pair.protocol) is not StunProtocol:
        raise AdapterError("the SFU's connection is relayed; it must not use TURN itself")
    socket = pair.protocol.transport
    return Egress(
        srtp_protect(transport._tx_srtp),
        socket.sendto,
        pair.remote_addr,
        getattr(socket, "get_write_buffer_size"),  # noqa: B009 (not in the stub)
    )


def on_state_change(
    transport: RTCDtlsTransport, callback: Callable[[str], None]
) -> Callable[[], None]:
    """Call ``callback(state)`` whenever the DTLS transport changes state; returns the
    function that stops it (the transport outlives the subscriptions on it)."""

    def listener() -> None:
        callback(transport.state)

    transport.on("statechange", listener)
    return lambda: transport.remove_listener("statechange", listener)


def set_sender_report(
    sender: RTCRtpSender, ntp_time: int, rtp_timestamp: int, packets: int, octets: int
) -> None:
    """What the sender's next RTCP sender report says (NTP↔RTP mapping and counts)."""
    state = sender.__dict__
    state["_RTCRtpSender__ntp_timestamp"] = ntp_time
    state["_RTCRtpSender__rtp_timestamp"] = rtp_timestamp
    state["_RTCRtpSender__packet_count"] = packets
    state["_RTCRtpSender__octet_count"] = octets


async def send_rtcp(receiver: RTCRtpReceiver, packet: Any) -> None:
    """Send an RTCP packet (e.g. REMB) to the publisher of ``receiver``."""
    await receiver._send_rtcp(packet)


def rtcp_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The SSRC our RTCP towards the publisher is sent from."""
    value = receiver.__dict__.get("_RTCRtpReceiver__rtcp_ssrc")
    return None if value is None else int(value)


def take_datagrams(transport: RTCDtlsTransport, handler: Callable[[bytes], None]) -> None:
    """Decrypt and hand over RTP right in the UDP sockets' callback, skipping aiortc's queue.

    aioice first tries every datagram as STUN, then queues it for the DTLS transport's
    task, which awaits it, decrypts it and awaits the RTP handler: a queue round trip
    and two coroutines per packet. Here SRTP (first byte 128-191) that is not RTCP is
    unprotected and handled synchronously; everything else (STUN, DTLS, RTCP, and all
    of it before the DTLS handshake finished) takes aioice's and aiortc's own path.
    Call after ``setLocalDescription``, when the sockets exist.
    """
    for protocol in transport.transport._connection._protocols:
        if type(protocol) is not StunProtocol:
            continue  # a TURN allocation frames its data; leave it to aioice
        original = protocol.datagram_received
        # The receiving session (set when DTLS completes) and its direct unprotect.
        keys: list[Any] = [None, None]

        def _fast(
            data: bytes, addr: Any, original: Callable[[bytes, Any], None] = original,
            keys: list[Any] = keys,
        ) -> None:  # fmt: skip
            if len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 224:
                srtp = transport._rx_srtp
                if srtp is not None:
                    if srtp is not keys[0]:
                        keys[0], keys[1] = srtp, srtp_unprotect(srtp)
                    try:
                        plain = keys[1](data)
                    except pylibsrtp.Error:
                        return  # not authentic (or replayed): dropped, as aiortc does
                    try:
                        handler(plain)
                    except Exception:
                        logger.exception("forwarding handler failed; packet dropped")
                    return
            original(data, addr)

        setattr(protocol, "datagram_received", _fast)  # noqa: B010
