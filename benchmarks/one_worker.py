#!/usr/bin/env python3
"""One gateway worker in this process, without gunicorn: the app gunicorn's uvloop worker runs.

For measuring a worker under a tool that follows one process (valgrind's callgrind in
benchmarks/instructions.py). Takes `serve --config FILE` like `arouter serve`; the database must
be migrated first (`arouter migrate`). Listens on AROUTER_HOST:AROUTER_PORT.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from gateway.server import prepare_metrics_dir


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1:3] == ["serve", "--config"]:
        os.environ["AROUTER_CONFIG"] = sys.argv[3]
    # before prometheus_client is imported, as `arouter serve` does
    prepare_metrics_dir(os.environ.get("AROUTER_METRICS_DIR") or tempfile.mkdtemp(prefix="arouter-metrics-"))
    import uvloop
    from aiohttp import web

    from gateway.app import app_factory

    async def serve() -> None:
        runner = await app_factory()
        await runner.setup()
        site = web.TCPSite(runner, os.environ.get("AROUTER_HOST", "127.0.0.1"), int(os.environ["AROUTER_PORT"]))
        await site.start()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
