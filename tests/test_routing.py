"""Routing that survives provider failures: candidates, retries, deployments, keep-alives, timeouts."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.state import RECORDER, STORE, UPSTREAMS
from tests.conftest import MGMT_KEY, Gateway, make_settings
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.multi_upstream import multi_settings
from tests.fakes.openai_upstream import fixture as upstream_fixture

MSG = [{"role": "user", "content": "hi"}]
DEAD = "http://127.0.0.1:9/v1"  # nothing listens there: connection refused


async def client_for(gateway: Gateway, db_url: str, aiohttp_client: Any, **sections: Any) -> tuple[Any, dict[str, str]]:
    settings = make_settings(gateway.upstream.url, db_url, **sections)  # type: ignore[attr-defined]
    client = await aiohttp_client(create_app(settings))
    resp = await client.post("/api/v1/keys", json={"name": "routing"}, headers={"Authorization": f"Bearer {MGMT_KEY}"})
    return client, {"Authorization": f"Bearer {(await resp.json())['key']}"}


def provider(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "openai", "base_url": url, "api_key": "sk-x", "retries": 0, "retry_max_wait": 0.05, **extra}


async def with_a_dead_deployment(
    gateway: Gateway, db_url: str, aiohttp_client: Any, *, dead_weight: int, retries: int, breaker_failures: int
) -> tuple[Any, dict[str, str]]:
    """A gateway whose openai provider has a deployment nobody listens at (first) and the fake (second)."""
    url = gateway.upstream.url  # type: ignore[attr-defined]
    deployments = [{"base_url": DEAD, "weight": dead_weight}, {"base_url": url, "weight": 1}]
    return await client_for(
        gateway, db_url, aiohttp_client, providers={"openai": provider(url, retries=retries, deployments=deployments)},
        routing={"breaker_failures": breaker_failures, "breaker_cooldown": 60},
    )


async def test_fallback_to_the_next_candidate_bills_only_the_one_that_answered(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(gateway, db_url, aiohttp_client,
                                    providers={"dead": provider(DEAD), "backup": provider(url)},
                                    models={"dead/gpt-4.1-mini": {"prompt": "9", "completion": "9"},
                                            "backup/gpt-4.1-mini": {"prompt": "0.40", "completion": "1.60"}})
    body = {"model": "dead/gpt-4.1-mini", "models": ["openai/broken", "backup/gpt-4.1-mini"], "route": "fallback",
            "messages": MSG}
    resp = await client.post("/v1/chat/completions", json=body, headers=auth)
    assert resp.status == 200
    assert resp.headers["X-ARouter-Provider"] == "backup" and resp.headers["X-ARouter-Model"] == "backup/gpt-4.1-mini"
    await client.app[RECORDER].flush()
    gen = await client.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.model == "backup/gpt-4.1-mini" and gen.provider == "backup"
    assert str(gen.cost) == "0.0000188000"
    assert [s.body["model"] for s in gateway.upstream.seen] == ["broken", "gpt-4.1-mini"]  # the dead one never answered


async def test_a_bad_request_is_not_retried_elsewhere(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    body = {"model": "openai/bad-request", "models": ["openai/gpt-4.1-mini"], "messages": MSG}
    resp = await gateway.client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 400 and len(gateway.upstream.seen) == 1


async def test_when_all_fail_the_last_error_comes_back(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    body = {"model": "openai/broken", "models": ["openai/rate-limited"], "messages": MSG}
    resp = await gateway.client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 429 and resp.headers["Retry-After"] == "7"


async def test_fallback_before_the_first_byte_of_a_stream(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    body = {"model": "openai/broken", "models": ["openai/gpt-4.1-mini"], "messages": MSG, "stream": True}
    resp = await gateway.client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    raw = await resp.read()
    assert resp.status == 200 and raw.endswith(b"data: [DONE]\n\n") and b'"finish_reason":"stop"' in raw


async def test_retries_with_backoff_then_success(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(gateway, db_url, aiohttp_client,
                                    providers={"openai": provider(url, retries=2)})
    resp = await client.post("/v1/chat/completions", json={"model": "openai/flaky", "messages": MSG}, headers=auth)
    assert resp.status == 200 and gateway.upstream.calls["flaky"] == 3
    started = time.monotonic()
    resp = await client.post("/v1/chat/completions", json={"model": "openai/limited-then-ok", "messages": MSG},
                             headers=auth)
    assert resp.status == 200 and gateway.upstream.calls["limited-then-ok"] == 2
    assert time.monotonic() - started < 1  # Retry-After 1 was capped at retry_max_wait (0.05 s)


async def test_retries_are_bounded(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(gateway, db_url, aiohttp_client, providers={"openai": provider(url, retries=1)})
    resp = await client.post("/v1/chat/completions", json={"model": "openai/flaky", "messages": MSG}, headers=auth)
    assert resp.status == 502 and gateway.upstream.calls["flaky"] == 2


async def test_deployments_spread_and_a_failing_one_is_taken_out(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    client, auth = await with_a_dead_deployment(gateway, db_url, aiohttp_client, dead_weight=1, retries=3,
                                                breaker_failures=2)
    for _ in range(20):
        resp = await client.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
        assert resp.status == 200  # a failed try on the dead deployment is retried on the live one
    upstreams = client.app[UPSTREAMS]
    assert upstreams._health[("openai", 0)].open_until > 0  # the dead deployment is out


async def test_no_healthy_deployment_is_a_clear_503(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    client, auth = await client_for(gateway, db_url, aiohttp_client, providers={"openai": provider(DEAD)},
                                    routing={"breaker_failures": 1, "breaker_cooldown": 60})
    assert (await client.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)).status == 502
    resp = await client.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
    doc = await resp.json()
    assert resp.status == 503 and "no healthy deployment of provider 'openai'" in doc["error"]["message"]


async def test_keepalive_comments_while_waiting_for_the_first_token(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    client, auth = await client_for(gateway, db_url, aiohttp_client, routing={"keepalive_seconds": 0.05})
    body = {"model": "openai/slow-first", "messages": MSG, "stream": True}
    resp = await client.post("/v1/chat/completions", json=body, headers=auth)
    raw = await resp.read()
    assert raw.startswith(b": ARouter PROCESSING\n\n")
    assert raw.count(b": ARouter PROCESSING") >= 2 and raw.endswith(b"data: [DONE]\n\n")
    events = [e for e in raw.split(b"\n\n") if e and not e.startswith(b":")]
    assert all(e.startswith(b"data: ") for e in events)


async def test_first_token_timeout_is_a_clean_504(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(
        gateway, db_url, aiohttp_client,
        providers={"openai": provider(url, timeouts={"first_token": 0.2})}, routing={"keepalive_seconds": 5},
    )
    resp = await client.post("/v1/chat/completions", json={"model": "openai/stalls-first", "messages": MSG,
                                                           "stream": True}, headers=auth)
    doc = await resp.json()
    assert resp.status == 504 and doc["error"]["type"] == "timeout_error"
    assert "first token" in doc["error"]["message"]


@pytest.mark.parametrize(
    ("prefs", "expected"),
    [
        ({"only": ["backup"]}, ["backup/gpt-4.1-mini"]),
        ({"ignore": ["openai"]}, ["backup/gpt-4.1-mini"]),
        ({"order": ["backup", "openai"]}, ["backup/gpt-4.1-mini", "openai/gpt-4.1"]),
        ({"sort": "price"}, ["backup/gpt-4.1-mini", "openai/gpt-4.1"]),
        ({"allow_fallbacks": False}, ["openai/gpt-4.1"]),
    ],
)
async def test_provider_preferences_shape_the_candidates(
    gateway: Gateway, db_url: str, aiohttp_client: Any, prefs: dict[str, Any], expected: list[str]
) -> None:
    from gateway.routing.catalog import Catalog
    from gateway.routing.plan import plan_routes
    from gateway.store.base import ApiKey

    url = gateway.upstream.url  # type: ignore[attr-defined]
    settings = make_settings(url, db_url, providers={"backup": provider(url)},
                             models={"backup/gpt-4.1-mini": {"prompt": "0.40", "completion": "1.60"}})
    key = ApiKey(hash="h", tenant_id="t", kind="live", name="k", label="l", disabled=False, limit=None,
                 limit_reset=None, allowed_providers=None, allowed_models=None, expires_at=None,
                 created_at=None, updated_at=None)  # type: ignore[arg-type]
    body = {"model": "openai/gpt-4.1", "models": ["backup/gpt-4.1-mini"], "provider": prefs}
    routes = plan_routes(body, Catalog(settings), key, lambda _: None, "openai")
    assert [r.model_id for r in routes] == expected


async def test_bad_routing_fields_are_400(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    for extra in ({"models": "openai/gpt-4.1"}, {"models": [1]}, {"provider": "openai"},
                  {"provider": {"sort": "vibes"}}, {"provider": {"only": ["nobody"]}}):
        resp = await gateway.client.post("/v1/chat/completions", data=orjson.dumps({"messages": MSG, **extra}),
                                         headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 400, extra


async def test_fallback_works_on_the_anthropic_endpoint(aiohttp_server: Any, aiohttp_client: Any,
                                                                    tmp_path: Any) -> None:
    from tests.fakes.multi_upstream import start_gateway

    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'm.db'}")
    key = await gw.new_key()
    body = {"model": "anthropic/overloaded", "models": ["openai/gpt-4.1-mini"], "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}]}
    resp = await gw.client.post("/v1/messages", json=body, headers={"x-api-key": key})
    doc = await resp.json()
    assert resp.status == 200 and doc["type"] == "message" and resp.headers["X-ARouter-Provider"] == "openai"
    assert gw.anthropic.seen[-1].body["model"] == "overloaded"  # tried first, failed with 529


async def test_malformed_upstream_json_is_a_502_and_falls_back(gateway: Gateway) -> None:
    key, _ = await gateway.new_key()
    auth = {"Authorization": f"Bearer {key}"}
    resp = await gateway.client.post("/v1/chat/completions", json={"model": "openai/malformed", "messages": MSG},
                                     headers=auth)
    assert resp.status == 502 and "malformed JSON" in (await resp.json())["error"]["message"]
    body = {"model": "openai/malformed", "models": ["openai/gpt-4.1-mini"], "messages": MSG}
    resp = await gateway.client.post("/v1/chat/completions", json=body, headers=auth)
    assert resp.status == 200


async def test_stalls_and_truncations_never_hang_or_500(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(
        gateway, db_url, aiohttp_client,
        providers={"openai": provider(url, timeouts={"first_token": 0.3, "idle": 0.3})},
        routing={"keepalive_seconds": 5},
    )
    for model, stream in (("openai/slow", False), ("openai/stalls-first", True),
                          ("openai/stalls-midstream", True), ("openai/dies-midstream", True)):
        resp = await client.post("/v1/chat/completions", json={"model": model, "messages": MSG, "stream": stream},
                                 headers=auth)
        raw = await resp.read()
        assert resp.status in (200, 502, 504), (model, stream, resp.status)
        if resp.status == 200:  # committed: the failure is reported in-band, then [DONE]
            assert b'"finish_reason":"error"' in raw and raw.endswith(b"data: [DONE]\n\n"), (model, raw[-200:])


async def test_keepalive_comments_while_a_started_stream_is_silent(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(
        gateway, db_url, aiohttp_client,
        providers={"openai": provider(url, timeouts={"idle": 0.4})}, routing={"keepalive_seconds": 0.05},
    )
    body = {"model": "openai/stalls-midstream", "messages": MSG, "stream": True}
    resp = await client.post("/v1/chat/completions", json=body, headers=auth)
    raw = await resp.read()
    assert resp.status == 200
    first, _, rest = raw.partition(b"\n\n")
    assert first.startswith(b"data: {")  # the first event, then comments while the upstream is silent
    assert rest.startswith(b": ARouter PROCESSING\n\n") and rest.count(b": ARouter PROCESSING") >= 2
    assert b'"finish_reason":"error"' in rest and raw.endswith(b"data: [DONE]\n\n")


async def test_translated_streams_keep_alive_and_time_out_too(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(
        gateway, db_url, aiohttp_client,
        providers={"openai": provider(url, timeouts={"first_token": 0.2})}, routing={"keepalive_seconds": 0.05},
    )
    body = {"model": "openai/slow-first", "max_tokens": 20, "stream": True, "messages": MSG}
    gateway.upstream.first_delay = 0.15  # within the first-token limit, beyond a few keep-alives
    resp = await client.post("/v1/messages", json=body, headers=auth)  # Anthropic client, OpenAI upstream
    raw = await resp.read()
    assert raw.startswith(b"event: ping\ndata: {\"type\":\"ping\"}\n\n") and b"event: message_stop" in raw
    from anthropic import AsyncAnthropic

    sdk = AsyncAnthropic(base_url=str(client.make_url("")).rstrip("/"), api_key=auth["Authorization"][7:],
                         max_retries=0)
    async with sdk.messages.stream(model="openai/slow-first", max_tokens=20, messages=MSG) as stream:  # type: ignore[arg-type]
        text = await stream.get_final_text()  # the SDK skips the pings sent while waiting
    await sdk.close()
    assert text == "Hello! How can I help you today?"
    gateway.upstream.first_delay = 0.3  # now beyond the first-token limit
    resp = await client.post("/v1/messages", json=body, headers=auth)
    raw = await resp.read()
    assert b"event: error" in raw and b"timeout_error" in raw  # committed by the keep-alives: reported in-band
    client2, auth2 = await client_for(
        gateway, db_url, aiohttp_client,
        providers={"openai": provider(url, timeouts={"first_token": 0.1})}, routing={"keepalive_seconds": 5},
    )
    resp = await client2.post("/v1/messages", json=body, headers=auth2)
    doc = await resp.json()
    assert resp.status == 504 and doc["error"]["type"] == "timeout_error"  # not committed: a clean 504


async def test_a_translated_stream_cut_short_is_billed_for_what_was_generated(gateway: Gateway) -> None:
    """The OpenAI upstream dies before its usage chunk: the prompt is estimated from the request and
    the output counted as one token per streamed delta, rather than billed as nothing."""
    key, _ = await gateway.new_key()
    body = {"model": "openai/dies-midstream", "max_tokens": 20, "stream": True, "messages": MSG}
    resp = await gateway.client.post("/v1/messages", json=body, headers={"x-api-key": key})
    raw = await resp.read()
    deltas = raw.count(b'"type":"text_delta"')
    assert b"event: error" in raw and deltas >= 2
    await gateway.app[RECORDER].flush()
    gen = await gateway.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.prompt_tokens is not None and gen.prompt_tokens > 0
    assert gen.completion_tokens is not None and gen.completion_tokens >= deltas and gen.cost > 0


async def test_embeddings_fall_back_and_retry_like_chat(gateway: Gateway, db_url: str, aiohttp_client: Any) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(
        gateway, db_url, aiohttp_client,
        providers={"dead": provider(DEAD), "backup": provider(url), "openai": provider(url, retries=2)},
        models={"dead/text-embedding-3-small": {"prompt": "9", "completion": "0", "kind": "embedding"},
                "backup/text-embedding-3-small": {"prompt": "0.02", "completion": "0", "kind": "embedding"}},
        routing={"breaker_failures": 100},  # "broken" must not take the provider out for the later requests
    )
    body = {"model": "dead/text-embedding-3-small", "models": ["openai/broken", "backup/text-embedding-3-small"],
            "input": "hi"}
    resp = await client.post("/v1/embeddings", json=body, headers=auth)
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-ARouter-Provider"] == "backup"
    assert resp.headers["X-ARouter-Model"] == "backup/text-embedding-3-small"
    await client.app[RECORDER].flush()
    gen = await client.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.provider == "backup" and gen.prompt_tokens == 5
    assert gen.cost == Decimal("0.0000001")  # 5 tokens at 0.02 USD per million: the one that answered
    # the dead one never answered; "broken" got its three tries (retries = 2), then the next candidate answered
    assert [s.body["model"] for s in gateway.upstream.seen] == ["broken"] * 3 + ["text-embedding-3-small"]

    resp = await client.post("/v1/embeddings", json={"model": "openai/flaky", "input": "hi"}, headers=auth)
    assert resp.status == 200 and gateway.upstream.calls["flaky"] == 3  # two 503s retried
    resp = await client.post("/v1/embeddings", json={"model": "openai/bad-request", "input": "hi",
                                                     "models": ["backup/text-embedding-3-small"]}, headers=auth)
    assert resp.status == 400 and gateway.upstream.calls["bad-request"] == 1  # not retried, not elsewhere
    body = {"model": "backup/text-embedding-3-small", "models": ["anthropic/claude-sonnet-4.6"], "input": "hi"}
    resp = await client.post("/v1/embeddings", json=body, headers=auth)
    assert resp.status == 400 and "anthropic-protocol provider" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1beta/models/openai/text-embedding-3-small:embedContent"])
async def test_embeddings_are_retried_on_another_deployment(
    gateway: Gateway, db_url: str, aiohttp_client: Any, path: str
) -> None:
    """A deployment that does not answer is taken out and the try repeated on another, for OpenAI's and
    Gemini's embedding endpoints alike (the dead one weighs 1,000 times more: it is almost always picked first)."""
    client, auth = await with_a_dead_deployment(gateway, db_url, aiohttp_client, dead_weight=1000, retries=2,
                                                breaker_failures=1)
    if path == "/v1/embeddings":
        body: dict[str, Any] = {"model": "openai/text-embedding-3-small", "input": "hi"}
    else:
        body = {"content": {"parts": [{"text": "hi"}]}}
    for _ in range(3):
        resp = await client.post(path, json=body, headers=auth)
        assert resp.status == 200, await resp.text()
    assert client.app[UPSTREAMS]._health[("openai", 0)].open_until > 0  # the dead deployment is out


