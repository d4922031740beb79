"""Server configuration: one pydantic settings model, read from the environment.

With nothing set, PulseRoom runs on an embedded default: HTTP on 127.0.0.1:8080,
SQLite under the data directory, the in-memory Socket.IO manager and no TURN.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import secrets
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from signaling.accounts_api import valid_email
from signaling.mail import SmtpServer

MAKE_A_SECRET = "generate one with `openssl rand -hex 32`"
# 32 random bytes carry 256 bits; an estimate a little below that still takes
# `secrets.token_urlsafe(32)` (43 characters, 6 bits each at most).
MIN_SECRET_BITS = 240
_SECRET_NAMES = frozenset(
    {
        "PULSEROOM_SECRET",
        "PULSEROOM_TURN_SECRET",
        "PULSEROOM_OIDC_CLIENT_SECRET",
        "PULSEROOM_SMTP_URL",
        "secret",
        "turn_secret",
        "oidc_client_secret",
        "smtp_url",
    }
)
# An OpenID Connect issuer over plain HTTP only on this machine (a provider in a test).
_LOOPBACK_HOSTS = ("http://127.0.0.1:", "http://localhost:", "http://[::1]:")


def secret_strength(value: str) -> int:
    """Bits a secret of this length and these kinds of characters carries at most (as if
    each character were drawn at random from every character of the kinds it uses):
    `openssl rand -hex 32` is 331, a 30-character phrase of lower-case words ~141."""
    kinds = (
        (str.islower, 26),
        (str.isupper, 26),
        (str.isdigit, 10),
        (lambda ch: not ch.isalnum(), 33),
    )
    alphabet = sum(size for test, size in kinds if any(test(ch) for ch in value))
    return int(len(value) * math.log2(max(alphabet, 2)))


class ConfigError(Exception):
    """A setting has a bad value; the message names the setting."""


class Settings(BaseSettings):
    """Everything PulseRoom can be configured with (see the README's table)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: Annotated[str, Field(validation_alias=AliasChoices("PULSEROOM_HOST"))] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535, validation_alias="PULSEROOM_PORT")] = 8080
    data_dir: Annotated[Path, Field(validation_alias="PULSEROOM_DATA_DIR")] = Path("data")
    public_url: Annotated[str | None, Field(validation_alias="PULSEROOM_PUBLIC_URL")] = None
    secret: Annotated[str | None, Field(validation_alias="PULSEROOM_SECRET", min_length=16)] = None
    link_ttl: Annotated[int, Field(ge=60, le=30 * 86400, validation_alias="PULSEROOM_LINK_TTL")] = (
        12 * 3600
    )
    max_participants: Annotated[
        int, Field(ge=2, le=1000, validation_alias="PULSEROOM_MAX_PARTICIPANTS")
    ] = 100
    # Heart rate, chat and participants of classes that ended this many days ago are
    # erased (pulseroom/retention.py); unset keeps them.
    retention_days: Annotated[
        float | None, Field(ge=1, le=36500, validation_alias="PULSEROOM_RETENTION_DAYS")
    ] = None
    # Recordings finished this many days ago are deleted; unset keeps them.
    recording_retention_days: Annotated[
        float | None,
        Field(ge=1, le=36500, validation_alias="PULSEROOM_RECORDING_RETENTION_DAYS"),
    ] = None
    # Whether participants may create their own account (email and password, role
    # participant: a profile and a history across classes, signaling/me_api.py).
    participant_signup: Annotated[bool, Field(validation_alias="PULSEROOM_PARTICIPANT_SIGNUP")] = (
        True
    )
    # Whether classes are recorded (signaling/recording.py): never, when the instructor
    # asks, or every class; files go in DATA_DIR/recordings.
    recording: Annotated[
        Literal["off", "on-request", "always"], Field(validation_alias="PULSEROOM_RECORDING")
    ] = "on-request"
    # A Socket.IO connection that has not joined a class this long after connecting is
    # closed (it would hold a socket and memory for nothing).
    join_timeout: Annotated[
        float, Field(ge=1, le=300, validation_alias="PULSEROOM_JOIN_TIMEOUT")
    ] = 10.0
    # A class everyone has left has its in-memory state (controls, timer, live effort
    # points) let go after this many seconds; what is stored stays (signaling/idle.py).
    idle_class_s: Annotated[
        float, Field(ge=1, le=7 * 86400, validation_alias="PULSEROOM_IDLE_CLASS_S")
    ] = 900.0
    # Rows a class may store: chat messages per class, heart-rate readings per participant
    # per class (100,000 is a day at 1 Hz). Past them: refused with quota_exceeded.
    max_chat_per_class: Annotated[
        int, Field(ge=1, le=10_000_000, validation_alias="PULSEROOM_MAX_CHAT_PER_CLASS")
    ] = 10_000
    max_readings_per_participant: Annotated[
        int,
        Field(ge=1, le=100_000_000, validation_alias="PULSEROOM_MAX_READINGS_PER_PARTICIPANT"),
    ] = 100_000
    # Behind a reverse proxy: its address(es) or ranges, e.g. ["127.0.0.1", "::1"]. Only
    # requests from these have their X-Forwarded-For believed (the client's address for
    # rate limits and the connection cap); unset, no header is.
    trusted_proxies: Annotated[list[str], Field(validation_alias="PULSEROOM_TRUSTED_PROXIES")] = []
    # Live Socket.IO connections one client address may hold (a gym's class may share
    # one NAT address: keep it above the class size).
    max_connections_per_address: Annotated[
        int, Field(ge=1, le=100_000, validation_alias="PULSEROOM_MAX_CONNECTIONS_PER_ADDRESS")
    ] = 200
    database_url: Annotated[str | None, Field(validation_alias="DATABASE_URL")] = None
    redis_url: Annotated[str | None, Field(validation_alias="REDIS_URL")] = None
    # Mail (signaling/mail.py): invitations and password links also go by mail, and a
    # forgotten password can be reset by mail. Unset: nothing is mailed.
    smtp_url: Annotated[str | None, Field(validation_alias="PULSEROOM_SMTP_URL")] = None
    smtp_from: Annotated[
        str | None, Field(validation_alias="PULSEROOM_SMTP_FROM", min_length=3, max_length=254)
    ] = None
    # With REDIS_URL: every key and the Socket.IO channel start with this, so several
    # deployments (or tests) can share one Redis.
    redis_prefix: Annotated[
        str,
        Field(
            validation_alias="PULSEROOM_REDIS_PREFIX",
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9_.-]+$",
        ),
    ] = "pulseroom"
    # With REDIS_URL: the address clients reach this node at (each node has its own; a
    # class's clients are sent to the node that holds it). Default: the public URL.
    node_url: Annotated[str | None, Field(validation_alias="PULSEROOM_NODE_URL")] = None
    # With REDIS_URL: how a join reaching a node that does not hold its class goes on.
    # "redirect": the client is told the holder's URL and connects there (every node
    # reachable at its own PULSEROOM_NODE_URL). "relay": the client stays on the node it
    # reached and its events are relayed to the holder through Redis (nodes behind one
    # address, e.g. a load balancer; media still goes to the holder's own addresses).
    cluster_routing: Annotated[
        Literal["redirect", "relay"], Field(validation_alias="PULSEROOM_CLUSTER_ROUTING")
    ] = "redirect"
    ice_servers: Annotated[list[str], Field(validation_alias="PULSEROOM_STUN_URLS")] = []
    # STUN for the SFU itself: on a host behind 1:1 NAT (a cloud VM with a private
    # interface address) its server-reflexive candidates carry the public address.
    sfu_stun_urls: Annotated[list[str], Field(validation_alias="PULSEROOM_SFU_STUN_URLS")] = []
    # Whether the SFU tries clients' ICE candidates in private ranges (10/8, 172.16/12,
    # 192.168/16, fc00::/7, 100.64/10). A LAN deployment needs them; an internet-facing
    # server can refuse them, so a client cannot point its checks into the server's own
    # network (loopback, link-local and multicast are always refused).
    sfu_private_candidates: Annotated[
        bool, Field(validation_alias="PULSEROOM_SFU_PRIVATE_CANDIDATES")
    ] = True
    # TURN (coturn with use-auth-secret): the URLs handed to clients, e.g.
    # ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp",
    #  "turns:turn.example.com:443?transport=tcp"], and the secret shared with coturn's
    # static-auth-secret. Clients get credentials valid for PULSEROOM_TURN_TTL seconds.
    turn_urls: Annotated[list[str], Field(validation_alias="PULSEROOM_TURN_URLS")] = []
    turn_secret: Annotated[
        str | None, Field(validation_alias="PULSEROOM_TURN_SECRET", min_length=16)
    ] = None
    turn_ttl: Annotated[int, Field(ge=300, le=86400, validation_alias="PULSEROOM_TURN_TTL")] = (
        4 * 3600
    )
    log_level: Annotated[str, Field(validation_alias="PULSEROOM_LOG_LEVEL")] = "INFO"
    # "json": one JSON object per line with class/participant ids (runtime/logs.py),
    # for a log collector; "text" for people reading a terminal.
    log_format: Annotated[
        Literal["text", "json"], Field(validation_alias="PULSEROOM_LOG_FORMAT")
    ] = "text"
    rooms_per_minute: Annotated[
        int, Field(ge=1, le=100_000, validation_alias="PULSEROOM_ROOMS_PER_MINUTE")
    ] = 10
    video_kbps: Annotated[
        int, Field(ge=100, le=20_000, validation_alias="PULSEROOM_VIDEO_KBPS")
    ] = 2500
    sfu_workers: Annotated[int, Field(ge=0, le=64, validation_alias="PULSEROOM_SFU_WORKERS")] = (
        os.cpu_count() or 1
    )
    # Participants of one class on one SFU worker before the class spills onto another
    # (its tracks then piped between workers): docs/benchmarks.md measures the default.
    sfu_worker_participants: Annotated[
        int, Field(ge=1, le=10_000, validation_alias="PULSEROOM_SFU_WORKER_PARTICIPANTS")
    ] = 40
    # The SFU workers' event loop: uvloop's reads, writes and timers are C, which the
    # forwarding path (a callback per datagram) feels most (docs/benchmarks.md).
    sfu_event_loop: Annotated[
        Literal["uvloop", "asyncio"], Field(validation_alias="PULSEROOM_SFU_EVENT_LOOP")
    ] = "uvloop"

    # Single sign-on with OpenID Connect (signaling/sso_api.py): off unless the issuer,
    # client id and client secret are all set. The provider's page for registering
    # PulseRoom asks for the redirect URI PUBLIC_URL/api/auth/oidc/callback.
    oidc_issuer: Annotated[str | None, Field(validation_alias="PULSEROOM_OIDC_ISSUER")] = None
    oidc_client_id: Annotated[
        str | None, Field(validation_alias="PULSEROOM_OIDC_CLIENT_ID", max_length=500)
    ] = None
    oidc_client_secret: Annotated[
        str | None, Field(validation_alias="PULSEROOM_OIDC_CLIENT_SECRET", max_length=2000)
    ] = None
    # The login page's button: "Sign in with NAME" (default: the issuer's host name).
    oidc_name: Annotated[
        str | None, Field(validation_alias="PULSEROOM_OIDC_NAME", max_length=60)
    ] = None
    # A first SSO login whose verified address is at one of these domains makes an
    # instructor account; any other a participant one. Never an admin.
    oidc_instructor_domains: Annotated[
        list[str], Field(validation_alias="PULSEROOM_OIDC_INSTRUCTOR_DOMAINS")
    ] = []

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError(
                "must start with postgresql+asyncpg:// (or sqlite+aiosqlite:// for a file)"
            )
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        SmtpServer.parse(value)  # raises ValueError saying what is wrong
        return value

    @field_validator("smtp_from", mode="before")
    @classmethod
    def _check_smtp_from(cls, value: object) -> object:
        if value is None or value == "":  # compose passes an unset variable as ""
            return None
        if not isinstance(value, str) or valid_email(value) is None:
            raise ValueError("must be an email address, e.g. classes@studio.example")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("public_url", "node_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("secret", "turn_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if "change-me" in value.lower():
            raise ValueError(f"is still the .env.example placeholder: {MAKE_A_SECRET}")
        bits = secret_strength(value)
        if bits < MIN_SECRET_BITS or len(set(value)) < 10:  # "abab…": long, not random
            raise ValueError(
                f"is too weak (about {bits} bits; 32 random bytes are 256): {MAKE_A_SECRET}"
            )
        return value

    @field_validator("sfu_stun_urls")
    @classmethod
    def _check_sfu_stun_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith("stun:"):
                raise ValueError(f"{url!r}: the SFU takes stun: URLs only")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or range") from None
        return value

    @field_validator("turn_urls")
    @classmethod
    def _check_turn_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"{url!r}: TURN URLs start with turn: or turns:")
        return value

    @model_validator(mode="after")
    def _turn_needs_secret(self) -> Settings:
        if self.turn_urls and not self.turn_secret:
            raise ValueError(
                "PULSEROOM_TURN_URLS needs PULSEROOM_TURN_SECRET (coturn's static-auth-secret)"
            )
        return self

    @field_validator("oidc_issuer")
    @classmethod
    def _check_oidc_issuer(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("https://") and not value.startswith(_LOOPBACK_HOSTS):
            raise ValueError("must start with https:// (http:// only on 127.0.0.1 or localhost)")
        return value

    @field_validator("oidc_instructor_domains")
    @classmethod
    def _check_oidc_domains(cls, value: list[str]) -> list[str]:
        domains = [d.strip().lower().lstrip("@") for d in value]
        for domain in domains:
            if "." not in domain or "@" in domain or " " in domain:
                raise ValueError(f"{domain!r} is not a domain like example.com")
        return domains

    @model_validator(mode="after")
    def _oidc_all_or_nothing(self) -> Settings:
        given = [self.oidc_issuer, self.oidc_client_id, self.oidc_client_secret]
        if any(given) and not all(given):
            raise ValueError(
                "single sign-on needs PULSEROOM_OIDC_ISSUER, PULSEROOM_OIDC_CLIENT_ID and"
                " PULSEROOM_OIDC_CLIENT_SECRET together"
            )
        return self

    @property
    def oidc_enabled(self) -> bool:
        """Whether single sign-on is configured."""
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @property
    def base_url(self) -> str:
        """The URL links point at: PULSEROOM_PUBLIC_URL, else the listening address."""
        if self.public_url:
            return self.public_url
        return f"http://{self.host}:{self.port}"

    @property
    def mail_sender(self) -> str:
        """Who PulseRoom's mail is from: PULSEROOM_SMTP_FROM, else pulseroom@ the public host."""
        return self.smtp_from or f"pulseroom@{urlsplit(self.base_url).hostname or 'localhost'}"

    @property
    def advertised_url(self) -> str:
        """Where clients reach this very node: PULSEROOM_NODE_URL, else ``base_url``."""
        return self.node_url or self.base_url

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL, else an SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'pulseroom.db').resolve()}"

    def signing_secret(self) -> bytes:
        """PULSEROOM_SECRET, else a random secret kept in the data directory.

        Kept on disk so that links stay valid across restarts of the embedded default.
        """
        if self.secret:
            return self.secret.encode()
        path = self.data_dir / "secret"
        if not path.exists():
            self.prepare_data_dir()
            # Written whole and private before it has its name: no reader ever sees a
            # partial or world-readable secret, and of two processes starting at once
            # the first to link its file wins and the other reads that one.
            scratch = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_urlsafe(32).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(scratch, path)
            scratch.unlink()
        return path.read_text().strip().encode()

    def prepare_data_dir(self) -> None:
        """The data directory, made private (0700): it holds the signing secret, the
        SQLite database and the heart-rate spool. One that exists with looser modes is
        tightened when it is ours (a volume made by a container runtime, say)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.data_dir.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            self.data_dir.chmod(0o700)


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment; a bad value raises ConfigError naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            # A secret is never echoed (not even a weak one): logs outlive the fix.
            shown = "hidden" if name in _SECRET_NAMES else repr(error.get("input"))
            lines.append(f"{name}: {error['msg']} (got {shown})")
        raise ConfigError("bad configuration:\n  " + "\n  ".join(lines)) from None
