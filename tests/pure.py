"""``AROUTER_PURE=1``: import the gateway's modules from their sources even where compiled ones are
built, so the suite can check the plain-Python installation (`pip install .`, AROUTER_COMPILE=0) too."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType


class SourcesFirst:
    """A meta path finder: a gateway module that would load from an extension loads from its .py."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if not name.startswith("gateway."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.origin is None or not spec.origin.endswith(".so"):
            return spec
        source = Path(spec.origin).with_name(name.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(name, source) if source.exists() else spec


def use_sources_if_asked() -> None:
    if os.environ.get("AROUTER_PURE") == "1" and not any(isinstance(f, SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, SourcesFirst())
