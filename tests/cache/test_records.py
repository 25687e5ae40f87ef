"""The cache's pure parts: what a request asks, where its answer is kept, how a hit's body reads."""

from __future__ import annotations

import pytest

from gateway.cache.records import (
    Directive,
    DirectiveError,
    Entry,
    directive,
    hit_body,
    kept_headers,
    pack,
    slot,
    unpack,
)


@pytest.mark.parametrize("mode, headers, expected", [
    ("off", {"X-ARouter-Cache": "true"}, None),
    ("opt-in", {}, None),
    ("opt-in", {"X-ARouter-Cache": "true"}, Directive(True, 60.0)),
    ("opt-in", {"X-ARouter-Cache": " YES "}, Directive(True, 60.0)),
    ("opt-in", {"X-ARouter-Cache": "false"}, None),
    ("on", {}, Directive(True, 60.0)),
    ("on", {"X-ARouter-Cache": "0"}, None),
    ("on", {"Cache-Control": "no-cache"}, Directive(False, 60.0)),
    ("on", {"Cache-Control": "max-age=0, No-Store"}, None),
    ("on", {"Cache-Control": "max-age=10"}, Directive(True, 60.0)),
    ("on", {"X-ARouter-Cache-TTL": "3600"}, Directive(True, 3600.0)),
    ("opt-in", {"X-ARouter-Cache-TTL": "nonsense"}, None),  # not asked: its TTL is not read
])
def test_directive(mode: str, headers: dict[str, str], expected: Directive | None) -> None:
    assert directive(mode, headers, 60.0, 86400.0) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("headers, named", [
    ({"X-ARouter-Cache": "sometimes"}, "X-ARouter-Cache"),
    ({"X-ARouter-Cache-TTL": "0"}, "X-ARouter-Cache-TTL"),
    ({"X-ARouter-Cache-TTL": "86401"}, "X-ARouter-Cache-TTL"),
    ({"X-ARouter-Cache-TTL": "-5"}, "X-ARouter-Cache-TTL"),
    ({"X-ARouter-Cache-TTL": "1e3"}, "X-ARouter-Cache-TTL"),
])
def test_unreadable_headers_are_named(headers: dict[str, str], named: str) -> None:
    with pytest.raises(DirectiveError) as err:
        directive("on", headers, 60.0, 86400.0)
    assert err.value.header == named and named in str(err.value)


def test_the_slot_is_per_tenant_and_request_but_not_per_api_key_in_the_query() -> None:
    base = ("t1", "chat", "POST", "/v1/chat/completions", [("a", "1")], {}, b'{"x":1}')
    same = slot(*base)
    assert same == slot(*base) and same.startswith("t1:")
    with_key = [("a", "1"), ("key", "lr_live_x")]
    assert slot("t1", "chat", "POST", "/v1/chat/completions", with_key, {}, b'{"x":1}') == same
    for changed in (
        ("t2", "chat", "POST", "/v1/chat/completions", [("a", "1")], {}, b'{"x":1}'),
        ("t1", "embeddings", "POST", "/v1/chat/completions", [("a", "1")], {}, b'{"x":1}'),
        ("t1", "chat", "POST", "/v1/other", [("a", "1")], {}, b'{"x":1}'),
        ("t1", "chat", "POST", "/v1/chat/completions", [("a", "2")], {}, b'{"x":1}'),
        ("t1", "chat", "POST", "/v1/chat/completions", [("a", "1")], {"anthropic-beta": "b"}, b'{"x":1}'),
        ("t1", "chat", "POST", "/v1/chat/completions", [("a", "1")], {}, b'{"x": 1}'),
    ):
        assert slot(*changed) != same, changed  # type: ignore[arg-type]
    assert slot(*base[:5], {"X-Other": "1"}, base[6]) == same  # type: ignore[arg-type]


ENTRY = Entry(
    status=200, headers=(("Content-Type", "application/json"), ("X-ARouter-Model", "openai/gpt-4.1")),
    body=b'{"id":"gen-1-old","usage":{"cost":0.25,"prompt_tokens":3}}', generation_id="gen-1-old",
    model="openai/gpt-4.1", provider="openai", upstream_model="gpt-4.1", prompt_tokens=3, completion_tokens=None,
    total_tokens=3, finish_reason="stop", stored_at=1_800_000_000.5,
)


def test_pack_round_trips_and_refuses_anything_else() -> None:
    assert unpack(pack(ENTRY)) == ENTRY
    assert unpack(b"") is None and unpack(b"AIK1\x00\x00\x00\x02{}") is None
    assert unpack(b"ARC1\x00\x00\x00\x02{}") is None  # fields missing
    broken = pack(ENTRY).replace(b'"status":200', b'"status":"x"')
    assert unpack(broken) is None


def test_kept_headers_leave_out_what_belongs_to_one_request() -> None:
    kept = kept_headers([("Content-Type", "application/json"), ("X-Request-Id", "req_1"), ("X-Generation-Id", "g"),
                         ("X-ARouter-Cost", "0.1"), ("x-arouter-cache", "MISS"), ("X-RateLimit-Remaining", "3"),
                         ("Content-Length", "10"), ("X-ARouter-Provider", "openai")])
    assert kept == (("Content-Type", "application/json"), ("X-ARouter-Provider", "openai"))


def test_a_hit_body_has_its_own_id_and_no_cost_and_is_otherwise_the_same_bytes() -> None:
    assert hit_body(ENTRY.body, "gen-1-old", "gen-2-new") == b'{"id":"gen-2-new","usage":{"cost":0,"prompt_tokens":3}}'
    upstream = (b'{\n  "id": "chatcmpl-9",\n  "choices": [{"message": {"content": "cost: 5"}}],\n'
                b'  "usage": {"cost":0.0000188,"prompt_tokens": 11,\n'
                b'    "prompt_tokens_details": {"cached_tokens": 0}},\n'
                b'  "system_fingerprint": null\n}')
    assert hit_body(upstream, "gen-1-old", "gen-2-new") == upstream.replace(b'"cost":0.0000188', b'"cost":0')
    rendered = b'{"id":"gen-1-old","usage":{"prompt_tokens":3,"cost":1.5E-7},"provider":"anthropic"}'
    assert hit_body(rendered, "gen-1-old", "gen-2-new") == (
        b'{"id":"gen-2-new","usage":{"prompt_tokens":3,"cost":0},"provider":"anthropic"}')
    anthropic = b'{"id":"msg_gen-1-old","type":"message","usage":{"input_tokens":3,"output_tokens":2}}'
    assert hit_body(anthropic, "gen-1-old", "gen-2-new") == anthropic.replace(b"gen-1-old", b"gen-2-new")
    gemini = b'{"candidates":[],"usageMetadata":{"promptTokenCount":3},"responseId":"gen-1-old"}'
    assert hit_body(gemini, "gen-1-old", "gen-2-new") == gemini.replace(b"gen-1-old", b"gen-2-new")
    embeddings = b'{"object":"list","data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":5,"total_tokens":5}}'
    assert hit_body(embeddings, "gen-1-old", "gen-2-new") == embeddings
