"""``pulseroom doctor`` and ``/healthz`` / ``/readyz`` against real services.

One deployment for the module: a real coturn running turn/coturn.conf, and a server on
a fresh PostgreSQL database with Redis and TURN configured. ``pulseroom doctor`` runs as
a subprocess with the server's environment, and each failure is made for real: another
TURN secret, a TURN port nobody answers on, a closed Redis port, an empty database, a
plain-HTTP host name, a self-signed certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pulseroom.doctor import Result, diagnose, format_results, is_local_host, redact_url
from signaling.health import CACHE_S, parse_turn_url, stun_binding
from storage import migrations
from tests.conftest import (
    REDIS_URL,
    ROOT,
    RunningServer,
    free_port,
    fresh_database,
    start_server,
    stop_server,
)
from tests.coturn import Coturn, running_coturn
from tests.coturn import free_port as free_udp_tcp_port

# Every variable the settings read: nothing from the test runner's environment leaks in.
_OURS = ("PULSEROOM_", "DATABASE_URL", "REDIS_URL")


@dataclass
class Deployment:
    """The module's server and coturn, and the environment the server runs with."""

    server: RunningServer
    coturn: Coturn
    env: dict[str, str]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for the module's server (conftest's is per test)."""
    yield from fresh_database("pulseroom_doctor")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Deployment]:
    """coturn, and a server on PostgreSQL + Redis + that coturn, as docker compose runs them."""
    tmp = tmp_path_factory.mktemp("deployment")
    with running_coturn(tmp / "coturn", ["127.0.0.1"]) as coturn:
        port = free_port()
        env = {
            "PULSEROOM_PORT": str(port),
            "PULSEROOM_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PULSEROOM_DATA_DIR": str(tmp / "data"),
            "PULSEROOM_SECRET": "0d1c2b3a49586776a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2",
            "PULSEROOM_SFU_WORKERS": "1",
            "DATABASE_URL": database,
            "REDIS_URL": REDIS_URL,
            "PULSEROOM_TURN_URLS": json.dumps([coturn.url("udp"), coturn.url("tcp")]),
            "PULSEROOM_TURN_SECRET": coturn.secret,
        }
        server = start_server(tmp, **env)
        try:
            yield Deployment(server, coturn, env)
        finally:
            stop_server(server)


def run_doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Result], str]:
    """``pulseroom doctor --json ARGS`` with exactly ``env``; (exit code, results by name, out)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    done = subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", "doctor", "--json", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert not done.stderr.strip(), done.stderr
    report = json.loads(done.stdout)
    results = {r["name"]: Result(**r) for r in report["results"]}
    assert report["ok"] == (done.returncode == 0)
    return done.returncode, results, done.stdout


def failing(results: dict[str, Result]) -> set[str]:
    """The names of the checks that did not PASS."""
    return {name for name, r in results.items() if r.status != "PASS"}


def secrets_of(env: dict[str, str]) -> list[str]:
    """Every secret in ``env``: the signing and TURN secrets and the URLs' passwords."""
    found = [env.get("PULSEROOM_SECRET", ""), env.get("PULSEROOM_TURN_SECRET", "")]
    for key in ("DATABASE_URL", "REDIS_URL"):
        if env.get(key):
            found.append(urlsplit(env[key]).password or "")
    return [s for s in found if s]


# -- doctor -------------------------------------------------------------------------------


def test_everything_right_passes(deployment: Deployment) -> None:
    code, results, out = run_doctor(deployment.env)
    assert code == 0, out
    assert failing(results) == set(), out
    port = deployment.coturn.port
    assert set(results) == {
        "configuration", "signing secret", "database", "migrations", "redis", "turn config",
        f"turn turn:127.0.0.1:{port}/udp", f"turn turn:127.0.0.1:{port}/tcp",
        "https", "serves pulseroom", "websocket", "public address",
    }  # fmt: skip
    assert "allocated relay 127.0.0.1:" in results[f"turn turn:127.0.0.1:{port}/udp"].detail
    assert "ready: database, migrations, redis, sfu, turn" in results["serves pulseroom"].detail
    # The database URL is shown with its password hidden; no secret appears at all.
    assert results["database"].detail.startswith("PostgreSQL ")
    assert not any(secret in out for secret in secrets_of(deployment.env))


WRONG_TURN_SECRET = "e1d2c3b4a59687f0e1d2c3b4a59687f0notthesecretcoturnhas0123456789ab"


def test_turn_secret_differing_from_coturns_fails(deployment: Deployment) -> None:
    env = {**deployment.env, "PULSEROOM_TURN_SECRET": WRONG_TURN_SECRET}
    code, results, out = run_doctor(env)
    assert code == 1
    port = deployment.coturn.port
    turn = {f"turn turn:127.0.0.1:{port}/udp", f"turn turn:127.0.0.1:{port}/tcp"}
    assert failing(results) == turn, out
    for name in turn:
        assert results[name].status == "FAIL"
        assert "secret differs from coturn's static-auth-secret" in results[name].detail
        assert "static-auth-secret" in results[name].fix
    assert WRONG_TURN_SECRET not in out


