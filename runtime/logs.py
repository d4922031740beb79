"""Log output: plain text for a terminal, or one JSON object per line for a collector.

Every record carries the class and participant it is about, when there is one: set for
the duration of a Socket.IO event (``set_log_context`` in signaling/dispatch.py) or of an SFU
worker operation, or given explicitly with ``extra={"class_id": ..., "participant_id":
...}``. The ids live in ``contextvars``, so each asyncio task sees its own and a task
inherits those of the code that created it.

JSON lines look like::

    {"time": "2025-01-01T10:00:00.123Z", "level": "INFO", "logger": "signaling.server",
     "message": "participant 3f… joined room 9a… as participant", "class_id": "9a…",
     "participant_id": "3f…", "process": "server", "pid": 1234}

Other ``extra=`` fields are added as they are (values JSON cannot hold become strings);
an exception adds ``exception`` (the formatted traceback).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# Context variables are per task by design (not shared mutable state): each asyncio task
# runs in a copy of its creator's context.
CLASS_ID: ContextVar[str | None] = ContextVar("pulseroom_class_id", default=None)
PARTICIPANT_ID: ContextVar[str | None] = ContextVar("pulseroom_participant_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName", "class_id", "participant_id"}

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(process_label)s%(name)s: %(message)s%(ids)s"


@contextlib.contextmanager
def log_context(class_id: str | None = None, participant_id: str | None = None) -> Iterator[None]:
    """Within the block (and tasks created in it), records name this class / participant.

    ``None`` leaves the surrounding value as it is.
    """
    tokens = []
    if class_id is not None:
        tokens.append((CLASS_ID, CLASS_ID.set(class_id)))
    if participant_id is not None:
        tokens.append((PARTICIPANT_ID, PARTICIPANT_ID.set(participant_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_log_context(class_id: str | None = None, participant_id: str | None = None) -> None:
    """Name the class / participant for the rest of the current task (``None``: unchanged).

    For a handler that learns the ids half-way (a join); the task's context ends with it.
    """
    if class_id is not None:
        CLASS_ID.set(class_id)
    if participant_id is not None:
        PARTICIPANT_ID.set(participant_id)


class ContextFilter(logging.Filter):
    """Puts ``class_id``, ``participant_id`` and the process label on every record.

    Explicit ``extra=`` ids win over the context's.
    """

    def __init__(self, process_label: str) -> None:
        super().__init__()
        self.process_label = process_label

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "class_id", None) is None:
            record.class_id = CLASS_ID.get()
        if getattr(record, "participant_id", None) is None:
            record.participant_id = PARTICIPANT_ID.get()
        record.process_label = self.process_label
        return True


def _iso_time(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("class_id", "participant_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        entry["process"] = getattr(record, "process_label", "server")
        entry["pid"] = record.process
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key != "process_label" and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic one-line text format, with the class / participant ids appended."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ids = []
        class_id = getattr(record, "class_id", None)
        participant_id = getattr(record, "participant_id", None)
        if class_id is not None:
            ids.append(f"class={class_id}")
        if participant_id is not None:
            ids.append(f"participant={participant_id}")
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        label = getattr(record, "process_label", "server")
        record.process_label = "" if label == "server" else f"{label} "
        try:
            return super().format(record)
        finally:
            record.process_label = label


def configure_logging(
    level: str,
    log_format: LogFormat,
    process_label: str = "server",
    stream: TextIO | None = None,
) -> None:
    """Send every log record to ``stream`` (stderr) in ``log_format``, replacing handlers.

    ``process_label`` tells the server's lines from an SFU worker's ("sfu-worker").
    aiortc and aioice log every packet problem at INFO: they are held to WARNING.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter(process_label))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Python's own warnings become records too, so a JSON stream stays JSON.
    logging.captureWarnings(True)
