"""Property tests of the limiter arithmetic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ratelimit.gcra import Limits, corrected_tat, decide, step


@given(
    limit=st.integers(min_value=1, max_value=500),
    arrivals=st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=300),
)
@settings(max_examples=200, deadline=None)
def test_never_more_than_bucket_plus_refill_in_any_stretch(limit: int, arrivals: list[float]) -> None:
    period = 60.0
    now, tat = 1000.0, None
    admitted: list[float] = []
    for gap in arrivals:
        now += gap
        s = step(tat, now, limit, period, 1)
        if s.allowed:
            tat = s.new_tat
            admitted.append(now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            stretch = admitted[j] - start
            assert j - i + 1 <= limit + stretch * limit / period + 1e-6


@given(limit=st.integers(min_value=1, max_value=1000), burst=st.integers(min_value=0, max_value=3000))
def test_a_simultaneous_burst_admits_exactly_the_limit(limit: int, burst: int) -> None:
    tats: dict[str, float | None] = {}
    allowed = 0
    for _ in range(burst):
        d, new = decide(tats, Limits(requests_per_minute=limit), 0, 5000.0, 0)
        if d.allowed:
            allowed += 1
            tats.update(new)
            assert d.remaining == limit - allowed
        else:
            assert d.retry_after >= 1 and d.reason == "requests_per_minute"
    assert allowed == min(burst, limit)


@given(limit=st.integers(min_value=1, max_value=100))
def test_capacity_returns_after_the_period(limit: int) -> None:
    tats: dict[str, float | None] = {}
    for _ in range(limit):
        _, new = decide(tats, Limits(requests_per_minute=limit), 0, 0.0, 0)
        tats.update(new)
    d, _ = decide(tats, Limits(requests_per_minute=limit), 0, 0.0, 0)
    assert not d.allowed and d.retry_after <= 60 / limit + 1
    d, _ = decide(tats, Limits(requests_per_minute=limit), 0, 60.0, 0)
    assert d.allowed and d.remaining == limit - 1


@given(
    tpm=st.integers(min_value=10, max_value=100_000),
    est=st.integers(min_value=0, max_value=10_000),
    actual=st.integers(min_value=0, max_value=10_000),
)
def test_token_correction_moves_by_the_difference(tpm: int, est: int, actual: int) -> None:
    limits = Limits(tokens_per_minute=tpm)
    d, new = decide({}, limits, est, 100.0, 0)
    if est > tpm:
        assert not d.allowed and d.reason == "tokens_per_minute"
        return
    tat = new.get("tokens_per_minute")
    moved = corrected_tat(tat, 100.0, tpm, 60.0, actual - est)
    assert moved is not None and tat is not None
    expected = tat + (actual - est) * 60.0 / tpm
    assert abs(moved - max(expected, 100.0)) < 1e-6


def test_concurrency_and_reason() -> None:
    d, _ = decide({}, Limits(concurrency=2), 0, 0.0, 2)
    assert not d.allowed and d.reason == "concurrency" and d.headers() == {}
    d, _ = decide({}, Limits(concurrency=2, requests_per_minute=10), 0, 0.0, 1)
    assert d.allowed and d.headers() == {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9",
                                         "X-RateLimit-Reset": "6"}
