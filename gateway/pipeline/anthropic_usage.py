"""Read usage and stop reason from Anthropic Messages responses and streams without re-encoding them.

A JSON message carries ``usage`` and ``stop_reason``. A stream reports usage in ``message_start``
(input, cache counts, an initial output count) and in ``message_delta`` (cumulative output, and on
newer API versions input and cache counts again); the latest value of each field wins. The tap parses
only those events (and ``error``); content deltas are counted by their event name, never parsed.

Counts are turned into the canonical ``Usage`` by the Anthropic adapter's ``map_usage``: the
canonical input includes cache reads and writes (Anthropic's ``input_tokens`` excludes them), which
is what the generation row records as prompt tokens and what is priced at the model's prompt price.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.response import Usage
from gateway.providers.anthropic.mapping import map_stop_reason, map_usage
from gateway.sse import event_data, event_name, iter_events

USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def finish_of(stop_reason: Any) -> str | None:
    """The canonical finish reason ("stop", "length", "tool_calls", ...) for an Anthropic stop_reason."""
    if not isinstance(stop_reason, str):
        return None
    return map_stop_reason(stop_reason).reason.value


def usage_from_message(raw: bytes) -> tuple[Usage, str | None]:
    """(usage, finish reason) of a ``type: "message"`` body; empty usage when it is not one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Usage(), None
    if not isinstance(doc, dict):
        return Usage(), None
    usage = doc.get("usage")
    return map_usage(usage if isinstance(usage, dict) else {}), finish_of(doc.get("stop_reason"))


class AnthropicStreamTap:
    """Watches an Anthropic event stream for usage, the stop reason, ``message_stop`` and ``error``."""

    __slots__ = ("counts", "done", "error", "fragments", "stop_reason")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # the usage fields seen so far, latest value each
        self.stop_reason: str | None = None
        self.done = False  # message_stop seen
        self.error: dict[str, Any] | None = None  # the upstream's own ``event: error`` payload
        self.fragments = 0  # content_block_delta events relayed: about one output token each

    @property
    def ended(self) -> bool:
        """The stream ended the way the grammar allows: message_stop or an error event."""
        return self.done or self.error is not None

    def inspect(self, block: bytes, sep: bytes) -> None:
        """Look at a block of complete events (the caller forwards it unchanged)."""
        for event in iter_events(block, sep):
            name = event_name(event)
            if name == "content_block_delta":
                self.fragments += 1
            elif name in ("message_start", "message_delta", "message_stop", "error"):
                self._read(event)
            elif name is None and (b"message_" in event or b"error" in event or b"content_block_delta" in event):
                self._read(event)  # no ``event:`` line: go by the payload's type

    def _read(self, event: bytes) -> None:
        data = event_data(event)
        if data is None:
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        kind = doc.get("type")
        if kind == "message_start":
            message = doc.get("message")
            if isinstance(message, dict):
                self._take(message.get("usage"))
        elif kind == "message_delta":
            self._take(doc.get("usage"))
            delta = doc.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            err = doc.get("error")
            self.error = err if isinstance(err, dict) else {}
        elif kind == "content_block_delta":
            self.fragments += 1

    def _take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name in USAGE_FIELDS:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                self.counts[name] = value

    def usage(self, prompt_estimate: int | None = None) -> Usage:
        """The canonical usage; with ``prompt_estimate`` (a stream cut short) missing figures are
        estimated: the input from the request size, the output as one token per content delta."""
        counts = dict(self.counts)
        if prompt_estimate is not None:
            if not any(k in counts for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")):
                counts["input_tokens"] = prompt_estimate
            counts["output_tokens"] = max(counts.get("output_tokens", 0), self.fragments)
        return map_usage(counts)

    @property
    def finish_reason(self) -> str | None:
        if self.error is not None:
            return "error"
        return finish_of(self.stop_reason)
