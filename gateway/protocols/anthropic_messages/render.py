"""ChatResponse -> Anthropic ``Message`` JSON.

@see https://docs.anthropic.com/en/api/messages (response shape, stop_reason, usage)

Decisions:

* ``id`` is ``msg_<call id>`` (kept as is when the call id already starts with ``msg_``); ``model`` is
  the name the client asked for.
* ``stop_reason``: an Anthropic upstream's own value (``Finish.native``) is kept; otherwise stop ->
  ``end_turn``, length -> ``max_tokens``, tool_calls -> ``tool_use``, content_filter -> ``refusal``,
  error -> ``end_turn``. A "stop" whose message holds tool calls is ``tool_use`` (some
  OpenAI-compatible servers say "stop" there). ``stop_sequence`` is the matched sequence only when it
  is known: the upstream said ``stop_sequence`` and the request had exactly one stop sequence;
  otherwise null (the canonical model does not carry the matched string).
* ``tool_use.input``: the arguments JSON object. Empty arguments -> ``{}``. Arguments that are not a
  JSON object (truncated at max_tokens, or invalid) -> ``{"_raw_arguments": "<text>"}``: nothing is lost,
  and a client validating against the tool schema fails visibly instead of calling the tool with ``{}``.
* Reasoning: Anthropic-format (or unlabelled) thinking keeps its signature; reasoning from other
  providers is shown as a ``thinking`` block with ``signature: ""`` (the parser reads "" back as
  unsigned, so it is never sent to Anthropic as if signed). Redacted thinking -> ``redacted_thinking``
  only for Anthropic-format data; other providers' encrypted reasoning is left out.
* ``usage``: Anthropic's ``input_tokens`` excludes cache reads and writes (the canonical input includes
  them), so they are subtracted. Figures the upstream did not report are rendered as 0, not null: the
  real API always sends integers and clients add them up (the SDK types would allow null).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.request import ANTHROPIC_REASONING, Message, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage

# stop_reason values Anthropic defines; a native value in this set is passed through unchanged.
STOP_REASONS = frozenset({
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded",
})
_BY_REASON = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.ERROR: "end_turn",
}
RAW_ARGUMENTS_KEY = "_raw_arguments"


def message_id(call_id: str) -> str:
    """The Anthropic message id for a gateway call id."""
    return call_id if call_id.startswith("msg_") else f"msg_{call_id}"


def map_stop(finish: Finish, *, tool_calls: bool, stop: tuple[str, ...]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a canonical finish."""
    native = finish.native
    if native in STOP_REASONS and native is not None:
        reason = native
    elif finish.reason is FinishReason.STOP and tool_calls:
        reason = "tool_use"
    else:
        reason = _BY_REASON[finish.reason]
    sequence = stop[0] if reason == "stop_sequence" and len(stop) == 1 else None
    return reason, sequence


def tool_input(arguments: str) -> dict[str, Any]:
    """The ``input`` object for a tool call's raw arguments text (see module docstring)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {RAW_ARGUMENTS_KEY: arguments}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: arguments}


def render_usage(usage: Usage) -> dict[str, int]:
    """The four Anthropic usage counts (input excludes cache reads and writes)."""
    read = usage.cache_read_tokens or 0
    write = usage.cache_write_tokens or 0
    fresh = max(0, (usage.input_tokens or 0) - read - write)
    return {
        "input_tokens": fresh,
        "output_tokens": usage.output_tokens or 0,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    }


def anthropic_signature(part_format: str | None, signature: str | None) -> str:
    """The signature to show: only Anthropic's (or unlabelled) ones; "" otherwise."""
    if signature is None or part_format not in (None, ANTHROPIC_REASONING):
        return ""
    return signature


def render_reasoning(part: ReasoningPart) -> dict[str, Any] | None:
    """A thinking or redacted_thinking block (None for other providers' encrypted reasoning)."""
    if part.data is not None:
        if part.format not in (None, ANTHROPIC_REASONING):
            return None
        return {"type": "redacted_thinking", "data": part.data}
    return {"type": "thinking", "thinking": part.text, "signature": anthropic_signature(part.format, part.signature)}


def render_content(message: Message) -> list[dict[str, Any]]:
    """The response content blocks, in order (empty text dropped)."""
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCallPart):
            blocks.append({"type": "tool_use", "id": part.call_id, "name": part.name,
                           "input": tool_input(part.arguments)})
        elif isinstance(part, ReasoningPart):
            block = render_reasoning(part)
            if block is not None:
                blocks.append(block)
    return blocks


def render_message(resp: ChatResponse, *, model: str, stop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``type: "message"`` object; ``model`` is the name the client asked for, ``stop`` its stop_sequences."""
    tool_calls = any(isinstance(p, ToolCallPart) for p in resp.message.parts)
    reason, sequence = map_stop(resp.finish, tool_calls=tool_calls, stop=stop)
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": render_content(resp.message),
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": render_usage(resp.usage),
    }


def render_message_bytes(resp: ChatResponse, *, model: str, stop: tuple[str, ...] = ()) -> bytes:
    """``render_message`` serialized with orjson."""
    return orjson.dumps(render_message(resp, model=model, stop=stop))
