"""Running under gunicorn: aiohttp's uvloop worker, one process per core, metrics shared across workers."""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path
from typing import Any

from gateway.settings import Settings

WORKER_CLASS = "gateway.worker.Worker"  # aiohttp's uvloop worker, listening with the configured backlog
APP_FACTORY = "gateway.app:app_factory"
KEEPALIVE_SECONDS = 75
GRACEFUL_SECONDS = 30
# Nothing here may import prometheus_client at import time: `arouter serve` imports this module
# before it sets PROMETHEUS_MULTIPROC_DIR.


def prepare_metrics_dir(path: str) -> None:
    """Empty and export PROMETHEUS_MULTIPROC_DIR; must run before prometheus_client is imported."""
    shutil.rmtree(path, ignore_errors=True)
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def raise_open_files_limit(cap: int = 1 << 20) -> int:
    """Lift the soft limit on open files to the hard limit (at most ``cap``): each open stream holds two
    sockets, and a default soft limit of 1024 would refuse connections long before memory runs out.
    Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    return soft


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: drop a dead worker's live gauges from the shared metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """The gunicorn settings `arouter serve` uses (deploy/gunicorn.conf.py mirrors them)."""
    return {
        "bind": f"{settings.server.host}:{settings.server.port}",
        "workers": settings.server.workers,
        "worker_class": WORKER_CLASS,
        "keepalive": KEEPALIVE_SECONDS,
        "graceful_timeout": GRACEFUL_SECONDS,
        "timeout": 60,
        "backlog": 4096,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "child_exit": child_exit,
        "proc_name": "arouter",
    }


def run_gunicorn(settings: Settings) -> None:
    """Start gunicorn in this process with the gateway's app factory; returns when it stops."""
    from gunicorn.app.base import BaseApplication

    options = gunicorn_options(settings)

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            from gateway.app import app_factory

            return app_factory

    _App().run()
