"""Build hook: the gateway's pure, synchronous code (the protocol translators, the provider adapters,
the SSE cutter, the usage readers, pricing and the limit arithmetic) compiled to C with mypyc, the
way aiohttp, yarl and multidict ship their hot paths; setuptools reads everything else from
pyproject.toml.

The compiled modules are the same source, type-checked with mypy --strict: Python imports the
extension when it is there and the .py file otherwise (``AROUTER_COMPILE=0`` builds none). Only
modules that never await are compiled: with the request path's coroutines compiled too, exception
state leaked from one request to the next (a cancelled stream's CancelledError turned up as the
context of the next request's error, and some 400 tests failed), and the cancellation and cleanup of
streams depend on Python's own semantics there.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from setuptools import setup

ROOT = Path(__file__).resolve().parent
COMPILED = (
    "gateway/sse.py",
    "gateway/core/*.py",
    "gateway/protocols/**/*.py",
    "gateway/providers/**/*.py",
    "gateway/pipeline/openai_usage.py",
    "gateway/pipeline/anthropic_usage.py",
    "gateway/pipeline/gemini_usage.py",
    "gateway/pipeline/usage_sniff.py",
    "gateway/pipeline/capture.py",
    "gateway/pipeline/context.py",
    "gateway/pipeline/journal.py",
    "gateway/billing/pricing.py",
    "gateway/billing/holds.py",
    "gateway/admission/lease.py",
    "gateway/ratelimit/gcra.py",
    "gateway/routing/*.py",
    "gateway/auth/apikey.py",
    "gateway/cache/records.py",
    "gateway/idempotency/records.py",
    "gateway/endusers/windows.py",
    "gateway/alerts/rules.py",
    "gateway/metrics.py",
    "gateway/web/accounting.py",
)
AWAITS = re.compile(r"\basync\s+def\b|\bawait\b")


def sources() -> list[str]:
    found = sorted({str(p.relative_to(ROOT)) for pattern in COMPILED for p in ROOT.glob(pattern)})
    paths = [p for p in found if not p.endswith("__init__.py")]
    awaiting = [p for p in paths if AWAITS.search((ROOT / p).read_text(encoding="utf-8"))]
    if awaiting:
        raise SystemExit(f"setup.py: modules that await are never compiled; take these out of COMPILED: {awaiting}")
    return paths


def missing_for_mypyc() -> list[str]:
    """mypyc type-checks the modules with everything they import, which reaches every dependency: the
    distributions (mypy, which brings mypyc, and pyproject.toml's dependencies) not installed here.
    None are missing in the venv `make` compiles in; all are in pip's isolated build environment."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    missing = []
    for name in ["mypy", *(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0] for spec in declared)]:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def extensions() -> list[Any]:
    if os.environ.get("AROUTER_COMPILE", "1") == "0":
        return []
    missing = missing_for_mypyc()
    if missing or shutil.which(os.environ.get("CC", "cc")) is None:
        why = f"{', '.join(missing)} not installed" if missing else "no C compiler"
        print(f"setup.py: not compiling ({why}): arouter runs as plain Python, 1-19% more instructions per request")
        return []
    from mypyc.build import mypycify

    built = mypycify(sources(), opt_level="2", multi_file=True, group_name="gateway.native")
    for ext in built:  # the group's header is written below build/gateway and included by its bare name
        ext.include_dirs.append(os.path.join("build", "gateway"))
    return built


def parallel_compile(self: Any, sources: list[str], output_dir: str | None = None, macros: Any = None,
                     include_dirs: Any = None, debug: bool = False, extra_preargs: Any = None,
                     extra_postargs: Any = None, depends: Any = None) -> list[str]:
    """CCompiler.compile with one extension's C files compiled side by side, one per core."""
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def one(obj: str) -> None:
        src, ext = build[obj]
        self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

    with ThreadPoolExecutor(len(os.sched_getaffinity(0)) or 1) as pool:
        list(pool.map(one, [o for o in objects if o in build]))
    return objects


def use_every_core() -> None:
    from distutils.ccompiler import CCompiler  # setuptools' own distutils, once setuptools is imported

    CCompiler.compile = parallel_compile


def mark_current() -> None:
    """After an in-place build every compiled module is its source's current build, even one whose C
    was left as it was (its source was touched, not changed): say so by its time, which is what
    gateway/compiled.py compares."""
    for path in sources():
        for built in (ROOT / path).parent.glob(Path(path).stem + ".*.so"):
            built.touch()


if __name__ == "__main__":  # pip's build backend and `python setup.py` (tests import sources() alone)
    use_every_core()
    built = extensions()
    setup(ext_modules=built)
    if built and "--inplace" in sys.argv:
        mark_current()
