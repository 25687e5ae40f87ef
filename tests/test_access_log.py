"""The access log: lines buffered and written together, none lost when the app stops."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from gateway.logs import AccessLog, JsonFormatter


class Sink:
    """A file the log writes to, read from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._path = path
        self._seen = 0

    def new_lines(self) -> list[dict[str, object]]:
        data = self._path.read_bytes()
        fresh, self._seen = data[self._seen :], len(data)
        return [orjson.loads(line) for line in fresh.splitlines()]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    s = Sink(tmp_path / "access.log")
    yield s
    os.close(s.fd)


async def test_lines_are_written_together_once_the_timer_fires(sink: Sink) -> None:
    log = AccessLog(sink.fd)
    flushed = asyncio.Event()
    real_flush = log.flush

    def flush() -> None:
        real_flush()
        flushed.set()

    log.flush = flush  # type: ignore[method-assign]
    log.write({"msg": "request", "n": 1})
    log.write({"msg": "request", "n": 2})
    assert sink.new_lines() == []  # buffered, not one write per line
    await asyncio.wait_for(flushed.wait(), 5)
    lines = sink.new_lines()
    assert [line["n"] for line in lines] == [1, 2]
    assert all(line["logger"] == "arouter.access" and line["level"] == "info" for line in lines)
    assert all(str(line["ts"]).endswith("Z") for line in lines)


async def test_a_full_buffer_is_written_at_once(sink: Sink) -> None:
    log = AccessLog(sink.fd)
    filler = "x" * 1024
    written: list[dict[str, object]] = []
    n = 0
    while not written:  # no await: the timer cannot have fired
        log.write({"msg": "request", "n": n, "pad": filler})
        n += 1
        written = sink.new_lines()
        assert n <= 2 * AccessLog.FLUSH_BYTES // 1024, "64 KiB of lines were never written"
    assert [line["n"] for line in written] == list(range(n))
    assert n * 1200 > AccessLog.FLUSH_BYTES  # about 64 KiB of ~1.1 KiB lines, not written line by line
    log.write({"msg": "request", "n": n})
    assert sink.new_lines() == []
    log.flush()
    assert [line["n"] for line in sink.new_lines()] == [n]
    log.flush()  # nothing buffered: nothing written
    assert sink.new_lines() == []


async def test_the_app_writes_what_is_buffered_when_it_stops(tmp_path: Path) -> None:
    from gateway.app import _flush_access_log
    from gateway.state import ACCESS_LOG

    out = tmp_path / "access.log"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        app = web.Application()
        app[ACCESS_LOG] = AccessLog(fd)
        app.on_cleanup.append(_flush_access_log)
        runner = web.AppRunner(app)
        await runner.setup()
        app[ACCESS_LOG].write({"msg": "request", "n": 7})
        assert out.read_bytes() == b""
        await runner.cleanup()
        assert [orjson.loads(line)["n"] for line in out.read_bytes().splitlines()] == [7]
    finally:
        os.close(fd)


class CutResponse(web.Response):
    """A response whose client is gone by the time it is sent."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        raise ConnectionResetError("client gone")


async def test_the_line_is_written_after_the_answer_and_when_sending_it_fails(
    sink: Sink, aiohttp_client: Any
) -> None:
    from gateway.metrics import Metrics
    from gateway.pipeline.context import RandomIds
    from gateway.state import ACCESS_LOG, IDS, METRICS
    from gateway.web.middlewares import gateway_middleware

    app = web.Application(middlewares=[gateway_middleware])
    app[ACCESS_LOG] = log = AccessLog(sink.fd)
    app[METRICS] = Metrics()
    app[IDS] = RandomIds()
    answers: list[web.Response] = []
    sent_before_line: list[bool] = []
    write = log.write

    def write_after(fields: dict[str, Any]) -> None:
        sent_before_line.append(answers[-1].prepared)
        write(fields)

    log.write = write_after  # type: ignore[method-assign]

    async def ok(request: web.Request) -> web.Response:
        answers.append(web.Response(text="fine"))
        return answers[-1]

    async def cut(request: web.Request) -> web.Response:
        answers.append(CutResponse(text="never"))
        return answers[-1]

    app.router.add_get("/ok", ok)
    app.router.add_get("/cut", cut)
    client = await aiohttp_client(app)
    async with client.get("/ok") as resp:
        assert resp.status == 200 and await resp.text() == "fine"
    with pytest.raises(aiohttp.ClientError):
        async with client.get("/cut") as resp:
            await resp.read()
    log.flush()
    lines = sink.new_lines()
    assert [(line["path"], line["status"]) for line in lines] == [("/ok", 200), ("/cut", 200)]
    assert sent_before_line == [True, False]  # the answer went out before its line was built; the cut one never did


def test_a_log_record_with_fields_keeps_its_message() -> None:
    record = logging.LogRecord("arouter.billing", logging.WARNING, __file__, 1, "dropping %s failed", ("x",), None)
    record.fields = {"tenant": "t"}
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["msg"] == "dropping x failed" and doc["tenant"] == "t" and doc["level"] == "warning"