def test_coturn_down_fails(deployment: Deployment) -> None:
    """Nothing on the port (refused at once), and a port that swallows everything (timeout)."""
    closed = free_udp_tcp_port("127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        silent = black_hole.getsockname()[1]
        urls = [
            f"turn:127.0.0.1:{closed}?transport=udp",
            f"turn:127.0.0.1:{closed}?transport=tcp",
            f"turn:127.0.0.1:{silent}?transport=udp",
        ]
        env = {**deployment.env, "PULSEROOM_TURN_URLS": json.dumps(urls)}
        started = time.monotonic()
        code, results, out = run_doctor(env)
        took = time.monotonic() - started
    assert code == 1
    names = [f"turn {parse_turn_url(url)}" for url in urls]
    # Readiness is the server's own view (its coturn is up); only the TURN lines fail.
    assert failing(results) == set(names), out
    for name in names[:2]:
        assert "connection refused" in results[name].detail
        assert "coturn down" in results[name].detail
    assert "no answer within 3 s: port closed / coturn down" in results[names[2]].detail
    assert "start coturn" in results[names[2]].fix
    assert took < 10


def test_redis_on_a_closed_port_fails(deployment: Deployment) -> None:
    url = f"redis://:redis-password-123@127.0.0.1:{free_port()}/0"
    code, results, out = run_doctor({**deployment.env, "REDIS_URL": url})
    assert code == 1
    assert failing(results) == {"redis"}, out
    assert results["redis"].status == "FAIL"
    assert "no PING answer from redis://:***@127.0.0.1:" in results["redis"].detail
    assert "start Redis" in results["redis"].fix
    assert "redis-password-123" not in out


def test_pending_migrations_fail_until_migrated(deployment: Deployment, postgres_url: str) -> None:
    env = {**deployment.env, "DATABASE_URL": postgres_url}
    code, results, out = run_doctor(env)
    assert code == 1
    assert failing(results) == {"migrations"}, out
    every = migrations.discover("postgresql")
    assert [m.version for m in every[:4]] == [1, 2, 3, 4], every
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in every)
    pending = f"{len(every)} pending: {names}"
    assert pending in results["migrations"].detail
    assert "pulseroom migrate" in results["migrations"].fix

    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", "migrate"],
        cwd=ROOT, env={**clean, **env}, check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    code, results, out = run_doctor(env)
    assert code == 0, out
    assert results["migrations"].status == "PASS"


def test_plain_http_on_a_host_name_fails(deployment: Deployment) -> None:
    """This machine's own host name: the server answers there, but browsers want HTTPS."""
    host = socket.gethostname()
    assert not is_local_host(host)
    url = f"http://{host}:{deployment.env['PULSEROOM_PORT']}"
    code, results, _ = run_doctor(deployment.env, url)
    assert code == 1
    assert results["https"].status == "FAIL"
    assert "browsers only allow camera/microphone on HTTPS" in results["https"].detail
    assert "TLS proxy" in results["https"].fix
    # Where the name resolves to this machine, the rest still works through it.
    try:
        loopback = socket.gethostbyname(host).startswith("127.")
    except OSError:
        loopback = False
    if loopback:
        assert results["serves pulseroom"].status == "PASS"
        assert results["websocket"].status == "PASS"
        assert results["public address"].status == "WARN"  # a loopback address in DNS
    # A plain-HTTP deployment without an explicit signing secret is warned about too.
    env = {k: v for k, v in deployment.env.items() if k != "PULSEROOM_SECRET"}
    _, results, _ = run_doctor(env, url)
    assert results["signing secret"].status == "WARN"
    assert "PULSEROOM_SECRET" in results["signing secret"].fix


@pytest.fixture
def self_signed_https(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on localhost with a self-signed certificate (answers /healthz)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "ok"}'
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_self_signed_certificate_fails(deployment: Deployment, self_signed_https: str) -> None:
    code, results, _ = run_doctor(deployment.env, self_signed_https)
    assert code == 1
    assert results["https"].status == "FAIL"
    assert "is not valid: self-signed certificate" in results["https"].detail
    assert "public CA" in results["https"].fix
    assert results["serves pulseroom"].status == "FAIL"
    assert "without PulseRoom's checks" in results["serves pulseroom"].detail


async def test_bad_configuration_is_one_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(_OURS):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PULSEROOM_TURN_URLS", '["turn:turn.example.com:3478"]')
    results = await diagnose()
    assert [(r.name, r.status) for r in results] == [("configuration", "FAIL")]
    assert "PULSEROOM_TURN_SECRET" in results[0].detail


def test_text_output_is_aligned_with_fixes() -> None:
    text = format_results(
        [
            Result("configuration", "PASS", "loaded"),
            Result("redis", "FAIL", "no PING answer", "start Redis"),
            Result("turn config", "WARN", "not set", "run coturn"),
        ]
    )
    assert text.splitlines() == [
        "PASS  configuration  loaded",
        "FAIL  redis          no PING answer",
        "                     fix: start Redis",
        "WARN  turn config    not set",
        "                     fix: run coturn",
    ]


