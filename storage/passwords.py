"""Password hashing with argon2id (argon2-cffi), run off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 takes any length; a megabyte "password" is only work for us


class Passwords:
    """Hashes and checks passwords; each call takes ~0.1-0.2 s of one core, in a thread.

    The library's defaults (argon2id, 64 MiB, 3 passes: RFC 9106's second
    recommendation) are kept: they are what argon2-cffi's maintainers tune over time,
    and ``needs_rehash`` upgrades stored hashes when they change.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """An argon2 hash of ``password`` (salted: two calls give different hashes)."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``.

        With no stored hash (no such user, or no password set yet) a dummy hash is
        checked anyway, so the answer takes as long as for a real account and its
        timing does not tell which email addresses have accounts.
        """
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash("not the password of anyone")
            await self._check(self._dummy, password)
            return False
        return await self._check(stored, password)

    async def _check(self, stored: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with weaker parameters than today's."""
        return self._hasher.check_needs_rehash(stored)
