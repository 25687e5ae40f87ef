"""The Anthropic Message Batches API: /v1/messages/batches.

``POST`` creates a batch of up to 100,000 Messages requests (``{"requests": [{custom_id, params}]}``;
``custom_id`` 1-64 of ``[A-Za-z0-9_-]``, unique in the batch; ``params`` a Messages body with
``model``, ``messages`` and ``max_tokens``, never ``stream: true``); the body may be at most the
server's ``max_body_bytes``. The requests run in the background (``gateway.batches.runner``) as
ordinary /v1/messages requests of the creating key: rate limited, billed at the normal price and
recorded. ``GET`` lists (newest first; ``before_id``, ``after_id``, ``limit`` 1-1000, default 20) or
retrieves; ``POST .../cancel`` cancels what has not started; ``DELETE`` removes an ended batch;
``GET .../results`` streams the result lines (``application/x-jsonl``, ordered by custom_id) once
the batch has ended.

Visibility: like an Anthropic workspace, every lr_live_ key of a tenant sees, cancels and deletes
the tenant's batches (requests still run as the key that created the batch).

The batch object follows Anthropic: ``request_counts`` puts every request under ``processing``
until the whole batch has ended; ``results_url`` (absolute, on the host the caller used) is null
until then; ``archived_at`` is always null. Errors use Anthropic's envelope with ``request_id``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from gateway.auth.policy import authenticate
from gateway.codec import json_response, parse_object, read_body
from gateway.errors import InvalidRequest, NotFound
from gateway.idempotency.records import HEADER as IDEMPOTENCY_HEADER
from gateway.pipeline.context import new_id
from gateway.pipeline.messages import anthropic_errors
from gateway.state import BATCH_RUNNER, CTX, IDEMPOTENCY, KEYCACHE, SETTINGS, STORE
from gateway.store.base import ApiKey, Batch, BatchCounts
from gateway.web.query import int_param

BATCH_LIFETIME = timedelta(hours=24)
MAX_REQUESTS = 100_000
RESULTS_PAGE = 1000
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


async def _key(request: web.Request) -> ApiKey:
    ctx = request[CTX]
    ctx.endpoint = "batches"
    key = ctx.key = await authenticate(request, request.app[KEYCACHE], "live", datetime.now(UTC))
    return key


def batch_object(request: web.Request, batch: Batch) -> dict[str, Any]:
    """The Anthropic ``message_batch`` object."""
    ended = batch.status == "ended"
    counts = batch.counts if ended else BatchCounts(processing=batch.counts.total)
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": {
            "processing": counts.processing,
            "succeeded": counts.succeeded,
            "errored": counts.errored,
            "canceled": counts.canceled,
            "expired": counts.expired,
        },
        "ended_at": batch.ended_at,
        "created_at": batch.created_at,
        "expires_at": batch.expires_at,
        "archived_at": None,
        "cancel_initiated_at": batch.cancel_initiated_at,
        "results_url": f"{request.url.origin()}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def parse_requests(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The (custom_id, params JSON) pairs of a create body, validated."""
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise InvalidRequest("requests: field required (an array)", param="requests")
    if not 1 <= len(requests) <= MAX_REQUESTS:
        raise InvalidRequest(f"requests: must hold from 1 to {MAX_REQUESTS} requests", param="requests")
    seen: set[str] = set()
    items: list[tuple[str, str]] = []
    for i, entry in enumerate(requests):
        where = f"requests.{i}"
        if not isinstance(entry, dict):
            raise InvalidRequest(f"{where}: expected an object", param=where)
        custom_id = entry.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            raise InvalidRequest(f"{where}.custom_id: 1 to 64 characters of letters, digits, '_' and '-'",
                                 param=f"{where}.custom_id")
        if custom_id in seen:
            raise InvalidRequest(f"{where}.custom_id: '{custom_id}' is used more than once in this batch",
                                 param=f"{where}.custom_id")
        seen.add(custom_id)
        params = entry.get("params")
        _check_params(params, f"{where}.params")
        items.append((custom_id, orjson.dumps(params).decode()))
    return items


def _check_params(params: Any, where: str) -> None:
    if not isinstance(params, dict):
        raise InvalidRequest(f"{where}: expected a Messages request object", param=where)
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(f"{where}.model: field required", param=f"{where}.model")
    if not isinstance(params.get("messages"), list):
        raise InvalidRequest(f"{where}.messages: field required", param=f"{where}.messages")
    max_tokens = params.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest(f"{where}.max_tokens: a positive integer is required", param=f"{where}.max_tokens")
    if params.get("stream", False) is not False:
        raise InvalidRequest(f"{where}.stream: batch requests cannot be streamed", param=f"{where}.stream")


