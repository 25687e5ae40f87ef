"""Balance and ledger: POST /api/v1/credits, GET /api/v1/balance, GET /api/v1/transactions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from gateway.auth.policy import authenticate
from gateway.codec import json_response, money, read_json
from gateway.errors import InvalidRequest
from gateway.pipeline.context import new_id
from gateway.state import BILLING, CTX, KEYCACHE, SETTINGS, STORE
from gateway.store.base import Transaction
from gateway.web.query import int_param

MAX_CREDIT = Decimal("1000000")
CREDIT_QUANTUM = Decimal("1e-10")


def parse_amount(value: Any) -> Decimal:
    """A credit amount: a JSON number or decimal string, positive, at most 1,000,000 USD, 10 decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest("'amount' must be a positive number of USD (a JSON number or decimal string)",
                             param="amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidRequest(f"'amount' is not a number: {value!r}", param="amount") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_CREDIT:
        raise InvalidRequest(f"'amount' must be more than 0 and at most {MAX_CREDIT} USD", param="amount")
    if amount != amount.quantize(CREDIT_QUANTUM):
        raise InvalidRequest("'amount' has more than 10 decimal places", param="amount")
    return amount


def transaction_object(txn: Transaction) -> dict[str, Any]:
    return {
        "id": txn.id,
        "type": txn.type,
        "amount": money(txn.amount),
        "description": txn.description,
        "generation_id": txn.generation_id,
        "key_hash": txn.key_hash,
        "created_at": txn.created_at,
    }


async def add_credits(request: web.Request) -> web.Response:
    """Add credit to the management key's tenant: a positive credit transaction."""
    key = await authenticate(request, request.app[KEYCACHE], "mgmt", datetime.now(UTC))
    request[CTX].key = key
    body = await read_json(request, request.app[SETTINGS].server.max_body_bytes)
    for name in body:
        if name not in ("amount", "description"):
            raise InvalidRequest(f"unknown field '{name}' (allowed: amount, description)", param=name)
    amount = parse_amount(body.get("amount"))
    description = body.get("description", "Credit")
    if not isinstance(description, str) or len(description) > 500:
        raise InvalidRequest("'description' must be a string of at most 500 characters", param="description")
    txn = await credit_tenant(request.app, key.tenant_id, amount, description or "Credit")
    return json_response({"data": transaction_object(txn)}, status=201)


async def credit_tenant(app: web.Application, tenant: str, amount: Decimal, description: str) -> Transaction:
    """Write the credit to the ledger, then to the hot balance counter (both, even if the client goes away)."""
    txn = Transaction(
        id=new_id("txn_"), tenant_id=tenant, type="credit", amount=amount, description=description,
        generation_id=None, key_hash=None, created_at=datetime.now(UTC),
    )
    await app[BILLING].add_credit(txn)
    return txn


async def get_balance(request: web.Request) -> web.Response:
    """The tenant's balance (credits minus recorded usage), for either key kind."""
    key = await authenticate(request, request.app[KEYCACHE], None, datetime.now(UTC))
    request[CTX].key = key
    balance = await request.app[STORE].balance(key.tenant_id)
    return json_response({"balance": money(balance), "currency": "USD"})


async def list_transactions(request: web.Request) -> web.Response:
    """The tenant's transactions, newest first: ?offset= and ?limit= (1-500, default 100)."""
    key = await authenticate(request, request.app[KEYCACHE], None, datetime.now(UTC))
    request[CTX].key = key
    offset = int_param(request.query, "offset", 0, 0, 10**9)
    limit = int_param(request.query, "limit", 100, 1, 500)
    txns = await request.app[STORE].list_transactions(key.tenant_id, offset=offset, limit=limit)
    return json_response({"transactions": [transaction_object(t) for t in txns]})
