"""A load-generator process for ``python -m bench.signaling_load``: many light clients.

Config line: ``{"url": str, "links": [class link per client], "concurrency": int,
"index": int}``. Each client is a ``bench.sio_light.LightClient`` (one websocket, no
python-socketio) that connects and joins its class; the process emits ``{"event":
"ready", "joined", "failed", "connect_ms": [...], "join_ms": [...], "errors": [...]}``,
then obeys commands:

- ``{"cmd": "ping", "rate": per second, "seconds": S}``: ``ping`` events with acks, spread
  evenly over time and round-robin over the clients; answers ``{"event": "ping", "sent",
  "answered", "rtt_ms": [...], "late": sends more than 20 ms behind schedule}``;
- ``{"cmd": "chat", "room": id, "rate": per second, "seconds": S, "settle": S}``: chat
  messages from this process's clients in that class, stamped with the send time,
  senders rotating (so none meets its own rate limit), then ``settle`` seconds for the
  last ones to arrive; answers ``{"event": "chat", "sent", "refused", "received":
  {message id: [latency ms, ...]}}``: every client counts every benchmark message it
  receives, its own included;
- ``{"cmd": "stop"}`` (or stdin closing): disconnect, answer ``{"event": "done"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import Any

import aiohttp

from client.protocol import ClientError, call, join_payload, parse_link

from .genproc import ControllerGone, emit, read_line, serve
from .sio_light import LightClient, SioError

LATE_S = 0.02


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Fleet:
    """This process's clients and what they measured."""

    def __init__(self, session: aiohttp.ClientSession, url: str, index: int) -> None:
        self.session = session
        self.url = url
        self.index = index
        self.clients: list[LightClient] = []
        self.rooms: list[str] = []  # each client's class
        self.connect_ms: list[float] = []
        self.join_ms: list[float] = []
        self.errors: list[str] = []
        self.chat: dict[str, list[float]] = defaultdict(list)
        self.chat_measuring = False

    async def join(self, link: str, gate: asyncio.Semaphore) -> None:
        """Connect one client and join its class (failures are counted, not raised)."""
        _base, room, token = parse_link(link)  # the generator's own url serves every class
        client = LightClient(self.session, self.url)
        async with gate:
            started = time.monotonic()
            payload = join_payload(token, f"load {len(self.connect_ms)}", room)
            try:
                await client.connect(timeout=60)
                connected = time.monotonic()
                await call(client, "join", payload, timeout=60)
            except (SioError, TimeoutError, ClientError) as exc:
                refused = isinstance(exc, ClientError)
                self.errors.append(str(exc)[:200] if refused else f"{type(exc).__name__}: {exc}")
                await client.close()
                return
        self.connect_ms.append(_ms(connected - started))
        self.join_ms.append(_ms(time.monotonic() - connected))
        client.on("chat", self._on_chat)
        self.clients.append(client)
        self.rooms.append(room)

    def _on_chat(self, data: Any, arrived: float) -> None:
        if not self.chat_measuring:
            return
        text = str(data["message"]["text"])
        if text.startswith("bench "):
            _, message_id, sent_at = text.split(" ", 2)
            self.chat[message_id].append(_ms(arrived - float(sent_at)))

    async def ping(self, rate: float, seconds: float) -> dict[str, Any]:
        """Pings at ``rate`` per second for ``seconds``; their round trips."""
        loop = asyncio.get_running_loop()
        rtts: list[float] = []
        late = 0
        sent = 0
        live = [c for c in self.clients if not c.closed]
        if not live or rate <= 0:
            return {"event": "ping", "sent": 0, "answered": 0, "rtt_ms": [], "late": 0}
        count = int(rate * seconds)
        start = loop.time()
        for index in range(count):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -LATE_S:
                late += 1
            sent_at = loop.time()

            def answered(_ack: Any, sent_at: float = sent_at) -> None:
                rtts.append(_ms(loop.time() - sent_at))

            with contextlib.suppress(SioError):
                await live[index % len(live)].send_call("ping", {"v": 1}, answered)
                sent += 1
        # The last acks: waited for by polling, as no single event marks "all answered".
        deadline = loop.time() + 10
        while len(rtts) < sent and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return {"event": "ping", "sent": sent, "answered": len(rtts), "rtt_ms": rtts, "late": late}

    async def chat_round(
        self, room: str, rate: float, seconds: float, settle: float
    ) -> dict[str, Any]:
        """Chat messages into ``room`` at ``rate`` per second, stamped with id and send time."""
        loop = asyncio.get_running_loop()
        self.chat.clear()
        self.chat_measuring = True
        refused: list[str] = []
        sent = 0
        live = [c for c, r in zip(self.clients, self.rooms, strict=True) if r == room]
        live = [c for c in live if not c.closed]
        count = int(rate * seconds) if live and rate > 0 else 0
        start = loop.time()
        prefix = f"g{self.index}"

        def acked(ack: Any) -> None:
            if not isinstance(ack, dict) or not ack.get("ok"):
                refused.append(str(ack)[:200])

        for index in range(count):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            text = f"bench {prefix}-{index} {time.time():.6f}"
            with contextlib.suppress(SioError):
                await live[index % len(live)].send_call("chat", {"v": 1, "text": text}, acked)
                sent += 1
        await asyncio.sleep(settle)
        self.chat_measuring = False
        received = dict(self.chat)
        return {"event": "chat", "sent": sent, "refused": refused[:5], "received": received}

    async def close(self) -> None:
        """Disconnect every client (the server sees each session end)."""
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


async def _run(config: dict[str, Any]) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        fleet = Fleet(session, config["url"], int(config.get("index", 0)))
        gate = asyncio.Semaphore(int(config.get("concurrency", 20)))
        await asyncio.gather(*(fleet.join(link, gate) for link in config["links"]))
        emit(
            {
                "event": "ready",
                "joined": len(fleet.clients),
                "failed": len(config["links"]) - len(fleet.clients),
                "connect_ms": fleet.connect_ms,
                "join_ms": fleet.join_ms,
                "errors": fleet.errors[:5],
            }
        )
        try:
            while True:
                command = await read_line()
                if command["cmd"] == "ping":
                    emit(await fleet.ping(float(command["rate"]), float(command["seconds"])))
                elif command["cmd"] == "chat":
                    emit(
                        await fleet.chat_round(
                            str(command["room"]),
                            float(command["rate"]),
                            float(command["seconds"]),
                            float(command.get("settle", 2.0)),
                        )
                    )
                else:
                    break
        except ControllerGone:
            pass
        finally:
            await fleet.close()
    return {"event": "done"}


def main() -> int:
    """Entry point: ``python -m bench.siogen`` (spoken to over stdin/stdout)."""
    return serve(_run)


if __name__ == "__main__":
    raise SystemExit(main())
