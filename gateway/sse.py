"""Server-sent events on the relay path: cut a byte stream at event boundaries without copying.

The relay forwards whole events only, so a client never sees half an event, and the usage tap
looks at complete events. When an upstream read ends exactly on an event boundary (the usual
case) the chunk is forwarded as the same bytes object. Substrings are looked for with ``find``,
not ``in``: per call, ``bytes.__contains__`` first tries its operand as an integer and builds (and
drops) a TypeError, several times the cost of the search itself.
"""

from __future__ import annotations

from collections.abc import Iterator


class EventCutter:
    """Feed raw bytes, get back the prefix that holds only complete events."""

    __slots__ = ("_pending", "_sep")

    def __init__(self) -> None:
        self._pending = b""
        self._sep = b"\n\n"

    def feed(self, chunk: bytes) -> bytes:
        """Return the complete events available (maybe b""), keep the rest for the next call."""
        if self._pending:
            chunk = self._pending + chunk
        end = chunk.rfind(self._sep)
        if end < 0 and self._sep == b"\n\n" and chunk.find(b"\r\n\r\n") >= 0:
            self._sep = b"\r\n\r\n"
            end = chunk.rfind(self._sep)
        if end < 0:
            self._pending = chunk
            return b""
        end += len(self._sep)
        if end == len(chunk):
            self._pending = b""
            return chunk
        self._pending = chunk[end:]
        return chunk[:end]

    def rest(self) -> bytes:
        """Bytes after the last complete event (a truncated event at end of stream)."""
        rest, self._pending = self._pending, b""
        return rest

    @property
    def separator(self) -> bytes:
        return self._sep


def iter_events(block: bytes, sep: bytes = b"\n\n") -> Iterator[bytes]:
    """Split a block of complete events into single events (each without its separator)."""
    for event in block.split(sep):
        if event:
            yield event


def event_name(event: bytes) -> str | None:
    """The ``event:`` field of one SSE event, if it has one."""
    if event.find(b"event:") < 0:
        return None
    for line in event.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip().decode("utf-8", "replace")
    return None


def event_fields(event: bytes) -> tuple[str | None, bytes | None]:
    """An event's ``event:`` name (its first, stripped) and the payload of its data lines joined with
    newlines (None if it has none), read in one pass over its lines."""
    if event.startswith(b"event:"):  # the usual shape, "event: NAME\ndata: DATA": two slices
        nl = event.find(b"\n")
        if nl > 0 and event.startswith(b"data:", nl + 1) and event.find(b"\n", nl + 1) < 0 and event.find(b"\r") < 0:
            value = event[nl + 6 :]
            return (event[6:nl].strip().decode("utf-8", "replace"),
                    value[1:] if value.startswith(b" ") else value)
    name: str | None = None
    data: list[bytes] = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif name is None and line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    if not data:
        return name, None
    return name, data[0] if len(data) == 1 else b"\n".join(data)


def event_data(event: bytes) -> bytes | None:
    """The payload of an event's data lines joined with newlines; None if it has none."""
    return event_fields(event)[1]


def comment(text: str) -> bytes:
    """An SSE comment line, which clients ignore (keep-alive)."""
    return f": {text}\n\n".encode()
