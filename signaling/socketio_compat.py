"""The python-socketio internals this package extends, checked before the server starts.

``signaling/transport.py`` and ``signaling/fanout.py`` override or call private methods
of python-socketio (the dispatch of a packet, the emit to a room, the hand-over of one
Engine.IO packet). A release that renames or reshapes one of them would not fail at
import: it would bypass the override silently (malformed packets logged per packet again,
a task per recipient again) or fail on the first emit. ``pyproject.toml`` pins the
tested range; ``check_compatibility`` refuses to start on anything else, saying why.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import socketio
from engineio import packet as eio_packet

# The range pyproject.toml pins (tested): keep the two in step.
SUPPORTED_SOCKETIO = ("5.18.", "python-socketio 5.18.x")

# (class, method, its parameters after self): what our overrides and calls assume.
_METHODS: tuple[tuple[type[Any], str, tuple[str, ...]], ...] = (
    (socketio.AsyncServer, "_handle_eio_message", ("eio_sid", "data")),
    (socketio.AsyncServer, "_handle_event", ("eio_sid", "namespace", "id", "data")),
    (socketio.AsyncServer, "_send_eio_packet", ("eio_sid", "eio_pkt")),
    (
        socketio.AsyncManager,
        "emit",
        ("event", "data", "namespace", "room", "skip_sid", "callback", "to", "kwargs"),
    ),
    (socketio.AsyncManager, "get_participants", ("namespace", "room")),
)


class SocketIoCompatError(RuntimeError):
    """python-socketio's internals are not the ones this package was written against."""


def _parameters(method: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(method).parameters)[1:]


def check_compatibility(installed: str | None = None) -> None:
    """Raise SocketIoCompatError unless the installed python-socketio is the tested one."""
    installed = installed or version("python-socketio")
    prefix, name = SUPPORTED_SOCKETIO
    if not installed.startswith(prefix):
        raise SocketIoCompatError(
            f"PulseRoom's signaling extends python-socketio's internals and supports "
            f"{name}, found {installed}: install the version pyproject.toml pins"
        )
    for cls, name_, expected in _METHODS:
        method = getattr(cls, name_, None)
        if method is None or _parameters(method) != expected:
            found = "missing" if method is None else _parameters(method)
            raise SocketIoCompatError(
                f"python-socketio's {cls.__name__}.{name_} changed: expected {expected}, "
                f"found {found}"
            )
    if socketio.AsyncManager not in socketio.AsyncRedisManager.__mro__:
        raise SocketIoCompatError("AsyncRedisManager no longer derives from AsyncManager")
    if not hasattr(eio_packet, "MESSAGE") or not hasattr(eio_packet, "Packet"):
        raise SocketIoCompatError("engineio.packet has no Packet or MESSAGE")
    if not hasattr(socketio.AsyncServer(), "packet_class"):
        raise SocketIoCompatError("AsyncServer instances have no packet_class")
