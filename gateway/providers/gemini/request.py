"""ChatRequest -> Gemini generateContent request body.

Choices:

* System messages -> ``systemInstruction``; assistant -> role ``model``; tool results -> a ``user`` turn
  of ``functionResponse`` parts (consecutive same-role turns merged, so parallel results share a turn).
  A tool result whose text is a JSON object is sent as that object, otherwise as ``{"content": text}``.
* Tool call ids do not exist in Gemini; ``functionResponse.name`` is looked up from the earlier call
  with the same id.
* ``thoughtSignature``s are sent back on the part they came with: on functionCall parts from
  ``ToolCallPart.signature``; a signature-only reasoning part (Gemini format) is attached to the next
  part of the same turn. Reasoning text (thought summaries) and other providers' reasoning are not sent.
* ``response_format`` json_schema -> ``responseMimeType: application/json`` + ``responseSchema``
  (converted, see schema.py); json_object -> ``responseMimeType`` only.
* ``reasoning`` -> ``thinkingConfig``: ``thinkingBudget`` = reasoning.max_tokens, else by effort
  (minimal 512, low 1024, medium 8192, high/xhigh/max 24576; "none" -> 0), ``includeThoughts`` unless
  ``exclude``.
* ``max_tokens`` is optional for Gemini and is sent only when the caller gave one.
* ``extra["gemini"]`` (e.g. safetySettings) is merged into the body last.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.request import (
    GEMINI_REASONING,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    NamedToolChoice,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from gateway.core.response import CallWarning
from gateway.errors import InvalidRequest
from gateway.providers.base import BuildParams, BuiltRequest, UpstreamRequest
from gateway.providers.capabilities import check_params
from gateway.providers.gemini.schema import to_gemini_schema

THINKING_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576, "max": 24576}

GPart = dict[str, Any]


def render_content_part(part: ContentPart) -> GPart | None:
    """Text -> {"text"}, base64 image -> inlineData, URL image -> fileData (None for empty text)."""
    if isinstance(part, TextPart):
        return {"text": part.text} if part.text else None
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type or "image/png", "data": part.data}}
    return {"fileData": {"mimeType": part.media_type or "image/jpeg", "fileUri": part.url or ""}}


def _args(part: ToolCallPart, path: str) -> Any:
    if not part.arguments.strip():
        return {}
    try:
        value = orjson.loads(part.arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{path}: tool call arguments are not valid JSON", param=path) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path}: tool call arguments must be a JSON object", param=path)
    return value


def _tool_response(part: ToolResultPart) -> dict[str, Any]:
    text = "".join(c.text for c in part.content if isinstance(c, TextPart))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"content": text}


def _render_parts(msg: Message, names: dict[str, str], path: str) -> list[GPart]:
    parts: list[GPart] = []
    pending_sig: str | None = None
    for part in msg.parts:
        out: GPart | None
        if isinstance(part, ReasoningPart):
            if part.format == GEMINI_REASONING and part.signature:
                pending_sig = part.signature
            continue
        if isinstance(part, TextPart | ImagePart):
            out = render_content_part(part)
        elif isinstance(part, ToolCallPart):
            names[part.call_id] = part.name
            out = {"functionCall": {"name": part.name, "args": _args(part, path)}}
            if part.signature is not None:
                out["thoughtSignature"] = part.signature
        else:
            name = part.name or names.get(part.call_id) or part.call_id
            out = {"functionResponse": {"name": name, "response": _tool_response(part)}}
        if out is None:
            continue
        if pending_sig is not None and "thoughtSignature" not in out:
            out["thoughtSignature"] = pending_sig
        pending_sig = None
        parts.append(out)
    if pending_sig is not None:
        parts.append({"text": "", "thoughtSignature": pending_sig})
    return parts


def render_contents(messages: tuple[Message, ...]) -> tuple[list[GPart], list[dict[str, Any]]]:
    """(systemInstruction parts, contents)."""
    system: list[GPart] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        if msg.role == "system":
            system.extend(p for p in _render_parts(msg, names, f"messages[{i}]") if "text" in p)
            continue
        role = "model" if msg.role == "assistant" else "user"
        parts = _render_parts(msg, names, f"messages[{i}].tool_calls")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def render_request(req: ChatRequest, params: BuildParams) -> tuple[dict[str, Any], list[CallWarning]]:
    """The Gemini body and warnings."""
    _, dropped = check_params(req, "gemini")
    warnings = list(dropped)
    system, contents = render_contents(req.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if req.tools:
        decls = []
        for tool in req.tools:
            decl: dict[str, Any] = {"name": tool.name}
            if tool.description:
                decl["description"] = tool.description
            if tool.parameters and tool.parameters.get("properties"):
                decl["parameters"] = to_gemini_schema(tool.parameters)
            decls.append(decl)
        body["tools"] = [{"functionDeclarations": decls}]
        config = _tool_config(req)
        if config is not None:
            body["toolConfig"] = {"functionCallingConfig": config}
    gen = _generation_config(req)
    if gen:
        body["generationConfig"] = gen
    body.update(req.extra.get("gemini", {}))
    return body, warnings


def _tool_config(req: ChatRequest) -> dict[str, Any] | None:
    choice = req.tool_choice
    if isinstance(choice, NamedToolChoice):
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice or "")
    return {"mode": mode} if mode else None


def _generation_config(req: ChatRequest) -> dict[str, Any]:
    s = req.sampling
    gen: dict[str, Any] = {}
    pairs: tuple[tuple[str, Any], ...] = (
        ("temperature", s.temperature), ("topP", s.top_p), ("topK", s.top_k),
        ("maxOutputTokens", s.max_output_tokens), ("seed", s.seed),
        ("presencePenalty", s.presence_penalty), ("frequencyPenalty", s.frequency_penalty),
    )
    for key, value in pairs:
        if value is not None:
            gen[key] = value
    if s.stop:
        gen["stopSequences"] = list(s.stop)
    fmt = req.response_format
    if fmt is not None and fmt.type != "text":
        gen["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            gen["responseSchema"] = to_gemini_schema(fmt.schema)
    r = req.reasoning
    if r is not None:
        if not r.active:
            gen["thinkingConfig"] = {"thinkingBudget": 0}
        else:
            budget = r.max_tokens if r.max_tokens is not None else THINKING_BUDGET.get(r.effort or "medium", 8192)
            gen["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": not r.exclude}
    return gen


def request_path(model: str, stream: bool) -> str:
    """The path relative to the base URL (``https://generativelanguage.googleapis.com``)."""
    model = model.removeprefix("models/")
    if stream:
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{model}:generateContent"


def build_request(req: ChatRequest, params: BuildParams) -> BuiltRequest:
    """The generateContent / streamGenerateContent request (auth header ``x-goog-api-key`` not included)."""
    body, warnings = render_request(req, params)
    upstream = UpstreamRequest(
        method="POST", path=request_path(params.upstream_model, req.stream),
        headers={"content-type": "application/json"}, body=orjson.dumps(body), stream=req.stream,
    )
    return BuiltRequest(request=upstream, warnings=tuple(warnings))
