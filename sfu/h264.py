"""The H.264 RTP payload (RFC 6184, packetization mode 1) back into access units,
without decoding.

A picture (an *access unit*) travels as NAL units: each alone in a packet (single NAL
unit packet, types 1-23), several small ones in one (STAP-A, 24), or a large one split
over several (FU-A, 28: a start bit on the first fragment, an end bit on the last).
``AccessUnits.picture`` joins one picture's payloads into Annex-B (each NAL unit after
a ``00 00 00 01`` start code), what FFmpeg's Matroska muxer takes and rewrites into
the length-prefixed form Matroska stores.

A picture is a keyframe when it holds an IDR slice (type 5) and the parameter sets it
refers to: the sequence (SPS, 7) and picture (PPS, 8) parameter sets. Publishers send
them with each IDR (libwebrtc, x264 in aiortc); one that comes without them gets the
last ones seen on the stream put in front of it, and with none seen yet it is not a
keyframe (a file cannot start on it). The SPS gives the picture's size
(``sps_size``), the file's track header needs it before any picture is written.
"""

from __future__ import annotations

from typing import Final

START_CODE: Final = b"\x00\x00\x00\x01"
NAL_TYPE: Final = 0x1F
STAP_A: Final = 24
FU_A: Final = 28
FU_START: Final = 0x80
NON_IDR: Final = 1
IDR: Final = 5
SEI: Final = 6
SPS: Final = 7
PPS: Final = 8
AUD: Final = 9
FILLER: Final = 12
# Profiles whose SPS carries chroma format, bit depths and scaling lists (H.264 7.3.2.1.1).
HIGH_PROFILES: Final = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def first_nal(payload: bytes | memoryview) -> tuple[int, int] | None:
    """``(type, offset)`` of the first NAL unit a packet starts (its header's type, and
    where its header byte is), None for a packet continuing one (an FU-A fragment after
    the first). Raises IndexError on a payload too short for its header."""
    kind = payload[0] & NAL_TYPE
    if kind == STAP_A:
        return payload[3] & NAL_TYPE, 3  # after the STAP-A header and a 16-bit size
    if kind == FU_A:
        if not payload[1] & FU_START:
            return None
        return payload[1] & NAL_TYPE, 1  # the FU header stands in for the NAL header
    return kind, 0


def starts_frame(payload: bytes | memoryview) -> bool:
    """Whether the packet is the first of a picture: it starts with a NAL unit that
    comes before slices (an access unit delimiter, SEI, parameter sets), or with a slice
    whose first macroblock is the picture's first (``first_mb_in_slice`` 0, coded as a
    single 1 bit)."""
    try:
        found = first_nal(payload)
        if found is None:
            return False
        kind, offset = found
        if kind in (NON_IDR, IDR, 2):  # slices (and partition A) begin with first_mb
            return bool(payload[offset + 1] & 0x80)
    except IndexError:
        return False
    return kind not in (3, 4, FILLER)  # partitions B and C, filler: never first


def nal_units(parts: list[bytes]) -> list[bytes]:
    """The NAL units of one picture's payloads, in order. Raises ValueError on a payload
    that is not of packetization mode 1 or is cut short, or on an FU-A fragment without
    its start."""
    units: list[bytes] = []
    fragments: bytearray | None = None  # the FU-A NAL unit being joined
    for payload in parts:
        if not payload:
            continue
        kind = payload[0] & NAL_TYPE
        if kind == FU_A:
            if len(payload) < 3:
                raise ValueError("an FU-A packet without data")
            header = payload[1]
            if header & FU_START:
                if fragments is not None:
                    raise ValueError("an FU-A NAL unit without its end")
                fragments = bytearray([(payload[0] & 0xE0) | (header & NAL_TYPE)])
            elif fragments is None:
                raise ValueError("an FU-A fragment without its start")
            fragments += payload[2:]
            if header & 0x40:  # the end bit
                units.append(bytes(fragments))
                fragments = None
            continue
        if fragments is not None:
            raise ValueError("an FU-A NAL unit without its end")
        if kind == STAP_A:
            units += _aggregated(payload)
        elif 1 <= kind <= 23:
            units.append(payload)
        else:
            raise ValueError(f"NAL unit type {kind} is not of packetization mode 1")
    if fragments is not None:
        raise ValueError("an FU-A NAL unit without its end")
    return units


def _aggregated(payload: bytes) -> list[bytes]:
    """The NAL units of a STAP-A packet."""
    units = []
    pos = 1
    while pos < len(payload):
        if pos + 2 > len(payload):
            raise ValueError("a STAP-A size cut short")
        size = int.from_bytes(payload[pos : pos + 2], "big")
        pos += 2
        if size == 0 or pos + size > len(payload):
            raise ValueError("a STAP-A NAL unit cut short")
        units.append(payload[pos : pos + size])
        pos += size
    return units


class AccessUnits:
    """One stream's pictures in Annex-B, keeping its latest parameter sets."""

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def reset(self) -> None:
        """A new stream (SSRC or layer): its parameter sets are its own."""
        self.sps = self.pps = None

    def picture(self, parts: list[bytes]) -> tuple[bytes, bool]:
        """``(Annex-B access unit, keyframe)`` of one picture's payloads (ValueError: not
        a picture that can be written)."""
        units = nal_units(parts)
        if not units:
            raise ValueError("a picture without NAL units")
        kinds = [unit[0] & NAL_TYPE for unit in units]
        for kind, unit in zip(kinds, units, strict=True):
            if kind == SPS:
                self.sps = unit
            elif kind == PPS:
                self.pps = unit
        keyframe = IDR in kinds
        if keyframe and (SPS not in kinds or PPS not in kinds):
            missing = [
                kept
                for kind, kept in ((SPS, self.sps), (PPS, self.pps))
                if kind not in kinds and kept is not None
            ]
            # After a leading delimiter, before everything else (H.264 7.4.1.2.3).
            at = 1 if kinds[0] == AUD else 0
            units[at:at] = missing
            # Without a parameter set it refers to, no decoder can start on it.
            keyframe = self.sps is not None and self.pps is not None
        return START_CODE + START_CODE.join(units), keyframe


def keyframe_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the SPS of an Annex-B keyframe, None if it has none (or
    an SPS that cannot be read)."""
    for unit in data.split(START_CODE):
        if unit and unit[0] & NAL_TYPE == SPS:
            try:
                return sps_size(unit)
            except (IndexError, ValueError):
                return None
    return None


class _Bits:
    """Reads an RBSP bit by bit (Exp-Golomb codes: H.264 9.1)."""

    def __init__(self, nal: bytes) -> None:
        # Emulation prevention: 00 00 03 in a NAL unit stands for 00 00.
        self.data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError past the end
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
            if zeros > 31:
                raise ValueError("an Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def sps_size(sps: bytes) -> tuple[int, int]:
    """The displayed ``(width, height)`` an SPS NAL unit (header byte included) gives,
    after its cropping (H.264 7.3.2.1.1, 7.4.2.1.1). IndexError: cut short."""
    bits = _Bits(sps)
    bits.bits(8)  # the NAL header
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_planes = bits.bit()
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.bit()  # delta_pic_order_always_zero_flag
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        array_type = 0 if separate_planes else chroma_format
        crop_x = 1 if array_type == 0 else (2 if chroma_format in (1, 2) else 1)
        crop_y = (2 - frame_mbs_only) * (1 if array_type == 0 else (2 if chroma_format == 1 else 1))
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError("an SPS cropped to nothing")
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last
