"""Ephemeral TURN credentials (the TURN REST API scheme coturn's ``use-auth-secret`` takes).

Username ``"{expiry}:{participant}"``, password ``base64(HMAC-SHA1(secret, username))``:
coturn recomputes the password from the shared secret and refuses the username once
its expiry (unix seconds) has passed. The secret itself never leaves the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any


def turn_password(secret: str, username: str) -> str:
    """The password coturn expects for ``username`` under ``secret``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class TurnIssuer:
    """Hands out per-participant TURN credentials valid for ``ttl`` seconds."""

    urls: tuple[str, ...]
    secret: str
    ttl: int

    def issue(self, participant_id: str, now: float | None = None) -> dict[str, Any]:
        """One RTCIceServer entry (``urls``, ``username``, ``credential``) for a participant."""
        expiry = int(now if now is not None else time.time()) + self.ttl
        username = f"{expiry}:{participant_id}"
        return {
            "urls": list(self.urls),
            "username": username,
            "credential": turn_password(self.secret, username),
        }
