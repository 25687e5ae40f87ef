"""The relay's pure parts: event cutting, the usage tap, pricing, key format."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.auth.apikey import hash_key, kind_of, new_key
from gateway.billing.pricing import request_cost
from gateway.pipeline.context import RandomIds
from gateway.pipeline.journal import from_line, to_line
from gateway.pipeline.openai_usage import StreamTap
from gateway.settings import ModelSettings
from gateway.sse import EventCutter, event_data, event_fields, event_name
from gateway.store.base import Generation
from tests.fakes.openai_upstream import fixture

STREAM = fixture("chat_stream.sse")


LINES = st.sampled_from([b"event: message_start", b"event:delta", b"data: {\"a\": 1}", b"data:x", b"data:",
                         b"data:  two", b": comment", b"id: 7", b"retry: 10", b"event: \xff", b"plain"])


def reference_fields(lines: list[bytes]) -> tuple[str | None, bytes | None]:
    """The SSE rules, line by line: the first ``event:`` value, stripped; the ``data:`` values (one
    leading space removed) joined with newlines."""
    names = [line[6:].strip().decode("utf-8", "replace") for line in lines if line.startswith(b"event:")]
    data = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
    return (names[0] if names else None), (b"\n".join(data) if data else None)


@given(st.lists(LINES, max_size=6), st.sampled_from([b"\n", b"\r\n"]))
@example([b"event: message_start", b"data: {\"a\": 1}"], b"\n")  # the usual shape
@example([b"event:delta", b"data:x"], b"\n")
@example([b"event: message_start", b"data:  two"], b"\n")
def test_an_events_name_and_data_are_read_by_the_sse_rules(lines: list[bytes], eol: bytes) -> None:
    event = eol.join(lines)
    name, data = reference_fields(lines)
    assert event_fields(event) == (name, data)
    assert event_name(event) == name and event_data(event) == data


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=30))
def test_cutter_forwards_only_whole_events_and_loses_nothing(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    cutter = EventCutter()
    out = b""
    for piece in pieces:
        block = cutter.feed(piece)
        assert block == b"" or block.endswith(b"\n\n")
        out += block
    assert out == STREAM and cutter.rest() == b""


def test_cutter_forwards_the_same_object_when_aligned() -> None:
    cutter = EventCutter()
    event = b'data: {"a":1}\n\n'
    assert cutter.feed(event) is event


def test_cutter_handles_crlf_streams() -> None:
    cutter = EventCutter()
    assert cutter.feed(b"data: 1\r\n\r\ndata: 2\r") == b"data: 1\r\n\r\n"
    assert cutter.feed(b"\n\r\n") == b"data: 2\r\n\r\n"


def test_tap_reads_usage_and_finish_and_strips_when_asked() -> None:
    tap = StreamTap(strip_usage=True)
    out = tap.inspect(STREAM, b"\n\n")
    assert tap.done and tap.usage.prompt_tokens == 11 and tap.usage.completion_tokens == 9
    assert tap.usage.total_tokens == 20 and tap.usage.finish_reason == "stop"
    assert b'"choices":[]' not in out and out.endswith(b"data: [DONE]\n\n")
    keep = StreamTap(strip_usage=False)
    assert keep.inspect(STREAM, b"\n\n") is STREAM


@given(st.lists(st.booleans(), min_size=1), st.booleans(), st.booleans())
def test_tap_output_does_not_depend_on_how_events_are_grouped(breaks: list[bool], strip: bool, crlf: bool) -> None:
    """Blocks of any number of whole events give the same bytes and usage as one event at a time."""
    sep = b"\r\n\r\n" if crlf else b"\n\n"
    events = [e + sep for e in STREAM.split(b"\n\n") if e]
    blocks: list[bytes] = []
    for i, event in enumerate(events):
        if not blocks or breaks[i % len(breaks)]:
            blocks.append(event)
        else:
            blocks[-1] += event

    def run(pieces: list[bytes]) -> tuple[bytes, object]:
        tap = StreamTap(strip_usage=strip, price=lambda usage: Decimal("0.000123"))
        out = b"".join(tap.inspect(piece, sep) for piece in pieces)
        return out, (tap.done, tap.fragments, tap.usage.prompt_tokens, tap.usage.total_tokens, tap.usage.finish_reason)

    one_by_one = run(events)
    assert run(blocks) == one_by_one
    out = one_by_one[0]
    usage_only = [e for e in events if b'"choices":[]' in e]
    assert len(usage_only) == 1
    if strip:
        assert out == b"".join(e for e in events if e not in usage_only)
    else:
        priced = usage_only[0].replace(b'"usage":{', b'"usage":{"cost":0.000123,', 1)
        assert out == b"".join(priced if e in usage_only else e for e in events)


def spaced_stream() -> list[bytes]:
    """A two-choice stream as a serializer with spaces after colons writes it (Python's json.dumps)."""
    def chunk(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
        doc = {"id": "c1", "object": "chat.completion.chunk", "choices": choices, "usage": usage}
        return b"data: " + json.dumps(doc).encode() + b"\n\n"

    def delta(index: int, text: str, finish: str | None = None) -> dict[str, object]:
        return {"index": index, "delta": {"content": text}, "finish_reason": finish}

    return [chunk([delta(0, "a"), delta(1, "b")]), chunk([delta(0, "c", "length")]), chunk([delta(1, "", "stop")]),
            chunk([], {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}), b"data: [DONE]\n\n"]


@pytest.mark.parametrize("strip", [False, True])
def test_tap_reads_spaced_json_and_every_marked_event_in_a_block(strip: bool) -> None:
    events = spaced_stream()
    assert b'"usage": {' in events[3] and b'"finish_reason": "' in events[1]

    def run(blocks: list[bytes]) -> tuple[bytes, object]:
        tap = StreamTap(strip_usage=strip, price=lambda usage: Decimal("0.5"))
        out = b"".join(tap.inspect(block, b"\n\n") for block in blocks)
        return out, (tap.done, tap.usage.prompt_tokens, tap.usage.total_tokens, tap.usage.finish_reason)

    whole = run([b"".join(events)])
    assert whole == run(events)
    out, seen = whole
    assert seen == (True, 4, 7, "stop")  # the last finish reason read wins
    compact = StreamTap(strip_usage=strip)
    compact.inspect(b"".join(b"data: " + json.dumps(json.loads(e[6:]), separators=(",", ":")).encode() + b"\n\n"
                             for e in events[:4]), b"\n\n")
    spaced = StreamTap(strip_usage=strip)
    for event in events:
        spaced.inspect(event, b"\n\n")
    assert spaced.fragments == compact.fragments == 4  # a, b, c and the closing empty content: a cut-short estimate
    usage_event = events[3].replace(b'"usage": {', b'"usage": {"cost":0.5,', 1)
    assert out == b"".join(events[:3] + ([] if strip else [usage_event]) + events[4:])


def test_tap_sees_done_wherever_it_is_in_the_block() -> None:
    tap = StreamTap(strip_usage=False)
    block = b"data: [DONE]\n\n: a comment after it\n\n"
    assert tap.inspect(block, b"\n\n") is block and tap.done


def test_tap_ignores_null_usage_chunks() -> None:
    tap = StreamTap(strip_usage=True)
    event = b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":null}\n\n'
    assert tap.inspect(event, b"\n\n") is event and tap.usage.prompt_tokens is None


def model(prompt: str, completion: str) -> ModelSettings:
    return ModelSettings(id="p/m", provider="p", upstream_id="m", name="m", prompt=Decimal(prompt),
                         completion=Decimal(completion))


def test_cost_is_exact_decimal() -> None:
    assert request_cost(model("0.40", "1.60"), 11, 9) == Decimal("0.0000188")
    assert request_cost(model("3", "15"), 1_000_000, 1_000_000) == Decimal("18")
    assert request_cost(model("0.1", "0.2"), 1, 1) == Decimal("0.0000003")
    assert request_cost(model("0.00001", "0"), 1, 0) == Decimal("0")  # 1e-11 rounds half-even to 0
    assert request_cost(None, 100, 100) == Decimal(0)
    assert request_cost(model("1", "1"), None, None) == Decimal(0)


def test_keys_have_32_random_bytes_and_hash_ids() -> None:
    a, b = new_key("live"), new_key("mgmt")
    assert a.secret.startswith("lr_live_") and b.secret.startswith("lr_mgmt_")
    assert len(a.secret) - len("lr_live_") >= 43  # 32 bytes url-safe base64
    assert a.hash == hash_key(a.secret) and len(a.hash) == 64 and a.secret != b.secret
    assert kind_of(a.secret) == "live" and kind_of(b.secret) == "mgmt" and kind_of("sk-x") is None


def test_cache_reasoning_and_request_prices() -> None:
    import dataclasses

    from gateway.pipeline.openai_usage import Usage

    m = dataclasses.replace(model("3", "15"), cache_read=Decimal("0.30"), cache_write=Decimal("3.75"),
                            reasoning=Decimal("20"), request=Decimal("0.001"))
    # 1000 input of which 600 read from cache and 100 written; 500 output of which 200 reasoning
    cost = request_cost(m, 1000, 500, cache_read=600, cache_write=100, reasoning=200)
    assert cost == Decimal("0.001") + (300 * 3 + 600 * Decimal("0.30") + 100 * Decimal("3.75") + 300 * 15
                                       + 200 * 20) / Decimal(1_000_000)
    assert request_cost(model("3", "15"), 1000, 500, cache_read=600) == Decimal("0.0105")  # unpriced: prompt price
    assert request_cost(m, None, None) == 0  # no usage, no per-request fee
    usage = Usage()
    usage.take({"prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 600},
                "completion_tokens_details": {"reasoning_tokens": 200}})
    assert (usage.cache_read, usage.reasoning) == (600, 200)
    assert usage.cost(m) == request_cost(m, 1000, 500, cache_read=600, reasoning=200)


def test_a_hold_covers_the_dearest_prices() -> None:
    import dataclasses

    from gateway.billing.holds import hold_for

    m = dataclasses.replace(model("3", "15"), cache_write=Decimal("3.75"), reasoning=Decimal("20"),
                            request=Decimal("0.001"))
    hold = hold_for(m, 1000, 500)
    assert hold == Decimal("0.001") + (1000 * Decimal("3.75") + 500 * 20) / Decimal(1_000_000)
    worst = request_cost(m, 1000, 500, cache_write=1000, reasoning=500)
    assert worst <= hold


def test_random_ids_are_unique_across_refills() -> None:
    ids = RandomIds()
    drawn = [ids.new("gen-") for _ in range(2000)]  # several 4 KiB refills
    assert len(set(drawn)) == 2000
    assert all(len(i) == 28 and i.startswith("gen-") and int(i[4:], 16) >= 0 for i in drawn)


def test_ordered_ids_sort_by_their_time() -> None:
    now = [1795315561.25]
    ids = RandomIds(clock=lambda: now[0])
    first = [ids.ordered("gen-") for _ in range(500)]  # the same microsecond: random, and unique
    now[0] = 1795315561.250_001_5  # the next microsecond (0x3d091)
    next_micro = [ids.ordered("gen-") for _ in range(500)]
    now[0] = 1795315561.999_999_7  # the second's last microsecond (as close to the next second as a float gets)
    last = [ids.ordered("gen-") for _ in range(500)]
    now[0] = 1795315562.0
    later = [ids.ordered("gen-") for _ in range(500)]
    assert len(set(first + next_micro + last + later)) == 2000
    assert all(i.startswith("gen-1795315561-3d090") and len(i) == 39 for i in first)  # 250000 µs = 0x3d090
    assert all(i.startswith("gen-1795315561-f423f") for i in last)  # 999999 µs, never 1000000
    assert all(int(i.rsplit("-", 1)[1], 16) >= 0 for i in first + later)
    assert max(first) < min(next_micro) and max(next_micro) < min(last) and max(last) < min(later)


@given(
    cost=st.decimals(min_value=0, max_value=10**6, places=10, allow_nan=False),
    tokens=st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)),
    title=st.one_of(st.none(), st.text(max_size=50)),
)
def test_journal_lines_read_back_exactly(cost: Decimal, tokens: int | None, title: str | None) -> None:
    row = Generation(
        id="gen-1", request_id="req_1", tenant_id="default", key_hash="h" * 64, endpoint="chat", model="p/m",
        provider="p", upstream_model="m", status=200, streamed=True, cancelled=False, prompt_tokens=tokens,
        completion_tokens=tokens, total_tokens=None, cost=cost, latency_ms=12, ttft_ms=None, finish_reason="stop",
        app_title=title, app_referer=None, created_at=datetime(2026, 11, 22, 5, 42, 12, 206920, tzinfo=UTC),
    )
    line = to_line(row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\0" not in line  # the journal's zero tail ends it
    back = from_line(line)
    assert back == row and str(back.cost) == str(cost)
