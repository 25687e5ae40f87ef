"""The one upstream call: how a failure before, while or after the response's headers arrive comes out,
and that the response goes back to its pool however the block ends."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.settings import ProviderSettings, Timeouts
from gateway.upstream.call import open_upstream, status_error
from gateway.upstream.http1 import ConnectError, ConnectionLost, DeadlinePassed, ProtocolError

PROVIDER = ProviderSettings(name="p", type="openai", base_url="http://upstream.invalid/v1",
                            timeouts=Timeouts(connect=1, first_token=2, idle=3, total=4))


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"") -> None:
        self.status = status
        self.headers = CIMultiDictProxy(CIMultiDict[str]())
        self.body = body
        self.released = 0

    async def read(self, limit: int | None = None) -> bytes:
        return self.body

    def release(self) -> None:
        self.released += 1


class FakePool:
    def __init__(self, answer: FakeResponse | BaseException) -> None:
        self.answer = answer

    async def request(self, *args: Any, **kwargs: Any) -> FakeResponse:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def call(pool: FakePool) -> Any:
    return open_upstream(pool, PROVIDER, "POST", PROVIDER.base_url, b"{}", {}, lambda *a: status_error(PROVIDER, *a))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "kind", "message"),
    [
        (DeadlinePassed(), UpstreamTimeout, "provider 'p' took longer than 4s in all"),
        (TimeoutError(), UpstreamTimeout, "provider 'p' went silent for 3s"),
        (ProtocolError("bad chunk"), UpstreamError, "provider 'p' sent a broken response body"),
        (ConnectionLost("reset"), UpstreamError, "provider 'p' connection failed: reset"),
    ],
)
async def test_a_failure_while_reading_the_body_is_an_upstream_error(
    failure: BaseException, kind: type[UpstreamError], message: str
) -> None:
    resp = FakeResponse(200)
    with pytest.raises(kind) as caught:
        async with call(FakePool(resp)):
            raise failure
    assert type(caught.value) is kind and caught.value.message == message
    assert caught.value.__suppress_context__  # the transport error is not shown as the cause
    assert resp.released == 1


async def test_other_errors_pass_unchanged_and_a_clean_block_releases() -> None:
    resp = FakeResponse(200)
    with pytest.raises(KeyError):
        async with call(FakePool(resp)):
            raise KeyError("mine")
    assert resp.released == 1
    async with call(FakePool(resp)) as up:
        assert up is resp
    assert resp.released == 2


@pytest.mark.parametrize(
    ("failure", "kind", "message"),
    [
        (TimeoutError(), UpstreamTimeout, "provider 'p' did not answer within 2s"),
        (ConnectError("refused"), UpstreamUnreachable, "could not connect to provider 'p': refused"),
        (ConnectionLost("reset"), UpstreamError, "request to provider 'p' failed: reset"),
        (ValueError("bad header"), UpstreamError, "request to provider 'p' could not be sent: bad header"),
    ],
)
async def test_a_failure_before_the_headers_is_an_upstream_error(
    failure: BaseException, kind: type[UpstreamError], message: str
) -> None:
    with pytest.raises(kind) as caught:
        async with call(FakePool(failure)):
            pytest.fail("the block must not run")
    assert type(caught.value) is kind and caught.value.message == message


async def test_an_error_status_is_mapped_and_its_response_released() -> None:
    resp = FakeResponse(503, b'{"error": {"message": "overloaded"}}')
    with pytest.raises(UpstreamError) as caught:
        async with call(FakePool(resp)):
            pytest.fail("the block must not run")
    assert caught.value.upstream_status == 503 and "overloaded" in caught.value.message
    assert resp.released == 1
