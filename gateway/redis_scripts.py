"""The Lua script calls of one worker's shared counters on Redis, sent together when they overlap.

A call made while no round trip is in flight goes out at once, alone (one EVALSHA). Calls made while
one is in flight queue up, and go together as soon as it returns: one pipeline of EVALSHAs (not a
transaction: each script is atomic by itself), each caller getting its own reply or error. So under
load a worker makes one round trip for the counter operations of many requests, and a lone request
waits for nothing: there is no timer.

The round trips go over one connection of the client's pool, kept for them (there is only ever one
in flight): the calls are packed straight into the wire format (hiredis) and their replies read with
redis-py's parser, without the per-command work of the client's ``execute_command`` and pipelines
(encoding each argument in Python, taking a pooled connection, a timeout per socket operation), which
was most of what a request counted exactly cost on Redis. A round trip cut off midway (timeout,
cancelled, connection lost) closes the connection; the next connects afresh, as does one that finds
the server closed it while idle (a Redis restart costs no call). A failed call is never sent again
blindly: the server may have run it.

A script the server does not know (its script cache was flushed, or the server is new) is loaded
and its calls sent again, as redis-py's own ``Script`` does. A call whose caller stopped waiting
before it left (its timeout passed) is dropped, except one made with ``send``: what a request used
must be charged whether or not anyone still waits for the reply.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

Arg = str | int | float


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script's text and the SHA1 the server knows it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


def lua(*parts: tuple[str, str]) -> Script:
    """A script made of package files, in order, e.g. a file of functions then the script that uses them."""
    return Script("\n".join(resources.files(pkg).joinpath(name).read_text(encoding="utf-8") for pkg, name in parts))


@dataclass(slots=True)
class _Call:
    script: Script
    keys_and_args: tuple[Arg, ...]
    nkeys: int
    future: asyncio.Future[Any]
    keep: bool  # sent even when nobody waits any more


class RedisScripts:
    """Runs scripts on one Redis client: alone when idle, pipelined behind a round trip in flight."""

    def __init__(self, redis: Redis, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._timeout = timeout  # of one round trip; callers may give up sooner
        self._queue: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None  # taken from the client's pool at the first call

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """The script's reply; a caller that stops waiting before the call left drops it."""
        return await self._enqueue(script, keys, args, keep=False)

    async def send(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """The script's reply; the call goes out even if the caller stops waiting."""
        return await asyncio.shield(self._enqueue(script, keys, args, keep=True))

    async def close(self) -> None:
        """Wait for the calls already made; give the connection back to the pool."""
        if self._sender is not None:
            await asyncio.shield(self._sender)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._redis.connection_pool.release(conn)

    def _enqueue(self, script: Script, keys: Sequence[str], args: Sequence[Arg], *, keep: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if keep:
            future.add_done_callback(_retrieve)
        self._queue.append(_Call(script, (*keys, *args), len(keys), future, keep))
        if self._sender is None:
            self._sender = loop.create_task(self._send_queued())
        return future

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                batch = [c for c in self._queue if c.keep or not c.future.done()]
                self._queue = []
                if batch:
                    await self._round_trip(batch)
        finally:
            self._sender = None
            for c in self._queue:  # only if this task was cancelled (the loop is closing)
                c.future.cancel()
            self._queue = []

    async def _round_trip(self, batch: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._execute(batch)
                unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                if unknown:
                    for script in {batch[i].script for i in unknown}:
                        await self._redis.script_load(script.source)
                    again = await self._execute([batch[i] for i in unknown])
                    for i, reply in zip(unknown, again, strict=True):
                        replies[i] = reply
        except asyncio.CancelledError:
            for c in batch:
                c.future.cancel()
            raise
        except Exception as exc:  # the connection or the timeout: every call of the round trip failed
            for c in batch:
                if not c.future.done():
                    c.future.set_exception(exc)
            return
        for c, reply in zip(batch, replies, strict=True):
            if c.future.done():
                continue
            if isinstance(reply, Exception):
                c.future.set_exception(reply)
            else:
                c.future.set_result(reply)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        """One round trip: the replies in order, a script's error in its place."""
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        elif _closed_by_server(conn):
            await conn.disconnect()  # the server went away since the last round trip: connect afresh
        # (hiredis's stub types the argument as a 1-tuple)
        commands = [pack_command(("EVALSHA", c.script.sha, c.nkeys, *c.keys_and_args)) for c in batch]  # type: ignore[arg-type]
        try:
            await conn.send_packed_command(commands, check_health=False)
            replies: list[Any] = []
            for _ in batch:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # a complete reply: the script's error
                    replies.append(exc)
            return replies
        except BaseException:
            await conn.disconnect(nowait=True)  # cut off midway: what is still on the wire is nobody's
            raise


def _closed_by_server(conn: AbstractConnection) -> bool:
    """The server closed this idle connection (its end of the stream reached)."""
    reader: asyncio.StreamReader | None = getattr(conn, "_reader", None)
    return conn.is_connected and reader is not None and reader.at_eof()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of a call nobody may wait for as seen (asyncio warns of unseen errors)."""
    if not future.cancelled():
        future.exception()
