"""docker-compose.yml, .env.example and turn/coturn.conf checked against the app.

Docker does not run here, so the files are read: every variable the app service sets
is a real setting, and loads with .env.example's values; ports, credentials and the
TURN secret agree between services; every ``${VAR}`` has an example; coturn's
configuration keeps its hardening.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices

from pulseroom.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_ENV: dict[str, str] = SERVICES["app"]["environment"]
# ${VAR}, ${VAR:-default}, ${VAR:?error} and friends; $$ is an escaped dollar.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(?::?[-?+])([^}]*))?\}")


def env_example() -> dict[str, str]:
    """.env.example's KEY=VALUE lines."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: str, variables: dict[str, str]) -> str:
    """What docker compose makes of ``value`` with ``variables`` (the .env file)."""
    return VARIABLE.sub(lambda m: variables[m[1]], value)


def placeholders(value: str) -> str:
    """``value`` with each ``${VAR...}`` replaced by ``__VAR__`` (parseable as a URL part)."""
    return VARIABLE.sub(lambda m: f"__{m[1]}__", value)


def setting_aliases() -> set[str]:
    """The environment variable names Settings reads."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def variable_name(value: str) -> str:
    """The variable in a value that is exactly one ``${VAR...}``."""
    match = VARIABLE.fullmatch(value.strip())
    assert match is not None, f"{value!r} is not a single ${{VAR}}"
    return match[1]


def test_app_sets_only_real_settings() -> None:
    unknown = set(APP_ENV) - setting_aliases()
    assert not unknown, f"the app service sets variables PulseRoom does not read: {unknown}"


def test_app_environment_loads_with_the_example_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_aliases():
        monkeypatch.delenv(name, raising=False)
    example = env_example()
    for name, value in APP_ENV.items():
        monkeypatch.setenv(name, interpolate(str(value), example))
    # As copied, the placeholders stop the app: a self-hoster must make real secrets.
    with pytest.raises(ConfigError) as refused:
        load_settings()
    named = set(re.findall(r"\w+", str(refused.value)))
    assert {"PULSEROOM_SECRET", "PULSEROOM_TURN_SECRET"} <= named
    # Made as .env.example says (`openssl rand -hex 32`), everything loads.
    example = {k: secrets.token_hex(32) if "change-me" in v else v for k, v in example.items()}
    for name, value in APP_ENV.items():
        monkeypatch.setenv(name, interpolate(str(value), example))
    settings = load_settings()
    assert settings.public_url == example["PULSEROOM_PUBLIC_URL"]
    assert settings.database_url is not None and settings.redis_url is not None
    assert settings.turn_urls and settings.turn_secret == example["TURN_SECRET"]
    assert all(example["TURN_HOST"] in url for url in settings.turn_urls)
    assert any("transport=tcp" in url for url in settings.turn_urls)


def test_healthcheck_uses_the_app_port() -> None:
    test = " ".join(SERVICES["app"]["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)/(healthz|readyz)", test)
    assert match is not None, test
    assert match[1] == str(APP_ENV["PULSEROOM_PORT"])
    # The image's own default agrees (docker run without compose).
    assert f"PULSEROOM_PORT={APP_ENV['PULSEROOM_PORT']}" in (ROOT / "Dockerfile").read_text()


def test_database_url_matches_the_db_service() -> None:
    url = urlsplit(placeholders(APP_ENV["DATABASE_URL"]))
    db = SERVICES["db"]
    db_env = db["environment"]
    assert url.scheme == "postgresql+asyncpg"
    assert url.username == db_env["POSTGRES_USER"]
    assert url.path.lstrip("/") == db_env["POSTGRES_DB"]
    assert url.password == f"__{variable_name(db_env['POSTGRES_PASSWORD'])}__"
    # The app (host network) reaches the port the db service publishes on loopback.
    assert url.hostname == "127.0.0.1"
    assert f"127.0.0.1:{url.port}:5432" in db["ports"]
    readiness = " ".join(db["healthcheck"]["test"])
    assert f"-U {db_env['POSTGRES_USER']}" in readiness
    assert f"-d {db_env['POSTGRES_DB']}" in readiness


def test_redis_url_matches_the_redis_service() -> None:
    url = urlsplit(APP_ENV["REDIS_URL"])
    assert url.hostname == "127.0.0.1"
    assert f"127.0.0.1:{url.port}:6379" in SERVICES["redis"]["ports"]


def test_db_is_timescale() -> None:
    assert SERVICES["db"]["image"].startswith("timescale/timescaledb:")


def test_media_services_use_host_networking() -> None:
    assert SERVICES["app"]["network_mode"] == "host"
    assert SERVICES["coturn"]["network_mode"] == "host"


def test_coturn_and_app_share_the_turn_secret() -> None:
    secret_args = [
        a for a in SERVICES["coturn"]["command"] if a.startswith("--static-auth-secret=")
    ]
    assert len(secret_args) == 1
    coturn_variable = variable_name(secret_args[0].partition("=")[2])
    assert coturn_variable == variable_name(APP_ENV["PULSEROOM_TURN_SECRET"])
    assert "PULSEROOM_TURN_URLS" in APP_ENV
    # coturn reads the repo's configuration.
    mounts = SERVICES["coturn"]["volumes"]
    assert "./turn/coturn.conf:/etc/coturn/turnserver.conf:ro" in mounts
    assert "/etc/coturn/turnserver.conf" in SERVICES["coturn"]["command"]


def test_caddy_serves_the_public_url_in_front_of_the_app() -> None:
    """The HTTPS proxy's site is the app's public URL and its upstream the app's port."""
    caddy = SERVICES["caddy"]
    assert caddy["network_mode"] == "host"
    env = caddy["environment"]
    assert variable_name(env["SITE_ADDRESS"]) == variable_name(APP_ENV["PULSEROOM_PUBLIC_URL"])
    assert env["UPSTREAM"] == f"{APP_ENV['PULSEROOM_HOST']}:{APP_ENV['PULSEROOM_PORT']}"
    assert "./caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert "/data" in {str(v).split(":")[1] for v in caddy["volumes"]}  # certificates kept
    caddyfile = (ROOT / "caddy" / "Caddyfile").read_text()
    assert "{$SITE_ADDRESS}" in caddyfile and "reverse_proxy {$UPSTREAM" in caddyfile


