"""Child processes of a bench run: the server and the load generators, and their /proc figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run; the message says why."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is fields[0]; utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine, all cores, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def load_average() -> float:
    """The machine's 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def memory_mib(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of process ``pid`` in MiB: resident now, and its peak."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _stop_process(process: asyncio.subprocess.Process, timeout: float) -> None:
    """SIGINT, then SIGKILL after ``timeout``: only ever this one process, by its pid."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@dataclass
class Server:
    """``pulseroom serve`` in its own process, with its own data directory and port."""

    data_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Where the server listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self.process is None:
            raise BenchError("the server is not running")
        return self.process.pid

    async def start(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        """Start the server and wait until ``/api/stats`` answers."""
        env = {
            **os.environ,
            "PULSEROOM_DATA_DIR": str(self.data_dir),
            "PULSEROOM_PORT": str(self.port),
            "PULSEROOM_HOST": "127.0.0.1",
            "PULSEROOM_LOG_LEVEL": "WARNING",
        }
        env.pop("PULSEROOM_PUBLIC_URL", None)
        self._log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pulseroom.cli",
            "serve",
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise BenchError(
                    f"the server exited with {self.process.returncode}: {self.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                await self.stats(session)
                return
            await asyncio.sleep(0.1)
        raise BenchError(f"the server did not answer within {timeout:.0f}s: {self.log_tail()}")

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """``GET /api/stats``."""
        async with session.get(f"{self.base_url}/api/stats") as response:
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
            return body

    async def create_room(self, session: aiohttp.ClientSession, title: str) -> dict[str, Any]:
        """``POST /api/rooms``: host and join links."""
        async with session.post(f"{self.base_url}/api/rooms", json={"title": title}) as response:
            if response.status != 201:
                raise BenchError(
                    f"POST /api/rooms answered {response.status}: {await response.text()}"
                )
            body: dict[str, Any] = await response.json()
            return body

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server's output, for error messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    async def stop(self) -> None:
        """Stop the server (SIGINT, as a person would) and close its log."""
        if self.process is not None:
            await _stop_process(self.process, timeout=10)
        if self._log is not None:
            self._log.close()


@dataclass
class Generator:
    """One ``python -m bench.loadgen`` process, spoken to in JSON lines."""

    index: int
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The generator's process id."""
        if self.process is None:
            raise BenchError("the load generator is not running")
        return self.process.pid

    async def start(self, config: dict[str, Any]) -> None:
        """Start the process and hand it its config."""
        self._log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.loadgen",
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            limit=64 * 1024 * 1024,
        )
        await self.send(config)

    async def send(self, message: dict[str, Any]) -> None:
        """Write one JSON line to the generator."""
        if self.process is None or self.process.stdin is None:
            raise BenchError("the load generator is not running")
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()

    async def receive(self, timeout: float) -> dict[str, Any]:
        """The generator's next JSON line; BenchError if it failed or went quiet."""
        if self.process is None or self.process.stdout is None:
            raise BenchError("the load generator is not running")
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError(
                f"load generator {self.index} said nothing for {timeout:.0f}s"
            ) from None
        if not line:
            raise BenchError(f"load generator {self.index} exited: {self.log_tail()}")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == "error":
            raise BenchError(f"load generator {self.index}: {message.get('message')}")
        return message

    def log_tail(self, size: int = 2000) -> str:
        """The end of the generator's stderr, for error messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    async def stop(self) -> None:
        """Let it finish on its own briefly, then stop it."""
        if self.process is not None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                await _stop_process(self.process, timeout=5)
        if self._log is not None:
            self._log.close()
