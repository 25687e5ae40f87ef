"""The google-genai SDK against the gateway's Gemini API, with three upstream protocols behind it.

A Gemini-type upstream is passed through (same JSON, the model in the path rewritten, the provider's
own key); OpenAI- and Anthropic-type upstreams are translated. Both the SDK's explicit ``v1beta`` and
its default API version (``v1`` in google-genai 3.x) are exercised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from gateway.state import RECORDER, STORE
from tests.fakes.gemini_upstream import EMBEDDING
from tests.fakes.multi_upstream import GEMINI_KEY, MultiGateway, start_gateway

UPSTREAMS = ["gemini", "openai", "anthropic"]
MODEL = {"gemini": "gemini-2.5-flash", "openai": "openai/gpt-4.1-mini", "anthropic": "anthropic/claude-sonnet-4.6"}
HELLO = "Hello! How can I help you today?"
STREAM_TEXT = {"openai": HELLO, "anthropic": "Hello! How can I help?", "gemini": "The capital of France is Paris."}
USAGE = {"openai": (11, 9, 20), "anthropic": (12, 12, 24), "gemini": (5, 9, 14)}
COST = {"openai": Decimal("0.0000188"), "anthropic": Decimal("0.000216"), "gemini": Decimal("0.000024")}
EMBED_MODELS = {"google/gemini-embedding-001": {"prompt": "0.15", "completion": "0", "kind": "embedding"}}


@pytest.fixture
async def gw(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> MultiGateway:
    return await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}",
                               {"models": EMBED_MODELS})


@pytest.fixture(params=["v1beta", None], ids=["v1beta", "default-version"])
async def client(request: pytest.FixtureRequest, gw: MultiGateway) -> AsyncIterator[genai.Client]:
    key = await gw.new_key()
    async with aiohttp.ClientSession() as session:  # the SDK's own session subclasses ClientSession (warns)
        options = types.HttpOptions(base_url=gw.url("/"), aiohttp_client=session)
        if request.param:
            options.api_version = request.param
        c = genai.Client(api_key=key, http_options=options)
        c.gateway_key = key  # type: ignore[attr-defined]
        yield c
        await c.aio.aclose()


def gateway_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def generation(gw: MultiGateway, gen_id: str) -> Any:
    await gw.app[RECORDER].flush()
    gen = await gw.app[STORE].get_generation("default", gen_id)
    assert gen is not None
    return gen


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_generate_content(upstream: str, gw: MultiGateway, client: genai.Client) -> None:
    resp = await client.aio.models.generate_content(
        model=MODEL[upstream], contents="hi", config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert resp.text == HELLO
    assert resp.candidates and resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.usage_metadata is not None and resp.usage_metadata.prompt_token_count == USAGE[upstream][0]
    assert resp.sdk_http_response is not None and resp.sdk_http_response.headers is not None
    headers = gateway_headers(resp.sdk_http_response.headers)
    assert Decimal(headers["x-arouter-cost"]) == COST[upstream]
    gen = await generation(gw, headers["x-generation-id"])
    assert gen.status == 200 and not gen.streamed and gen.finish_reason == "stop"
    assert (gen.prompt_tokens, gen.completion_tokens, gen.total_tokens) == USAGE[upstream]
    assert gen.cost == COST[upstream] and gen.endpoint == "gemini_generate"
    if upstream == "gemini":
        seen = gw.gemini.seen[-1]
        assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"  # whatever version the client used
        assert seen.body["contents"] == [{"parts": [{"text": "hi"}], "role": "user"}]
        assert seen.body["systemInstruction"] == {"parts": [{"text": "Be brief."}], "role": "user"}
        lower = gateway_headers(seen.headers)
        assert lower["x-goog-api-key"] == GEMINI_KEY
        assert all(client.gateway_key not in v for v in lower.values())  # type: ignore[attr-defined]
        assert seen.query == {}
    elif upstream == "openai":
        body = gw.openai.seen[-1].body
        assert body["model"] == "gpt-4.1-mini" and body["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        body = gw.anthropic.seen[-1].body
        assert body["model"] == "claude-sonnet-4-6" and body["system"] == "Be brief."


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_generate_content_stream(upstream: str, gw: MultiGateway, client: genai.Client) -> None:
    chunks = [c async for c in await client.aio.models.generate_content_stream(model=MODEL[upstream], contents="hi")]
    assert "".join(c.text or "" for c in chunks) == STREAM_TEXT[upstream]
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count
    assert last.sdk_http_response is not None and last.sdk_http_response.headers is not None
    gen = await generation(gw, gateway_headers(last.sdk_http_response.headers)["x-generation-id"])
    assert gen.status == 200 and gen.streamed and gen.finish_reason == "stop"
    assert gen.prompt_tokens and gen.completion_tokens and gen.cost > 0 and gen.ttft_ms is not None
    if upstream == "gemini":
        seen = gw.gemini.seen[-1]
        assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        assert seen.query == {"alt": "sse"}
        assert (gen.prompt_tokens, gen.completion_tokens, gen.total_tokens) == (9, 31, 40)


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_count_tokens(upstream: str, gw: MultiGateway, client: genai.Client) -> None:
    resp = await client.aio.models.count_tokens(model=MODEL[upstream], contents="How many tokens is this?")
    if upstream == "gemini":
        assert resp.total_tokens == 31
        seen = gw.gemini.seen[-1]
        assert seen.path == "/v1beta/models/gemini-2.5-flash:countTokens"
        assert gateway_headers(seen.headers)["x-goog-api-key"] == GEMINI_KEY
    else:
        assert resp.total_tokens is not None and resp.total_tokens > 6  # the offline estimate, never zero
    assert resp.sdk_http_response is not None and resp.sdk_http_response.headers is not None
    assert "x-generation-id" not in gateway_headers(resp.sdk_http_response.headers)  # free: nothing recorded


@pytest.mark.parametrize(
    "model", ["google/gemini-embedding-001", "gemini-embedding-001", "openai/text-embedding-3-small"]
)
async def test_embed_content(model: str, gw: MultiGateway, client: genai.Client) -> None:
    resp = await client.aio.models.embed_content(model=model, contents=["first text", "second text"])
    assert resp.embeddings is not None and len(resp.embeddings) == 2
    values = resp.embeddings[0].values
    assert values is not None
    if model.startswith("openai/"):
        body = gw.openai.seen[-1].body
        assert gw.openai.seen[-1].path == "/v1/embeddings"
        assert body == {"model": "text-embedding-3-small", "input": ["first text", "second text"],
                        "encoding_format": "float"}
        assert values == pytest.approx([0.0023064255, -0.009327292, 0.015797347, -0.0077780345, -0.0046922187,
                                        0.014775125, -0.0033006603, 0.0112])
    else:
        seen = gw.gemini.seen[-1]
        assert seen.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        assert [r["model"] for r in seen.body["requests"]] == ["models/gemini-embedding-001"] * 2
        assert values == pytest.approx(EMBEDDING)
    assert resp.sdk_http_response is not None and resp.sdk_http_response.headers is not None
    headers = gateway_headers(resp.sdk_http_response.headers)
    gen = await generation(gw, headers["x-generation-id"])
    assert gen.status == 200 and gen.endpoint == "gemini_embed"
    if model == "google/gemini-embedding-001":
        assert gen.prompt_tokens == 8 and gen.cost == Decimal("0.0000012") == Decimal(headers["x-arouter-cost"])
    elif model.startswith("openai/"):
        assert gen.prompt_tokens == 5


async def test_embed_content_on_anthropic_is_invalid(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as exc:
        await client.aio.models.embed_content(model="anthropic/claude-sonnet-4.6", contents="x")
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"


async def test_models_list_and_get(client: genai.Client) -> None:
    names = {m.name: m async for m in await client.aio.models.list()}
    assert "models/gemini-2.5-flash" in names and "models/openai/gpt-4.1" in names
    flash = names["models/gemini-2.5-flash"]
    assert flash.supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    assert names["models/gemini-embedding-001"].supported_actions == ["embedContent", "batchEmbedContents"]
    got = await client.aio.models.get(model="openai/gpt-4.1")
    assert got.name == "models/openai/gpt-4.1" and got.display_name


async def test_errors_reach_the_sdk(client: genai.Client) -> None:
    with pytest.raises(errors.ServerError) as server:
        await client.aio.models.generate_content(model="google/broken", contents="hi")
    assert server.value.code == 502 and server.value.status == "UNAVAILABLE"
    with pytest.raises(errors.ClientError) as limited:
        await client.aio.models.generate_content(model="google/rate-limited", contents="hi")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    used = client._api_client._http_options
    bad = genai.Client(api_key="lr_live_" + "x" * 43,
                       http_options=types.HttpOptions(base_url=used.base_url, aiohttp_client=used.aiohttp_client))
    with pytest.raises(errors.ClientError) as unauth:
        await bad.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert unauth.value.code == 401 and unauth.value.status == "UNAUTHENTICATED"
