"""ChatRequest -> Anthropic Messages request body.

Choices (documented here, decided once):

* ``max_tokens`` is required by Anthropic. When the caller gives none we send the model's output limit
  from the catalog (``BuildParams.max_output_tokens``), else ``DEFAULT_MAX_TOKENS`` = 4096.
* ``response_format: json_schema`` uses Anthropic's native structured output,
  ``output_config: {"format": {"type": "json_schema", "schema": ...}}`` — not the forced-tool trick,
  which breaks with extended thinking and with the caller's own tools and needs response rewriting.
  ``json_object`` has no native equivalent: an instruction to answer with one JSON object is appended
  to the system prompt.
* System (and developer) messages are hoisted, in order, into ``system``; consecutive turns of the same
  role (tool results, or tool results followed by user text) are merged into one turn.
* A trailing assistant message is a prefill; its trailing whitespace is stripped (Anthropic rejects it).
* ``reasoning`` -> ``thinking: {type: "enabled", budget_tokens}``: ``reasoning.max_tokens``, else
  ``effort`` as a share of max_tokens (OpenRouter's ratios: minimal 10 %, low 20 %, medium 50 %, high 80 %,
  xhigh/max 95 %), at least 1024. If the budget does not fit under max_tokens, max_tokens is raised to
  budget + max_tokens (warning "coerced"). With thinking on, temperature/top_k, top_p < 0.95 and forced
  tool choice are incompatible: they are dropped / turned into "auto" with a warning.
* Thinking blocks are sent back only when they carry an Anthropic signature (unsigned or other
  providers' reasoning is dropped: Anthropic rejects it).
* ``user`` -> ``metadata.user_id``; ``cache_control`` on parts/tools and top level passed through;
  ``extra["anthropic"]`` merged into the body last.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.request import (
    ANTHROPIC_REASONING,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    NamedToolChoice,
    Reasoning,
    ReasoningPart,
    TextPart,
    ToolCallPart,
)
from gateway.core.response import CallWarning
from gateway.errors import InvalidRequest
from gateway.providers.base import BuildParams, BuiltRequest, UpstreamRequest
from gateway.providers.capabilities import check_params

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
ANTHROPIC_VERSION = "2023-06-01"
EFFORT_SHARE = {"minimal": 0.1, "low": 0.2, "medium": 0.5, "high": 0.8, "xhigh": 0.95, "max": 0.95}
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

Block = dict[str, Any]


def _with_cache(block: Block, cache: Any) -> Block:
    if cache is not None:
        block["cache_control"] = dict(cache)
    return block


def render_content_part(part: ContentPart) -> Block | None:
    """A text or image part as an Anthropic content block (None for empty text)."""
    if isinstance(part, TextPart):
        if not part.text:
            return None
        return _with_cache({"type": "text", "text": part.text}, part.cache_control)
    if part.data is not None:
        source = {"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
    else:
        source = {"type": "url", "url": part.url or ""}
    return _with_cache({"type": "image", "source": source}, part.cache_control)


def _tool_input(part: ToolCallPart, path: str) -> Any:
    if not part.arguments.strip():
        return {}
    try:
        value = orjson.loads(part.arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{path}: tool call arguments are not valid JSON", param=path) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path}: tool call arguments must be a JSON object", param=path)
    return value


def _render_reasoning(part: ReasoningPart) -> Block | None:
    if part.format not in (None, ANTHROPIC_REASONING):
        return None
    if part.data is not None:
        return {"type": "redacted_thinking", "data": part.data}
    if part.signature is None:
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _render_blocks(msg: Message, path: str) -> list[Block]:
    blocks: list[Block] = []
    for part in msg.parts:
        block: Block | None
        if isinstance(part, TextPart | ImagePart):
            block = render_content_part(part)
        elif isinstance(part, ReasoningPart):
            block = _render_reasoning(part)
        elif isinstance(part, ToolCallPart):
            block = {"type": "tool_use", "id": part.call_id, "name": part.name, "input": _tool_input(part, path)}
        else:
            content = [b for b in (render_content_part(c) for c in part.content) if b is not None]
            block = {"type": "tool_result", "tool_use_id": part.call_id}
            if len(content) == 1 and content[0]["type"] == "text" and "cache_control" not in content[0]:
                block["content"] = content[0]["text"]
            elif content:
                block["content"] = content
            if part.is_error:
                block["is_error"] = True
        if block is not None:
            blocks.append(block)
    return blocks


def render_messages(messages: tuple[Message, ...]) -> tuple[list[Block], list[dict[str, Any]]]:
    """(system blocks, messages): system hoisted, same-role turns merged, prefill whitespace stripped."""
    system: list[Block] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if msg.role == "system":
            system.extend(b for b in _render_blocks(msg, f"messages[{i}]") if b["type"] == "text")
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _render_blocks(msg, f"messages[{i}].tool_calls")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[-1]["role"] == "assistant":
        last = turns[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
            if not last["text"]:
                turns[-1]["content"].pop()
                if not turns[-1]["content"]:
                    turns.pop()
    return system, turns


def thinking_budget(reasoning: Reasoning, max_tokens: int) -> int:
    """Budget tokens for a reasoning request (at least 1024)."""
    if reasoning.max_tokens is not None:
        budget = reasoning.max_tokens
    else:
        budget = int(max_tokens * EFFORT_SHARE.get(reasoning.effort or "medium", 0.5))
    return max(MIN_THINKING_BUDGET, budget)


def render_request(req: ChatRequest, params: BuildParams) -> tuple[dict[str, Any], list[CallWarning]]:
    """The Anthropic body and warnings."""
    caps, dropped = check_params(req, "anthropic")
    warnings = list(dropped)
    s = req.sampling
    max_tokens = s.max_output_tokens or params.max_output_tokens or DEFAULT_MAX_TOKENS
    system, messages = render_messages(req.messages)
    body: dict[str, Any] = {"model": params.upstream_model, "max_tokens": max_tokens}

    thinking = req.reasoning is not None and req.reasoning.active and "reasoning" in caps
    if thinking and req.reasoning is not None:
        budget = thinking_budget(req.reasoning, max_tokens)
        if budget >= max_tokens:
            body["max_tokens"] = max_tokens = budget + max_tokens
            warnings.append(CallWarning(code="coerced", path="max_tokens", detail="raised above the thinking budget"))
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}

    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    if system:
        plain = all(set(b) == {"type", "text"} for b in system)
        body["system"] = "\n\n".join(b["text"] for b in system) if plain else system
    body["messages"] = messages

    if s.temperature is not None:
        if thinking and s.temperature != 1:
            warnings.append(CallWarning(code="dropped", path="temperature", detail="not allowed with thinking"))
        else:
            body["temperature"] = s.temperature
    if s.top_p is not None:
        if thinking and s.top_p < 0.95:
            warnings.append(CallWarning(code="dropped", path="top_p", detail="must be >= 0.95 with thinking"))
        else:
            body["top_p"] = s.top_p
    if s.top_k is not None:
        if thinking:
            warnings.append(CallWarning(code="dropped", path="top_k", detail="not allowed with thinking"))
        else:
            body["top_k"] = s.top_k
    if s.stop:
        body["stop_sequences"] = list(s.stop)

    if req.tools:
        tools = []
        for tool in req.tools:
            spec: Block = {"name": tool.name}
            if tool.description:
                spec["description"] = tool.description
            spec["input_schema"] = dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
            if tool.strict:
                spec["strict"] = True
            tools.append(_with_cache(spec, tool.cache_control))
        body["tools"] = tools
        choice = _tool_choice(req, thinking, warnings)
        if choice is not None:
            body["tool_choice"] = choice

    if fmt is not None and fmt.type == "json_schema" and fmt.schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": dict(fmt.schema)}}
    if req.user is not None:
        body["metadata"] = {"user_id": req.user}
    if req.cache_control is not None:
        body["cache_control"] = dict(req.cache_control)
    if req.stream:
        body["stream"] = True
    body.update(req.extra.get("anthropic", {}))
    return body, warnings


def _tool_choice(req: ChatRequest, thinking: bool, warnings: list[CallWarning]) -> Block | None:
    choice = req.tool_choice
    out: Block | None
    if thinking and (choice == "required" or isinstance(choice, NamedToolChoice)):
        detail = "forced tool use is not allowed with thinking"
        warnings.append(CallWarning(code="coerced", path="tool_choice", detail=detail))
        choice = "auto"
    if isinstance(choice, NamedToolChoice):
        out = {"type": "tool", "name": choice.name}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "auto" or req.parallel_tool_calls is False:
        out = {"type": "auto"}
    else:
        return None
    if req.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    return out


def build_request(req: ChatRequest, params: BuildParams) -> BuiltRequest:
    """``POST /v1/messages`` for ``req`` (auth header not included)."""
    body, warnings = render_request(req, params)
    headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
    if req.stream:
        headers["accept"] = "text/event-stream"
    upstream = UpstreamRequest(method="POST", path="/v1/messages", headers=headers, body=orjson.dumps(body),
                               stream=req.stream)
    return BuiltRequest(request=upstream, warnings=tuple(warnings))
