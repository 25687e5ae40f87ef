"""What runs is what was built: the compiled modules when `make` built them, the sources under
AROUTER_PURE=1 or where none are built; and no module setup.py compiles awaits."""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import gateway.pipeline.openai_usage
import gateway.protocols.anthropic_messages.stream
import gateway.sse
from gateway.compiled import stale_modules

ROOT = Path(__file__).resolve().parent.parent


def test_the_modules_run_compiled_or_from_source_as_asked() -> None:
    built = any((ROOT / "gateway").glob("native__mypyc*.so"))
    pure = os.environ.get("AROUTER_PURE") == "1" or not built
    for module in (gateway.sse, gateway.pipeline.openai_usage, gateway.protocols.anthropic_messages.stream):
        assert module.__file__ is not None
        assert module.__file__.endswith(".py" if pure else ".so"), module.__file__


def test_setup_compiles_only_modules_that_never_await() -> None:
    names = runpy.run_path(str(ROOT / "setup.py"), run_name="setup")
    sources = names["sources"]()
    assert len(sources) > 50
    awaits = re.compile(r"\basync\s+def\b|\bawait\b")
    assert not [p for p in sources if awaits.search((ROOT / p).read_text(encoding="utf-8"))]
    assert "gateway/sse.py" in sources and "gateway/web/middlewares.py" not in sources
    assert names["missing_for_mypyc"]() == []  # every dependency is installed here, named as pyproject.toml has it


def test_a_compiled_module_edited_since_it_was_built_is_named(tmp_path: Path) -> None:
    package = tmp_path / "gateway"
    (package / "pipeline").mkdir(parents=True)
    for name in ("sse", "pipeline/relay", "pipeline/journal"):
        (package / f"{name}.py").write_text("")
        (package / f"{name}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (package / "native__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (package / "app.py").write_text("")  # not compiled: never stale
    assert stale_modules(package) == []
    later = (package / "sse.cpython-311-x86_64-linux-gnu.so").stat().st_mtime + 5
    for name in ("sse", "pipeline/journal", "app"):
        os.utime(package / f"{name}.py", (later, later))
    assert stale_modules(package) == ["gateway/pipeline/journal.py", "gateway/sse.py"]