async def test_token_counts_are_retried(aiohttp_server: Any, aiohttp_client: Any, db_url: str) -> None:
    """Anthropic's count_tokens and Gemini's countTokens try again on a failure worth retrying (a 529, a
    500), within the provider's ``retries``; a request the upstream refused (400) is not tried again."""
    anthropic, gemini = FakeAnthropic(), FakeGemini()
    anthropic_url = str((await aiohttp_server(anthropic.app())).make_url("")).rstrip("/")
    gemini_url = str((await aiohttp_server(gemini.app())).make_url("")).rstrip("/")
    retried = {"retries": 1, "retry_max_wait": 0.05, "allow_unlisted_models": True}
    settings = multi_settings(DEAD, anthropic_url, gemini_url, db_url, {"providers": {
        "anthropic": {"type": "anthropic", "base_url": anthropic_url, "api_key": "sk-ant-x", **retried},
        "google": {"type": "gemini", "base_url": gemini_url, "api_key": "AIza-x", **retried},
    }})
    client = await aiohttp_client(create_app(settings))
    resp = await client.post("/api/v1/keys", json={"name": "counts"}, headers={"Authorization": f"Bearer {MGMT_KEY}"})
    key = (await resp.json())["key"]

    for model, tries in (("anthropic/overloaded", 2), ("anthropic/bad-request", 1), ("anthropic/claude-x", 1)):
        before = len(anthropic.seen)
        resp = await client.post("/v1/messages/count_tokens", json={"model": model, "messages": MSG},
                                 headers={"x-api-key": key})
        assert len(anthropic.seen) - before == tries, model
        assert resp.status == {"anthropic/overloaded": 502, "anthropic/bad-request": 400}.get(model, 200), model
    for model, tries in (("broken", 2), ("bad-request", 1), ("gemini-2.5-flash", 1)):
        before = len(gemini.seen)
        body = {"contents": [{"parts": [{"text": "hi"}]}]}
        resp = await client.post(f"/v1beta/models/{model}:countTokens", json=body, headers={"x-goog-api-key": key})
        assert len(gemini.seen) - before == tries, model
        assert resp.status == {"broken": 502, "bad-request": 400}.get(model, 200), (model, await resp.text())


