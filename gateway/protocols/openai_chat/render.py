"""ChatResponse -> OpenAI ``chat.completion`` JSON (plus OpenRouter's ``provider``,
``native_finish_reason``, ``message.reasoning`` and ``message.reasoning_details``).

Usage: detail figures (cached, cache write, reasoning) appear only when the provider reported them.
The three required OpenAI counts are rendered as 0 when only one of input/output is known; when
neither is known, ``usage`` is left out entirely.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from gateway.core.request import GEMINI_REASONING, Message, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Usage

Pricer = Callable[[Usage], Decimal]  # what a usage costs, in USD


def json_money(value: Decimal) -> orjson.Fragment:
    """A Decimal as an exact JSON number."""
    return orjson.Fragment(format(value.normalize(), "f").encode())


def render_usage(usage: Usage, price: Pricer | None = None) -> dict[str, Any] | None:
    """OpenAI ``usage`` object, or None when the provider reported nothing; ``cost`` when priced."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    prompt = usage.input_tokens or 0
    completion = usage.output_tokens or 0
    total = usage.total
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if total is not None else prompt + completion,
    }
    prompt_details: dict[str, int] = {}
    if usage.cache_read_tokens is not None:
        prompt_details["cached_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens is not None:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    if prompt_details:
        out["prompt_tokens_details"] = prompt_details
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if price is not None:
        out["cost"] = json_money(price(usage))
    return out


def render_reasoning_detail(part: ReasoningPart, index: int) -> dict[str, Any]:
    """One ``reasoning_details`` entry (OpenRouter shape) for a reasoning part."""
    if part.data is not None:
        return {"type": "reasoning.encrypted", "data": part.data, "format": part.format, "index": index}
    detail: dict[str, Any] = {"type": "reasoning.text", "text": part.text, "format": part.format, "index": index}
    if part.signature is not None:
        detail["signature"] = part.signature
    return detail


def render_tool_signature(call_id: str, signature: str, index: int) -> dict[str, Any]:
    """A Gemini functionCall thoughtSignature as a ``reasoning.encrypted`` entry tied to its call id."""
    return {"type": "reasoning.encrypted", "id": call_id, "data": signature, "format": GEMINI_REASONING, "index": index}


def render_message(message: Message) -> dict[str, Any]:
    """The assistant ``message`` object."""
    texts: list[str] = []
    reasoning: list[str] = []
    details: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ReasoningPart):
            reasoning.append(part.text)
            details.append(render_reasoning_detail(part, len(details)))
        elif isinstance(part, ToolCallPart):
            tool_calls.append(
                {"id": part.call_id, "type": "function", "function": {"name": part.name, "arguments": part.arguments}}
            )
            if part.signature is not None:
                details.append(render_tool_signature(part.call_id, part.signature, len(details)))
    out: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        out["tool_calls"] = tool_calls
    if details:
        out["reasoning"] = "".join(reasoning)
        out["reasoning_details"] = details
    return out


def render_chat_completion(resp: ChatResponse, price: Pricer | None = None) -> dict[str, Any]:
    """The full ``chat.completion`` object; ``price`` adds ``usage.cost`` (USD) when given."""
    out: dict[str, Any] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": resp.model,
        "provider": resp.provider,
        "choices": [
            {
                "index": 0,
                "message": render_message(resp.message),
                "logprobs": None,
                "finish_reason": resp.finish.reason.value,
                "native_finish_reason": resp.finish.native,
            }
        ],
    }
    usage = render_usage(resp.usage, price)
    if usage is not None:
        out["usage"] = usage
    return out


def render_chat_completion_bytes(resp: ChatResponse, price: Pricer | None = None) -> bytes:
    """``render_chat_completion`` serialized with orjson."""
    return orjson.dumps(render_chat_completion(resp, price))
