"""Tests create classes as an instructor does: logged in, with the CSRF header.

The first time a test server is asked for a class, the harness becomes its first admin
through the setup link the server logged at start (as a self-hoster would, reading the
server's output), with a fixed email and password; a server whose database already has
that admin (another node of a cluster, a restarted server, a shared PostgreSQL database)
logs in with the same credentials instead. The logged-in client is kept per server and
reused: one argon2 hash or check per server, not one per class.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

EMAIL = "instructor@pulseroom.test"
PASSWORD = "instructor-password-0123"
SETUP_LINK = re.compile(r"/setup#token=([A-Za-z0-9_-]+)")
SESSION_COOKIE = re.compile(r"^pulseroom_session=([^;]+)")


def session_secret(response: httpx.Response) -> str:
    """The session cookie a login or setup answer sets.

    Read from the header and sent by hand (``with_session``), not left to a cookie jar:
    a jar keeps a Secure cookie (a server with an https public URL) off plain http.
    """
    for header in response.headers.get_list("set-cookie"):
        found = SESSION_COOKIE.match(header)
        if found:
            return found[1]
    raise AssertionError(f"no session cookie in {response.headers}")


def with_session(headers: httpx.Headers, answer: httpx.Response) -> str:
    """Send the session of ``answer`` with every request from now on; its CSRF token."""
    headers["Cookie"] = f"pulseroom_session={session_secret(answer)}"
    return str(answer.json()["csrf_token"])


def setup_tokens(log: str) -> list[str]:
    """The setup links' tokens in a server's output, newest last."""
    return SETUP_LINK.findall(log)


class LoggedIn:
    """An HTTP client holding a session cookie on one server, and the session's CSRF token."""

    def __init__(self, client: httpx.Client, csrf_token: str) -> None:
        self.client = client
        self.csrf_token = csrf_token

    @classmethod
    def open(cls, url: str, log: str, email: str = EMAIL, password: str = PASSWORD) -> LoggedIn:
        """Become the first admin by the newest setup link in ``log``, else log in."""
        client = httpx.Client(base_url=url, timeout=30)
        credentials = {"email": email, "password": password}
        tokens = setup_tokens(log)
        if tokens:
            made = client.post("/api/auth/setup", json={"token": tokens[-1], **credentials})
            if made.status_code == 201:
                return cls(client, with_session(client.headers, made))
            # Another node (or an earlier server) on this database made the admin first.
            assert made.status_code in (403, 409), made.text
        answer = client.post("/api/auth/login", json=credentials)
        if answer.status_code != 200:
            client.close()
            raise AssertionError(f"cannot log in on {url} as {email}: {answer.text}")
        return cls(client, with_session(client.headers, answer))

    def headers(self) -> dict[str, str]:
        """What a request needs to act as this user: the session cookie, the CSRF token."""
        return {"Cookie": self.client.headers["Cookie"], "X-CSRF-Token": self.csrf_token}

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """A state-changing request with the session cookie and the CSRF header."""
        headers = {"X-CSRF-Token": self.csrf_token, **kwargs.pop("headers", {})}
        return self.client.post(path, headers=headers, **kwargs)

    def create_room(self, title: str) -> dict[str, Any]:
        """``POST /api/rooms`` as this user; the JSON answer (raises on a refusal)."""
        response = self.post("/api/rooms", json={"title": title})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def close(self) -> None:
        self.client.close()


class AsyncLoggedIn:
    """``LoggedIn`` for code that runs in the server's own event loop (tests/loopback.py)."""

    def __init__(self, client: httpx.AsyncClient, csrf_token: str) -> None:
        self.client = client
        self.csrf_token = csrf_token

    @classmethod
    async def open(cls, url: str, setup_token: str | None) -> AsyncLoggedIn:
        """Become the first admin with ``setup_token``, else log in."""
        client = httpx.AsyncClient(base_url=url, timeout=30)
        credentials = {"email": EMAIL, "password": PASSWORD}
        if setup_token is not None:
            made = await client.post("/api/auth/setup", json={"token": setup_token, **credentials})
            if made.status_code == 201:
                return cls(client, with_session(client.headers, made))
        answer = await client.post("/api/auth/login", json=credentials)
        if answer.status_code != 200:
            await client.aclose()
            raise AssertionError(f"cannot log in on {url} as {EMAIL}: {answer.text}")
        return cls(client, with_session(client.headers, answer))

    async def create_room(self, title: str) -> dict[str, Any]:
        """``POST /api/rooms`` as this user; the JSON answer (raises on a refusal)."""
        response = await self.client.post(
            "/api/rooms", json={"title": title}, headers={"X-CSRF-Token": self.csrf_token}
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def aclose(self) -> None:
        await self.client.aclose()
