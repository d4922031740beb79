"""Every REST endpoint and page fuzzed against one real server.

The routes come from the app itself (tests/fuzz_target.py), so a new one is covered.
Malformed bodies, wrong content types, bodies past the size limit, bad tokens (forged,
bit-flipped, expired, for another class, of the wrong role, unreadable) and hostile ids
in paths must get a clear 4xx (JSON under ``/api/``), never a 5xx, and change nothing
in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.messages import CreateRoomIn
from tests.fuzz_payloads import edge_text, fuzz_settings, is_valid, json_values, malformed
from tests.fuzz_target import (
    SECRET,
    Database,
    Target,
    documented_error_codes,
    http_routes,
    run_target,
    token_of,
)
from tests.sio_client import Client

ROUTES = http_routes()
# A class's routes that take the owner's login, not a class token (test_class_links.py):
# anonymous callers get 401 login_required whatever they send.
# The co-instructors' routes (test_co_instructors.py) too.
LOGIN_ROOM_ROUTES = [
    ("POST", "/api/rooms/{room_id}/links"),
    ("GET", "/api/rooms/{room_id}/co-instructors"),
    ("POST", "/api/rooms/{room_id}/co-instructors"),
    ("DELETE", "/api/rooms/{room_id}/co-instructors/{user_id}"),
]
# A route's other parameters (a recording's id) get a well-formed value: with its braces
# left in, the path would match no route and the handler's checks never run.
ROOM_ROUTES = [
    (m, re.sub(r"\{(?!room_id\})\w+\}", "20260101T000000Z", p))
    for m, p in ROUTES
    if p.startswith("/api/") and "{room_id}" in p and (m, p) not in LOGIN_ROOM_ROUTES
]
# Who am I, the instructor's classes, the admin's endpoints and a participant account's
# own (/api/me/...) answer 401 without a login (test_accounts.py, test_class_list.py,
# test_audit.py, test_participant_accounts.py): open, but not a 200.
LOGIN_GETS = {"/api/auth/me", "/api/classes", "/api/admin/users", "/api/admin/audit"} | {
    p for m, p in ROUTES if m == "GET" and p.startswith("/api/me/")
}
# Single sign-on's browser redirects (test_oidc.py): the fuzzed server has no provider, so
# they answer 404 sso_off whatever they are sent.
SSO_GETS = [p for m, p in ROUTES if m == "GET" and p.startswith("/api/auth/oidc/")]
OPEN_GETS = [
    p
    for m, p in ROUTES
    if m == "GET"
    and "{" not in p
    and not p.startswith(("/socket.io", "/static"))
    and p not in LOGIN_GETS
    and p not in SSO_GETS
]
CODES = documented_error_codes()
FUZZ = fuzz_settings(40)
# Path segments as sent (percent-encoded): the server decodes them into the room id.
HOSTILE_IDS = st.sampled_from(
    ["%00", "..%2f..%2fetc%2fpasswd", "%ff%fe", "%2e%2e", "a" * 5000, "%25%32%65"]
) | (
    st.sampled_from(["../../etc/passwd", "x' OR '1'='1", "$(id)", "room;DROP TABLE rooms", " "])
    | edge_text
).map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe=""))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from run_target(tmp_path_factory.mktemp("fuzz-rest"))


@dataclass
class Api:
    """A class with a joined participant (so there is data to protect), the database."""

    target: Target
    http: httpx.AsyncClient  # anonymous
    instructor: httpx.AsyncClient  # the test instructor's session and CSRF token
    db: Database
    room_id: str
    host_token: str
    bound_token: str  # Ann's own token, from her join
    device_token: str
    participant_id: str
    other_room_host_token: str

    def forge(self, fields: Any) -> str:
        """A correctly signed token whose payload is ``fields`` (of any shape)."""
        body = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
        mac = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()
        return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    def bad_tokens(self) -> st.SearchStrategy[str | None]:
        """Authorization headers that must all be refused for this class."""
        flip = st.integers(0, len(self.host_token) - 1).map(
            lambda i: (
                self.host_token[:i]
                + ("A" if self.host_token[i] != "A" else "B")
                + self.host_token[i + 1 :]
            )
        )
        expired = self.forge({"r": self.room_id, "role": "host", "exp": int(time.time()) - 1})
        payloads = st.fixed_dictionaries(
            {"r": st.just(self.room_id) | json_values, "role": json_values, "exp": json_values},
            optional={"p": json_values},
        ).filter(lambda f: f.get("role") not in ("host", "participant", "device"))
        tokens = st.one_of(
            flip,
            st.just(expired),
            st.just(self.other_room_host_token),
            st.just(self.device_token),  # a device link reads nothing
            st.just(self.forge({"r": self.room_id, "role": "participant", "exp": 2**40})),
            st.just(self.forge({"r": self.room_id, "role": "admin", "exp": 2**40})),
            payloads.map(self.forge),
            st.text(
                alphabet=st.characters(max_codepoint=126, min_codepoint=33),
                min_size=1,
                max_size=600,
            ),
        )
        return st.one_of(
            st.none(),
            # (HTTP clients strip or refuse a value ending in a space, "Bearer ".)
            st.sampled_from(["", "Bearer", "Basic YWRtaW46YWRtaW4=", "bearer x", "Bearer  x"]),
            tokens.map(lambda t: f"Bearer {t}"),
        )


@pytest.fixture
async def api(target: Target) -> AsyncIterator[Api]:
    room, other = target.create_room(), target.create_room()
    ann = await Client(target.url).connect()
    joined = await ann.join(str(room["join_link"]), "Ann")
    assert (await ann.call("chat", {"v": 1, "text": "my data"}))["ok"]
    db = await Database(target.database_url).open()
    target.mark_log()
    async with (
        httpx.AsyncClient(base_url=target.url, timeout=30) as http,
        httpx.AsyncClient(
            base_url=target.url, timeout=30, headers=target.server.instructor().headers()
        ) as instructor,
    ):
        yield Api(
            target,
            http,
            instructor,
            db,
            str(room["room"]["id"]),
            token_of(str(room["host_link"])),
            joined["token"],
            joined["device_token"],
            joined["you"]["id"],
            token_of(str(other["host_link"])),
        )
    await ann.close()
    await db.close()
    assert target.log_problems() == []


def assert_api_error(response: httpx.Response) -> str:
    """A 4xx whose body is the protocol's JSON error; returns the code."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] in CODES, f"undocumented code: {error}"
    return str(error["code"])


