"""``GET /metrics``: Prometheus text exposition of what /api/stats knows, and more.

Nothing is counted per packet or per reading for this: the SFU, the heart-rate relay,
the writer and the signaling server keep plain counters anyway, and a scrape reads them
once (``collect_snapshot``), then ``SnapshotCollector`` turns that snapshot into metric
families. The registry is the app's own (built by ``MetricsApi`` in the app factory),
never prometheus_client's global one; it also holds the server process's own
``process_*`` metrics (CPU seconds, resident memory, open files).

SFU counters carry a ``worker`` label (``"0"``, ``"1"``, … or ``"in-process"``): a
worker that dies is replaced by one counting from zero, and per worker that is an
ordinary counter reset to Prometheus, where a sum over workers would just go down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiohttp import web
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfu.backend import MediaBackend

from .server import SignalingServer

ROLES = ("host", "participant", "device", "board")


class _Source(NamedTuple):
    """Where a counter comes from (``key`` in a stats dict) and what it is exported as."""

    key: str
    name: str  # without the _total that prometheus_client appends
    help: str
    labels: dict[str, str] = {}  # fixed labels telling series of one family apart


_SFU_COUNTERS = (
    _Source("forwarded_packets", "pulseroom_sfu_forwarded_packets", "RTP packets forwarded"),
    _Source("forwarded_bytes", "pulseroom_sfu_forwarded_bytes", "RTP bytes forwarded"),
    _Source(
        "dropped_packets",
        "pulseroom_sfu_dropped_packets",
        "copies a congested subscriber could not take",
    ),
    _Source("nacks_received", "pulseroom_sfu_nacks_received", "NACKs from subscribers"),
    _Source(
        "nacked_packets", "pulseroom_sfu_nacked_packets", "packets subscribers' NACKs asked for"
    ),
    _Source(
        "retransmitted_packets",
        "pulseroom_sfu_retransmitted_packets",
        "NACKed packets answered from the cache",
    ),
    _Source("nacks_sent", "pulseroom_sfu_nacks_sent", "NACKs sent upstream to publishers"),
    _Source(
        "plis_received",
        "pulseroom_sfu_keyframe_requests_received",
        "keyframe requests from subscribers",
        {"type": "pli"},
    ),
    _Source(
        "firs_received",
        "pulseroom_sfu_keyframe_requests_received",
        "keyframe requests from subscribers",
        {"type": "fir"},
    ),
    _Source(
        "keyframe_requests",
        "pulseroom_sfu_keyframe_requests_sent",
        "PLIs sent to publishers (merged per second)",
    ),
    _Source("received_packets", "pulseroom_sfu_received_packets", "RTP packets from publishers"),
    _Source(
        "queued_packets",
        "pulseroom_sfu_queued_packets",
        "of those, packets through aiortc's queue rather than the socket's callback",
    ),
    _Source("piped_packets", "pulseroom_sfu_piped_packets", "packets piped to other workers"),
    _Source(
        "pipe_dropped_packets",
        "pulseroom_sfu_pipe_dropped_packets",
        "piped packets a full pipe socket refused",
    ),
    _Source(
        "pipe_nacks_sent",
        "pulseroom_sfu_pipe_nacks_sent",
        "holes in a pipe asked for again from the origin worker",
    ),
    _Source(
        "pipe_resent_packets",
        "pulseroom_sfu_pipe_resent_packets",
        "packets piped again from the origin's NACK cache",
    ),
    _Source(
        "stale_packets",
        "pulseroom_sfu_stale_packets",
        "copies dropped as too far behind their subscriber's newest packet",
    ),
    _Source(
        "layer_switches",
        "pulseroom_sfu_layer_switches",
        "subscribers moved to another simulcast layer",
    ),
    _Source(
        "probe_packets",
        "pulseroom_sfu_probe_packets",
        "padding packets sent so a subscriber's bandwidth estimate can rise",
    ),
    _Source(
        "paced_packets",
        "pulseroom_sfu_paced_packets",
        "copies held back to spread a subscriber's burst over time",
    ),
    _Source(
        "shed_packets",
        "pulseroom_sfu_shed_packets",
        "upper temporal layers' packets held back from subscribers waiting for a smaller layer",
    ),
)

_HR_COUNTERS = (
    _Source("received", "pulseroom_hr_readings_received", "heart-rate messages received"),
    _Source("accepted", "pulseroom_hr_readings_accepted", "readings accepted for storage"),
    _Source(
        "rejected", "pulseroom_hr_readings_rejected", "messages refused", {"reason": "invalid"}
    ),
    _Source(
        "rejected_unknown_sender",
        "pulseroom_hr_readings_rejected",
        "messages refused",
        {"reason": "unknown_sender"},
    ),
    _Source("duplicates", "pulseroom_hr_readings_duplicate", "re-sent readings (kept once)"),
    _Source("fanned_out", "pulseroom_hr_readings_fanned_out", "readings sent to screens"),
    _Source("durable", "pulseroom_hr_readings_durable", "readings in the database or spool"),
)

# Heart-rate writer counters: (key in its stats, metric name without _total, help).
_WRITER_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("written", "pulseroom_hr_readings_stored", "readings inserted into the database (new rows)"),
    ("duplicates_ignored", "pulseroom_hr_db_duplicates_ignored", "rows the database already had"),
    ("rejected", "pulseroom_hr_db_rejected", "rows the database refused as data (dropped, logged)"),
    ("spooled", "pulseroom_hr_readings_spooled", "rows written to the spool file during an outage"),
    ("unspooled", "pulseroom_hr_readings_unspooled", "spooled rows later written to the database"),
    ("batches", "pulseroom_hr_db_batches", "insert statements (batches) run"),
    ("db_errors", "pulseroom_hr_db_errors", "failed database rounds (outages, timeouts)"),
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a scrape reports, read at one moment."""

    sessions: int
    classes: int
    members: Mapping[str, int]  # by role
    media: Mapping[str, Any]  # MediaBackend.stats()
    heart_rate: Mapping[str, Any]  # HeartRateRelay.stats()
    events: Mapping[str, int]
    errors: Mapping[tuple[str, str], int]
    relay: Mapping[str, int] | None = None  # with relay routing (signaling/relay.py)


