#!/usr/bin/env python3
"""Put the latest benchmark results into the README, between its bench markers.

Reads benchmarks/results/latest.md (benchmarks/run.py) and, when present, instructions.md
(benchmarks/instructions.py); headings are moved down under the README's "Benchmarks" section and
the chart's path made relative to the README. `make bench` runs it after the measurements.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def section(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    text = re.sub(r"^# .*\n+", "", text, count=1)  # the file's own title
    text = re.sub(r"^(#{2,3}) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.MULTILINE)
    return text.replace("](latest.png)", "](benchmarks/results/latest.png)")


def main() -> int:
    latest = RESULTS / "latest.md"
    if not latest.is_file():
        print("publish.py: no benchmarks/results/latest.md: run benchmarks/run.py first", file=sys.stderr)
        return 2
    parts = ["Latest `make bench` (benchmarks/results/latest.md):", "", section(latest)]
    instructions = RESULTS / "instructions.md"
    if instructions.is_file():
        parts += ["", "#### Instructions per request (benchmarks/results/instructions.md)", "", section(instructions)]
    readme = README.read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        print(f"publish.py: README.md has no {START} ... {END} block", file=sys.stderr)
        return 2
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + START + "\n" + "\n".join(parts) + "\n" + END + tail, encoding="utf-8")
    print("publish.py: README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
