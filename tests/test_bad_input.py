"""Bad input never knocks the gateway over: seeded random damage to valid requests of every protocol.

Each case takes a valid request of one endpoint and damages it (a field dropped, replaced by a value of
the wrong type or size, nested junk, an unknown field; or a body that is not JSON, too deep, cut off,
with an integer too big for any parser, or not UTF-8). Whatever arrives, the answer is a success or a
clean error in the caller's own envelope (OpenAI, Anthropic or Gemini), never a 500. The seed makes a
failure reproducible: the assertion message carries the request.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from tests.conftest import MGMT_KEY, Gateway

CHAT = "openai/gpt-4.1-mini"
EMBED = "openai/text-embedding-3-small"
USER = [{"role": "user", "content": "hi"}]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
INFERENCE = "inference"
MANAGEMENT = "management"

# (method, path, a valid body, which key)
SEEDS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/v1/chat/completions", {
        "model": CHAT, "max_tokens": 10, "temperature": 0.5, "stop": ["x"], "n": 1, "user": "u",
        "messages": [{"role": "system", "content": "s"},
                     {"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE]},
                     {"role": "assistant", "content": None,
                      "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "response_format": {"type": "json_object"},
        "models": [CHAT], "provider": {"order": ["openai"]}, "usage": {"include": True},
    }, INFERENCE),
    ("POST", "/v1/chat/completions", {
        "model": CHAT, "stream": True, "stream_options": {"include_usage": True}, "messages": USER,
    }, INFERENCE),
    ("POST", "/v1/messages", {
        "model": CHAT, "max_tokens": 10, "system": [{"type": "text", "text": "s"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"},
        "stop_sequences": ["x"], "metadata": {"user_id": "u"},
    }, INFERENCE),
    ("POST", "/v1/messages", {"model": CHAT, "max_tokens": 10, "stream": True, "messages": USER}, INFERENCE),
    ("POST", "/v1/responses", {
        "model": CHAT, "instructions": "s", "max_output_tokens": 10, "temperature": 0.5, "user": "u",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                               {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                  {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c1", "output": "x"}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}], "tool_choice": "auto",
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"}, "models": [CHAT],
    }, INFERENCE),
    ("POST", "/v1/responses", {"model": CHAT, "input": "hi", "stream": True}, INFERENCE),
    ("POST", "/v1/messages/count_tokens", {"model": CHAT, "messages": USER, "system": "s"}, INFERENCE),
    ("POST", "/v1/embeddings", {"model": EMBED, "input": ["a", "b"], "encoding_format": "float"}, INFERENCE),
    ("POST", f"/v1beta/models/{CHAT}:generateContent", {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "s"}]},
        "generationConfig": {"maxOutputTokens": 5, "temperature": 0.1, "stopSequences": ["x"]},
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
    }, INFERENCE),
    ("POST", f"/v1beta/models/{CHAT}:streamGenerateContent?alt=sse",
     {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, INFERENCE),
    ("POST", f"/v1beta/models/{CHAT}:countTokens", {"contents": [{"parts": [{"text": "hi"}]}]}, INFERENCE),
    ("POST", "/v1/messages/batches", {
        "requests": [{"custom_id": "a", "params": {"model": CHAT, "max_tokens": 5, "messages": USER}}],
    }, INFERENCE),
    ("POST", "/api/v1/keys", {
        "name": "k", "limit": 5, "limit_reset": "daily", "allowed_models": [CHAT],
        "rate_limit": {"requests_per_minute": 10, "concurrency": 2},
    }, MANAGEMENT),
    ("PATCH", "/api/v1/keys/0123", {"disabled": True, "limit": None, "name": "n"}, MANAGEMENT),
    ("POST", "/api/v1/credits", {"amount": 1, "description": "x"}, MANAGEMENT),
    ("GET", "/api/v1/generation?id=gen-1", None, INFERENCE),
    ("GET", "/api/v1/transactions?limit=5&offset=0", None, MANAGEMENT),
    ("GET", "/api/v1/keys?offset=0&limit=2", None, MANAGEMENT),
    ("POST", "/api/v1/keys", {"name": "eu", "end_user_limit": "0.5", "end_user_limit_reset": "weekly"}, MANAGEMENT),
    ("GET", "/api/v1/alerts?limit=5&offset=0", None, MANAGEMENT),
    ("GET", "/api/v1/usage?group_by=key&from=2026-12-01", None, MANAGEMENT),
]

WRONG: list[Any] = [
    None, True, False, 0, -1, 1.5, -1e308, 10**18, 2**63, "", "x" * 3000, "\u0000", [], [None], {},
    {"a": {"b": [1, {"c": None}]}}, [[[[[]]]]], "NaN", "-1", {"type": 1}, [{"type": "text"}], [{"role": 5}],
    {"role": "user"}, [{"role": "user", "content": [{"type": "image_url"}]}],
]
QUERY_JUNK = ["limit=-1", "limit=abc", "offset=99999999999999999999", "id=", "id=%00", "limit=1e9"]
ADDED = ["model", "stream", "messages", "contents", "input", "max_tokens", "zzz"]  # set to a wrong value
CASES = 480


def protocol_of(path: str) -> str:
    """The envelope a client of this path expects (decided here, not by the code under test)."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1beta/"):
        return "gemini"
    return "openai"


def wrong(rnd: random.Random) -> Any:
    return copy.deepcopy(rnd.choice(WRONG))


