"""Test hosts in network namespaces, linked by a veth pair or by a userspace netem.

Each host gets a /30 from 198.51.100.0/24 (TEST-NET-2, documentation space that is
routed nowhere): the root namespace side is .1 of it, the host side .2. The link is a
veth pair, or (``link="wire"``) two TUN devices joined by a ``tests.wire`` process that
delays and drops packets like ``tc netem`` (this kernel has no netem). On either, loss
can also be an nftables rule dropping a share of the host's UDP, both ways; a firewall
that lets no UDP through (but, optionally, to one address and port) is another.
``local_address`` gives the root namespace one more address, from 203.0.113.0/24
(TEST-NET-3), like a second LAN interface of the machine.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import pytest

from tests.wire import Impairment, WireLink


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def _unused(slots: int, address: Callable[[int], str]) -> int:
    """A slot (of ``slots``) whose address no interface of the root namespace has yet.

    Under pytest-xdist each worker draws from its own share of the slots, so two workers
    making hosts at the same moment never pick the same subnet.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    share = slots // workers
    taken = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=20
    ).stdout  # fmt: skip
    mine = list(range(worker * share, (worker + 1) * share))
    random.shuffle(mine)
    for slot in mine:
        if f" {address(slot)}/" not in taken and f" {address(slot)} " not in taken:
            return slot
    raise RuntimeError("no free test subnet left (namespaces of an earlier run not removed?)")


NETNS_MISSING = "network namespaces need root, iproute2 and nftables (scripts/test installs them)"


def netns_unavailable() -> str | None:
    """Why namespaces (and ``Host.limit``'s ``tc``) cannot be used here, or None: for skipif."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        return NETNS_MISSING
    if not shutil.which("tc"):
        return "Host.limit needs tc (iproute2; scripts/test installs it)"
    return None


def require_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made; CI runs as root with them."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip(NETNS_MISSING)


@dataclass(frozen=True)
class Host:
    """A namespace with one address, reachable from the root namespace at ``gateway``.

    ``wire`` is the userspace netem between them when the host was made with
    ``link="wire"`` (change its delay and loss with ``wire.set``), else None.
    ``outside`` is the link's device in the root namespace (the veth end, or the wire's
    TUN device): what the root namespace sends on it is the host's downlink.
    """

    name: str
    address: str
    gateway: str
    wire: WireLink | None = None
    outside: str = ""

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

    def block_udp(self, allow: tuple[str, int] | None = None) -> None:
        """Drop all UDP in and out of this host but, if given, with ``allow`` (address, port).

        Loopback traffic inside the host and all TCP pass. The drop rules count what
        they dropped (``udp_dropped``).
        """
        subprocess.run(
            self.command("nft", "delete", "table", "inet", "firewall"), capture_output=True
        )
        _run(*self.command("nft", "add", "table", "inet", "firewall"))
        for hook, interface, peer, port in (
            ("input", "iifname", "saddr", "sport"),
            ("output", "oifname", "daddr", "dport"),
        ):
            _run(*self.command(
                "nft", "add", "chain", "inet", "firewall", hook,
                f"{{ type filter hook {hook} priority 0; }}",
            ))  # fmt: skip
            _run(*self.command(
                "nft", "add", "rule", "inet", "firewall", hook, interface, "lo", "accept",
            ))  # fmt: skip
            if allow is not None:
                _run(*self.command(
                    "nft", "add", "rule", "inet", "firewall", hook,
                    "ip", peer, allow[0], "udp", port, str(allow[1]), "accept",
                ))  # fmt: skip
            _run(*self.command(
                "nft", "add", "rule", "inet", "firewall", hook, "meta", "l4proto", "udp",
                "counter", "drop",
            ))  # fmt: skip

    def limit(self, rate_kbit: int, burst_kbit: int = 16, latency_ms: int = 60) -> None:
        """Cap the host's downlink at ``rate_kbit`` with a token bucket (``tc`` ``tbf``).

        The qdisc sits on the root namespace's end of the link, so it shapes what the
        server sends to the host, like a slow line. What waits longer than
        ``latency_ms`` is dropped; ``burst_kbit`` must hold a full packet (16 kbit is
        2000 bytes). Calling it again changes the rate.
        """
        if not shutil.which("tc"):
            pytest.skip("tc (iproute2) is missing: scripts/test installs it")
        _run(
            "tc", "qdisc", "replace", "dev", self._outside(), "root", "tbf",
            "rate", f"{rate_kbit}kbit", "burst", f"{burst_kbit}kbit", "latency", f"{latency_ms}ms",
        )  # fmt: skip

    def unlimit(self) -> None:
        """Remove ``limit``'s qdisc (nothing happens if there is none)."""
        subprocess.run(
            ["tc", "qdisc", "del", "dev", self._outside(), "root"], capture_output=True, timeout=20
        )

    def limit_dropped(self) -> int:
        """Packets ``limit``'s qdisc dropped so far (0 without one)."""
        listing = subprocess.run(
            ["tc", "-s", "qdisc", "show", "dev", self._outside(), "root"],
            check=True, capture_output=True, text=True, timeout=20,
        ).stdout  # fmt: skip
        match = re.search(r"tbf .*?dropped (\d+)", listing, re.DOTALL)
        return int(match.group(1)) if match else 0

    def link_bytes(self) -> tuple[int, int]:
        """Bytes (down, up) that crossed the link so far, counted on the root side."""
        stats = f"/sys/class/net/{self._outside()}/statistics"
        with open(f"{stats}/tx_bytes") as sent, open(f"{stats}/rx_bytes") as received:
            return int(sent.read()), int(received.read())

    def _outside(self) -> str:
        if not self.outside:
            raise ValueError(f"{self.name}: made without its outside device name")
        return self.outside

    def udp_dropped(self) -> int:
        """How many UDP packets ``block_udp``'s rules dropped so far, both ways."""
        listing = subprocess.run(
            self.command("nft", "list", "table", "inet", "firewall"),
            check=True, capture_output=True, text=True, timeout=20,
        ).stdout  # fmt: skip
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", listing))


