"""Lease arithmetic: how much a worker may take at once for a key, and what it owes back."""

from __future__ import annotations

from gateway.admission.lease import Headroom, Lease, Terms, terms
from gateway.ratelimit.gcra import Decision, Limits

FAR = Headroom(money=10**15, requests=10**9)


def test_a_lease_is_a_thousandth_of_each_limit_at_most() -> None:
    assert terms(Limits(requests_per_minute=100_000), 10, 0, False, None, 64) == Terms(64, 640, 0)
    assert terms(Limits(requests_per_minute=10_000), 10, 0, False, None, 64) == Terms(10, 100, 0)
    assert terms(Limits(requests_per_minute=10_000, requests_per_day=5_000), 0, 0, False, None, 64) == Terms(5, 0, 0)
    assert terms(Limits(tokens_per_minute=1_000_000), 100, 0, False, None, 64) == Terms(10, 1000, 0)
    assert terms(Limits(requests_per_minute=1999), 0, 0, False, None, 64) is None  # one request: count exactly
    assert terms(Limits(requests_per_minute=50), 0, 0, False, None, 64) is None


def test_no_lease_for_concurrency_limits_small_sizes_or_unknown_money() -> None:
    assert terms(Limits(requests_per_minute=10**6, concurrency=5), 0, 0, False, None, 64) is None
    assert terms(Limits(requests_per_minute=10**6), 0, 0, False, None, 1) is None
    assert terms(Limits(requests_per_minute=10**6), 0, 100, True, None, 64) is None  # money left not known yet
    assert terms(Limits(), 0, 100, True, FAR, 64) == Terms(64, 0, 6400)


def test_money_and_requests_left_bound_a_lease() -> None:
    limits = Limits(requests_per_minute=10**6)
    assert terms(limits, 0, 100, True, Headroom(money=1000 * 100 * 7, requests=None), 64) == Terms(7, 0, 700)
    assert terms(limits, 0, 100, True, Headroom(money=1000 * 100, requests=None), 64) is None
    assert terms(limits, 0, 100, True, Headroom(money=10**15, requests=16 * 3), 64) == Terms(3, 0, 300)
    assert terms(limits, 0, 100, True, Headroom(money=10**15, requests=31), 64) is None  # near the limit


def test_what_a_lease_owes_back() -> None:
    lease = Lease("lease_1", "k", "t", Limits(requests_per_minute=10**6, tokens_per_minute=10**9), True, True,
                  None, Terms(4, 400, 4000), Decision(True, 10**6, 500, 0))
    assert lease.covers(100, 1000)
    assert lease.serve(100, 1000).remaining == 503  # the three it still holds were not used yet
    assert lease.serve(100, 1000).remaining == 502
    assert not lease.covers(300, 1000) and lease.covers(200, 1000) and not lease.covers(100, 2001)
    lease.finish(1000, 250, token_delta=+30)
    lease.finish(1000, 0, token_delta=-100)
    assert lease.money == 250 and lease.charged == 250 and lease.in_flight == 0
    assert not lease.due  # still open
    lease.open = False
    assert lease.due
    give = lease.release()
    assert give.request_delta == -2 and give.token_delta == 30 - 100 - 200 and give.request_id == "lease_1"
