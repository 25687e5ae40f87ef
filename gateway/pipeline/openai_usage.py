"""Read usage and finish reason from OpenAI-format responses and streams without re-encoding them.

The stream tap looks only at events that can carry something (a non-null ``usage`` or
``finish_reason``, or ``[DONE]``), found by byte search; ordinary content chunks are not parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from gateway.billing.pricing import request_cost
from gateway.settings import ModelSettings
from gateway.sse import event_data

# A finish reason (not null) and a usage object (not the "usage":null every chunk carries), compact and
# as serializers that put a space after the colon write them
_MARKERS = (b'"finish_reason":"', b'"finish_reason": "', b'"usage":{', b'"usage": {')


class Usage:
    """Token counts as reported (None when the upstream did not say)."""

    __slots__ = (
        "cache_read", "cache_write", "completion_tokens", "finish_reason", "prompt_tokens", "reasoning",
        "total_tokens",
    )

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.total_tokens: int | None = None
        self.finish_reason: str | None = None
        self.cache_read: int | None = None  # of prompt_tokens, read from a cache
        self.cache_write: int | None = None  # of prompt_tokens, written to a cache
        self.reasoning: int | None = None  # of completion_tokens, reasoning

    def take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        p, c, t = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
        if isinstance(p, int):
            self.prompt_tokens = p
        if isinstance(c, int):
            self.completion_tokens = c
        if isinstance(t, int):
            self.total_tokens = t
        elif self.prompt_tokens is not None:
            self.total_tokens = self.prompt_tokens + (self.completion_tokens or 0)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            if isinstance(details.get("cached_tokens"), int):
                self.cache_read = details["cached_tokens"]
            if isinstance(details.get("cache_write_tokens"), int):
                self.cache_write = details["cache_write_tokens"]
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
            self.reasoning = details["reasoning_tokens"]

    def cost(self, model: ModelSettings | None) -> Decimal:
        """What this usage costs at the model's prices."""
        return request_cost(model, self.prompt_tokens, self.completion_tokens, cache_read=self.cache_read,
                            cache_write=self.cache_write, reasoning=self.reasoning)


def with_estimate(usage: Usage, prompt_estimate: int, fragments: int) -> Usage:
    """Usage for a stream that ended without the upstream's figures (the client went away, or the
    upstream died): the prompt estimated from the request, the completion counted as one token per
    streamed content or tool-argument fragment (OpenAI-compatible servers stream one token a chunk)."""
    if usage.prompt_tokens is not None:
        return usage
    estimated = Usage()
    estimated.prompt_tokens = prompt_estimate
    estimated.completion_tokens = fragments
    estimated.total_tokens = prompt_estimate + fragments
    estimated.finish_reason = usage.finish_reason
    return estimated


def with_cost(raw: bytes, cost: Decimal) -> bytes:
    """Add ``"cost": <USD>`` as the first member of the body's top-level ``usage`` object, leaving
    every other byte as the upstream sent it; unchanged when there is no usage object."""
    at = raw.rfind(b'"usage":')
    if at < 0:
        return raw
    brace = raw.find(b"{", at + 8)
    if brace < 0 or raw[at + 8 : brace].strip():
        return raw
    rest = raw[brace + 1 :]
    number = format(cost.normalize(), "f").encode()
    sep = b"" if rest.lstrip().startswith(b"}") else b","
    return raw[: brace + 1] + b'"cost":' + number + sep + rest


def usage_from_body(raw: bytes) -> Usage | None:
    """Usage and the first choice's finish reason from a chat completion or embeddings body; None when
    the body is not a JSON object."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    usage = Usage()
    usage.take(doc.get("usage"))
    choices = doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        if isinstance(reason, str):
            usage.finish_reason = reason
    return usage


def _marked_events(block: bytes, sep: bytes, first: tuple[int, ...]) -> list[tuple[int, int]]:
    """(start, end) of each event in ``block`` (complete events joined by ``sep``) that carries one of
    ``_MARKERS``, in order, given where each is first (-1: nowhere); the other events cost nothing."""
    spans: set[tuple[int, int]] = set()
    for marker, at in zip(_MARKERS, first, strict=True):
        while at >= 0:
            start = block.rfind(sep, 0, at)
            start = 0 if start < 0 else start + len(sep)
            end = block.find(sep, at)
            end = len(block) if end < 0 else end
            spans.add((start, end))
            at = block.find(marker, end)
    return sorted(spans)


class StreamTap:
    """Watches an OpenAI chunk stream for usage, finish reason and the closing [DONE]."""

    __slots__ = ("done", "fragments", "price", "strip_usage", "usage")

    def __init__(self, *, strip_usage: bool, price: Callable[[Usage], Decimal] | None = None) -> None:
        self.price = price  # adds "cost" to the usage chunk the client sees
        self.usage = Usage()
        self.done = False
        self.fragments = 0  # content and tool-argument deltas relayed: about one token each
        self.strip_usage = strip_usage  # drop the usage-only chunk the client did not ask for

    def inspect(self, block: bytes, sep: bytes) -> bytes:
        """Look at a block of complete events; return what to forward (the same object when unchanged).

        Each search reads the whole block, so each is made once: an event is found from the marker
        positions already known, and ``[DONE]`` (a stream's last event) from the end."""
        fragments = block.count(b'"content":"') + block.count(b'"arguments":"')
        if not fragments:  # none written compactly: perhaps a serializer that puts a space after the colon
            fragments = block.count(b'"content": "') + block.count(b'"arguments": "')
        self.fragments += fragments
        # find(), not `in`: bytes.__contains__ first tries its operand as an int and builds an error
        if block.rfind(b"[DONE]") >= 0:
            self.done = True
        at = (block.find(_MARKERS[0]), block.find(_MARKERS[1]), block.find(_MARKERS[2]), block.find(_MARKERS[3]))
        if max(at) < 0:
            return block
        out: list[bytes] = []
        pos = 0  # block[pos:] is not copied to out yet
        for start, end in _marked_events(block, sep, at):
            action = self._read(block[start:end])
            if action == "drop":
                out.append(block[pos:start])
                pos = end + len(sep)
            elif action == "price" and self.price is not None:
                out += (block[pos:start], with_cost(block[start:end], self.price(self.usage)))
                pos = end
        if not out:
            return block
        out.append(block[pos:])
        return b"".join(out)

    def _read(self, event: bytes) -> str | None:
        """Take what the event says; "drop" for a usage chunk the client did not ask for, "price" for
        one it did."""
        data = event_data(event)
        if data is None or data == b"[DONE]":
            return None
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        choices = doc.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                    self.usage.finish_reason = choice["finish_reason"]
        usage = doc.get("usage")
        if isinstance(usage, dict):
            self.usage.take(usage)
            if self.strip_usage and not choices:
                return "drop"
            return "price"
        return None
