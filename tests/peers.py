"""Real aiortc peers for tests: ``pulseroom bot`` processes, or a Bot in this process."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from client.protocol import parse_link
from pulseroom.bot import Bot
from tests.conftest import ROOT


def bot_command(link: str, name: str, seconds: float, *extra: str) -> list[str]:
    """The ``pulseroom bot`` command line (JSON report on stdout)."""
    return [
        sys.executable, "-m", "pulseroom.cli", "bot", link, "--seconds", str(seconds),
        "--name", name, "--json", *extra,
    ]  # fmt: skip


async def run_bot(
    link: str, name: str, seconds: float, *extra: str, prefix: list[str] | None = None
) -> dict[str, Any]:
    """Run a bot process (inside ``prefix``, e.g. a namespace) and return its report."""
    process = await asyncio.create_subprocess_exec(
        *(prefix or []), *bot_command(link, name, seconds, *extra),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
    assert process.returncode == 0, f"bot {name} failed:\n{stderr.decode()[-3000:]}"
    report: dict[str, Any] = json.loads(stdout)
    return report


async def start_bot(
    link: str, name: str, seconds: float, *extra: str, prefix: list[str] | None = None
) -> asyncio.subprocess.Process:
    """Start a bot process whose report nobody reads (a publisher for other peers)."""
    return await asyncio.create_subprocess_exec(
        *(prefix or []), *bot_command(link, name, seconds, *extra),
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def join(link: str, name: str, **options: Any) -> Bot:
    """A Bot in this process, joined and publishing; ``stop()`` it when done."""
    base, room, token = parse_link(link)
    bot = Bot(base_url=base, token=token, name=name, video="synthetic", room=room, **options)
    await bot.start()
    return bot
