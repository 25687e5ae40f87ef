"""Test helpers: read recorded SSE fixtures, run decoders, read back OpenAI SSE output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.core.events import StreamEvent
from gateway.providers.base import StreamDecoder

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return orjson.loads(fixture(name))


def sse_frames(raw: bytes) -> list[tuple[str | None, bytes]]:
    """Split an SSE body into (event name, data) pairs, as the relay would hand them to a decoder."""
    frames: list[tuple[str | None, bytes]] = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
        if data:
            frames.append((name, b"\n".join(data)))
    return frames


def decode(decoder: StreamDecoder, raw: bytes) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for name, data in sse_frames(raw):
        events.extend(decoder.feed(name, data))
    events.extend(decoder.close())
    return events


def openai_chunks(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The chunk objects of an OpenAI SSE body, validated by the SDK's pydantic model, and whether [DONE] ended it."""
    chunks: list[dict[str, Any]] = []
    done = False
    for _, data in sse_frames(raw):
        assert not done, "data after [DONE]"
        if data == b"[DONE]":
            done = True
            continue
        chunk = orjson.loads(data)
        if "error" not in chunk:  # finish_reason "error" is OpenRouter's extension, not in the SDK's Literal
            ChatCompletionChunk.model_validate(chunk)
        chunks.append(chunk)
    return chunks, done


def accumulate(raw: bytes) -> ChatCompletion:
    """What the official SDK's stream helper makes of an OpenAI SSE body."""
    state: ChatCompletionStreamState = ChatCompletionStreamState()
    chunks, _ = openai_chunks(raw)
    for chunk in chunks:
        if chunk.get("error"):
            continue
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()
