"""Per-chunk cost of the stream relay's pure parts, in-process: `.venv/bin/python benchmarks/micro.py`.

- passthrough: EventCutter + the OpenAI usage tap over the recorded 22-chunk stream, fed one event
  per read (the common case) and in 97-byte fragments (the worst case);
- translated: the Anthropic decoder + the OpenAI encoder over an Anthropic stream: the benchmark's
  text stream (`fixtures/anthropic_stream.sse`, 19 text deltas) and a recorded tool-use stream.
Figures are microseconds per chunk (event), best of 5 runs; they exclude socket I/O.
`--json` prints them as one JSON object instead (run.py puts them in the report).
"""

from __future__ import annotations

import argparse
import json
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
ANTHROPIC_TEXT = (ROOT / "benchmarks" / "fixtures" / "anthropic_stream.sse").read_bytes()
ANTHROPIC_TOOL = (ROOT / "tests" / "translate" / "fixtures" / "anthropic" / "tool_use.sse").read_bytes()


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


def translated(stream: bytes) -> Callable[[], int]:
    return lambda: translate(stream)


def translate(stream: bytes) -> int:
    decoder = adapter_for("anthropic", "anthropic").stream_decoder(CallContext(id="gen-1", created=1, model="m"))
    encoder = OpenAIStreamEncoder(id="gen-1", created=1, model="anthropic/m", provider="anthropic", include_usage=True)
    n = 0
    for event in iter_events(stream, b"\n\n"):
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--rounds", type=int, default=5, help="runs per figure; the best is kept")
    args = ap.parse_args()
    per_event = [e + b"\n\n" for e in OPENAI.split(b"\n\n") if e]
    fragments = [OPENAI[i : i + 97] for i in range(0, len(OPENAI), 97)]
    figures = {
        "passthrough_event": best(passthrough(per_event), args.rounds),
        "passthrough_fragments": best(passthrough(fragments), args.rounds),
        "translated_text": best(translated(ANTHROPIC_TEXT), args.rounds),
        "translated_tool_use": best(translated(ANTHROPIC_TOOL), args.rounds),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"passthrough, one event per read:   {figures['passthrough_event']:6.2f} µs per event")
    print(f"passthrough, 97-byte fragments:    {figures['passthrough_fragments']:6.2f} µs per event")
    print(f"translated (Anthropic text):       {figures['translated_text']:6.2f} µs per event")
    print(f"translated (Anthropic tool use):   {figures['translated_tool_use']:6.2f} µs per event")


if __name__ == "__main__":
    main()
