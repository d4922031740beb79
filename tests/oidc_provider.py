"""A real OpenID Connect provider for the SSO tests: tests/oidc_provider.mjs (panva's
oidc-provider, from package.json's devDependencies) in a Node.js subprocess on loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.conftest import ROOT, free_port

SCRIPT = ROOT / "tests" / "oidc_provider.mjs"
CLIENT_ID = "pulseroom-test"
CLIENT_SECRET = "a-client-secret-the-provider-issued-0123456789"
NEEDS_PROVIDER = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "oidc-provider").is_dir(),
    reason="Node.js or node_modules/oidc-provider is missing: run `npm ci` (scripts/test does)",
)
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


@dataclass
class Provider:
    """A running provider: its issuer URL, and the test's remote control of it."""

    issuer: str
    redirect_uri: str

    def settings(self, **more: object) -> dict[str, object]:
        """PulseRoom's settings (by environment name) for signing in with this provider."""
        return {
            "PULSEROOM_OIDC_ISSUER": self.issuer,
            "PULSEROOM_OIDC_CLIENT_ID": CLIENT_ID,
            "PULSEROOM_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            **more,
        }

    def set_account(self, sub: str, **claims: Any) -> None:
        """The claims of the user who logs in as ``sub`` (default: email = sub, verified)."""
        answer = httpx.put(f"{self.issuer}/test/accounts/{sub}", content=json.dumps(claims))
        assert answer.status_code == 204, answer.text

    def tamper_next(self, mode: str) -> None:
        """The next ID token is altered after signing: its "payload" or "signature"."""
        answer = httpx.post(f"{self.issuer}/test/tamper", content=json.dumps({"mode": mode}))
        assert answer.status_code == 204, answer.text


@contextmanager
def running_provider(redirect_uri: str) -> Iterator[Provider]:
    """Start the provider on a free port, registered with one client and ``redirect_uri``."""
    port = free_port()
    process = subprocess.Popen(
        ["node", str(SCRIPT), str(port), CLIENT_ID, CLIENT_SECRET, redirect_uri],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready ISSUER", or "" if it died
        assert line.startswith("ready "), f"the provider did not start: {line!r}"
        yield Provider(line.split()[1], redirect_uri)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def sign_in_at_provider(client: httpx.AsyncClient, start: httpx.Response, login: str) -> str:
    """From PulseRoom's redirect to the provider, through its login form (as ``login``)
    and consent screen, to the URL it sends the browser back to (not followed)."""
    response = start
    for prompt, fields in (("login", {"login": login, "password": "any"}), ("consent", {})):
        while response.is_redirect:
            response = await client.get(urljoin(str(response.url), response.headers["location"]))
        assert response.status_code == 200, response.text[:500]
        action = _FORM_ACTION.search(response.text)
        assert action is not None, response.text[:500]
        response = await client.post(
            urljoin(str(response.url), action[1]), data={"prompt": prompt, **fields}
        )
    while response.is_redirect:
        url = urljoin(str(response.url), response.headers["location"])
        if "/api/auth/oidc/callback" in url:
            return url
        response = await client.get(url)
    raise AssertionError(f"the provider did not send the browser back: {response.text[:500]}")
