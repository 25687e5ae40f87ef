"""End to end with the official OpenAI Python SDK as the client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI, RateLimitError

from tests.conftest import Gateway
from tests.fakes.openai_upstream import EMBEDDING


@pytest.fixture
async def sdk(gateway: Gateway) -> AsyncIterator[AsyncOpenAI]:
    key, _ = await gateway.new_key()
    client = AsyncOpenAI(base_url=gateway.url("/v1"), api_key=key, max_retries=0)
    yield client
    await client.close()


async def test_chat(sdk: AsyncOpenAI) -> None:
    resp = await sdk.chat.completions.create(model="openai/gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "Hello! How can I help you today?"
    assert resp.usage is not None and resp.usage.total_tokens == 20


async def test_stream(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="openai/gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "Hello! How can I help you today?" and finish == "stop"
    assert usage is not None and usage.prompt_tokens == 11


async def test_stream_without_usage_never_yields_an_empty_choices_chunk(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="openai/gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)  # code that does chunk.choices[0] keeps working


async def test_tool_call_stream_accumulates(sdk: AsyncOpenAI) -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
    ]
    async with sdk.chat.completions.stream(
        model="openai/tool-model", messages=[{"role": "user", "content": "weather and time in Paris?"}],
        tools=tools,  # type: ignore[arg-type]
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and final.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("call_3bNzXr7mE2Qk9LwYc5TfUa1D", "get_weather", '{"location":"Paris, France","unit":"celsius"}'),
        ("call_9hVdKs2PqR4mXw8YtN1cLe6B", "get_time", '{"tz":"Europe/Paris"}'),
    ]


async def test_embeddings_with_the_sdk_default_base64(sdk: AsyncOpenAI, gateway: Gateway) -> None:
    resp = await sdk.embeddings.create(model="openai/text-embedding-3-small", input="The quick brown fox")
    assert gateway.upstream.seen[-1].body["encoding_format"] == "base64"  # the SDK's default, passed through
    assert resp.data[0].embedding == pytest.approx(EMBEDDING, rel=1e-6)
    assert resp.usage.prompt_tokens == 5


async def test_embeddings_base64_made_by_the_gateway(sdk: AsyncOpenAI, gateway: Gateway) -> None:
    resp = await sdk.embeddings.create(model="local/nomic-embed-text", input=["a", "b"])
    assert gateway.upstream.seen[-1].body["encoding_format"] == "float"  # this upstream can't do base64
    assert [d.embedding for d in resp.data] == [pytest.approx(EMBEDDING, rel=1e-6)] * 2


async def test_embeddings_float(sdk: AsyncOpenAI) -> None:
    resp = await sdk.embeddings.create(
        model="openai/text-embedding-3-small", input="fox", encoding_format="float"
    )
    assert resp.data[0].embedding == pytest.approx(EMBEDDING)


async def test_models(sdk: AsyncOpenAI) -> None:
    ids = [m.id async for m in sdk.models.list()]
    assert "openai/gpt-4.1-mini" in ids and "anthropic/claude-sonnet-4.6" in ids
    model = await sdk.models.retrieve("openai/gpt-4.1-mini")
    assert model.owned_by == "openai"
    assert model.model_extra is not None and model.model_extra["context_length"] == 1047576
    assert model.model_extra["pricing"] == {"prompt": "0.0000004", "completion": "0.0000016"}


async def test_rate_limit_reaches_the_sdk_as_its_own_error(sdk: AsyncOpenAI) -> None:
    with pytest.raises(RateLimitError) as info:
        await sdk.chat.completions.create(model="openai/rate-limited", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "7"
