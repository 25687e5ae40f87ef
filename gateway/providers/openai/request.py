"""ChatRequest -> OpenAI ``chat.completions`` request body.

@see https://platform.openai.com/docs/api-reference/chat/create

Choices (documented here, decided once):

* Path ``/chat/completions``, relative to a base_url that includes ``/v1``.
* ``max_tokens`` carries the output limit: every OpenAI-compatible server accepts it. When the request
  asks for reasoning, ``max_completion_tokens`` is sent instead (OpenAI's reasoning models reject
  ``max_tokens``). An OpenAI reasoning model called *without* a reasoning setting still rejects
  ``max_tokens``; a per-provider setting would be the fix (not model-name sniffing).
* System messages keep role ``system`` (``developer`` is accepted by OpenAI only).
* Text-only content with a single part is sent as a string, otherwise as parts (``text``,
  ``image_url`` with a ``data:`` URL for base64 images). ``cache_control`` on parts or tools is not an
  OpenAI field: dropped with one warning.
* Assistant turns: text as ``content`` (null when there is none and there are tool calls),
  ``tool_calls`` with the raw arguments text, and reasoning as OpenRouter's ``reasoning_details``
  (plus ``reasoning`` text), the shape OpenAI-compatible routers accept back.
* Each tool result becomes its own ``role: "tool"`` message. Tool messages take text only: images in
  tool results are dropped with a warning, and so is ``is_error`` (OpenAI has no such flag).
* ``reasoning``: ``effort`` -> ``reasoning_effort`` ("max" becomes "xhigh", warning); a token budget
  without an effort becomes the effort for its share of max_tokens (>= 80 % high, >= 50 % medium, else
  low; warning "coerced"); ``enabled: false`` alone sends nothing.
* ``parallel_tool_calls`` is sent only with tools (OpenAI rejects it otherwise).
* Streaming always sets ``stream_options.include_usage`` (usage is needed for accounting).
* ``extra["openai"]`` (logit_bias, n, ...) is merged into the body last.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from gateway.core.request import (
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    NamedToolChoice,
    Reasoning,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from gateway.core.response import CallWarning
from gateway.protocols.openai_chat.render import render_reasoning_detail, render_tool_signature
from gateway.providers.base import BuildParams, BuiltRequest, UpstreamRequest
from gateway.providers.capabilities import check_params

PATH = "/chat/completions"
Body = dict[str, Any]
WarningCode = Literal["unsupported", "clamped", "coerced", "dropped"]


class _Builder:
    """One request's rendering: collects warnings."""

    __slots__ = ("cache_dropped", "warnings")

    def __init__(self, warnings: list[CallWarning]) -> None:
        self.warnings = warnings
        self.cache_dropped = False

    def warn(self, code: WarningCode, path: str, detail: str) -> None:
        self.warnings.append(CallWarning(code=code, path=path, detail=detail))

    def part(self, part: ContentPart) -> Body:
        if part.cache_control is not None:
            self.cache_dropped = True
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        url = f"data:{part.media_type or 'image/png'};base64,{part.data}" if part.data is not None else part.url
        image: Body = {"url": url or ""}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}

    def content(self, parts: tuple[ContentPart, ...]) -> str | list[Body]:
        rendered = [self.part(p) for p in parts]
        if len(parts) == 1 and isinstance(parts[0], TextPart):
            return parts[0].text
        if not parts:
            return ""
        return rendered

    def message(self, msg: Message, path: str) -> list[Body]:
        if msg.role == "tool":
            return [self.tool_result(p, path) for p in msg.parts if isinstance(p, ToolResultPart)]
        if msg.role == "assistant":
            return [self.assistant(msg)]
        parts = tuple(p for p in msg.parts if isinstance(p, TextPart | ImagePart))
        out: Body = {"role": msg.role, "content": self.content(parts)}
        if msg.name is not None:
            out["name"] = msg.name
        return [out]

    def tool_result(self, part: ToolResultPart, path: str) -> Body:
        texts = [p for p in part.content if isinstance(p, TextPart)]
        if len(texts) != len(part.content):
            self.warn("dropped", f"{path}.content", "OpenAI tool messages take text only; images dropped")
        if part.is_error:
            self.warn("dropped", f"{path}.is_error", "OpenAI tool messages have no error flag")
        return {"role": "tool", "tool_call_id": part.call_id, "content": self.content(tuple(texts))}

    def assistant(self, msg: Message) -> Body:
        texts: list[str] = []
        calls: list[Body] = []
        details: list[Body] = []
        reasoning: list[str] = []
        for part in msg.parts:
            if isinstance(part, TextPart):
                if part.cache_control is not None:
                    self.cache_dropped = True
                texts.append(part.text)
            elif isinstance(part, ToolCallPart):
                calls.append({"id": part.call_id, "type": "function",
                              "function": {"name": part.name, "arguments": part.arguments}})
                if part.signature is not None:
                    details.append(render_tool_signature(part.call_id, part.signature, len(details)))
            elif isinstance(part, ReasoningPart):
                reasoning.append(part.text)
                details.append(render_reasoning_detail(part, len(details)))
        out: Body = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if msg.name is not None:
            out["name"] = msg.name
        if calls:
            out["tool_calls"] = calls
        if details:
            if reasoning:
                out["reasoning"] = "".join(reasoning)
            out["reasoning_details"] = details
        return out