def test_helpers() -> None:
    assert redact_url("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
    assert all(map(is_local_host, ["localhost", "a.localhost", "127.0.0.2", "[::1]"]))
    assert not any(map(is_local_host, ["example.com", "10.0.0.1", "localhost.example"]))
    turns = parse_turn_url("turns:turn.example.com?transport=tcp")
    assert (turns.secure, turns.host, turns.port, turns.transport) == (
        True, "turn.example.com", 5349, "tcp",
    )  # fmt: skip
    assert str(parse_turn_url("turn:[2001:db8::1]:3479")) == "turn:[2001:db8::1]:3479/udp"
    with pytest.raises(ValueError):
        parse_turn_url("turns:host?transport=udp")


# -- /healthz and /readyz -----------------------------------------------------------------


def test_ready_with_postgres_redis_and_turn(deployment: Deployment) -> None:
    url = deployment.server.url
    health = httpx.get(f"{url}/healthz", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = httpx.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "migrations", "redis", "turn", "sfu"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["sfu"]["detail"] == "1/1 workers alive"
    # The TURN check is a real STUN Binding to coturn; the same works from here.
    mapped = asyncio.run(stun_binding("127.0.0.1", deployment.coturn.port))
    assert mapped[0] == "127.0.0.1"


def test_unready_when_redis_and_turn_are_down(tmp_path: Path) -> None:
    """The server starts without Redis (it connects lazily) but is not ready, and says why."""
    password = "redis-secret-pw-42"
    server = start_server(
        tmp_path,
        REDIS_URL=f"redis://:{password}@127.0.0.1:{free_port()}/0",
        PULSEROOM_TURN_URLS=json.dumps([f"turn:127.0.0.1:{free_udp_tcp_port('127.0.0.1')}"]),
        PULSEROOM_TURN_SECRET="7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2dturnsecretnottoshow0123456789",
        PULSEROOM_SFU_WORKERS="1",
    )
    try:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        started = time.monotonic()
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert time.monotonic() - started < 2.5
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unready"
        checks = body["checks"]
        assert {name for name, check in checks.items() if not check["ok"]} == {"redis", "turn"}
        assert "127.0.0.1" in checks["redis"]["error"]
        assert "Refused" in checks["turn"]["error"] or "refused" in checks["turn"]["error"]
        assert password not in ready.text
        assert "turn-secret-not-to-show" not in ready.text

        # A migration that went missing (a restored old backup) makes it unready too,
        # once the cached result (CACHE_S) is older than that.
        with sqlite3.connect(server.data_dir / "pulseroom.db") as db:
            db.execute("DELETE FROM schema_migrations WHERE version = 2")
        time.sleep(CACHE_S)
        checks = httpx.get(f"{server.url}/readyz", timeout=5).json()["checks"]
        assert not checks["migrations"]["ok"]
        assert "0002_heart_rate" in checks["migrations"]["error"]
    finally:
        stop_server(server)


async def test_timescaledb_job_failures_are_reported(postgres_url: str, tmp_path: Path) -> None:
    """Without TimescaleDB the check says nothing. TimescaleDB is not packaged on this
    machine, so its catalog view is stood in for by a table with the columns TimescaleDB
    documents for timescaledb_information.job_errors: a failure in the last day is a
    WARN naming the job and its error; one older than that is not."""
    from pulseroom.doctor_context import Context
    from pulseroom.doctor_services import check_timescale_jobs
    from pulseroom.settings import load_settings
    from storage.store import create_engine

    engine = create_engine(postgres_url)
    ctx = Context(load_settings(PULSEROOM_DATA_DIR=str(tmp_path)), "http://127.0.0.1", engine, [])
    try:
        assert await check_timescale_jobs(ctx) == []
        async with engine.begin() as conn:
            for statement in (
                "CREATE SCHEMA timescaledb_information",
                "CREATE TABLE timescaledb_information.job_errors (job_id int, proc_schema"
                " name, proc_name name, pid int, start_time timestamptz, finish_time"
                " timestamptz, sqlerrcode text, err_message text)",
                "INSERT INTO timescaledb_information.job_errors VALUES (1000, '_timescaledb"
                "_functions', 'policy_refresh_continuous_aggregate', 1, now() - interval"
                " '3 days', now() - interval '3 days', 'XX000', 'old trouble')",
            ):
                await conn.exec_driver_sql(statement)
        [result] = await check_timescale_jobs(ctx)
        assert result.status == "PASS", result
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO timescaledb_information.job_errors VALUES (1001, '_timescaledb"
                "_functions', 'policy_compression', 2, now() - interval '1 hour', now() -"
                " interval '1 hour', '57014', 'canceling statement due to statement timeout')"
            )
        [result] = await check_timescale_jobs(ctx)
        assert result.status == "WARN", result
        assert "1 job run(s) failed" in result.detail and "policy_compression" in result.detail
        assert "statement timeout" in result.detail and "job_errors" in result.fix
    finally:
        await engine.dispose()
