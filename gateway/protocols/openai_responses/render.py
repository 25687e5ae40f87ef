"""ChatResponse -> OpenAI Responses ``response`` object JSON (plus OpenRouter's ``provider``).

@see https://platform.openai.com/docs/api-reference/responses/object

Decisions:

* ``status``: stop and tool_calls -> ``completed``; length -> ``incomplete`` with
  ``incomplete_details.reason`` ``max_output_tokens``; content_filter -> ``incomplete`` with reason
  ``content_filter``; error -> ``failed`` with ``error.code`` ``server_error``.
* ``output``: the message's parts in order, consecutive ones of a kind folded into one item: reasoning
  text -> a ``reasoning`` item (one ``summary_text``; redacted reasoning and signatures are left out),
  text -> a ``message`` item (one ``output_text``), each tool call -> a ``function_call`` item. Item ids:
  ``msg_<id>`` / ``rs_<id>`` (``<id>`` is the response id without its ``resp_`` prefix; a second message
  or reasoning item in one response gets ``_1``, ``_2``, ...) and ``fc_<call_id>``. When the response
  is incomplete its last item is ``incomplete`` too.
* ``usage``: the Responses shape; detail figures the provider did not report are 0 (the SDK requires
  them); ``cost`` (exact JSON number, USD) when priced. Left null when neither input nor output tokens
  are known.
* Request settings are echoed as the OpenAI API does: ``tools`` and ``tool_choice`` as given,
  ``store: false``, ``previous_response_id: null``, ``background: false``, defaults where not given.
  ``output_text`` is not a wire field (the SDKs compute it) and is not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson

from gateway.core.request import Message, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage
from gateway.protocols.openai_chat.render import Pricer, json_money

FinalStatus = Literal["completed", "incomplete", "failed"]
Status = Literal["in_progress", "completed", "incomplete", "failed"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]
ItemKind = Literal["message", "reasoning", "function_call"]

_INCOMPLETE = {FinishReason.LENGTH: "max_output_tokens", FinishReason.CONTENT_FILTER: "content_filter"}


def response_id(call_id: str) -> str:
    """The Responses id for a gateway call id: ``resp_<call id>`` (kept when it already starts so)."""
    return call_id if call_id.startswith("resp_") else f"resp_{call_id}"


def item_id(kind: ItemKind, id: str, n: int = 0) -> str:
    """The id of the ``n``-th message or reasoning item of response ``id`` (``msg_``/``rs_`` + id)."""
    base = id.removeprefix("resp_")
    prefix = "msg_" if kind == "message" else "rs_"
    return f"{prefix}{base}" if n == 0 else f"{prefix}{base}_{n}"


def call_item_id(call_id: str) -> str:
    """The item id of a function_call item."""
    return f"fc_{call_id}"


def finish_status(finish: Finish) -> tuple[FinalStatus, dict[str, Any] | None, dict[str, Any] | None]:
    """(status, incomplete_details, error) for a canonical finish."""
    reason = _INCOMPLETE.get(finish.reason)
    if reason is not None:
        return "incomplete", {"reason": reason}, None
    if finish.reason is FinishReason.ERROR:
        detail = f" ({finish.native})" if finish.native else ""
        message = f"the provider ended the response with an error{detail}"
        return "failed", None, {"code": "server_error", "message": message}
    return "completed", None, None


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def summary_part(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def message_item(id: str, text: str | None, status: ItemStatus) -> dict[str, Any]:
    """An assistant ``message`` item; ``text`` None gives empty content (an item just opened)."""
    content = [] if text is None else [output_text_part(text)]
    return {"type": "message", "id": id, "status": status, "role": "assistant", "content": content}


def reasoning_item(id: str, text: str | None) -> dict[str, Any]:
    """A ``reasoning`` item with one summary text; ``text`` None gives an empty summary."""
    return {"type": "reasoning", "id": id, "summary": [] if text is None else [summary_part(text)]}


def function_call_item(call_id: str, name: str, arguments: str, status: ItemStatus) -> dict[str, Any]:
    return {
        "type": "function_call", "id": call_item_id(call_id), "call_id": call_id, "name": name,
        "arguments": arguments, "status": status,
    }


def render_output(message: Message, *, id: str, incomplete: bool = False) -> list[dict[str, Any]]:
    """The ``output`` items for the assistant message (see module docstring)."""
    groups: list[tuple[ItemKind, list[str] | ToolCallPart]] = []
    for part in message.parts:
        if isinstance(part, ToolCallPart):
            groups.append(("function_call", part))
            continue
        if isinstance(part, TextPart):
            kind: ItemKind = "message"
        elif isinstance(part, ReasoningPart):
            kind = "reasoning"
        else:
            continue
        if not part.text:
            continue
        last = groups[-1] if groups else None
        if last is not None and last[0] == kind and isinstance(last[1], list):
            last[1].append(part.text)
        else:
            groups.append((kind, [part.text]))
    items: list[dict[str, Any]] = []
    counts = {"message": 0, "reasoning": 0}
    for i, (kind, content) in enumerate(groups):
        status: ItemStatus = "incomplete" if incomplete and i == len(groups) - 1 else "completed"
        if isinstance(content, ToolCallPart):
            items.append(function_call_item(content.call_id, content.name, content.arguments, status))
            continue
        n = counts[kind]
        counts[kind] = n + 1
        text = "".join(content)
        if kind == "message":
            items.append(message_item(item_id(kind, id, n), text, status))
        else:
            items.append(reasoning_item(item_id(kind, id, n), text))
    return items


def render_usage(usage: Usage, price: Pricer | None = None) -> dict[str, Any] | None:
    """The Responses ``usage`` object, or None when the provider reported nothing; ``cost`` when priced."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    prompt = usage.input_tokens or 0
    completion = usage.output_tokens or 0
    total = usage.total
    out: dict[str, Any] = {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens or 0,
            "cache_write_tokens": usage.cache_write_tokens or 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": total if total is not None else prompt + completion,
    }
    if price is not None:
        out["cost"] = json_money(price(usage))
    return out


def response_object(
    *,
    id: str,
    created_at: int,
    model: str,
    provider: str,
    request: Mapping[str, Any],
    status: Status,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete_details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object, with the request's settings echoed (also used by the stream events)."""
    reasoning = request.get("reasoning") or {}
    text = request.get("text") or {}
    parallel = request.get("parallel_tool_calls")
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "provider": provider,
        "output": output,
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": False,
        "temperature": request.get("temperature"),
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation") or "disabled",
        "usage": usage,
        "user": request.get("user"),
        "safety_identifier": request.get("safety_identifier"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "metadata": request.get("metadata") or {},
    }


def render_response(
    resp: ChatResponse, *, id: str, created_at: int, request: Mapping[str, Any], price: Pricer | None = None
) -> dict[str, Any]:
    """The full ``response`` object; ``request`` is the caller's body (echoed settings), ``price`` adds
    ``usage.cost`` (USD) when given."""
    status, incomplete, error = finish_status(resp.finish)
    return response_object(
        id=id,
        created_at=created_at,
        model=resp.model,
        provider=resp.provider,
        request=request,
        status=status,
        output=render_output(resp.message, id=id, incomplete=status == "incomplete"),
        usage=render_usage(resp.usage, price),
        incomplete_details=incomplete,
        error=error,
    )


def render_response_bytes(
    resp: ChatResponse, *, id: str, created_at: int, request: Mapping[str, Any], price: Pricer | None = None
) -> bytes:
    """``render_response`` serialized with orjson."""
    return orjson.dumps(render_response(resp, id=id, created_at=created_at, request=request, price=price))
