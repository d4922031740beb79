"""The client's peer connections: ICE set-up from the join ack, the publish offer/answer.

Both connections bundle everything on one transport from the start (``max-bundle``):
an offer may arrive before the join ack, and with aiortc's default (balanced) bundle
policy a second video m-line would stay on a transport that BUNDLE then discards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

# A client's ``call``: emit an event (``v`` added) and return its ack, raising on a refusal.
CallFn = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def rtc_configuration(ack: dict[str, Any] | None = None) -> RTCConfiguration:
    """The peer connections' configuration: the join ack's ICE (and TURN) servers, if any."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in (ack or {}).get("ice_servers", [])
    ]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


async def publish(
    pc: RTCPeerConnection, call: CallFn, munge: Callable[[str], str] | None = None
) -> None:
    """Offer ``pc`` (what it sends: tracks, the telemetry channel) with ``publish`` and
    apply the SFU's answer; ``munge`` rewrites the offer's SDP first (simulcast)."""
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    if munge is not None:
        offer = munge(offer)
    answer = await call("publish", {"type": "offer", "sdp": offer})
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
