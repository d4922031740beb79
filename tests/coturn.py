"""A real coturn (``turnserver``) for a test: the repo's turn/coturn.conf plus overrides.

The configuration file is used as it ships; the command line only adds what a test
must choose: the listening and relay addresses, a free port, the shared secret,
``allowed-peer-ip`` for the media server's own (normally denied) address, and a pid
file and user database in the test's directory. The command line's listening port
wins over the file's 3478, but not ``--log-file`` over ``log-file=stdout``: the log is
coturn's captured stdout. ``--verbose`` makes it log every allocation, permission,
channel binding and, when a session closes, the bytes it relayed.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun

from signaling.turn import TurnIssuer
from tests.conftest import ROOT

CONF = ROOT / "turn" / "coturn.conf"


def free_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address`` (a TURN server listens on both)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on {address}")


def host_port(address: str, port: int) -> str:
    """``address:port``, with brackets around an IPv6 address."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True)
class Usage:
    """Bytes one user's closed TURN sessions carried, as coturn counts them."""

    sessions: int
    from_client: int
    to_client: int
    from_peers: int
    to_peers: int


@dataclass
class Coturn:
    """A running ``turnserver``; ``address`` is the first address it listens on."""

    address: str
    port: int
    secret: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, transport: str = "udp") -> str:
        """The TURN URL clients are given, e.g. ``turn:198.51.100.1:3478?transport=udp``."""
        return f"turn:{host_port(self.address, self.port)}?transport={transport}"

    def issuer(self, transport: str = "udp", ttl: int = 600) -> TurnIssuer:
        """Credentials as the PulseRoom server hands them out for this coturn."""
        return TurnIssuer((self.url(transport),), self.secret, ttl)

    def log(self) -> str:
        """What coturn logged so far."""
        return self.log_path.read_text(errors="replace")

    def log_lines(self, pattern: str) -> list[str]:
        """The log lines matching the regular expression ``pattern``."""
        return [line for line in self.log().splitlines() if re.search(pattern, line)]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """The log lines matching ``pattern``, once there are ``count`` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while len(lines := self.log_lines(pattern)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return lines

    def usage(self, username: str, sessions: int = 1) -> Usage:
        """What coturn relayed for users matching the regular expression ``username``.

        coturn logs a session's usage when it closes (after the client deleted its
        allocation); this waits for ``sessions`` of them.
        """
        line = rf"session (\d+): (peer )?usage: realm=<[^>]*>, username=<({username})>, "
        found = self.wait_for(line, count=2 * sessions)
        total = dict.fromkeys(("rb", "sb", "peer rb", "peer sb"), 0)
        closed = set()
        for text in found:
            match = re.search(line + r"rp=\d+, rb=(\d+), sp=\d+, sb=(\d+)", text)
            assert match is not None, text
            closed.add(match[1])
            side = "peer " if match[2] else ""
            total[side + "rb"] += int(match[4])
            total[side + "sb"] += int(match[5])
        return Usage(
            sessions=len(closed),
            from_client=total["rb"],
            to_client=total["sb"],
            from_peers=total["peer rb"],
            to_peers=total["peer sb"],
        )

    def stop(self) -> None:
        """SIGTERM (coturn takes about 2 s to close its threads), then SIGKILL."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _answers_binding(address: str, port: int) -> bool:
    """Whether a STUN Binding request to ``address:port`` over UDP gets a response."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(bytes(request), (address, port))
            data = sock.recv(2048)
        except OSError:  # refused (nobody listens yet) or timed out
            return False
    response = stun.parse_message(data)
    return bool(response.transaction_id == request.transaction_id)


def _accepts_tcp(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_coturn(
    tmp: Path,
    listen: Sequence[str],
    relay: Sequence[str] | None = None,
    allowed_peers: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> Coturn:
    """Start ``turnserver -c turn/coturn.conf`` on ``listen`` and wait until it answers.

    Relays leave from ``relay`` (default: the listening addresses); ``allowed_peers``
    are let through the configuration's denied ranges, as for a media server on a
    private address.
    """
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("turnserver is not installed (apt-get install coturn; scripts/test does)")
    port = free_port(listen[0])
    secret = secrets.token_hex(32)  # as self-hosters make it (the app refuses weak ones)
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"coturn-{port}.log"
    args = [
        binary, "-c", str(CONF),
        f"--listening-port={port}",
        *(f"--listening-ip={a}" for a in listen),
        *(f"--relay-ip={a}" for a in (relay or listen)),
        f"--static-auth-secret={secret}",
        *(f"--allowed-peer-ip={a}" for a in allowed_peers),
        f"--pidfile={tmp / f'coturn-{port}.pid'}",
        f"--userdb={tmp / 'turndb'}",  # not /var/lib/turn: credentials come from the secret
        "--verbose",
        *extra,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = Coturn(listen[0], port, secret, process, log_path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited early:\n{server.log()[-3000:]}")
        if _answers_binding(listen[0], port) and _accepts_tcp(listen[0], port):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"turnserver did not answer within 10 s:\n{server.log()[-3000:]}")


@contextlib.contextmanager
def running_coturn(
    tmp: Path,
    listen: Sequence[str],
    relay: Sequence[str] | None = None,
    allowed_peers: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> Iterator[Coturn]:
    """``start_coturn``, stopped afterwards whatever happens."""
    server = start_coturn(tmp, listen, relay, allowed_peers, extra)
    try:
        yield server
    finally:
        server.stop()
