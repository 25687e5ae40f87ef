"""Logging: JSON lines on stdout, one access line per request."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import orjson

ACCESS = "arouter.access"


class JsonFormatter(logging.Formatter):
    """Format records as one JSON object per line: the message, and the record's ``fields`` if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        doc["msg"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stdout as JSON."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = True


class AccessLog:
    """The access lines: built with orjson, buffered, and written together every ``FLUSH_SECONDS``.

    The same JSON shape as the other log lines, without the logging module's per-record work (a
    LogRecord, a stack walk, a write and a flush per line). One ``write`` carries every line of the
    last 50 ms (or 64 KiB, whichever comes first), not one per request; the app flushes what is left
    when it stops. A killed worker loses at most those 50 ms of access lines (never usage: the usage
    journal is separate).
    """

    FLUSH_SECONDS = 0.05
    FLUSH_BYTES = 64 * 1024

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def write(self, fields: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        doc = {"ts": f"{self._stamp}.{int((now - second) * 1000):03d}Z", "level": "info", "logger": ACCESS, **fields}
        line = orjson.dumps(doc, default=str, option=orjson.OPT_APPEND_NEWLINE)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines now (the timer calls this; so does the app when it stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        data = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            pass  # stdout gone: the lines are lost, never the request
