"""OpenAIStreamEncoder edge cases and the capability table."""

from __future__ import annotations

import orjson

from gateway.core.events import StreamEnd, StreamFailure, StreamStart, TextDelta, UsageReport
from gateway.core.request import ChatRequest, Message, Sampling, TextPart
from gateway.core.response import Finish, FinishReason, Usage
from gateway.errors import UpstreamRateLimited
from gateway.protocols.openai_chat.stream import DONE, OpenAIStreamEncoder
from gateway.providers.capabilities import check_params
from tests.translate.wire import openai_chunks


def encoder(include_usage: bool = False) -> OpenAIStreamEncoder:
    return OpenAIStreamEncoder(id="gen-x", created=5, model="p/m", provider="p", include_usage=include_usage)


def test_failure_before_any_delta_still_has_role_and_done() -> None:
    enc = encoder()
    err = UpstreamRateLimited("slow down", provider="p", upstream_status=429)
    raw = enc.feed(StreamFailure(err))
    chunks, done = openai_chunks(raw)
    assert done and len(chunks) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["error"] == {"code": 429, "message": "slow down", "type": "rate_limit_error"}
    assert enc.done and enc.feed(TextDelta("late")) == b""


def test_usage_unknown_means_no_usage_chunk() -> None:
    enc = encoder(include_usage=True)
    raw = enc.feed(StreamStart(id="u", created=1, model="m", provider="p")) + enc.feed(TextDelta("a"))
    raw += enc.feed(UsageReport(Usage())) + enc.feed(StreamEnd(Finish(FinishReason.LENGTH, "MAX_TOKENS")))
    chunks, done = openai_chunks(raw)
    assert done and raw.endswith(DONE) and raw.count(DONE) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["usage"] is None for c in chunks)


def test_reasoning_tokens_and_partial_usage() -> None:
    enc = encoder(include_usage=True)
    enc.feed(UsageReport(Usage(input_tokens=3, output_tokens=None)))
    raw = enc.feed(StreamEnd(Finish(FinishReason.STOP, None)))
    chunks, _ = openai_chunks(raw)
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}


def test_capability_table_drops_by_provider_type() -> None:
    req = ChatRequest(
        model="m",
        messages=(Message(role="user", parts=(TextPart(text="x"),)),),
        sampling=Sampling(seed=1, top_k=3, presence_penalty=0.5),
        user="u",
        extra={"openai": {"logit_bias": {}}},
    )
    _, warnings = check_params(req, "anthropic")
    assert [w.path for w in warnings] == ["seed", "presence_penalty", "logit_bias"]
    _, warnings = check_params(req, "gemini")
    assert [w.path for w in warnings] == ["user", "logit_bias"]
    _, warnings = check_params(req, "openai")
    assert [w.path for w in warnings] == ["top_k"]


def test_text_chunks_are_the_whole_chunk_encoded() -> None:
    """Text deltas after the first are written from a frame made once: the bytes must be what encoding
    each whole chunk gives, for any text, and with or without the usage field."""
    texts = ["plain", 'quote " and \\ backslash', "\x00 nul", "\u2028 line sep", "é ü 中文 🙂", "", "\x00text\x00"]
    for include_usage in (False, True):
        for model in ("p/m", "p/\x00text\x00"):  # a model name holding the frame's mark: encoded whole
            enc = OpenAIStreamEncoder(id="gen-x", created=5, model=model, provider="p", include_usage=include_usage)
            enc.feed(StreamStart(id="gen-x", created=5, model=model, provider="p"))
            base: dict[str, object] = {
                "id": "gen-x", "object": "chat.completion.chunk", "created": 5, "model": model, "provider": "p",
            }
            if include_usage:
                base["usage"] = None
            for text in texts:
                choice = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
                assert enc.feed(TextDelta(text)) == b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"
