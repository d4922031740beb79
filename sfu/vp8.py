"""The VP8 payload descriptor (RFC 7741), read and rewritten without decoding.

Simulcast layers are separate VP8 streams, each with its own picture ids and
TL0PICIDX. A subscriber moved from one layer to another must see them continue, or
its decoder's reference tracking takes the new layer's numbers for lost pictures; so
the SFU reads them from each packet of a layered track and rewrites them per
subscriber (``rewrite``). A layer switch waits for the first packet of a keyframe
(``read``), whose VP8 header also gives the picture's size. With temporal layers
(``L1T3``), ``read`` also gives each picture's temporal index, so a subscriber can be
sent only the base layer's pictures while it waits for a smaller layer's keyframe.
"""

from __future__ import annotations

from typing import Final

X_BIT: Final = 0x80
S_BIT: Final = 0x10
PART_ID: Final = 0x0F
I_BIT: Final = 0x80
L_BIT: Final = 0x40
T_BIT: Final = 0x20
K_BIT: Final = 0x10
M_BIT: Final = 0x80


def read(payload: bytes | memoryview) -> tuple[int, int, int, int, int]:
    """``(keyframe_height, picture_id, tl0picidx, temporal_index, descriptor_size)`` of
    one packet.

    ``keyframe_height`` is the picture height when the packet starts a keyframe, 0 when it
    does not; ``picture_id``, ``tl0picidx`` and ``temporal_index`` (TID) are -1 when
    absent. Raises IndexError on a payload too short for what its descriptor announces.
    """
    first = payload[0]
    pos = 1
    picture_id = tl0 = tid = -1
    if first & X_BIT:
        ext = payload[1]
        pos = 2
        if ext & I_BIT:
            if payload[pos] & M_BIT:
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                pos += 2
            else:
                picture_id = payload[pos]
                pos += 1
        if ext & L_BIT:
            tl0 = payload[pos]
            pos += 1
        if ext & T_BIT:
            tid = payload[pos] >> 6
            pos += 1
        elif ext & K_BIT:
            pos += 1
    height = 0
    # A keyframe starts partition 0 with an even frame tag and the 9d 01 2a start code.
    if (
        first & S_BIT
        and not first & PART_ID
        and len(payload) >= pos + 10
        and not payload[pos] & 0x01
        and payload[pos + 3 : pos + 6] == b"\x9d\x01\x2a"
    ):
        height = (payload[pos + 8] | (payload[pos + 9] << 8)) & 0x3FFF
    return height, picture_id, tl0, tid, pos


def starts_frame(payload: bytes | memoryview) -> bool:
    """Whether the packet is the first of a picture (S bit set, partition 0)."""
    return bool(payload[0] & S_BIT) and not payload[0] & PART_ID


def rewrite(payload: memoryview, picture_delta: int, tl0_delta: int) -> bytes:
    """The descriptor of ``payload`` with its picture id and TL0PICIDX moved on by the
    deltas (modulo their width), followed by the rest of the payload."""
    out = bytearray(payload[:6])  # the descriptor is at most 6 bytes
    if out[0] & X_BIT:
        ext = out[1]
        pos = 2
        if ext & I_BIT:
            if out[pos] & M_BIT:
                value = (((out[pos] & 0x7F) << 8) | out[pos + 1]) + picture_delta
                out[pos] = M_BIT | ((value >> 8) & 0x7F)
                out[pos + 1] = value & 0xFF
                pos += 2
            else:
                out[pos] = (out[pos] + picture_delta) & 0x7F
                pos += 1
        if ext & L_BIT:
            out[pos] = (out[pos] + tl0_delta) & 0xFF
    return bytes(out) + bytes(payload[6:])