def test_every_variable_has_an_example() -> None:
    used = {m[1] for m in VARIABLE.finditer(COMPOSE_TEXT)}
    assert used, "no ${VAR} found: the pattern is broken"
    missing = used - set(env_example())
    assert not missing, f"used in docker-compose.yml but not in .env.example: {missing}"


def test_every_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name


def test_data_lives_in_named_volumes() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    expected = {"app": APP_ENV["PULSEROOM_DATA_DIR"], "db": "/var/lib/postgresql/data"}
    for service, target in expected.items():
        mounts = [str(v).split(":") for v in SERVICES[service]["volumes"]]
        named = {m[0] for m in mounts if m[1] == target}
        assert named and named <= declared, f"{service}: {target} is not on a named volume"
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = str(mount).split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def _coturn_conf() -> tuple[list[str], list[str]]:
    """coturn.conf's active lines and its commented-out lines."""
    active, commented = [], []
    for line in (ROOT / "turn" / "coturn.conf").read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            commented.append(line.lstrip("#").strip())
        elif line:
            active.append(line)
    return active, commented


def test_coturn_conf_is_hardened() -> None:
    active, _ = _coturn_conf()
    options = {line.partition("=")[0].strip() for line in active}
    for flag in ("use-auth-secret", "fingerprint", "no-multicast-peers", "no-cli"):
        assert flag in options, flag
    for setting in ("realm", "user-quota", "total-quota", "max-bps", "bps-capacity"):
        values = [line.partition("=")[2] for line in active if line.startswith(f"{setting}=")]
        assert values and values[0].strip(), setting
    assert not any(line.startswith("static-auth-secret") for line in active), (
        "the secret must come from the environment, not the repository"
    )


def test_coturn_denies_relaying_to_private_addresses() -> None:
    active, _ = _coturn_conf()
    denied = []
    for line in active:
        if line.startswith("denied-peer-ip="):
            first, _, last = line.partition("=")[2].partition("-")
            denied.append((ipaddress.ip_address(first), ipaddress.ip_address(last or first)))
    # Every address: only allowed-peer-ip (the media server, from .env) gets through.
    for network in ("0.0.0.0/0", "::/0"):
        net = ipaddress.ip_network(network)
        assert any(
            first.version == net.version
            and first <= net.network_address
            and net.broadcast_address <= last  # type: ignore[operator]
            for first, last in denied
        ), f"{network} is not in a denied-peer-ip range"


def test_coturn_relays_only_to_the_media_server() -> None:
    """compose lets exactly the media server's address(es) through coturn's deny-all."""
    allowed = [a for a in SERVICES["coturn"]["command"] if a.startswith("--allowed-peer-ip=")]
    assert len(allowed) == 1, SERVICES["coturn"]["command"]
    assert variable_name(allowed[0].partition("=")[2]) == "SFU_PUBLIC_IP"
    active, _ = _coturn_conf()
    assert not any(line.startswith("allowed-peer-ip") for line in active)  # only from .env


def test_coturn_documents_a_tls_listener() -> None:
    _, commented = _coturn_conf()
    assert any(re.fullmatch(r"tls-listening-port=\d+", line) for line in commented)
    assert any(line.startswith("cert=") for line in commented)
    assert any(line.startswith("pkey=") for line in commented)


def test_self_hosting_guide_matches_the_relay_range() -> None:
    active, _ = _coturn_conf()
    values = dict(line.partition("=")[::2] for line in active if "=" in line)
    guide = (ROOT / "docs" / "self-hosting.md").read_text()
    assert f"{values['min-port']}-{values['max-port']}" in guide
    assert values["listening-port"] in guide


def test_the_env_file_stays_out_of_git_and_the_image() -> None:
    """`.env` holds the secrets: the Dockerfile's COPY and a commit must not take it."""
    for ignore in (".gitignore", ".dockerignore"):
        lines = {line.strip() for line in (ROOT / ignore).read_text().splitlines()}
        assert ".env" in lines, ignore
