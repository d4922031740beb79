"""Signed, expiring join tokens: what a class link carries.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256(secret, first part))``.
It names one room and one role; the server checks it on every join. A token may also
name one participant (``p``): the server hands each joiner such a *bound* token so a
rejoin (after a network drop or reload) keeps the same identity, and each participant
a ``device`` token for their strap bridge, which can send only that participant's
heart rate.

Every token carries its class's link generation (``g``, 0 if absent: tokens signed before
generations existed): when the instructor replaces the join link, the class's generation
goes up and the server refuses tokens of earlier ones (signaling/class_control.py).
A host link minted for a co-instructor names their account (``u``), and so do the tokens
its join gives: they let in only while that account hosts the class.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from sfu.backend import Role

ROLES: tuple[Role, ...] = ("host", "participant", "device", "board")
MAX_TOKEN_LENGTH = 512


class TokenError(Exception):
    """A token was refused; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: a role in one room, until ``expires_at``."""

    room_id: str
    role: Role
    expires_at: int
    participant_id: str | None = None  # a bound token acts for this participant only
    summary_only: bool = False  # reads the class summary; joins nothing
    generation: int = 0  # the class's link generation it was signed for
    user_id: str | None = None  # a co-instructor's host link: honoured while they host


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks tokens with one server secret."""

    def __init__(self, secret: bytes, ttl_seconds: int) -> None:
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def issue(
        self,
        room_id: str,
        role: Role,
        now: float | None = None,
        participant_id: str | None = None,
        expires_at: int | None = None,
        summary_only: bool = False,
        generation: int = 0,
        user_id: str | None = None,
    ) -> tuple[str, int]:
        """A token for ``role`` in ``room_id`` and its expiry (unix seconds).

        With ``participant_id`` the token is bound to that participant; ``expires_at``
        overrides the default lifetime (a bound token never outlives its link).
        ``summary_only``: the token reads the class summary with ``role``'s rights and
        cannot join (a summary URL gets shared; the host's rejoin token must not be).
        ``generation``: the class's link generation (``RoomRecord.generation``).
        ``user_id``: the co-instructor's account a host link is minted for (the join and
        the summary honour it only while that account hosts the class).
        """
        if role == "device" and participant_id is None:
            raise ValueError("a device token acts for one participant")
        if expires_at is None:
            expires_at = int(now if now is not None else time.time()) + self.ttl_seconds
        fields: dict[str, object] = {"r": room_id, "role": role, "exp": expires_at}
        if generation:
            fields["g"] = generation
        if participant_id is not None:
            fields["p"] = participant_id
        if summary_only:
            fields["s"] = 1
        if user_id is not None:
            fields["u"] = user_id
        payload = json.dumps(fields, separators=(",", ":"))
        body = _b64(payload.encode())
        return f"{body}.{self._mac(body)}", expires_at

    def verify(self, token: str, room_id: str | None = None, now: float | None = None) -> Grant:
        """The grant a token carries; raises TokenError if forged, expired or for another room."""
        if (
            not isinstance(token, str)
            or len(token) > MAX_TOKEN_LENGTH
            or token.count(".") != 1
            or not token.isascii()
        ):
            raise TokenError(
                "invalid_token", "This link is not valid: it is damaged or incomplete."
            )
        body, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise TokenError(
                "invalid_token", "This link is not valid: its signature does not match."
            )
        try:
            payload = json.loads(_unb64(body))
            bound, user = payload.get("p"), payload.get("u")
            grant = Grant(
                room_id=str(payload["r"]),
                role=payload["role"],
                expires_at=int(payload["exp"]),
                participant_id=None if bound is None else str(bound),
                summary_only=payload.get("s") == 1,
                generation=int(payload.get("g", 0)),
                user_id=None if user is None else str(user),
            )
        except (ValueError, KeyError, TypeError):
            raise TokenError(
                "invalid_token", "This link is not valid: it cannot be read."
            ) from None
        if grant.role not in ROLES:
            raise TokenError("invalid_token", "This link is not valid: unknown role.")
        if grant.role == "device" and grant.participant_id is None:
            raise TokenError("invalid_token", "This link is not valid: a device link names nobody.")
        if grant.expires_at <= (now if now is not None else time.time()):
            raise TokenError(
                "token_expired", "This link has expired: ask the instructor for a new one."
            )
        if room_id is not None and grant.room_id != room_id:
            raise TokenError("wrong_room", "This link belongs to another class.")
        return grant

    def bound_tokens(
        self,
        room_id: str,
        generation: int,
        grant: Grant,
        participant_id: str,
        session_id: str | None = None,
    ) -> dict[str, str]:
        """A join ack's tokens for the participant ``grant`` admitted: rejoin, device and
        summary tokens bound to them, and for an instructor the class link's own token
        (to invite people from the class). All expire with the link they came from (a
        rejoin must not renew it, or an unended class could be re-entered for ever) and
        carry the class's link generation: replacing the link voids them too. In a weekly
        series (``room_id``) the summary token reads this week's session (``session_id``)."""

        def issue(role: Role, bound: bool = True, summary_only: bool = False) -> str:
            return self.issue(
                (session_id or room_id) if summary_only else room_id, role,
                participant_id=participant_id if bound else None,
                expires_at=grant.expires_at, summary_only=summary_only, generation=generation,
                user_id=grant.user_id if bound else None,
            )[0]  # fmt: skip

        tokens = {
            "token": issue(grant.role),
            "device_token": issue("device"),
            "summary_token": issue(grant.role, summary_only=True),
        }
        if grant.role == "host":
            tokens["join_token"] = issue("participant", bound=False)
        return tokens
