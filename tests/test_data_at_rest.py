"""What the server keeps on disk is its user's alone: data directory, secret, database."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pulseroom.settings import load_settings
from tests.conftest import start_server, stop_server


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_server_keeps_its_data_private(tmp_path: Path) -> None:
    # As a host's default umask (022) would leave them: the server must not rely on it.
    (tmp_path / "data").mkdir(mode=0o755)
    os.chmod(tmp_path / "data", 0o755)
    server = start_server(tmp_path)
    try:
        server.create_room("Private")
        data = server.data_dir
        assert _mode(data) == 0o700, oct(_mode(data))
        files = [p for p in data.rglob("*") if p.is_file()]
        names = {p.name for p in files}
        assert {"secret", "pulseroom.db", "pulseroom.db-wal"} <= names, names
        for path in [*files, *(p for p in data.rglob("*") if p.is_dir())]:
            assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
        assert _mode(data / "secret") == 0o600
    finally:
        stop_server(server)


def test_the_secret_is_made_once_whole_by_racing_processes(tmp_path: Path) -> None:
    settings = [load_settings(PULSEROOM_DATA_DIR=str(tmp_path / "data")) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda s: s.signing_secret(), settings))
    assert len(secrets) == 1 and len(secrets.pop()) == 43  # token_urlsafe(32)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["secret"]  # no scratch
    assert _mode(tmp_path / "data" / "secret") == 0o600
    assert _mode(tmp_path / "data") == 0o700
