"""Test helpers: fixtures, SSE framing, and reading Anthropic SSE back with the anthropic SDK's types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.translate.wire import decode, sse_frames  # noqa: F401  (re-exported for these tests)

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
REPO_FIXTURES = HERE.parent / "fixtures"
_EVENTS: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return orjson.loads(fixture(name))


def repo_fixture(name: str) -> bytes:
    return (REPO_FIXTURES / name).read_bytes()


def anthropic_events(raw: bytes) -> list[dict[str, Any]]:
    """The event objects of an Anthropic SSE body; checks framing (name == type) and each event's SDK type."""
    assert raw.endswith(b"\n\n")
    events: list[dict[str, Any]] = []
    for name, data in sse_frames(raw):
        doc = orjson.loads(data)
        assert name == doc["type"], (name, doc)
        if doc["type"] not in ("ping", "error"):
            _EVENTS.validate_python(doc)
        events.append(doc)
    return events


def check_grammar(events: list[dict[str, Any]]) -> None:
    """message_start first; blocks start/delta*/stop with indexes 0, 1, ... and no interleaving; then
    message_delta and message_stop last."""
    kinds = [e["type"] for e in events if e["type"] != "ping"]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    open_index: int | None = None
    next_index = 0
    for event in events[1:-2]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None and event["index"] == next_index
            open_index = event["index"]
            next_index += 1
        elif kind == "content_block_delta":
            assert event["index"] == open_index
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
        else:
            raise AssertionError(f"unexpected {kind} inside the message")
    assert open_index is None


def accumulate(events: list[dict[str, Any]]) -> Message:
    """The final message as the anthropic SDK's stream helper builds it."""
    snapshot: Any = None
    bufs: dict[int, bytes] = {}
    for doc in events:
        if doc["type"] in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=_EVENTS.validate_python(doc), current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())
