"""The compose kit's Caddyfile, run for real by Caddy in front of a real server.

Certificates cannot be had here (no internet), so the site address is plain http on a
free port; everything else is the file as shipped: pages, API and Socket.IO's WebSocket
reach the app through it, with the app's own security headers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, RunningServer, free_port
from tests.sio_client import Client
from tests.waiting import until_sync

pytestmark = pytest.mark.shared_server


@pytest.fixture
def caddy(server: RunningServer, tmp_path: Path) -> Iterator[str]:
    """Caddy with caddy/Caddyfile, proxying to ``server``; its URL."""
    binary = shutil.which("caddy")
    if binary is None:
        pytest.skip("caddy is not installed (scripts/test installs it)")
    port = free_port()
    env = {
        **os.environ,
        "SITE_ADDRESS": f"http://127.0.0.1:{port}",
        "UPSTREAM": server.url.removeprefix("http://"),
        "CADDY_ADMIN": f"127.0.0.1:{free_port()}",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HOME": str(tmp_path),
    }
    log = (tmp_path / "caddy.log").open("wb")
    process = subprocess.Popen(
        [binary, "run", "--adapter", "caddyfile", "--config", str(ROOT / "caddy" / "Caddyfile")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, (tmp_path / "caddy.log").read_text()
        try:
            return httpx.get(f"{url}/api/stats", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        until_sync(answers, 20, "Caddy answers")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


async def test_the_class_works_through_the_compose_kits_caddy(
    server: RunningServer, caddy: str
) -> None:
    async with httpx.AsyncClient(base_url=caddy, timeout=10) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    room = server.create_room("Through the proxy")
    host, ann = Client(caddy), Client(caddy)
    await host.connect()  # WebSocket only (tests/sio_client.py): the upgrade went through
    await ann.connect()
    try:
        join = str(room["join_link"]).replace(server.url, caddy)
        assert (await host.join(str(room["host_link"]).replace(server.url, caddy), "Coach"))["ok"]
        assert (await ann.join(join, "Ann"))["ok"]
        await host.call("chat", {"v": 1, "text": "through Caddy"})
        got = await ann.wait_for("chat", lambda m: m["message"]["text"] == "through Caddy")
        assert got["message"]["role"] == "host"
    finally:
        await host.close()
        await ann.close()
