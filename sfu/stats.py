"""Counters the SFU keeps for /api/stats, benchmarks and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ForwardingStats:
    """Process-wide forwarding counters, owned by the SfuServer (plain ints: cheap to bump)."""

    received_packets: int = 0  # RTP from publishers (after SRTP)
    # Of those, the ones that came through aiortc's queue instead of straight from the
    # socket's callback (sfu.aiortc_adapter.take_datagrams): TURN-relayed pairs only.
    queued_packets: int = 0
    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    keyframe_requests: int = 0  # PLIs sent to publishers (merged, rate-limited)
    plis_received: int = 0  # from subscribers
    firs_received: int = 0  # from subscribers
    nacks_received: int = 0  # NACK packets from subscribers
    nacked_packets: int = 0  # sequence numbers those NACKs asked for
    retransmitted_packets: int = 0  # of those, answered from the cache
    nacks_sent: int = 0  # NACK packets sent to publishers (upstream loss)
    dropped_packets: int = 0  # copies a congested subscriber could not take
    stale_packets: int = 0  # copies too far behind a subscriber's newest to be of use
    piped_packets: int = 0  # packets sent to other workers of a class (sfu/pipe.py)
    pipe_dropped_packets: int = 0  # of those, refused by a full pipe socket
    pipe_nacks_sent: int = 0  # holes in a pipe asked for again from the origin
    pipe_resent_packets: int = 0  # packets piped again for those (from the NACK cache)
    layer_switches: int = 0  # subscribers moved to another simulcast layer (at its keyframe)
    probe_packets: int = 0  # padding sent so a subscriber's bandwidth estimate can rise
    probe_bytes: int = 0
    paced_packets: int = 0  # copies held back to spread a subscriber's burst (sfu/pacer.py)
    pacer_flushes: int = 0  # times more was offered than the pace: the queue went at once
    shed_packets: int = 0  # upper temporal layers' packets not sent while a subscriber
    # waits for a smaller layer's keyframe (sfu/consumer.py, ``shed``)

    def as_dict(self) -> dict[str, int]:
        """The counters as a JSON-ready dict."""
        return asdict(self)
