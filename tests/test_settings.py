"""Configuration: embedded defaults, switches to real services, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulseroom.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "PULSEROOM_PORT",
        "PULSEROOM_HOST",
        "PULSEROOM_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)


def test_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSEROOM_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith(str(tmp_path / "pulseroom.db"))
    assert settings.redis_url is None


def test_environment_switches_to_real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db:5432/pulseroom")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    settings = load_settings()
    assert settings.effective_database_url == "postgresql+asyncpg://u@db:5432/pulseroom"
    assert settings.redis_url == "redis://cache:6379/0"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PULSEROOM_PORT", "eighty"),
        ("PULSEROOM_PORT", "70000"),
        ("DATABASE_URL", "mysql://x"),
        ("REDIS_URL", "http://x"),
        ("PULSEROOM_LINK_TTL", "5"),
        ("PULSEROOM_SECRET", "short"),
        ("PULSEROOM_SECRET", "change-me-to-64-hex-characters-from-openssl"),
        ("PULSEROOM_SECRET", "my-spin-studio-secret-2026"),
        ("PULSEROOM_SECRET", "ab" * 40),
        ("PULSEROOM_TURN_SECRET", "change-me-to-64-hex-characters-too"),
        ("PULSEROOM_TURN_SECRET", "turnsecret" * 4),
        ("PULSEROOM_PUBLIC_URL", "ftp://x"),
        ("PULSEROOM_SFU_STUN_URLS", '["turn:turn.example.com"]'),
        ("PULSEROOM_TURN_URLS", '["stun:x"]'),
        ("PULSEROOM_TURN_TTL", "10"),
        ("PULSEROOM_ROOMS_PER_MINUTE", "0"),
        ("PULSEROOM_SFU_EVENT_LOOP", "trio"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert name in str(err.value)


def test_secret_is_generated_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSEROOM_DATA_DIR", str(tmp_path))
    first = load_settings().signing_secret()
    second = load_settings().signing_secret()
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0


def test_serve_with_bad_setting_exits_with_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", "serve"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PULSEROOM_PORT": "not-a-port",
            "PULSEROOM_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PULSEROOM_PORT" in result.stderr


def test_turn_needs_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSEROOM_TURN_URLS", '["turn:turn.example.com:3478"]')
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "PULSEROOM_TURN_SECRET" in str(err.value)
    monkeypatch.setenv("PULSEROOM_TURN_SECRET", "a1b2c3d4e5f60718293a4b5c6d7e8f90" * 2)
    assert load_settings().turn_urls == ["turn:turn.example.com:3478"]


def test_a_weak_secret_stops_the_server_and_is_not_echoed(tmp_path: Path) -> None:
    """The .env.example placeholder or a guessable secret: `pulseroom serve` exits at
    once saying how to make one, without printing the secret."""
    import subprocess
    import sys

    for name, weak in [
        ("PULSEROOM_SECRET", "change-me-to-64-hex-characters-from-openssl"),
        ("PULSEROOM_TURN_SECRET", "our-studio-turn-password-1"),
    ]:
        env = {**os.environ, "PULSEROOM_DATA_DIR": str(tmp_path), name: weak}
        done = subprocess.run(
            [sys.executable, "-m", "pulseroom.cli", "serve"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done
        assert name in done.stderr and "openssl rand -hex 32" in done.stderr, done.stderr
        assert weak not in done.stderr + done.stdout
    assert not any(tmp_path.iterdir())  # nothing was started, nothing written


def test_single_sign_on_settings_come_together(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ISSUER", "CLIENT_ID", "CLIENT_SECRET", "INSTRUCTOR_DOMAINS"):
        monkeypatch.delenv(f"PULSEROOM_OIDC_{name}", raising=False)
    assert not load_settings().oidc_enabled
    secret = "provider-issued-client-secret-xyz"
    monkeypatch.setenv("PULSEROOM_OIDC_ISSUER", "https://id.example.com")
    monkeypatch.setenv("PULSEROOM_OIDC_CLIENT_SECRET", secret)
    with pytest.raises(ConfigError, match="PULSEROOM_OIDC_CLIENT_ID") as caught:
        load_settings()
    monkeypatch.setenv("PULSEROOM_OIDC_CLIENT_ID", "pulseroom")
    monkeypatch.setenv("PULSEROOM_OIDC_INSTRUCTOR_DOMAINS", '[" @Studio.Example "]')
    settings = load_settings()
    assert settings.oidc_enabled and settings.oidc_instructor_domains == ["studio.example"]
    # Plain HTTP only for a provider on this machine; the client secret is never echoed.
    monkeypatch.setenv("PULSEROOM_OIDC_ISSUER", "http://id.example.com")
    with pytest.raises(ConfigError, match=r"PULSEROOM_OIDC_ISSUER: .*https://") as caught:
        load_settings()
    monkeypatch.setenv("PULSEROOM_OIDC_ISSUER", "http://127.0.0.1:9000")
    assert load_settings().oidc_issuer == "http://127.0.0.1:9000"
    with pytest.raises(ConfigError) as caught:
        load_settings(PULSEROOM_OIDC_CLIENT_SECRET=secret * 100)
    assert secret not in str(caught.value) and "hidden" in str(caught.value)
