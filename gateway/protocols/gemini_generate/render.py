"""ChatResponse -> Gemini ``GenerateContentResponse`` JSON; ``{"totalTokens"}`` for countTokens.

The countTokens figure itself comes from the shared estimator
``gateway.protocols.anthropic_messages.count.count_request_tokens``.

@see https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse

* One candidate (``index`` 0), ``content.role`` "model". Text -> ``{"text"}``; reasoning text ->
  ``{"text", "thought": true}``; tool calls -> ``{"functionCall": {"name", "args"}}`` with
  ``thoughtSignature`` when the call has one (no ``id``: the Gemini API sends none). A signature-only
  reasoning part puts its signature on the next part (or on a trailing empty text part), undoing what the
  outbound adapter does when parsing. Signatures of other providers and redacted reasoning are not
  rendered: a Gemini client could not send them back in a form those providers accept.
* Tool arguments are JSON text in the canonical model and an object here: a non-object value is
  wrapped as ``{"value": ...}``, text that is not JSON as ``{"_raw": text}`` (nothing dropped silently).
* ``finishReason``: the provider's own value when it is a Gemini FinishReason (the upstream was
  Gemini), else stop/tool_calls -> STOP, length -> MAX_TOKENS, content_filter -> SAFETY, error -> OTHER.
* ``usageMetadata``: promptTokenCount = input (cached included, as Gemini counts it),
  candidatesTokenCount = output minus reasoning, thoughtsTokenCount = reasoning when known,
  cachedContentTokenCount when known, totalTokenCount = the reported total or the sum. Left out when the
  provider reported no counts.
* ``modelVersion`` is the response's (public) model name, ``responseId`` its id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from gateway.core.request import GEMINI_REASONING, ImagePart, Part, ReasoningPart, TextPart, ToolCallPart
from gateway.core.response import ChatResponse, Finish, FinishReason, Usage
from gateway.providers.gemini.mapping import _FINISH as _NATIVE_FINISH
from gateway.providers.gemini.request import render_content_part

# Every FinishReason the Gemini API documents (mapping.py knows the common ones; newer ones listed here).
GEMINI_FINISH_REASONS = frozenset(_NATIVE_FINISH) | frozenset({
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_OTHER", "NO_IMAGE", "IMAGE_RECITATION", "TOO_MANY_TOOL_CALLS",
    "MISSING_THOUGHT_SIGNATURE", "MALFORMED_RESPONSE",
})
_FINISH_BACK = {
    FinishReason.STOP: "STOP",
    FinishReason.TOOL_CALLS: "STOP",
    FinishReason.LENGTH: "MAX_TOKENS",
    FinishReason.CONTENT_FILTER: "SAFETY",
    FinishReason.ERROR: "OTHER",
}

GPart = dict[str, Any]


def render_finish_reason(finish: Finish) -> str:
    """The Gemini finishReason for a canonical finish."""
    native = finish.native
    if native is not None and native in GEMINI_FINISH_REASONS:
        return native
    return _FINISH_BACK[finish.reason]


def render_args(arguments: str) -> dict[str, Any]:
    """Tool call arguments (JSON text) -> the ``args`` object."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"value": value}


def function_call_part(name: str, arguments: str, signature: str | None) -> GPart:
    """One ``functionCall`` part."""
    part: GPart = {"functionCall": {"name": name, "args": render_args(arguments)}}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def gemini_signature(part: ReasoningPart) -> str | None:
    """The signature if a Gemini client can send it back (Gemini's own, or of unknown origin)."""
    return part.signature if part.format in (GEMINI_REASONING, None) else None


def render_parts(parts: Iterable[Part]) -> list[GPart]:
    """Assistant parts -> Gemini parts."""
    out: list[GPart] = []
    pending_sig: str | None = None
    for part in parts:
        rendered: GPart | None = None
        if isinstance(part, ReasoningPart):
            if part.data is not None:
                continue
            sig = gemini_signature(part)
            if not part.text:
                pending_sig = sig or pending_sig
                continue
            rendered = {"text": part.text, "thought": True}
            if sig is not None:
                rendered["thoughtSignature"] = sig
        elif isinstance(part, TextPart):
            rendered = {"text": part.text} if part.text else None
        elif isinstance(part, ImagePart):
            rendered = render_content_part(part)
        elif isinstance(part, ToolCallPart):
            rendered = function_call_part(part.name, part.arguments, part.signature)
        if rendered is None:
            continue
        if pending_sig is not None and "thoughtSignature" not in rendered:
            rendered["thoughtSignature"] = pending_sig
        pending_sig = None
        out.append(rendered)
    if pending_sig is not None:
        out.append({"text": "", "thoughtSignature": pending_sig})
    return out


def render_usage(usage: Usage) -> dict[str, int] | None:
    """``usageMetadata``, or None when nothing was reported."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    prompt = usage.input_tokens or 0
    output = usage.output_tokens or 0
    thoughts = usage.reasoning_tokens
    total = usage.total
    out = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(0, output - (thoughts or 0)),
        "totalTokenCount": total if total is not None else prompt + output,
    }
    if usage.cache_read_tokens is not None:
        out["cachedContentTokenCount"] = usage.cache_read_tokens
    if thoughts is not None:
        out["thoughtsTokenCount"] = thoughts
    return out


def render_candidate(parts: list[GPart], finish: Finish | None) -> dict[str, Any]:
    """Candidate 0 with these parts (``content`` without ``parts`` when empty, as Gemini sends it)."""
    content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
    candidate: dict[str, Any] = {"content": content}
    if finish is not None:
        candidate["finishReason"] = render_finish_reason(finish)
    candidate["index"] = 0
    return candidate


def render_generate_response(resp: ChatResponse) -> dict[str, Any]:
    """The full GenerateContentResponse object."""
    out: dict[str, Any] = {"candidates": [render_candidate(render_parts(resp.message.parts), resp.finish)]}
    usage = render_usage(resp.usage)
    if usage is not None:
        out["usageMetadata"] = usage
    out["modelVersion"] = resp.model
    out["responseId"] = resp.id
    return out


def render_generate_response_bytes(resp: ChatResponse) -> bytes:
    """``render_generate_response`` serialized with orjson."""
    return orjson.dumps(render_generate_response(resp))


def render_count_tokens(total: int) -> dict[str, int]:
    """The countTokens answer."""
    return {"totalTokens": total}
