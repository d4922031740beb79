"""Child processes of a bench run: the server and the load generators, and their /proc figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from signaling.accounts_api import CSRF_HEADER, SESSION_COOKIE

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The account a bench run creates classes with: the first admin of its fresh server.
BENCH_EMAIL = "bench@pulseroom.test"
BENCH_PASSWORD = "bench-password-0123"


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


def _stat_after_comm(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after "pid (comm) " (state first); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, found by walking the ppid of each /proc/<pid>/stat.

    The server may run as a main process plus worker children (and they may have their
    own): every figure "of the server" is summed over this tree.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_after_comm(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and all its descendants (user + system, all threads).

    Also counts ``cutime``/``cstime`` (children already exited and reaped), so a worker
    that ends inside the window still has its time counted once.
    """
    total = 0
    for pid in descendants(root):
        fields = _stat_after_comm(pid)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14-17 (fields[11:15] here)
            total += sum(int(v) for v in fields[11:15])
    return total / CLOCK_TICKS


def tree_memory_mib(root: int) -> dict[str, float]:
    """Memory of ``root`` and its descendants in MiB: RSS summed (counts pages shared
    between a main process and forked workers once per process), PSS summed (shared
    pages split between sharers: the honest total), the largest single peak RSS, and
    how many processes the tree had."""
    rss = pss = peak = 0.0
    count = 0
    for pid in descendants(root):
        try:
            now, high = memory_mib(pid)
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        rss += now
        peak = max(peak, high)
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1]) / 1024
                break
    return {"rss_mib": rss, "pss_mib": pss, "max_peak_rss_mib": peak, "processes": count}


def pin_tree(root: int, cpus: set[int]) -> int:
    """Restrict every thread of ``root`` and its descendants to ``cpus``; returns threads pinned."""
    pinned = 0
    for pid in descendants(root):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)
                    pinned += 1
    return pinned


def udp_receive_errors() -> dict[str, int]:
    """The machine's UDP ``RcvbufErrors`` and ``InErrors`` (datagrams the kernel dropped
    because a socket's receive buffer was full), IPv4 + IPv6, from /proc/net/snmp{,6}."""
    totals = {"RcvbufErrors": 0, "InErrors": 0}
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/snmp").read_text().splitlines()
        rows = [line.split() for line in lines if line.startswith("Udp:")]
        if len(rows) >= 2:
            table = dict(zip(rows[0][1:], rows[1][1:], strict=False))
            for key in totals:
                totals[key] += int(table.get(key, 0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/snmp6").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("Udp6") and name[4:] in totals:
                totals[name[4:]] += int(value.strip() or 0)
    return totals


def udp_socket_drops(root: int) -> int:
    """Datagrams the kernel dropped at the UDP sockets of ``root``'s process tree (its
    full receive buffers): the ``drops`` column of /proc/net/udp{,6} for each socket
    one of those processes holds. Tells a server that could not keep up from a load
    generator that could not."""
    inodes: set[str] = set()
    for pid in descendants(root):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 13 and fields[9] in inodes:
                    drops += int(fields[12])
    return drops


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


def _launcher(cpus: set[int] | None, nice: int = 0) -> list[str]:
    """The command prefix that pins a child to ``cpus`` (None: anywhere) and lowers its
    priority by ``nice`` (``taskset``, ``nice``: each execs the next, so the pid stays).

    Not a ``preexec_fn``: that runs Python in the forked child of a threaded process,
    where a garbage collection freeing a PyAV reformatter waited forever on a slice
    thread's lock that only existed in the parent (the class bench hung at the start).
    """
    prefix: list[str] = []
    if cpus is not None:
        prefix += ["taskset", "--cpu-list", ",".join(str(c) for c in sorted(cpus))]
    if nice:
        prefix += ["nice", "-n", str(nice)]
    return prefix


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
    extra_env: dict[str, str] = field(default_factory=dict)
    cpus: set[int] | None = None  # pinned from exec on (its children inherit it)
    process: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = None
    # The bench's login here (cookie secret, CSRF token), made by the first class.
    _login: tuple[str, str] | None = None

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
            "PULSEROOM_ROOMS_PER_MINUTE": "100000",
            **self.extra_env,
        }
        env.pop("PULSEROOM_PUBLIC_URL", None)
        self._log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            *_launcher(self.cpus),
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

    async def _log_in(self, session: aiohttp.ClientSession) -> tuple[str, str]:
        """Become the server's first admin by the setup link it logged at start (or log
        in, when its data directory has that admin already): cookie secret, CSRF token.

        The cookie is kept here and sent by hand: aiohttp's cookie jar ignores cookies
        of a bare IP address such as 127.0.0.1.
        """
        credentials = {"email": BENCH_EMAIL, "password": BENCH_PASSWORD}
        tokens = re.findall(r"/setup#token=([A-Za-z0-9_-]+)", self.log_tail(1 << 20))
        attempts = [("/api/auth/setup", {"token": t, **credentials}, 201) for t in tokens[-1:]]
        attempts.append(("/api/auth/login", credentials, 200))
        for path, body, status in attempts:
            async with session.post(f"{self.base_url}{path}", json=body) as response:
                if response.status == status:
                    csrf = str((await response.json())["csrf_token"])
                    return response.cookies[SESSION_COOKIE].value, csrf
                failure = f"{path} answered {response.status}: {await response.text()}"
        raise BenchError(f"cannot log in to create classes: {failure}")

    async def create_room(self, session: aiohttp.ClientSession, title: str) -> dict[str, Any]:
        """``POST /api/rooms`` as the bench's instructor (logged in once): the links."""
        if self._login is None:
            self._login = await self._log_in(session)
        secret, csrf = self._login
        async with session.post(
            f"{self.base_url}/api/rooms",
            json={"title": title},
            headers={"Cookie": f"{SESSION_COOKIE}={secret}", CSRF_HEADER: csrf},
        ) as response:
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
    module: str = "bench.loadgen"
    cpus: set[int] | None = None
    args: tuple[str, ...] = ()
    nice: int = 0  # lower priority than the server's (see --generator-nice)
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
            *_launcher(self.cpus, self.nice),
            sys.executable,
            "-m",
            self.module,
            *self.args,
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


def dump_logs(label: str, generators: list[Generator], server: Server) -> None:
    """Write the generators' and the server's last log lines to stderr (after a failure)."""
    with contextlib.suppress(Exception):
        for generator in generators:
            sys.stderr.write(f"--- {label} {generator.index}:\n{generator.log_tail()}\n")
        sys.stderr.write(f"--- server:\n{server.log_tail()}\n")
