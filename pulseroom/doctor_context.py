"""What every ``pulseroom doctor`` check gets (``Context``) and returns (``Result``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from signaling.health import describe_error

from .settings import Settings

Status = Literal["PASS", "WARN", "FAIL"]

PLACEHOLDER = "change-me"  # what .env.example's secrets start as
SELF_HOSTING = "docs/self-hosting.md"


@dataclass(frozen=True, slots=True)
class Result:
    """One check's outcome; ``fix`` says what to do when it is not a PASS."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Context:
    """What every check gets: the settings, the address people open, one engine."""

    settings: Settings
    url: str
    engine: AsyncEngine
    secrets: list[str]

    @property
    def host(self) -> str:
        """The host name (or address) in the URL."""
        return urlsplit(self.url).hostname or ""

    @property
    def local(self) -> bool:
        """Whether the URL only reaches this machine (where plain HTTP is a secure context)."""
        return is_local_host(self.host)

    def error(self, exc: BaseException, timeout: float = 0) -> str:
        """One line for ``exc``, with every configured password blanked out."""
        return describe_error(exc, self.secrets, timeout)


Check = Callable[[Context], Awaitable[Result | list[Result]]]


def is_local_host(host: str) -> bool:
    """``localhost``, ``*.localhost`` or a loopback address: what browsers trust over HTTP."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
