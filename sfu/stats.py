"""Counters the SFU keeps for /api/stats, benchmarks and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ForwardingStats:
    """Process-wide forwarding counters, owned by the SfuServer (plain ints: cheap to bump)."""

    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    keyframe_requests: int = 0
    nacks_received: int = 0
    retransmitted_packets: int = 0
    dropped_packets: int = 0  # copies a congested subscriber could not take

    def as_dict(self) -> dict[str, int]:
        """The counters as a JSON-ready dict."""
        return asdict(self)
