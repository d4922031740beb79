"""A connected aiortc pair on loopback whose first side has one send-only video
transceiver: what an SFU consumer sends on, for tests that drive a Consumer by hand."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from sfu import aiortc_adapter as adapter


@contextlib.asynccontextmanager
async def connected_sender(timeout: float = 10.0) -> AsyncIterator[RTCRtpTransceiver]:
    """The sending transceiver, once its transport can send (``adapter.egress``)."""
    publisher, subscriber = RTCPeerConnection(), RTCPeerConnection()
    try:
        transceiver = publisher.addTransceiver("video", direction="sendonly")
        adapter.prepare_sender(transceiver, stream_id="pub")
        await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)
        deadline = time.monotonic() + timeout
        while adapter.egress(transceiver.sender.transport) is None:
            assert time.monotonic() < deadline, "the pair did not connect"
            await asyncio.sleep(0.05)
        yield transceiver
    finally:
        await publisher.close()
        await subscriber.close()
