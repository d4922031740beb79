"""Test hosts in network namespaces: a veth pair per host, with optional packet loss.

Each host gets a /30 from 198.51.100.0/24 (TEST-NET-2, documentation space that is
routed nowhere): the root namespace side is .1 of it, the host side .2. Loss is an
nftables rule dropping a share of the host's UDP, both ways (this kernel has no netem).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def require_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made; CI runs as root with them."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip(
            "network namespaces need root, iproute2 and nftables (scripts/test installs them)"
        )


@dataclass(frozen=True)
class Host:
    """A namespace with one address, reachable from the root namespace at ``gateway``."""

    name: str
    address: str
    gateway: str

    def command(self, *args: str) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def set_udp_loss(self, percent: int) -> None:
        """Drop ``percent`` % of UDP in and out of this host (0 removes the rule)."""
        subprocess.run(self.command("nft", "delete", "table", "inet", "chaos"), capture_output=True)
        if percent <= 0:
            return
        _run(*self.command("nft", "add", "table", "inet", "chaos"))
        for hook in ("input", "output"):
            _run(*self.command(
                "nft", "add", "chain", "inet", "chaos", hook,
                f"{{ type filter hook {hook} priority 0; }}",
            ))  # fmt: skip
            _run(*self.command(
                "nft", "add", "rule", "inet", "chaos", hook,
                "meta", "l4proto", "udp",
                "numgen", "random", "mod", "100", "<", str(percent), "drop",
            ))  # fmt: skip


@contextmanager
def netns_host() -> Iterator[Host]:
    """A fresh namespace host, removed afterwards."""
    require_netns()
    tag = f"{os.getpid() % 10000}{random.randint(0, 999)}"
    name, outside, inside = f"pr{tag}", f"pr{tag}a", f"pr{tag}b"
    subnet = random.randint(0, 63) * 4
    gateway, address = f"198.51.100.{subnet + 1}", f"198.51.100.{subnet + 2}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", name)
        _run("ip", "addr", "add", f"{gateway}/30", "dev", outside)
        _run("ip", "link", "set", outside, "up")
        host = Host(name, address, gateway)
        _run(*host.command("ip", "addr", "add", f"{address}/30", "dev", inside))
        _run(*host.command("ip", "link", "set", inside, "up"))
        _run(*host.command("ip", "link", "set", "lo", "up"))
        _run(*host.command("ip", "route", "add", "default", "via", gateway))
        yield host
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
