"""Gateway-internal calls: the batch runner calls the gateway's own ``POST /v1/messages`` as the key
that created the batch, although only that key's hash is stored.

Such a call carries ``X-ARouter-Internal: <token>`` and ``X-ARouter-Key-Hash: <hash>``. The token is
a per-deployment secret: ``AROUTER_INTERNAL_TOKEN`` from the environment, else one generated for the
process tree (``arouter serve`` exports it before gunicorn forks, so every worker shares it; a worker
may call a sibling through the shared socket). Hosts sharing a database need not share the token:
runners only call their own host (loopback). Workers started
by gunicorn directly (``deploy/gunicorn.conf.py``) each generate their own unless it is set; the runner
then retries a call that lands on a sibling worker, so set ``AROUTER_INTERNAL_TOKEN`` there.
"""

from __future__ import annotations

import logging
import os
import secrets

log = logging.getLogger("arouter.batches")

TOKEN_ENV = "AROUTER_INTERNAL_TOKEN"
TOKEN_HEADER = "X-ARouter-Internal"
KEY_HASH_HEADER = "X-ARouter-Key-Hash"


def internal_token() -> str:
    """The deployment's internal token: from the environment, else generated once and exported there
    (so processes forked afterwards inherit it)."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        token = secrets.token_urlsafe(32)
        os.environ[TOKEN_ENV] = token
        log.info("%s is not set: generated one for this process and its children (gunicorn workers "
                 "started otherwise than by `arouter serve` need it set to one value)", TOKEN_ENV)
    return token
