"""The app factory: builds everything from Settings; resources live in cleanup contexts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from runtime.shutdown import end_within, run_within
from sfu.backend import MediaBackend
from sfu.pool import WorkerPool
from signaling.accounts_api import AccountsApi, page_link
from signaling.activity_api import ActivityApi
from signaling.admin_api import AdminApi
from signaling.classes import ClassesApi
from signaling.client_address import ClientAddress, ConnectionCap
from signaling.cluster import Cluster, ClusterError
from signaling.co_instructors import CoInstructorsApi
from signaling.fanout import FanoutManager, FanoutRedisManager
from signaling.headers import add_security_headers
from signaling.health import HealthApi
from signaling.http import RoomsApi, json_errors
from signaling.mail import Mailer
from signaling.me_api import MeApi
from signaling.messages import MAX_SUBSCRIBE_SDP
from signaling.metrics import MetricsApi
from signaling.oidc import OidcClient
from signaling.password_reset import PasswordResetApi
from signaling.preview import PreviewApi
from signaling.recording import RecordingsApi
from signaling.server import SignalingServer
from signaling.sso_api import CALLBACK_PATH, SsoApi
from signaling.summary_api import SummaryApi
from signaling.tokens import TokenSigner
from signaling.transport import ProtocolServer
from signaling.turn import TurnIssuer
from storage import migrations
from storage.accounts import AccountStore
from storage.audit import AuditLog
from storage.co_instructors import CoInstructors
from storage.recordings import RecordingFiles
from storage.store import Store, create_engine
from storage.timer_events import TimerEvents
from telemetry.history import HeartRateHistory
from telemetry.writer import HeartRateWriter

from .retention import recording_sweep
from .retention import sweep as retention_sweep
from .settings import Settings

if TYPE_CHECKING:  # the SFU in this process (aiortc) is imported only when it runs here
    from sfu.server import SfuServer

logger = logging.getLogger(__name__)


# Closing the database pool at shutdown: a connection broken by a database restart must
# not hold the server (runtime/shutdown.py).
DISPOSE_TIMEOUT_S = 1.0


class StartupError(Exception):
    """A resource the server needs could not be opened; the message says which and why."""


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
ACCOUNTS = web.AppKey("accounts", AccountStore)
SFU: web.AppKey[SfuServer] = web.AppKey("sfu")  # only with PULSEROOM_SFU_WORKERS=0
MEDIA = web.AppKey("media", MediaBackend)
SIGNALING = web.AppKey("signaling", SignalingServer)
HEART_RATE_WRITER = web.AppKey("heart_rate_writer", HeartRateWriter)

# What aiohttp's cleanup_ctx takes: an async generator that opens, yields, then closes.
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def _client_ice_servers(settings: Settings) -> list[dict[str, Any]]:
    return [{"urls": [url]} for url in settings.ice_servers]


def _account_apis(
    app: web.Application, settings: Settings, store: Store, audit: AuditLog
) -> AccountStore:
    """Accounts and what hangs on them: logins, the admin's pages, password links (by
    mail when configured), single sign-on, co-instructors. The account store, for the rest."""
    accounts = app[ACCOUNTS] = AccountStore(store.engine)
    secure_cookies = settings.base_url.startswith("https://")
    AccountsApi(accounts, audit, secure_cookies=secure_cookies).add_routes(app)
    _sso_api(settings, accounts, audit, secure_cookies).add_routes(app)
    mailer = Mailer.of(settings.smtp_url, settings.mail_sender)
    AdminApi(accounts, audit, settings.public_url, mailer).add_routes(app)
    PasswordResetApi(accounts, audit, mailer, settings.public_url).add_routes(app)
    CoInstructorsApi(store, accounts, audit).add_routes(app)
    return accounts


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run aiohttp application for ``settings``."""
    # Request bodies: a class title is a few bytes; nothing needs more than this.
    # Outermost, the client's address behind a trusted proxy (signaling/client_address.py).
    client_address = ClientAddress(settings.trusted_proxies)
    app = web.Application(
        client_max_size=256 * 1024, middlewares=[client_address.middleware, json_errors]
    )
    app[SETTINGS] = settings
    add_security_headers(app, https=(settings.public_url or "").startswith("https://"))
    store = Store(create_engine(settings.effective_database_url))
    media = _media_backend(settings)
    if not isinstance(media, WorkerPool):
        app[SFU] = media
    signer = TokenSigner(settings.signing_secret(), settings.link_ttl)
    app[STORE] = store
    app[MEDIA] = media
    # Readings the database cannot take right now wait in memory, then in this file.
    writer = app[HEART_RATE_WRITER] = HeartRateWriter(
        store.engine, settings.data_dir / "spool" / "heart_rate.jsonl"
    )

    sio, cluster = _socketio(settings)
    recordings = RecordingFiles(settings.data_dir / "recordings")
    sio.attach(app)
    app[SIGNALING] = SignalingServer(
        sio,
        store,
        media,
        signer,
        max_participants=settings.max_participants,
        ice_servers=_client_ice_servers(settings),
        heart_rate_writer=writer,
        turn=(
            TurnIssuer(tuple(settings.turn_urls), settings.turn_secret, settings.turn_ttl)
            if settings.turn_urls and settings.turn_secret
            else None
        ),
        cluster=cluster,
        relay=settings.cluster_routing == "relay",
        join_timeout=settings.join_timeout,
        idle_class_s=settings.idle_class_s,
        max_chat=settings.max_chat_per_class,
        max_readings=settings.max_readings_per_participant,
        connection_cap=ConnectionCap(settings.max_connections_per_address),
        recordings=recordings,
        recording_mode=settings.recording,
    )
    writer.on_durable = app[SIGNALING].heart_rate.durable
    hr_stats = app[SIGNALING].heart_rate.stats
    RoomsApi(media, hr_stats).add_routes(app)
    audit = AuditLog(store.engine)
    ClassesApi(store, signer, audit, settings.public_url, settings.rooms_per_minute).add_routes(app)
    accounts = _account_apis(app, settings, store, audit)
    secure_cookies = settings.base_url.startswith("https://")
    history = HeartRateHistory(store.engine)
    summaries = SummaryApi(store, history, writer, signer, audit)
    summaries.add_routes(app)
    MeApi(accounts, audit, summaries, history, signer, settings.participant_signup,
          secure_cookies).add_routes(app)  # fmt: skip
    ActivityApi(store, history, writer, TimerEvents(store.engine), signer).add_routes(app)
    PreviewApi(store, signer).add_routes(app)
    RecordingsApi(
        recordings, signer, audit, CoInstructors(store.engine), secure_cookies=secure_cookies
    ).add_routes(app)
    HealthApi(store.engine, media, settings.redis_url, settings.turn_urls).add_routes(app)
    MetricsApi.of(app[SIGNALING], media).add_routes(app)

    app.cleanup_ctx.append(_database(store, writer))
    app.cleanup_ctx.append(_first_run(accounts, settings.base_url))
    if (days := settings.retention_days) is not None:
        sweep = _sweeping("retention", lambda: retention_sweep(store, history, days, audit))
        app.cleanup_ctx.append(sweep)
    if (kept := settings.recording_retention_days) is not None:
        sweep = _sweeping("recording-retention", lambda: recording_sweep(recordings, kept, audit))
        app.cleanup_ctx.append(sweep)
    app.cleanup_ctx.append(_media_side(app[SIGNALING], media, cluster))
    app.on_shutdown.append(_end_sessions(app[SIGNALING], cluster))
    return app