@anthropic_errors
async def create_batch(request: web.Request) -> web.Response:
    key = await _key(request)
    raw = await read_body(request, request.app[SETTINGS].server.max_body_bytes)
    idempotency_key = request.headers.get(IDEMPOTENCY_HEADER)
    if idempotency_key is not None:  # a retried create gets the first batch back, not a second one
        ctx = request[CTX]
        ctx.idempotent = await request.app[IDEMPOTENCY].begin(request, key.hash, ctx.request_id, idempotency_key, raw)
    items = parse_requests(parse_object(raw))
    now = datetime.now(UTC)
    batch = Batch(id=new_id("msgbatch_"), tenant_id=key.tenant_id, key_hash=key.hash, status="in_progress",
                  created_at=now, expires_at=now + BATCH_LIFETIME, ended_at=None, cancel_initiated_at=None,
                  counts=BatchCounts(processing=len(items)))
    store = request.app[STORE]
    await store.create_batch(batch, items)
    runner = request.app.get(BATCH_RUNNER)
    if runner is not None:
        runner.wake()
    return json_response(batch_object(request, batch))


async def _batch(request: web.Request, key: ApiKey) -> Batch:
    batch_id = request.match_info["batch_id"]
    batch = await request.app[STORE].get_batch(key.tenant_id, batch_id)
    if batch is None:
        raise NotFound(f"message batch '{batch_id}' not found")
    return batch


@anthropic_errors
async def get_batch(request: web.Request) -> web.Response:
    key = await _key(request)
    return json_response(batch_object(request, await _batch(request, key)))


@anthropic_errors
async def list_batches(request: web.Request) -> web.Response:
    key = await _key(request)
    q = request.query
    limit = int_param(q, "limit", 20, 1, 1000)
    before_id, after_id = q.get("before_id") or None, q.get("after_id") or None
    if before_id is not None and after_id is not None:
        raise InvalidRequest("give before_id or after_id, not both", param="before_id")
    page, has_more = await request.app[STORE].list_batches(
        key.tenant_id, before_id=before_id, after_id=after_id, limit=limit
    )
    data = [batch_object(request, b) for b in page]
    return json_response({"data": data, "has_more": has_more, "first_id": page[0].id if page else None,
                          "last_id": page[-1].id if page else None})


@anthropic_errors
async def cancel_batch(request: web.Request) -> web.Response:
    key = await _key(request)
    batch_id = request.match_info["batch_id"]
    batch = await request.app[STORE].cancel_batch(key.tenant_id, batch_id, datetime.now(UTC))
    if batch is None:
        raise NotFound(f"message batch '{batch_id}' not found")
    return json_response(batch_object(request, batch))


@anthropic_errors
async def delete_batch(request: web.Request) -> web.Response:
    key = await _key(request)
    batch_id = request.match_info["batch_id"]
    outcome = await request.app[STORE].delete_batch(key.tenant_id, batch_id)
    if outcome == "missing":
        raise NotFound(f"message batch '{batch_id}' not found")
    if outcome == "not_ended":
        raise InvalidRequest(f"message batch '{batch_id}' is still processing; cancel it and wait for it to end "
                             "before deleting it")
    return json_response({"id": batch_id, "type": "message_batch_deleted"})


@anthropic_errors
async def batch_results(request: web.Request) -> web.StreamResponse:
    key = await _key(request)
    batch = await _batch(request, key)
    if batch.status != "ended":
        raise InvalidRequest(f"message batch '{batch.id}' has not ended yet; its results are not available")
    store = request.app[STORE]
    resp = web.StreamResponse(headers={"Content-Type": "application/x-jsonl", "X-Request-Id": request[CTX].request_id})
    await resp.prepare(request)
    after: str | None = None
    while True:
        page = await store.batch_results(key.tenant_id, batch.id, after=after, limit=RESULTS_PAGE)
        if not page:
            break
        lines = [
            b'{"custom_id":' + orjson.dumps(r.custom_id) + b',"result":' + (r.result or '{"type":"expired"}').encode()
            + b"}\n"
            for r in page
        ]
        await resp.write(b"".join(lines))
        after = page[-1].custom_id
    await resp.write_eof()
    return resp


def add_routes(app: web.Application) -> None:
    """Bind the batch paths (before /v1/messages/... catch-alls, if any)."""
    r = app.router
    r.add_post("/v1/messages/batches", create_batch)
    r.add_get("/v1/messages/batches", list_batches)
    r.add_get("/v1/messages/batches/{batch_id}", get_batch)
    r.add_delete("/v1/messages/batches/{batch_id}", delete_batch)
    r.add_post("/v1/messages/batches/{batch_id}/cancel", cancel_batch)
    r.add_get("/v1/messages/batches/{batch_id}/results", batch_results)