def _effort(reasoning: Reasoning, max_tokens: int | None, b: _Builder) -> str | None:
    if reasoning.effort is not None:
        if reasoning.effort == "max":
            b.warn("coerced", "reasoning.effort", "max sent as xhigh")
            return "xhigh"
        return reasoning.effort
    if not reasoning.active:
        return None
    if reasoning.max_tokens is None or not max_tokens:
        return "medium"
    share = reasoning.max_tokens / max_tokens
    effort = "high" if share >= 0.8 else "medium" if share >= 0.5 else "low"
    b.warn("coerced", "reasoning.max_tokens", f"token budget sent as reasoning_effort {effort}")
    return effort


def render_request(req: ChatRequest, params: BuildParams) -> tuple[Body, list[CallWarning]]:
    """The chat.completions body and warnings."""
    caps, dropped = check_params(req, "openai")
    warnings = list(dropped)
    b = _Builder(warnings)
    messages: list[Body] = []
    for i, msg in enumerate(req.messages):
        messages.extend(b.message(msg, f"messages[{i}]"))
    body: Body = {"model": params.upstream_model, "messages": messages}
    s = req.sampling
    effort = _effort(req.reasoning, s.max_output_tokens, b) if req.reasoning is not None else None
    if effort is not None:
        body["reasoning_effort"] = effort
    if s.max_output_tokens is not None:
        body["max_completion_tokens" if effort is not None else "max_tokens"] = s.max_output_tokens
    for key, value in (
        ("temperature", s.temperature), ("top_p", s.top_p), ("seed", s.seed),
        ("presence_penalty", s.presence_penalty), ("frequency_penalty", s.frequency_penalty),
    ):
        if value is not None:
            body[key] = value
    if s.stop:
        body["stop"] = list(s.stop)
    if req.tools:
        tools = []
        for tool in req.tools:
            fn: Body = {"name": tool.name}
            if tool.description:
                fn["description"] = tool.description
            fn["parameters"] = dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
            if tool.strict is not None:
                fn["strict"] = tool.strict
            if tool.cache_control is not None:
                b.cache_dropped = True
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.tool_choice is not None:
        choice = req.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if isinstance(choice, NamedToolChoice) else choice
        )
    fmt = req.response_format
    if fmt is not None and "response_format" in caps:
        if fmt.type == "json_schema":
            spec: Body = {"name": fmt.name or "response", "schema": dict(fmt.schema or {"type": "object"})}
            if fmt.description is not None:
                spec["description"] = fmt.description
            if fmt.strict is not None:
                spec["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        else:
            body["response_format"] = {"type": fmt.type}
    if req.user is not None:
        body["user"] = req.user
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if b.cache_dropped:
        b.warn("dropped", "cache_control", "OpenAI caches prompts automatically; cache_control is not sent")
    body.update(req.extra.get("openai", {}))
    return body, warnings


def build_request(req: ChatRequest, params: BuildParams) -> BuiltRequest:
    """``POST /chat/completions`` for ``req`` (auth header not included)."""
    body, warnings = render_request(req, params)
    headers = {"content-type": "application/json"}
    if req.stream:
        headers["accept"] = "text/event-stream"
    upstream = UpstreamRequest(method="POST", path=PATH, headers=headers, body=orjson.dumps(body), stream=req.stream)
    return BuiltRequest(request=upstream, warnings=tuple(warnings))