def damage(doc: Any, rnd: random.Random) -> Any:
    """``doc`` with one random thing wrong somewhere inside: a member dropped, replaced, or damaged in turn."""
    if isinstance(doc, dict | list) and doc and rnd.random() < 0.85:
        doc = copy.copy(doc)
        where = rnd.choice(list(doc)) if isinstance(doc, dict) else rnd.randrange(len(doc))
        roll = rnd.random()
        if roll < 0.2:
            del doc[where]
        elif roll < 0.55:
            doc[where] = wrong(rnd)
        else:
            doc[where] = damage(doc[where], rnd)
        if isinstance(doc, dict) and rnd.random() < 0.1:
            doc[rnd.choice(ADDED)] = wrong(rnd)
        return doc
    return wrong(rnd)


def damaged_body(doc: dict[str, Any], rnd: random.Random) -> bytes:
    roll = rnd.random()
    if roll < 0.03:
        return b"\xff\xfe{"  # not UTF-8
    if roll < 0.06:
        return b"[" * 3000 + b"]" * 3000  # deeper than any parser goes
    if roll < 0.09:
        return json.dumps(doc).encode()[: rnd.randrange(1, 40)]  # cut off
    if roll < 0.11:
        return b'{"model": ' + str(10**400).encode() + b', "messages": []}'
    if roll < 0.13:
        return rnd.choice([b"null", b"[]", b'"x"', b"1", b"", b'{"model": "x", "model": 1}'])
    text = json.dumps(damage(doc, rnd), ensure_ascii=rnd.random() < 0.5)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate in the doc stays as the client sent it


def check_envelope(path: str, status: int, raw: bytes, request: str) -> None:
    try:
        doc = json.loads(raw)
    except ValueError:
        pytest.fail(f"{status} with a body that is not JSON: {raw[:200]!r}\n{request}")
    error = doc.get("error") if isinstance(doc, dict) else None
    assert isinstance(error, dict) and isinstance(error.get("message"), str), f"{status} {raw[:300]!r}\n{request}"
    protocol = protocol_of(path)
    if protocol == "anthropic":
        assert doc.get("type") == "error" and isinstance(error.get("type"), str), f"{raw[:300]!r}\n{request}"
    elif protocol == "gemini":
        assert error.get("code") == status and isinstance(error.get("status"), str), f"{raw[:300]!r}\n{request}"
    else:
        assert error.get("code") == status and isinstance(error.get("type"), str), f"{raw[:300]!r}\n{request}"


@pytest.mark.parametrize("seed", [1, 2])
async def test_damaged_requests_get_a_success_or_a_clean_error(gateway: Gateway, seed: int) -> None:
    inference, _ = await gateway.new_key()
    resp = await gateway.client.post("/api/v1/credits", json={"amount": 100, "description": "x"},
                                     headers=gateway.mgmt)
    assert resp.status == 201
    secrets = {INFERENCE: inference, MANAGEMENT: MGMT_KEY}
    rnd = random.Random(seed)
    statuses: dict[int, int] = {}
    for _ in range(CASES):
        method, path, doc, who = rnd.choice(SEEDS)
        headers = {"Authorization": f"Bearer {secrets[who]}"}
        if protocol_of(path) == "anthropic" and rnd.random() < 0.5:
            headers = {"x-api-key": secrets[who], "anthropic-version": "2023-06-01"}
        elif protocol_of(path) == "gemini" and rnd.random() < 0.5:
            headers = {"x-goog-api-key": secrets[who]}
        if rnd.random() < 0.9:
            headers["Content-Type"] = rnd.choice(["application/json"] * 9 + ["text/plain; charset=zzz"])
        if rnd.random() < 0.2:  # a few keys shared by different requests: replays, 409s and 422s among them
            headers["Idempotency-Key"] = rnd.choice(["k1", "k2", "k3", "x" * 300, " ", "k\u00e9"])
        if rnd.random() < 0.2:  # the response cache's headers, readable or not: hits, misses and 400s
            headers["X-ARouter-Cache"] = rnd.choice(["true", "true", "false", "maybe", ""])
            if rnd.random() < 0.5:
                headers["X-ARouter-Cache-TTL"] = rnd.choice(["60", "0", "-1", "1e9", "x", "99999999999"])
            if rnd.random() < 0.3:
                headers["Cache-Control"] = rnd.choice(["no-cache", "no-store", "max-age=0", ",,=", "no-cache, x=y"])
        if rnd.random() < 0.1:
            headers["X-ARouter-User"] = rnd.choice(["alice", "x" * 1000, " ", "\u00e9l\u00e8ve"])
        if doc is None:
            if rnd.random() < 0.5:
                path = path.split("?")[0] + "?" + rnd.choice(QUERY_JUNK)
            body = None
        else:
            body = damaged_body(doc, rnd)
        request = f"{method} {path} {headers.get('Content-Type')} {body[:500] if body else body!r}"
        resp = await gateway.client.request(method, path, data=body, headers=headers)
        raw = await resp.read()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        assert resp.status < 500 or resp.status in (502, 503, 504), f"{resp.status} {raw[:300]!r}\n{request}"
        if resp.status >= 400:
            check_envelope(path.split("?")[0], resp.status, raw, request)
    # the damage leaves enough requests whole to reach the upstream, and enough broken to be refused
    assert sum(n for s, n in statuses.items() if s < 300) > CASES // 10, statuses
    assert statuses.get(400, 0) > CASES // 4, statuses