async def test_only_generations_time_a_provider(gateway: Gateway) -> None:
    """``provider.sort: latency`` orders by observed answer times: an embedding or a token count is
    no sign of how fast a provider generates, so it is not counted."""
    key, _ = await gateway.new_key()
    auth = {"Authorization": f"Bearer {key}"}
    upstreams = gateway.app[UPSTREAMS]
    resp = await gateway.client.post("/v1/embeddings", json={"model": "openai/text-embedding-3-small", "input": "hi"},
                                     headers=auth)
    assert resp.status == 200 and upstreams.latency("openai") is None
    resp = await gateway.client.post("/v1/chat/completions", json={"messages": MSG}, headers=auth)
    assert resp.status == 200 and upstreams.latency("openai") is not None


async def test_the_provider_proxy_moves_on_only_when_nothing_was_sent(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    """A deployment that cannot be connected to is tried no further (nothing of the request left, so
    another may take it); an answer, a 500 included, comes back as the provider sent it, once."""
    client, auth = await with_a_dead_deployment(gateway, db_url, aiohttp_client, dead_weight=1000, retries=2,
                                                breaker_failures=1)
    for _ in range(3):
        resp = await client.post("/openai/v1/chat/completions", json={"model": "gpt-4.1-mini", "messages": MSG},
                                 headers=auth)
        assert resp.status == 200, await resp.text()
    assert client.app[UPSTREAMS]._health[("openai", 0)].open_until > 0  # the dead deployment is out
    resp = await client.post("/openai/v1/chat/completions", json={"model": "broken", "messages": MSG}, headers=auth)
    assert resp.status == 500 and gateway.upstream.calls["broken"] == 1  # passed through, not tried again


@pytest.mark.parametrize("model, status", [("limited-then-ok", 429), ("flaky", 503)])
async def test_the_provider_proxy_tries_again_a_call_the_provider_did_not_take(
    gateway: Gateway, db_url: str, aiohttp_client: Any, model: str, status: int
) -> None:
    """A 429 or 503 says the provider did not take the call: tried again, paced by its Retry-After
    (capped by retry_max_wait), within provider.retries; the answer of the try that took it comes back."""
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(gateway, db_url, aiohttp_client, providers={"openai": provider(url, retries=2)})
    resp = await client.post("/openai/v1/chat/completions", json={"model": model, "messages": MSG}, headers=auth)
    assert resp.status == 200 and (await resp.json())["object"] == "chat.completion"
    assert gateway.upstream.calls[model] == (2 if status == 429 else 3)  # flaky refuses twice
    await client.app[RECORDER].flush()
    gen = await client.app[STORE].get_generation("default", resp.headers["X-Generation-Id"])
    assert gen is not None and gen.status == 200


async def test_the_provider_proxy_passes_a_refusal_on_when_no_try_is_left(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(gateway, db_url, aiohttp_client, providers={"openai": provider(url, retries=2)})
    resp = await client.post("/openai/v1/chat/completions", json={"model": "rate-limited", "messages": MSG},
                             headers=auth)
    assert resp.status == 429 and resp.headers["Retry-After"] == "7"  # the provider's own answer
    assert gateway.upstream.calls["rate-limited"] == 3  # the first try and two more
    gateway.upstream.flaky_failures = 5
    resp = await client.post("/openai/v1/chat/completions", json={"model": "flaky", "messages": MSG}, headers=auth)
    assert resp.status == 503 and gateway.upstream.calls["flaky"] == 3
    client, auth = await client_for(gateway, db_url, aiohttp_client,
                                    providers={"openai": provider(url, retries=2)}, routing={"retry_budget": 0})
    resp = await client.post("/openai/v1/chat/completions", json={"model": "rate-limited", "messages": MSG},
                             headers=auth)
    assert resp.status == 429 and gateway.upstream.calls["rate-limited"] == 4  # no budget for a wait: once
    assert resp.headers["X-ARouter-Cost"] == "0" and resp.headers["Retry-After"] == "7"


async def test_the_provider_proxy_passes_the_refusal_on_when_the_breaker_takes_the_deployment_out(
    gateway: Gateway, db_url: str, aiohttp_client: Any
) -> None:
    """A 503 counts toward the deployment's breaker; once it is out, the client gets the provider's own
    503 (not the gateway's "nothing to route to")."""
    url = gateway.upstream.url  # type: ignore[attr-defined]
    client, auth = await client_for(gateway, db_url, aiohttp_client, providers={"openai": provider(url, retries=3)},
                                    routing={"breaker_failures": 1, "breaker_cooldown": 60})
    gateway.upstream.flaky_failures = 5
    resp = await client.post("/openai/v1/chat/completions", json={"model": "flaky", "messages": MSG}, headers=auth)
    assert resp.status == 503 and gateway.upstream.calls["flaky"] == 1
    assert await resp.read() == upstream_fixture("error_500.json") and resp.headers["X-ARouter-Cost"] == "0"
