"""Per-chunk cost of the stream relay's pure parts, in-process: `.venv/bin/python benchmarks/micro.py`.

- passthrough: EventCutter + the OpenAI usage tap over the recorded 22-chunk stream, fed one event
  per read (the common case) and in 97-byte fragments (the worst case);
- translated: the Anthropic decoder + the OpenAI encoder over a recorded Anthropic stream.
Figures are microseconds per chunk (event), best of 5 runs; they exclude socket I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gateway.pipeline.openai_usage import StreamTap
from gateway.protocols.openai_chat.stream import OpenAIStreamEncoder
from gateway.providers import adapter_for
from gateway.providers.base import CallContext
from gateway.sse import EventCutter, event_data, iter_events

ROOT = Path(__file__).resolve().parent.parent
OPENAI = (ROOT / "benchmarks" / "fixtures" / "stream.sse").read_bytes()
ANTHROPIC = (ROOT / "tests" / "translate" / "fixtures" / "anthropic" / "tool_use.sse").read_bytes()


def best(fn: Callable[[], int], rounds: int = 5, repeat: int = 300) -> float:
    """Best microseconds per event over ``rounds`` runs of ``repeat`` streams."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        events = 0
        for _ in range(repeat):
            events += fn()
        results.append((time.perf_counter() - start) / events * 1e6)
    return min(results)


def passthrough(pieces: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        cutter, tap = EventCutter(), StreamTap(strip_usage=True)
        n = 0
        for piece in pieces:
            block = cutter.feed(piece)
            if block:
                tap.inspect(block, cutter.separator)
                n += block.count(b"\n\n")
        return n

    return run


def translated() -> int:
    decoder = adapter_for("anthropic", "anthropic").stream_decoder(CallContext(id="gen-1", created=1, model="m"))
    encoder = OpenAIStreamEncoder(id="gen-1", created=1, model="anthropic/m", provider="anthropic", include_usage=True)
    n = 0
    for event in iter_events(ANTHROPIC, b"\n\n"):
        data = event_data(event)
        if data is None:
            continue
        name = next((line[6:].strip().decode() for line in event.splitlines() if line.startswith(b"event:")), None)
        for ev in decoder.feed(name, data):
            encoder.feed(ev)
        n += 1
    for ev in decoder.close():
        encoder.feed(ev)
    return n


def main() -> None:
    per_event = [e + b"\n\n" for e in OPENAI.split(b"\n\n") if e]
    fragments = [OPENAI[i : i + 97] for i in range(0, len(OPENAI), 97)]
    print(f"passthrough, one event per read:   {best(passthrough(per_event)):6.2f} µs per event")
    print(f"passthrough, 97-byte fragments:    {best(passthrough(fragments)):6.2f} µs per event")
    print(f"translated (Anthropic -> OpenAI):  {best(translated):6.2f} µs per event")


if __name__ == "__main__":
    main()
