"""Simulcast for the load generators (``--simulcast``): offer and send layers as a browser does.

aiortc cannot offer simulcast, so a generator munges the offer text it sends with
``publish`` (``offer_simulcast``): the video m-section gets the RTP stream id and
repaired stream id extensions, one ``a=rid:R send`` per layer and
``a=simulcast:send q;h;f`` (low to high, docs/protocol.md "Layers"), and loses its
``a=ssrc`` lines, as a browser's does; the SFU then tells the layers apart by the rid
each packet carries. Each layer is then its own ``bench.fastpath.OutStream``
(``layer_wires``): its own SSRC and sequence numbers, the rid element beside the MID
in every packet, RTP timestamps shared by the publisher's layers. The SFU's ``layers``
event names the layers someone receives; the others stop until it names them again
(``apply_layers``, like the browser client: the lowest always stays on).

The layer's index also goes into the two lowest bits of abs-send-time (moved back by at
most 3 units, 11.4 µs), which the SFU forwards untouched: that is how a subscriber,
which sees one SSRC whatever layer it is switched to, counts packets per layer
(``bench.tap``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from sfu.simulcast import URI_RID, URI_RRID

from .fastpath import LayerWire, OutStream

ONE_BYTE_IDS = range(1, 15)  # the one-byte header-extension form's ids


def _video_section(sdp: str) -> tuple[list[str], int]:
    parts = [p for p in re.split(r"(?m)^(?=m=)", sdp) if p]
    index = next((i for i, p in enumerate(parts) if p.startswith("m=video")), -1)
    return parts, index


def offer_simulcast(sdp: str, rids: Sequence[str]) -> tuple[str, int]:
    """``sdp`` (aiortc's offer) with its video m-section offering ``rids`` (low to high)
    as RID simulcast layers; returns the new text and the RTP stream id extension's id.

    The two extensions take the lowest ids the section leaves free; ``a=ssrc`` and
    ``a=ssrc-group`` lines go (a browser sends none for RID layers). Raises ValueError
    without a video m-section or with fewer than two rids.
    """
    if len(rids) < 2:
        raise ValueError("simulcast needs at least two layers")
    parts, index = _video_section(sdp)
    if index < 0:
        raise ValueError("the offer has no video m-section")
    section = parts[index]
    eol = "\r\n" if "\r\n" in section else "\n"
    lines = [line for line in section.split(eol) if line]
    used = {
        int(m.group(1)) for line in lines if (m := re.match(r"a=extmap:(\d+)", line)) is not None
    }
    free = [i for i in ONE_BYTE_IDS if i not in used]
    if len(free) < 2:
        raise ValueError("no free header-extension ids for the stream ids")
    rid_id, rrid_id = free[0], free[1]
    kept = [line for line in lines if not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
    last_extmap = max((i for i, line in enumerate(kept) if line.startswith("a=extmap:")), default=0)
    extmaps = [f"a=extmap:{rid_id} {URI_RID}", f"a=extmap:{rrid_id} {URI_RRID}"]
    kept[last_extmap + 1 : last_extmap + 1] = extmaps
    kept += [f"a=rid:{rid} send" for rid in rids]
    kept.append(f"a=simulcast:send {';'.join(rids)}")
    parts[index] = eol.join(kept) + eol
    return "".join(parts), rid_id


def layer_wires(rids: Sequence[str], sender_ssrc: int, rid_id: int) -> list[LayerWire]:
    """How each layer goes out: the lowest on the aiortc sender's own SSRC (whose sender
    reports aiortc keeps sending), the others on random SSRCs of their own."""
    ts0 = random.randint(0, 0xFFFFFFFF)
    ssrcs = [sender_ssrc]
    while len(ssrcs) < len(rids):
        ssrc = random.randint(1, 0xFFFFFFFF)
        if ssrc not in ssrcs:
            ssrcs.append(ssrc)
    return [
        LayerWire(index, rid, ssrc, rid_id, ts0, reports=index == 0)
        for index, (rid, ssrc) in enumerate(zip(rids, ssrcs, strict=True))
    ]


def apply_layers(streams: Sequence[OutStream], active: Sequence[str]) -> None:
    """The SFU's ``layers`` event: send the layers it names and pause the others; the
    lowest is never paused (web/layers.js does the same)."""
    wanted = set(active)
    for index, stream in enumerate(streams):
        stream.paused = index > 0 and stream.rid not in wanted
