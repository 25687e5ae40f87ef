"""Compiled modules (setup.py) older than their source: edited since `make` built them, so Python
still loads the old code. `arouter serve` warns about them; the test suite refuses to run."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def stale_modules(package: Path = PACKAGE) -> list[str]:
    """The compiled modules under ``package`` whose .py file changed after they were built."""
    stale = []
    for built in package.rglob("*.so"):
        if "__mypyc" in built.name:  # the shared library all of them load, not a module of its own
            continue
        source = built.with_name(built.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
            stale.append(str(source.relative_to(package.parent)))
    return sorted(stale)