def _sso_api(
    settings: Settings, accounts: AccountStore, audit: AuditLog, secure_cookies: bool
) -> SsoApi:
    """Single sign-on's routes, with the provider of PULSEROOM_OIDC_* if configured."""
    client = None
    if settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret:
        client = OidcClient(
            settings.oidc_issuer,
            settings.oidc_client_id,
            settings.oidc_client_secret,
            redirect_uri=settings.base_url + CALLBACK_PATH,
        )
    return SsoApi(
        client,
        accounts,
        audit,
        settings.signing_secret(),
        secure_cookies,
        name=settings.oidc_name,
        instructor_domains=tuple(settings.oidc_instructor_domains),
    )


def _media_backend(settings: Settings) -> SfuServer | WorkerPool:
    """The SFU: worker processes, or this process's own with ``PULSEROOM_SFU_WORKERS=0``."""
    if settings.sfu_workers:
        return WorkerPool(
            settings.sfu_workers,
            settings.log_level,
            settings.video_kbps * 1000,
            tuple(settings.sfu_stun_urls),
            log_format=settings.log_format,
            worker_participants=settings.sfu_worker_participants,
            event_loop=settings.sfu_event_loop,
            private_candidates=settings.sfu_private_candidates,
        )
    # Imported here: aiortc and the SFU core cost the server's start ~0.5 s, and with
    # workers (the default) only the worker processes load them.
    from aiortc import RTCIceServer

    from sfu.candidates import CandidatePolicy
    from sfu.server import SfuServer

    return SfuServer(
        ice_servers=[RTCIceServer(urls=url) for url in settings.sfu_stun_urls],
        video_bitrate_cap=settings.video_kbps * 1000,
        candidate_policy=CandidatePolicy(private=settings.sfu_private_candidates),
    )


