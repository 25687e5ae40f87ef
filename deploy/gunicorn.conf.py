"""gunicorn settings for running the gateway without the `arouter serve` wrapper:

    PROMETHEUS_MULTIPROC_DIR=/run/arouter-metrics gunicorn -c deploy/gunicorn.conf.py gateway.app:app_factory

`arouter serve` applies the same settings (gateway/server.py) and prepares the metrics directory.
"""

import os
import secrets

from gateway.server import child_exit as _child_exit
from gateway.server import gunicorn_options, raise_open_files_limit
from gateway.settings import load_settings

# One token for every worker, so the batch runner's calls to its own gateway pass on any worker.
os.environ.setdefault("AROUTER_INTERNAL_TOKEN", secrets.token_urlsafe(32))
raise_open_files_limit()  # two sockets per open stream: inherited by the workers
_opts = gunicorn_options(load_settings(None, os.environ))
bind = _opts["bind"]
workers = _opts["workers"]
worker_class = _opts["worker_class"]
keepalive = _opts["keepalive"]
graceful_timeout = _opts["graceful_timeout"]
timeout = _opts["timeout"]
backlog = _opts["backlog"]
errorlog = "-"
loglevel = "warning"
proc_name = "arouter"


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    _child_exit(server, worker)