async def collect_snapshot(signaling: SignalingServer, media: MediaBackend) -> Snapshot:
    """Read the counters of every part (the SFU workers' over their sockets)."""
    members = dict.fromkeys(ROLES, 0)
    for member in signaling.presence.by_sid.values():
        members[member.role] = members.get(member.role, 0) + 1
    media_stats = await media.stats()
    return Snapshot(
        sessions=len(signaling.sio.eio.sockets),
        classes=len(signaling.presence.by_room),
        members=members,
        media=media_stats,
        heart_rate=signaling.heart_rate.stats(),
        events=dict(signaling.event_counts),
        errors=dict(signaling.error_counts),
        relay=signaling.relay.stats() if signaling.relay is not None else None,
    )


def _per_worker(media: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """``(worker label, counters, info)`` for each worker that answered, or the in-process SFU."""
    workers = media.get("workers")
    if workers is None:
        return [("in-process", media, media)]
    return [
        (str(index), info["counters"], info)
        for index, info in enumerate(workers)
        if isinstance(info.get("counters"), Mapping)
    ]


class SnapshotCollector(Collector):
    """A prometheus_client collector of the snapshot handed to it just before a render.

    ``MetricsApi.render`` sets the snapshot and renders the registry in one synchronous
    step, so two scrapes never see each other's snapshot.
    """

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry need not check names of metrics made per scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metric families of the current snapshot."""
        snap = self.snapshot
        if snap is None:
            return
        yield _gauge("pulseroom_socketio_sessions", "connected Socket.IO sessions", snap.sessions)
        yield _gauge("pulseroom_classes", "classes with anyone joined on this node", snap.classes)
        members = GaugeMetricFamily(
            "pulseroom_participants", "joined sessions on this node, by role", labels=["role"]
        )
        for role, count in sorted(snap.members.items()):
            members.add_metric([role], count)
        yield members

        events = CounterMetricFamily(
            "pulseroom_signaling_events", "Socket.IO events handled", labels=["event"]
        )
        for name, count in sorted(snap.events.items()):
            events.add_metric([name], count)
        yield events
        errors = CounterMetricFamily(
            "pulseroom_signaling_errors",
            "Socket.IO events refused, by error code",
            labels=["event", "code"],
        )
        for (name, code), count in sorted(snap.errors.items()):
            errors.add_metric([name, code], count)
        yield errors
        if snap.relay is not None:
            yield from self._relay(snap.relay)

        yield from self._sfu(snap.media)
        yield from self._heart_rate(snap.heart_rate)

    def _sfu(self, media: Mapping[str, Any]) -> Iterator[Metric]:
        workers = media.get("workers")
        if workers is not None:
            alive = sum(1 for worker in workers if worker.get("alive"))
            yield _gauge("pulseroom_sfu_workers", "SFU worker processes alive", alive)
            yield CounterMetricFamily(
                "pulseroom_sfu_worker_restarts",
                "SFU workers replaced after dying",
                value=int(media.get("worker_restarts", 0)),
            )
        per_worker = _per_worker(media)
        rooms = GaugeMetricFamily(
            "pulseroom_sfu_rooms", "classes with a media session", labels=["worker"]
        )
        peers = GaugeMetricFamily(
            "pulseroom_sfu_participants", "media sessions (participants)", labels=["worker"]
        )
        for label, _counters, info in per_worker:
            rooms.add_metric([label], float(info.get("rooms", 0)))
            peers.add_metric([label], float(info.get("participants", 0)))
        yield rooms
        yield peers

        families: dict[str, CounterMetricFamily] = {}
        for key, name, help_text, extra in _SFU_COUNTERS:
            family = families.get(name)
            if family is None:
                family = families[name] = CounterMetricFamily(
                    name, help_text, labels=["worker", *extra]
                )
            for label, counters, _info in per_worker:
                family.add_metric([label, *extra.values()], float(counters.get(key, 0)))
        yield from families.values()

        streams = GaugeMetricFamily(
            "pulseroom_sfu_subscriber_streams",
            "tracks being forwarded to subscribers",
            labels=["worker"],
        )
        loss = GaugeMetricFamily(
            "pulseroom_sfu_subscriber_loss_ratio",
            "mean fraction lost over subscriber streams, from their latest receiver reports",
            labels=["worker"],
        )
        lossy = GaugeMetricFamily(
            "pulseroom_sfu_subscriber_streams_lossy",
            "subscriber streams whose latest receiver report says 5% lost or more",
            labels=["worker"],
        )
        for label, counters, _info in per_worker:
            count = int(counters.get("subscriber_streams", 0))
            total = float(counters.get("subscriber_loss_ratio_sum", 0.0))
            streams.add_metric([label], count)
            loss.add_metric([label], total / count if count else 0.0)
            lossy.add_metric([label], float(counters.get("subscriber_streams_lossy", 0)))
        yield streams
        yield loss
        yield lossy

    def _relay(self, relay: Mapping[str, int]) -> Iterator[Metric]:
        sessions = GaugeMetricFamily(
            "pulseroom_relayed_sessions",
            "sessions relayed between nodes: to another node's class (out), from another"
            " node's clients (in)",
            labels=["direction"],
        )
        sessions.add_metric(["out"], relay["sessions_out"])
        sessions.add_metric(["in"], relay["sessions_in"])
        yield sessions
        events = CounterMetricFamily(
            "pulseroom_relayed_events",
            "events relayed to other nodes (out) and handled for them (in)",
            labels=["direction"],
        )
        events.add_metric(["out"], relay["forwarded"])
        events.add_metric(["in"], relay["served"])
        yield events

    def _heart_rate(self, hr: Mapping[str, Any]) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        for key, name, help_text, extra in _HR_COUNTERS:
            family = families.get(name)
            if family is None:
                family = families[name] = CounterMetricFamily(name, help_text, labels=[*extra])
            family.add_metric(list(extra.values()), float(hr.get(key, 0)))
        yield from families.values()
        writer: Mapping[str, Any] = hr.get("writer", {})
        for key, name, help_text in _WRITER_COUNTERS:
            yield CounterMetricFamily(name, help_text, value=float(writer.get(key, 0)))
        yield _gauge(
            "pulseroom_hr_writer_queue_rows",
            "readings waiting in memory for the database",
            writer.get("pending", 0),
        )
        yield _gauge(
            "pulseroom_hr_db_write_lag_seconds",
            "received to committed, of the oldest reading of the last batch written",
            writer.get("lag_s", 0.0),
        )
        yield _gauge(
            "pulseroom_hr_db_write_lag_max_seconds",
            "the largest received-to-committed delay of any batch since start",
            writer.get("max_lag_s", 0.0),
        )
        fanout = GaugeMetricFamily(
            "pulseroom_hr_fanout_lag_seconds",
            "received to emitted to screens, over the last 4096 readings",
            labels=["quantile"],
        )
        for quantile, key in (("0.5", "fanout_lag_p50_s"), ("0.99", "fanout_lag_p99_s")):
            value = hr.get(key)
            if value is not None:
                fanout.add_metric([quantile], float(value))
        yield fanout


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))


class MetricsApi:
    """``GET /metrics`` of one app, with a registry of its own.

    ``source`` reads a snapshot (``collect_snapshot`` bound to the app's parts).
    """

    def __init__(self, source: Callable[[], Awaitable[Snapshot]]) -> None:
        self.source = source
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.collector = SnapshotCollector()
        self.registry.register(self.collector)

    @classmethod
    def of(cls, signaling: SignalingServer, media: MediaBackend) -> MetricsApi:
        """The metrics of a signaling server and its media backend."""

        async def source() -> Snapshot:
            return await collect_snapshot(signaling, media)

        return cls(source)

    def render(self, snapshot: Snapshot, accept: str = "") -> tuple[bytes, str]:
        """The exposition of ``snapshot`` (plus process metrics) and its content type.

        OpenMetrics when ``accept`` asks for it, else the Prometheus text format 0.0.4.
        """
        encoder, content_type = choose_encoder(accept)
        # No await between setting the snapshot and rendering it: scrapes cannot mix.
        self.collector.snapshot = snapshot
        try:
            body = encoder(self.registry)
        finally:
            self.collector.snapshot = None
        return body, content_type

    async def metrics(self, request: web.Request) -> web.Response:
        """Read the counters and answer in the format the scraper accepts."""
        snapshot = await self.source()
        body, content_type = self.render(snapshot, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    def add_routes(self, app: web.Application) -> None:
        """Register ``/metrics``."""
        app.router.add_get("/metrics", self.metrics)
