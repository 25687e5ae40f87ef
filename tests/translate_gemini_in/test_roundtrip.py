"""Property: Gemini request -> ChatRequest -> Gemini request (outbound adapter) keeps the conversation.

Every text, inline blob, function call (name, args, thoughtSignature) and function response survives,
in order; consecutive turns of the same role come back merged (the outbound adapter merges them, and
Gemini reads them the same way). Thought text is outside the property: the outbound adapter does not send
thought summaries back, by design.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.request import ToolCallPart, ToolResultPart
from gateway.protocols.gemini_generate.parse import parse_generate_request
from gateway.providers.base import BuildParams
from gateway.providers.gemini.adapter import GeminiAdapter

ADAPTER = GeminiAdapter("google")
NAMES = ("get_weather", "lookup", "f")

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
signatures = st.none() | st.text("ABCDEFGHabcdefgh0123456789+/", min_size=4, max_size=16)
texts = st.text(min_size=1, max_size=30)


def signed(part: dict[str, Any], sig: str | None) -> dict[str, Any]:
    return part if sig is None else {**part, "thoughtSignature": sig}


@st.composite
def model_turn(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(["text", "call"]), min_size=1, max_size=4))
    parts = []
    for kind in kinds:
        if kind == "text":
            parts.append(signed({"text": draw(texts)}, draw(signatures)))
        else:
            call = {"name": draw(st.sampled_from(NAMES)), "args": draw(json_objects)}
            parts.append(signed({"functionCall": call}, draw(signatures)))
    return {"role": "model", "parts": parts}


@st.composite
def user_turn(draw: st.DrawFn, calls: list[str]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    answered = draw(st.permutations(calls))
    for name in answered[: draw(st.integers(min_value=0, max_value=len(answered)))]:
        parts.append({"functionResponse": {"name": name, "response": draw(json_objects)}})
    for _ in range(draw(st.integers(min_value=0 if parts else 1, max_value=2))):
        if draw(st.booleans()):
            parts.append({"text": draw(texts)})
        else:
            data = draw(st.text("AQgw", min_size=4, max_size=8))
            parts.append({"inlineData": {"mimeType": "image/png", "data": data}})
    return {"role": "user", "parts": draw(st.permutations(parts))}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    contents = [draw(user_turn([]))]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        model = draw(model_turn())
        contents.append(model)
        calls = [p["functionCall"]["name"] for p in model["parts"] if "functionCall" in p]
        contents.append(draw(user_turn(calls)))
    body: dict[str, Any] = {"contents": contents}
    if draw(st.booleans()):
        body["systemInstruction"] = {"parts": [{"text": t} for t in draw(st.lists(texts, min_size=1, max_size=2))]}
    if draw(st.booleans()):
        props = {n: {"type": "string", "description": n} for n in draw(st.lists(st.sampled_from(NAMES), min_size=1,
                                                                                 unique=True))}
        body["tools"] = [{"functionDeclarations": [
            {"name": name, "description": f"{name} tool", "parameters": {"type": "object", "properties": props,
                                                                         "required": sorted(props)}}
            for name in NAMES]}]
    gen: dict[str, Any] = {}
    optional = {
        "temperature": st.floats(min_value=0, max_value=2), "topP": st.floats(min_value=0, max_value=1),
        "topK": st.integers(min_value=1, max_value=100), "maxOutputTokens": st.integers(min_value=1, max_value=8192),
        "stopSequences": st.lists(texts, min_size=1, max_size=3), "seed": st.integers(min_value=0, max_value=2**31),
        "thinkingConfig": st.fixed_dictionaries({"thinkingBudget": st.integers(min_value=1, max_value=24576),
                                                 "includeThoughts": st.booleans()}),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            gen[key] = draw(strategy)
    if gen:
        body["generationConfig"] = gen
    return body


def merged(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for content in contents:
        if out and out[-1]["role"] == content["role"]:
            out[-1]["parts"].extend(content["parts"])
        else:
            out.append({"role": content["role"], "parts": list(content["parts"])})
    return out


@settings(max_examples=300, deadline=None)
@given(body=requests())
def test_gemini_request_round_trip(body: dict[str, Any]) -> None:
    parsed = parse_generate_request(body, "models/gemini-2.5-flash")
    assert parsed.warnings == ()
    built = ADAPTER.build_request(parsed.request, BuildParams(upstream_model="gemini-2.5-flash"))
    assert built.warnings == ()
    again = orjson.loads(built.request.body)
    assert again["contents"] == merged(body["contents"])
    for key in ("systemInstruction", "tools", "generationConfig"):
        assert again.get(key) == body.get(key)
    # every tool result answers an earlier call of the same name, each call at most once
    calls: dict[str, str] = {}
    for msg in parsed.request.messages:
        for part in msg.parts:
            if isinstance(part, ToolCallPart):
                calls[part.call_id] = part.name
            elif isinstance(part, ToolResultPart):
                assert calls.pop(part.call_id) == part.name
    # and once more: the round trip is a fixed point
    assert parse_generate_request(again, "gemini-2.5-flash").request == parsed.request
