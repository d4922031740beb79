"""The signaling server refuses to start on a python-socketio whose internals changed."""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from signaling.socketio_compat import SocketIoCompatError, check_compatibility
from signaling.transport import ProtocolServer


def test_installed_python_socketio_is_the_supported_one() -> None:
    check_compatibility()
    ProtocolServer(async_mode="aiohttp")


def test_another_release_is_refused() -> None:
    with pytest.raises(SocketIoCompatError, match=r"5\.19\.0"):
        check_compatibility("5.19.0")


def test_a_reshaped_internal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def handle_event(self: Any, eio_sid: str, namespace: str, data: Any) -> None:
        pass  # a release that dropped the ack id from the signature

    monkeypatch.setattr(socketio.AsyncServer, "_handle_event", handle_event)
    with pytest.raises(SocketIoCompatError, match="_handle_event"):
        ProtocolServer(async_mode="aiohttp")


def test_a_missing_internal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socketio.AsyncServer, "_send_eio_packet")
    with pytest.raises(SocketIoCompatError, match="_send_eio_packet"):
        check_compatibility()