@contextmanager
def local_address() -> Iterator[str]:
    """One more address of the root namespace (a /32 on a veth end), removed afterwards."""
    require_netns()
    tag = f"{os.getpid() % 10000}{random.randint(0, 999)}"
    one, other = f"pr{tag}l", f"pr{tag}m"
    address = f"203.0.113.{_unused(254, lambda slot: f'203.0.113.{slot + 1}') + 1}"
    _run("ip", "link", "add", one, "type", "veth", "peer", "name", other)
    try:
        _run("ip", "addr", "add", f"{address}/32", "dev", one)
        _run("ip", "link", "set", one, "up")
        _run("ip", "link", "set", other, "up")
        yield address
    finally:
        subprocess.run(["ip", "link", "del", one], capture_output=True)


@contextmanager
def netns_host(
    link: Literal["veth", "wire"] = "veth",
    delay_ms: float = 0.0,
    loss: float = 0.0,
    jitter_ms: float = 0.0,
    seed: int | None = None,
) -> Iterator[Host]:
    """A fresh namespace host, removed afterwards.

    With ``link="wire"`` its link is a ``tests.wire`` process that delays each direction
    by ``delay_ms`` (± ``jitter_ms``) and drops a share ``loss`` of each direction's
    packets, like ``netem delay D J loss L`` on both ends of the link; the veth link
    takes no such options.
    """
    if link not in ("veth", "wire"):
        raise ValueError(f"link is 'veth' or 'wire', not {link!r}")
    impairment = Impairment(delay_ms=delay_ms, jitter_ms=jitter_ms, loss=loss)
    if link == "veth" and (impairment != Impairment() or seed is not None):
        raise ValueError("delay, jitter, loss and seed need link='wire' (veth: set_udp_loss)")
    require_netns()
    if link == "wire" and not os.path.exists("/dev/net/tun"):
        pytest.skip("the wire link needs TUN devices (/dev/net/tun)")
    tag = f"{os.getpid() % 10000}{random.randint(0, 999)}"
    name, outside, inside = f"pr{tag}", f"pr{tag}a", f"pr{tag}b"
    subnet = _unused(64, lambda slot: f"198.51.100.{slot * 4 + 1}") * 4
    gateway, address = f"198.51.100.{subnet + 1}", f"198.51.100.{subnet + 2}"
    wire: WireLink | None = None
    _run("ip", "netns", "add", name)
    try:
        if link == "wire":
            # TUN devices are point-to-point: no ARP, the peer address is the route.
            wire = WireLink(outside, inside, impairment, seed)
            _run("ip", "link", "set", inside, "netns", name)
            # IPv4 only: else the kernel's IPv6 chatter (MLD, router solicitations) is
            # on the wire too, and counted.
            for prefix, device in (([], outside), (["ip", "netns", "exec", name], inside)):
                _run(*prefix, "sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{device}/disable_ipv6")
            _run("ip", "addr", "add", gateway, "peer", f"{address}/32", "dev", outside)
            local, peer = f"{address}", f"{gateway}/32"
        else:
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", inside, "netns", name)
            # IPv4 only here too: the IPv6 link-local address a veth gets when it comes up
            # turns usable (DAD) a second or two later, which Chromium in the namespace
            # takes for a network change: it aborts every request in flight
            # (net::ERR_NETWORK_CHANGED), and a class page whose scripts are among them
            # never starts (CI runs here, 2 of 3 runs of test_browser_netns).
            _run("ip", "netns", "exec", name, "sh", "-c",
                 f"echo 1 > /proc/sys/net/ipv6/conf/{inside}/disable_ipv6")  # fmt: skip
            _run("ip", "addr", "add", f"{gateway}/30", "dev", outside)
            local, peer = f"{address}/30", ""
        _run("ip", "link", "set", outside, "up")
        host = Host(name, address, gateway, wire, outside)
        _run(*host.command("ip", "addr", "add", local, *(["peer", peer] if peer else []),
                           "dev", inside))  # fmt: skip
        _run(*host.command("ip", "link", "set", inside, "up"))
        _run(*host.command("ip", "link", "set", "lo", "up"))
        _run(*host.command("ip", "route", "add", "default", "via", gateway, "dev", inside))
        yield host
    finally:
        if wire is not None:
            wire.close()  # the TUN devices go with the process
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
