"""Anthropic request -> canonical -> Anthropic request (the outbound adapter) keeps every text, tool call,
argument, thinking signature and cache_control."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocols.anthropic_messages.parse import parse_messages_request
from gateway.providers.anthropic.adapter import AnthropicAdapter
from gateway.providers.base import BuildParams
from tests.translate_native.wire import fixture_json

ADAPTER = AnthropicAdapter("anthropic")


def rebuild(body: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_messages_request(body)
    built = ADAPTER.build_request(parsed.request, BuildParams(upstream_model=body["model"]))
    out: dict[str, Any] = orjson.loads(built.request.body)
    return out


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def normalize(body: dict[str, Any]) -> dict[str, Any]:
    """Equivalent spellings made equal: string content as one text block, tool_result cache_control on its
    last content block, ``is_error: false`` left out, plain system blocks as one string."""
    body = copy.deepcopy(body)
    if isinstance(body.get("system"), list) and all(set(b) == {"type", "text"} for b in body["system"]):
        body["system"] = "\n\n".join(b["text"] for b in body["system"])
    for msg in body["messages"]:
        msg["content"] = _blocks(msg["content"])
        for block in msg["content"]:
            if block["type"] != "tool_result":
                continue
            if "content" in block:
                block["content"] = _blocks(block["content"])
            cache = block.pop("cache_control", None)
            if cache is not None:
                block["content"][-1]["cache_control"] = cache
            if block.get("is_error") is False:
                del block["is_error"]
    return body


def test_golden_request_round_trips() -> None:
    body = fixture_json("anthropic/request_full.json")
    assert normalize(rebuild(body)) == normalize(body)


def test_sampling_request_round_trips() -> None:
    body = fixture_json("anthropic/request_sampling.json")
    assert normalize(rebuild(body)) == normalize(body)


# --- property test -------------------------------------------------------------------------------

CACHE = st.one_of(st.none(), st.just({"type": "ephemeral"}), st.just({"type": "ephemeral", "ttl": "1h"}))
TEXT = st.text(min_size=0, max_size=20).map(lambda s: s + "x")  # non-empty, no trailing whitespace
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12).map(lambda s: "toolu_" + s)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _with_cache(block: dict[str, Any], cache: Any) -> dict[str, Any]:
    if cache is not None:
        block["cache_control"] = cache
    return block


text_block = st.builds(lambda t, c: _with_cache({"type": "text", "text": t}, c), TEXT, CACHE)
image_block = st.builds(
    lambda data, c: _with_cache({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                            "data": data}}, c),
    st.text(alphabet="ABCDEFGHabcdefgh0123456789+/", min_size=4, max_size=12), CACHE,
)
thinking_block = st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s},
                           st.text(max_size=20), st.text(min_size=1, max_size=12))
tool_use_block = st.builds(lambda i, n, inp: {"type": "tool_use", "id": i, "name": n, "input": inp},
                           IDS, st.sampled_from(["get_weather", "search", "calc"]),
                           st.dictionaries(st.text(max_size=6), JSON, max_size=4))
tool_result_block = st.builds(
    lambda i, content, err, c: _with_cache(
        {"type": "tool_result", "tool_use_id": i, "content": content, **({"is_error": err} if err else {})}, c),
    IDS, st.one_of(TEXT, st.lists(text_block, min_size=1, max_size=3)), st.booleans(), CACHE,
)
user_turn = st.lists(st.one_of(text_block, image_block, tool_result_block), min_size=1, max_size=4)
assistant_turn = st.lists(st.one_of(text_block, thinking_block, tool_use_block), min_size=1, max_size=4)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    turns = draw(st.integers(1, 5))
    messages = []
    for i in range(turns):
        if i % 2 == 0:
            messages.append({"role": "user", "content": draw(user_turn)})
        else:
            messages.append({"role": "assistant", "content": draw(assistant_turn)})
    body: dict[str, Any] = {"model": "claude-x", "max_tokens": draw(st.integers(1, 8192)), "messages": messages}
    system = draw(st.one_of(st.none(), TEXT, st.lists(text_block, min_size=1, max_size=2)))
    if system is not None:
        body["system"] = system
    if draw(st.booleans()):
        body["stop_sequences"] = draw(st.lists(TEXT, min_size=1, max_size=2))
    if draw(st.booleans()):
        body["tools"] = [
            _with_cache({"name": n, "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}, c)
            for n, c in draw(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), CACHE), min_size=1, max_size=2))
        ]
    return body


@settings(max_examples=150, deadline=None)
@given(requests())
def test_any_request_round_trips(body: dict[str, Any]) -> None:
    assert normalize(rebuild(body)) == normalize(body)
