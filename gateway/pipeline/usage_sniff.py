"""Usage from any provider's own wire format, for the provider proxy (pure).

OpenAI ``usage{prompt_tokens, completion_tokens}``, Anthropic ``usage{input_tokens, output_tokens,
cache_creation_input_tokens, cache_read_input_tokens}`` (input in ``message_start``, cumulative
output in ``message_delta``) and Gemini ``usageMetadata{promptTokenCount, candidatesTokenCount,
thoughtsTokenCount}``, in a JSON body or in SSE events. The last figures seen win.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.pipeline.openai_usage import Usage
from gateway.sse import event_data, iter_events


class UsageSniffer:
    """Feed JSON bodies or complete SSE blocks; read ``usage``."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = Usage()

    def body(self, raw: bytes) -> None:
        try:
            self._take(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return

    def block(self, block: bytes, sep: bytes) -> None:
        if block.find(b"sage") < 0:  # "usage" or "usageMetadata"
            return
        for event in iter_events(block, sep):
            data = event_data(event)
            if data is None or data.find(b"sage") < 0:
                continue
            try:
                self._take(orjson.loads(data))
            except orjson.JSONDecodeError:
                continue

    def _take(self, doc: Any) -> None:
        if isinstance(doc, list):  # Gemini's JSON-array stream
            for item in doc:
                self._take(item)
            return
        if not isinstance(doc, dict):
            return
        message = doc.get("message")
        if isinstance(message, dict):  # Anthropic message_start
            self._take(message)
        usage = doc.get("usage")
        if isinstance(usage, dict):
            if "prompt_tokens" in usage or "completion_tokens" in usage:
                self.usage.take(usage)
            else:
                self._anthropic(usage)
        meta = doc.get("usageMetadata")
        if isinstance(meta, dict):
            prompt = meta.get("promptTokenCount")
            out = (meta.get("candidatesTokenCount") or 0) + (meta.get("thoughtsTokenCount") or 0)
            self.usage.take({"prompt_tokens": prompt, "completion_tokens": out})
            if isinstance(meta.get("cachedContentTokenCount"), int):
                self.usage.cache_read = meta["cachedContentTokenCount"]
            if isinstance(meta.get("thoughtsTokenCount"), int):
                self.usage.reasoning = meta["thoughtsTokenCount"]

    def _anthropic(self, usage: dict[str, Any]) -> None:
        u = self.usage
        if isinstance(usage.get("input_tokens"), int):
            u.cache_write = int(usage.get("cache_creation_input_tokens") or 0)
            u.cache_read = int(usage.get("cache_read_input_tokens") or 0)
            u.prompt_tokens = usage["input_tokens"] + u.cache_write + u.cache_read
        if isinstance(usage.get("output_tokens"), int):
            u.completion_tokens = usage["output_tokens"]
        if u.prompt_tokens is not None or u.completion_tokens is not None:
            u.total_tokens = (u.prompt_tokens or 0) + (u.completion_tokens or 0)
