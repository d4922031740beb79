"""A private PostgreSQL cluster for tests that stop and restart the database.

The shared server on 5432 serves other tests at the same time, so a test that kills
the database gets its own: ``initdb`` in a temporary folder, trust authentication,
listening on 127.0.0.1 on a free port, its unix socket in the same folder. Root may not
run postgres, so as root the binaries run as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import free_port


def _bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class PgCluster:
    """A throwaway cluster: ``url``, ``stop``, ``start``, ``close``."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL under /usr/lib/postgresql (scripts/test installs it)")
        self._bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pulseroom-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.running = False
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
            self.start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as_postgres, str(self._bin / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}\n{log}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.dir} -c max_connections=40"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` is a crash (no checkpoint, clients cut off)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self) -> None:
        """Stop the server if running and remove its files (idempotent)."""
        if self.running:
            try:
                self.stop("fast")
            except RuntimeError:
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def running_cluster() -> Iterator[PgCluster]:
    """Fixture body: ``yield from running_cluster()`` in a (module-scoped) fixture."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.close()
