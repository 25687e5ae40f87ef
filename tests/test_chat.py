"""POST /v1/chat/completions to an OpenAI-type upstream: passthrough bytes, usage read, errors mapped."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.state import RECORDER, STORE
from tests.conftest import Gateway
from tests.fakes.openai_upstream import fixture


async def chat(gw: Gateway, key: str, body: dict[str, object], **headers: str):  # type: ignore[no-untyped-def]
    return await gw.client.post(
        "/v1/chat/completions", data=orjson.dumps(body), headers={"Authorization": f"Bearer {key}", **headers}
    )


async def test_json_response_is_the_upstream_bytes(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    resp = await chat(gateway, key, {"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200
    raw = await resp.read()
    # the upstream's bytes, with only the cost added as the first member of "usage"
    assert raw == fixture("chat.json").replace(b'"usage": {', b'"usage": {"cost":0.0000188,')
    assert orjson.loads(raw)["usage"]["cost"] == 0.0000188 and resp.headers["X-ARouter-Cost"] == "0.0000188"
    assert resp.headers["X-Generation-Id"].startswith("gen-")
    assert resp.headers["X-Request-Id"]
    assert "openai-organization" not in resp.headers
    sent = gateway.upstream.seen[-1]
    assert sent.body["model"] == "gpt-4.1-mini"
    assert sent.headers["Authorization"] == "Bearer sk-upstream-secret-0000"


async def test_only_model_is_rewritten_and_router_fields_dropped(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    body = {
        "model": "flagship", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.3,
        "some_future_field": {"nested": [1, 2]}, "models": ["openai/gpt-4.1"], "route": "fallback",
        "provider": {"order": ["openai"]},
    }
    resp = await chat(gateway, key, body, **{"X-Title": "My App", "HTTP-Referer": "https://app.example"})
    assert resp.status == 200
    sent = gateway.upstream.seen[-1]
    assert sent.body == {
        "model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.3,
        "some_future_field": {"nested": [1, 2]},
    }
    assert "X-Title" not in sent.headers and "HTTP-Referer" not in sent.headers
    assert "Authorization" in sent.headers and key not in sent.headers["Authorization"]


async def test_no_model_uses_default_and_bare_name_means_openai(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    assert (await chat(gateway, key, {"messages": [{"role": "user", "content": "x"}]})).status == 200
    assert gateway.upstream.seen[-1].body["model"] == "gpt-4.1-mini"
    resp = await chat(gateway, key, {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200
    assert gateway.upstream.seen[-1].body["model"] == "gpt-4.1"


async def test_stream_is_relayed_byte_for_byte_with_usage_when_asked(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    body = {"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}
    resp = await chat(gateway, key, body)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["X-Request-Id"] and resp.headers["X-Generation-Id"].startswith("gen-")
    raw = await resp.read()
    priced = b'"usage":{"cost":0.0000188,"prompt_tokens"'
    assert raw == fixture("chat_stream.sse").replace(b'"usage":{"prompt_tokens"', priced)
    usage_chunk = orjson.loads(next(e for e in raw.split(b"\n\n") if b'"choices":[]' in e)[6:])
    assert usage_chunk["usage"]["cost"] == 0.0000188 and usage_chunk["usage"]["total_tokens"] == 20


async def test_stream_usage_is_read_but_not_shown_when_not_asked(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    body = {"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    resp = await chat(gateway, key, body, **{"X-Title": "Streamer"})
    raw = await resp.read()
    assert gateway.upstream.seen[-1].body["stream_options"] == {"include_usage": True}
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert not any(b'"choices":[]' in e for e in events)  # the usage-only chunk was held back
    expected = [e for e in fixture("chat_stream.sse").split(b"\n\n") if e and b'"choices":[]' not in e]
    assert events == expected  # every other event unchanged
    await gateway.app[RECORDER].flush()
    gen = await gateway.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None
    assert (gen.prompt_tokens, gen.completion_tokens, gen.streamed, gen.app_title) == (11, 9, True, "Streamer")
    assert gen.finish_reason == "stop" and gen.ttft_ms is not None


async def test_usage_is_recorded_with_exact_cost(gateway: Gateway) -> None:
    from decimal import Decimal

    key, data = await gateway.new_key()
    resp = await chat(gateway, key, {"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "x"}]},
                      **{"HTTP-Referer": "https://app.example"})
    gen_id = resp.headers["X-Generation-Id"]
    await gateway.app[RECORDER].flush()
    gen = await gateway.app[STORE].get_generation("default", gen_id)
    assert gen is not None
    # 11 * 0.40 / 1e6 + 9 * 1.60 / 1e6 = 0.0000188
    assert gen.cost == Decimal("0.0000188")
    assert gen.key_hash == data["hash"] and gen.app_referer == "https://app.example" and gen.status == 200
    assert gen.cached is False  # the provider answered
    got = await gateway.client.get(f"/api/v1/generation?id={gen_id}", headers={"Authorization": f"Bearer {key}"})
    doc = await got.json()
    assert got.status == 200 and doc["data"]["total_cost"] == 0.0000188 and doc["data"]["tokens_prompt"] == 11
    assert doc["data"]["cached"] is False


async def test_stream_from_provider_without_stream_usage(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    body = {"model": "local/llama3", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    resp = await chat(gateway, key, body)
    assert resp.status == 200
    assert await resp.read() == fixture("chat_stream_no_usage.sse")
    assert "stream_options" not in gateway.upstream.seen[-1].body
    assert gateway.upstream.seen[-1].body["model"] == "llama3"
    assert "Authorization" not in gateway.upstream.seen[-1].headers  # no key configured: none sent


async def test_a_cancelled_stream_is_billed_for_what_was_generated(gateway: Gateway) -> None:
    from decimal import Decimal

    key, _ = await gateway.new_key()
    body = orjson.dumps({"model": "openai/stalls-midstream", "messages": [{"role": "user", "content": "hi"}],
                         "stream": True})
    resp = await gateway.client.post("/v1/chat/completions", data=body, headers={"Authorization": f"Bearer {key}"})
    gen_id = resp.headers["X-Generation-Id"]
    first = await resp.content.readuntil(b"\n\n")
    assert first.startswith(b"data: {")
    resp.close()  # the client goes away mid-stream
    gateway.upstream.release.set()
    gen = None
    for _ in range(200):
        await gateway.app[RECORDER].flush()
        gen = await gateway.app[STORE].get_generation("default", gen_id)
        if gen is not None:
            break
        await asyncio.sleep(0.01)  # until the gateway has noticed and recorded the request
    assert gen is not None and gen.cancelled
    assert gen.prompt_tokens == len(body) // 4 + 1  # no upstream usage: estimated from the request
    assert gen.completion_tokens == 1  # one streamed fragment
    assert gen.cost == Decimal(gen.prompt_tokens + 1) / 1_000_000 and gen.cost > 0


async def test_metrics_count_requests_tokens_and_time_to_first_token(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    for stream in (False, True, True):
        body = {"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        resp = await chat(gateway, key, body)
        await resp.read()
    text = await (await gateway.client.get("/metrics")).text()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("arouter_") and " " in line}
    labels = 'model="openai/gpt-4.1-mini",provider="openai"'
    requests = [v for k, v in values.items() if k.startswith("arouter_requests_total{") and 'status="200"' in k
                and 'endpoint="chat"' in k]
    assert requests == [3.0]
    assert values[f'arouter_time_to_first_token_seconds_count{{{labels}}}'] == 2.0  # the two streams
    # the recorded responses report 11 prompt and 9 completion tokens each
    assert values[f'arouter_tokens_total{{direction="input",{labels}}}'] == 33.0
    assert values[f'arouter_tokens_total{{direction="output",{labels}}}'] == 27.0
    # each costs 11 x 0.40 + 9 x 1.60 USD per million tokens
    assert values[f'arouter_cost_usd_total{{{labels}}}'] == pytest.approx(3 * 0.0000188)
