"""The refusal every Socket.IO handler raises: a protocol error code and a message."""

from __future__ import annotations


class SignalError(Exception):
    """A refusal with a protocol error code (docs/protocol.md, "Error codes")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
