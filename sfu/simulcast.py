"""Simulcast negotiation on the SDP text, which aiortc does not do (RFC 8851, RFC 8853).

A browser that publishes layers offers, in its video m-section, one ``a=rid:R send``
per encoding, ``a=simulcast:send q;h;f`` (low to high, as Chromium and PulseRoom's
client order them), and the RTP stream id / repaired RTP stream id header extensions.
aiortc's answer drops all of that, and a browser that gets no ``a=simulcast:recv``
back sends only its first encoding. ``answer_layers`` puts the matching lines into
the answer: the layers are then told apart by the stream id each carries in its first
packets (``sfu.forwarder.Ingress``). Pure functions of the SDP text, tested alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .packet import elements

URI_RID: Final = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_RRID: Final = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MAX_LAYERS: Final = 4  # more encodings than this are not answered (and not sent)

_RID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


@dataclass(frozen=True, slots=True)
class OfferedLayers:
    """A video m-section's simulcast offer: its MID, rids low to high, extension ids."""

    mid: str
    rids: tuple[str, ...]
    rid_id: int
    rrid_id: int | None


def _sections(sdp: str) -> list[str]:
    """The session part, then each m-section, as text (line ends kept)."""
    parts = re.split(r"(?m)^(?=m=)", sdp)
    return [p for p in parts if p]


def _attributes(section: str, name: str) -> list[str]:
    prefix = f"a={name}:"
    return [line[len(prefix) :].strip() for line in section.splitlines() if line.startswith(prefix)]


def _extension_id(section: str, uri: str) -> int | None:
    for value in _attributes(section, "extmap"):
        head, _, rest = value.partition(" ")
        if rest.split(" ")[0] == uri:
            number = head.split("/")[0]
            if number.isdigit():
                return int(number)
    return None


def offered_layers(offer_sdp: str) -> dict[str, OfferedLayers]:
    """MID → the layers offered in each video m-section that offers simulcast.

    A section counts only with ``a=simulcast:send``, an ``a=rid:R send`` for each layer
    it names and the RTP stream id extension (without it the layers cannot be told
    apart). Paused (``~R``) and alternative (``R1,R2``) layers take the first name.
    """
    found: dict[str, OfferedLayers] = {}
    for section in _sections(offer_sdp):
        if not section.startswith("m=video"):
            continue
        mids = _attributes(section, "mid")
        spec = next(
            (v.split(" ", 1)[1] for v in _attributes(section, "simulcast") if v.startswith("send")),
            None,
        )
        rid_id = _extension_id(section, URI_RID)
        if not mids or spec is None or rid_id is None:
            continue
        declared = {
            parts[0]
            for parts in (v.split() for v in _attributes(section, "rid"))
            if len(parts) >= 2 and parts[1] == "send"
        }
        rids: list[str] = []
        for item in spec.split(";"):
            name = item.split(",")[0].strip().lstrip("~")
            if name in declared and _RID_NAME.match(name) and name not in rids:
                rids.append(name)
        if len(rids) < 2:
            continue  # one layer is no simulcast: answered as an ordinary stream
        found[mids[0]] = OfferedLayers(
            mids[0], tuple(rids[:MAX_LAYERS]), rid_id, _extension_id(section, URI_RRID)
        )
    return found


def answer_layers(answer_sdp: str, layers: dict[str, OfferedLayers]) -> str:
    """The answer with ``a=rid:R recv`` / ``a=simulcast:recv`` and the stream id
    extensions added to each m-section whose MID has layers (others unchanged)."""
    out: list[str] = []
    for section in _sections(answer_sdp):
        mids = _attributes(section, "mid")
        offered = layers.get(mids[0]) if mids and section.startswith("m=video") else None
        if offered is None:
            out.append(section)
            continue
        eol = "\r\n" if "\r\n" in section else "\n"
        lines = [f"a=extmap:{offered.rid_id} {URI_RID}"]
        if offered.rrid_id is not None:
            lines.append(f"a=extmap:{offered.rrid_id} {URI_RRID}")
        lines += [f"a=rid:{rid} recv" for rid in offered.rids]
        lines.append(f"a=simulcast:recv {';'.join(offered.rids)}")
        mid_line = f"a=mid:{mids[0]}{eol}"
        at = section.index(mid_line) + len(mid_line)
        out.append(section[:at] + eol.join(lines) + eol + section[at:])
    return "".join(out)


def rid_of(data: bytes, profile: int, start: int, end: int, ext_id: int) -> str | None:
    """The stream id element ``ext_id`` of a packet's header-extension block, if any."""
    for found_id, value in elements(data, profile, start, end):
        if found_id == ext_id:
            try:
                return bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
    return None
