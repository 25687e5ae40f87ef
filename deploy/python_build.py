"""What build of Python runs this file, and how well it suits the gateway.

Prints one line, ``SCORE DESCRIPTION``. ``deploy/pick-python`` runs it with every candidate
interpreter and builds ``.venv`` with the highest score; the benchmarks put the description in their
reports. Same Python version, different builds, very different speed: an interpreter linked
statically (Debian's and Ubuntu's ``/usr/bin/python3``, built with profile-guided and link-time
optimisation) runs a gateway request in 10-15 % fewer instructions than a ``--enable-shared`` build
without optimisations (what pyenv builds by default), where every call into the interpreter's own
library goes through the dynamic linker's tables.

Score: -1 unusable (older than 3.11, or no ``venv``/``ensurepip`` to make a virtualenv with), else 2
for a statically linked interpreter, plus 1 for ``--enable-optimizations`` (PGO) and 1 for
``--with-lto`` in its configure arguments.
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig


def linked_statically() -> bool:
    """True when no libpython shared library is mapped into this process (Linux; False elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return not any("libpython" in line for line in maps)
    except OSError:
        return False


def describe() -> tuple[int, str]:
    configure = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    static = linked_statically()
    pgo = "--enable-optimizations" in configure
    lto = "--with-lto" in configure
    traits = ["static" if static else "shared libpython"]
    if pgo:
        traits.append("--enable-optimizations")
    if lto:
        traits.append("--with-lto")
    version = ".".join(map(str, sys.version_info[:3]))
    usable = sys.version_info >= (3, 11) and all(
        importlib.util.find_spec(m) is not None for m in ("venv", "ensurepip")
    )
    if not usable:
        why = "older than 3.11" if sys.version_info < (3, 11) else "no venv/ensurepip module"
        return -1, f"{version} ({', '.join(traits)}; {why})"
    return 2 * static + pgo + lto, f"{version} ({', '.join(traits)})"


if __name__ == "__main__":
    score, text = describe()
    print(score, text)