def _is_valid_create(body: bytes, content_type: str) -> bool:
    if content_type.split(";")[0].strip() != "application/json":
        return False
    try:
        return is_valid(CreateRoomIn, json.loads(body.decode("utf-8")))
    except (ValueError, RecursionError):
        return False


BODIES = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda v: json.dumps(v).encode(), malformed(CreateRoomIn, {"title": "x"})),
    st.integers(1, 3000).map(lambda n: b"[" * n),
    st.just(b'{"title": "\\ud800"}'),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ]
)


@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES)
async def test_create_room_refuses_malformed_bodies(
    api: Api, body: bytes, content_type: str
) -> None:
    if _is_valid_create(body, content_type):
        return  # a class would rightly be created: not this test's business
    before = await api.db.snapshot()
    headers = {"content-type": content_type} if content_type else {}
    # Anonymous: refused for the missing login, whatever the body.
    response = await api.http.post("/api/rooms", content=body, headers=headers)
    assert response.status_code == 401
    assert assert_api_error(response) == "login_required"
    response = await api.instructor.post("/api/rooms", content=body, headers=headers)
    assert assert_api_error(response) == "bad_request"
    assert await api.db.snapshot() == before


async def test_bodies_past_the_limit_are_cut_off(api: Api) -> None:
    """aiohttp's client_max_size (256 KiB) stops big bodies, streamed or not, with JSON."""
    before = await api.db.snapshot()
    title = "x" * (300 * 1024)
    for content in (json.dumps({"title": title}).encode(), b" " * (4 * 1024 * 1024)):
        response = await api.instructor.post(
            "/api/rooms", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert assert_api_error(response) == "bad_request"

    async def chunks() -> Any:
        for _ in range(64):  # 4 MiB without a Content-Length
            yield b" " * 65536

    response = await api.instructor.post(
        "/api/rooms", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert await api.db.snapshot() == before
    assert (await api.http.get("/api/stats")).status_code == 200


@pytest.mark.parametrize(("method", "path"), ROOM_ROUTES)
@FUZZ
@given(data=st.data())
async def test_bad_tokens_and_hostile_ids_are_refused(
    api: Api, method: str, path: str, data: st.DataObject
) -> None:
    header = data.draw(api.bad_tokens(), label="authorization")
    room = data.draw(st.just(api.room_id) | HOSTILE_IDS, label="room id")
    headers = {} if header is None else {"Authorization": header}
    before = await api.db.snapshot()
    response = await api.http.request(
        method, path.replace("{room_id}", room), headers=headers, params={"participant": "x"}
    )
    if path.endswith("/preview") and response.status_code == 200:
        # The one route a class link may read (the page names the class with it): among
        # the drawn tokens, only a correctly signed, unbound link of this class gets in.
        assert header is not None
        grant = json.loads(base64.urlsafe_b64decode(header.split()[1].split(".")[0] + "=="))
        assert grant["r"] == api.room_id and "p" not in grant, grant
        assert grant["role"] in ("participant", "host"), grant
        assert await api.db.snapshot() == before
        return
    code = assert_api_error(response)
    # not_found: an id no route matches (braces, say) never reaches a handler.
    refusals = {"unauthorized", "invalid_token", "token_expired", "wrong_room", "forbidden"}
    assert code in refusals | {"not_found"}
    assert await api.db.snapshot() == before


def test_login_room_routes_exist() -> None:
    """The list above names real routes (a renamed one would leave the fuzzer blind)."""
    assert set(LOGIN_ROOM_ROUTES) <= set(ROUTES)


@pytest.mark.parametrize(("method", "path"), LOGIN_ROOM_ROUTES)
@FUZZ
@given(data=st.data())
async def test_login_routes_refuse_class_tokens_and_hostile_ids(
    api: Api, method: str, path: str, data: st.DataObject
) -> None:
    """A class token is no login; the owner's login with a hostile id finds no class."""
    header = data.draw(
        st.sampled_from([api.host_token, api.bound_token, api.device_token]).map(
            lambda t: f"Bearer {t}"
        )
        | api.bad_tokens(),
        label="authorization",
    )
    room = data.draw(st.just(api.room_id) | HOSTILE_IDS, label="room id")
    headers = {} if header is None else {"Authorization": header}
    before = await api.db.snapshot()
    url = path.replace("{room_id}", room).replace("{user_id}", "0123456789abcdef" * 2)
    response = await api.http.request(method, url, headers=headers, content=b"{}")
    # not_found: an id no route matches (braces, say) never reaches a handler.
    wanted = {"login_required"} if room == api.room_id else {"login_required", "not_found"}
    assert assert_api_error(response) in wanted
    if room != api.room_id:
        response = await api.instructor.request(method, url, headers=headers)
        assert assert_api_error(response) in {"room_not_found", "not_found", "bad_request"}
    assert await api.db.snapshot() == before


@pytest.mark.parametrize(("method", "path"), ROOM_ROUTES)
async def test_a_token_reaches_only_its_own_class_and_role(
    api: Api, method: str, path: str
) -> None:
    """Valid tokens used where they do not belong: another class, or a device's."""
    before = await api.db.snapshot()
    cases = [
        (api.other_room_host_token, api.room_id, "wrong_room"),
        (api.host_token, "another-room", "wrong_room"),
        (api.device_token, api.room_id, "forbidden"),
    ]
    for token, room, expected in cases:
        response = await api.http.request(
            method,
            path.replace("{room_id}", room),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert assert_api_error(response) == expected, (token, room)
    assert await api.db.snapshot() == before


@FUZZ
@given(
    path=st.sampled_from([p for _m, p in ROUTES if p.startswith("/api/")]) | st.just("/api/x"),
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    suffix=st.sampled_from(["", "/", "/x", "/../stats", "?%00=1", "?a=" + "b" * 3000]),
)
async def test_unknown_api_paths_and_methods_get_json_errors(
    api: Api, path: str, method: str, suffix: str
) -> None:
    url = path.replace("{room_id}", api.room_id) + suffix
    before = await api.db.snapshot()
    response = await api.http.request(method, url, content=b"{}")
    if response.status_code < 400:
        assert method == "GET", (method, url, response.status_code)  # only reads succeed
    else:
        assert_api_error(response)
    assert await api.db.snapshot() == before


@FUZZ
@given(
    path=st.sampled_from(["/r/{}", "/r/{}/summary", "/static/{}"]),
    name=HOSTILE_IDS
    | st.sampled_from(["..%2f..%2fpulseroom%2fsettings.py", "../signaling/tokens.py", "%2e%2e/"]),
    query=st.sampled_from(["", "?x=%00", "?" + "a" * 2000]),
)
async def test_pages_and_static_files_never_fail_nor_leak(
    api: Api, path: str, name: str, query: str
) -> None:
    response = await api.http.get(path.format(name) + query)
    assert response.status_code < 500, (response.status_code, response.text[:200])
    assert "from __future__" not in response.text  # no Python source leaks out


def test_sso_routes_exist() -> None:
    assert sorted(SSO_GETS) == ["/api/auth/oidc/callback", "/api/auth/oidc/start"]


@FUZZ
@given(
    path=st.sampled_from(SSO_GETS),
    query=st.sampled_from(["", "?code=x&state=y", "?error=access_denied", "?%ff=%00", "?" * 50])
    | edge_text.map(lambda t: "?state=" + quote(t.encode("utf-8", "surrogatepass"), safe="")),
)
async def test_sso_routes_without_a_provider_say_so(api: Api, path: str, query: str) -> None:
    before = await api.db.snapshot()
    response = await api.http.get(path + query)
    assert response.status_code == 404
    assert assert_api_error(response) == "sso_off"
    assert await api.db.snapshot() == before


@FUZZ
@given(path=st.sampled_from(OPEN_GETS), query=st.sampled_from(["", "?x=1", "?%ff=%00", "?" * 50]))
async def test_open_endpoints_answer_any_query(api: Api, path: str, query: str) -> None:
    response = await api.http.get(path + query)
    assert response.status_code == 200, (path, response.status_code, response.text[:200])
