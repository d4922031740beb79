"""Stereo Opus negotiation (RFC 7587), which aiortc drops, on the SDP text.

aiortc answers every Opus offer with its own codec parameters, which are none, so a
browser publishing music would be told to send mono at its default rate. Here:

- ``offered_parameters`` reads the Opus ``a=fmtp`` of each audio m-section of a
  publish offer;
- ``publish_parameters`` decides what the answer says: ``stereo=1`` (and
  ``sprop-stereo=1``) when the publisher offered stereo, which is what makes a
  browser encode two channels, and its ``maxaveragebitrate`` up to
  ``MAX_AVERAGE_BITRATE``. These become the producer's codec parameters, so they
  also describe the forwarded stream (to subscribers, and to other workers);
- ``describe_tracks`` writes a stereo producer's parameters into the Opus
  ``a=fmtp`` of its m-section in a subscribe offer (aiortc builds that offer from its
  own capabilities), so the subscriber's browser answers ``stereo=1`` and decodes
  both channels.

The packets themselves are forwarded as they come: stereo or mono is inside the Opus
payload. Pure functions of the SDP text and of parameter dicts, tested alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

MAX_AVERAGE_BITRATE: Final = 128_000  # bit/s: music; RFC 7587 allows up to 510 kbit/s
MIN_AVERAGE_BITRATE: Final = 6_000  # RFC 7587's lower bound
# The parameters that describe a stereo stream, in the order they are written.
STEREO_KEYS: Final = ("stereo", "sprop-stereo", "maxaveragebitrate")

Parameters = Mapping[str, "str | int | None"]


def _sections(sdp: str) -> list[str]:
    """The session part, then each m-section, as text (line ends kept)."""
    return [p for p in re.split(r"(?m)^(?=m=)", sdp) if p]


def _attributes(section: str, name: str) -> list[str]:
    prefix = f"a={name}:"
    return [line[len(prefix) :].strip() for line in section.splitlines() if line.startswith(prefix)]


def _opus_payload_types(section: str) -> list[str]:
    found = []
    for value in _attributes(section, "rtpmap"):
        payload_type, _, encoding = value.partition(" ")
        if encoding.lower().startswith("opus/"):
            found.append(payload_type)
    return found


def parse_fmtp(text: str) -> dict[str, str]:
    """``key=value;key=value`` (spaces around either allowed) as a dict; keys lower case."""
    parsed: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            parsed[key.strip().lower()] = value.strip()
    return parsed


def offered_parameters(offer_sdp: str) -> dict[str, dict[str, str]]:
    """MID → the ``a=fmtp`` parameters of the first Opus payload type of each audio
    m-section (the codec the SFU keeps); sections without Opus are left out."""
    found: dict[str, dict[str, str]] = {}
    for section in _sections(offer_sdp):
        mids = _attributes(section, "mid")
        opus = _opus_payload_types(section) if section.startswith("m=audio") else []
        if not mids or not opus:
            continue
        params: dict[str, str] = {}
        for value in _attributes(section, "fmtp"):
            payload_type, _, text = value.partition(" ")
            if payload_type == opus[0]:
                params.update(parse_fmtp(text))
        found[mids[0]] = params
    return found


def publish_parameters(offered: Mapping[str, str]) -> dict[str, str | int]:
    """The stereo parameters to answer a publisher's Opus offer with (none for mono)."""
    answer: dict[str, str | int] = {}
    if offered.get("stereo") == "1" or offered.get("sprop-stereo") == "1":
        answer["stereo"] = 1
        answer["sprop-stereo"] = 1
    rate = offered.get("maxaveragebitrate", "")
    if rate.isdigit():
        answer["maxaveragebitrate"] = max(MIN_AVERAGE_BITRATE, min(int(rate), MAX_AVERAGE_BITRATE))
    return answer


def is_stereo(parameters: Parameters) -> bool:
    """Whether a producer's codec parameters say it sends two channels."""
    return str(parameters.get("stereo")) == "1" or str(parameters.get("sprop-stereo")) == "1"


def stereo_parameters(parameters: Parameters) -> dict[str, str | int]:
    """What a subscribe offer says of a stereo producer's track (empty for mono)."""
    if not is_stereo(parameters):
        return {}
    described: dict[str, str | int] = {"stereo": 1, "sprop-stereo": 1}
    rate = parameters.get("maxaveragebitrate")
    if rate is not None and str(rate).isdigit():
        described["maxaveragebitrate"] = int(rate)
    return described


def _merged(text: str, extra: Mapping[str, str | int]) -> str:
    items = [i.strip() for i in text.split(";") if i.strip()]
    keep = [i for i in items if i.partition("=")[0].strip().lower() not in extra]
    return ";".join(keep + [f"{key}={value}" for key, value in extra.items()])


def describe_tracks(offer_sdp: str, stereo: Mapping[str, Mapping[str, str | int]]) -> str:
    """The offer with ``stereo[mid]`` written into the Opus ``a=fmtp`` of each named
    audio m-section (added when it has none); other sections unchanged."""
    if not stereo:
        return offer_sdp
    out: list[str] = []
    for section in _sections(offer_sdp):
        mids = _attributes(section, "mid")
        extra = stereo.get(mids[0]) if mids and section.startswith("m=audio") else None
        opus = _opus_payload_types(section) if extra else []
        if not extra or not opus:
            out.append(section)
            continue
        eol = "\r\n" if "\r\n" in section else "\n"
        lines = section.split(eol)
        prefix = f"a=fmtp:{opus[0]} "
        at = next((i for i, line in enumerate(lines) if line.startswith(prefix)), None)
        if at is not None:
            lines[at] = prefix + _merged(lines[at][len(prefix) :], extra)
        else:
            rtpmap = f"a=rtpmap:{opus[0]} "
            at = next(i for i, line in enumerate(lines) if line.startswith(rtpmap))
            lines.insert(at + 1, prefix + _merged("", extra))
        out.append(eol.join(lines))
    return "".join(out)