def _socketio(settings: Settings) -> tuple[ProtocolServer, Cluster | None]:
    """The Socket.IO server; with ``REDIS_URL``, fanned out through Redis in a cluster."""
    # Fan-out to a class in one loop rather than a task per recipient (signaling/fanout.py).
    manager: FanoutManager = FanoutManager()
    cluster: Cluster | None = None
    if settings.redis_url:
        manager = FanoutRedisManager(
            settings.redis_url, channel=f"{settings.redis_prefix}:socketio"
        )
        cluster = Cluster(
            settings.redis_url,
            settings.redis_prefix,
            settings.advertised_url,
            public_url=settings.public_url,
        )
    sio = ProtocolServer(
        async_mode="aiohttp",
        client_manager=manager,
        # A page served by one node may be sent to another (the class's holder): the
        # nodes' own URLs are allowed origins, nothing else.
        cors_allowed_origins=cluster.allows_origin if cluster is not None else None,
        max_http_buffer_size=MAX_SUBSCRIBE_SDP + 16 * 1024,
        ping_interval=10,
        ping_timeout=10,
    )
    return sio, cluster


def _database(store: Store, writer: HeartRateWriter) -> CleanupContext:
    """The database, migrated at start, and the heart-rate writer that uses it."""

    async def database(_app: web.Application) -> AsyncIterator[None]:
        try:
            applied = await migrations.migrate(store.engine)
        except (OSError, SQLAlchemyError) as exc:
            await store.engine.dispose()
            where = store.engine.url.render_as_string(hide_password=True)
            raise StartupError(f"cannot use the database {where}: {exc}") from exc
        for migration in applied:
            logger.info("applied migration %04d_%s", migration.version, migration.name)
        await writer.start()
        yield
        # After the sessions (media_side's cleanup runs first). Both are bounded: what
        # the database does not take within seconds goes to the spool.
        await writer.close()
        await run_within("closing the database pool", store.engine.dispose(), DISPOSE_TIMEOUT_S)
        logger.info("shutting down: database closed")

    return database


def _first_run(accounts: AccountStore, base_url: str) -> CleanupContext:
    """While no admin exists, a one-time setup link for the first one, in the log."""

    async def first_run(_app: web.Application) -> AsyncIterator[None]:
        await accounts.prune()
        if not await accounts.has_admin():
            token = await accounts.issue_link("setup")
            # WARNING, not INFO: it must show at any log level, once per start.
            logger.warning(
                "no admin yet: open %s to create one (valid 24 h, once; restart for a new"
                " link, or run: pulseroom user add EMAIL --role admin)",
                page_link(base_url, "setup", token),
            )
        yield

    return first_run


def _sweeping(name: str, sweep: Callable[[], Coroutine[Any, Any, None]]) -> CleanupContext:
    """A retention sweep (PULSEROOM_RETENTION_DAYS, PULSEROOM_RECORDING_RETENTION_DAYS):
    at start and every hour, until the server stops."""

    async def sweeping(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep(), name=name)
        yield
        # Cancelled at once; bounded because a sweep may be waiting on the database.
        if not await end_within(task, 0):
            logger.error("the %s sweep did not end when cancelled; going on", name)

    return sweeping


def _end_sessions(
    signaling: SignalingServer, cluster: Cluster | None
) -> Callable[[web.Application], Awaitable[None]]:
    """At shutdown, close the sessions before aiohttp waits for the requests in flight.

    A Socket.IO WebSocket is a request in flight until its client leaves: left to the
    cleanup contexts (which run after that wait), every connected browser or bridge held
    the server for its ping timeout (20 s) or aiohttp's shutdown timeout. Closing them
    here also stops new readings before the heart-rate writer's last round. Both closes
    are idempotent: ``_media_side`` calls them again for a start that failed midway.
    """

    async def end_sessions(_app: web.Application) -> None:
        logger.info("shutting down: closing the sessions")
        if cluster is not None:
            await cluster.close()  # first: this node's classes can be taken over at once
        await signaling.close()

    return end_sessions


def _media_side(
    signaling: SignalingServer, media: SfuServer | WorkerPool, cluster: Cluster | None
) -> CleanupContext:
    """The cluster membership, the SFU workers and the sessions, closed in reverse order."""

    async def media_side(_app: web.Application) -> AsyncIterator[None]:
        if cluster is not None:
            try:
                await cluster.start()
            except ClusterError as exc:
                raise StartupError(str(exc)) from exc
        if isinstance(media, WorkerPool):
            await media.start()
        signaling.heart_rate.start()
        yield
        if cluster is not None:
            await cluster.close()  # first: this node's classes can be taken over at once
        # Reverse order of start: sessions first (already closed by _end_sessions when
        # the server ran), then the media they used.
        await signaling.close()
        await media.close()
        logger.info("shutting down: SFU workers stopped")

    return media_side
