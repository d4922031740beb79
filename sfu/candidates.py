"""Which remote ICE candidates the SFU tries: none on loopback, link-local or multicast.

A candidate tells the SFU where to send connectivity checks. A client could name
127.0.0.1 (the SFU would probe its own host's ports: Redis, PostgreSQL), a link-local
address (cloud metadata services live at 169.254.169.254) or a multicast group: no real
client is reachable there, so such candidates are dropped, whether trickled or written
into an offer or answer. Private ranges stay: a LAN deployment needs them. A hostname
(an mDNS ``.local`` name) is left to aioice.
"""

from __future__ import annotations

import ipaddress


def refused(address: str) -> bool:
    """Whether a candidate's connection address is one no client can be reached at."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a hostname
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified


def _address(candidate: str) -> str:
    # "foundation component transport priority ADDRESS port typ ..." (RFC 8839)
    fields = candidate.removeprefix("a=").removeprefix("candidate:").split()
    return fields[4] if len(fields) > 4 else ""


def strip_refused(sdp: str) -> str:
    """``sdp`` without the ``a=candidate`` lines whose address is refused."""
    lines = sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n")
    kept = [
        line for line in lines if not (line.startswith("a=candidate:") and refused(_address(line)))
    ]
    return ("\r\n" if "\r\n" in sdp else "\n").join(kept)


def refused_candidate(candidate: str) -> bool:
    """``refused`` for a trickled candidate line (``candidate:...``)."""
    return refused(_address(candidate))
