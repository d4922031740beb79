"""Which remote ICE candidates the SFU tries: none on loopback, link-local or multicast.

A candidate tells the SFU where to send connectivity checks. A client could name
127.0.0.1 (the SFU would probe its own host's ports: Redis, PostgreSQL), a link-local
address (cloud metadata services live at 169.254.169.254) or a multicast group: no real
client is reachable there, so such candidates are dropped, whether trickled or written
into an offer or answer. Private ranges stay by default: a LAN deployment needs them;
an internet-facing server can refuse them too (``CandidatePolicy(private=False)``,
``PULSEROOM_SFU_PRIVATE_CANDIDATES=false``): its clients reach it from public addresses
or through TURN, and a private candidate would only point its checks into its own
network. A hostname (an mDNS ``.local`` name) is left to aioice.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


def refused(address: str, private: bool = True) -> bool:
    """Whether a candidate's connection address is one no client can be reached at
    (with ``private=False``, private ranges too)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a hostname
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return True
    return not private and any(ip in network for network in _PRIVATE)


# RFC 1918, carrier-grade NAT (RFC 6598) and IPv6 unique local addresses. (Python's
# ``is_private`` also counts documentation and benchmark ranges.)
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def _address(candidate: str) -> str:
    # "foundation component transport priority ADDRESS port typ ..." (RFC 8839)
    fields = candidate.removeprefix("a=").removeprefix("candidate:").split()
    return fields[4] if len(fields) > 4 else ""


def strip_refused(sdp: str, private: bool = True) -> str:
    """``sdp`` without the ``a=candidate`` lines whose address is refused."""
    lines = sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n")
    kept = [
        line
        for line in lines
        if not (line.startswith("a=candidate:") and refused(_address(line), private))
    ]
    return ("\r\n" if "\r\n" in sdp else "\n").join(kept)


def refused_candidate(candidate: str, private: bool = True) -> bool:
    """``refused`` for a trickled candidate line (``candidate:...``)."""
    return refused(_address(candidate), private)


@dataclass(frozen=True, slots=True)
class CandidatePolicy:
    """Which remote candidates a server's peers try: ``private`` ranges or not."""

    private: bool = True

    def strip(self, sdp: str) -> str:
        """``sdp`` without the candidates this policy refuses."""
        return strip_refused(sdp, self.private)

    def refuses(self, candidate: str) -> bool:
        """Whether a trickled candidate line is refused."""
        return refused_candidate(candidate, self.private)


LAN_POLICY = CandidatePolicy()  # the default: everything but loopback, link-local, multicast
