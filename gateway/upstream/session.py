"""One aiohttp ClientSession per worker for every upstream call."""

from __future__ import annotations

import aiohttp


def new_session() -> aiohttp.ClientSession:
    """A session with a large keep-alive pool; timeouts are set per call from the provider's settings."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        json_serialize=lambda _: "",  # never used: bodies are bytes
    )
