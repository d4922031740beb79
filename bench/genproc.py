"""The plumbing every load-generator process shares: JSON lines with the controller."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


class ControllerGone(Exception):
    """The controller closed the generator's stdin."""


def emit(message: dict[str, Any]) -> None:
    """Write one JSON line to the controller."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def read_line() -> dict[str, Any]:
    """The controller's next JSON line."""
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise ControllerGone("the controller closed our stdin")
    message: dict[str, Any] = json.loads(line)
    return message


def serve(run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> int:
    """Read the config line, ``run`` it, and emit the result (or the error) as JSON."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def _main() -> int:
        config = await read_line()
        try:
            result = await run(config)
        except Exception as exc:
            logger.exception("load generator failed")
            emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
            return 1
        emit(result)
        return 0

    return asyncio.run(_main())
